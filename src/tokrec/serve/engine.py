"""The serving engine: the catalog, online state, and the model's own scores, ranked the batch way.

The engine keeps state and does I/O; it does not score. Every ranking comes from the fitted model's one
scoring path, :meth:`tokrec.models.base.Recommender.score_rows`, ranked by
:func:`tokrec.models.base.top_k_rows` (the rule ``recommend`` and ``recommend_batch`` use: seen items,
``exclude``, blocked items and non-candidates removed, exact ties broken by the catalog's fixed
pseudo-random order), so that the service returns what was evaluated.

The catalog is the model's item vocabulary: the bundle's items (rows ``0..n_model-1``) followed by items
added online through ``POST /items``, which go through the model's own cold path
(:meth:`~tokrec.models.base.Recommender.add_items`: for ``tokrec``, exactly as an item without events
in the fitted catalog) and are comparable with known items in one list a moment after they are added.
The model is never changed in place: an update builds a copy and swaps it in, so a request in flight
keeps the model it started with (a refitted model directory is swapped in the same way, see
:mod:`tokrec.serve.app`).

A request's history is, for a known ``user_id``, the user's training sequence (the model's) followed by
the user's online events (``score_rows(user_row, online rows, their timestamps)``); for a visitor, the
item ids given. Events named in ``negative_events`` (dislike, skip, hide) only mark items as seen.
A query the model gives no finite score (a model without scores for an empty history) is answered with
an empty list rather than arbitrary items.

Explanations (``because``): for each recommended item, the history items whose vectors are most
similar to it (cosine, among the newest ``explain_window`` history items) and the attribute values it
shares with the history (facet columns such as ``genres``; ``|``-separated values are split), with how
many history items share each value.

Unknown item ids in a history, candidates or exclude list are ignored and reported back in
``ignored``; unknown users are treated as visitors with their online events only.
"""

from __future__ import annotations

import copy
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from tokrec.errors import ConfigError, DataError
from tokrec.models.base import top_k_rows
from tokrec.rerank import parse_rerank, training_score_scale
from tokrec.serve.index import VectorIndex
from tokrec.serve.schemas import RecommendRequest
from tokrec.serve.store import Event, ItemRecord, Store

log = logging.getLogger(__name__)

_LABEL_COLUMNS = ("title", "name", "label")


@dataclass
class EngineOptions:
    """Scoring options (a subset of the server settings)."""

    user_history_window: int = 200
    explain_items: int = 2
    explain_attributes: int = 2
    explain_window: int = 50
    negative_events: tuple[str, ...] = ("dislike", "skip", "hide")
    #: with a policy: the share of a list's slots given to exploration unless a request says otherwise
    explore_share: float = 0.0
    #: with a policy: the model's best items the policy chooses among (besides the items added online)
    policy_pool: int = 100
    #: re-rank every list unless a request says otherwise (``mmr:W``, ``calibration:W``, ``popularity:W``,
    #: chained with ``+``; see :mod:`tokrec.rerank`)
    rerank: str | None = None
    facets: tuple[str, ...] | None = None
    blocked: tuple[str, ...] = ()


