"""``popularity``: every user gets the most-interacted items (a baseline every model must beat)."""

from __future__ import annotations

import numpy as np

from tokrec.data.dataset import Dataset
from tokrec.models.base import ModelConfig, Recommender


class PopularityConfig(ModelConfig):
    """``log``: score ``log1p(count)`` instead of the raw count (same ranking, tamer scale)."""

    log: bool = True


class Popularity(Recommender[PopularityConfig]):
    """Scores each item by how many distinct users interacted with it."""

    name = "popularity"
    state = ("counts_",)
    scoring_options = frozenset({"log"})

    def _fit(self, dataset: Dataset, item_vectors: np.ndarray | None) -> None:
        counts = np.asarray(dataset.interaction_matrix().sum(axis=0)).ravel().astype(np.float32)
        self.counts_ = counts

    def _scores(self) -> np.ndarray:
        return np.log1p(self.counts_) if self.config.log else self.counts_

    def _score_users(self, user_rows: np.ndarray) -> np.ndarray:
        return np.tile(self._scores(), (len(user_rows), 1)).astype(np.float32)

    def _score_history(self, item_rows: np.ndarray, timestamps: np.ndarray | None = None) -> np.ndarray:
        return self._scores().astype(np.float32)
