"""IVF with the vectors themselves (``flat``) against IVF with 8-bit codes (``sq8``), as the service uses them.

The service's indexes only propose candidates, which are then scored exactly; so what matters is whether the exact
top 10 is among the candidates. For 1,000 item queries (an item's own vector, as ``/items/{id}/similar`` asks) and
1,000 five-item mixtures (unit means of five random items, like a short history), this script takes each index's 100
candidates at the service's default ``nprobe``, re-scores them exactly, and prints recall@10 against the exact top 10,
the time per query and the index's size.

    python benchmarks/ann_codec.py MODEL_DIR/item_vectors.safetensors
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("vectors", help="a bundle's item_vectors.safetensors")
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    import faiss
    from safetensors.numpy import load_file

    from tokrec import ann

    x = np.ascontiguousarray(load_file(a.vectors)["vectors"], dtype=np.float32)
    n = len(x)
    rng = np.random.default_rng(a.seed)
    items = x[rng.choice(n, a.queries, replace=False)]
    mix = x[rng.choice(n, (a.queries, 5))].mean(axis=1)
    mix /= np.linalg.norm(mix, axis=1, keepdims=True)
    print(f"{n:,} vectors of {x.shape[1]} dimensions")
    for name, q in (("item", items), ("5-item mix", mix)):
        truth = np.argsort(-(q @ x.T), axis=1)[:, :10]
        for codec in ("flat", "sq8"):
            t0 = time.perf_counter()
            index = ann.build_ann(x, "ivf", codec=codec)
            built = time.perf_counter() - t0
            t0 = time.perf_counter()
            _, ids = ann.search(index, q, 100, ann.default_nprobe(index.nlist))
            per_query = (time.perf_counter() - t0) / len(q) * 1000
            recall = []
            for j in range(len(q)):
                cand = ids[j][ids[j] >= 0]
                top = cand[np.argsort(-(x[cand] @ q[j]))[:10]]
                recall.append(len(set(top) & set(truth[j])) / 10)
            size = faiss.serialize_index(index).nbytes / 2**20
            print(
                f"{name:>10s} {codec:>4s}: recall@10 {np.mean(recall):.4f}, {per_query:.3f} ms a query, "
                f"{size:.0f} MiB, built in {built:.1f}s"
            )


if __name__ == "__main__":
    main()
