"""Approximate nearest-neighbour indexes over float32 vectors (faiss, inner product).

One place that builds them, for the model's own retrieval (``tokrec``'s text neighbours and candidate
retrieval on large catalogs) and for the service's :class:`tokrec.serve.index.VectorIndex`.
IVF-Flat by default (``sqrt(n)`` k-means cells, ``nprobe`` scanned per query), HNSW on request; see
``tokrec.serve.index`` for the recall figures behind the default.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

AnnKind = Literal["ivf", "hnsw"]
DEFAULT_ANN_KIND: AnnKind = "ivf"
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 80
HNSW_EF_SEARCH = 128


def ivf_cells(n: int) -> int:
    """Number of IVF cells for ``n`` vectors: ``sqrt(n)``, within [16, 4096]."""
    return int(min(4096, max(16, round(np.sqrt(n)))))


def default_nprobe(nlist: int) -> int:
    """Cells scanned per query: 1/32 of them, at least 8."""
    return int(min(nlist, max(8, nlist // 32)))


def build_ann(vectors: np.ndarray, kind: AnnKind = DEFAULT_ANN_KIND, *, seed: int = 0):
    """An inner-product faiss index over ``vectors`` ``(n, d)`` float32 (entry i = row i)."""
    import faiss

    x = np.ascontiguousarray(vectors, dtype=np.float32)
    n, d = x.shape
    if kind == "hnsw":
        index: Any = faiss.IndexHNSWFlat(d, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
    elif kind == "ivf":
        nlist = max(1, min(ivf_cells(n), n // 39))  # faiss wants 39 training points per cell
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = seed
        rng = np.random.default_rng(seed)
        sample = x if n <= 64 * nlist else x[np.sort(rng.choice(n, 64 * nlist, replace=False))]
        index.train(sample)
    else:
        raise ValueError(f"unknown ANN index kind {kind!r} (ivf or hnsw)")
    index.add(x)
    return index


def search(
    index: Any, queries: np.ndarray, k: int, nprobe: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``(scores, ids)`` of the ``k`` best entries per query (ids -1 where fewer exist); ``nprobe`` for IVF."""
    import faiss

    if nprobe is not None and isinstance(index, faiss.IndexIVF):
        index.nprobe = int(min(nprobe, index.nlist))
    q = np.ascontiguousarray(queries, dtype=np.float32)
    return index.search(q, int(k))
