"""Benchmark the cross-encoder buy/not-buy classifier on the ml-100k warm split.

1. Fine-tunes (LoRA r=8 by default) on pairs from 80% of the users; prints sklearn's
   classification_report and ROC-AUC on the other 20% (held-out users): their test event given their
   whole training history vs sampled never-seen items, drawn uniformly and (separately) in proportion
   to popularity: the second asks whether it knows more than "popular items get watched".
2. Re-ranks the top ``--top-n`` of a first-stage recommendations file for the held-out users and
   scores before/after with the official scorer on those users' test events.

Usage:
    .venv/bin/python benchmarks/deep_classifier.py --recs RECS.csv [--max-pairs 4000] [--set key=value ...]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from tokrec.data.dataset import Dataset
from tokrec.models.cross_encoder import CrossEncoderClassifier, heldout_pairs, sample_pairs, split_users

SHARED = Path(__file__).resolve().parents[2] / "shared"


def score(recs: Path, test: Path, train: Path) -> dict[str, float]:
    cmd = [sys.executable, str(SHARED / "bench" / "score_recs.py"), str(recs), str(test), str(train)]
    return json.loads(
        subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--splits", type=Path, default=SHARED / "data" / "ml-100k-splits")
    ap.add_argument("--recs", type=Path, required=True, help="first-stage recommendations on the warm split")
    ap.add_argument("--top-n", type=int, default=20)
    ap.add_argument("--heldout-fraction", type=float, default=0.2)
    ap.add_argument("--eval-negatives", type=int, default=1)
    ap.add_argument(
        "--set", nargs="*", default=[], help="CrossEncoderConfig overrides key=value (JSON values)"
    )
    a = ap.parse_args()
    cfg: dict[str, object] = {}
    for kv in a.set:
        k, v = kv.split("=", 1)
        try:
            cfg[k] = json.loads(v)
        except json.JSONDecodeError:
            cfg[k] = v
    clf = CrossEncoderClassifier(cfg)
    c = clf.config
    items = pd.read_csv(a.splits / "items.csv", dtype=str, keep_default_na=False)
    train_path, test_path = a.splits / "warm" / "train.csv", a.splits / "warm" / "test.csv"
    train = pd.read_csv(train_path, dtype={"user_id": str, "item_id": str}).rename(
        columns={"rating": "value"}
    )
    test = pd.read_csv(test_path, dtype={"user_id": str, "item_id": str})
    ds = Dataset(train, items, name="ml-100k-warm")
    train_users, held = split_users(ds, a.heldout_fraction, c.seed)
    pairs = sample_pairs(
        ds,
        train_users,
        n_pairs=c.max_pairs,
        negatives=c.negatives,
        how=c.negative_sampling,
        history_items=c.history_items,
        seed=c.seed,
    )
    t0 = time.perf_counter()
    clf.fit(ds, pairs)
    fit_s = time.perf_counter() - t0
    evals = {}
    for how in ("uniform", "popularity"):
        evals[how] = clf.evaluate(
            ds,
            heldout_pairs(
                ds,
                held,
                negatives=a.eval_negatives,
                how=how,
                history_items=c.history_items,
                seed=c.seed,
                test=test,
            ),
        )
    print(f"config: {json.dumps(c.model_dump(mode='json'))}")
    print(f"training pairs {len(pairs)} from {len(train_users)} users; fit {fit_s:.0f}s (2-core CPU)")
    for how, ev in evals.items():
        print(
            f"held-out users {len(held)}, {how} negatives: evaluation pairs {ev['n_pairs']} ({ev['positives']} positives)"
        )
        print(ev["report"])
        print(f"ROC-AUC (held-out users, {how} negatives): {ev['roc_auc']:.4f}", flush=True)
    held_ids = set(ds.user_vocab.decode(held))
    recs = pd.read_csv(a.recs, dtype={"user_id": str, "item_id": str})
    recs = recs[recs["user_id"].isin(held_ids)]
    out = Path(tempfile.mkdtemp(prefix="deep_classifier."))
    test[test["user_id"].isin(held_ids)].to_csv(out / "test_heldout.csv", index=False)
    recs.to_csv(out / "before.csv", index=False)
    t0 = time.perf_counter()
    clf.rerank(ds, recs, top_n=a.top_n).to_csv(out / "after.csv", index=False)
    rr_s = time.perf_counter() - t0
    before = score(out / "before.csv", out / "test_heldout.csv", train_path)
    after = score(out / "after.csv", out / "test_heldout.csv", train_path)
    print(f"re-ranking top {a.top_n} of {a.recs.name} for {len(held_ids)} held-out users ({rr_s:.0f}s):")
    print(f"  before NDCG@10 {before['ndcg@10']:.4f} HR@10 {before['hr@10']:.4f}")
    print(f"  after  NDCG@10 {after['ndcg@10']:.4f} HR@10 {after['hr@10']:.4f}")
    print(
        json.dumps(
            {
                "roc_auc": {how: ev["roc_auc"] for how, ev in evals.items()},
                "before": before,
                "after": after,
                "fit_s": fit_s,
                "rerank_s": rr_s,
            }
        )
    )


if __name__ == "__main__":
    main()
