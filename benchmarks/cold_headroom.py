"""Where the cold-item headroom is on the ml-100k cold split: popularity against taste.

Usage:
    .venv/bin/python benchmarks/cold_headroom.py [--splits ../shared/data/ml-100k-splits] [--vectors /tmp/vecs.npy]

Prints, each scored with the official scorer where it is a ranking:
- an ORACLE that ranks the new items by their number of test events, the same list for every user (an upper
  bound for any popularity-only ranking: it reads the test events, so it is not a model);
- the ``tokrec`` model's ``map`` signal alone (a per-user ridge from item content ``[text, attributes]`` to the
  user's history) and its ``prior`` signal alone (a ridge from content to log-popularity), both honest models;
- how well content predicts a new item's popularity: Spearman correlation between the test-event counts of the
  new items and a prediction from ``[text, attributes]`` fitted on the items with training events (the ridge of
  ``prior``, and LightGBM on 32 principal components of the text vectors plus the attributes).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from deep_sasrec import SCORER, load_split, load_vectors, score
from tokrec.models import _signals as sig
from tokrec.models.recommended import TokrecHybrid


def oracle_recs(test: pd.DataFrame, candidates: list[str], k: int = 100) -> pd.DataFrame:
    """The candidates by test-event count (ties by item id), the same top ``k`` for every test user."""
    counts = test["item_id"].astype(str).value_counts()
    order = sorted(candidates, key=lambda i: (-int(counts.get(i, 0)), i))[:k]
    users = test["user_id"].astype(str).unique()
    return pd.DataFrame(
        {
            "user_id": np.repeat(users, len(order)),
            "item_id": np.tile(order, len(users)),
            "score": np.tile(np.arange(len(order), 0, -1, dtype=float), len(users)),
            "rank": np.tile(np.arange(1, len(order) + 1), len(users)),
        }
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--splits", type=Path, default=SCORER.parents[1] / "data" / "ml-100k-splits")
    ap.add_argument("--vectors", default=None, help=".npy cache of the item vectors")
    a = ap.parse_args()
    ds, items = load_split(a.splits, "cold")
    vecs = load_vectors(items, a.vectors)
    test = pd.read_csv(a.splits / "cold" / "test.csv", dtype={"user_id": str, "item_id": str})
    cands = pd.read_csv(a.splits / "cold" / "candidates.csv", dtype=str)["item_id"].tolist()
    users = test["user_id"].unique().tolist()
    out = Path(tempfile.mkdtemp(prefix="cold_headroom."))

    path = out / "oracle.csv"
    oracle_recs(test, cands).to_csv(path, index=False)
    print(f"ORACLE test popularity (reads the test events): {score(path, a.splits, 'cold')}", flush=True)
    zero = {f"w_{s}": 0.0 for s in ("ease", "trans", "time", "age", "map", "prop", "prior", "profile")}
    for signal in ("map", "prior"):
        model = TokrecHybrid({**zero, f"w_{signal}": 1.0}).fit(ds, vecs)
        path = out / f"{signal}.csv"
        model.recommend_batch(users, k=100, candidates=cands).to_csv(path, index=False)
        print(f"tokrec's {signal} signal alone: {score(path, a.splits, 'cold')}", flush=True)

    x = ds.interaction_matrix()
    pop = np.asarray(x.sum(axis=0)).ravel()
    warm = np.flatnonzero(pop > 0)
    new = ds.item_vocab.encode(cands)
    counts = test["item_id"].value_counts().reindex(cands).fillna(0).to_numpy()
    attrs, release = sig.attribute_features(ds.items)
    z = sig.l2_rows(vecs)
    f = sig.content_features(vecs, attrs).astype(np.float64)
    ridge_pred = (f @ sig.ridge(f[warm], np.log1p(pop[warm])[:, None], 10.0)).ravel()
    print(
        f"Spearman(test-event count, ridge prediction from content): {spearmanr(counts, ridge_pred[new]).statistic:.3f}"
    )
    import lightgbm as lgb
    from sklearn.decomposition import PCA

    years = np.where(np.isnan(release), 0.0, release / 86400 / 365.25 + 1970)
    feats = np.hstack([PCA(32, random_state=0).fit_transform(z), attrs, years[:, None]])
    gbm = lgb.LGBMRegressor(
        n_estimators=300, learning_rate=0.03, num_leaves=15, min_child_samples=20, random_state=0, verbose=-1
    ).fit(feats[warm], np.log1p(pop[warm]))
    print(
        f"Spearman(test-event count, LightGBM prediction from content): {spearmanr(counts, gbm.predict(feats[new])).statistic:.3f}"
    )


if __name__ == "__main__":
    main()
