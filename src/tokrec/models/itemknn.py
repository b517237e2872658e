"""``itemknn``: cosine item-item similarity over who interacted with what, top-k neighbours per item."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from pydantic import Field

from tokrec.data.dataset import Dataset
from tokrec.models import signals as sig
from tokrec.models.base import ModelConfig, Recommender


class ItemKNNConfig(ModelConfig):
    """``neighbours``: similarities kept per item; ``half_life``: recency weighting of the user row
    (age in events; ``None`` = every past item counts 1)."""

    neighbours: int = Field(50, ge=1)
    half_life: float | None = Field(None, gt=0)


class ItemKNN(Recommender[ItemKNNConfig]):
    """``score(u, j) = sum_i w_u(i) * sim(i, j)`` over the user's items ``i``; ``sim`` is cosine of item
    columns of the binary interaction matrix, kept for each item's ``neighbours`` most similar items."""

    name = "itemknn"
    state = ("sim_",)
    scoring_options = frozenset({"half_life"})

    def _fit(self, dataset: Dataset, item_vectors: np.ndarray | None) -> None:
        sig.check_dense(dataset.n_items, "itemknn")
        x = dataset.interaction_matrix().tocsc()
        norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=0)).ravel())
        xn = x @ sp.diags(1.0 / np.where(norms > 0, norms, 1.0))
        sim = (xn.T @ xn).toarray()
        # keep the top-k neighbours of each item i in ROW i: score = w_u @ sim
        self.sim_ = sig.top_k_neighbours(sim, self.config.neighbours).T.tocsr()

    def _score_seqs(self, seqs: list[np.ndarray]) -> np.ndarray:
        rows = sig.user_rows(seqs, self.n_items, self.config.half_life)
        return np.asarray((rows @ self.sim_).todense(), dtype=np.float32)

    def _score_users(self, user_rows: np.ndarray) -> np.ndarray:
        empty = np.empty(0, dtype=np.int64)
        return self._score_seqs([self.seen_.get(int(r), empty) for r in user_rows])

    def _score_history(self, item_rows: np.ndarray, timestamps: np.ndarray | None = None) -> np.ndarray:
        return self._score_seqs([np.asarray(item_rows, dtype=np.int64)])[0]
