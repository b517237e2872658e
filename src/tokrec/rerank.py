"""Re-rankers for diversity, calibration and popularity bias, applied to each user's ranked list.

Every re-ranker takes a user's candidates in the base model's order with their scores, and greedily
builds a list of ``k``; its weight ``w`` in [0, 1] trades relevance against its goal (``w = 0`` returns
the base order). Relevance is the base score min-max scaled over the user's candidates, so one weight
means the same on any model's scale.

* ``mmr`` (Carbonell & Goldstein 1998): next item maximises ``(1 - w) rel_i - w max_{j in S} cos(v_i, v_j)``
  over LM item vectors ``v`` (``Z_I``).
* ``calibration`` (Steck, RecSys 2018): next item maximises the list's
  ``(1 - w) sum_{j in S} rel_j - w KL(p || q~)``, ``p`` the user's category distribution in training
  (each item's categories share its weight equally; events weighted alike), ``q`` that of the list,
  ``q~ = (1 - alpha) q + alpha p`` with ``alpha = 0.01``.
* ``popularity`` (xQuAD for the long tail, Abdollahpouri et al. 2019): next item maximises
  ``(1 - w) rel_i + w sum_{c in {head, tail}} P(c|u) [i in c] prod_{j in S} (1 - [j in c])``, ``P(c|u)``
  the share of the user's training items in the short head / long tail (the head as in
  :func:`tokrec.evaluation.metrics.short_head`).
* ``propensity`` (popularity re-weighting): items sorted by ``(1 - w) rel_i + w (1 - log(1 + n_i) / log(1 + n_max))``,
  ``n_i`` the item's training users and ``n_max`` the catalog's largest: in log space, relevance divided by
  a power of the item's exposure propensity, so unlike xQuAD's head/tail switch it keeps pushing toward
  the tail as ``w`` grows.
* ``tail`` (a long-tail quota: the minimum share of a protected group in fair top-k ranking, Zehlike et al.,
  FA*IR, CIKM 2017, with the long tail as that group, imposed on the list of ``k`` as a whole where FA*IR
  tests every prefix): the list keeps the model's top ``k`` unless fewer than
  ``m = ceil(w k)`` of them are long-tail items; then it is the user's ``m`` best long-tail candidates and the
  best ``k - m`` of the rest. ``w`` is the share itself, so the long-tail share of every full list is at least
  ``w`` by construction (fewer only where the pool holds fewer tail items), where the weights of ``popularity``
  and ``propensity`` move it by an amount that depends on the model's scores.

* ``dpp`` (determinantal point process, fast greedy MAP inference of Chen, Zhang & Zhou, NeurIPS 2018):
  the list ``Y`` greedily maximises ``log det L_Y`` for the kernel ``L = diag(q) S diag(q)``, ``S`` the cosine
  similarities of the LM item vectors and ``q_i = exp(a rel_i)`` with ``a = (1 - w) / (2 w)``, i.e. the
  paper's trade-off ``(1 - w) sum_{i in Y} rel_i + w log det S_Y`` (``w = 1``: volume only).
* ``sdpp`` (the same DPP with relevance on the model's score scale, shared by all users): ``rel_i = (s_i -
  max_j s_j) / c`` instead of min-max, ``c`` one constant per run (:func:`score_scale`: the median over the
  users of the range of their candidates' scores; over the users re-ranked in ``evaluate``, over the first
  ``SCALE_USERS`` training users in ``serve`` and in ``recommend --users``, so a few users' lists do not set
  it). Min-max scaling stretches every user's candidates over
  [0, 1], so one weight diversifies a user whose top items the model scores far above the rest as hard as a
  user whose candidates it can hardly tell apart; on the shared scale the first keeps more of the model's
  order and the second is diversified more, i.e. the per-user trade-off ``a_u = a (max - min)_u / c``.

``calibration`` (uniform rank weights ``w_r(i) = 1``, as the KL is measured), ``dpp``, ``sdpp`` and ``tail`` choose
the *set* of ``k`` items, so they return the chosen set in the base model's order (by score): the order their
greedy search happened to add items in has no meaning for their objective, and the model's order is the one
that keeps the most relevant of them on top. ``mmr``, ``popularity`` and ``propensity`` rank (their greedy order
is their answer).

Specs name a re-ranker and its weight, ``"mmr:0.3"``, several chained with ``+``:
``"calibration:0.5+mmr:0.2"``: the first step chooses the list of ``k``, each later one reorders those ``k``
(so a set re-ranker can only come first). ``name:auto`` leaves the weight to a validation split of the training log
(:func:`tokrec.tuning.choose_rerank`: the largest gain in the re-ranker's goal whose NDCG@k loss there stays
within a budget). ``@N`` after the weight limits a step to the user's ``N`` best candidates by score (at least
``k``): ``"dpp:0.65@50"`` diversifies within the top 50 of the pool (``pool_size(k)`` in ``recommend`` and
``serve``; ``n_recs`` in ``evaluate``). :class:`RerankContext` holds what they need (item vectors, category
matrix, head set, each user's profile), built once from the training data.

Written by hand because these are a few lines of greedy selection each over tokrec's own arrays; no
maintained library implements them against a recommendations frame.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from tokrec.data.dataset import ids_in
from tokrec.errors import ConfigError

RERANKERS = ("mmr", "calibration", "popularity", "propensity", "tail", "dpp", "sdpp")
#: re-rankers whose objective is over the set of k items: their list keeps the base order (module doc)
SET_RERANKERS = ("calibration", "dpp", "sdpp", "tail")
#: re-rankers that need LM item vectors
VECTOR_RERANKERS = ("mmr", "dpp", "sdpp")
#: what each re-ranker moves (a metric of :mod:`tokrec.evaluation.responsibility` / ``score_recommendations``)
GOALS = {
    "mmr": "ild",
    "dpp": "ild",
    "sdpp": "ild",
    "calibration": "miscalibration",
    "popularity": "long_tail",
    "propensity": "long_tail",
    "tail": "long_tail",
}
#: the weights a trade-off curve measures (``tokrec evaluate --tradeoffs``), 0 being the model's own list
TRADEOFF_WEIGHTS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
#: training users (first by row) whose lists set ``sdpp``'s score unit when only some users are re-ranked
SCALE_USERS = 200
#: conditional variance below which a DPP candidate adds no volume (lies in the chosen items' span)
DPP_EPS = 1e-10
#: Steck's smoothing of the list's category distribution
CALIBRATION_ALPHA = 0.01
#: columns read as item categories (first found), values split on "|" or ","
CATEGORY_COLUMNS = ("genres", "genre", "categories", "category")


@dataclass(frozen=True)
class RerankStep:
    name: str
    weight: float
    #: the step considers only the ``pool`` best candidates by score (at least ``k``); None = all
    pool: int | None = None
    #: ``name:auto``: the weight is to be chosen on a validation split (:func:`tokrec.tuning.choose_rerank`)
    auto: bool = False

    def spec(self) -> str:
        """The step as written in a spec: ``tail:0.3``, ``dpp:0.65@50``, ``tail:auto``."""
        w = "auto" if self.auto else f"{self.weight:g}"
        return f"{self.name}:{w}" + (f"@{self.pool}" if self.pool is not None else "")


def parse_controls(text: str | None) -> list[str]:
    """``"mmr,calibration,tail"`` -> the re-rankers' names, checked (``--tradeoffs``); empty or None -> none."""
    names = [x.strip() for x in (text or "").split(",") if x.strip()]
    for name in names:
        if name not in RERANKERS:
            raise ConfigError(f"--tradeoffs: unknown re-ranker {name!r}; choose from {', '.join(RERANKERS)}")
    return list(dict.fromkeys(names))


