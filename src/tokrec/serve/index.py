"""Vector retrieval over the serving catalog: exact (numpy) or approximate (faiss, inner product).

:class:`VectorIndex` reads the fitted catalog's item vectors in place (the array it is given, shared with
the model: never copied, never written), keeps the rows added online in a small growable block of its own
and the fitted rows replaced online beside them, and, for large catalogs, holds a faiss index over the
vectors: IVF with 8-bit codes by default (``sqrt(n)`` k-means cells, ``nprobe`` of them scanned per query;
:mod:`tokrec.ann`), or HNSW. Neither replaces a vector in place, so a changed item is added
as a new index entry and the old entry goes stale: the index maps each entry to its catalog row, and
every candidate is re-scored exactly against the *current* matrix, so a stale entry only costs one
candidate slot. New items are added to the index at once (IVF assigns them to their nearest cell).
Search results are catalog rows with exact inner-product scores.

Why IVF by default: on a 100,000-item synthetic catalog, with user vectors made from real histories
(mixtures of topics, many near-ties), HNSW (M=32, efSearch=256) found 0.89 of the exact top 10 and
needed efSearch=1024 (2.9 ms/query) for 0.97, while IVF-Flat (256 cells, nprobe 8) found 0.99 in
0.8 ms/query and trained in a fraction of HNSW's build time (``benchmarks/serve_load.py``). With 8-bit codes
instead of the vectors themselves, on the 200,000 MiniLM vectors of a 200k-item bundle, the exact top 10 of 1,000
item queries and 1,000 five-item mixtures after re-scoring 100 candidates was found as often as with IVF-Flat (1.000
and 0.9745 both), at half the search time and a quarter of the memory (``benchmarks/ann_codec.py``).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np

from tokrec import ann as ann_lib
from tokrec.ann import (  # noqa: F401  (re-exported: the service's names)
    DEFAULT_ANN_KIND,
    HNSW_EF_CONSTRUCTION,
    HNSW_EF_SEARCH,
    HNSW_M,
    AnnKind,
    build_ann,
    default_nprobe,
    ivf_cells,
)

#: catalogs at least this large get an ANN index (smaller ones are searched exactly)
ANN_THRESHOLD = 20_000
ANN_FILE = "ann.faiss"


def build_index(vectors: np.ndarray, kind: AnnKind = DEFAULT_ANN_KIND):
    """The service's ANN index over item vectors (the one saved as ``ann.faiss`` and the one built at load):
    IVF with 8-bit codes (every candidate it proposes is re-scored exactly), or HNSW."""
    return build_ann(vectors, kind, codec="sq8")


def write_ann(index, directory: Path) -> None:
    """Writes ``index`` as ``directory/ann.faiss`` (faiss's binary format, not pickle)."""
    import faiss

    tmp = Path(directory) / f".{ANN_FILE}.tmp"
    faiss.write_index(index, str(tmp))
    tmp.replace(Path(directory) / ANN_FILE)


def ann_kind_of(index: Any) -> str | None:
    import faiss

    if isinstance(index, faiss.IndexHNSWFlat):
        return "hnsw"
    if isinstance(index, faiss.IndexIVFScalarQuantizer | faiss.IndexIVFFlat):
        return "ivf"
    return None


class VectorIndex:
    """Item vectors with exact and (optionally) approximate search.

    Args:
        vectors: float32 ``(n, d)``, the fitted catalog's rows: read in place, never written (rows changed
            online are kept beside it), so the caller's array (the bundle's, shared with the model) is
            the only copy in memory.
        ann: build or use an ANN index (default: when ``n >= ANN_THRESHOLD``).
        ann_path: a saved index (``ann.faiss``) to load instead of building one, used when its kind,
            size and dimension match.
        kind: ``"ivf"`` (default) or ``"hnsw"``.
        ef_search: HNSW search breadth.
        nprobe: IVF cells scanned per query (default :func:`default_nprobe`).
    """

    def __init__(
        self,
        vectors: np.ndarray,
        *,
        ann: bool | None = None,
        ann_path: Path | None = None,
        kind: AnnKind = DEFAULT_ANN_KIND,
        ef_search: int = HNSW_EF_SEARCH,
        nprobe: int | None = None,
    ) -> None:
        n, d = vectors.shape
        self.dim = d
        self._base = np.ascontiguousarray(vectors, dtype=np.float32)  # no copy for a float32 C array
        self._source = vectors  # the array the fitted rows are read from (see shares / rebase)
        self._n_base = n
        self._extra = np.zeros((16, d), dtype=np.float32)  # rows n, n + 1, ... added online
        self._replaced: dict[int, np.ndarray] = {}  # fitted rows whose vector changed online
        self._is_replaced = np.zeros(0, dtype=bool)  # the same as a mask over the fitted rows, when any
        self._n = n
        self._lock = threading.Lock()
        self.kind = kind
        self.ef_search = ef_search
        self.nprobe = nprobe
        self.ann_: Any = None
        self.entry_rows_ = np.arange(n, dtype=np.int64)  # ANN entry -> catalog row
        # sum and Gram matrix of the vectors: exact catalog-wide mean / deviation of q . z for any q
        self._sum = np.zeros(d, dtype=np.float64)
        self._gram = np.zeros((d, d), dtype=np.float64)
        for s in range(0, n, 65_536):
            blk = self._base[s : s + 65_536].astype(np.float64)
            self._sum += blk.sum(axis=0)
            self._gram += blk.T @ blk
        use_ann = n >= ANN_THRESHOLD if ann is None else ann
        if use_ann and n > 0:
            self.ann_ = self._configure(self._load_or_build(ann_path))

    def _load_or_build(self, ann_path: Path | None):
        import faiss

        if ann_path is not None and Path(ann_path).is_file():
            # read_index already returns the concrete class; faiss.downcast_index would make a wrapper
            # that does not own the index, which is freed under it when the original goes away.
            index: Any = faiss.read_index(str(ann_path))
            # an 8-bit index stores padded vectors; an IVF-Flat one from an older bundle is used as it is
            dims = (self.dim, ann_lib.stored_dim(self.dim, "sq8"))
            if ann_kind_of(index) == self.kind and index.ntotal == self._n and index.d in dims:
                return index
        return build_index(self._base, self.kind)

    def _configure(self, index: Any) -> Any:
        if self.kind == "hnsw":
            index.hnsw.efSearch = self.ef_search
        else:
            index.nprobe = self.nprobe or default_nprobe(index.nlist)
        return index

    # ---- contents ------------------------------------------------------------------------------
    def __len__(self) -> int:
        return self._n

    def take(self, rows: np.ndarray | list[int]) -> np.ndarray:
        """The current vectors of catalog ``rows``: float32 ``(len(rows), d)``, a new array."""
        rows = np.asarray(rows, dtype=np.int64)
        nb = self._n_base
        extra, replaced = self._extra, self._replaced
        if len(rows) == 0 or (not replaced and rows.max() < nb):
            return self._base[rows]
        out = np.empty((len(rows), self.dim), dtype=np.float32)
        fitted = rows < nb
        out[fitted] = self._base[rows[fitted]]
        out[~fitted] = extra[rows[~fitted] - nb]
        if replaced:
            for j in np.flatnonzero(fitted)[self._is_replaced[rows[fitted]]]:
                out[j] = replaced[int(rows[j])]
        return out

    def row(self, row: int) -> np.ndarray:
        """The current vector of one catalog row ``(d,)`` (a copy)."""
        return self.take(np.array([row]))[0]

    def shares(self, vectors: np.ndarray) -> bool:
        """Whether the fitted rows are read from ``vectors`` (the very array)."""
        return self._source is vectors and np.shares_memory(self._base[:1], vectors[:1])

    def rebase(self, vectors: np.ndarray) -> None:
        """Reads the fitted rows from ``vectors`` from now on: an array whose first rows hold the same values
        (the model's vectors after it grew by items added online; the rows replaced online stay the index's
        own), so that the index and the model keep sharing one copy."""
        if vectors.shape[1:] != (self.dim,) or len(vectors) < self._n_base or vectors.dtype != np.float32:
            raise ValueError(f"cannot rebase {self._n_base} rows of dimension {self.dim} on {vectors.shape}")
        self._base = vectors[: self._n_base]
        self._source = vectors

    @property
    def uses_ann(self) -> bool:
        return self.ann_ is not None

    def set(self, row: int, vector: np.ndarray) -> None:
        """Sets the vector of catalog row ``row``; ``row == len(self)`` appends a new row."""
        v = np.asarray(vector, dtype=np.float32).reshape(-1)
        if v.shape[0] != self.dim:
            raise ValueError(f"vector has dimension {v.shape[0]}, the index {self.dim}")
        with self._lock:
            if row > self._n or row < 0:
                raise IndexError(f"row {row} out of range (n = {self._n})")
            if row < self._n:
                old = self.take(np.array([row]))[0].astype(np.float64)
                self._sum -= old
                self._gram -= np.outer(old, old)
            nb = self._n_base
            if row >= nb:
                if row - nb == len(self._extra):
                    # a new block, filled before it is published: readers see the old one or the new one
                    grown = np.zeros((2 * len(self._extra), self.dim), dtype=np.float32)
                    grown[: len(self._extra)] = self._extra
                    grown[row - nb] = v
                    self._extra = grown
                else:
                    self._extra[row - nb] = v
            else:
                if not len(self._is_replaced):
                    self._is_replaced = np.zeros(nb, dtype=bool)
                self._replaced[row] = v
                self._is_replaced[row] = True
            self._n = max(self._n, row + 1)
            v64 = v.astype(np.float64)
            self._sum += v64
            self._gram += np.outer(v64, v64)
            if self.ann_ is not None:
                ann_lib.add(self.ann_, v.reshape(1, -1))
                self.entry_rows_ = np.append(self.entry_rows_, row)

    # ---- search --------------------------------------------------------------------------------
    def exact_scores(self, query: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        """Inner products of ``query`` ``(d,)`` with every row (or with ``rows``): float32 ``(n,)``."""
        q = np.asarray(query, dtype=np.float32)
        if rows is not None:
            return self.take(rows) @ q
        n, nb = self._n, self._n_base
        scores = np.empty(n, dtype=np.float32)
        scores[:nb] = self._base @ q
        scores[nb:] = self._extra[: n - nb] @ q
        for r, v in list(self._replaced.items()):
            scores[r] = v @ q
        return scores

    def score_stats(self, query: np.ndarray) -> tuple[float, float]:
        """Mean and standard deviation of ``query . z`` over every catalog row, in O(d^2) (no scan)."""
        if self._n == 0:
            return 0.0, 1.0
        q = np.asarray(query, dtype=np.float64)
        mean = float(q @ self._sum) / self._n
        var = float(q @ self._gram @ q) / self._n - mean * mean
        return mean, float(np.sqrt(max(var, 0.0)))

    def search(self, query: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``n`` rows with the highest inner product with ``query`` (distinct rows, best first).

        Uses the ANN index when built (candidates re-scored exactly), else exact search.

        Returns:
            ``(rows, scores)``: int64 ``(m,)`` and float32 ``(m,)``, ``m <= n``.
        """
        q = np.ascontiguousarray(np.asarray(query, dtype=np.float32).reshape(1, -1))
        if self.ann_ is None or n >= self._n:
            scores = self.exact_scores(q[0])
            top = _top(scores, n)
            return top, scores[top]
        with self._lock:
            entries = ann_lib.search(self.ann_, q, n)[1][0]
            entry_rows = self.entry_rows_
        entries = entries[entries >= 0]
        rows = np.unique(entry_rows[entries])
        scores = self.exact_scores(q[0], rows)
        order = _top(scores, n)
        return rows[order], scores[order]


def _top(scores: np.ndarray, n: int) -> np.ndarray:
    """Indices of the ``n`` largest finite values, best first (ties: lower index first).

    One partition pass: NaN and -inf sort after every finite value in ``argpartition(-scores)``.
    """
    if n <= 0 or len(scores) == 0:
        return np.empty(0, dtype=np.int64)
    part = np.argpartition(-scores, n - 1)[:n] if n < len(scores) else np.arange(len(scores))
    part = part[np.isfinite(scores[part])]
    order = np.lexsort((part, -scores[part]))
    return part[order].astype(np.int64, copy=False)
