"""Per-item arrays that grow when items are added online, without copying the catalog.

A model being served is copied for each online add (the copy gains the items, then replaces it; requests in
flight keep the old one), so its per-item arrays must not be written where the old model reads them. Copying
them instead costs the whole catalog per add (3 GB and seconds at a million items). :func:`grown` writes the new
rows into spare capacity of the buffer the old arrays are views of, which the old model never reads, and copies
only when that is not safe (a replaced row, no spare rows, or another copy that already grew from it).
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

import numpy as np
import scipy.sparse as sp

#: rows of spare capacity a grown per-item array keeps, as a share of its rows (at a million items 62,500
#: rows: the next 62,500 items added online are written in place instead of copying the catalog's arrays)
GROWTH_HEADROOM = 1 / 16
_in_use: dict[int, tuple[Any, int]] = {}  # id(buffer) -> (weak reference to it, rows handed out)
_in_use_lock = threading.Lock()


def grown(
    block: np.ndarray, n_new: int, rows: np.ndarray, values: np.ndarray | None, fill: float = 0.0
) -> np.ndarray:
    """``block`` with ``n_new`` rows of ``fill`` appended and ``values`` (if any) written at ``rows``; ``block`` itself
    is never written (a copy of the model may still read it).

    Appending to an array this function made writes into its spare rows when ``block`` is the longest view
    handed out of it (a model copy that grew from it before would own those rows: then it copies); otherwise,
    or when a row of ``block`` is replaced, a new buffer with :data:`GROWTH_HEADROOM` is filled. So an online
    add at a million items moves a few rows, not the 3 GB of the catalog's vectors and features, and a model
    and its grown copy share one buffer."""
    n_old = len(block)
    total = n_old + n_new
    replaces = len(rows) > 0 and int(rows.min()) < n_old
    buf = None if replaces else _reserve(block, total)
    if buf is None:
        buf = np.empty((total + int(total * GROWTH_HEADROOM), *block.shape[1:]), dtype=block.dtype)
        buf[:n_old] = block
        with _in_use_lock:
            _in_use[id(buf)] = (weakref.ref(buf), total)
            weakref.finalize(buf, _in_use.pop, id(buf), None)
    out = buf[:total]
    out[n_old:] = fill
    if values is not None:
        out[rows] = values
    return out


def with_headroom(block: np.ndarray) -> np.ndarray:
    """``block``'s values in a buffer with :data:`GROWTH_HEADROOM` spare rows (what a loaded model's per-item
    arrays are kept in, so that even the first item added online is written in place)."""
    return grown(block, 0, np.empty(0, dtype=np.int64), None)


def _reserve(block: np.ndarray, total: int) -> np.ndarray | None:
    """The buffer ``block`` is the leading, longest handed-out view of, with its first ``total`` rows now handed
    out; None when there is none, or it is too short, or another view extends past ``block``."""
    buf = block.base
    if not isinstance(buf, np.ndarray) or buf.dtype != block.dtype or buf.shape[1:] != block.shape[1:]:
        return None
    if len(buf) < total or not block.flags.c_contiguous or block.ctypes.data != buf.ctypes.data:
        return None
    with _in_use_lock:
        ref, used = _in_use.get(id(buf), (None, -1))
        if ref is None or ref() is not buf or used != len(block):
            return None
        _in_use[id(buf)] = (ref, total)
    return buf


def grown_rows(matrix: sp.csr_matrix, block: sp.csr_matrix) -> sp.csr_matrix:
    """``matrix`` with the rows of ``block`` appended (same columns), its three arrays grown by :func:`grown`:
    an online add at a million items appends one item's 50 text neighbours instead of copying the 50M entries of
    the catalog's neighbour lists, and ``matrix`` itself is never written."""
    if block.shape[1] != matrix.shape[1]:
        raise ValueError(f"block has {block.shape[1]} columns, the matrix {matrix.shape[1]}")
    nnz, n_rows = matrix.nnz, matrix.shape[0]
    add, new_rows = block.nnz, block.shape[0]
    if nnz + add > np.iinfo(matrix.indptr.dtype).max:  # past int32: scipy's stacking widens the index type
        return sp.vstack([matrix, block], format="csr").astype(matrix.dtype, copy=False)
    at = np.arange(nnz, nnz + add)
    data = grown(matrix.data[:nnz], add, at, block.data.astype(matrix.data.dtype, copy=False))
    indices = grown(matrix.indices[:nnz], add, at, block.indices.astype(matrix.indices.dtype, copy=False))
    ptr = np.arange(n_rows + 1, n_rows + 1 + new_rows)
    indptr = grown(matrix.indptr, new_rows, ptr, (block.indptr[1:] + nnz).astype(matrix.indptr.dtype))
    out = sp.csr_matrix((n_rows + new_rows, matrix.shape[1]), dtype=matrix.dtype)
    out.data, out.indices, out.indptr = data, indices, indptr  # set directly: the constructor may copy them
    return out


def csr_with_headroom(matrix: sp.csr_matrix) -> sp.csr_matrix:
    """``matrix`` (CSR) with its arrays in buffers with :data:`GROWTH_HEADROOM` spare entries (see
    :func:`with_headroom`)."""
    m = sp.csr_matrix(matrix)
    out = sp.csr_matrix(m.shape, dtype=m.dtype)
    out.data = with_headroom(m.data[: m.nnz])
    out.indices = with_headroom(m.indices[: m.nnz])
    out.indptr = with_headroom(m.indptr)
    return out
