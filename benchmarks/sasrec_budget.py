"""A cheap ``text-sasrec`` for the tuner's blend: how good is it after how many epochs, on ml-100k warm?

Usage:
    .venv/bin/python benchmarks/sasrec_budget.py --set refit=none refit_seeds=1 lr=0.005 batch_size=64 patience=3 \
        [--splits ../shared/data/ml-100k-splits] [--test] [--out recs.csv] [-v]

Fits ``text-sasrec`` (the registry defaults plus ``--set``) on the training events of the tuner's validation
split (``tokrec.tuning.make_validation``: each user's last event of ``warm/train.csv`` held out, as
``tokrec recommend`` cuts it) and prints the fit seconds, the epochs run and chosen, the model's own
validation NDCG@10 at its chosen epoch (each user's last event of the validation training events) and the
NDCG@10 on the tuner's held-out events. With ``--test``: the same fitted network scores each user's whole
``warm/train.csv`` history (``TextSASRec.with_histories``, as the tuner's ``fit_tuned`` reuses it) and its top
100 are scored on ``warm/test.csv`` (the shared scorer's definitions). Item vectors: the default encoder and
template through the embedding cache, as ``tokrec recommend`` computes them.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd

from tokrec.config import parse_key_values
from tokrec.data.loaders import load_dataset
from tokrec.evaluation.metrics import score_recommendations
from tokrec.features import item_vectors_for
from tokrec.models.registry import create_model
from tokrec.tuning import make_validation

SPLITS = Path(__file__).resolve().parents[2] / "shared" / "data" / "ml-100k-splits"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--splits", type=Path, default=SPLITS)
    ap.add_argument(
        "--set", nargs="*", default=[], help="text-sasrec config overrides key=value (JSON values)"
    )
    ap.add_argument(
        "--test", action="store_true", help="also score the whole-history top 100 on warm/test.csv"
    )
    ap.add_argument("--out", type=Path, default=None, help="where to write that top 100 (CSV)")
    ap.add_argument("-v", "--verbose", action="store_true", help="log every epoch")
    a = ap.parse_args()
    if a.verbose:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    cfg = parse_key_values(a.set)
    ds = load_dataset(a.splits / "items.csv", a.splits / "warm" / "train.csv")
    vecs = item_vectors_for(ds, cache="default")
    val = make_validation(ds, seed=0)
    model = create_model("text-sasrec", cfg)
    t0 = time.perf_counter()
    model.fit(val.train, vecs)
    out = {
        "config": cfg,
        "fit_s": round(time.perf_counter() - t0, 1),
        "epochs_run": len(model.history_),
        "chosen_epoch": model.best_epoch_,
        "own_val_ndcg10": round(max((h["val_ndcg10"] for h in model.history_), default=float("nan")), 4),
        "tuner_val_ndcg10": round(val.ndcg(np.nan_to_num(model.score(val.user_ids), nan=-np.inf)), 4),
    }
    if a.test:
        recs = model.with_histories(ds).recommend_batch(None, k=100)
        if a.out:
            recs.to_csv(a.out, index=False)
        read = {"dtype": {"user_id": str, "item_id": str}}
        test = pd.read_csv(a.splits / "warm" / "test.csv", **read)
        train = pd.read_csv(a.splits / "warm" / "train.csv", **read)
        out["test_ndcg10"] = round(score_recommendations(recs, test, train)["ndcg@10"], 4)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
