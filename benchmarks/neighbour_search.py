"""The model's text-neighbour search on large pools: the index it used before and the one it uses now.

Usage:
    python benchmarks/neighbour_search.py [--items 1000000] [--dim 384] [--k 50] [--queries 2000] [--seed 0]

`tokrec`'s `prop` signal needs each item's k text neighbours among the items with events; above
`tokrec.models.signals.EXACT_NEIGHBOURS_MAX` pool rows they come from a faiss IVF index in which every item
is also a query. This script builds both layouts over the same synthetic clustered unit vectors (each a sum of
two of 2,000 random topic centres plus noise; a stand-in for text vectors, not MiniLM's), times each on the same
queries, and measures recall@k against the exact answer of those queries (one matrix product):

- before: `tokrec.ann.ivf_cells(n)` cells (sqrt(n)), `2 x default_nprobe` scanned per query (1/16 of the pool
  from 256 cells on: O(n^2 / 16) for all queries);
- now: `tokrec.ann.join_cells(n)` cells (4 sqrt(n)), `join_nprobe` (32) scanned per query (8 sqrt(n)
  vectors: O(n^1.5)).

It prints the build seconds, ms per query (faiss's threads; one run, so on a shared machine compare the two
rows of one run) and recall@k, and the projected time for every item as a query.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from tokrec import ann


def clustered_vectors(n: int, dim: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(2000, dim)).astype(np.float32)
    x = np.empty((n, dim), np.float32)
    for start in range(0, n, 100_000):
        m = min(100_000, n - start)
        a, b = rng.integers(0, 2000, m), rng.integers(0, 2000, m)
        x[start : start + m] = (
            centres[a] + 0.5 * centres[b] + 0.8 * rng.normal(size=(m, dim)).astype(np.float32)
        )
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--k", type=int, default=50)
    ap.add_argument("--queries", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    x = clustered_vectors(a.items, a.dim, a.seed)
    rng = np.random.default_rng(a.seed + 1)
    rows = rng.choice(a.items, a.queries, replace=False)
    q = x[rows]
    truth = []
    for start in range(0, len(q), 64):  # 64 x n similarities at a time
        sims = q[start : start + 64] @ x.T
        sims[np.arange(len(sims)), rows[start : start + 64]] = -np.inf  # never the item itself
        np.negative(sims, out=sims)
        truth.append(np.argpartition(sims, a.k, axis=1)[:, : a.k].copy())  # not a view of n columns
        del sims
    exact = np.vstack(truth)
    print(f"{a.items:,} vectors of {a.dim} dimensions, {a.queries} queries, k = {a.k}")
    print("| layout | cells | scanned per query | build s | ms per query | all items as queries | recall@k |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    layouts = {
        "before": (ann.ivf_cells(a.items), lambda nlist: 2 * ann.default_nprobe(nlist)),
        "now": (ann.join_cells(a.items), ann.join_nprobe),
    }
    for name, (cells, nprobe_of) in layouts.items():
        t0 = time.perf_counter()
        index = ann.build_ann(x, "ivf", nlist=cells, seed=a.seed)
        build = time.perf_counter() - t0
        nprobe = nprobe_of(index.nlist)
        t0 = time.perf_counter()
        _, ids = ann.search(index, q, a.k + 1, nprobe)
        per_query = (time.perf_counter() - t0) / len(q)
        found = [[j for j in row if j != r][: a.k] for row, r in zip(ids, rows, strict=True)]
        recall = np.mean([len(set(f) & set(t)) / a.k for f, t in zip(found, exact, strict=True)])
        scanned = nprobe * a.items / index.nlist
        print(
            f"| {name} | {index.nlist} | {scanned:,.0f} | {build:.1f} | {per_query * 1e3:.3f} "
            f"| {per_query * a.items / 60:.1f} min | {recall:.3f} |"
        )
        del index


if __name__ == "__main__":
    main()
