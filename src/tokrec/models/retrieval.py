"""Large catalogs for ``tokrec``: candidate retrieval, then the exact blend over the candidates.

Scoring the whole catalog for every query costs ``O(n_items x d)`` (the text map and profile read every
item vector), several milliseconds at 10,000 items and a second at a million. On catalogs of at least
``retrieval_min_items`` items, :class:`CatalogIndex` answers a query in three steps:

1. **Candidates** from each signal's own index: the best items of the user's EASE row and transition
   row (sparse products over the history), of the time kernel at the user's time bin and of the
   popularity prior (cached per bin / once), of the content map and of the text profile (one faiss
   IVF index over the content features ``F = [Z, attributes, 1]``: both signals are inner products
   with ``F``), and the text neighbours of the user's best EASE items (the ``prop`` signal's reverse
   lists). Items added online after the index was built are searched exactly.
2. **Per-user statistics of every signal over the whole catalog**, exactly where they have a closed form:
   the map and profile means and variances from ``sum(F)`` and ``F'F`` (``O(p^2)`` per query), EASE and
   transitions from their sparse rows, the time kernel from a per-bin cache (which also keeps every item's
   value for the newest bins, :data:`TIME_VALUES_BYTES`), item age by binary search
   over the sorted release dates, the prior once. Only the ``prop`` signal's spread and the cold-item
   calibration line come from a fixed seeded sample of ``SAMPLE`` catalog rows.
3. **The same blend** (:meth:`tokrec.models.recommended.TokrecHybrid.blend`'s z-scores and weights) over
   the candidates: a candidate's score equals its score in the full computation up to those sampled
   statistics, so the ranking among candidates is the model's own.

Given candidates (``--candidates``, a request's list) are scored exactly the same way, without step 1.
Batch ``recommend``, ``evaluate`` and the service all reach this through ``Recommender.score_rows``:
one scoring path, the same numbers online and offline.

Hand-written because the blend's z-normalisation needs whole-catalog statistics per user, which no
retrieval library computes; the nearest-neighbour search itself is faiss's (:mod:`tokrec.ann`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp

from tokrec.features import history_weights, user_profiles
from tokrec.models import signals as sig

if TYPE_CHECKING:
    from tokrec.models.recommended import TokrecHybrid

#: catalog rows scored for the statistics that have no closed form (prop's spread, the cold calibration)
SAMPLE = 1024
#: the prop signal's reverse lists are read for this many of the user's best EASE items
PROP_SEEDS = 20
#: items added after the ANN index was built are searched exactly up to this many; beyond, it is rebuilt
MAX_TAIL = 50_000
#: the time kernel's value for every fitted item is kept per time bin up to this many bytes in all (the newest
#: bins first): a query in such a bin reads its candidates' values instead of a sparse product
TIME_VALUES_BYTES = 64 * 2**20

#: the time kernel at one bin over the whole catalog: mean, sd, best rows, every fitted item's value (or None)
_TimeStats = tuple[float, float, np.ndarray, np.ndarray | None]


@dataclass
class CatalogIndex:
    """What retrieval and the per-user statistics need, derived from a fitted ``tokrec`` model (never saved:
    rebuilt on load in seconds). Immutable once built: :meth:`extended` returns a new one for a model
    that gained items, so a copy of the model being served keeps its own."""

    n: int
    fsum: np.ndarray  # (p,) float64: sum of the content-feature rows
    fgram: np.ndarray  # (p, p) float64: F'F
    prior_mean: float
    prior_sd: float
    prior_top: np.ndarray
    release_sorted: np.ndarray  # known release times, sorted
    n_release_unknown: int
    ease_pos: np.ndarray  # (n_fitted,) position of a fitted row among EASE's items, -1 outside
    ease_all: bool  # EASE covers every fitted item, in catalog order (ease_pos is the identity)
    nb_t: sp.csr_matrix  # neighbours_[:n_ann] transposed: row j lists the indexed items with j as a neighbour
    sample: np.ndarray  # catalog rows scored for sampled statistics
    sample_features: np.ndarray  # (len(sample), p) their content features, contiguous (no gather per query)
    sample_nb: sp.csr_matrix  # (len(sample), n) their text-neighbour rows
    ann: Any  # faiss index over F[:n_ann]
    n_ann: int
    n_warm: int  # items with training events
    time_cache: dict[tuple[int, float, int], _TimeStats] = field(default_factory=dict)
    time_bytes: int = 0  # bytes of item values held in time_cache

    @classmethod
    def build(cls, m: TokrecHybrid) -> CatalogIndex:
        from tokrec import ann

        f = m.features_
        n, p = f.shape
        fsum = np.zeros(p, dtype=np.float64)
        fgram = np.zeros((p, p), dtype=np.float64)
        for s in range(0, n, 65_536):
            blk = f[s : s + 65_536].astype(np.float64)
            fsum += blk.sum(axis=0)
            fgram += blk.T @ blk
        nf = m.n_fitted
        pos = np.full(nf, -1, dtype=np.int64)
        pos[m.ease_items_] = np.arange(len(m.ease_items_))
        rng = np.random.default_rng(0)
        sample = np.sort(rng.choice(n, size=min(SAMPLE, n), replace=False)).astype(np.int64)
        return cls(
            **_item_tables(m),
            **_sample_tables(m, sample),
            fsum=fsum,
            fgram=fgram,
            ease_pos=pos,
            ease_all=bool(np.array_equal(m.ease_items_, np.arange(nf))),
            nb_t=sp.csr_matrix(m.neighbours_.T),
            ann=ann.build_ann(f, "ivf", codec="sq8"),  # it proposes candidates; they are scored exactly
            n_ann=n,
            n_warm=int(np.sum(m.warm_)),
        )

    def extended(self, m: TokrecHybrid, rows: np.ndarray, old_features: np.ndarray) -> CatalogIndex:
        """The index of ``m`` after :meth:`TokrecHybrid.add_items` wrote ``rows`` (``old_features``: the
        content features before, ``len(old_features)`` rows); the ANN index and the reverse neighbour lists are
        shared, new rows beyond them are searched exactly until there are :data:`MAX_TAIL` of them. A replaced
        row keeps its old entries there: they only propose it as a candidate, which is then scored exactly."""
        f = m.features_  # add_items runs before the vocabulary grows: the catalog size is the arrays'
        if len(f) - self.n_ann > MAX_TAIL:
            return CatalogIndex.build(m)
        replaced = rows[rows < len(old_features)]
        fsum, fgram = self.fsum.copy(), self.fgram.copy()
        if len(replaced):
            old = old_features[replaced].astype(np.float64)
            fsum -= old.sum(axis=0)
            fgram -= old.T @ old
        new = f[rows].astype(np.float64)
        fsum += new.sum(axis=0)
        fgram += new.T @ new
        return CatalogIndex(
            **_item_tables(m),
            **_sample_tables(m, self.sample),  # a replaced row of the sample has new features and neighbours
            fsum=fsum,
            fgram=fgram,
            ease_pos=self.ease_pos,
            ease_all=self.ease_all,
            nb_t=self.nb_t,  # the indexed rows' lists; rows added since are read from neighbours_ itself
            ann=self.ann,
            n_ann=self.n_ann,
            n_warm=self.n_warm,
        )

    # ---- one query ---------------------------------------------------------------------------------
    def scores(
        self,
        m: TokrecHybrid,
        seq: np.ndarray,
        t: int,
        candidates: np.ndarray | None = None,
        text: bool = False,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """``(rows, scores, cosines)``: the blend's score for each candidate row (retrieved when ``candidates``
        is None), z-normalised with whole-catalog statistics of this query; with ``text``, the candidates'
        cosines to the history's profile vector (the ``profile`` signal's raw values; the profile's nearest
        items are retrieved even when that signal has no weight), else None.

        A query is a few dozen array operations over its history, candidates and sample, without a scipy
        matrix built per query (each costs tens of microseconds of Python holding the GIL, the limit of two
        requests in flight in one server process) or a product with a two-column matrix (OpenBLAS is slower at
        those than at two matrix-vector products)."""
        n = self.n
        active = set(m._active())
        q = self._query(m, seq, t, active, text)
        if candidates is None:
            candidates = self._retrieve(m, q)
        cand = _sorted_unique(np.asarray(candidates, dtype=np.int64))
        # the sample's rows that are not candidates (both sorted: one binary search)
        at = np.minimum(np.searchsorted(cand, self.sample), max(len(cand) - 1, 0))
        rest = cand[at] != self.sample if len(cand) else np.ones(len(self.sample), dtype=bool)
        rows = np.concatenate([cand, self.sample[rest]])
        names, raw = self._signals(m, q, rows, len(cand), rest, active, t)
        nc = len(cand)
        # the sampled statistics, stratified: every candidate counts once (the user's extreme items, which
        # a plain sample would mostly miss, are among them), the sample stands for the rest of the catalog
        ratio = max(n - nc, 0) / max(len(rows) - nc, 1)
        weight = np.concatenate([np.ones(nc), np.full(len(rows) - nc, ratio)])
        stats = np.array([self._stats(q, name, raw[i], weight, t, m) for i, name in enumerate(names)])
        stats = stats.reshape(len(names), 2)
        mean, sd = stats[:, 0].astype(np.float32), stats[:, 1]
        z = (raw - mean[:, None]) / np.maximum(sd, 1e-12).astype(np.float32)[:, None]
        z[sd <= 1e-12] = 0.0
        total = _blend(m, names, z, rows, nc, self.n_warm)
        cos = raw[names.index("profile"), :nc] if text and "profile" in names else None
        return cand, total[:nc], cos

    def _query(
        self, m: TokrecHybrid, seq: np.ndarray, t: int, active: set[str], text: bool = False
    ) -> _Query:
        """The pieces every candidate's signals are read from, for the history ``seq`` at time ``t``."""
        c = m.config
        nf = m.n_fitted
        seq = np.asarray(seq, dtype=np.int64)
        fitted = seq[seq < nf]
        d = m.vectors_.shape[1]
        q = _Query()
        # the history's distinct items of the fit (sorted) with their recency weights (features.history_weights):
        # EASE's rows (weighted and plain, for prop) and the content map read these
        items, recent = history_weights(fitted, c.ease_half_life)
        if "ease" in active or "prop" in active:
            self._ease_rows(m, q, items, recent, active)
        if "trans" in active:
            q.trans = _next_item_row(m.trans_, fitted, c.trans_last, c.trans_decay)
        if "time" in active:
            nb = m.time_counts_.shape[1]
            q.time_bin = int(np.clip((t - m.t0_) // m.bin_seconds_, 0, nb - 1))
            q.time = self._time_stats(m, q.time_bin)
        if "map" in active:  # the ridge map of the history's items, each once (the plain user row)
            q.map_w = m.history_map_weights(items).astype(np.float64)
        if "profile" in active or text:
            u = user_profiles([seq], m.vectors_, half_life=c.profile_half_life)[0]
            q.profile_w = np.concatenate([u.astype(np.float64), np.zeros(m.features_.shape[1] - d)])
        q.content_stats = self._content_stats(q)
        return q

    def _ease_rows(
        self, m: TokrecHybrid, q: _Query, items: np.ndarray, recent: np.ndarray, active: set[str]
    ) -> None:
        """The history's EASE scores over EASE's items: recency-weighted (``q.ease``) and plain (``q.prop_ease``,
        with ``q.prop_full`` over every fitted item, for prop), both from one product with its items' rows."""
        pos = self.ease_pos[items]
        keep = pos >= 0
        which = [name for name in ("ease", "prop") if name in active]
        weights = [recent[keep] if name == "ease" else np.ones(int(keep.sum())) for name in which]
        if keep.any():
            e_rows = m.ease_[pos[keep]]
            out = np.stack([w.astype(np.float32) @ e_rows for w in weights])
        else:
            out = np.zeros((len(which), len(m.ease_items_)), dtype=np.float32)
        if "ease" in active:
            q.ease = out[0]
        if "prop" in active:
            q.prop_ease = out[-1]
            if self.ease_all:  # EASE covers every fitted item, in order
                q.prop_full = q.prop_ease
            else:
                q.prop_full = np.zeros(m.n_fitted, dtype=np.float32)
                q.prop_full[m.ease_items_] = q.prop_ease

    def _retrieve(self, m: TokrecHybrid, q: _Query) -> np.ndarray:
        per = m.config.retrieval_per_source
        found: list[np.ndarray] = [self.prior_top]
        if q.ease is not None:
            found.append(m.ease_items_[_top(q.ease, per)])
        if q.trans is not None and len(q.trans[0]):
            found.append(q.trans[0][_top(q.trans[1], per)])
        if q.time is not None:
            found.append(q.time[2])
        ws = [w for w in (q.map_w, q.profile_w) if w is not None and np.any(w)]
        if ws:
            found.append(self._search(m, np.stack(ws), per))
        if q.prop_ease is not None and np.any(q.prop_ease):
            # the items that have the user's best EASE items as text neighbours, strongest links first
            best = _top(q.prop_ease, PROP_SEEDS)
            seeds = m.ease_items_[best]
            pos, lens = _row_entries(self.nb_t.indptr, seeds)
            link = self.nb_t.data[pos] * np.repeat(q.prop_ease[best], lens)
            found.append(self.nb_t.indices[pos[_top(link, per)]])
            if self.n > self.n_ann:  # items added since the index was built: their own neighbour lists
                tail = m.neighbours_[self.n_ann : self.n][:, seeds]
                found.append(self.n_ann + np.unique(tail.nonzero()[0]))
        return np.concatenate(found)

    def nearest_text(self, m: TokrecHybrid, profile: np.ndarray, k: int) -> np.ndarray:
        """Rows of (about, by the index's search) the ``k`` items whose text vectors have the largest cosine to
        the unit ``profile`` vector ``(d,)`` (the content features' text block is ``Z_I``)."""
        w = np.zeros(m.features_.shape[1], dtype=np.float32)
        w[: len(profile)] = profile
        return self._search(m, w[None, :], k)

    def _search(self, m: TokrecHybrid, ws: np.ndarray, k: int) -> np.ndarray:
        """For each row ``w`` of ``ws``, the ``k`` rows with the largest ``F @ w`` (one faiss call for all:
        faiss over the indexed rows, exact over the tail), concatenated."""
        from tokrec import ann

        _, ids = ann.search(self.ann, ws, k, 2 * ann.default_nprobe(ann.ivf_cells(self.n_ann)))
        found = [ids[ids >= 0]]
        if self.n > self.n_ann:
            tail = m.features_[self.n_ann : self.n] @ ws.T.astype(np.float32)
            found += [self.n_ann + _top(tail[:, j], k) for j in range(len(ws))]
        return np.concatenate(found)

    def _signals(
        self,
        m: TokrecHybrid,
        q: _Query,
        rows: np.ndarray,
        n_cand: int,
        rest: np.ndarray,
        active: set[str],
        t: int,
    ) -> tuple[list[str], np.ndarray]:
        """Raw signals ``(signals, len(rows))`` float32 of ``rows`` (the ``n_cand`` candidates, then the sample's
        rows where ``rest``), computed as :meth:`TokrecHybrid.signals` computes them for every item; the
        sample's features and neighbour rows are read from the index's own contiguous copies."""
        cand = rows[:n_cand]
        nf = m.n_fitted
        fit_rows = rows < nf
        out: dict[str, np.ndarray] = {}
        if q.ease is not None:
            v = np.zeros(len(rows), dtype=np.float32)
            pos = np.full(len(rows), -1, dtype=np.int64)
            pos[fit_rows] = self.ease_pos[rows[fit_rows]]
            v[pos >= 0] = q.ease[pos[pos >= 0]]
            out["ease"] = v
        if q.trans is not None:
            v = np.zeros(len(rows), dtype=np.float32)
            idx, val = q.trans  # idx sorted
            if len(idx):
                at = np.minimum(np.searchsorted(idx, rows), len(idx) - 1)
                hit = idx[at] == rows
                v[hit] = val[at[hit]]
            out["trans"] = v
        if q.time is not None:
            v = np.zeros(len(rows), dtype=np.float32)
            full = q.time[3]
            if full is not None:  # the whole catalog's values at this bin, kept by the index
                v[fit_rows] = full[rows[fit_rows]]
            else:
                kernel = _time_kernel(m, q.time_bin)
                v[fit_rows] = np.log1p(np.asarray(m.time_counts_[rows[fit_rows]] @ kernel)).astype(np.float32)
            out["time"] = v
        if "age" in active:
            b = sig.age_bins(np.array([t]), m.release_[rows])[0]
            out["age"] = m.age_rates_[np.where(b >= 0, b, len(m.age_rates_) - 1)]
        # map and profile are both inner products with the content features: the candidates' rows gathered once
        given = [(name, w) for name, w in (("map", q.map_w), ("profile", q.profile_w)) if w is not None]
        if given:
            f_cand = m.features_[cand]
            for name, w in given:
                w32 = w.astype(np.float32)
                out[name] = np.concatenate([f_cand @ w32, (self.sample_features @ w32)[rest]])
        if q.prop_full is not None:
            # items added online have neighbour lists too (rows beyond the fitted ones)
            out["prop"] = np.concatenate(
                [m.neighbours_[cand] @ q.prop_full, (self.sample_nb @ q.prop_full)[rest]]
            )
        if "prior" in active:
            out["prior"] = m.prior_[rows]
        names = list(out)
        raw = np.empty((len(names), len(rows)), dtype=np.float32)
        for i, name in enumerate(names):
            raw[i] = out[name]
        return names, raw

    def _stats(
        self, q: _Query, name: str, vals: np.ndarray, weight: np.ndarray, t: int, m: TokrecHybrid
    ) -> tuple[float, float]:
        """Mean and standard deviation of one signal over the whole catalog for this query."""
        n = self.n
        if name == "ease" and q.ease is not None:
            return _moments(q.ease, n)
        if name == "trans" and q.trans is not None:
            return _moments(q.trans[1], n)
        if name == "time" and q.time is not None:
            return q.time[0], q.time[1]
        if name == "age":
            return self._age_stats(m, t)
        if name in ("map", "profile"):
            return q.content_stats[name]
        if name == "prior":
            return self.prior_mean, self.prior_sd
        return _weighted_moments(vals, weight)  # prop: candidates + the sample

    def _content_stats(self, q: _Query) -> dict[str, tuple[float, float]]:
        """Mean and sd over the whole catalog of the map's and the profile's scores ``F @ w``, from ``sum(F)``
        and ``F'F``."""
        given = [(name, w) for name, w in (("map", q.map_w), ("profile", q.profile_w)) if w is not None]
        if not given:
            return {}
        names = [name for name, _ in given]
        ws = np.stack([w for _, w in given])
        mean = ws @ self.fsum / self.n
        # one matrix-vector product each (OpenBLAS multiplies by a two-row matrix slower than twice by a vector),
        # matrix first: NumPy's ``@`` holds the GIL for a vector times a float64 matrix, BLAS's product does not
        second = np.array([np.dot(self.fgram, w) @ w for w in ws]) / self.n
        sd = np.sqrt(np.maximum(second - mean * mean, 0.0))
        return {name: (float(mean[i]), float(sd[i])) for i, name in enumerate(names)}

    def _time_stats(self, m: TokrecHybrid, time_bin: int) -> _TimeStats:
        """The time kernel at ``time_bin`` over the whole catalog: mean, sd, best rows and, within
        :data:`TIME_VALUES_BYTES`, every fitted item's value (cached per bin)."""
        key = (time_bin, float(m.config.time_bandwidth_bins), self.n)
        hit = self.time_cache.get(key)
        if hit is None:
            full = np.log1p(np.asarray(m.time_counts_ @ _time_kernel(m, time_bin))).astype(np.float32)
            hit = self._time_entry(m, full)
            if len(self.time_cache) > 4096:
                self.time_cache.clear()
                self.time_bytes = 0
            self.time_cache[key] = hit
        return hit

    def _time_entry(self, m: TokrecHybrid, full: np.ndarray) -> _TimeStats:
        mean, sd = _moments(full, self.n)
        keep = self.time_bytes + full.nbytes <= TIME_VALUES_BYTES
        if keep:
            self.time_bytes += full.nbytes
            full.flags.writeable = False  # read by every query in this bin, from any thread
        return mean, sd, _top(full, m.config.retrieval_per_source), full if keep else None

    def warm_time(self, m: TokrecHybrid, max_bins: int = 4096) -> None:
        """Computes the time kernel's statistics and best items for every time bin now (at most ``max_bins``
        bins, 64 at a time; the newest first, so that the values kept within :data:`TIME_VALUES_BYTES` are
        those of the bins queries fall in most), so that no query pays for its bin's first use."""
        if "time" not in m._active():
            return
        nb = m.time_counts_.shape[1]
        if nb > max_bins:
            return
        bw = float(m.config.time_bandwidth_bins)
        bins = np.arange(nb, dtype=np.float64)
        for stop in range(nb, 0, -64):
            cols = np.arange(max(stop - 64, 0), stop)
            k = np.exp(-np.abs(bins[:, None] - cols[None, :].astype(np.float64)) / max(bw, 1e-6))
            block = np.log1p(np.asarray(m.time_counts_ @ k)).astype(np.float32)  # (n_fitted, len(cols))
            for j in range(len(cols) - 1, -1, -1):
                self.time_cache[(int(cols[j]), bw, self.n)] = self._time_entry(
                    m, np.ascontiguousarray(block[:, j])
                )

    def _age_stats(self, m: TokrecHybrid, t: int) -> tuple[float, float]:
        """Mean and sd of the age signal at time ``t``: items per age bin by binary search over release dates."""
        rel = self.release_sorted
        cut = float(t) - sig.AGE_EDGES_DAYS * 86400.0
        newer = len(rel) - np.searchsorted(rel, cut, side="right")
        counts = np.concatenate([newer[:1], np.diff(newer), [len(rel) - newer[-1]]]).astype(np.float64)
        rates = m.age_rates_.astype(np.float64)
        counts = np.append(counts, self.n_release_unknown)  # unknown release: the overall rate (last entry)
        mean = float(counts @ rates) / self.n
        second = float(counts @ (rates * rates)) / self.n
        return mean, float(np.sqrt(max(second - mean * mean, 0.0)))


@dataclass
class _Query:
    ease: np.ndarray | None = None  # (len(ease_items_),) the recency-weighted EASE row
    prop_ease: np.ndarray | None = None  # (len(ease_items_),) the plain EASE row, for prop
    prop_full: np.ndarray | None = None  # (n_fitted,) the same over every fitted item
    trans: tuple[np.ndarray, np.ndarray] | None = (
        None  # the fitted rows with a transition score (sorted), scores
    )
    time_bin: int = 0
    time: _TimeStats | None = None  # the time kernel's whole-catalog statistics at time_bin
    map_w: np.ndarray | None = None  # (p,)
    profile_w: np.ndarray | None = None  # (p,), zero outside the text block
    content_stats: dict[str, tuple[float, float]] = field(default_factory=dict)  # map's and profile's


def _blend(
    m: TokrecHybrid, names: list[str], z: np.ndarray, rows: np.ndarray, n_cand: int, n_warm: int
) -> np.ndarray:
    """:meth:`TokrecHybrid.blend` for a set of rows (the ``n_cand`` candidates, then the sample) from their
    z-scores ``z`` (one row per signal of ``names``): the cold-item calibration line is fitted over the items
    with events among them, each candidate counting once and each sample-only item for its share of the
    catalog's other items with events."""
    from tokrec.models.recommended import COLLAB_SIGNALS

    weights = m._weights()
    w = np.array([weights[name] for name in names], dtype=np.float32)
    is_collab = np.array([name in COLLAB_SIGNALS for name in names], dtype=bool)
    collab = np.where(is_collab, w, np.float32(0.0)) @ z
    content = np.where(is_collab, np.float32(0.0), w) @ z
    warm = np.zeros(len(rows), dtype=bool)
    fit = rows < m.n_fitted
    warm[fit] = m.warm_[rows[fit]]
    if m.config.cold_calibration and warm.sum() > 1 and 0 < n_warm < m.n_items and collab.any():
        c_w = int(warm[:n_cand].sum())
        s_w = int(warm.sum()) - c_w
        wt = np.full(len(rows), max(n_warm - c_w, 0) / max(s_w, 1))
        wt[:n_cand] = 1.0
        wt = wt[warm]
        total = wt.sum()
        x, y = content[warm].astype(np.float64), collab[warm].astype(np.float64)
        mx, my = float(wt @ x) / total, float(wt @ y) / total
        dx = x - mx
        var = float(wt @ (dx * dx)) / total
        b = max(float(wt @ (dx * (y - my))) / total / max(var, 1e-12), 0.0)
        collab[~warm] = (my - b * mx + b * content[~warm]).astype(np.float32)
    if m.config.cold_offset:
        collab[~warm] += np.float32(m.config.cold_offset)
    return collab + content


def _item_tables(m: TokrecHybrid) -> dict[str, Any]:
    """The per-item tables of the index that follow the catalog as it is: size, prior statistics and best
    items, sorted release dates."""
    rel = np.asarray(m.release_, dtype=np.float64)
    known = np.isfinite(rel)
    prior = m.prior_.astype(np.float64)
    return {
        "n": len(m.features_),  # add_items runs before the vocabulary grows: the catalog size is the arrays'
        "prior_mean": float(prior.mean()),
        "prior_sd": float(prior.std()),
        "prior_top": _top(m.prior_, m.config.retrieval_per_source),
        "release_sorted": np.sort(rel[known]),
        "n_release_unknown": int((~known).sum()),
    }


def _sample_tables(m: TokrecHybrid, sample: np.ndarray) -> dict[str, Any]:
    """The sample's rows of the content features and of the text-neighbour lists, as the catalog is now."""
    return {
        "sample": sample,
        "sample_features": np.ascontiguousarray(m.features_[sample]),
        "sample_nb": sp.csr_matrix(m.neighbours_[sample]),
    }


def _next_item_row(
    t: sp.csr_matrix, seq: np.ndarray, n_last: int, decay: float
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`tokrec.models.signals.next_item_scores` for one history, kept sparse: the transition rows of its
    last ``n_last`` items, weighted ``decay ** age`` and summed; ``(columns, sums)``, the columns sorted (read
    from the matrix's arrays, never a product with the whole matrix: scipy's sparse product allocates per
    catalog column)."""
    last = np.asarray(seq[::-1][:n_last], dtype=np.int64)
    pos, lens = _row_entries(t.indptr, last)
    vals = t.data[pos] * np.repeat(decay ** np.arange(len(last), dtype=np.float64), lens)
    cols, inv = np.unique(t.indices[pos], return_inverse=True)
    return cols.astype(np.int64), np.bincount(inv, weights=vals, minlength=len(cols))


def _row_entries(indptr: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions in a CSR matrix's ``data`` / ``indices`` of the entries of ``rows``, row after row, and the
    number of entries of each row (what ``matrix[rows]`` copies, without building a matrix)."""
    starts = indptr[rows].astype(np.int64)
    lens = indptr[rows + 1].astype(np.int64) - starts
    ends = np.cumsum(lens)
    total = int(ends[-1]) if len(ends) else 0
    return np.arange(total) + np.repeat(starts - (ends - lens), lens), lens


def _time_kernel(m: TokrecHybrid, time_bin: int) -> np.ndarray:
    """The time kernel's weight of every time bin for a query in ``time_bin``."""
    nb = m.time_counts_.shape[1]
    bw = max(float(m.config.time_bandwidth_bins), 1e-6)
    return np.exp(-np.abs(np.arange(nb, dtype=np.float64) - time_bin) / bw)


def _weighted_moments(vals: np.ndarray, weight: np.ndarray) -> tuple[float, float]:
    v = vals.astype(np.float64)
    total = weight.sum()
    mean = float(weight @ v) / total
    dv = v - mean
    return mean, float(np.sqrt(max(float(weight @ (dv * dv)) / total, 0.0)))


def _moments(nonzero: np.ndarray, n: int) -> tuple[float, float]:
    """Mean and sd over ``n`` values of which all but ``nonzero`` are 0."""
    v = nonzero.astype(np.float64)
    mean = float(v.sum()) / n
    second = float(v @ v) / n
    return mean, float(np.sqrt(max(second - mean * mean, 0.0)))


def _sorted_unique(rows: np.ndarray) -> np.ndarray:
    """``np.unique(rows)`` by a sort (NumPy 2's hash-based ``unique`` takes ten times longer on a few thousand
    rows)."""
    s = np.sort(rows)
    return s[np.concatenate(([True], s[1:] != s[:-1]))] if len(s) else s


def _top(values: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` largest values (any order)."""
    values = np.asarray(values)
    if len(values) <= k:
        return np.arange(len(values))
    return np.argpartition(-values, k - 1)[:k]


__all__ = ["CatalogIndex", "MAX_TAIL", "PROP_SEEDS", "SAMPLE", "TIME_VALUES_BYTES"]
