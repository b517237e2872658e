"""The recommender interface: fit / score / recommend / save / load (no pickle).

A subclass implements ``_fit``, ``_score_users`` (a score for every catalog item, per known user) and,
where it can, ``_score_history`` (the same for an anonymous history of item rows, used for visitors and
for the online service). Everything with external ids, candidate sets and seen-item exclusion lives
here once.

Saved form: a directory with ``config.json`` (model name, its typed config, vocabularies) and
``arrays.safetensors`` (every learned array). Loading never unpickles anything.
"""

from __future__ import annotations

import copy
import functools
import os
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Generic, cast, get_args, get_origin

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field
from typing_extensions import Self, TypeVar

from tokrec.config import validate_config, with_overrides
from tokrec.data.dataset import Dataset, Vocab
from tokrec.errors import ConfigError, UnknownIdError, printable


class ModelConfig(BaseModel):
    """Base for typed model configs (hyperparameters: what changes what is learned or scored).

    Unknown keys are rejected, loudly; a config is built only through
    :func:`tokrec.config.validate_config` and never changes once a model holds it."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class RuntimeOptions(BaseModel):
    """Base for a model's runtime options: how it runs (threads, device, dtype, progress), not what it
    learns. They are kept apart from the config, may change on a fitted model (:meth:`Recommender.
    set_runtime`) and are never saved with it."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class ThreadOptions(RuntimeOptions):
    """Runtime options of a model that only needs a CPU thread count."""

    threads: int = Field(2, ge=0, description="CPU threads (0: the library's own default)")


#: a model's config class and runtime options class (``class ALS(Recommender[ALSConfig, ThreadOptions])``)
C = TypeVar("C", bound=ModelConfig, default=Any)
R = TypeVar("R", bound=RuntimeOptions, default=Any)


