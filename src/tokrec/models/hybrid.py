"""``hybrid-map``: ALS plus a ridge map from LM item vectors to ALS item factors, so new items get scores.

Items with training events keep their ALS factors ``V_i``; every item without events gets
``V_j = Z_j W`` where ``W = argmin ||Z_warm W - V_warm||^2 + map_l2 ||W||^2`` (``Z`` the LM vectors,
unit length, plus a constant column). ``score(u, i) = U_u . V_i``.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from tokrec.data.dataset import Dataset
from tokrec.models import signals as sig
from tokrec.models.base import Recommender, ThreadOptions
from tokrec.models.implicit_mf import ALS, ALSConfig, als_fold_in


class HybridMapConfig(ALSConfig):
    """ALS hyperparameters (see ``als``) plus ``map_l2``, the ridge penalty of the text->factor map."""

    map_l2: float = Field(1.0, gt=0)


class HybridMap(Recommender[HybridMapConfig, ThreadOptions]):
    """ALS whose item factors for items without events are predicted from their text."""

    name = "hybrid-map"
    needs_item_vectors = True
    scores_new_items = True
    state = ("user_factors_", "item_factors_")

    def _fit(self, dataset: Dataset, item_vectors: np.ndarray | None) -> None:
        assert item_vectors is not None
        c = self.config
        als = ALS({k: v for k, v in c.model_dump().items() if k != "map_l2"}, runtime=self.runtime)
        als.fit(dataset)
        z = sig.l2_rows(np.asarray(item_vectors, dtype=np.float32))
        z = np.hstack([z, np.ones((len(z), 1), dtype=np.float32)])
        counts = np.asarray(dataset.interaction_matrix().sum(axis=0)).ravel()
        warm = np.flatnonzero(counts > 0)
        v = als.item_factors_.copy()
        if len(warm):
            w = sig.ridge(z[warm].astype(np.float64), v[warm].astype(np.float64), c.map_l2)
            new = np.flatnonzero(counts == 0)
            v[new] = (z[new] @ w).astype(np.float32)
        self.user_factors_ = als.user_factors_
        self.item_factors_ = v

    def _score_users(self, user_rows: np.ndarray) -> np.ndarray:
        return (self.user_factors_[user_rows] @ self.item_factors_.T).astype(np.float32)

    def _score_history(self, item_rows: np.ndarray, timestamps: np.ndarray | None = None) -> np.ndarray:
        if len(item_rows) == 0:
            return np.zeros(self.n_items, dtype=np.float32)
        u = als_fold_in(self.item_factors_, item_rows, self.config.alpha, self.config.regularization)
        return (self.item_factors_ @ u).astype(np.float32)
