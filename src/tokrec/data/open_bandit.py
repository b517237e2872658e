"""The Open Bandit Dataset (ZOZOTOWN) layout: ``<policy>/<campaign>/<campaign>.csv`` + ``item_context.csv``.

The small sample ships inside the ``obp`` package's sdist (``obp/dataset/obd``; 10,000 rounds per
logging policy and campaign). :func:`load_open_bandit` reads one folder with the preprocessing of
``obp.dataset.OpenBanditDataset`` (rows sorted by timestamp, positions densely ranked from 0, user
features one-hot with the first level dropped, item features label-encoded), so a round here is the
same round there. Written here because obp's own loader fails under pandas >= 2 (it passes both
``columns=`` and ``axis=`` to ``DataFrame.drop``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from tokrec.data.bandit_log import BanditLog
from tokrec.errors import DataError

REQUIRED = ("timestamp", "item_id", "position", "click", "propensity_score")


def obp_sample_folder() -> Path | None:
    """The ``obd`` folder inside an installed ``obp`` package, or None when obp is not installed."""
    import importlib.util

    spec = importlib.util.find_spec("obp")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "dataset" / "obd"
    return folder if folder.is_dir() else None


def load_open_bandit(
    folder: str | os.PathLike[str], *, policy: str = "random", campaign: str = "all"
) -> tuple[BanditLog, np.ndarray]:
    """One logging policy's rounds of one campaign.

    Returns:
        The log (``context`` = one-hot user features, as obp's ``context``) and the
        item features ``(n_actions, 4)`` (three label-encoded categories, then ``item_feature_0``).
    """
    base = Path(folder) / policy / campaign
    data_file, item_file = base / f"{campaign}.csv", base / "item_context.csv"
    for f in (data_file, item_file):
        if not f.is_file():
            raise DataError("file not found", file=str(f))
    data = pd.read_csv(data_file, index_col=0)
    for c in REQUIRED:
        if c not in data.columns:
            raise DataError("missing column", file=str(data_file), column=c)
    data = data.sort_values("timestamp")
    items = pd.read_csv(item_file, index_col=0)
    pos = pd.Series(data["position"].to_numpy()).rank(method="dense").to_numpy().astype(np.int64) - 1
    user_cols = data.columns[data.columns.str.contains("user_feature")]
    context = pd.get_dummies(data[user_cols], drop_first=True).to_numpy(dtype=np.float64)
    cats = [c for c in items.columns if c not in ("item_id", "item_feature_0")]
    codes = np.column_stack([pd.factorize(items[c], sort=True)[0] for c in cats])
    item_features = np.column_stack([codes, items["item_feature_0"].to_numpy(dtype=np.float64)])
    log = BanditLog(
        action=data["item_id"].to_numpy(),
        reward=data["click"].to_numpy(),
        pscore=data["propensity_score"].to_numpy(),
        position=pos,
        n_actions=int(items["item_id"].nunique()),
        context=context,
    )
    return log, item_features.astype(np.float64)