class Recommender(ABC, Generic[C, R]):
    """Base class for every recommender.

    A model names its config class (and its runtime options class, where it has runtime options) once,
    as type arguments (``class ALS(Recommender[ALSConfig, ThreadOptions])``): ``Config`` / ``Runtime``
    (the classes that validate) and the types of ``config`` / ``runtime`` follow from them.
    Learned state ends in ``_``; ``__init__`` stores the config and the runtime options only. The learned
    state that is saved is declared once, in ``state``; saving and loading follow from it.
    """

    name: ClassVar[str] = "base"
    #: the config and runtime classes, set from the type arguments by ``__init_subclass__``
    Config: ClassVar[type[ModelConfig]] = ModelConfig
    Runtime: ClassVar[type[RuntimeOptions]] = RuntimeOptions
    config: C
    runtime: R
    #: the learned attributes (besides vocabularies and histories) that ``save`` writes and ``load`` restores
    state: ClassVar[tuple[str, ...]] = ()
    #: state fields that a directory saved by an older version may lack: loaded as None, derived in
    #: ``_reset_caches`` from the rest
    optional_state: ClassVar[frozenset[str]] = frozenset()
    #: config fields that change only scoring, not what is learned: :meth:`with_scoring` may set them
    scoring_options: ClassVar[frozenset[str]] = frozenset()
    #: True when the model can score items it never saw in training (from their text vectors).
    scores_new_items: ClassVar[bool] = False
    #: True when ``_score_users`` / ``_score_history`` take ``candidates`` (item rows) and score only those
    #: (models that retrieve their own candidates on large catalogs; see :meth:`score_rows`).
    scores_candidates: ClassVar[bool] = False
    #: True when the model needs item vectors (``item_vectors`` passed to fit).
    needs_item_vectors: ClassVar[bool] = False
    #: True when the model reads the order or timing of a user's events (a sequential model): as a part of
    #: ``tokrec``'s blend it is left out of the tuner's "without order signals" ablation.
    reads_order: ClassVar[bool] = False
    #: True when the model works without item vectors but uses them when given (e.g. F_ij features).
    uses_item_vectors: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for base in cls.__dict__.get("__orig_bases__", ()):
            origin, args = get_origin(base), get_args(base)
            if not (isinstance(origin, type) and issubclass(origin, Recommender)):
                continue
            for arg in args:
                if isinstance(arg, type) and issubclass(arg, ModelConfig):
                    cls.Config = arg
                elif isinstance(arg, type) and issubclass(arg, RuntimeOptions):
                    cls.Runtime = arg

    def __init__(
        self,
        config: ModelConfig | dict[str, Any] | None = None,
        *,
        runtime: RuntimeOptions | dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """``config`` (and ``kwargs``, which override it) are validated into ``self.Config``; keys that
        name runtime options (``self.Runtime``'s fields) go to ``self.runtime`` instead, as does
        ``runtime``. An invalid value or an unknown key raises ConfigError naming the field."""
        for what, value in (("config", config), ("runtime", runtime)):
            if value is not None and not isinstance(value, BaseModel | Mapping):
                raise ConfigError(
                    f"{self.name}: {what} must be a dict of settings, not {type(value).__name__} "
                    f"({printable(repr(value))})"
                )
        data = config.model_dump() if isinstance(config, BaseModel) else dict(config or {})
        data.update(kwargs)
        options = {k: data.pop(k) for k in list(data) if k in self.Runtime.model_fields}
        options.update(runtime.model_dump() if isinstance(runtime, BaseModel) else runtime or {})
        self.config = cast(C, validate_config(self.Config, data, what=self.name))
        self.runtime = cast(R, validate_config(self.Runtime, options, what=f"{self.name} runtime"))
        self.item_vocab_: Vocab | None = None
        self.user_vocab_: Vocab | None = None
        self.seen_: dict[int, np.ndarray] = {}

    def set_runtime(self, **options: Any) -> None:
        """Changes runtime options (validated); the config and the learned state stay as they are."""
        self.runtime = with_overrides(self.runtime, options, what=f"{self.name} runtime")

    def with_scoring(self, **overrides: Any) -> Recommender:
        """A copy of this fitted model that scores with other values of its scoring-only options
        (``scoring_options``). The copy shares the learned state (read-only); this model, and its config,
        are unchanged. Any other key raises ConfigError: it would need a new fit."""
        self._check_fitted()
        other = sorted(set(overrides) - self.scoring_options)
        if other:
            allowed = ", ".join(sorted(self.scoring_options)) or "none"
            raise ConfigError(
                f"{self.name}: {', '.join(other)} change(s) training: fit a new model (scoring options: {allowed})"
            )
        clone = copy.copy(self)
        clone.config = with_overrides(self.config, overrides, what=self.name)
        clone._reset_caches()
        return clone

    def _reset_caches(self) -> None:
        """Drops caches derived from the config or the learned state (models with caches override)."""
        return None

    def prepare(self) -> None:
        """Builds what scoring derives from the learned state (indexes, tables) now instead of on the first
        query; the service calls it before it answers. Models without such state do nothing."""
        return None

    # ---- to implement --------------------------------------------------------------------------
    @abstractmethod
    def _fit(self, dataset: Dataset, item_vectors: np.ndarray | None) -> None:
        """Learns from ``dataset``; ``item_vectors`` is ``(n_items, d)`` aligned with the item vocab."""

    @abstractmethod
    def _score_users(self, user_rows: np.ndarray) -> np.ndarray:
        """Scores of every item for each user row: ``(len(user_rows), n_items)`` float32."""

    def _score_history(self, item_rows: np.ndarray, timestamps: np.ndarray | None = None) -> np.ndarray:
        """Scores of every item for an anonymous history (item rows, oldest first): ``(n_items,)``;
        ``timestamps`` (seconds, aligned with the rows) where known."""
        raise NotImplementedError(f"{self.name} cannot score an anonymous history")

    def memory_estimate(self, dataset: Dataset, dim: int = 384) -> int:
        """Bytes the model needs at its peak while fitting on ``dataset`` with ``dim``-dimensional item
        vectors (0: small, not estimated). Checked by :func:`check_memory` before anything is encoded, so
        that a catalog too large fails at once."""
        return 0

    def memory_advice(self) -> str:
        """What to do when :meth:`memory_estimate` is over the limit (shown in the error)."""
        return "use a machine with more memory, a smaller catalog, or a model that scales (als, bpr)"

    def user_timestamps(self, user_row: int) -> np.ndarray | None:
        """The timestamps of a known user's training events, aligned with ``seen_[user_row]``, for models
        that keep them (None otherwise): the service joins them with the user's online events."""
        return None

    def _encode_state(self, field: str, value: Any) -> Any:
        """The saveable form of state ``field`` (see :mod:`tokrec.models.saved`); identity by default.
        A model holding objects that are not arrays or JSON (a torch network, a booster) converts them."""
        return value

    def _decode_state(self, field: str, value: Any) -> Any:
        """The inverse of :meth:`_encode_state`, called in the order of ``state``."""
        return value

    # ---- public API ----------------------------------------------------------------------------
    def fit(self, dataset: Dataset, item_vectors: np.ndarray | None = None) -> Self:
        """Learns from ``dataset`` (a :class:`~tokrec.data.Dataset`) and, where the model reads them,
        ``item_vectors``: ``(n_items, d)`` finite numbers, row ``i`` for item row ``i``.

        Raises:
            ConfigError: ``dataset`` is not a Dataset, or ``item_vectors`` is missing where needed, not 2-D,
                without columns, not numeric, not finite, or not one row per catalog item.
        """
        if not isinstance(dataset, Dataset):
            raise ConfigError(
                f"{self.name}.fit expects a tokrec Dataset (tokrec.data.Dataset or load_dataset), "
                f"not {type(dataset).__name__}"
            )
        if self.needs_item_vectors and item_vectors is None:
            raise ConfigError(f"{self.name} needs item vectors: pass item_vectors (n_items, d)")
        if item_vectors is not None:
            item_vectors = check_item_vectors(item_vectors, dataset.n_items, what=f"{self.name}.fit")
        self.item_vocab_ = dataset.item_vocab
        self.user_vocab_ = dataset.user_vocab
        self.seen_ = {u: s for u, s in enumerate(dataset.sequences()) if len(s)}
        self._fit(dataset, item_vectors)
        return self

    @property
    def n_items(self) -> int:
        self._check_fitted()
        assert self.item_vocab_ is not None
        return len(self.item_vocab_)

    def _check_fitted(self) -> None:
        if self.item_vocab_ is None:
            raise ConfigError(f"{self.name} is not fitted")

    def score(self, user_ids: Sequence[str], item_ids: Sequence[str] | None = None) -> np.ndarray:
        """Scores ``(len(user_ids), len(item_ids))`` (all catalog items when ``item_ids`` is None).

        Unknown users get the score of an empty history where the model allows it, else NaN rows.
        """
        self._check_fitted()
        assert self.user_vocab_ is not None and self.item_vocab_ is not None
        rows = self.user_vocab_.encode(id_list(user_ids, "user_ids"), missing="mask")
        out = np.full((len(rows), self.n_items), np.nan, dtype=np.float32)
        known = rows >= 0
        cols = None if item_ids is None else self._item_rows(id_list(item_ids, "item_ids"))
        if known.any():
            out[known] = self._pad(self._score_users(rows[known], **self._candidate_kw(cols)), np.nan)
        if cols is not None:
            out = out[:, cols]
        return out

    def recommend(
        self,
        user_id: str | None = None,
        *,
        history: Sequence[str] | None = None,
        k: int = 10,
        candidates: Sequence[str] | None = None,
        exclude: Sequence[str] | None = None,
        exclude_seen: bool = True,
    ) -> list[tuple[str, float]]:
        """Top-``k`` ``(item_id, score)`` for a known user or an anonymous ``history`` of item ids.

        ``k`` is a whole number >= 0 (0: an empty list). Unknown ids in ``history``, ``candidates`` and
        ``exclude`` are ignored.

        Raises:
            UnknownIdError: ``user_id`` is not a user the model was fitted on (also a KeyError).
            ConfigError: both or neither of ``user_id`` / ``history``, a bad ``k``, or an id list that is a
                string instead of a list.
        """
        self._check_fitted()
        assert self.user_vocab_ is not None and self.item_vocab_ is not None
        if (user_id is None) == (history is None):
            raise ConfigError("give exactly one of user_id or history")
        k = check_k(k)
        if user_id is not None:
            row = self.user_vocab_.get(user_id)
            if row < 0:
                raise UnknownIdError(
                    f"unknown user id {printable(repr(user_id))}: not a user of the fitted data "
                    "(pass history= to recommend for a visitor)"
                )
            extra = np.empty(0, dtype=np.int64)
        else:
            assert history is not None
            row = -1
            extra = self.item_vocab_.encode(id_list(history, "history"), missing="mask")
            extra = extra[extra >= 0]
        if exclude is not None:
            exclude = id_list(exclude, "exclude")
        allowed = self._candidate_mask(candidates)
        scores = self.score_rows(row, extra, candidates=None if allowed is None else np.flatnonzero(allowed))
        seen = self.history_rows(row, extra) if exclude_seen else None
        drop = self.item_vocab_.encode(exclude, missing="mask") if exclude else None
        top = top_k_rows(scores, k, allowed=allowed, drop=(seen, drop))
        ids = self.item_vocab_.decode(top)
        return [(i, float(scores[t])) for i, t in zip(ids, top, strict=True)]

    # ---- the one scoring path ------------------------------------------------------------------
    def history_rows(self, user_row: int, extra_rows: np.ndarray | None = None) -> np.ndarray:
        """A query's history: the known user's training items (``user_row`` >= 0) followed by
        ``extra_rows`` (item rows, oldest first: a visitor's items, or a user's events since training)."""
        base = self.seen_.get(int(user_row), _NO_ROWS) if user_row >= 0 else _NO_ROWS
        extra = _NO_ROWS if extra_rows is None else np.asarray(extra_rows, dtype=np.int64)
        return np.concatenate([base, extra]) if len(extra) else np.asarray(base, dtype=np.int64)

    def score_rows(
        self,
        user_row: int = -1,
        extra_rows: np.ndarray | None = None,
        extra_times: np.ndarray | None = None,
        candidates: np.ndarray | None = None,
        attributes: Mapping[str, object] | None = None,
    ) -> np.ndarray:
        """Scores of every catalog item ``(n_items,)`` float32 for one query: a known user (``user_row`` >= 0,
        their training history), followed by ``extra_rows`` (item rows, oldest first) with their times
        ``extra_times`` (epoch seconds) where known. This is the one scoring path: ``recommend``,
        ``recommend_batch`` (its batched form for known users, ``_score_users``), ``evaluate`` and the
        service all rank these scores with :func:`top_k_rows`.

        A known user without extra rows is scored by ``_score_users``; any other query by
        ``_score_history`` over the whole history (with timestamps when every event's time is known: the
        training events' from :meth:`user_timestamps`). A model without ``_score_history`` scores a known
        user from the training history alone and refuses a visitor (ConfigError). Items the model cannot
        score (added after fitting to a model without a cold path) get -inf.

        ``candidates`` (item rows) says which items the caller will rank: a model that retrieves its own
        candidates on large catalogs (``scores_candidates``, e.g. ``tokrec``) then scores exactly those and
        gives every other item -inf; other models score the whole catalog as always.

        ``attributes`` (user-table column -> value) describe a query without any event that the model's own
        user table does not describe (a new visitor who gave their age or country): a model with a path for
        such a user (``tokrec``: the peers of :meth:`_score_described`) ranks by it; for any other query, and
        for other models, they change nothing.
        """
        self._check_fitted()
        extra = _NO_ROWS if extra_rows is None else np.asarray(extra_rows, dtype=np.int64)
        kw = self._candidate_kw(candidates)
        if attributes and not len(self.history_rows(user_row, extra)):
            described = self._score_described(attributes, user_row)
            if described is not None:
                return self._pad(np.asarray(described, dtype=np.float32))
        if user_row >= 0 and len(extra) == 0:
            return self._pad(self._score_users(np.array([user_row]), **kw)[0])
        history = self.history_rows(user_row, extra)
        times: np.ndarray | None = None
        if extra_times is not None and len(extra_times) == len(extra):
            base_times = self.user_timestamps(user_row) if user_row >= 0 else _NO_ROWS
            n_base = len(history) - len(extra)
            if base_times is not None and len(base_times) == n_base:
                times = np.concatenate([np.asarray(base_times, np.int64), np.asarray(extra_times, np.int64)])
        try:
            return self._pad(
                np.asarray(self._score_history(history, times, **kw), dtype=np.float32).reshape(-1)
            )
        except NotImplementedError:
            if user_row >= 0:
                return self._pad(self._score_users(np.array([user_row]), **kw)[0])
            raise ConfigError(f"{self.name} cannot score an anonymous history") from None

    def _score_described(self, attributes: Mapping[str, object], user_row: int) -> np.ndarray | None:
        """Scores ``(n_items,)`` of a user without events described by ``attributes`` (:meth:`score_rows`), or
        None where the model has no use for them (the default)."""
        return None

    def query_peers(
        self, user_row: int, attributes: Mapping[str, object] | None
    ) -> tuple[np.ndarray, int] | None:
        """For a query without events ranked by the users most like it (``tokrec``'s peers): ``(share of those
        users who had each item (n_items,), how many they are)``, for explanations; None otherwise (the
        default)."""
        return None

    def _candidate_kw(self, candidates: np.ndarray | None) -> dict[str, Any]:
        """``{"candidates": rows}`` for a model that scores given candidates only (``scores_candidates``)."""
        if candidates is None or not self.scores_candidates:
            return {}
        rows = np.asarray(candidates, dtype=np.int64)
        return {"candidates": rows[(rows >= 0) & (rows < self.n_items)]}

    def _pad(self, scores: np.ndarray, fill: float = -np.inf) -> np.ndarray:
        """Scores over the fitted items, padded with ``fill`` for items added later without a cold path."""
        n = self.n_items
        if scores.shape[-1] >= n:
            return scores
        pad = np.full((*scores.shape[:-1], n - scores.shape[-1]), fill, dtype=np.float32)
        return np.concatenate([np.asarray(scores, dtype=np.float32), pad], axis=-1)

    # ---- new items -----------------------------------------------------------------------------
    def add_items(
        self, item_ids: Sequence[str], item_vectors: np.ndarray, *, items: pd.DataFrame | None = None
    ) -> None:
        """Adds items to the catalog after fitting, or replaces the content of known ones, without a refit.

        Models with a cold path (``scores_new_items``) score the new items through it at once, on the
        same scale as the rest (``tokrec``: exactly as an item without events in the fitted catalog);
        other models rank them last until the next fit.

        Args:
            item_ids: external ids, one per row of ``item_vectors``.
            item_vectors: ``(len(item_ids), d)`` vectors from the encoder used at fit time.
            items: the items' catalog rows (``item_id`` + attribute columns), for models that read attributes.
        """
        self._check_fitted()
        assert self.item_vocab_ is not None
        vectors = np.asarray(item_vectors, dtype=np.float32)
        if vectors.ndim != 2 or len(vectors) != len(item_ids):
            raise ConfigError(f"add_items: expected {len(item_ids)} item vectors, got shape {vectors.shape}")
        if not np.isfinite(vectors).all():
            raise ConfigError("add_items: item_vectors contain NaN or inf")
        if items is not None and len(items) != len(item_ids):
            raise ConfigError(f"add_items: {len(items)} item rows for {len(item_ids)} ids")
        vocab, rows = self.item_vocab_.appended(item_ids)  # this model's vocabulary is not changed
        self._add_items(rows, vectors, items)
        self.item_vocab_ = vocab

    def _add_items(self, rows: np.ndarray, item_vectors: np.ndarray, items: pd.DataFrame | None) -> None:
        """The model's cold path for catalog ``rows`` (new rows follow the old ones). Called before the
        vocabulary grows; a model without one keeps nothing (its scores are padded with -inf)."""
        return None

    def recommend_batch(
        self,
        user_ids: Sequence[str] | None = None,
        *,
        k: int = 10,
        candidates: Sequence[str] | None = None,
        exclude_seen: bool = True,
        batch_size: int = 256,
    ) -> pd.DataFrame:
        """Top-``k`` for many users: a frame ``user_id, item_id, score, rank`` (rank 1 = best)."""
        self._check_fitted()
        assert self.user_vocab_ is not None and self.item_vocab_ is not None
        k = check_k(k)
        if user_ids is None:
            user_ids = [u for r, u in enumerate(self.user_vocab_) if r in self.seen_]
        user_ids = id_list(user_ids, "user_ids")
        rows = self.user_vocab_.encode(user_ids, missing="mask")
        allowed = self._candidate_mask(candidates)
        owner: list[np.ndarray] = []  # per listed user: the position of the user in user_ids, once per row
        out_i: list[np.ndarray] = []
        out_s: list[np.ndarray] = []
        ids = np.asarray(self.item_vocab_.ids, dtype=object)
        batch_size = max(1, min(batch_size, 2**26 // max(self.n_items, 1)))  # score blocks <= 256 MB
        for start in range(0, len(rows), batch_size):
            chunk = rows[start : start + batch_size]
            known = chunk >= 0
            if not known.any():
                continue
            scores = np.full((len(chunk), self.n_items), -np.inf, dtype=np.float32)
            kw = self._candidate_kw(None if allowed is None else np.flatnonzero(allowed))
            scores[known] = self._pad(self._score_users(chunk[known], **kw))
            for j, r in enumerate(chunk):
                if r < 0:
                    continue
                s = scores[j]
                seen = self.seen_.get(int(r)) if exclude_seen else None
                top = np.asarray(top_k_rows(s, k, allowed=allowed, drop=(seen,)), dtype=np.int64)
                owner.append(np.full(len(top), start + j, dtype=np.int64))
                out_i.append(top)
                out_s.append(s[top])
        if not out_i:
            return pd.DataFrame({"user_id": [], "item_id": [], "score": [], "rank": []})
        lengths = np.array([len(t) for t in out_i], dtype=np.int64)
        return pd.DataFrame(
            {
                "user_id": np.asarray(list(user_ids), dtype=object)[np.concatenate(owner)],
                "item_id": ids[np.concatenate(out_i)],
                "score": np.concatenate(out_s).astype(np.float64),
                # 1..len per user: a running count that restarts at each user's first row
                "rank": np.arange(1, lengths.sum() + 1) - np.repeat(np.cumsum(lengths) - lengths, lengths),
            }
        )

    def _candidate_mask(self, candidates: Sequence[str] | None) -> np.ndarray | None:
        if candidates is None:
            return None
        assert self.item_vocab_ is not None
        rows = self.item_vocab_.encode(id_list(candidates, "candidates"), missing="mask")
        mask = np.zeros(self.n_items, dtype=bool)
        mask[rows[rows >= 0]] = True
        return mask

    def _item_rows(self, item_ids: Sequence[object]) -> np.ndarray:
        """Rows of ``item_ids``; an unknown id raises UnknownIdError naming it."""
        assert self.item_vocab_ is not None
        rows = self.item_vocab_.encode(item_ids, missing="mask")
        bad = np.flatnonzero(rows < 0)
        if len(bad):
            first = list(item_ids)[int(bad[0])]
            raise UnknownIdError(
                f"unknown item id {printable(repr(first))}: not in the model's catalog"
                + (f" ({len(bad)} unknown item ids in all)" if len(bad) > 1 else "")
            )
        return rows

    # ---- persistence -------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Writes the model directory atomically: ``config.json`` + ``arrays.safetensors`` (+ one
        sub-directory per part), all derived from ``state`` (see :mod:`tokrec.models.saved`)."""
        from tokrec.models.saved import save_model

        return save_model(self, path)


def available_memory() -> int:
    """Bytes of memory this process may still use: ``MemAvailable`` (Linux), within a cgroup limit where one
    is set; 0 where neither can be read."""
    avail = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                avail = int(line.split()[1]) * 1024
    except OSError:
        pass
    for f in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            raw = Path(f).read_text().strip()
        except OSError:
            continue
        if raw.isdigit() and int(raw) < (1 << 60):
            avail = min(avail, int(raw)) if avail else int(raw)
    return avail


def check_memory(
    model: Recommender, dataset: Dataset, limit: int | None = None, dim: int = 384, extra: int = 0
) -> None:
    """Refuses, before any encoding, a fit that would not fit in memory: the model's estimate for
    ``dim``-dimensional item vectors, plus ``extra`` bytes (a tuning step's), against ``limit`` (default:
    :func:`available_memory`).

    Raises:
        ConfigError: with the estimate, the limit and what to do instead.
    """
    need = int(model.memory_estimate(dataset, dim)) + int(extra)
    limit = available_memory() if limit is None else int(limit)
    if need and limit and need > limit:
        raise ConfigError(
            f"{model.name} on {dataset.n_items:,} items and {len(dataset):,} events needs about "
            f"{need / 2**30:.1f} GiB while fitting, over the {limit / 2**30:.1f} GiB available; "
            + model.memory_advice()
        )


def wants_item_vectors(model: Recommender | type[Recommender]) -> bool:
    """Whether ``fit`` should be given item vectors: the model needs them, uses them when given, or
    scores new items from them."""
    return bool(model.needs_item_vectors or model.uses_item_vectors or model.scores_new_items)


_NO_ROWS = np.empty(0, dtype=np.int64)
_Id = TypeVar("_Id")


def check_k(k: object) -> int:
    """``k`` (how many items to recommend) as an int: a whole number >= 0 (0 gives no items), else ConfigError."""
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 0:
        raise ConfigError(f"k must be a whole number >= 0, got {printable(repr(k))}")
    return int(k)


def id_list(ids: Iterable[_Id], what: str) -> Sequence[_Id]:
    """``ids`` as a sized sequence of ids: a string (which would be read character by character) or a
    value that is not a collection raises ConfigError naming ``what``; an iterator is read into a list."""
    if isinstance(ids, str | bytes):
        raise ConfigError(f"{what} must be a list of ids, not a string ({printable(repr(ids))})")
    if isinstance(ids, Sequence | np.ndarray | pd.Series | pd.Index):
        return cast(Sequence[_Id], ids)
    try:
        return list(ids)
    except TypeError:
        raise ConfigError(f"{what} must be a list of ids, not {type(ids).__name__}") from None


#: rows per block when checking a large array (bounds the temporary mask's memory)
_CHECK_BLOCK = 1 << 16


def all_finite(values: np.ndarray) -> bool:
    """Whether every entry of a numeric array is finite, checked in row blocks (no full-size mask)."""
    return all(
        bool(np.isfinite(values[i : i + _CHECK_BLOCK]).all()) for i in range(0, len(values), _CHECK_BLOCK)
    )


def check_item_vectors(item_vectors: Any, n_items: int, *, what: str) -> np.ndarray:
    """``item_vectors`` checked as ``(n_items, d)`` finite numbers with ``d >= 1``: a float array is returned
    as it is, integers as float32; anything else raises ConfigError naming ``what`` and the problem."""
    try:
        z = np.asarray(item_vectors)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{what}: item_vectors is not an array of numbers: {printable(e)}") from None
    if z.dtype.kind in "iu":
        z = z.astype(np.float32)
    elif z.dtype.kind != "f":
        raise ConfigError(f"{what}: item_vectors must be numbers (floats), got dtype {z.dtype}")
    if z.ndim != 2:
        raise ConfigError(f"{what}: item_vectors must be 2-D (n_items, d), got shape {z.shape}")
    if z.shape[1] == 0:
        raise ConfigError(f"{what}: item_vectors has no columns (shape {z.shape})")
    if len(z) != n_items:
        raise ConfigError(f"item_vectors has {len(z)} rows, the catalog has {n_items}")
    if not all_finite(z):
        raise ConfigError(f"{what}: item_vectors contain NaN or inf")
    return z


@functools.lru_cache(maxsize=8)
def tie_order(n: int) -> np.ndarray:
    """A fixed pseudo-random rank per item row, used only to break exact score ties.

    Catalog order often correlates with popularity (older, lower ids are the famous items), so breaking
    ties by row would quietly hand a model that cannot tell items apart a popularity ranking.

    Computed once per catalog size and shared by every query, so read-only: a caller that wrote into it
    would change every later ranking.
    """
    order = np.empty(n, dtype=np.int64)
    order[np.random.default_rng(20261129).permutation(n)] = np.arange(n)
    order.flags.writeable = False
    return order


def top_k_rows(
    scores: np.ndarray,
    k: int,
    *,
    allowed: np.ndarray | None = None,
    drop: Sequence[np.ndarray | None] = (),
) -> np.ndarray:
    """Rows of the ``k`` best scores, best first: the one ranking rule (batch, evaluation and the service).

    Only rows where ``allowed`` (a boolean mask) is true take part, rows in any array of ``drop`` (seen
    items, an exclude list; -1 entries ignored) and non-finite scores never do, and exact ties are broken
    by a fixed pseudo-random order of the catalog (:func:`tie_order`).
    """
    s = np.array(scores, dtype=np.float32, copy=True)
    if allowed is not None:
        s[: len(allowed)][~allowed] = -np.inf
    for rows in drop:
        if rows is not None and len(rows):
            r = np.asarray(rows, dtype=np.int64)
            s[r[(r >= 0) & (r < len(s))]] = -np.inf
    return _top_indices(s, k)


def _top_indices(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` best finite scores, best first (exact ties: a fixed pseudo-random order)."""
    # the finite rows first: a query answered by candidate retrieval scores a few thousand of a million rows,
    # and the partition then runs over those alone
    part = np.flatnonzero(np.isfinite(scores))
    k = min(k, len(part))
    if k <= 0:
        return np.empty(0, dtype=np.int64)
    s = scores[part]
    if k < len(part):
        kth = np.partition(-s, k - 1)[k - 1]
        tied = -s <= kth  # everything tied with the k-th score takes part
        part, s = part[tied], s[tied]
    order = np.lexsort((tie_order(len(scores))[part], -s))
    return part[order][:k]
