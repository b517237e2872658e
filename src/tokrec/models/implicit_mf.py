"""``als`` and ``bpr``: matrix factorisation through the ``implicit`` package (CPU, fixed seed).

Both learn ``U (n_users, f)`` and ``V (n_items, f)``; ``score(u, i) = U_u . V_i``. Anonymous histories
are folded in: ALS solves its closed-form user step for the history; BPR uses the mean factor of the
history's items (an approximation: BPR has no closed-form user step).
"""

from __future__ import annotations

import importlib

import numpy as np
from pydantic import Field
from typing_extensions import TypeVar

from tokrec.data.dataset import Dataset
from tokrec.models.base import ModelConfig, Recommender, ThreadOptions


class FactorConfig(ModelConfig):
    """What both factor models take: ``factors`` latent dimensions, L2 ``regularization``, training
    ``iterations`` and ``seed`` (implicit's ``random_state``); the defaults are ALS's."""

    factors: int = Field(64, ge=1)
    regularization: float = Field(1.0, ge=0)
    iterations: int = Field(20, ge=1)
    seed: int = 0


class ALSConfig(FactorConfig):
    """Hyperparameters of implicit's ALS (confidence ``1 + alpha * r``); runtime: ``threads``."""

    alpha: float = Field(20.0, gt=0)


class BPRConfig(FactorConfig):
    """Hyperparameters of implicit's BPR (SGD: its own defaults for the shared fields); runtime: ``threads``."""

    factors: int = Field(32, ge=1)
    learning_rate: float = Field(0.01, gt=0)
    regularization: float = Field(0.01, ge=0)
    iterations: int = Field(200, ge=1)


F = TypeVar("F", bound=FactorConfig)

#: registry name -> (module, class) of the ``implicit`` model it fits (imported when fitting)
IMPLICIT_CLASSES: dict[str, tuple[str, str]] = {
    "als": ("implicit.cpu.als", "AlternatingLeastSquares"),
    "bpr": ("implicit.cpu.bpr", "BayesianPersonalizedRanking"),
}


class _ImplicitMF(Recommender[F, ThreadOptions]):
    """Shared fitting, scoring and state of the factor models: the config's fields are the ``implicit``
    model's keyword arguments (``seed`` is its ``random_state``)."""

    state = ("user_factors_", "item_factors_")
    user_factors_: np.ndarray
    item_factors_: np.ndarray

    def _fit(self, dataset: Dataset, item_vectors: np.ndarray | None) -> None:
        """Fits the ``implicit`` model on the user x item matrix and keeps its factors as float32 arrays."""
        kwargs = {("random_state" if k == "seed" else k): v for k, v in self.config.model_dump().items()}
        module, cls = IMPLICIT_CLASSES[self.name]
        from threadpoolctl import threadpool_limits

        factorisation = getattr(
            importlib.import_module(module), cls
        )  # imported first: its BLAS is then limited
        # implicit parallelises over users itself: BLAS threads on top of its threads slow it down (up to 10x,
        # says implicit, which warns when they are not limited to one)
        with threadpool_limits(limits=1, user_api="blas"):
            mf = factorisation(**kwargs, num_threads=self.runtime.threads)
            mf.fit(dataset.interaction_matrix().astype(np.float32), show_progress=False)
        self.user_factors_ = _to_numpy(mf.user_factors)
        self.item_factors_ = _to_numpy(mf.item_factors)

    def _score_users(self, user_rows: np.ndarray) -> np.ndarray:
        return (self.user_factors_[user_rows] @ self.item_factors_.T).astype(np.float32)


def _to_numpy(a: object) -> np.ndarray:
    return np.asarray(a.to_numpy() if hasattr(a, "to_numpy") else a, dtype=np.float32)


def als_fold_in(
    item_factors: np.ndarray, item_rows: np.ndarray, alpha: float, regularization: float
) -> np.ndarray:
    """The ALS user step for one history (item rows): ``(f,)`` float32."""
    v = item_factors.astype(np.float64)
    vi = v[np.unique(item_rows)]
    a = v.T @ v + alpha * (vi.T @ vi) + regularization * np.eye(v.shape[1])
    return np.linalg.solve(a, (1.0 + alpha) * vi.sum(axis=0)).astype(np.float32)


class ALS(_ImplicitMF[ALSConfig]):
    """Alternating least squares for implicit feedback (Hu, Koren & Volinsky 2008)."""

    name = "als"

    def fold_in(self, item_rows: np.ndarray) -> np.ndarray:
        """The ALS user step for one history: ``(f,)``."""
        return als_fold_in(self.item_factors_, item_rows, self.config.alpha, self.config.regularization)

    def _score_history(self, item_rows: np.ndarray, timestamps: np.ndarray | None = None) -> np.ndarray:
        if len(item_rows) == 0:
            return np.zeros(self.n_items, dtype=np.float32)
        return (self.item_factors_ @ self.fold_in(item_rows)).astype(np.float32)


class BPR(_ImplicitMF[BPRConfig]):
    """Bayesian personalised ranking (Rendle et al. 2009); item factors carry a bias column."""

    name = "bpr"

    def _score_history(self, item_rows: np.ndarray, timestamps: np.ndarray | None = None) -> np.ndarray:
        u = np.zeros(self.item_factors_.shape[1], dtype=np.float32)
        if len(item_rows):
            u = self.item_factors_[np.unique(item_rows)].mean(axis=0)
        u[-1] = 1.0  # the bias column
        return (self.item_factors_ @ u).astype(np.float32)
