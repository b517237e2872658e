"""Benchmark ``gbdt-ranker`` against its own first stage on the ml-100k warm split (official scorer).

Usage:
    .venv/bin/python benchmarks/deep_gbdt.py [--vectors /tmp/vecs.npy] [--set key=value ...]

Prints the first stage's and the ranker's NDCG@10 / HR@10, the ranker's fit time, and the feature
importances (gain). Item vectors (all-MiniLM-L6-v2) give the text features; ``--no-vectors`` drops them.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import pandas as pd

from deep_sasrec import SCORER, load_split, load_vectors, score  # type: ignore[import-not-found]
from tokrec.config import parse_key_values
from tokrec.models.base import wants_item_vectors
from tokrec.models.gbdt_ranker import GBDTRanker
from tokrec.models.registry import create_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--splits", type=Path, default=SCORER.parents[1] / "data" / "ml-100k-splits")
    ap.add_argument("--vectors", default=None, help=".npy cache of the item vectors")
    ap.add_argument("--no-vectors", action="store_true")
    ap.add_argument("--set", nargs="*", default=[], help="GBDTRankerConfig overrides key=value (JSON values)")
    a = ap.parse_args()
    cfg = parse_key_values(a.set)
    ds, items = load_split(a.splits, "warm")
    vecs = None if a.no_vectors else load_vectors(items, a.vectors)
    users = pd.read_csv(a.splits / "warm" / "test.csv", dtype=str)["user_id"].unique().tolist()
    out = Path(tempfile.mkdtemp(prefix="deep_gbdt."))
    ranker = GBDTRanker(cfg)
    spec = ranker.config.first_stage
    t0 = time.perf_counter()
    first = create_model(spec.model, spec.config)
    first.fit(ds, vecs if wants_item_vectors(first) else None)
    first_s = time.perf_counter() - t0
    first.recommend_batch(users, k=100).to_csv(out / "first.csv", index=False)
    t0 = time.perf_counter()
    ranker.fit(ds, vecs)
    fit_s = time.perf_counter() - t0
    ranker.recommend_batch(users, k=100).to_csv(out / "ranker.csv", index=False)
    a_res, b_res = score(out / "first.csv", a.splits, "warm"), score(out / "ranker.csv", a.splits, "warm")
    print(
        f"first stage {spec.model} {json.dumps(spec.config)}: fit {first_s:.1f}s NDCG@10 {a_res['ndcg@10']:.4f} HR@10 {a_res['hr@10']:.4f}"
    )
    print(
        f"gbdt-ranker over its top {ranker.config.n_candidates}: fit {fit_s:.1f}s (validation cut + sources twice + LightGBM, {ranker.best_iteration_} trees) NDCG@10 {b_res['ndcg@10']:.4f} HR@10 {b_res['hr@10']:.4f}"
    )
    gains = dict(zip(ranker.feature_names_, ranker.booster_.feature_importance("gain").round(1), strict=True))
    print(
        "top features by gain:",
        ", ".join(f"{k}={v:.0f}" for k, v in sorted(gains.items(), key=lambda kv: -kv[1])[:10]),
    )
    print(json.dumps({"first_stage": a_res, "gbdt_ranker": b_res, "fit_s": fit_s, "config": cfg}))


if __name__ == "__main__":
    main()