def parse_rerank(spec: str | None, *, auto: bool = True) -> list[RerankStep]:
    """``"mmr:0.3+calibration:0.5"`` -> steps; empty or None -> no step. Bad specs raise ConfigError."""
    if not spec:
        return []
    if "," in spec:
        raise ConfigError(f"--rerank: {spec!r}: chain re-rankers with +, e.g. calibration:0.5+mmr:0.25")
    steps = []
    for part in spec.split("+"):
        name, _, w = part.strip().partition(":")
        name = name.strip()
        if name not in RERANKERS:
            raise ConfigError(f"--rerank: unknown re-ranker {name!r}; choose from {', '.join(RERANKERS)}")
        w, at, n = w.partition("@")
        is_auto = w.strip() == "auto"
        try:
            weight = 0.0 if is_auto else float(w)
        except ValueError:
            raise ConfigError(
                f"--rerank: {part!r} needs a weight in [0, 1] or auto, e.g. {name}:0.3 or {name}:auto"
            ) from None
        if not 0.0 <= weight <= 1.0:
            raise ConfigError(f"--rerank: weight of {name} must lie in [0, 1], got {weight}")
        pool = None
        if at:
            try:
                pool = int(n)
            except ValueError:
                pool = 0
            if pool < 1:
                raise ConfigError(
                    f"--rerank: {part!r}: the pool after @ must be a positive integer, e.g. {name}:{w}@50"
                )
        steps.append(RerankStep(name, weight, pool, is_auto))
    late = [s.name for s in steps[1:] if s.name in SET_RERANKERS]
    if late:
        raise ConfigError(
            f"--rerank: {spec!r}: {late[0]} chooses a set of k, so it can only be the first step (a later "
            f"step reorders the k items before it, and a set re-ranker would return them in the model's order)"
        )
    if not auto and any(s.auto for s in steps):
        raise ConfigError(
            f"--rerank: {spec!r}: an auto weight is chosen on a validation split by tokrec recommend or tokrec "
            "evaluate (they print the choice); give the chosen weight here"
        )
    if any(s.auto for s in steps) and len(steps) > 1:
        raise ConfigError(
            f"--rerank: {spec!r}: auto chooses the weight of a single re-ranker; give the chain's weights"
        )
    return steps


