"""``ease``: Embarrassingly Shallow Autoencoder (Steck 2019), closed form, with optional recency weighting.

``B = I - P / diag(P)`` with ``P = (X'X + lambda I)^-1`` (zero diagonal); ``score(u) = x_u B`` where
``x_u[i] = 0.5 ** (age_i / half_life)`` (age in events, 0 = the user's latest) or 1 without a half-life.
Memory and time are ``O(n_items^2)`` / ``O(n_items^3)``: fine up to a few tens of thousands of items.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from pydantic import Field

from tokrec.data.dataset import Dataset
from tokrec.models import signals as sig
from tokrec.models.base import ModelConfig, Recommender


class EASEConfig(ModelConfig):
    """``l2``: the regulariser lambda; ``half_life``: recency weighting of the user row (None = off)."""

    l2: float = Field(300.0, gt=0)
    half_life: float | None = Field(None, gt=0)


class EASE(Recommender):
    """EASE item-item model; with ``half_life`` the recency-weighted variant."""

    name: ClassVar[str] = "ease"
    Config: ClassVar[type[ModelConfig]] = EASEConfig
    config: EASEConfig
    state: ClassVar[tuple[str, ...]] = ("weights_",)
    scoring_options: ClassVar[frozenset[str]] = frozenset({"half_life"})

    def _fit(self, dataset: Dataset, item_vectors: np.ndarray | None) -> None:
        self.weights_ = sig.ease_weights(dataset.interaction_matrix(), self.config.l2)

    def _score_seqs(self, seqs: list[np.ndarray]) -> np.ndarray:
        rows = sig.user_rows(seqs, self.n_items, self.config.half_life)
        return np.asarray(rows @ self.weights_, dtype=np.float32)

    def _score_users(self, user_rows: np.ndarray) -> np.ndarray:
        empty = np.empty(0, dtype=np.int64)
        return self._score_seqs([self.seen_.get(int(r), empty) for r in user_rows])

    def _score_history(self, item_rows: np.ndarray, timestamps: np.ndarray | None = None) -> np.ndarray:
        return self._score_seqs([np.asarray(item_rows, dtype=np.int64)])[0]
