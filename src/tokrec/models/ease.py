"""``ease``: Embarrassingly Shallow Autoencoder (Steck 2019), closed form, with optional recency weighting.

``B = I - P / diag(P)`` with ``P = (X'X + lambda I)^-1`` (zero diagonal); ``score(u) = x_u B`` where
``x_u[i] = 0.5 ** (age_i / half_life)`` (age in events, 0 = the user's latest) or 1 without a half-life.
Memory and time are ``O(N^2)`` / ``O(N^3)`` with ``N = min(n_items, max_items)``: on a larger catalog the
weights cover the ``max_items`` most popular items (``items_``) and every other item scores 0.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field

from tokrec.data.dataset import Dataset
from tokrec.models import signals as sig
from tokrec.models.base import ModelConfig, Recommender


class EASEConfig(ModelConfig):
    """``l2``: the regulariser lambda; ``half_life``: recency weighting of the user row (None = off)."""

    l2: float = Field(300.0, gt=0)
    half_life: float | None = Field(None, gt=0)
    #: the dense item x item matrix covers at most this many items (the most popular; 16 bytes x N^2 at fit)
    max_items: int = Field(20_000, ge=1)


class EASE(Recommender[EASEConfig]):
    """EASE item-item model; with ``half_life`` the recency-weighted variant."""

    name = "ease"
    state = ("weights_", "items_")
    scoring_options = frozenset({"half_life"})

    def _fit(self, dataset: Dataset, item_vectors: np.ndarray | None) -> None:
        x = dataset.interaction_matrix()
        self.items_ = np.arange(dataset.n_items, dtype=np.int64)
        if dataset.n_items > self.config.max_items:  # the most popular items, in catalog order
            pop = np.asarray(x.sum(axis=0)).ravel()
            self.items_ = np.sort(np.argsort(-pop, kind="stable")[: self.config.max_items]).astype(np.int64)
            x = x[:, self.items_].tocsr()
        self.weights_ = sig.ease_weights(x, self.config.l2)

    def _reset_caches(self) -> None:
        if getattr(self, "items_", None) is None and getattr(self, "weights_", None) is not None:
            self.items_ = np.arange(len(self.weights_), dtype=np.int64)  # saved before max_items (format 1)

    def memory_estimate(self, dataset: Dataset, dim: int = 384) -> int:
        return sig.ease_memory(min(dataset.n_items, self.config.max_items))

    def memory_advice(self) -> str:
        return "lower max_items (--config '{\"max_items\": 10000}'), or use als / bpr"

    def scores_from_rows(self, rows: Any, n: int) -> np.ndarray:
        """``rows @ B`` for user rows over the fitted items ``(users, n)`` (0 outside ``items_``), in float32:
        a float64 row would make scipy copy the whole item x item matrix on every call."""
        rows = rows.astype(np.float32)
        cols = self.items_
        if len(cols) == rows.shape[1] == n:
            return np.asarray(rows @ self.weights_, dtype=np.float32)
        out = np.zeros((rows.shape[0], n), dtype=np.float32)
        out[:, cols] = np.asarray(rows[:, cols] @ self.weights_)
        return out

    def _score_seqs(self, seqs: list[np.ndarray]) -> np.ndarray:
        rows = sig.user_rows(seqs, self.n_items, self.config.half_life)
        return self.scores_from_rows(rows, self.n_items)

    def _score_users(self, user_rows: np.ndarray) -> np.ndarray:
        empty = np.empty(0, dtype=np.int64)
        return self._score_seqs([self.seen_.get(int(r), empty) for r in user_rows])

    def _score_history(self, item_rows: np.ndarray, timestamps: np.ndarray | None = None) -> np.ndarray:
        return self._score_seqs([np.asarray(item_rows, dtype=np.int64)])[0]