def min_max(scores: np.ndarray) -> np.ndarray:
    """A list's scores scaled to [0, 1] (all 0 when they are equal): the relevance the per-list re-rankers use."""
    s = np.asarray(scores, dtype=np.float64)
    lo, hi = np.nanmin(s), np.nanmax(s)
    return np.zeros_like(s) if not np.isfinite(hi - lo) or hi == lo else (s - lo) / (hi - lo)


def mmr(scores: np.ndarray, vectors: np.ndarray, k: int, weight: float) -> np.ndarray:
    """Positions (into ``scores``) of the MMR list of ``k``; ``vectors`` are the candidates' LM vectors."""
    rel = min_max(scores)
    v = np.asarray(vectors, dtype=np.float64)
    v = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
    k = min(k, len(rel))
    chosen: list[int] = []
    max_sim = np.full(len(rel), -np.inf)
    free = np.ones(len(rel), dtype=bool)
    for _ in range(k):
        pen = np.where(np.isfinite(max_sim), max_sim, 0.0)
        obj = np.where(free, (1 - weight) * rel - weight * pen, -np.inf)
        j = int(np.argmax(obj))
        chosen.append(j)
        free[j] = False
        max_sim = np.maximum(max_sim, v @ v[j])
    return np.asarray(chosen, dtype=np.int64)


def dpp(
    scores: np.ndarray, vectors: np.ndarray, k: int, weight: float, scale: float | None = None
) -> np.ndarray:
    """Positions (into ``scores``) of the DPP's greedy MAP list of ``k``, in the order the greedy search adds them.

    Chen, Zhang & Zhou (NeurIPS 2018), Algorithm 1, on ``L = diag(q) S diag(q)``, ``S = V V^T`` over the
    unit-normalised ``vectors`` and ``q = exp(a rel)``, ``a = (1 - weight) / (2 weight)``: each step adds the
    candidate with the largest ``log det L_{Y + i} - log det L_Y = 2 a rel_i + log d_i^2``, ``d_i^2`` its
    conditional variance under ``S`` given the chosen items, updated incrementally (one Cholesky row per step,
    ``O(n k)`` each). The Cholesky runs on ``S`` and the quality enters in log space, which is the same
    argmax as on ``L`` (``d_i^2(L) = q_i^2 d_i^2(S)``) without ``exp`` overflowing at small weights. Once no
    candidate adds volume (``d_i^2 <= DPP_EPS``) the rest are filled by relevance. ``weight = 0``: the base
    order. ``scale`` given (``sdpp``): ``rel = (scores - max) / scale`` instead of min-max.
    """
    if scale is None:
        rel = min_max(scores)
    else:
        if not scale > 0:
            raise ConfigError(f"sdpp needs a positive score scale, got {scale}")
        s = np.asarray(scores, dtype=np.float64)
        rel = (s - np.max(s)) / scale
    n = len(rel)
    k = min(k, n)
    by_rel = np.lexsort((np.arange(n), -rel))
    if weight <= 0.0:
        return by_rel[:k].astype(np.int64)
    a = (1.0 - weight) / (2.0 * weight)
    v = np.asarray(vectors, dtype=np.float64)
    v = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
    var = np.einsum("ij,ij->i", v, v)
    chol = np.zeros((k, n))
    free = np.ones(n, dtype=bool)
    chosen: list[int] = []
    for t in range(k):
        ok = free & (var > DPP_EPS)
        if not ok.any():
            chosen.extend(int(i) for i in by_rel if free[i])
            break
        gain = np.where(ok, 2.0 * a * rel + np.log(np.where(ok, var, 1.0)), -np.inf)
        j = int(np.argmax(gain))
        chosen.append(j)
        free[j] = False
        e = (v @ v[j] - chol[:t, j] @ chol[:t]) / math.sqrt(var[j])
        chol[t] = e
        var = var - e * e
    return np.asarray(chosen[:k], dtype=np.int64)


