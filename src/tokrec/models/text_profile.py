"""``text-profile``: zero-shot LM recommender. The user vector is the mean LM vector of their last
``n_last`` items; items are ranked by cosine to it. No training events needed for any item."""

from __future__ import annotations

import numpy as np
from pydantic import Field

from tokrec.data.dataset import Dataset
from tokrec.features import user_profiles
from tokrec.models import signals as sig
from tokrec.models.base import ModelConfig, Recommender


class TextProfileConfig(ModelConfig):
    """``n_last``: the user's most recent items averaged; ``half_life``: optional recency weighting."""

    n_last: int = Field(5, ge=1)
    half_life: float | None = Field(None, gt=0)


class TextProfile(Recommender[TextProfileConfig]):
    """Cosine between each item's LM vector ``Z_I`` and the user's profile ``Z_U`` (mean of recent ``Z_I``)."""

    name = "text-profile"
    needs_item_vectors = True
    scores_new_items = True
    state = ("vectors_",)
    scoring_options = frozenset({"n_last", "half_life"})

    def _fit(self, dataset: Dataset, item_vectors: np.ndarray | None) -> None:
        assert item_vectors is not None
        self.vectors_ = sig.l2_rows(np.asarray(item_vectors, dtype=np.float32))

    def user_vectors(self, seqs: list[np.ndarray]) -> np.ndarray:
        """``Z_U``: ``(len(seqs), d)`` unit-length profiles (zero rows for empty histories)."""
        return user_profiles(seqs, self.vectors_, n_last=self.config.n_last, half_life=self.config.half_life)

    def _score_users(self, user_rows: np.ndarray) -> np.ndarray:
        empty = np.empty(0, dtype=np.int64)
        prof = self.user_vectors([self.seen_.get(int(r), empty) for r in user_rows])
        return (prof @ self.vectors_.T).astype(np.float32)

    def _score_history(self, item_rows: np.ndarray, timestamps: np.ndarray | None = None) -> np.ndarray:
        prof = self.user_vectors([np.asarray(item_rows, dtype=np.int64)])
        return (prof @ self.vectors_.T)[0].astype(np.float32)

    def _add_items(self, rows: np.ndarray, item_vectors: np.ndarray, items: object) -> None:
        """A new item is its vector: appended (or replaced), scored at once like every other item."""
        n_new = max(int(rows.max()) + 1 - len(self.vectors_), 0) if len(rows) else 0
        grown = np.concatenate([self.vectors_, np.zeros((n_new, self.vectors_.shape[1]), np.float32)])
        grown[rows] = sig.l2_rows(np.asarray(item_vectors, dtype=np.float32))
        self.vectors_ = grown
