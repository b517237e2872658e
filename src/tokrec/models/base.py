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
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from tokrec.config import validate_config, with_overrides
from tokrec.data.dataset import Dataset, Vocab
from tokrec.errors import ConfigError


class ModelConfig(BaseModel):
    """Base for typed model configs (hyperparameters: what changes what is learned or scored).

    Unknown keys are rejected, loudly; a config is built only through
    :func:`tokrec.config.validate_config` and never changes once a model holds it."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class RuntimeOptions(BaseModel):
    """Base for a model's runtime options: how it runs (threads, device, dtype, progress), not what it
    learns. They are kept apart from the config, may change on a fitted model (:meth:`Recommender.
    set_runtime`) and are never saved with it."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ThreadOptions(RuntimeOptions):
    """Runtime options of a model that only needs a CPU thread count."""

    threads: int = Field(2, ge=0, description="CPU threads (0: the library's own default)")


class Recommender(ABC):
    """Base class for every recommender.

    Learned state ends in ``_``; ``__init__`` stores the config and the runtime options only. The learned
    state that is saved is declared once, in ``state``; saving and loading follow from it.
    """

    name: ClassVar[str] = "base"
    Config: ClassVar[type[ModelConfig]] = ModelConfig
    Runtime: ClassVar[type[RuntimeOptions]] = RuntimeOptions
    #: the learned attributes (besides vocabularies and histories) that ``save`` writes and ``load`` restores
    state: ClassVar[tuple[str, ...]] = ()
    #: config fields that change only scoring, not what is learned: :meth:`with_scoring` may set them
    scoring_options: ClassVar[frozenset[str]] = frozenset()
    #: True when the model can score items it never saw in training (from their text vectors).
    scores_new_items: ClassVar[bool] = False
    #: True when the model needs item vectors (``item_vectors`` passed to fit).
    needs_item_vectors: ClassVar[bool] = False
    #: True when the model works without item vectors but uses them when given (e.g. F_ij features).
    uses_item_vectors: ClassVar[bool] = False

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
        data = config.model_dump() if isinstance(config, BaseModel) else dict(config or {})
        data.update(kwargs)
        options = {k: data.pop(k) for k in list(data) if k in self.Runtime.model_fields}
        options.update(runtime.model_dump() if isinstance(runtime, BaseModel) else runtime or {})
        self.config = validate_config(self.Config, data, what=self.name)
        self.runtime = validate_config(self.Runtime, options, what=f"{self.name} runtime")
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
    def fit(self, dataset: Dataset, item_vectors: np.ndarray | None = None) -> Recommender:
        if self.needs_item_vectors and item_vectors is None:
            raise ConfigError(f"{self.name} needs item vectors: pass item_vectors (n_items, d)")
        if item_vectors is not None and len(item_vectors) != dataset.n_items:
            raise ConfigError(f"item_vectors has {len(item_vectors)} rows, the catalog has {dataset.n_items}")
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
        rows = self.user_vocab_.encode(user_ids, missing="mask")
        out = np.full((len(rows), self.n_items), np.nan, dtype=np.float32)
        known = rows >= 0
        if known.any():
            out[known] = self._score_users(rows[known])
        if item_ids is not None:
            out = out[:, self.item_vocab_.encode(item_ids)]
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
        """Top-``k`` ``(item_id, score)`` for a known user or an anonymous ``history`` of item ids."""
        self._check_fitted()
        assert self.user_vocab_ is not None and self.item_vocab_ is not None
        if (user_id is None) == (history is None):
            raise ConfigError("give exactly one of user_id or history")
        seen: np.ndarray
        if user_id is not None:
            row = self.user_vocab_.get(user_id)
            if row < 0:
                raise KeyError(f"unknown user: {user_id!r}")
            scores = self._score_users(np.array([row]))[0]
            seen = self.seen_.get(row, np.empty(0, dtype=np.int64))
        else:
            assert history is not None
            rows = self.item_vocab_.encode(history, missing="mask")
            rows = rows[rows >= 0]
            scores = self._score_history(rows)
            seen = rows
        return self._top_k(scores, seen if exclude_seen else None, k, candidates, exclude)

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
        if user_ids is None:
            user_ids = [u for r, u in enumerate(self.user_vocab_) if r in self.seen_]
        rows = self.user_vocab_.encode(user_ids, missing="mask")
        allowed = self._candidate_mask(candidates)
        out_u: list[str] = []
        out_i: list[int] = []
        out_s: list[float] = []
        out_r: list[int] = []
        ids = np.asarray(self.item_vocab_.ids, dtype=object)
        for start in range(0, len(rows), batch_size):
            chunk = rows[start : start + batch_size]
            uids = list(user_ids[start : start + batch_size])
            known = chunk >= 0
            if not known.any():
                continue
            scores = np.full((len(chunk), self.n_items), -np.inf, dtype=np.float32)
            scores[known] = self._score_users(chunk[known])
            if allowed is not None:
                scores[:, ~allowed] = -np.inf
            for j, r in enumerate(chunk):
                if r < 0:
                    continue
                s = scores[j]
                if exclude_seen and r in self.seen_:
                    s[self.seen_[r]] = -np.inf
                top = _top_indices(s, k)
                for rank, i in enumerate(top, 1):
                    out_u.append(uids[j])
                    out_i.append(int(i))
                    out_s.append(float(s[i]))
                    out_r.append(rank)
        return pd.DataFrame(
            {
                "user_id": out_u,
                "item_id": ids[np.asarray(out_i, dtype=np.int64)] if out_i else [],
                "score": out_s,
                "rank": out_r,
            }
        )

    def _candidate_mask(self, candidates: Sequence[str] | None) -> np.ndarray | None:
        if candidates is None:
            return None
        assert self.item_vocab_ is not None
        rows = self.item_vocab_.encode(candidates, missing="mask")
        mask = np.zeros(self.n_items, dtype=bool)
        mask[rows[rows >= 0]] = True
        return mask

    def _top_k(
        self,
        scores: np.ndarray,
        seen: np.ndarray | None,
        k: int,
        candidates: Sequence[str] | None,
        exclude: Sequence[str] | None,
    ) -> list[tuple[str, float]]:
        assert self.item_vocab_ is not None
        s = np.array(scores, dtype=np.float32, copy=True)
        allowed = self._candidate_mask(candidates)
        if allowed is not None:
            s[~allowed] = -np.inf
        if seen is not None and len(seen):
            s[seen] = -np.inf
        if exclude:
            ex = self.item_vocab_.encode(exclude, missing="mask")
            s[ex[ex >= 0]] = -np.inf
        top = _top_indices(s, k)
        ids = self.item_vocab_.decode(top)
        return [(i, float(s[t])) for i, t in zip(ids, top, strict=True)]

    # ---- persistence -------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Writes the model directory atomically: ``config.json`` + ``arrays.safetensors`` (+ one
        sub-directory per part), all derived from ``state`` (see :mod:`tokrec.models.saved`)."""
        from tokrec.models.saved import save_model

        return save_model(self, path)


def wants_item_vectors(model: Recommender | type[Recommender]) -> bool:
    """Whether ``fit`` should be given item vectors: the model needs them, uses them when given, or
    scores new items from them."""
    return bool(model.needs_item_vectors or model.uses_item_vectors or model.scores_new_items)


@functools.lru_cache(maxsize=8)
def tie_order(n: int) -> np.ndarray:
    """A fixed pseudo-random rank per item row, used only to break exact score ties.

    Catalog order often correlates with popularity (older, lower ids are the famous items), so breaking
    ties by row would quietly hand a model that cannot tell items apart a popularity ranking.
    """
    order = np.empty(n, dtype=np.int64)
    order[np.random.default_rng(20261129).permutation(n)] = np.arange(n)
    return order


def _top_indices(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` best finite scores, best first (exact ties: a fixed pseudo-random order)."""
    finite = np.isfinite(scores)
    n = int(finite.sum())
    k = min(k, n)
    if k <= 0:
        return np.empty(0, dtype=np.int64)
    if k < len(scores):
        kth = np.partition(-scores, k - 1)[k - 1]
        part = np.flatnonzero(-scores <= kth)  # everything tied with the k-th score takes part
    else:
        part = np.arange(len(scores))
    part = part[np.isfinite(scores[part])]
    order = np.lexsort((tie_order(len(scores))[part], -scores[part]))
    return part[order][:k]