def kl_divergence(p: np.ndarray, q: np.ndarray, alpha: float = CALIBRATION_ALPHA) -> float:
    """``KL(p || (1 - alpha) q + alpha p)`` in nats, over categories with ``p > 0``."""
    qt = (1 - alpha) * np.asarray(q, dtype=np.float64) + alpha * np.asarray(p, dtype=np.float64)
    m = p > 0
    return float(np.sum(p[m] * np.log(p[m] / qt[m])))


def calibrate(scores: np.ndarray, categories: np.ndarray, p: np.ndarray, k: int, weight: float) -> np.ndarray:
    """Positions of Steck's calibrated list of ``k``; ``categories`` is ``(n_candidates, n_cats)`` (rows
    sum to 1), ``p`` the user's category distribution."""
    rel = min_max(scores)
    cats = np.asarray(categories, dtype=np.float64)
    k = min(k, len(rel))
    chosen: list[int] = []
    total = np.zeros(cats.shape[1])
    rel_sum = 0.0
    free = np.ones(len(rel), dtype=bool)
    m = p > 0
    for n in range(1, k + 1):
        q = (total[None, :] + cats) / n  # the list's distribution if each candidate were added
        qt = (1 - CALIBRATION_ALPHA) * q[:, m] + CALIBRATION_ALPHA * p[m]
        kl = np.sum(p[m] * np.log(p[m] / qt), axis=1)
        obj = np.where(free, (1 - weight) * (rel_sum + rel) - weight * kl, -np.inf)
        j = int(np.argmax(obj))
        chosen.append(j)
        free[j] = False
        total += cats[j]
        rel_sum += rel[j]
    return np.asarray(chosen, dtype=np.int64)


def xquad_long_tail(
    scores: np.ndarray, in_head: np.ndarray, p_head: float, k: int, weight: float
) -> np.ndarray:
    """Positions of the xQuAD list of ``k``; ``in_head`` marks short-head candidates, ``p_head`` is the
    share of the user's training items in the head."""
    rel = min_max(scores)
    head = np.asarray(in_head, dtype=bool)
    k = min(k, len(rel))
    chosen: list[int] = []
    free = np.ones(len(rel), dtype=bool)
    head_left, tail_left = 1.0, 1.0  # prod over the list of (1 - [j in c])
    for _ in range(k):
        cover = np.where(head, p_head * head_left, (1 - p_head) * tail_left)
        obj = np.where(free, (1 - weight) * rel + weight * cover, -np.inf)
        j = int(np.argmax(obj))
        chosen.append(j)
        free[j] = False
        if head[j]:
            head_left = 0.0
        else:
            tail_left = 0.0
    return np.asarray(chosen, dtype=np.int64)


def propensity_rerank(scores: np.ndarray, log_popularity: np.ndarray, k: int, weight: float) -> np.ndarray:
    """Positions of the ``k`` best by ``(1 - w) rel + w (1 - log_popularity)`` (``log_popularity`` in [0, 1]);
    ties keep the base order."""
    obj = (1 - weight) * min_max(scores) + weight * (1.0 - np.asarray(log_popularity, dtype=np.float64))
    return np.lexsort((np.arange(len(obj)), -obj))[: min(k, len(obj))]


