"""Approximate nearest-neighbour indexes over float32 vectors (faiss, inner product).

One place that builds them, for the model's own retrieval (``tokrec``'s text neighbours and candidate
retrieval on large catalogs) and for the service's :class:`tokrec.serve.index.VectorIndex`.
IVF by default (``sqrt(n)`` k-means cells, ``nprobe`` scanned per query), HNSW on request; see
``tokrec.serve.index`` for the recall figures behind the default.

An IVF index stores its vectors either as they are (``codec="flat"``: the scores it returns are exact) or as
8-bit codes of their residuals to the cell centroid (``codec="sq8"``: a quarter of the memory, scores
approximate). Every index that only *proposes* candidates which are then scored exactly (the service's
similar-items search, the model's candidate retrieval) uses ``sq8``: at a million 384-d items that is 0.4
instead of 1.5 GB per index, and the exact re-scoring keeps the ranking the same for the candidates found
(recall: the figures in ``tokrec.serve.index``). The model's text-neighbour join (:func:`ivf_join`, every
item a query) keeps no index: it computes exact inner products cell by cell. faiss scans 8-bit codes with
SIMD only when the dimension is a multiple of 16 (at 409 dimensions a query took 10x as long as at 416), so
an ``sq8`` index stores its vectors padded with zeros to the next multiple of 16 (:func:`stored_dim`);
:func:`search` and :func:`add` pad what they are given, and the inner products do not change.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

AnnKind = Literal["ivf", "hnsw"]
AnnCodec = Literal["flat", "sq8"]
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


#: cells scanned per query by :func:`join_nprobe`, whatever the pool's size
JOIN_NPROBE = 32


def join_cells(n: int) -> int:
    """IVF cells for a neighbour search in which every one of ``n`` vectors is also a query (the model's
    text neighbours): ``4 sqrt(n)``, within [16, 65536] (faiss's guideline for a million vectors is
    4-16 sqrt(n)). With :func:`join_nprobe`'s fixed cell count scanned per query, a query reads
    ``32 n / (4 sqrt(n)) = 8 sqrt(n)`` vectors, so all the queries cost O(n^1.5), not the O(n^2 / 16) of
    :func:`ivf_cells` with ``2 x`` :func:`default_nprobe`: at a million clustered 384-d vectors 0.77 against
    5.3 ms a query, recall@50 0.996 against 0.880 (``benchmarks/neighbour_search.py``)."""
    return int(min(65536, max(16, round(4 * np.sqrt(n)))))


def join_nprobe(nlist: int) -> int:
    """Cells scanned per query of a :func:`join_cells` index: :data:`JOIN_NPROBE` (all of them if fewer)."""
    return int(min(nlist, JOIN_NPROBE))


def ivf_join(
    pool: np.ndarray,
    k: int,
    queries: np.ndarray | None = None,
    own: np.ndarray | None = None,
    *,
    seed: int = 0,
    batch: int = 16_384,
) -> tuple[np.ndarray, np.ndarray]:
    """Many queries' ``k`` best rows of ``pool`` by inner product at once: ``(scores, positions)``, each
    ``(len(queries), k)``, best first, exact scores; -inf / -1 where a query has fewer. ``queries`` None:
    the pool's own rows are the queries (a self-join). ``own[r]``: a pool position query ``r`` never gets
    (its own item; -1 for none; in a self-join row ``r`` unless given).

    The same answer as a faiss IVF search of :func:`join_cells` cells with :func:`join_nprobe` cells scanned
    per query (each query compared with the rows of the cells whose centroids are nearest it; spherical
    k-means cells), computed in another order. When every item of a catalog is a query (the model's text
    neighbours), faiss scans each query's cells from memory one query at a time, which is bound by memory
    traffic (a million MiniLM vectors: about 8 minutes on 2 cores). Here the queries are taken in batches
    of neighbouring cells, and within a batch each probed cell is compared with all the batch's queries
    that probe it in one matrix product (BLAS) and a top-k per query, the partial top-k lists merged at the
    end of the batch: each cell is read once per batch, not once per query (about 3 minutes, k-means
    included; ``benchmarks/neighbour_search.py`` prints both, with their recall).
    """
    import faiss
    import torch

    x = np.ascontiguousarray(pool, dtype=np.float32)
    n, d = x.shape
    q = x if queries is None else np.ascontiguousarray(queries, dtype=np.float32)
    m = len(q)
    if own is None:
        own = np.arange(m, dtype=np.int64) if queries is None else np.full(m, -1, dtype=np.int64)
    own = np.asarray(own, dtype=np.int64)
    kk = min(k, n)
    scores = np.full((m, kk), -np.inf, dtype=np.float32)
    found = np.full((m, kk), -1, dtype=np.int64)
    if m == 0 or n == 0 or kk == 0:
        return scores, found
    nlist = max(1, min(join_cells(n), n // 39))  # faiss wants 39 training points per cell
    rng = np.random.default_rng(seed)
    sample = x if n <= 64 * nlist else x[np.sort(rng.choice(n, 64 * nlist, replace=False))]
    km = faiss.Kmeans(d, nlist, niter=10, seed=seed, spherical=True, max_points_per_centroid=64)
    km.train(sample)
    nprobe = join_nprobe(nlist)
    probes = km.index.search(q, nprobe)[1]  # each query's cells, nearest first
    cell = probes[:, 0] if queries is None else km.index.search(x, 1)[1].ravel()
    by_cell = np.argsort(cell, kind="stable")
    starts = np.searchsorted(cell[by_cell], np.arange(nlist + 1))
    sorted_pool = torch.from_numpy(np.ascontiguousarray(x[by_cell]))  # a cell is a slice
    at = np.empty(n, dtype=np.int64)
    at[by_cell] = np.arange(n)  # a pool position's row in sorted_pool
    own_at = np.where(own >= 0, at[np.maximum(own, 0)], -1)
    qt = torch.from_numpy(q)
    query_order = by_cell if queries is None else np.argsort(probes[:, 0], kind="stable")
    for b0 in range(0, m, batch):
        rows = query_order[b0 : b0 + batch]
        pr = probes[rows]
        slot_q = np.repeat(np.arange(len(rows)), nprobe)
        slot = np.tile(np.arange(nprobe), len(rows))
        cells = pr.ravel()
        o = np.argsort(cells, kind="stable")
        slot_q, slot, cells = slot_q[o], slot[o], cells[o]
        keep = cells >= 0
        slot_q, slot, cells = slot_q[keep], slot[keep], cells[keep]
        edges = np.flatnonzero(np.r_[True, cells[1:] != cells[:-1], True])
        top_v = torch.full((len(rows), nprobe, kk), -torch.inf)
        top_i = torch.full((len(rows), nprobe, kk), -1, dtype=torch.int64)
        block = qt[torch.from_numpy(rows)]
        for a, e in zip(edges[:-1], edges[1:], strict=True):
            s0, s1 = int(starts[cells[a]]), int(starts[cells[a] + 1])
            if s1 == s0:
                continue
            who = torch.from_numpy(slot_q[a:e])
            sims = block[who] @ sorted_pool[s0:s1].T
            mine = own_at[rows[slot_q[a:e]]] - s0
            hit = np.flatnonzero((mine >= 0) & (mine < s1 - s0))
            if len(hit):
                sims[torch.from_numpy(hit), torch.from_numpy(mine[hit])] = -torch.inf
            kc = min(kk, s1 - s0)
            v, i = torch.topk(sims, kc, dim=1, sorted=False)
            where = torch.from_numpy(slot[a:e])
            top_v[who, where, :kc] = v
            top_i[who, where, :kc] = i + s0
        v, i = torch.topk(top_v.reshape(len(rows), -1), kk, dim=1)
        ids = torch.gather(top_i.reshape(len(rows), -1), 1, i).numpy()
        vals = v.numpy()
        scores[rows] = vals
        found[rows] = np.where(np.isfinite(vals) & (ids >= 0), by_cell[np.maximum(ids, 0)], -1)
    return scores, found


def stored_dim(d: int, codec: AnnCodec = "flat") -> int:
    """The dimension an index of ``d``-dimensional vectors stores: ``d``, or for ``sq8`` the next multiple of 16."""
    return d if codec == "flat" else -(-d // 16) * 16


def _width(x: np.ndarray, d: int) -> np.ndarray:
    """``x`` as C-contiguous float32 rows of ``d`` columns (zeros appended where it has fewer)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.shape[1] == d:
        return x
    out = np.zeros((len(x), d), dtype=np.float32)
    out[:, : x.shape[1]] = x
    return out


