#!/usr/bin/env python
"""The tuned default (`tokrec recommend`, tuning on) beside the tuned classical baselines, on every dataset.

    python benchmarks/tune_recs.py --datasets ml-100k shuffled beauty --splits warm cold --budget 60

* ``tokrec``: the public command, ``tokrec recommend --k 100 --tune-budget B`` (a validation split cut from
  the training file, the choice refitted on all of it); its wall time (load + embed from the cache + tune +
  fit + recommend) and its tuning table (each signal's validation NDCG@10 alone, its weight, the ablation)
  are printed. ``tokrec --no-tune`` is the shipped configuration.
* baselines: ``tokrec.tuning.tune_baseline`` (Optuna on the SAME validation split, ``--budget`` seconds
  each), refitted on all of the training file with the choice: EASE (lambda), recency-weighted EASE
  (lambda, half-life), item-kNN (neighbours), ALS (factors, regularisation, alpha), BPR (factors, rate,
  regularisation, iterations). On cold splits they cannot score new items (every score ties), so they
  run untuned and say so; ``hybrid-map`` (ALS + ridge map from MiniLM vectors) is the cold reference.
* ``shuffled``: MovieLens 100K (the warm split's train + test) with every user's timestamps permuted among
  their own events (seed 0), cut again leave-last-out: order carries nothing; plain EASE is the bar.

Every figure is ``../shared/bench/score_recs.py``'s NDCG@10 on the test file; test events are never used
for a choice. The machine may be shared: times are wall seconds of one run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from common import run_scorer, shared_dir

BASELINES = ["ease", "ease-recency", "itemknn", "als", "bpr"]


def shuffled_ml100k(shared: Path, out: Path) -> Path:
    """ml-100k with each user's timestamps permuted among their own events, re-split leave-last-out."""
    from tokrec.data.loaders import load_dataset
    from tokrec.evaluation.splits import leave_last_out

    src = shared / "data" / "ml-100k-splits"
    df = pd.concat(
        [
            pd.read_csv(src / "warm" / f"{p}.csv", dtype={"user_id": str, "item_id": str})
            for p in ("train", "test")
        ]
    )
    rng = np.random.default_rng(0)
    df = df.sort_values(["user_id", "timestamp", "item_id"], kind="stable").reset_index(drop=True)
    ts = df["timestamp"].to_numpy().copy()
    for _, idx in df.groupby("user_id", sort=False).indices.items():
        ts[idx] = ts[idx][rng.permutation(len(idx))]
    df["timestamp"] = ts
    (out / "warm").mkdir(parents=True, exist_ok=True)
    df.to_csv(out / "all.csv", index=False)
    ds = load_dataset(src / "items.csv", out / "all.csv")
    split = leave_last_out(ds)
    cols = ["user_id", "item_id", "timestamp"]
    split.train.interactions[cols].to_csv(out / "warm" / "train.csv", index=False)
    split.test.interactions[cols].to_csv(out / "warm" / "test.csv", index=False)
    (out / "items.csv").write_text((src / "items.csv").read_text())
    return out


def score(shared: Path, recs: Path, d: Path, split: str) -> float:
    cand = d / "cold" / "candidates.csv" if split == "cold" else None
    scorer = shared / "bench" / "score_recs.py"
    return run_scorer(scorer, recs, d / split / "test.csv", d / split / "train.csv", cand)["ndcg@10"]