def tail_quota(scores: np.ndarray, in_head: np.ndarray, k: int, share: float) -> np.ndarray:
    """Positions of a list of ``k`` holding at least ``ceil(share k)`` long-tail candidates (``~in_head``), or
    every one the candidates have: the model's top ``k`` when it already does, else the best tail candidates
    by score and the best of the rest. Ties keep the base order; the positions come in no particular order."""
    s = np.asarray(scores, dtype=np.float64)
    tail = ~np.asarray(in_head, dtype=bool)
    k = min(k, len(s))
    by_score = np.lexsort((np.arange(len(s)), -s))
    need = min(int(math.ceil(share * k - 1e-9)), int(tail.sum()))
    top = by_score[:k]
    if int(tail[top].sum()) >= need:
        return top
    forced = by_score[tail[by_score]][:need]
    free = np.ones(len(s), dtype=bool)
    free[forced] = False
    rest = by_score[free[by_score]][: k - need]
    return np.concatenate([forced, rest])


def category_matrix(items: pd.DataFrame, column: str | None = None) -> tuple[np.ndarray, list[str]] | None:
    """``(n_items, n_categories)`` rows summing to 1 (an item's categories share it), in ``items`` order,
    and the category names; None when the catalog has no category column."""
    col = column or next((c for c in CATEGORY_COLUMNS if c in items.columns), None)
    if col is None:
        return None
    if col not in items.columns:
        raise ConfigError(f"the catalog has no column {col!r}")
    lists = [
        [x.strip() for x in str(v).replace(",", "|").split("|") if x.strip()] if isinstance(v, str) else []
        for v in items[col]
    ]
    names = sorted({c for ls in lists for c in ls})
    index = {c: j for j, c in enumerate(names)}
    mat = np.zeros((len(items), len(names)))
    for i, ls in enumerate(lists):
        for c in ls:
            mat[i, index[c]] = 1.0 / len(ls)
    return mat, names


