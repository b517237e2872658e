"""The model's text-neighbour search on large pools: the layouts it used before and the one it uses now.

Usage:
    python benchmarks/neighbour_search.py [--items 1000000] [--dim 384] [--k 50] [--queries 2000] [--seed 0]
    python benchmarks/neighbour_search.py --vectors MODEL_DIR/item_vectors.safetensors   # a fitted bundle's vectors

`tokrec`'s `prop` signal needs each item's k text neighbours among the items with events; above
`tokrec.models.signals.EXACT_NEIGHBOURS_MAX` pool rows every item is a query of a search over the pool. This
script runs three layouts over the same unit vectors — synthetic clustered ones by default (each a sum of two of
2,000 random topic centres plus noise; a stand-in for text vectors, not MiniLM's), or a file's (`--vectors`: a
`.npy` array or the first tensor of a `.safetensors` file, such as the `item_vectors.safetensors` that
`tokrec fit` writes into a bundle) — and measures recall@k against the exact answer of `--queries` sampled
queries (one matrix product):

- IVF sqrt(n) (the first): a faiss IVF index with `tokrec.ann.ivf_cells(n)` cells, `2 x default_nprobe` scanned
  per query (1/16 of the pool from 256 cells on: O(n^2 / 16) for all queries); timed on the sampled queries;
- IVF 4 sqrt(n) (the second): `tokrec.ann.join_cells(n)` cells, `join_nprobe` (32) scanned per query
  (8 sqrt(n) vectors: O(n^1.5)); timed on the sampled queries;
- IVF join (now, `tokrec.ann.ivf_join`): the second layout's cells and probes (spherical k-means), every item
  a query, computed cell by cell for batches of queries by matrix products; a batched method, so it is
  timed on every item as a query, k-means included.

It prints the build seconds (the faiss index; the k-means for the cell join is inside its total), ms per
query and the time for every item as a query (projected from the sample for the two IVF rows, measured for
the cell join), and recall@k. One run: on a shared machine compare the rows of one run.
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


def read_vectors(path: str) -> np.ndarray:
    """A ``.npy`` array or the first tensor of a ``.safetensors`` file, as unit float32 rows."""
    if path.endswith(".safetensors"):
        from safetensors.numpy import load_file

        x = next(iter(load_file(path).values()))
    else:
        x = np.load(path)
    x = np.ascontiguousarray(x, dtype=np.float32)
    x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    return x


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--k", type=int, default=50)
    ap.add_argument("--queries", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--vectors", help="a .npy or .safetensors file of vectors instead of synthetic ones")
    ap.add_argument("--skip-first", action="store_true", help="leave out the O(n^2) first layout")
    a = ap.parse_args()
    x = read_vectors(a.vectors) if a.vectors else clustered_vectors(a.items, a.dim, a.seed)
    n = len(x)
    rng = np.random.default_rng(a.seed + 1)
    rows = rng.choice(n, a.queries, replace=False)
    q = x[rows]
    truth = []
    for start in range(0, len(q), 64):  # 64 x n similarities at a time
        sims = q[start : start + 64] @ x.T
        sims[np.arange(len(sims)), rows[start : start + 64]] = -np.inf  # never the item itself
        np.negative(sims, out=sims)
        truth.append(np.argpartition(sims, a.k, axis=1)[:, : a.k].copy())  # not a view of n columns
        del sims
    exact = np.vstack(truth)

    def recall(found: list[list[int]] | np.ndarray) -> float:
        return float(np.mean([len(set(f) & set(t)) / a.k for f, t in zip(found, exact, strict=True)]))

    source = a.vectors or "synthetic clustered vectors"
    print(f"{n:,} vectors of {x.shape[1]} dimensions ({source}), {a.queries} queries, k = {a.k}")
    print("| layout | cells | read per query | build s | ms per query | all items as queries | recall@k |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    layouts = {
        "IVF sqrt(n), 1/16 scanned": (ann.ivf_cells(n), lambda nlist: 2 * ann.default_nprobe(nlist)),
        "IVF 4 sqrt(n), 32 scanned": (ann.join_cells(n), ann.join_nprobe),
    }
    if a.skip_first:
        del layouts["IVF sqrt(n), 1/16 scanned"]
    for name, (cells, nprobe_of) in layouts.items():
        t0 = time.perf_counter()
        index = ann.build_ann(x, "ivf", nlist=cells, seed=a.seed)
        build = time.perf_counter() - t0
        nprobe = nprobe_of(index.nlist)
        t0 = time.perf_counter()
        _, ids = ann.search(index, q, a.k + 1, nprobe)
        per_query = (time.perf_counter() - t0) / len(q)
        found = [[j for j in row if j != r][: a.k] for row, r in zip(ids, rows, strict=True)]
        scanned = nprobe * n / index.nlist
        print(
            f"| {name} | {index.nlist} | {scanned:,.0f} | {build:.1f} | {per_query * 1e3:.3f} "
            f"| {per_query * n / 60:.1f} min | {recall(found):.4f} |"
        )
        del index
    t0 = time.perf_counter()
    _, ids = ann.ivf_join(x, a.k, seed=a.seed)
    total = time.perf_counter() - t0
    cells = max(1, min(ann.join_cells(n), n // 39))
    read = ann.join_nprobe(cells) * n / cells
    print(
        f"| IVF join (now), 32 scanned | {cells} | {read:,.0f} | — "
        f"| {total / n * 1e3:.3f} | {total / 60:.1f} min | {recall(ids[rows]):.4f} |"
    )


if __name__ == "__main__":
    main()
