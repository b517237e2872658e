"""Runs several models on one split and scores them under one protocol.

Full ranking is the default: each model ranks the whole catalog (or the split's ``candidates``) minus the
user's training items, and :func:`~tokrec.evaluation.metrics.score_recommendations` scores the top
``n_recs``. Sampled-negative evaluation (each test user's relevant items ranked against
``sampled_negatives`` random unseen items) runs only when asked, and its figures are kept apart and
labelled ``sampled-N`` everywhere.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from tokrec.data.dataset import Dataset
from tokrec.evaluation import metrics as em
from tokrec.evaluation.responsibility import (
    group_accuracy,
    responsibility_metrics,
    tradeoff_curves,
    user_groups,
)
from tokrec.evaluation.splits import Split
from tokrec.models.base import Recommender, tie_order, wants_item_vectors
from tokrec.models.registry import create_model

log = logging.getLogger(__name__)

#: an array ``(n_items, d)`` aligned with the catalog, or a callable computing it (called at most once)
VectorSource = np.ndarray | Callable[[], np.ndarray | None] | None


@dataclass
class ModelRun:
    """One model's results on one split.

    Attributes:
        model: registry name.
        config: the config it was built with (JSON-serialisable).
        metrics: full-ranking figures of :func:`score_recommendations`, plus ``tied@K`` and a 95%
            bootstrap interval of NDCG at the main K over test users (``ndcg@K_ci_low`` / ``_ci_high``).
        fit_seconds: wall time of ``fit``.
        tune_seconds: wall time of the tuning step before it (a validation split of the training events; the
            tuner's own fits included), NaN when the model was not tuned.
        recommend_seconds: wall time of ``recommend_batch`` for every test user.
        recs: ``user_id, item_id, score, rank`` (top ``n_recs`` per test user).
        popularity_deciles: share of top-K recommendations per catalog popularity decile (0 = most popular).
        sampled_metrics: the same figures under sampled-negative evaluation, when asked.
        error: the failure, when the model could not be fitted or run (other fields then empty).
    """

    model: str
    config: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    fit_seconds: float = float("nan")
    tune_seconds: float = float("nan")
    recommend_seconds: float = float("nan")
    recs: pd.DataFrame | None = None
    popularity_deciles: list[float] = field(default_factory=list)
    sampled_metrics: dict[str, Any] | None = None
    error: str | None = None
    #: accuracy per user group (tokrec.evaluation.responsibility.group_accuracy rows)
    groups: list[dict[str, Any]] = field(default_factory=list)
    #: the re-ranking applied to the model's lists (e.g. "mmr:0.3"), if any
    rerank: str | None = None
    #: the spec asked for when its weight was chosen on validation (``"tail:auto"``; ``rerank`` is the choice)
    rerank_asked: str | None = None
    #: with ``rerank_asked``: what the choice did on its validation split (:meth:`tokrec.tuning.RerankSpecChoice.line`)
    rerank_validation: str | None = None
    #: re-rankers' trade-off curves over the model's own lists (:func:`tokrec.evaluation.responsibility.tradeoff_curves`)
    tradeoffs: list[dict[str, Any]] = field(default_factory=list)
    #: NDCG at the main cut-off of each test user (index ``user_id``): the paired comparisons read it; not saved
    per_user: pd.Series | None = field(default=None, repr=False, compare=False)


@dataclass
class ProtocolResult:
    """Every model's run on one split."""

    split: Split
    runs: list[ModelRun]
    ks: list[int]
    sampled_negatives: int | None = None
    #: the model every other is compared with, user by user (:func:`paired_comparisons`); None: fewer than two ran
    reference: str | None = None
    #: per compared model: :func:`tokrec.evaluation.metrics.paired_difference` of its NDCG at the main cut-off
    #: minus the reference's, over the same test users
    paired: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.split.protocol


def main_k(ks: Sequence[int]) -> int:
    """The cut-off reports lead with: 10 when evaluated, else the largest."""
    return 10 if 10 in ks else max(ks)


def sampling_label(n: int | None) -> str:
    """The label every output carries: ``full`` or ``sampled-N``."""
    return "full" if not n else f"sampled-{n}"


class _Vectors:
    """Resolves a :data:`VectorSource` lazily, once."""

    def __init__(self, source: VectorSource) -> None:
        self._source = source
        self._value: np.ndarray | None = source if isinstance(source, np.ndarray) else None

    def get(self) -> np.ndarray | None:
        if self._value is None and callable(self._source):
            value = self._source()
            self._value = None if value is None else np.asarray(value, dtype=np.float32)
            self._source = None
        return self._value


def sampled_recommendations(
    model: Any, split: Split, *, n_negatives: int, k: int, seed: int = 0, batch_size: int = 256
) -> pd.DataFrame:
    """Top-``k`` of each test user's relevant items plus ``n_negatives`` sampled unseen items.

    Negatives are drawn without replacement from the catalog (or the split's candidates) minus the
    user's training and test items, with ``numpy.random.default_rng(seed)`` in test-user order.
    Users the model cannot score get no rows (a miss). Exact score ties are broken the way
    ``recommend_batch`` breaks them.

    Returns:
        ``user_id, item_id, score, rank`` like ``recommend_batch``.
    """
    items = split.train.item_vocab
    allowed = np.ones(len(items), dtype=bool)
    if split.candidates is not None:
        allowed[:] = False
        allowed[items.encode(split.candidates)] = True
    rng = np.random.default_rng(seed)
    seen = split.train.interactions.groupby("user_id")["item_id"].agg(list).to_dict()
    rel = split.test.interactions.groupby("user_id", sort=False)["item_id"].agg(list).to_dict()
    users = split.test_users
    ids = np.asarray(items.ids, dtype=object)
    tie = tie_order(len(items))  # the order recommend_batch breaks exact ties by
    frames = []
    for start in range(0, len(users), batch_size):
        chunk = users[start : start + batch_size]
        scores = model.score(chunk)
        for j, u in enumerate(chunk):
            if not np.isfinite(scores[j]).any():
                continue
            r = items.encode(rel[u])
            r = np.unique(r[allowed[r]])
            pool = allowed.copy()
            pool[items.encode(seen.get(u, []))] = False
            pool[r] = False
            pool_rows = np.flatnonzero(pool)
            neg = rng.choice(pool_rows, size=min(n_negatives, len(pool_rows)), replace=False)
            rows = np.concatenate([r, neg])
            s = scores[j, rows]
            order = np.lexsort((tie[rows], -np.nan_to_num(s, nan=-np.inf)))[:k]
            frames.append(
                pd.DataFrame(
                    {
                        "user_id": u,
                        "item_id": ids[rows[order]],
                        "score": s[order],
                        "rank": np.arange(1, len(order) + 1),
                    }
                )
            )
    if not frames:
        return pd.DataFrame(columns=["user_id", "item_id", "score", "rank"])
    return pd.concat(frames, ignore_index=True)


def run_model(
    name: str,
    split: Split,
    *,
    ks: Sequence[int] = (10,),
    config: Mapping[str, Any] | None = None,
    item_vectors: VectorSource = None,
    n_recs: int | None = None,
    sampled_negatives: int | None = None,
    seed: int = 0,
    rerank: str | None = None,
    users: pd.DataFrame | None = None,
    fit: Callable[[Dataset, np.ndarray | None], Recommender] | None = None,
    tradeoffs: Sequence[str] = (),
    rerank_loss: float = 0.05,
    context: Callable[[], Any] | None = None,
) -> ModelRun:
    """Fits the registry model ``name`` on ``split.train`` and scores it on ``split.test``.

    Args:
        name: a registry name (``tokrec.models.registry.available_models()``).
        split: the split.
        ks: cut-offs.
        config: the model's config (its defaults when None).
        item_vectors: catalog item vectors, given to the models that want them
            (:func:`tokrec.models.base.wants_item_vectors`).
        n_recs: recommendations kept per user (default ``max(100, max(ks))``).
        sampled_negatives: also evaluate against this many sampled negatives per user.
        seed: seed of the negative sampling.
        rerank: a re-ranking spec (``tokrec.rerank.parse_rerank``, e.g. ``"mmr:0.3"``): each user's ``n_recs``
            list is re-ranked to the main cut-off (:func:`main_k`, the list a user is shown) before scoring;
            deeper positions keep the model's order. ``name:auto`` chooses the weight on a validation split of
            ``split.train`` first (:func:`tokrec.tuning.choose_rerank`, NDCG loss ``rerank_loss``); the run
            records the spec chosen.
        tradeoffs: re-rankers (``"mmr"``, ``"tail"``, ...) whose trade-off curves to measure on the model's own
            lists (before ``rerank``), at the main cut-off (:func:`tokrec.evaluation.responsibility.tradeoff_curves`).
        users: user attributes (``user_id``, ``gender``, ``age``, ``occupation``) for per-group accuracy;
            activity groups are always reported.
        fit: fits the model on ``split.train`` (given the item vectors when the model wants them) in place
            of ``create_model(name, config).fit``: ``tokrec evaluate`` passes
            :func:`tokrec.tuning.fit_tuned`'s for a tuned model, which reuses what the tuner trained.
        context: gives the split's :class:`tokrec.rerank.RerankContext` (the re-rankers' and the responsibility
            metrics' inputs) when the caller shares one between models; built here when None.
    """
    ks = sorted(set(ks))
    n_recs = n_recs or max(100, max(ks))
    model = create_model(name, dict(config or {}))
    vectors = _Vectors(item_vectors) if not isinstance(item_vectors, _Vectors) else item_vectors
    wants = wants_item_vectors(model)
    vecs = vectors.get() if wants else None
    t0 = time.perf_counter()
    model = fit(split.train, vecs) if fit is not None else model.fit(split.train, vecs)
    fit_s = time.perf_counter() - t0
    asked, validation = rerank, None
    if rerank:
        rerank, validation = _resolve_auto(
            rerank, name, split, config, vecs, vectors, fit, main_k(ks), rerank_loss
        )
    t0 = time.perf_counter()
    recs = model.recommend_batch(split.test_users, k=n_recs, candidates=split.candidates)
    rec_s = time.perf_counter() - t0
    srecs = (
        sampled_recommendations(model, split, n_negatives=sampled_negatives, k=max(ks), seed=seed)
        if sampled_negatives
        else None
    )
    config_used = model.config.model_dump(mode="json")
    del model  # scored: what follows reads its lists, not the model (10 GB at a million items)
    train = split.train.interactions
    test = split.test.interactions
    catalog = split.train.item_vocab.ids
    # the evaluation's own input (built once per split by evaluate_split): not the model's time
    ctx = context() if context is not None else _responsibility_context(split, vectors)
    base_recs = recs
    if rerank:
        from tokrec.rerank import rerank_frame

        t0 = time.perf_counter()
        # the list a user is shown is the main cut-off's (10): re-ranked to it, the model's order below it
        recs = rerank_frame(recs, ctx, rerank, main_k(ks), rest=True)
        rec_s += time.perf_counter() - t0
    curves = tradeoff_curves(base_recs, split, ctx, tradeoffs, main_k(ks)) if tradeoffs else []
    metrics = em.score_recommendations(
        recs, test, train, k=ks, candidates=split.candidates, catalog=catalog, per_user=True, with_clean=True
    )
    per_user, clean = metrics.pop("per_user"), metrics.pop("clean")
    for kk in ks:
        metrics[f"tied@{kk}"] = em.tied_share(clean, kk)
    k0 = main_k(ks)
    lo, hi = em.bootstrap_ci(per_user[f"ndcg@{k0}"].to_numpy(), seed=seed)
    metrics[f"ndcg@{k0}_ci_low"], metrics[f"ndcg@{k0}_ci_high"] = lo, hi
    deciles = em.popularity_deciles(clean, train, catalog, k=main_k(ks))
    metrics.update(responsibility_metrics(clean, ctx, split.candidates or catalog, k0))
    groups = group_accuracy(per_user, user_groups(train, users), f"ndcg@{k0}", seed=seed)
    each = per_user.set_index("user_id")[f"ndcg@{k0}"]
    sampled = None
    if srecs is not None:
        sampled = em.score_recommendations(
            srecs, test, train, k=ks, candidates=split.candidates, catalog=catalog
        )
        sampled["ranking"] = sampling_label(sampled_negatives)
    return ModelRun(
        model=name,
        config=config_used,
        metrics=metrics,
        fit_seconds=fit_s,
        recommend_seconds=rec_s,
        recs=recs,
        popularity_deciles=deciles,
        sampled_metrics=sampled,
        groups=groups,
        rerank=rerank or None,
        rerank_asked=asked if asked != rerank else None,
        rerank_validation=validation,
        tradeoffs=curves,
        per_user=each,
    )


def _resolve_auto(
    rerank: str,
    name: str,
    split: Split,
    config: Mapping[str, Any] | None,
    vecs: np.ndarray | None,
    vectors: _Vectors,
    fit: Callable[[Dataset, np.ndarray | None], Recommender] | None,
    k: int,
    loss: float,
) -> tuple[str, str | None]:
    """``rerank`` with an ``auto`` weight chosen on a validation split of ``split.train`` (the model refitted
    there the way it was fitted here), and one line of what the choice did there; other specs unchanged
    (no line)."""
    from tokrec.errors import ConfigError
    from tokrec.rerank import parse_rerank
    from tokrec.tuning import choose_rerank

    if not any(s.auto for s in parse_rerank(rerank)):
        return rerank, None
    if split.candidates is not None:
        raise ConfigError(
            f"--rerank {rerank}: auto chooses on each user's last event; on candidate items give the weight"
        )

    def refit(d: Dataset) -> Recommender:
        return fit(d, vecs) if fit is not None else create_model(name, dict(config or {})).fit(d, vecs)

    choice = choose_rerank(rerank, refit, split.train, vectors.get(), k=k, loss=loss)
    assert choice is not None
    log.info("%s on %s: %s", name, split.protocol, choice.line())
    return choice.spec, choice.line()


def _responsibility_context(split: Split, vectors: _Vectors) -> Any:
    """The re-rankers' and responsibility metrics' inputs for ``split`` (vectors only when available)."""
    from tokrec.rerank import RerankContext

    return RerankContext.from_train(split.train.interactions, split.train.items, vectors=vectors.get())


def evaluate_split(
    split: Split,
    models: Sequence[str],
    *,
    ks: Sequence[int] = (10,),
    configs: Mapping[str, Mapping[str, Any]] | None = None,
    item_vectors: VectorSource = None,
    n_recs: int | None = None,
    sampled_negatives: int | None = None,
    seed: int = 0,
    on_error: str = "raise",
    rerank: str | None = None,
    users: pd.DataFrame | None = None,
    fits: Mapping[str, Callable[[Dataset, np.ndarray | None], Recommender]] | None = None,
    tradeoffs: Sequence[str] = (),
    rerank_loss: float = 0.05,
    tune_seconds: Mapping[str, float] | None = None,
    reference: str | None = None,
) -> ProtocolResult:
    """Runs every model in ``models`` on ``split`` (see :func:`run_model`), then compares each with
    ``reference`` user by user (:func:`paired_comparisons`).

    Args:
        on_error: ``"raise"`` stops at the first failing model; ``"record"`` keeps its error in the
            result (``ModelRun.error``) and goes on.
        rerank, users, tradeoffs, rerank_loss: see :func:`run_model`.
        fits: per model name, the ``fit`` of :func:`run_model` (default: none).
        tune_seconds: per tuned model name, the seconds its tuning took (recorded as ``ModelRun.tune_seconds``).
    """
    if reference is not None and reference not in models:
        from tokrec.errors import ConfigError

        raise ConfigError(f"reference {reference!r} is not among the models ({', '.join(models)})")
    vectors = _Vectors(item_vectors)
    runs = []
    context = functools.cache(
        lambda: _responsibility_context(split, vectors)
    )  # once per split, when first needed
    for name in models:
        log.info("%s: fitting %s", split.protocol, name)
        try:
            # every model's lists are measured on the LM vectors (intra-list diversity), so the catalog
            # is encoded (once, cached) even when no model uses vectors; run_model gives them to fit only
            # when the model wants them
            run = run_model(
                name,
                split,
                ks=ks,
                config=(configs or {}).get(name),
                item_vectors=vectors.get,
                n_recs=n_recs,
                sampled_negatives=sampled_negatives,
                seed=seed,
                rerank=rerank,
                users=users,
                fit=(fits or {}).get(name),
                tradeoffs=tradeoffs,
                rerank_loss=rerank_loss,
                context=context,
            )
        except Exception as e:
            if on_error != "record":
                raise
            log.warning("%s on %s failed: %s", name, split.protocol, e)
            run = ModelRun(model=name, error=f"{type(e).__name__}: {e}")
        run.tune_seconds = (tune_seconds or {}).get(name, float("nan"))
        runs.append(run)
    ref, paired = paired_comparisons(runs, reference, seed=seed)
    return ProtocolResult(split, runs, sorted(set(ks)), sampled_negatives, ref, paired)


def paired_comparisons(
    runs: Sequence[ModelRun], reference: str | None = None, *, seed: int = 0
) -> tuple[str | None, dict[str, dict[str, Any]]]:
    """Every model that ran against one reference, user by user: the mean difference of their NDCG at the
    main cut-off (model minus reference) over the same test users, with its paired bootstrap interval
    (:func:`tokrec.evaluation.metrics.paired_difference`).

    ``reference``: a model among ``runs`` (:func:`evaluate_split` checks it before fitting); default the
    recommended model ``tokrec`` when it ran, else the first model that ran. Returns ``(reference, {model:
    comparison})``; ``(None, {})`` with fewer than two models, or when the reference did not run.
    """
    done = [r for r in runs if not r.error and r.per_user is not None]
    names = [r.model for r in done]
    if len(done) < 2:
        return None, {}
    ref = reference if reference is not None else ("tokrec" if "tokrec" in names else names[0])
    if ref not in names:  # asked for, but it failed
        return None, {}
    base = next(r for r in done if r.model == ref).per_user
    assert base is not None
    base = base.sort_index()  # users in id order: the interval does not depend on the test file's row order
    out = {}
    for r in done:
        if r.model == ref:
            continue
        assert r.per_user is not None
        mine = r.per_user.reindex(base.index)  # every test user is scored, so the same users
        out[r.model] = em.paired_difference(mine.to_numpy(), base.to_numpy(), seed=seed)
    return ref, out


def _needs_vectors(name: str) -> bool:
    """Whether the registry model ``name`` uses item vectors (without building it)."""
    from tokrec.models.registry import model_class

    cls = model_class(name)
    return wants_item_vectors(cls)
