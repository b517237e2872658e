"""The serving engine: the catalog, online state and how a recommendation is scored and explained.

How scores are made
-------------------
The serving catalog is the bundle's items (rows ``0..n_model-1``, the model's own item vocabulary)
followed by items added online through ``POST /items``. A request's *history* is, for a known
``user_id``, the user's training sequence (the model's ``seen_``) followed by the user's online events;
for a visitor, the item ids given. Events named in ``negative_events`` (dislike, skip, hide) only
mark items as seen.

1. **Model scores** ``m`` (items the model knows): a known user with no online events gets
   ``model._score_users`` (the model's own path); otherwise ``model._score_history`` over the history
   rows the model knows (with their timestamps when every one is known: online events carry theirs,
   training events' come from ``model.user_timestamps``), when the model implements it; else a known user falls back to
   ``_score_users`` (the vector part below still reflects the online events) and a visitor gets none.
   An empty history gets the model's scores for an empty history where it defines them (popularity),
   else the answer is an empty list rather than arbitrary items.
2. **Vector scores** ``v``: the user vector ``u`` is the recency-weighted mean of the history's item
   vectors (weight ``0.5 ** (age / recency_half_life)``, age in events counted from the newest; the
   newest ``user_history_window`` events), normalised; ``v_i = u . z_i``.
3. **What is ranked**: the request's ``candidates`` when given; else the whole catalog when it is
   small (exact numpy matmul); else, for a large catalog with an ANN index, the union of the
   ``ann_candidates`` nearest items to ``u`` (faiss IVF-Flat or HNSW, inner product) and the model's top
   ``ann_candidates`` items, re-scored exactly.
4. **Blend**: both parts are standardised (z-scores over the ranked set; in ANN mode with the whole
   catalog's mean and deviation, for ``v`` computed from a running sum and Gram matrix of the item
   vectors in O(d^2), so that ANN and exact mode blend alike), then
   ``s = model_weight * z(m) + (1 - model_weight) * z(v)``. An item the model cannot score (added
   online) takes ``z(v)`` in place of ``z(m)``, so new items compete on text similarity, on the same
   scale, at once. With no model scores ``s = z(v)``; with no history vector ``s = z(m)``.
5. Seen items (unless ``exclude_seen`` is false), ``exclude`` and blocked items are removed before
   the top ``k`` is taken.

Explanations (``because``): for each recommended item, the history items whose vectors are most
similar to it (cosine, among the newest ``explain_window`` history items) and the attribute values it
shares with the history (facet columns such as ``genres``; ``|``-separated values are split), with how
many history items share each value.

Unknown item ids in a history, candidates or exclude list are ignored and reported back in
``ignored``; unknown users are treated as visitors with their online events only.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from tokrec.serve.index import VectorIndex
from tokrec.serve.store import Event, ItemRecord, Store

log = logging.getLogger(__name__)

_LABEL_COLUMNS = ("title", "name", "label")
_EMPTY: frozenset[str] = frozenset()


@dataclass
class EngineOptions:
    """Scoring options (a subset of the server settings)."""

    model_weight: float = 0.7
    recency_half_life: float = 10.0
    user_history_window: int = 200
    ann_candidates: int = 256
    explain_items: int = 2
    explain_attributes: int = 2
    explain_window: int = 50
    negative_events: tuple[str, ...] = ("dislike", "skip", "hide")
    facets: tuple[str, ...] | None = None
    blocked: tuple[str, ...] = ()


@dataclass
class Recommendation:
    item_id: str
    score: float
    label: str
    because: list[dict[str, Any]]


@dataclass
class Result:
    items: list[Recommendation]
    ignored: list[str] = field(default_factory=list)
    mode: str = "exact"
    history_length: int = 0


class Engine:
    """Catalog + model + online state; thread-safe for concurrent requests.

    Args:
        model: the fitted recommender (item vocab = the first catalog rows).
        items: the bundle's catalog frame.
        vectors: float32 ``(n_items, d)``.
        store: the online-state backend.
        options: scoring options.
        index: a prebuilt :class:`VectorIndex` (default: built from ``vectors``).
    """

    def __init__(
        self,
        model: Any,
        items: pd.DataFrame,
        vectors: np.ndarray,
        store: Store,
        options: EngineOptions | None = None,
        index: VectorIndex | None = None,
    ) -> None:
        self.model = model
        self.options = options or EngineOptions()
        self.store = store
        self.n_model_items = len(items)
        self.ids: list[str] = items["item_id"].astype(str).tolist()
        self.row_of: dict[str, int] = {i: r for r, i in enumerate(self.ids)}
        self.columns = [str(c) for c in items.columns if c != "item_id"]
        self.label_column = next((c for c in _LABEL_COLUMNS if c in self.columns), None)
        self.attributes: list[dict[str, Any]] = _records(items, self.columns)
        self.labels: list[str] = [self._label(a, i) for a, i in zip(self.attributes, self.ids, strict=True)]
        self._labels_lower: list[str] = [s.lower() for s in self.labels]
        self.facets = (
            list(self.options.facets)
            if self.options.facets is not None
            else _facet_columns(items, self.columns)
        )
        self.item_facets: list[dict[str, frozenset[str]]] = [self._facet_values(a) for a in self.attributes]
        self.index = index if index is not None else VectorIndex(vectors)
        self.blocked_rows = {self.row_of[b] for b in self.options.blocked if b in self.row_of}
        self._items_applied = 0
        self._write_lock = threading.RLock()
        self._can_history = _implements_history(model)
        self._cold: np.ndarray | None = None
        self._uvec_cache: OrderedDict[tuple[str, int, int], np.ndarray] = OrderedDict()
        self.stats = {"user_vector_cache_hits": 0, "user_vector_cache_misses": 0}

    # ---- catalog ---------------------------------------------------------------------------------
    @property
    def n_items(self) -> int:
        return len(self.ids)

    def _label(self, attrs: dict[str, Any], item_id: str) -> str:
        if self.label_column is not None:
            v = attrs.get(self.label_column)
            if v is not None and str(v):
                return str(v)
        return item_id

    def _facet_values(self, attrs: dict[str, Any]) -> dict[str, frozenset[str]]:
        out: dict[str, frozenset[str]] = {}
        for c in self.facets:
            v = attrs.get(c)
            if v is None:
                continue
            vals = [str(x) for x in v] if isinstance(v, list | tuple) else str(v).split("|")
            vals = [x.strip() for x in vals if x.strip()]
            if vals:
                out[c] = frozenset(vals)
        return out

    def sync(self) -> int:
        """Applies item records other processes (or this one) added to the store; returns how many."""
        if self.store.items_count() <= self._items_applied:
            return 0
        with self._write_lock:
            records = self.store.items_since(self._items_applied)
            for rec in records:
                self._apply_item(rec)
            self._items_applied += len(records)
            return len(records)

    def _apply_item(self, rec: ItemRecord) -> None:
        attrs = {k: v for k, v in rec.attributes.items() if k != "item_id"}
        row = self.row_of.get(rec.item_id)
        if row is None:
            row = len(self.ids)
            self.index.set(row, rec.vector)
            self.ids.append(rec.item_id)
            self.row_of[rec.item_id] = row
            self.attributes.append(attrs)
            label = self._label(attrs, rec.item_id)
            self.labels.append(label)
            self._labels_lower.append(label.lower())
            self.item_facets.append(self._facet_values(attrs))
        else:
            merged = {**self.attributes[row], **attrs}
            self.index.set(row, rec.vector)
            self.attributes[row] = merged
            self.labels[row] = self._label(merged, rec.item_id)
            self._labels_lower[row] = self.labels[row].lower()
            self.item_facets[row] = self._facet_values(merged)
        for c in attrs:
            if c not in self.columns:
                self.columns.append(c)

    def search_titles(self, query: str, limit: int) -> list[tuple[str, str]]:
        """Items whose label contains ``query`` (case-insensitive): ``(item_id, label)``, prefix matches first."""
        self.sync()
        q = query.strip().lower()
        if not q:
            return []
        prefix: list[int] = []
        inner: list[int] = []
        for r, s in enumerate(self._labels_lower):
            pos = s.find(q)
            if pos == 0:
                prefix.append(r)
                if len(prefix) >= limit:
                    break
            elif pos > 0 and len(inner) < limit:
                inner.append(r)
        rows = (prefix + inner)[:limit]
        return [(self.ids[r], self.labels[r]) for r in rows]

    # ---- history -------------------------------------------------------------------------------
    def user_history(self, user_id: str) -> tuple[np.ndarray, np.ndarray, int, np.ndarray | None]:
        """``(positive rows, seen rows, number of online events, positive events' timestamps)`` for a
        user, oldest first. The timestamps are None unless every positive event's time is known: the
        online events carry theirs, the training events' come from the model where it keeps them
        (:meth:`Recommender.user_timestamps`)."""
        mrow = self.model.user_vocab_.get(user_id) if self.model.user_vocab_ is not None else -1
        base = np.empty(0, np.int64)
        base_times: np.ndarray | None = np.empty(0, np.int64)
        if mrow >= 0:
            base = np.asarray(self.model.seen_.get(mrow, base), dtype=np.int64)
            base_times = self.model.user_timestamps(mrow) if len(base) else base_times
            if base_times is not None and len(base_times) != len(base):
                base_times = None
        events = self.store.user_events(user_id, self.options.user_history_window)
        neg = set(self.options.negative_events)
        pos_events = [e for e in events if e.event not in neg and e.item_id in self.row_of]
        all_online = [self.row_of[e.item_id] for e in events if e.item_id in self.row_of]
        positive = np.concatenate([base, np.array([self.row_of[e.item_id] for e in pos_events], np.int64)])
        seen = np.concatenate([base, np.asarray(all_online, dtype=np.int64)])
        times = None
        if base_times is not None:
            times = np.concatenate(
                [np.asarray(base_times, np.int64), np.array([e.timestamp for e in pos_events], np.int64)]
            )
        return positive, seen, len(events), times

    def resolve(self, ids: list[str] | None) -> tuple[np.ndarray, list[str]]:
        """Rows of known ids (order kept) and the unknown ids."""
        if not ids:
            return np.empty(0, np.int64), []
        rows, unknown = [], []
        for i in ids:
            r = self.row_of.get(i)
            if r is None:
                unknown.append(i)
            else:
                rows.append(r)
        return np.asarray(rows, dtype=np.int64), unknown

    def user_vector(self, rows: np.ndarray, key: tuple[str, int, int] | None = None) -> np.ndarray | None:
        """Recency-weighted, normalised mean of the item vectors of ``rows`` (oldest first): ``(d,)``."""
        if key is not None:
            hit = self._uvec_cache.get(key)
            if hit is not None:
                self.stats["user_vector_cache_hits"] += 1
                return hit
            self.stats["user_vector_cache_misses"] += 1
        rows = rows[-self.options.user_history_window :]
        if len(rows) == 0:
            return None
        age = np.arange(len(rows) - 1, -1, -1, dtype=np.float32)
        w = np.power(np.float32(0.5), age / np.float32(max(self.options.recency_half_life, 1e-6)))
        u = (w[:, None] * self.index.vectors[rows]).sum(axis=0)
        norm = float(np.linalg.norm(u))
        if norm == 0.0 or not np.isfinite(norm):
            return None
        u = (u / norm).astype(np.float32)
        if key is not None:
            self._uvec_cache[key] = u
            while len(self._uvec_cache) > 10_000:
                self._uvec_cache.popitem(last=False)
        return u

    # ---- scoring ---------------------------------------------------------------------------------
    def recommend(
        self,
        *,
        user_id: str | None = None,
        history: list[str] | None = None,
        k: int = 10,
        candidates: list[str] | None = None,
        exclude: list[str] | None = None,
        exclude_seen: bool = True,
        explain: bool = True,
    ) -> Result:
        """Top-``k`` for a user or a visitor's history (see the module docstring)."""
        self.sync()
        ignored: list[str] = []
        n_online = 0
        times: np.ndarray | None = None
        if user_id is not None:
            positive, seen, n_online, times = self.user_history(user_id)
            ukey: tuple[str, int, int] | None = (user_id, len(positive), self._items_applied)
        else:
            positive, unknown = self.resolve(history)
            ignored += unknown
            seen, ukey = positive, None
        model_scores = self._model_scores(user_id, positive, n_online, times)
        u = self.user_vector(positive, ukey)
        cand_rows, mode = self._candidate_rows(u, model_scores, candidates, ignored, k + len(seen))
        if u is None and model_scores is None:  # nothing to go on: an empty answer, not arbitrary items
            return Result([], ignored, mode, 0)
        scores = self._blend(cand_rows, u, model_scores, mode)
        scores[~np.isfinite(scores)] = -np.inf
        drop = set(self.blocked_rows)
        if exclude_seen:
            drop.update(int(r) for r in seen)
        if exclude:
            ex_rows, ex_unknown = self.resolve(exclude)
            ignored += ex_unknown
            drop.update(int(r) for r in ex_rows)
        if drop:
            drop_rows = np.fromiter(drop, dtype=np.int64, count=len(drop))
            if mode == "exact":  # the ranked set is the catalog: position = row
                scores[drop_rows[drop_rows < len(scores)]] = -np.inf
            else:  # cand_rows is sorted (np.unique)
                pos = np.searchsorted(cand_rows, drop_rows)
                hit = pos < len(cand_rows)
                hit[hit] = cand_rows[pos[hit]] == drop_rows[hit]
                scores[pos[hit]] = -np.inf
        top = _top(scores, k)
        rows = cand_rows[top]
        reasons = self.explain_many(rows, positive) if explain else [[] for _ in rows]
        recs = [
            Recommendation(self.ids[int(r)], round(float(scores[j]), 6), self.labels[int(r)], because)
            for r, j, because in zip(rows, top, reasons, strict=True)
        ]
        return Result(recs, ignored, mode, len(positive))

    def _model_scores(
        self, user_id: str | None, positive: np.ndarray, n_online: int, times: np.ndarray | None = None
    ) -> np.ndarray | None:
        m = self.model
        mrow = m.user_vocab_.get(user_id) if user_id is not None else -1
        try:
            if mrow >= 0 and (n_online == 0 or not self._can_history):
                out = m._score_users(np.array([mrow]))[0]
            elif self._can_history:
                in_model = positive < self.n_model_items
                known = positive[in_model]
                if len(known) == 0 and mrow < 0:
                    return self._cold_scores()
                out = m._score_history(known, None if times is None else times[in_model])
            else:
                return None
        except NotImplementedError:
            self._can_history = False
            return None
        out = np.asarray(out, dtype=np.float32).reshape(-1)
        if out.shape[0] != self.n_model_items:
            log.warning(
                "model scores have %d entries, the model has %d items; ignored",
                out.shape[0],
                self.n_model_items,
            )
            return None
        return out

    def _cold_scores(self) -> np.ndarray | None:
        """The model's scores for an empty history (popularity-like models have them), else None."""
        if self._cold is None:
            try:
                out = np.asarray(
                    self.model._score_history(np.empty(0, dtype=np.int64)), dtype=np.float32
                ).reshape(-1)
                ok = (
                    out.shape[0] == self.n_model_items
                    and bool(np.isfinite(out).any())
                    and float(np.nanstd(out)) > 0
                )
            except Exception:  # a model may not define scores for an empty history
                ok, out = False, np.empty(0, np.float32)
            self._cold = out if ok else np.empty(0, np.float32)
        return self._cold if len(self._cold) else None

    def _candidate_rows(
        self,
        u: np.ndarray | None,
        m: np.ndarray | None,
        candidates: list[str] | None,
        ignored: list[str],
        need: int,
    ) -> tuple[np.ndarray, str]:
        if candidates is not None:
            rows, unknown = self.resolve(candidates)
            ignored += unknown
            return np.unique(rows), "candidates"
        n = self.n_items
        if not self.index.uses_ann:
            return np.arange(n, dtype=np.int64), "exact"
        c = max(self.options.ann_candidates, 2 * need)
        parts = []
        if u is not None:
            parts.append(self.index.search(u, c)[0])
        if m is not None and self.options.model_weight > 0:
            parts.append(_top(m, c))
        if not parts:
            return np.arange(n, dtype=np.int64), "exact"
        return np.unique(np.concatenate(parts)), "ann"

    def _blend(self, rows: np.ndarray, u: np.ndarray | None, m: np.ndarray | None, mode: str) -> np.ndarray:
        """``model_weight * z(m) + (1 - model_weight) * z(v)`` over ``rows`` (see the module docstring).

        The z-scores use the mean and deviation over the ranked set, except in ANN mode, where the
        ranked set is a biased few hundred items: there they are the whole catalog's (for ``v`` from the
        index's running sum and Gram matrix, without a scan), so that ANN and exact mode blend alike.
        """
        zv = None
        if u is not None:
            v = self.index.exact_scores(u, None if mode == "exact" else rows)
            zv = _standardise(v, self.index.score_stats(u)) if mode == "ann" else _zscore(v)
        if m is None:
            return zv if zv is not None else np.zeros(len(rows), dtype=np.float32)
        known = rows < self.n_model_items
        mm = np.full(len(rows), np.nan, dtype=np.float32)
        mm[known] = m[rows[known]]
        zm = _standardise(mm, _stats(m)) if mode == "ann" else _zscore(mm)
        if zv is None:
            zm[~known] = -np.inf  # nothing to say about new items without a history
            return zm
        zm = np.where(np.isnan(mm), zv, zm)
        w = float(self.options.model_weight)
        return (w * zm + (1.0 - w) * zv).astype(np.float32)

    # ---- explanations ----------------------------------------------------------------------------
    def explain(self, row: int, history: np.ndarray) -> list[dict[str, Any]]:
        """Why ``row`` was recommended: similar history items and shared attribute values."""
        return self.explain_many(np.array([row]), history)[0]

    def explain_many(self, rows: np.ndarray, history: np.ndarray) -> list[list[dict[str, Any]]]:
        """:meth:`explain` for several recommended rows at once (one matmul, facets counted once)."""
        recent = _unique_recent(history, self.options.explain_window)
        if len(recent) == 0:
            return [[] for _ in rows]
        vecs = self.index.vectors
        sims = vecs[recent] @ vecs[rows].T  # (len(recent), len(rows))
        n_top = self.options.explain_items
        order = np.argsort(-sims, axis=0, kind="stable")[:n_top]
        hist_facets = [self.item_facets[int(h)] for h in recent]
        out = []
        for j, row in enumerate(rows):
            reasons: list[dict[str, Any]] = []
            for i in order[:, j]:
                if sims[i, j] <= 0:
                    break
                h = int(recent[i])
                reasons.append(
                    {
                        "kind": "similar_item",
                        "item_id": self.ids[h],
                        "label": self.labels[h],
                        "similarity": round(float(sims[i, j]), 4),
                    }
                )
            mine = self.item_facets[int(row)]
            if mine:
                counts: dict[tuple[str, str], int] = {}
                for facets in hist_facets:
                    for col, vals in facets.items():
                        for v in mine.get(col, _EMPTY) & vals:
                            counts[(col, v)] = counts.get((col, v), 0) + 1
                best = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[
                    : self.options.explain_attributes
                ]
                reasons += [
                    {"kind": "attribute", "attribute": c, "value": v, "count": n} for (c, v), n in best
                ]
            out.append(reasons)
        return out

    def similar(self, item_id: str, k: int) -> list[Recommendation]:
        """The ``k`` items whose vectors are closest to ``item_id``'s (itself excluded)."""
        self.sync()
        row = self.row_of[item_id]
        rows, scores = self.index.search(self.index.vectors[row].copy(), k + 1 + len(self.blocked_rows))
        out = []
        for r, s in zip(rows, scores, strict=True):
            r = int(r)
            if r == row or r in self.blocked_rows:
                continue
            because = [
                {
                    "kind": "similar_item",
                    "item_id": item_id,
                    "label": self.labels[row],
                    "similarity": round(float(s), 4),
                }
            ]
            out.append(Recommendation(self.ids[r], round(float(s), 6), self.labels[r], because))
        return out[:k]

    # ---- writes ----------------------------------------------------------------------------------
    def add_events(self, events: list[Event]) -> None:
        self.store.append_events(events)

    def add_items(self, records: list[ItemRecord]) -> None:
        self.store.add_items(records)
        self.sync()

    def replay(self, items: list[ItemRecord], event_batches) -> tuple[int, int]:
        """Loads a state log into the store (items first, then events); returns the counts."""
        t0 = time.perf_counter()
        self.store.add_items(items)
        n_ev = 0
        for batch in event_batches:
            self.store.append_events(batch)
            n_ev += len(batch)
        self.sync()
        log.info("replayed %d items and %d events in %.2fs", len(items), n_ev, time.perf_counter() - t0)
        return len(items), n_ev


# ---- helpers ---------------------------------------------------------------------------------------
def _implements_history(model: Any) -> bool:
    from tokrec.models.base import Recommender

    impl = getattr(type(model), "_score_history", None)
    return impl is not None and impl is not Recommender._score_history


def _records(items: pd.DataFrame, columns: list[str]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    cols = {c: items[c].tolist() for c in columns}
    for j in range(len(items)):
        rec = {}
        for c in columns:
            v = cols[c][j]
            if isinstance(v, np.ndarray):
                v = v.tolist()
            elif isinstance(v, np.generic):
                v = v.item()
            if v is None or (isinstance(v, float) and np.isnan(v)):
                continue
            rec[c] = v
        out.append(rec)
    return out


def _facet_columns(items: pd.DataFrame, columns: list[str]) -> list[str]:
    """Attribute columns worth naming in explanations: multi-valued (``a|b``) or low-cardinality text."""
    out = []
    n = len(items)
    for c in columns:
        if c in _LABEL_COLUMNS:
            continue
        s = items[c].dropna()
        if len(s) == 0 or not (s.dtype == object or str(s.dtype).startswith(("string", "str", "category"))):
            continue
        s = s.astype(str)
        if s.str.contains("|", regex=False).mean() > 0.05 or s.nunique() <= min(100, max(2, n // 5)):
            out.append(c)
    return out


def _unique_recent(rows: np.ndarray, window: int) -> np.ndarray:
    seen: set[int] = set()
    out: list[int] = []
    for r in rows[::-1]:
        r = int(r)
        if r not in seen:
            seen.add(r)
            out.append(r)
            if len(out) >= window:
                break
    return np.asarray(out, dtype=np.int64)


def _stats(x: np.ndarray) -> tuple[float, float]:
    """Mean and standard deviation of the finite values of ``x`` (two BLAS passes when all are finite)."""
    x = np.asarray(x, dtype=np.float32)
    if len(x) == 0:
        return 0.0, 1.0
    s1 = float(x.sum(dtype=np.float64))
    s2 = float(np.dot(x, x))
    if not (np.isfinite(s1) and np.isfinite(s2)):
        ok = x[np.isfinite(x)]
        if len(ok) == 0:
            return float("nan"), 1.0
        return float(ok.mean()), float(ok.std())
    mean = s1 / len(x)
    return mean, float(np.sqrt(max(s2 / len(x) - mean * mean, 0.0)))


def _standardise(x: np.ndarray, stats: tuple[float, float]) -> np.ndarray:
    """``(x - mean) / std``; NaN stays NaN (no score), -inf stays -inf."""
    mean, sd = stats
    out = (np.asarray(x, dtype=np.float32) - np.float32(mean)) / np.float32(sd if sd > 1e-12 else 1.0)
    return out.astype(np.float32, copy=False)


def _zscore(x: np.ndarray) -> np.ndarray:
    """z-scores over the finite values of ``x`` itself."""
    return _standardise(x, _stats(x))


def _top(scores: np.ndarray, k: int) -> np.ndarray:
    from tokrec.serve.index import _top as top

    return top(scores, k)