@dataclass
class Recommendation:
    item_id: str
    score: float
    label: str
    because: list[dict[str, Any]]
    explored: bool = False


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
        policy: a :class:`tokrec.bandits.BanditPolicy` fitted on the catalog's vectors, to serve through
            (exploration slots, see :meth:`recommend`); it learns from every event in the store's stream.
    """

    def __init__(
        self,
        model: Any,
        items: pd.DataFrame,
        vectors: np.ndarray,
        store: Store,
        options: EngineOptions | None = None,
        index: VectorIndex | None = None,
        policy: Any = None,
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
        self._blocked = np.array(sorted(self.blocked_rows), dtype=np.int64)
        self._items_applied = 0
        self._write_lock = threading.RLock()
        self.policy = policy
        self._policy_lock = threading.Lock()
        self._events_applied = 0
        #: events the policy refused to learn from (a reward out of range, or a non-finite update); skipped
        self.policy_refused = 0
        self._online_rows: dict[str, list[int]] = {}  # each user's positive online rows, for contexts
        self._in_head: np.ndarray | None = None  # the training short head, for the popularity re-ranker
        self._log_pop: np.ndarray | None = None  # log(1 + training users) / log(1 + max), for propensity
        self._score_scales: dict[tuple[int, int], float] = {}  # sdpp's unit per (model, pool size)
        if model.item_vocab_ is None or list(model.item_vocab_.ids[: len(self.ids)]) != self.ids:
            raise ConfigError("the model's item vocabulary does not start with the catalog's items, in order")
        if len(model.item_vocab_) != len(self.ids):
            raise ConfigError(
                f"the model has {len(model.item_vocab_)} items, the catalog {len(self.ids)}: "
                "give the engine the catalog the model was fitted on"
            )

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
        """Applies item records other processes (or this one) added to the store; returns how many.

        The records go to the catalog and, through :meth:`Recommender.add_items`, to a copy of the model
        that is then swapped in (one ``add_items`` call per sync). With a policy, the new items join its
        arms and every event not yet seen updates it (:meth:`_learn`)."""
        n = self._sync_items()
        if self.policy is not None:
            self._learn()
        return n

    def _sync_items(self) -> int:
        if self.store.items_count() <= self._items_applied:
            return 0
        with self._write_lock:
            records = self.store.items_since(self._items_applied)
            if not records:
                return 0
            for rec in records:
                self._apply_item(rec)
            latest = {rec.item_id: rec for rec in records}  # a repeated id: the last record wins
            ids = list(latest)
            frame = pd.DataFrame(
                [{"item_id": i, **self.attributes[self.row_of[i]]} for i in ids],
                columns=["item_id", *self.columns],
            )
            vectors = np.stack([np.asarray(latest[i].vector, dtype=np.float32) for i in ids])
            model = copy.copy(self.model)
            model.add_items(ids, vectors, items=frame)
            shared = getattr(self.model, "vectors_", None)
            if shared is not None and self.index.shares(shared):  # one copy of the vectors, as at load
                self.index.rebase(model.vectors_)
            self.model = model
            if self.policy is not None:
                with self._policy_lock:
                    self.policy.add_items(ids, vectors)
            self._items_applied += len(records)
            return len(records)

    def _learn(self) -> None:
        """Updates the policy with every event in the store's stream it has not seen, in arrival order:
        reward 0 for a negative event (``skip``, ``dislike``, ``hide``: shown and not wanted), else the
        event's value; the context is the user's profile before the event. Every process derives the same
        state from the same stream (Redis), and a restart rebuilds it from the replayed log. An event the
        policy refuses (a reward out of its range, an update that would make its state non-finite) is
        skipped, logged and counted in ``policy_refused``."""
        with self._write_lock:
            events = self.store.events_since(self._events_applied)
            if not events:
                return
            neg = set(self.options.negative_events)
            model = self.model
            with self._policy_lock:
                for e in events:
                    row = self.row_of.get(e.item_id)
                    if row is None:
                        continue
                    online = self._online_rows.setdefault(e.user_id, [])
                    user_row = model.user_vocab_.get(e.user_id)
                    context = self._context(model, user_row, np.asarray(online, dtype=np.int64))
                    try:
                        self.policy.update(e.item_id, context, 0.0 if e.event in neg else float(e.value))
                    except DataError as err:  # skipped, never kept: one bad event must not break the policy
                        self.policy_refused += 1
                        log.warning("the policy skipped an event of user %r: %s", e.user_id[:100], err)
                    if e.event not in neg:
                        online.append(row)
                        del online[: -self.options.user_history_window]
            self._events_applied += len(events)

    def _context(self, model: Any, user_row: int, extra: np.ndarray) -> np.ndarray:
        """The policy's context: the user's profile ``Z_U`` (training history + ``extra`` rows)."""
        from tokrec.features import user_profiles

        rows = model.history_rows(user_row, extra)
        items, pos = np.unique(rows, return_inverse=True)  # the profile reads only the history's vectors
        return user_profiles([pos], self.index.take(items), n_last=self.options.user_history_window)[0]

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
    def user_history(self, user_id: str) -> tuple[np.ndarray, np.ndarray, int, np.ndarray]:
        """``(positive online rows, every online row, number of online events, the positive events'
        timestamps)`` for a user, oldest first (the training history is the model's)."""
        events = self.store.user_events(user_id, self.options.user_history_window)
        neg = set(self.options.negative_events)
        row_of = self.row_of
        pos = [e for e in events if e.event not in neg and e.item_id in row_of]
        positive = np.fromiter((row_of[e.item_id] for e in pos), dtype=np.int64, count=len(pos))
        seen = np.array([row_of[e.item_id] for e in events if e.item_id in row_of], dtype=np.int64)
        times = np.fromiter((e.timestamp for e in pos), dtype=np.int64, count=len(pos))
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

    # ---- scoring ---------------------------------------------------------------------------------
    def recommend(self, req: RecommendRequest) -> Result:
        """Top-``k`` for a user or a visitor's history (a validated request: exactly one of ``user_id`` /
        ``history``): the model's scores, ranked the batch way. With a policy and an exploration share
        (``explore_share``, else the options'), that share of the slots is filled by the policy's
        exploration choice (flagged ``explored``), the rest in the model's order.

        Exploration and re-ranking do not combine (a re-ranker would reorder the policy's slots): a request's
        explicit choice wins over the server's default, so a request that names a re-ranker (``rerank``)
        and no ``explore_share`` is re-ranked without exploration, and one that gives ``explore_share``
        and no ``rerank`` is explored without the server's re-ranker; a request that gives both (a share
        above 0 and a re-ranker) is refused (ConfigError). ``explore_share`` above 0 on an engine without
        a policy is refused too."""
        share, steps = self._list_choice(req)
        self.sync()
        model = self.model  # one model for the whole request, whatever is swapped in meanwhile
        ignored: list[str] = []
        mrow = -1
        times: np.ndarray | None = None
        if req.user_id is not None:
            mrow = model.user_vocab_.get(req.user_id)
            extra, online_seen, _, times = self.user_history(req.user_id)
        else:
            extra, unknown = self.resolve(req.history)
            ignored += unknown
            online_seen = extra
        positive = model.history_rows(mrow, extra)
        cand_rows: np.ndarray | None = None
        if req.candidates is not None:
            cand_rows, unknown = self.resolve(req.candidates)
            ignored += unknown
        scores = model.score_rows(mrow, extra, times, candidates=cand_rows, attributes=req.attributes)
        finite = scores[np.isfinite(scores)]
        if finite.size == 0 or finite.min() == finite.max():
            mode = "exact" if cand_rows is None else "candidates"
            return Result([], ignored, mode, len(positive))  # nothing to go on: no arbitrary items
        allowed, mode = None, "exact"
        if cand_rows is not None:
            allowed = np.zeros(len(scores), dtype=bool)
            allowed[cand_rows] = True
            mode = "candidates"
        drop: list[np.ndarray | None] = [self._blocked]
        if req.exclude_seen:
            drop += [model.history_rows(mrow, online_seen)]
        if req.exclude:
            ex_rows, ex_unknown = self.resolve(req.exclude)
            ignored += ex_unknown
            drop.append(ex_rows)
        if steps:
            top = self._reranked(model, scores, req.k, allowed, drop, positive, steps)
            explored = np.zeros(len(top), dtype=bool)
        elif self.policy is not None and share > 0:
            top, explored = self._through_policy(model, scores, req.k, share, allowed, drop, mrow, extra)
        else:
            top = top_k_rows(scores, req.k, allowed=allowed, drop=drop)
            explored = np.zeros(len(top), dtype=bool)
        reasons = self.explain_many(top, positive) if req.explain else [[] for _ in top]
        # a new user ranked by the users most like them: how many of those had each item
        peers = model.query_peers(mrow, req.attributes) if req.explain and not len(positive) else None
        if peers is not None:
            share, n_peers = peers
            for r, because in zip(top.tolist(), reasons, strict=True):
                had = int(round(float(share[r]) * n_peers))
                if had:
                    because.append(
                        {
                            "kind": "peers",
                            "count": had,
                            "label": f"had by {had} of the {n_peers} users most like you",
                        }
                    )
        recs = []
        for r, because, ex in zip(top, reasons, explored, strict=True):
            if ex:
                because = [
                    {"kind": "explore", "label": "shown to learn how it is liked (exploration)"},
                    *because,
                ]
            recs.append(
                Recommendation(
                    self.ids[int(r)], round(float(scores[r]), 6), self.labels[int(r)], because, bool(ex)
                )
            )
        return Result(recs, ignored, mode, len(positive))

    def _list_choice(self, req: RecommendRequest) -> tuple[float, list[Any]]:
        """The exploration share and the re-ranking steps of a request (see :meth:`recommend`); ConfigError
        (a 422 over HTTP) for a bad re-ranker, a share without a policy, or both asked for."""
        if req.explore_share is not None and req.explore_share > 0 and self.policy is None:
            raise ConfigError(
                "explore_share: this server has no bandit policy to explore with (leave it out or give 0)"
            )
        spec = self.options.rerank if req.rerank is None else req.rerank
        try:
            steps = parse_rerank(spec, auto=True)
        except ConfigError as e:
            raise ConfigError(_rerank_message(str(e))) from None
        if any(s.auto for s in steps):
            raise ConfigError(
                f"rerank: {spec!r}: the service takes a fixed weight in [0, 1], not auto (e.g. mmr:0.3)"
            )
        share = self.options.explore_share if req.explore_share is None else float(req.explore_share)
        if self.policy is None:
            share = 0.0
        if steps and share > 0:
            if req.rerank is not None and req.explore_share is None:
                share = 0.0  # the request's re-ranker wins over the server's exploration share
            elif req.explore_share is not None and req.rerank is None:
                steps = []  # the request's exploration share wins over the server's re-ranker
            elif req.rerank is not None:
                raise ConfigError(
                    "give either an exploration share (explore_share above 0) or a re-ranker (rerank), not both"
                )
            else:
                raise ConfigError(
                    "the server's settings give both an exploration share and a re-ranker: "
                    "give explore_share 0 or rerank '' in the request"
                )
        return share, steps

    def _reranked(
        self,
        model: Any,
        scores: np.ndarray,
        k: int,
        allowed: np.ndarray | None,
        drop: list[np.ndarray | None],
        history: np.ndarray,
        steps: list[Any],
    ) -> np.ndarray:
        """The model's best ``pool_size(k)`` items re-ranked to ``k`` by ``steps`` (:mod:`tokrec.rerank`), with
        the user's category mix and short-head share taken from the whole history (training + online)."""
        from tokrec.evaluation.metrics import short_head
        from tokrec.rerank import RerankContext, category_matrix, pool_size

        pool = top_k_rows(scores, pool_size(k), allowed=allowed, drop=drop)
        if self._in_head is None:
            counts = np.zeros(self.n_model_items)
            for rows in model.seen_.values():
                np.add.at(counts, np.unique(rows[rows < self.n_model_items]), 1.0)
            known = self.ids[: self.n_model_items]
            head = short_head(pd.Series(counts, index=known), known)
            self._in_head = np.array([i in head for i in self.ids[: self.n_model_items]])
            self._log_pop = np.log1p(counts) / max(float(np.log1p(counts.max())), 1e-12)
        in_head = np.zeros(self.n_items, dtype=bool)
        in_head[: len(self._in_head)] = self._in_head
        log_pop = np.zeros(self.n_items)  # items added online have no training users
        assert self._log_pop is not None
        log_pop[: len(self._log_pop)] = self._log_pop
        rows = np.concatenate([pool, history])
        frame = pd.DataFrame([self.attributes[int(r)] for r in rows])
        cm = category_matrix(frame) if len(frame.columns) else None
        cats = None if cm is None else cm[0]
        user_cat = {}
        if cats is not None and len(history):
            dist = cats[len(pool) :].sum(axis=0)
            user_cat = {"u": dist / dist.sum()} if dist.sum() > 0 else {}
        context = RerankContext(
            [self.ids[int(r)] for r in pool],
            self.index.take(pool).astype(np.float64),
            None if cats is None else cats[: len(pool)],
            in_head[pool],
            user_cat,
            {"u": float(in_head[history].mean()) if len(history) else 1.0},
            log_popularity=log_pop[pool],
            score_scale=self._score_scale(model, pool_size(k))
            if any(s.name == "sdpp" for s in steps)
            else None,
        )
        pos = context.rerank_user("u", context.item_ids, scores[pool].astype(np.float64), k, steps)
        return pool[pos]

    def _score_scale(self, model: Any, pool: int) -> float:
        """``sdpp``'s relevance unit when serving (:func:`tokrec.rerank.training_score_scale`), computed once per
        model and pool size."""
        key = (id(model), pool)
        if key not in self._score_scales:
            self._score_scales[key] = training_score_scale(model, pool)
        return self._score_scales[key]

    def _through_policy(
        self,
        model: Any,
        scores: np.ndarray,
        k: int,
        share: float,
        allowed: np.ndarray | None,
        drop: list[np.ndarray | None],
        user_row: int,
        extra: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        """A slate from the policy: it chooses among the model's best ``policy_pool`` items and the items
        added online (so that new items get shown), the model's order filling the exploitation slots."""
        pool = top_k_rows(scores, max(self.options.policy_pool, k), allowed=allowed, drop=drop)
        online = np.arange(self.n_model_items, self.n_items, dtype=np.int64)[-1000:]
        if len(online):
            mask = np.zeros(len(scores), dtype=bool)
            mask[online] = True
            if allowed is not None:
                mask &= allowed
            for rows in drop:
                if rows is not None and len(rows):
                    mask[rows[(rows >= 0) & (rows < len(mask))]] = False
            pool = np.concatenate([pool, np.setdiff1d(np.flatnonzero(mask), pool)])
        if len(pool) == 0:
            return pool, np.zeros(0, dtype=bool)
        context = self._context(model, user_row, extra)
        base = np.where(np.isfinite(scores[pool]), scores[pool], np.finfo(np.float32).min)
        with self._policy_lock:
            slate = self.policy.select(context, [self.ids[int(r)] for r in pool], k, share, base_scores=base)
        rows = np.array([self.row_of[s.item_id] for s in slate], dtype=np.int64)
        return rows, np.array([s.explored for s in slate], dtype=bool)

    # ---- explanations ----------------------------------------------------------------------------
    def explain(self, row: int, history: np.ndarray) -> list[dict[str, Any]]:
        """Why ``row`` was recommended: similar history items and shared attribute values."""
        return self.explain_many(np.array([row]), history)[0]

    def explain_many(self, rows: np.ndarray, history: np.ndarray) -> list[list[dict[str, Any]]]:
        """:meth:`explain` for several recommended rows at once (one matmul, facets counted once; the loops
        read Python lists, not NumPy scalars)."""
        recent = _unique_recent(history, self.options.explain_window)
        if len(recent) == 0:
            return [[] for _ in rows]
        sims = self.index.take(recent) @ self.index.take(rows).T  # (len(recent), len(rows))
        n_top = self.options.explain_items
        order = np.argsort(-sims, axis=0, kind="stable")[:n_top].T.tolist()  # per row: its best history items
        sims_of = sims.T.tolist()
        recent_rows = recent.tolist()
        hist_counts: dict[tuple[str, str], int] = {}  # history items holding each attribute value
        for h in recent_rows:
            for col, vals in self.item_facets[h].items():
                for v in vals:
                    hist_counts[(col, v)] = hist_counts.get((col, v), 0) + 1
        out = []
        for row, best_of, sim in zip(rows.tolist(), order, sims_of, strict=True):
            reasons: list[dict[str, Any]] = []
            for i in best_of:
                if sim[i] <= 0:
                    break
                h = recent_rows[i]
                reasons.append(
                    {
                        "kind": "similar_item",
                        "item_id": self.ids[h],
                        "label": self.labels[h],
                        "similarity": round(sim[i], 4),
                    }
                )
            mine = self.item_facets[row]
            if mine:
                counts = {
                    (col, v): hist_counts[(col, v)]
                    for col, vals in mine.items()
                    for v in vals
                    if (col, v) in hist_counts
                }
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
        rows, scores = self.index.search(self.index.row(row), k + 1 + len(self.blocked_rows))
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


def _rerank_message(message: str) -> str:
    """A :func:`tokrec.rerank.parse_rerank` error as the API's field name says it (not the CLI flag)."""
    return "rerank: " + message.removeprefix("--rerank: ")


def _unique_recent(rows: np.ndarray, window: int) -> np.ndarray:
    seen: set[int] = set()
    out: list[int] = []
    for r in np.asarray(rows)[::-1].tolist():
        if r not in seen:
            seen.add(r)
            out.append(r)
            if len(out) >= window:
                break
    return np.asarray(out, dtype=np.int64)