def run_cli(d: Path, split: str, out: Path, extra: list[str]) -> tuple[Path, float, str]:
    cmd = [
        sys.executable,
        "-m",
        "tokrec.cli.main",
        "recommend",
        "--items",
        str(d / "items.csv"),
        "--interactions",
        str(d / split / "train.csv"),
        "--k",
        "100",
        "--output",
        str(out),
        *extra,
    ]
    if split == "cold":
        cmd += ["--candidates", str(d / "cold" / "candidates.csv")]
    t = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode:
        sys.exit(res.stderr)
    return out, time.perf_counter() - t, res.stderr


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shared")
    ap.add_argument("--datasets", nargs="*", default=["ml-100k", "shuffled", "beauty"])
    ap.add_argument("--splits", nargs="*", default=["warm", "cold"])
    ap.add_argument("--budget", type=float, default=60.0, help="tuning seconds per model (default 60)")
    ap.add_argument("--baselines", nargs="*", default=BASELINES)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--no-tokrec",
        action="store_true",
        help="the baselines only (a budget large enough for them would be a long one for tokrec's command)",
    )
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    shared = shared_dir(args.shared, "data")
    from tokrec.data.loaders import load_dataset
    from tokrec.features import item_vectors_for
    from tokrec.models.registry import create_model
    from tokrec.tuning import baseline_model, tune_baseline

    work = Path(tempfile.mkdtemp(prefix="tokrec-tune-"))
    folders = {
        "ml-100k": shared / "data" / "ml-100k-splits",
        "beauty": shared / "data" / "amazon-beauty-splits",
    }
    print(
        "| dataset | split | model | tuning | NDCG@10 | seconds |\n| --- | --- | --- | --- | ---: | ---: |",
        flush=True,
    )
    for name in args.datasets:
        d = shuffled_ml100k(shared, work / "shuffled") if name == "shuffled" else folders[name]
        for split in args.splits:
            if name == "shuffled" and split == "cold":
                continue
            rows = []
            table = ""
            if not args.no_tokrec:
                out, secs, log = run_cli(
                    d,
                    split,
                    work / f"{name}-{split}-tokrec.csv",
                    ["--tune-budget", str(args.budget), "--threads", str(args.threads)],
                )
                rows.append(("tokrec", "tuned (fit + tune + recommend)", score(shared, out, d, split), secs))
                table = "\n".join(
                    line for line in log.splitlines() if not line.startswith(("encoding", "tokrec recommend"))
                )
                out, secs, _ = run_cli(
                    d,
                    split,
                    work / f"{name}-{split}-default.csv",
                    ["--no-tune", "--threads", str(args.threads)],
                )
                rows.append(("tokrec", "shipped defaults (--no-tune)", score(shared, out, d, split), secs))
            ds = load_dataset(d / "items.csv", d / split / "train.csv")
            cands = None
            if split == "cold":
                cands = pd.read_csv(d / "cold" / "candidates.csv", dtype=str)["item_id"].tolist()
            for b in args.baselines if split == "warm" else ["ease", "hybrid-map"]:
                model_name, how, cfg = baseline_model(b), "defaults", {}
                t = time.perf_counter()
                if split == "warm" and b in args.baselines:
                    r = tune_baseline(b, ds, budget_s=args.budget)
                    print(r.table(), file=sys.stderr, flush=True)
                    cfg, how = (
                        r.config,
                        f"tuned ({r.trials} trials, val {r.val_ndcg:.4f}): {json.dumps({k: v for k, v in r.config.items() if k not in ('seed', 'threads')})}",
                    )
                elif split == "cold":
                    how = (
                        "defaults (cannot score new items)"
                        if b == "ease"
                        else "defaults (ALS + ridge map from MiniLM)"
                    )
                m = create_model(model_name, cfg)
                m.fit(ds, item_vectors_for(ds) if m.needs_item_vectors or m.scores_new_items else None)
                p = work / f"{name}-{split}-{b}.csv"
                m.recommend_batch(k=100, candidates=cands).to_csv(p, index=False)
                rows.append((b, how, score(shared, p, d, split), time.perf_counter() - t))
                if split == "warm" and b == "ease":  # plain EASE as shipped, the bar on the shuffled log
                    m = create_model("ease", {}).fit(ds)
                    p = work / f"{name}-{split}-ease-default.csv"
                    m.recommend_batch(k=100).to_csv(p, index=False)
                    rows.append(("ease", "defaults (lambda 300)", score(shared, p, d, split), 0.0))
            for model, how, ndcg, secs in rows:
                print(f"| {name} | {split} | {model} | {how} | {ndcg:.4f} | {secs:.0f} |", flush=True)
            others = [r[2] for r in rows if r[0] != "tokrec"]
            ratio = (
                f"tuned tokrec / best baseline = {rows[0][2] / max(others):.3f}"
                if others and not args.no_tokrec
                else f"best baseline {max(others):.4f}"
                if others
                else "no baseline run"
            )
            print(f"\n{name} {split}: {ratio}\n```\n{table}\n```\n", flush=True)


if __name__ == "__main__":
    main()
