"""Numerical building blocks shared by the recommenders (numpy / scipy only, no state).

Shapes: ``n_users`` x ``n_items`` for score matrices, ``n_items`` x ``n_items`` for item-item
weights, item rows in item-vocab order. Sequences are each user's item rows, oldest first.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp

# the history weighting of user rows is the user profile's (tokrec.features), shared with every model
from tokrec.features import recency_weights as recency_weights
from tokrec.features import user_rows as user_rows

#: largest catalog for the dense item-item models (EASE needs ~16 bytes x n_items^2 while fitting)
MAX_DENSE_ITEMS = 30_000


def check_dense(n_items: int, what: str) -> None:
    """Raises ConfigError when an ``n_items x n_items`` dense matrix would be too large."""
    if n_items > MAX_DENSE_ITEMS:
        from tokrec.errors import ConfigError

        raise ConfigError(
            f"{what} needs a dense {n_items} x {n_items} matrix (catalog over {MAX_DENSE_ITEMS} items); "
            "use als, bpr or hybrid-map for catalogs this large"
        )


#: EASE solves in float64 up to this many items (16 bytes x N^2: 1 GB); larger ones in float32, in place
EASE_FLOAT64_MAX = 8_000


def ease_memory(n: int) -> int:
    """Peak bytes of :func:`ease_weights` on ``n`` items: 16 x N^2 in float64, 4 x N^2 (+ the sparse Gram of a
    block of users, bounded here by another 4 x N^2) in float32."""
    return int(16 * n * n) if n <= EASE_FLOAT64_MAX else int(8 * n * n)


def ease_weights(x: sp.csr_matrix, lam: float) -> np.ndarray:
    """EASE item-item weights (Steck 2019): ``B = I - P / diag(P)``, ``P = (X'X + lam I)^-1``, zero diagonal.

    Up to :data:`EASE_FLOAT64_MAX` items the inverse is taken in float64 (16 bytes x N^2 at the peak);
    above, in float32 and in place by Cholesky (LAPACK ``spotrf`` / ``spotri`` on the one Gram buffer:
    4 bytes x N^2, 1.6 GB at 20,000 items; ``X'X + lam I`` is symmetric positive definite, and with
    ``lam`` in the hundreds its condition number keeps float32's relative error near 1e-5).

    Args:
        x: ``(n_users, n_items)`` binary interactions.
        lam: L2 regularisation.

    Returns:
        ``(n_items, n_items)`` float32.

    Raises:
        ConfigError: the catalog has more than :data:`MAX_DENSE_ITEMS` items.
    """
    check_dense(x.shape[1], "EASE")
    n = x.shape[1]
    if n <= EASE_FLOAT64_MAX:
        g = (x.T @ x).toarray().astype(np.float64)
        g[np.diag_indices_from(g)] += lam
        p = np.linalg.inv(g)
        del g  # peak memory 16 bytes x n_items^2 (the Gram matrix and its inverse), then 12
        p /= -np.diag(p)[None, :].copy()
        np.fill_diagonal(p, 0.0)
        return p.astype(np.float32)
    from scipy.linalg import lapack

    x32 = sp.csr_matrix(x, dtype=np.float32)
    g = np.zeros((n, n), dtype=np.float32, order="F")
    for start in range(0, x32.shape[0], 50_000):  # the sparse Gram of a block of users, added densely
        blk = x32[start : start + 50_000]
        gb = (blk.T @ blk).tocoo()  # a product's entries are unique: plain fancy-index addition is exact
        g[gb.row, gb.col] += gb.data
        del gb
    g[np.diag_indices_from(g)] += np.float32(lam)
    c, info = lapack.spotrf(g, lower=0, overwrite_a=1, clean=0)
    if info != 0:
        from tokrec.errors import ConfigError

        raise ConfigError(f"EASE: X'X + lambda I is not positive definite in float32 (lapack info {info})")
    p, info = lapack.spotri(c, lower=0, overwrite_c=1)
    del c, g
    if info != 0:
        from tokrec.errors import ConfigError

        raise ConfigError(f"EASE: the Cholesky inverse failed (lapack info {info})")
    _symmetrise_upper(p)
    pc = p.T  # P is symmetric: its transpose view is P in C order, no copy
    pc /= -np.diag(pc).copy()[None, :]
    np.fill_diagonal(pc, 0.0)
    return pc


def _symmetrise_upper(a: np.ndarray, block: int = 2048) -> None:
    """Copies the upper triangle of square ``a`` onto its lower triangle, in place, block by block."""
    n = a.shape[0]
    for i in range(0, n, block):
        ie = min(i + block, n)
        for j in range(0, i + 1, block):
            je = min(j + block, n)
            if j == i:
                sub = a[i:ie, i:ie]
                low = np.tril_indices(ie - i, -1)
                sub[low] = sub.T[low]
            else:
                a[i:ie, j:je] = a[j:je, i:ie].T


def transition_matrix(
    seqs: Sequence[np.ndarray], n_items: int, window: int, gap_decay: float
) -> sp.csr_matrix:
    """Items that FOLLOW each item: ``T[i, j]`` = sum of ``gap_decay ** (gap - 1)`` over pairs where ``j``
    comes ``gap <= window`` events after ``i``, divided by (row sum + 1).

    Returns:
        ``(n_items, n_items)`` float32 CSR.
    """
    rows: list[np.ndarray] = []
    cols: list[np.ndarray] = []
    vals: list[np.ndarray] = []
    t = sp.csr_matrix((n_items, n_items), dtype=np.float64)
    pending = 0

    def flush() -> None:  # pairs summed into the matrix a few million at a time: memory ~ the matrix
        nonlocal t, pending
        if rows:
            t = t + sp.csr_matrix(
                (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n_items, n_items)
            )
            for pending_list in (rows, cols, vals):
                pending_list.clear()
        pending = 0

    for s in seqs:
        for gap in range(1, window + 1):
            if len(s) <= gap:
                break
            rows.append(s[:-gap])
            cols.append(s[gap:])
            vals.append(np.full(len(s) - gap, gap_decay ** (gap - 1)))
            pending += len(s) - gap
        if pending > 4_000_000:
            flush()
    flush()
    if t.nnz == 0:
        return sp.csr_matrix((n_items, n_items), dtype=np.float32)
    t.setdiag(0)
    t.eliminate_zeros()
    norm = np.asarray(t.sum(axis=1)).ravel() + 1.0
    return sp.csr_matrix(sp.diags(1.0 / norm) @ t, dtype=np.float32)


def next_item_scores(t: sp.csr_matrix, seqs: Sequence[np.ndarray], n_last: int, decay: float) -> np.ndarray:
    """Scores ``(len(seqs), n_items)`` from the transitions out of each user's last ``n_last`` items."""
    rows, cols, vals = [], [], []
    for r, s in enumerate(seqs):
        last = np.asarray(s[::-1][:n_last], dtype=np.int64)
        rows.append(np.full(len(last), r, dtype=np.int64))
        cols.append(last)
        vals.append(decay ** np.arange(len(last), dtype=np.float64))
    w = sp.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))) if rows else ([], ([], [])),
        shape=(len(seqs), t.shape[0]),
    )
    return np.asarray((w @ t).todense(), dtype=np.float32)


