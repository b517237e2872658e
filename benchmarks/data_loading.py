#!/usr/bin/env python
"""Speed of tokrec's validated loaders against a bare ``pandas.read_csv`` on the same file, and of
the synthetic generator. Prints ratios measured in one run (absolute times on a shared 2-core
machine are noise).

Run from the repository root (the MovieLens data stays in ../shared, it is never copied):

    .venv/bin/python benchmarks/data_loading.py [--repeat 5] [--shared ../shared]

Without ../shared it benchmarks a synthetic CSV of the same shape instead.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from tokrec.data.loaders import load_dataset, load_interactions
from tokrec.data.movielens import load_movielens
from tokrec.data.synthetic import make_synthetic, write_synthetic


def best_of(fn: Callable[[], object], repeat: int) -> float:
    """Median wall time of ``repeat`` runs (after one warm-up), in seconds."""
    fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def row(label: str, seconds: float, ref: float | None = None) -> None:
    ratio = f"{seconds / ref:6.2f}x bare read_csv" if ref else ""
    print(f"{label:<58} {seconds * 1000:9.1f} ms  {ratio}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--shared", default=str(Path.cwd().parent / "shared"))
    a = ap.parse_args()
    splits = Path(a.shared) / "data" / "ml-100k-splits"
    with tempfile.TemporaryDirectory() as tmp:
        if (splits / "warm" / "train.csv").is_file():
            items, train = splits / "items.csv", splits / "warm" / "train.csv"
            print(f"data: {train} (MovieLens 100K warm train)")
        else:
            paths = write_synthetic(tmp, n_items=1682, n_users=943, events_per_user=(20, 190), seed=0)
            items, train = paths["items"], paths["interactions"]
            print(f"data: synthetic stand-in ({train}); ../shared is absent")
        n = len(pd.read_csv(train))
        print(f"rows: {n}\n")
        ref = best_of(lambda: pd.read_csv(train, dtype=str, keep_default_na=False), a.repeat)
        row("pandas.read_csv(dtype=str)  [reference]", ref, ref)
        row("load_interactions (parse + validate)", best_of(lambda: load_interactions(train), a.repeat), ref)
        row(
            "load_dataset (items + interactions -> Dataset)",
            best_of(lambda: load_dataset(items, train), a.repeat),
            ref,
        )  # noqa: E501
        ml = Path(a.shared) / "data" / "ml-100k"
        if (ml / "u.data").is_file():
            row(
                "load_movielens(ml-100k) (u.data + u.item + u.user)",
                best_of(lambda: load_movielens(ml), a.repeat),
                ref,
            )  # noqa: E501
        print()
        small = best_of(lambda: make_synthetic(n_items=1000, n_users=500), 1)
        big = best_of(lambda: make_synthetic(n_items=200_000, n_users=0), 1)
        row("make_synthetic(1000 items, 500 users)", small)
        row("make_synthetic(200,000 items, 0 users)", big)
        print(f"{'200k-item catalog / 1k-item dataset':<58} {big / small:9.1f}x")


if __name__ == "__main__":
    main()