def add(index: Any, vectors: np.ndarray) -> None:
    """Adds ``vectors`` to ``index`` (padded to its stored dimension), in blocks (no padded copy of them all)."""
    for s in range(0, len(vectors), 65_536):
        index.add(_width(vectors[s : s + 65_536], index.d))


def build_ann(
    vectors: np.ndarray,
    kind: AnnKind = DEFAULT_ANN_KIND,
    *,
    seed: int = 0,
    nlist: int | None = None,
    codec: AnnCodec = "flat",
):
    """An inner-product faiss index over ``vectors`` ``(n, d)`` float32 (entry i = row i); ``nlist``: IVF
    cells (default :func:`ivf_cells`; at most one per 39 vectors, faiss's training minimum); ``codec``: how
    an IVF index stores the vectors (see the module's docstring; HNSW is always flat)."""
    import faiss

    x = np.asarray(vectors, dtype=np.float32)
    n, d = x.shape
    if kind == "hnsw":
        index: Any = faiss.IndexHNSWFlat(d, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
    elif kind == "ivf":
        nlist = max(1, min(nlist or ivf_cells(n), n // 39))  # faiss wants 39 training points per cell
        ds = stored_dim(d, codec)
        quantizer = faiss.IndexFlatIP(ds)
        if codec == "sq8":
            index = faiss.IndexIVFScalarQuantizer(
                quantizer, ds, nlist, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT
            )
        elif codec == "flat":
            index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
        else:
            raise ValueError(f"unknown IVF codec {codec!r} (flat or sq8)")
        index.cp.seed = seed
        rng = np.random.default_rng(seed)
        sample = x if n <= 64 * nlist else x[np.sort(rng.choice(n, 64 * nlist, replace=False))]
        index.train(_width(sample, ds))
    else:
        raise ValueError(f"unknown ANN index kind {kind!r} (ivf or hnsw)")
    add(index, x)
    return index


def search(
    index: Any, queries: np.ndarray, k: int, nprobe: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``(scores, ids)`` of the ``k`` best entries per query (ids -1 where fewer exist); ``nprobe`` for IVF.
    Queries are padded to the index's stored dimension (:func:`stored_dim`)."""
    import faiss

    if nprobe is not None and isinstance(index, faiss.IndexIVF):
        index.nprobe = int(min(nprobe, index.nlist))
    return index.search(_width(np.atleast_2d(queries), index.d), int(k))
