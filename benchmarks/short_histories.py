"""Users with a few events: the recommended model against popularity, on their next event and on all later ones.

Usage:
    python benchmarks/short_histories.py [--shared ../shared] [--dataset ml-100k-splits] [--history 1 2 3 5 10]

For each H, the ``cold-user`` split of ``warm/train.csv`` (20% of the users, seed 0; the split of ``tokrec evaluate
--protocol cold-user --history H``) keeps each held-out user's first H events in train; the default model
``tokrec`` (``--no-tune``: the shipped configuration) is fitted on that train, and every held-out user is scored
twice: against ALL their later events (what ``tokrec evaluate`` counts) and against their NEXT event only. Beside
the model (``a = 0``) and the new-user blend (popularity with the defaults, ``a = 1``), the per-user z-normalised
scores of the two mixed with a share ``a`` of the new-user blend. NDCG@10 by
:func:`tokrec.evaluation.metrics.ndcg_from_scores` (the shared scorer's definitions; seen items excluded).
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd
import scipy.sparse as sp

from common import shared_dir
from tokrec.data.dataset import Dataset
from tokrec.data.loaders import load_dataset
from tokrec.evaluation.metrics import ndcg_from_scores
from tokrec.evaluation.splits import cold_user_split
from tokrec.features import item_vectors_for
from tokrec.models import create_model
from tokrec.models.signals import znorm_rows

MIXES = (0.0, 0.5, 0.75, 0.9, 1.0)


def relevant(train: Dataset, rows: np.ndarray, events: pd.DataFrame) -> sp.csr_matrix:
    """``(len(rows), n_items)`` 0/1: the items of ``events`` for each user row of ``train``."""
    u = train.user_vocab.encode(events["user_id"])
    i = train.item_vocab.encode(events["item_id"])
    rel = sp.csr_matrix((np.ones(len(u)), (u, i)), shape=(train.n_users, train.n_items))[rows]
    rel.data[:] = 1.0
    return rel


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", default=None)
    ap.add_argument("--dataset", default="ml-100k-splits")
    ap.add_argument("--history", type=int, nargs="+", default=[1, 2, 3, 5, 10])
    args = ap.parse_args()
    folder = shared_dir(args.shared, f"data/{args.dataset}") / "data" / args.dataset
    ds = load_dataset(folder / "items.csv", folder / "warm" / "train.csv")
    vectors = item_vectors_for(ds)
    print("| first events kept | users | later events | " + " | ".join(f"a = {a:g}" for a in MIXES) + " |")
    print("| ---: | ---: | --- |" + " ---: |" * len(MIXES))
    for h in args.history:
        split = cold_user_split(ds, fraction=0.2, seed=0, history=h)
        train = split.train
        model = create_model("tokrec").fit(train, vectors)
        test = split.test.interactions.sort_values(["user_id", "timestamp", "item_id"], kind="stable")
        users = sorted(set(test["user_id"]))
        rows = train.user_vocab.encode(users)
        # on a catalog scored by retrieval (>= 10,000 items) the items not retrieved are -inf: they take the row's
        # lowest finite score, below every retrieved item, so that the mix is defined and a = 0 ranks as the model
        raw = np.vstack([model.score_rows(int(r)) for r in rows])
        low = np.where(np.isfinite(raw), raw, np.inf).min(axis=1, keepdims=True)
        warm = znorm_rows(np.where(np.isfinite(raw), raw, low - 1.0))
        new = znorm_rows(model.new_user_scores(int(model.user_time_.max()))[None, :])
        seen = train.interaction_matrix()[rows]
        for name, events in (("all", test), ("next", test.groupby("user_id", sort=False).head(1))):
            rel = relevant(train, rows, events)
            cells = [f"{ndcg_from_scores((1 - a) * warm + a * new, rel, seen):.4f}" for a in MIXES]
            print(f"| {h} | {len(users)} | {name} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