def time_kernel_scores(
    counts: np.ndarray | sp.csr_matrix, user_bins: np.ndarray, bandwidth: float
) -> np.ndarray:
    """Time-aware popularity: ``sum_b counts[i, b] * exp(-|b - user_bin| / bandwidth)``.

    Args:
        counts: ``(n_items, n_bins)`` events per item and time bin (dense, or sparse: at most one entry
            per event, so it grows with the events, not with items x bins).
        user_bins: ``(n_users,)`` each user's time bin (e.g. of their last event).
        bandwidth: kernel width in bins.

    Returns:
        ``(n_users, n_items)`` float32, ``log1p`` of the kernel-weighted counts.
    """
    bins = np.arange(counts.shape[1], dtype=np.float64)
    k = np.exp(-np.abs(bins[:, None] - user_bins[None, :].astype(np.float64)) / max(bandwidth, 1e-6))
    return np.log1p(np.asarray(counts @ k)).T.astype(np.float32)


def ridge(f: np.ndarray, y: np.ndarray, lam: float) -> np.ndarray:
    """Ridge solution ``(F'F + lam I)^-1 F'Y``: ``f`` ``(n, p)``, ``y`` ``(n, q)`` -> ``(p, q)``."""
    a = f.T @ f
    a[np.diag_indices_from(a)] += lam
    return np.linalg.solve(a, f.T @ y)


