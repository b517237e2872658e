"""Contextual bandit policies over language-model features, for single items and slates.

Features. Item vectors ``Z_I`` and a user context ``Z_U`` (same space, e.g. the recency-weighted mean of
the user's item vectors) are reduced to ``dim`` dimensions (PCA fitted on the catalog's vectors, or a
Gaussian random projection) and L2-normalised: ``c`` for the context, ``e_i`` for item ``i``. The arm
features of a (user, item) pair are ``x_ui = [c * e_i, e_i, 1]`` (``F_ij``: the elementwise product makes
``theta . x`` a learned, weighted cosine between user and item), so an item nobody has interacted with
is scored from its text from the first round on.

Policies (all seeded, all updated online in O(d^2) per reward by Sherman-Morrison):

* ``linucb`` with ``mode="shared"``: one ridge regression over ``x_ui``; score ``theta.x + alpha sqrt(x' A^-1 x)``.
* ``linucb`` with ``mode="disjoint"`` (Li et al. 2010, Alg. 1): one ridge regression per item over
  ``[c, 1]``; an item's prior mean is ``prior_scale * [e_i, 0]``, so a new item starts from its text.
* ``linucb`` with ``mode="hybrid"`` (Li et al. 2010, Alg. 2): shared coefficients over ``x_ui`` plus
  per-item coefficients over ``[c, 1]``, with the exact hybrid confidence width.
* ``ts``: linear Thompson sampling (Agrawal & Goyal 2013) with the same three ``mode`` models as ``linucb``:
  ``shared`` draws ``theta ~ N(theta_hat, v^2 A^-1)`` over ``x_ui``; ``disjoint`` draws each item's coefficients
  from its own posterior (independent across items, so each candidate's score is drawn directly:
  ``mean + v sqrt(x' A_a^-1 x) N(0, 1)``); ``hybrid`` draws the shared coefficients ``beta`` from their marginal
  posterior ``N(beta_hat, v^2 A_0^-1)`` (Li et al.'s ``A_0``, the item terms integrated out), then each item's
  coefficients given ``beta``, ``N(A_a^-1 (b_a - B_a beta), v^2 A_a^-1)``: an exact draw from the hybrid model's
  joint posterior, whose scores have the hybrid LinUCB width as their spread.
* ``egreedy``: exploitation by any recommender's scores (``base_scores``) or the shared ridge mean,
  with each exploration slot filled by a uniformly random candidate with probability ``epsilon``.

Slates. ``select(context, candidates, k, explore_share)`` fills ``k - round(k * explore_share)`` slots by
the exploitation ranking (``base_scores`` when given, else the policy's mean estimate) and the other
slots by the exploration ranking (UCB, a Thompson draw, or random), skipping items already chosen. An
item is flagged ``explored`` when it is not in the exploitation ranking's top ``k``: it is there to learn.

State. ``save(folder)`` writes ``config.json`` (config, item ids, counters) and ``state.safetensors``
(the projection and every matrix); ``load_policy(folder)`` rebuilds the policy without unpickling.

Why hand-written: the bandit libraries on PyPI (e.g. contextualbandits, mabwiser, obp's policies) have no
slates with exploration slots, no online arm addition from text vectors and no pickle-free state; the
algorithms are a few matrix updates each.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from tokrec.errors import ConfigError, DataError

FORMAT = "tokrec-bandit/2"
#: the largest ``|reward|`` :meth:`BanditPolicy.update` accepts: a larger one would swamp every other
#: reward (and near the float limit overflow the state), so it is refused rather than learnt
MAX_ABS_REWARD = 1e6
#: format 1 wrote Thompson sampling before it had modes: always the shared model, whatever ``mode`` said
_OLD_FORMATS = ("tokrec-bandit/1",)


class PolicyConfig(BaseModel):
    """Hyperparameters of a bandit policy (unknown keys rejected)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    policy: Literal["linucb", "ts", "egreedy"] = "linucb"
    #: linucb and ts: shared (one model over F_ij), disjoint (one per item) or hybrid (both); egreedy: shared
    mode: Literal["shared", "disjoint", "hybrid"] = "hybrid"
    #: UCB width (linucb) or posterior scale v (ts)
    alpha: float = Field(0.5, ge=0)
    #: ridge regulariser lambda (A starts as lambda * I)
    ridge: float = Field(1.0, gt=0)
    epsilon: float = Field(0.1, ge=0, le=1)
    #: share of a slate's slots given to exploration when select() is not told
    explore_share: float = Field(1.0, ge=0, le=1)
    #: dimension the LM vectors are reduced to (None: kept as they are)
    dim: int | None = Field(16, ge=1)
    reduction: Literal["pca", "random"] = "pca"
    #: disjoint mode: an item's prior mean is prior_scale * its reduced text vector
    prior_scale: float = Field(0.1, ge=0)
    #: shared arm features: [c * e_i, e_i, 1] (context and items in one space, e.g. Z_U and Z_I) or
    #: [vec(c outer e_i), e_i, c, 1] (any two spaces, e.g. user attributes and item attributes)
    features: Literal["product", "outer"] = "product"
    seed: int = 0