@dataclass
class RerankContext:
    """What the re-rankers need, aligned with one catalog.

    Attributes:
        item_ids: catalog ids (row order of the arrays).
        vectors: ``(n_items, d)`` LM vectors (MMR, intra-list diversity); None when not computed.
        categories: ``(n_items, n_cats)`` category shares (calibration); None without a category column.
        in_head: ``(n_items,)`` short-head membership (popularity).
        user_category: user id -> training category distribution.
        user_head_share: user id -> share of the user's training items in the head.
    """

    item_ids: list[str]
    vectors: np.ndarray | None
    categories: np.ndarray | None
    in_head: np.ndarray
    user_category: dict[str, np.ndarray] = field(default_factory=dict)
    user_head_share: dict[str, float] = field(default_factory=dict)
    category_names: list[str] = field(default_factory=list)
    #: ``log(1 + training users) / log(1 + the largest count)`` per item, in [0, 1]
    log_popularity: np.ndarray | None = None
    #: ``sdpp``'s relevance unit (:func:`score_scale`); None: :func:`rerank_frame` takes it from its frame
    score_scale: float | None = None

    def __post_init__(self) -> None:
        self.index = {i: j for j, i in enumerate(self.item_ids)}

    @classmethod
    def from_train(
        cls,
        train: pd.DataFrame,
        items: pd.DataFrame,
        *,
        vectors: np.ndarray | None = None,
        category_column: str | None = None,
    ) -> RerankContext:
        """Built from the training events (``user_id, item_id``) and the catalog (``item_id`` + attributes,
        row order = ``vectors`` order)."""
        from tokrec.evaluation.metrics import item_popularity, short_head

        ids = items["item_id"].astype(str).tolist()
        counts, _ = item_popularity(train)
        head = short_head(counts, ids)
        in_head = np.array([i in head for i in ids])
        n = counts.reindex(ids).fillna(0).to_numpy(dtype=np.float64)
        log_pop = np.log1p(n) / max(np.log1p(n.max()), 1e-12)
        cm = category_matrix(items, category_column)
        cats, names = (None, []) if cm is None else cm
        index = {i: j for j, i in enumerate(ids)}
        pairs = train[["user_id", "item_id"]].astype(str)
        rows = pairs["item_id"].map(index)
        pairs = pairs[rows.notna()]
        rows = rows[rows.notna()].astype(int).to_numpy()
        users = pairs["user_id"].to_numpy()
        codes, uniq = pd.factorize(users)
        head_share = np.bincount(codes, weights=in_head[rows], minlength=len(uniq)) / np.bincount(codes)
        user_cat: dict[str, np.ndarray] = {}
        if cats is not None:
            sums = np.zeros((len(uniq), cats.shape[1]))
            np.add.at(sums, codes, cats[rows])
            tot = sums.sum(axis=1, keepdims=True)
            dist = sums / np.where(tot > 0, tot, 1.0)
            user_cat = {u: dist[j] for j, u in enumerate(uniq)}
        return cls(
            ids,
            None if vectors is None else np.asarray(vectors, dtype=np.float64),
            cats,
            in_head,
            user_cat,
            {u: float(head_share[j]) for j, u in enumerate(uniq)},
            names,
            log_pop,
        )

    def rerank_user(
        self, user: str, item_ids: Sequence[str], scores: np.ndarray, k: int, steps: list[RerankStep]
    ) -> np.ndarray:
        """Positions into ``item_ids`` of the re-ranked list of ``k`` (chained steps each keep ``k``...
        the first step picks ``k`` from all candidates, or from its ``@N`` best by score, later ones
        reorder those)."""
        if any(step.auto for step in steps):
            raise ConfigError("a re-ranker's weight is auto: choose it first (tokrec.tuning.choose_rerank)")
        rows = np.array([self.index[i] for i in item_ids], dtype=np.int64)
        order = np.arange(len(rows))
        s = np.asarray(scores, dtype=np.float64)
        for step_no, step in enumerate(steps):
            kk = k if step_no == 0 else len(order)
            if step.pool is not None:
                order = order[np.lexsort((np.arange(len(order)), -s[order]))[: max(step.pool, kk)]]
            r, sc = rows[order], s[order]
            if step.name in ("dpp", "sdpp"):
                if self.vectors is None:
                    raise ConfigError(f"{step.name} needs item vectors")
                if step.name == "sdpp" and self.score_scale is None:
                    raise ConfigError("sdpp needs the score scale (RerankContext.score_scale)")
                scale = self.score_scale if step.name == "sdpp" else None
                pick = dpp(sc, self.vectors[r], kk, step.weight, scale)
            elif step.name == "mmr":
                if self.vectors is None:
                    raise ConfigError("mmr needs item vectors")
                pick = mmr(sc, self.vectors[r], kk, step.weight)
            elif step.name == "calibration":
                if self.categories is None:
                    raise ConfigError(
                        f"calibration needs a category column in the catalog ({', '.join(CATEGORY_COLUMNS)})"
                    )
                p = self.user_category.get(user)
                if p is None or p.sum() == 0:
                    pick = np.arange(min(kk, len(r)))
                else:
                    pick = calibrate(sc, self.categories[r], p, kk, step.weight)
            elif step.name == "propensity":
                assert self.log_popularity is not None
                pick = propensity_rerank(sc, self.log_popularity[r], kk, step.weight)
            elif step.name == "tail":
                pick = tail_quota(sc, self.in_head[r], kk, step.weight)
            else:
                pick = xquad_long_tail(
                    sc, self.in_head[r], self.user_head_share.get(user, 1.0), kk, step.weight
                )
            if step.name in SET_RERANKERS:  # the chosen set in the base model's order (module doc)
                pick = pick[np.lexsort((pick, -sc[pick]))]
            order = order[pick]
        return order[:k]


def score_scale(recs: pd.DataFrame) -> float:
    """``sdpp``'s relevance unit: the median over users of ``max - min`` of their finite scores in ``recs``
    (``user_id, score``); 1.0 when no user has two different scores."""
    s = recs[["user_id", "score"]].copy()
    s = s[np.isfinite(s["score"].to_numpy(dtype=np.float64))]
    g = s.groupby(s["user_id"].astype(str), sort=False)["score"]
    ranges = (g.max() - g.min()).to_numpy(dtype=np.float64)
    ranges = ranges[ranges > 0]
    return float(np.median(ranges)) if len(ranges) else 1.0


def training_score_scale(
    model: Any, pool: int, candidates: Sequence[str] | None = None, exclude_seen: bool = True
) -> float:
    """``sdpp``'s unit for a fitted model, as ``serve`` and ``recommend --users`` take it: :func:`score_scale`
    over the best ``pool`` items of the first :data:`SCALE_USERS` training users (by row), so that a few
    requested users' lists do not set it."""
    users = list(model.user_vocab_.ids[:SCALE_USERS])
    recs = model.recommend_batch(users, k=pool, candidates=candidates, exclude_seen=exclude_seen)
    return score_scale(recs)