def content_ridge(
    f: np.ndarray, rows: np.ndarray, lam: float, y: np.ndarray | None = None, block: int = 65_536
) -> tuple[np.ndarray, np.ndarray | None]:
    """The ridge models over item content features ``f`` ``(n, p)`` fitted on ``rows``, sharing one factorised
    ``A = F_r'F_r + lam I`` (float64, Cholesky):

    - the content map's operator ``A^-1`` ``(p, p)`` float64: the ridge map of a user's items ``S`` (item rows
      among ``rows``) is ``A^-1 sum_{i in S} f_i``, so nothing item-sized is kept beside ``f``;
    - with ``y`` ``(len(rows),)``: the weights ``A^-1 F_r' y`` ``(p,)`` float32 (the popularity prior).

    ``F_r'F_r`` is accumulated ``block`` rows at a time, so the float64 temporaries are ``block x p`` and
    ``p x p``, never ``n x p``.
    """
    from scipy.linalg import cho_factor, cho_solve

    rows = np.asarray(rows, dtype=np.int64)
    p = f.shape[1]
    a = np.zeros((p, p), dtype=np.float64)
    fy = np.zeros(p, dtype=np.float64)
    for s in range(0, len(rows), block):
        fr = f[rows[s : s + block]].astype(np.float64)
        a += fr.T @ fr
        if y is not None:
            fy += fr.T @ np.asarray(y[s : s + block], dtype=np.float64)
    a[np.diag_indices_from(a)] += lam
    c = cho_factor(a)
    inverse = cho_solve(c, np.eye(p))
    inverse = (inverse + inverse.T) / 2  # symmetric to the last bit, as A is
    w = cho_solve(c, fy).astype(np.float32) if y is not None else None
    return inverse, w


def top_k_neighbours(sim: np.ndarray, k: int, allowed: np.ndarray | None = None) -> sp.csr_matrix:
    """Keeps each row's ``k`` largest positive entries (columns in ``allowed`` only, never the diagonal)."""
    return top_k_neighbour_rows(sim, k, allowed, np.arange(sim.shape[0]))


def top_k_neighbour_rows(
    sim: np.ndarray, k: int, allowed: np.ndarray | None = None, self_cols: np.ndarray | None = None
) -> sp.csr_matrix:
    """:func:`top_k_neighbours` for a block of rows: ``sim`` ``(m, n)``, row ``r`` never keeps column
    ``self_cols[r]`` (its own item, where it is one of the ``n``; -1 for none). Used for items added after
    fitting, whose neighbours are searched among the fitted items."""
    s = np.array(sim, dtype=np.float32, copy=True)
    if self_cols is not None:
        own = np.flatnonzero(np.asarray(self_cols) >= 0)
        s[own, np.asarray(self_cols)[own]] = -np.inf
    if allowed is not None:
        s[:, ~allowed] = -np.inf
    k = max(1, min(k, s.shape[1] - 1))
    idx = np.argpartition(-s, k - 1, axis=1)[:, :k]
    vals = np.take_along_axis(s, idx, axis=1)
    vals = np.where(np.isfinite(vals) & (vals > 0), vals, 0.0)
    rows = np.repeat(np.arange(s.shape[0]), k)
    out = sp.csr_matrix((vals.ravel(), (rows, idx.ravel())), shape=s.shape, dtype=np.float32)
    out.eliminate_zeros()
    return out