@dataclass(frozen=True)
class Selection:
    """One slot of a slate."""

    item_id: str
    score: float
    explored: bool


def _normalise(x: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.where(n > 0, n, 1.0)


def _sm_update(a_inv: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Sherman-Morrison: ``(A + x x')^-1`` from ``A^-1``."""
    ax = a_inv @ x
    return a_inv - np.outer(ax, ax) / (1.0 + x @ ax)


class BanditPolicy:
    """A contextual bandit over items with LM vectors (see the module docstring)."""

    def __init__(self, config: PolicyConfig | dict[str, Any] | None = None) -> None:
        self.config = (
            config if isinstance(config, PolicyConfig) else PolicyConfig.model_validate(dict(config or {}))
        )
        self.rng_ = np.random.default_rng(self.config.seed)
        self.item_ids_: list[str] = []
        self.index_: dict[str, int] = {}
        self.mean_: np.ndarray | None = None
        self.proj_: np.ndarray | None = None
        self.cmean_: np.ndarray | None = None
        self.cproj_: np.ndarray | None = None
        self.emb_ = np.zeros((0, 0))
        self.n_updates_ = 0
        self._a0_stale = False
        # shared ridge (shared, hybrid, ts, egreedy)
        self.a0_inv_ = np.zeros((0, 0))
        self.a0_ = np.zeros((0, 0))
        self.b0_ = np.zeros(0)
        # per-item (disjoint, hybrid)
        self.arm_a_inv_ = np.zeros((0, 0, 0))
        self.arm_b_ = np.zeros((0, 0))
        self.arm_bmat_ = np.zeros((0, 0, 0))

    # ---- features ----------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        if self.proj_ is None:
            raise ConfigError("the policy has no items yet: call fit_items() first")
        return int(self.proj_.shape[1])

    @property
    def cdim(self) -> int:
        if self.cproj_ is None:
            raise ConfigError("the policy has no items yet: call fit_items() first")
        return int(self.cproj_.shape[1])

    @property
    def n_shared(self) -> int:
        if self.config.features == "outer":
            return self.cdim * self.dim + self.dim + self.cdim + 1
        return 2 * self.dim + 1

    @property
    def n_arm(self) -> int:
        return self.cdim + 1

    @property
    def _per_arm(self) -> bool:
        return self.config.policy in ("linucb", "ts") and self.config.mode in ("disjoint", "hybrid")

    @property
    def _shared(self) -> bool:
        return not (self.config.policy in ("linucb", "ts") and self.config.mode == "disjoint")

    def project(self, vectors: np.ndarray) -> np.ndarray:
        """LM vectors ``(n, d_in)`` (or one ``(d_in,)``) to reduced, normalised ``(n, dim)``."""
        if self.proj_ is None or self.mean_ is None:
            raise ConfigError("the policy has no items yet: call fit_items() first")
        v = np.asarray(vectors, dtype=np.float64)
        if v.shape[-1] != self.proj_.shape[0]:
            raise DataError(f"vectors have dimension {v.shape[-1]}, the policy expects {self.proj_.shape[0]}")
        return _normalise((v - self.mean_) @ self.proj_)

    def _reduction(self, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        d_in, dim = v.shape[1], self.config.dim
        if dim is None or dim >= d_in:
            return np.zeros(d_in), np.eye(d_in)
        if self.config.reduction == "pca":
            from sklearn.decomposition import PCA

            pca = PCA(n_components=min(dim, len(v)), random_state=self.config.seed).fit(v)
            return pca.mean_.astype(np.float64), pca.components_.T.astype(np.float64)
        rng = np.random.default_rng(self.config.seed)
        return np.zeros(d_in), rng.normal(size=(d_in, dim)) / np.sqrt(dim)

    def fit_items(
        self, item_ids: list[str], vectors: np.ndarray, *, contexts: np.ndarray | None = None
    ) -> BanditPolicy:
        """Fits the dimension reduction on the catalog's vectors and registers the items.

        ``contexts``: example contexts when they live in another space than the item vectors (then a
        second reduction is fitted on them; needs ``features="outer"``). Without it, contexts share the
        items' reduction.
        """
        v = np.asarray(vectors, dtype=np.float64)
        if v.ndim != 2 or len(v) != len(item_ids):
            raise DataError(f"{len(item_ids)} item ids but vectors of shape {v.shape}")
        self.mean_, self.proj_ = self._reduction(v)
        if contexts is None:
            self.cmean_, self.cproj_ = self.mean_, self.proj_
        else:
            if self.config.features != "outer":
                raise ConfigError('contexts in their own space need features="outer"')
            self.cmean_, self.cproj_ = self._reduction(np.asarray(contexts, dtype=np.float64))
        lam = self.config.ridge
        self.a0_ = lam * np.eye(self.n_shared)
        self.a0_inv_ = np.eye(self.n_shared) / lam
        self.b0_ = np.zeros(self.n_shared)
        self.emb_ = np.zeros((0, self.dim))
        self.arm_a_inv_ = np.zeros((0, self.n_arm, self.n_arm))
        self.arm_b_ = np.zeros((0, self.n_arm))
        self.arm_bmat_ = np.zeros((0, self.n_arm, self.n_shared))
        self.item_ids_, self.index_ = [], {}
        self.add_items(item_ids, v)
        return self

    def add_items(self, item_ids: list[str], vectors: np.ndarray) -> None:
        """Adds (or re-embeds) items online; a new item's estimates start from its text vector."""
        e = self.project(np.atleast_2d(vectors))
        if len(e) != len(item_ids):
            raise DataError(f"{len(item_ids)} item ids but {len(e)} vectors")
        new = [i for i in dict.fromkeys(map(str, item_ids)) if i not in self.index_]
        for i, item in enumerate(map(str, item_ids)):
            if item in self.index_:
                self.emb_[self.index_[item]] = e[i]
        if not new:
            return
        rows = [list(map(str, item_ids)).index(i) for i in new]
        start = len(self.item_ids_)
        self.item_ids_ += new
        self.index_.update({item: start + j for j, item in enumerate(new)})
        self.emb_ = np.vstack([self.emb_, e[rows]])
        m, lam = len(new), self.config.ridge
        if self._per_arm:
            self.arm_a_inv_ = np.concatenate([self.arm_a_inv_, np.tile(np.eye(self.n_arm) / lam, (m, 1, 1))])
            prior = np.zeros((m, self.n_arm))
            if self.config.mode == "disjoint" and self.cdim == self.dim:  # b starts at lam * prior mean
                prior[:, : self.dim] = lam * self.config.prior_scale * e[rows]
            self.arm_b_ = np.vstack([self.arm_b_, prior])
            if self.config.mode == "hybrid":
                self.arm_bmat_ = np.concatenate([self.arm_bmat_, np.zeros((m, self.n_arm, self.n_shared))])

    def _rows(self, candidates: list[str]) -> np.ndarray:
        missing = [c for c in candidates if c not in self.index_]
        if missing:
            raise DataError(f"{len(missing)} candidate items unknown to the policy, e.g. {missing[0]!r}")
        return np.array([self.index_[c] for c in candidates], dtype=np.int64)

    def _context(self, context: np.ndarray) -> np.ndarray:
        assert self.cproj_ is not None and self.cmean_ is not None
        v = np.asarray(context, dtype=np.float64).reshape(-1)
        if len(v) != self.cproj_.shape[0]:
            raise DataError(f"context has dimension {len(v)}, the policy expects {self.cproj_.shape[0]}")
        return _normalise((v - self.cmean_) @ self.cproj_)

    def _shared_x(self, c: np.ndarray, rows: np.ndarray) -> np.ndarray:
        e = self.emb_[rows]
        one = np.ones((len(rows), 1))
        if self.config.features == "outer":
            outer = (e[:, :, None] * c[None, None, :]).reshape(len(rows), -1)
            return np.hstack([outer, e, np.tile(c, (len(rows), 1)), one])
        return np.hstack([c * e, e, one])

    # ---- scores ------------------------------------------------------------------------------
    def _mean_and_width(self, c: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Estimated reward and the confidence width's square (before alpha) of each candidate."""
        self._refresh_inverse()
        mean = np.zeros(len(rows))
        var = np.zeros(len(rows))
        x_arm = np.append(c, 1.0)
        beta = self.a0_inv_ @ self.b0_
        za = np.zeros((len(rows), self.n_shared))
        if self._shared:
            z = self._shared_x(c, rows)
            za = z @ self.a0_inv_
            mean += z @ beta
            var += np.einsum("md,md->m", za, z)
        if self._per_arm:
            # stacked small matrices: reshape to one BLAS product instead of a batched matmul
            m, d = len(rows), self.n_arm
            a_inv = self.arm_a_inv_[rows]
            ax = (a_inv.reshape(m * d, d) @ x_arm).reshape(m, d)
            var += ax @ x_arm
            if self.config.mode == "disjoint":
                theta = np.einsum("mij,mj->mi", a_inv, self.arm_b_[rows])
            else:
                bmat = self.arm_bmat_[rows]
                resid = self.arm_b_[rows] - (bmat.reshape(m * d, -1) @ beta).reshape(m, d)
                theta = np.einsum("mij,mj->mi", a_inv, resid)
                bt_ax = np.einsum("mdk,md->mk", bmat, ax)
                var += -2.0 * np.einsum("mk,mk->m", za, bt_ax) + np.einsum(
                    "mk,mk->m", bt_ax @ self.a0_inv_, bt_ax
                )
            mean += theta @ x_arm
        return mean, np.maximum(var, 0.0)

    def _refresh_inverse(self) -> None:
        if self._a0_stale:
            self.a0_inv_ = np.asarray(np.linalg.inv(self.a0_), dtype=np.float64)
            self._a0_stale = False

    def _explore_scores(
        self, c: np.ndarray, rows: np.ndarray, mean: np.ndarray, var: np.ndarray
    ) -> np.ndarray:
        cfg = self.config
        if cfg.policy == "linucb":
            return mean + cfg.alpha * np.sqrt(var)
        if cfg.policy == "ts":
            return self._thompson_scores(c, rows, mean, var)
        return self.rng_.random(len(rows))

    def _draw_beta(self, v: float) -> np.ndarray:
        """The shared coefficients drawn from ``N(beta_hat, v^2 A_0^-1)`` (``v = 0``: the mean)."""
        self._refresh_inverse()
        chol = np.linalg.cholesky(self.a0_inv_)
        return self.a0_inv_ @ self.b0_ + v * (chol @ self.rng_.standard_normal(len(self.b0_)))

    def _thompson_scores(
        self, c: np.ndarray, rows: np.ndarray, mean: np.ndarray, var: np.ndarray
    ) -> np.ndarray:
        """One posterior draw of every candidate's score (``mean``, ``var``: :meth:`_mean_and_width`'s)."""
        v = self.config.alpha
        if not self._per_arm:
            return self._shared_x(c, rows) @ self._draw_beta(v)
        if self.config.mode == "disjoint":  # independent items: var is each item's own posterior variance
            return mean + v * np.sqrt(var) * self.rng_.standard_normal(len(rows))
        m, d = len(rows), self.n_arm
        x_arm = np.append(c, 1.0)
        a_inv = self.arm_a_inv_[rows]
        arm_var = (a_inv.reshape(m * d, d) @ x_arm).reshape(m, d) @ x_arm  # given beta: the item's term alone
        noise = v * np.sqrt(np.maximum(arm_var, 0.0)) * self.rng_.standard_normal(m)
        beta = self._draw_beta(v)
        bmat = self.arm_bmat_[rows]
        resid = self.arm_b_[rows] - (bmat.reshape(m * d, -1) @ beta).reshape(m, d)
        theta = np.einsum("mij,mj->mi", a_inv, resid)
        return self._shared_x(c, rows) @ beta + theta @ x_arm + noise

    def shared_features(self, context: np.ndarray, candidates: list[str]) -> np.ndarray:
        """The arm features ``F_ij`` ``(n_candidates, n_shared)`` of one context and the candidates."""
        return self._shared_x(self._context(context), self._rows(list(map(str, candidates))))

    def posterior(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean and covariance (before the ``alpha**2`` scale) of the shared coefficients."""
        self._refresh_inverse()
        return self.a0_inv_ @ self.b0_, self.a0_inv_.copy()

    def scores(self, context: np.ndarray, candidates: list[str]) -> dict[str, np.ndarray]:
        """``mean`` (estimated reward) and ``width`` (confidence width before alpha) per candidate."""
        c = self._context(context)
        mean, var = self._mean_and_width(c, self._rows(candidates))
        return {"mean": mean, "width": np.sqrt(var)}

    def select(
        self,
        context: np.ndarray,
        candidates: list[str],
        k: int = 1,
        explore_share: float | None = None,
        *,
        base_scores: np.ndarray | None = None,
    ) -> list[Selection]:
        """A slate of ``k`` items for one user (see the module docstring).

        Args:
            context: the user's LM vector ``Z_U`` (same dimension as the item vectors).
            candidates: item ids to choose from (already filtered: unseen, allowed).
            k: slate size.
            explore_share: share of slots given to exploration (default: the config's).
            base_scores: a recommender's scores of the candidates; the exploitation ranking when given.
        """
        if k < 1:
            raise ConfigError("k must be at least 1")
        share = self.config.explore_share if explore_share is None else float(explore_share)
        if not 0.0 <= share <= 1.0:
            raise ConfigError(f"explore_share must lie in [0, 1], got {share}")
        if not candidates:
            return []
        rows = self._rows(list(map(str, candidates)))
        c = self._context(context)
        mean, var = self._mean_and_width(c, rows)
        exploit = mean if base_scores is None else np.asarray(base_scores, dtype=np.float64)
        if len(exploit) != len(rows):
            raise DataError(f"base_scores has {len(exploit)} entries for {len(rows)} candidates")
        k = min(k, len(rows))
        order = np.lexsort((np.arange(len(rows)), -exploit))
        greedy_top = set(order[:k].tolist())
        n_explore = int(round(k * share))
        chosen: list[int] = list(order[: k - n_explore])
        taken = set(chosen)
        if n_explore:
            if self.config.policy == "egreedy":
                rest = [j for j in order if j not in taken]
                randoms = [j for j in self.rng_.permutation(len(rows)) if j not in taken]
                for _ in range(n_explore):
                    pool = randoms if self.rng_.random() < self.config.epsilon else rest
                    j = next(j for j in pool if j not in taken)
                    chosen.append(j)
                    taken.add(j)
            else:
                ex = self._explore_scores(c, rows, mean, var)
                for j in np.lexsort((np.arange(len(rows)), -ex)):
                    if len(chosen) == k:
                        break
                    if j not in taken:
                        chosen.append(int(j))
                        taken.add(int(j))
        return [Selection(self.item_ids_[rows[j]], float(mean[j]), bool(j not in greedy_top)) for j in chosen]

    # ---- learning ----------------------------------------------------------------------------
    def update(self, item: str, context: np.ndarray, reward: float) -> None:
        """Learns from one shown item's reward (e.g. 1 = clicked, 0 = shown and ignored).

        Raises:
            DataError: the reward is not finite or ``|reward| > MAX_ABS_REWARD``, the context is not finite,
                or the update would make the state non-finite; the state is left as it was.
        """
        r = float(reward)
        if not np.isfinite(r) or abs(r) > MAX_ABS_REWARD:
            raise DataError(
                f"reward must be a finite number in [-{MAX_ABS_REWARD:g}, {MAX_ABS_REWARD:g}], got {r}"
            )
        if not np.isfinite(np.asarray(context, dtype=np.float64)).all():
            raise DataError(f"the context of item {str(item)[:100]!r}'s reward is not finite")
        row = self._rows([str(item)])
        with np.errstate(all="ignore"):  # a huge context overflows: reported below, as an error
            c = self._context(context)
        x_arm = np.append(c, 1.0)
        z = self._shared_x(c, row)[0]
        a = int(row[0])
        # computed aside and checked before anything is kept: a non-finite number would stay in the state
        # for good (every later score NaN, exploration silently dead)
        new: dict[str, np.ndarray] = {}
        with np.errstate(all="ignore"):  # an overflow is reported below, as an error
            if self._per_arm and self.config.mode == "hybrid":
                # Li et al. 2010, Algorithm 2
                a_inv, bmat, b = self.arm_a_inv_[a], self.arm_bmat_[a], self.arm_b_[a]
                a0 = self.a0_ + bmat.T @ a_inv @ bmat
                b0 = self.b0_ + bmat.T @ a_inv @ b
                a_inv = _sm_update(a_inv, x_arm)
                bmat = bmat + np.outer(x_arm, z)
                b = b + r * x_arm
                new["a0"] = a0 + np.outer(z, z) - bmat.T @ a_inv @ bmat
                new["b0"] = b0 + r * z - bmat.T @ a_inv @ b
                new["arm_a_inv"], new["arm_bmat"], new["arm_b"] = a_inv, bmat, b
            else:
                if self._per_arm:
                    new["arm_a_inv"] = _sm_update(self.arm_a_inv_[a], x_arm)
                    new["arm_b"] = self.arm_b_[a] + r * x_arm
                if self._shared:
                    new["a0"] = self.a0_ + np.outer(z, z)
                    new["a0_inv"] = _sm_update(self.a0_inv_, z)
                    new["b0"] = self.b0_ + r * z
        bad = [name for name, v in new.items() if not np.isfinite(v).all()]
        if bad:
            raise DataError(
                f"the update of item {str(item)[:100]!r} would make the policy's {bad[0]} non-finite"
            )
        if "a0" in new:
            self.a0_ = new["a0"]
        if "b0" in new:
            self.b0_ = new["b0"]
        if "a0_inv" in new:
            self.a0_inv_ = new["a0_inv"]
        elif "a0" in new:
            self._a0_stale = True  # A0 moved by more than rank one: inverted again when next read
        if "arm_a_inv" in new:
            self.arm_a_inv_[a] = new["arm_a_inv"]
            self.arm_b_[a] = new["arm_b"]
        if "arm_bmat" in new:
            self.arm_bmat_[a] = new["arm_bmat"]
        self.n_updates_ += 1

    # ---- persistence -------------------------------------------------------------------------
    def _arrays(self) -> dict[str, np.ndarray]:
        self._refresh_inverse()
        assert self.proj_ is not None and self.mean_ is not None
        assert self.cproj_ is not None and self.cmean_ is not None
        out = {
            "proj": self.proj_,
            "mean": self.mean_,
            "cproj": self.cproj_,
            "cmean": self.cmean_,
            "emb": self.emb_,
            "a0": self.a0_,
            "a0_inv": self.a0_inv_,
            "b0": self.b0_,
        }
        if self._per_arm:
            out["arm_a_inv"], out["arm_b"] = self.arm_a_inv_, self.arm_b_
            if self.config.mode == "hybrid":
                out["arm_bmat"] = self.arm_bmat_
        return out

    def save(self, folder: str | os.PathLike[str]) -> Path:
        """Writes ``config.json`` and ``state.safetensors`` into ``folder`` (each file atomically).

        The random generator's position is not saved: a loaded policy draws afresh from its seed and the
        number of updates.
        """
        from safetensors.numpy import save_file

        from tokrec.fileio import atomic_write

        if self.proj_ is None:
            raise ConfigError("nothing to save: the policy has no items")
        out = Path(folder)
        arrays = {k: np.ascontiguousarray(v, dtype=np.float64) for k, v in self._arrays().items()}
        atomic_write(out / "state.safetensors", lambda t: save_file(arrays, str(t)))
        meta = {
            "format": FORMAT,
            "config": self.config.model_dump(mode="json"),
            "items": self.item_ids_,
            "n_updates": self.n_updates_,
        }
        atomic_write(out / "config.json", lambda t: t.write_text(json.dumps(meta)))
        return out


def load_policy(folder: str | os.PathLike[str]) -> BanditPolicy:
    """A policy saved by :meth:`BanditPolicy.save` (no pickle)."""
    from safetensors.numpy import load_file

    base = Path(folder)
    cfg_file, state_file = base / "config.json", base / "state.safetensors"
    for f in (cfg_file, state_file):
        if not f.is_file():
            raise DataError("file not found", file=str(f))
    try:
        meta = json.loads(cfg_file.read_text())
    except json.JSONDecodeError as e:
        raise DataError(f"invalid JSON: {e}", file=str(cfg_file)) from e
    if meta.get("format") != FORMAT and meta.get("format") not in _OLD_FORMATS:
        raise DataError(f"not a tokrec bandit policy (format {meta.get('format')!r})", file=str(cfg_file))
    config = dict(meta["config"])
    if meta["format"] in _OLD_FORMATS and config.get("policy") == "ts":
        config["mode"] = "shared"  # what it was trained as
    policy = BanditPolicy(PolicyConfig.model_validate(config))
    arrays = load_file(str(state_file))
    policy.proj_, policy.mean_, policy.emb_ = arrays["proj"], arrays["mean"], arrays["emb"]
    policy.cproj_, policy.cmean_ = arrays["cproj"], arrays["cmean"]
    policy.a0_, policy.a0_inv_, policy.b0_ = arrays["a0"], arrays["a0_inv"], arrays["b0"]
    if policy._per_arm:
        policy.arm_a_inv_, policy.arm_b_ = arrays["arm_a_inv"], arrays["arm_b"]
        if policy.config.mode == "hybrid":
            policy.arm_bmat_ = arrays["arm_bmat"]
    policy.item_ids_ = [str(i) for i in meta["items"]]
    policy.index_ = {i: j for j, i in enumerate(policy.item_ids_)}
    if len(policy.item_ids_) != len(policy.emb_):
        raise DataError(
            f"{len(policy.item_ids_)} items but {len(policy.emb_)} item rows", file=str(state_file)
        )
    policy.n_updates_ = int(meta.get("n_updates", 0))
    policy.rng_ = np.random.default_rng([policy.config.seed, policy.n_updates_])
    return policy