def rerank_frame(
    recs: pd.DataFrame,
    context: RerankContext,
    spec: str | list[RerankStep],
    k: int,
    *,
    rest: bool = False,
) -> pd.DataFrame:
    """Re-ranks every user's list in ``recs`` (``user_id, item_id, score[, rank]``) to ``k`` items.

    Returns ``user_id, item_id, score, rank`` with the base score kept and ``rank`` the new order.
    Items unknown to the context are dropped. ``sdpp`` without ``context.score_scale`` takes it from
    ``recs`` (:func:`score_scale`). ``rest``: below the ``k`` re-ranked items, the user's other candidates
    follow in the base order (so that metrics at cut-offs deeper than ``k`` still read a full list, while
    the top ``k`` is the list of ``k`` the re-ranker chose: the set re-rankers' top ``k`` is not a prefix of
    their longer lists).
    """
    steps = parse_rerank(spec) if isinstance(spec, str) else spec
    if not steps:
        return recs
    if any(s.name == "sdpp" for s in steps) and context.score_scale is None:
        if "score" not in recs.columns:
            raise ConfigError("sdpp needs the model's scores (a score column)")
        context = replace(context, score_scale=score_scale(recs))
    r = recs[ids_in(recs["item_id"].astype(str), context.item_ids)].copy()
    r["user_id"], r["item_id"] = r["user_id"].astype(str), r["item_id"].astype(str)
    if "rank" in r.columns:
        r = r.sort_values(["user_id", "rank"], kind="mergesort")
    cols = ["user_id", "item_id"] + (["score"] if "score" in r.columns else [])
    if r.empty:
        return pd.DataFrame(columns=["user_id", "item_id", "score", "rank"])
    # one pass over the users with plain arrays (users in order of first appearance, each user's rows in
    # list order); pandas per user cost more than the re-rankers themselves
    codes, users = pd.factorize(r["user_id"])
    rows = np.argsort(codes, kind="stable")
    ends = np.cumsum(np.bincount(codes))
    items = r["item_id"].to_numpy()
    all_scores = r["score"].to_numpy(dtype=np.float64) if "score" in r.columns else None
    chosen, ranks = [], []
    for u, user in enumerate(users):
        idx = rows[ends[u - 1] if u else 0 : ends[u]]
        s = all_scores[idx] if all_scores is not None else -np.arange(len(idx), dtype=float)
        finite = np.isfinite(s)
        if not finite.all():
            s = np.where(finite, s, s[finite].min() if finite.any() else 0.0)
        pos = context.rerank_user(str(user), items[idx].tolist(), s, k, steps)
        if rest:
            below = np.ones(len(idx), dtype=bool)
            below[pos] = False
            pos = np.concatenate([pos, np.flatnonzero(below)])
        chosen.append(idx[pos])
        ranks.append(np.arange(1, len(pos) + 1))
    out = r.iloc[np.concatenate(chosen)][cols].reset_index(drop=True)
    out["rank"] = np.concatenate(ranks)
    return out


def pool_size(k: int) -> int:
    """How many base recommendations a re-ranker chooses ``k`` from: ``max(100, 5 k)``."""
    return max(100, 5 * k, int(math.ceil(k)))


def rerank_recommendations(
    recs: pd.DataFrame,
    dataset: Any,
    spec: str,
    k: int,
    vectors: Callable[[], np.ndarray | None] | np.ndarray | None = None,
    scale: float | None = None,
) -> pd.DataFrame:
    """Re-ranks a model's ``recs`` (best ``pool_size(k)`` per user) over ``dataset`` (a fitted-on
    :class:`~tokrec.data.dataset.Dataset`) to ``k`` per user; ``vectors`` (catalog order, or a callable
    computing them) are needed by ``mmr``, ``dpp`` and ``sdpp`` only; ``scale``: ``sdpp``'s unit (None: from
    ``recs``, :func:`score_scale`)."""
    steps = parse_rerank(spec)
    if not steps:
        return recs
    v = None
    if any(s.name in VECTOR_RERANKERS for s in steps):
        v = vectors() if callable(vectors) else vectors
        if v is None:
            raise ConfigError("--rerank mmr / dpp / sdpp need item vectors")
    context = RerankContext.from_train(dataset.interactions, dataset.items, vectors=v)
    context.score_scale = scale
    return rerank_frame(recs, context, steps, k)