#: pools up to this size are searched exactly; larger ones through a faiss IVF index (:mod:`tokrec.ann`)
EXACT_NEIGHBOURS_MAX = 50_000
#: up to this many query x pool pairs the search is exact whatever the pool's size: the few items an online
#: add brings are compared with a million-item pool in milliseconds, where building the IVF index over the
#: pool for them would take a minute (and 3 GB)
EXACT_PAIRS_MAX = 2**32
#: bytes a block of the exact search may take (similarities, their copy and arg-partition indices)
NEIGHBOUR_BLOCK_BYTES = 256 * 2**20


def neighbours_among(
    queries: np.ndarray,
    z: np.ndarray,
    pool: np.ndarray,
    k: int,
    self_rows: np.ndarray | None = None,
    chunk: int = 2048,
    exact_max: int | None = None,
    exact_pairs: int | None = None,
) -> sp.csr_matrix:
    """Each query vector's ``k`` most similar (positive cosine) rows of ``z`` among the rows ``pool``, never
    its own row ``self_rows[r]`` (-1: none): ``(len(queries), len(z))`` CSR, columns in ``pool`` only.

    Up to :data:`EXACT_NEIGHBOURS_MAX` pool rows (``exact_max``), or up to :data:`EXACT_PAIRS_MAX` query x pool
    pairs (``exact_pairs``: an online add), the search is exact, in blocks of at most ``chunk`` queries and
    :data:`NEIGHBOUR_BLOCK_BYTES` (never ``n x n``); above, :func:`tokrec.ann.ivf_join` answers it
    (:func:`tokrec.ann.join_cells` k-means cells, a fixed number scanned per query: ``O(n^1.5)`` work instead
    of ``O(n^2)``; see there for its recall).
    """
    n = len(z)
    pool = np.asarray(pool, dtype=np.int64)
    if len(queries) == 0 or len(pool) == 0:
        return sp.csr_matrix((len(queries), n), dtype=np.float32)
    pos = np.full(n, -1, dtype=np.int64)
    pos[pool] = np.arange(len(pool))
    own_all = np.full(len(queries), -1, dtype=np.int64)
    if self_rows is not None:
        r = np.asarray(self_rows, dtype=np.int64)
        own_all = np.where(r >= 0, pos[np.maximum(r, 0)], -1)
    kk = min(k, max(len(pool) - 1, 1))
    small_pool = len(pool) <= (EXACT_NEIGHBOURS_MAX if exact_max is None else exact_max)
    if not small_pool and len(queries) * len(pool) > (
        EXACT_PAIRS_MAX if exact_pairs is None else exact_pairs
    ):
        if queries is z and np.array_equal(pool, np.arange(n)):
            # every item a query and in the pool: a self-join over z itself (no copy of a million rows)
            zs = np.ascontiguousarray(z, dtype=np.float32)
            return _neighbours_ann(zs, zs, pool, kk, own_all, n)
        gathered = np.ascontiguousarray(z[pool], dtype=np.float32)
        return _neighbours_ann(np.asarray(queries, dtype=np.float32), gathered, pool, kk, own_all, n)
    # exact: a small pool's rows gathered once; a large one read in place (no copy of a million rows for a few
    # queries), the similarities to every row computed and the pool's columns taken
    zp = np.ascontiguousarray(z[pool], dtype=np.float32) if small_pool else None
    width = len(pool) if small_pool else n
    chunk = int(max(1, min(chunk, NEIGHBOUR_BLOCK_BYTES // (16 * width))))
    parts = []
    for start in range(0, len(queries), chunk):
        stop = min(start + chunk, len(queries))
        sims = queries[start:stop] @ zp.T if zp is not None else (queries[start:stop] @ z.T)[:, pool]
        block = top_k_neighbour_rows(sims, kk, None, own_all[start:stop])
        parts.append(sp.csr_matrix((block.data, pool[block.indices], block.indptr), shape=(stop - start, n)))
    return sp.vstack(parts, format="csr").astype(np.float32)


def _neighbours_ann(
    queries: np.ndarray, zp: np.ndarray, pool: np.ndarray, k: int, own: np.ndarray, n: int
) -> sp.csr_matrix:
    """:func:`neighbours_among` for a large pool: :func:`tokrec.ann.ivf_join` (positions ``own`` excluded;
    the queries are the pool's own rows when ``queries`` is ``zp`` itself)."""
    from tokrec import ann

    d, i = ann.ivf_join(zp, k, None if queries is zp else queries, own)
    keep = (i >= 0) & (d > 0)
    r, c = np.nonzero(keep)
    return sp.csr_matrix((d[r, c], (r, pool[i[r, c]])), shape=(len(queries), n), dtype=np.float32)


def znorm_rows(s: np.ndarray) -> np.ndarray:
    """Each row minus its mean over finite entries, divided by its standard deviation (0 where constant)."""
    s = np.asarray(s, dtype=np.float32)
    mu = s.mean(axis=1, keepdims=True)
    sd = s.std(axis=1, keepdims=True)
    return np.where(sd > 1e-12, (s - mu) / np.maximum(sd, 1e-12), 0.0).astype(np.float32)


def l2_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero)."""
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.where(n > 0, n, 1.0)).astype(np.float32)


#: default weight of the attribute block in item content features (chosen on validation for ``tokrec``)
ATTR_WEIGHT = 0.3


def content_features(
    vectors: np.ndarray, attrs: np.ndarray | None, attr_weight: float = ATTR_WEIGHT
) -> np.ndarray:
    """Item content features ``F_i = [unit text vector, attr_weight * attributes, 1]``: ``(n_items, D + p + 1)``
    float32 (``attrs`` None or with no columns: text and the constant only)."""
    blocks = [l2_rows(np.asarray(vectors, dtype=np.float32))]
    if attrs is not None and attrs.shape[1]:
        blocks.append(attr_weight * attrs)
    blocks.append(np.ones((len(vectors), 1), dtype=np.float32))
    return np.hstack(blocks).astype(np.float32)


#: values of a catalog column parsed as a sample before the whole column is tried as dates
DATE_PROBE = 2000
#: rows of a catalog column whose tokens are counted first: more distinct tokens than a categorical column
#: may have there rule the whole column out (the count over all rows can only be larger)
TOKEN_PROBE = 5000


def _date_column(s: pd.Series) -> pd.Series | None:
    """Parses a column as dates when most non-empty values parse; else None."""
    if s.dtype.kind in "iufb":
        return None
    txt = s.astype(str).str.strip()
    nonempty = txt[(txt != "") & (txt.str.lower() != "nan")]
    if len(nonempty) == 0 or nonempty.str.len().median() > 30:
        return None
    if len(nonempty) > DATE_PROBE:
        # a fixed sample first: most values of a large non-date column (titles, categories) go through
        # dateutil one by one, about 30 s a million; a sample parsing at under half cannot come from a column
        # that parses at 80% (some 30 standard deviations apart at this sample size)
        probe = nonempty.sample(DATE_PROBE, random_state=0)
        rate = max(
            pd.to_datetime(probe, errors="coerce", format="ISO8601").notna().mean(),
            pd.to_datetime(probe, errors="coerce", format="mixed", dayfirst=True).notna().mean(),
        )
        if rate < 0.5:
            return None
    # ISO dates first: dateutil's dayfirst would read 1997-06-04 as the 6th of April
    parsed = pd.to_datetime(txt, errors="coerce", format="ISO8601")
    if parsed.notna().sum() < 0.8 * len(nonempty):
        parsed = pd.to_datetime(txt, errors="coerce", format="mixed", dayfirst=True)
    if parsed.notna().sum() < 0.8 * len(nonempty):
        return None
    return parsed


class AttributeLayout:
    """The catalog's attribute columns as features, fitted once and applied to any rows: the catalog at
    fit time and items added later (online) get the same columns, scaled the same way.

    Date columns become one-hot years plus a scaled year; ``|``- or ``,``-separated categorical columns
    with at most ``max_tokens`` distinct tokens, most of which occur more than once, become multi-hot;
    numeric columns are standardised. Free text (titles, descriptions) is left to the language model.
    A value the fitted catalog never had (a new token, a year outside the range) gets no column.
    The layout is plain JSON (:meth:`to_json`), saved with the model.
    """

    def __init__(self, columns: list[dict] | None = None) -> None:
        self.columns: list[dict] = list(columns or [])

    @classmethod
    def fit(cls, items: pd.DataFrame, max_tokens: int = 64) -> AttributeLayout:
        cols: list[dict] = []
        have_release = False
        for col in items.columns:
            if col == "item_id":
                continue
            s = items[col]
            if s.dtype.kind in "iuf":
                v = s.to_numpy(dtype=np.float64)
                ok = np.isfinite(v)
                if ok.sum() > 1 and np.nanstd(v) > 0:
                    cols.append(
                        {
                            "name": str(col),
                            "kind": "numeric",
                            "mean": float(np.nanmean(v)),
                            "std": float(np.nanstd(v)),
                        }
                    )
                continue
            dates = _date_column(s)
            if dates is not None:
                years = dates.dt.year.to_numpy(dtype=np.float64)
                ok = np.isfinite(years)
                spec: dict = {"name": str(col), "kind": "date", "release": not have_release}
                have_release = True
                if ok.any():
                    spec.update(
                        lo=int(np.nanmin(years)),
                        hi=int(np.nanmax(years)),
                        mean=float(np.nanmean(years)),
                        std=float(max(np.nanstd(years), 1.0)),
                    )
                cols.append(spec)
                continue
            txt = s.fillna("").astype(str)
            sep = "|" if txt.str.contains("|", regex=False).any() else ","
            if len(txt) > TOKEN_PROBE:
                head = txt.sample(TOKEN_PROBE, random_state=0).str.split(sep, regex=False).explode()
                if head[head != ""].nunique() > max_tokens:
                    continue  # free text or ids: too many distinct tokens already in the sample
            # tokens counted without a dense items x tokens table (free text has a token per item)
            tokens = txt.str.split(sep, regex=False).explode()
            tokens = tokens[tokens != ""]
            per_item = tokens.reset_index().drop_duplicates()
            counts = per_item.groupby(per_item.columns[1]).size() if len(per_item) else pd.Series(dtype=int)
            singletons = float((counts == 1).mean()) if len(counts) else 1.0
            if 0 < len(counts) <= max_tokens and singletons <= 0.8:  # not free text / ids
                names = sorted(map(str, counts.index))
                cols.append({"name": str(col), "kind": "tokens", "sep": sep, "tokens": names})
        return cls(cols)

    @property
    def width(self) -> int:
        w = 0
        for c in self.columns:
            if c["kind"] == "numeric":
                w += 1
            elif c["kind"] == "date":
                w += (c["hi"] - c["lo"] + 2) if "lo" in c else 0
            else:
                w += len(c["tokens"])
        return w

    def transform(self, items: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """``(features (n, width) float32, release time (n,) float64 epoch seconds, NaN where unknown)``;
        a column missing from ``items`` gives zeros (and an unknown release)."""
        n = len(items)
        blocks: list[np.ndarray] = []
        release = np.full(n, np.nan)
        for c in self.columns:
            s = items[c["name"]] if c["name"] in items.columns else pd.Series([None] * n, index=items.index)
            if c["kind"] == "numeric":
                v = pd.to_numeric(s, errors="coerce").to_numpy(dtype=np.float64)
                blocks.append(np.where(np.isfinite(v), (v - c["mean"]) / c["std"], 0.0)[:, None])
            elif c["kind"] == "date":
                dates = _parse_dates(s)
                if c["release"]:
                    release = (
                        (dates - pd.Timestamp("1970-01-01")).dt.total_seconds().to_numpy(dtype=np.float64)
                    )
                if "lo" not in c:
                    continue
                years = dates.dt.year.to_numpy(dtype=np.float64)
                lo, hi = c["lo"], c["hi"]
                ok = np.isfinite(years) & (years >= lo) & (years <= hi)
                onehot = np.zeros((n, hi - lo + 1))
                onehot[np.flatnonzero(ok), (years[ok] - lo).astype(int)] = 1.0
                fin = np.isfinite(years)
                scaled = np.where(fin, (years - c["mean"]) / c["std"], 0.0)
                blocks.extend([onehot, scaled[:, None]])
            else:
                index = {t: j for j, t in enumerate(c["tokens"])}
                hot = np.zeros((n, len(index)))
                for r, v in enumerate(s.astype(object).where(s.notna(), "").astype(str)):
                    for t in v.split(c["sep"]):
                        j = index.get(t)
                        if j is not None:
                            hot[r, j] = 1.0
                blocks.append(hot)
        if not blocks:
            return np.zeros((n, 0), dtype=np.float32), release
        return np.hstack(blocks).astype(np.float32), release

    def to_json(self) -> list[dict]:
        return [dict(c) for c in self.columns]


def _parse_dates(s: pd.Series) -> pd.Series:
    """Dates of a column fitted as a date column (any value that does not parse: NaT)."""
    txt = s.astype(str).str.strip()
    parsed = pd.to_datetime(txt, errors="coerce", format="ISO8601")
    nonempty = int(((txt != "") & ~txt.str.lower().isin(["nan", "none", "nat"])).sum())
    if parsed.notna().sum() < 0.8 * nonempty:
        parsed = pd.to_datetime(txt, errors="coerce", format="mixed", dayfirst=True)
    return parsed


def attribute_features(items: pd.DataFrame, max_tokens: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """The catalog's attribute features and release times (:class:`AttributeLayout` fitted on ``items``
    and applied to them).

    Returns:
        ``(features (n_items, p) float32, release_time (n_items,) float64 epoch seconds, NaN where unknown)``.
    """
    return AttributeLayout.fit(items, max_tokens).transform(items)


def user_attribute_layout(users: pd.DataFrame, max_tokens: int = 64) -> AttributeLayout:
    """The :class:`AttributeLayout` of a user table's columns other than ``user_id`` (numeric columns
    standardised, categorical ones one-hot, free text and ids with too many values left out); a text column
    whose every value reads as a number (MovieLens' ages read as text) counts as numeric."""
    table = users.drop(columns=["user_id"], errors="ignore").copy()
    for col in table.columns:
        if not pd.api.types.is_numeric_dtype(table[col]):
            numbers = pd.to_numeric(table[col], errors="coerce")
            if numbers.notna().sum() > 0 and numbers.notna().sum() == table[col].notna().sum():
                table[col] = numbers
    return AttributeLayout.fit(table, max_tokens)


def user_attribute_rows(layout: AttributeLayout, users: pd.DataFrame) -> np.ndarray:
    """``users``' rows under ``layout`` (:func:`user_attribute_layout`), with a last column of 1 that tells a
    described user from a zero row: ``(len(users), width + 1)`` float32, or ``(len(users), 0)`` for a layout
    without columns. A value the table never had (a new category) gets no column."""
    if layout.width == 0:
        return np.zeros((len(users), 0), dtype=np.float32)
    feats = layout.transform(users)[0]
    return np.hstack([feats, np.ones((len(users), 1), dtype=np.float32)]).astype(np.float32)


def user_attribute_features(
    users: pd.DataFrame, user_ids: Sequence[str], max_tokens: int = 64
) -> tuple[np.ndarray, AttributeLayout]:
    """A user table's attributes as features for ``user_ids`` (a vocabulary's ids, in row order): the rows of
    :func:`user_attribute_rows` under :func:`user_attribute_layout`, zero rows for users the table does not
    list, and the layout (to place a user described later, such as a service request's attributes)."""
    layout = user_attribute_layout(users, max_tokens)
    feats = user_attribute_rows(layout, users)
    out = np.zeros((len(user_ids), feats.shape[1]), dtype=np.float32)
    at = pd.Index(users["user_id"].astype(str)).get_indexer(pd.Index([str(u) for u in user_ids]))
    out[at >= 0] = feats[at[at >= 0]]
    return out, layout


def csr_to_arrays(prefix: str, m: sp.csr_matrix) -> dict[str, np.ndarray]:
    """A CSR matrix as three named arrays (for safetensors)."""
    m = sp.csr_matrix(m)
    return {
        f"{prefix}.data": np.asarray(m.data, dtype=np.float32),
        f"{prefix}.indices": np.asarray(m.indices, dtype=np.int64),
        f"{prefix}.indptr": np.asarray(m.indptr, dtype=np.int64),
    }


def csr_from_arrays(prefix: str, arrays: dict[str, np.ndarray], shape: tuple[int, int]) -> sp.csr_matrix:
    """Inverse of :func:`csr_to_arrays`."""
    return sp.csr_matrix(
        (arrays[f"{prefix}.data"], arrays[f"{prefix}.indices"], arrays[f"{prefix}.indptr"]), shape=shape
    )


#: item-age bin edges in days (age = the user's time minus the item's release date)
AGE_EDGES_DAYS = np.array(
    [-180, -90, -30, 0, 30, 60, 90, 120, 180, 270, 365, 545, 730, 1095, 1825, 3650, 7300], dtype=np.float64
)


def age_bins(user_time: np.ndarray, release: np.ndarray) -> np.ndarray:
    """Age bin of every (user, item): ``(len(user_time), len(release))`` int64, -1 where the release is unknown."""
    age = (user_time[:, None].astype(np.float64) - release[None, :]) / 86400.0
    out = np.digitize(age, AGE_EDGES_DAYS)
    out[:, ~np.isfinite(release)] = -1
    return out


def age_log_rates(
    x: sp.csr_matrix, user_time: np.ndarray, release: np.ndarray, items: np.ndarray, smoothing: float = 50.0
) -> np.ndarray:
    """Log interaction rate by item age: for each age bin, (user, item) pairs with an event divided by all
    (user, item) pairs in that bin, over ``items`` (rows with events and a known release), smoothed toward
    the overall rate with ``smoothing`` pseudo-pairs.

    Returns:
        ``(len(AGE_EDGES_DAYS) + 2,)`` float32: one log-rate per bin, the last entry the overall log-rate
        (used for unknown releases).
    """
    n_bins = len(AGE_EDGES_DAYS) + 1
    items = items[np.isfinite(release[items])]
    # events: the (user, item) pairs with an event, binned by the item's age at the user's time
    sub = x[:, items].tocoo()
    age = (user_time[sub.row].astype(np.float64) - release[items][sub.col]) / 86400.0
    events = np.bincount(np.digitize(age, AGE_EDGES_DAYS), minlength=n_bins).astype(np.float64)
    # pairs: for each user, the items released in each age window, counted by binary search over the
    # sorted release dates (O(users x bins x log items), never a users x items table)
    rel = np.sort(release[items])
    cut = user_time.astype(np.float64)[:, None] - AGE_EDGES_DAYS[None, :] * 86400.0  # (users, edges)
    newer = len(rel) - np.searchsorted(rel, cut, side="right")  # items released after each cut
    per_user = np.concatenate(
        [newer[:, :1], np.diff(newer, axis=1), len(rel) - newer[:, -1:]], axis=1
    )  # bin 0: released after the first cut; bin j: between cuts j and j-1; last: before the last cut
    pairs = per_user.sum(axis=0).astype(np.float64)
    overall = (events.sum() + 1.0) / (pairs.sum() + 1.0)
    rate = (events + smoothing * overall) / (pairs + smoothing)
    return np.log(np.append(rate, overall)).astype(np.float32)
