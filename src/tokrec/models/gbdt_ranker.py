"""``gbdt-ranker``: a LightGBM LambdaRank second stage over ``F_ij = (R_ij, Z_U, Z_I)``.

A first-stage model (any registry model, recency-weighted EASE by default) proposes each user's top
``n_candidates`` items; LightGBM re-orders them from features of each (user, candidate) pair:

* ``R_ij``: the score, the per-user standardised score and the rank of every *source* model (the
  first stage plus ``sources``: by default EASE, EASE with two recency half-lives, popularity), the
  user's history length and, with item vectors, the cosine between the candidate's LM vector and the
  user's profile (mean vector of the last ``profile_len`` items) and to the user's last item;
* ``Z_U``, ``Z_I``: the first ``vector_dims`` principal components of the user profile and item vectors.

Training data is a validation cut from train: each of a user's last ``val_events`` training events is
the positive of a LambdaRank group made of the candidates that the first stage, fitted without those
events, proposes after the history before it; 20% of the users stop the boosting early (NDCG@10). Sources are then refitted on all of train for scoring. The booster is saved
in LightGBM's text format (``model_to_string``), the sources through their own safetensors arrays.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from tokrec.data.dataset import Dataset
from tokrec.errors import ConfigError
from tokrec.models.base import ModelConfig, Recommender, ThreadOptions

log = logging.getLogger(__name__)


class SourceSpec(BaseModel):
    """A registry model used as a first stage or a feature source."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
    model: str
    config: dict[str, Any] = Field(default_factory=dict)


def _default_sources() -> list[SourceSpec]:
    return [
        SourceSpec(model="ease"),
        SourceSpec(model="ease", config={"half_life": 8.0}),
        SourceSpec(model="popularity"),
    ]


class GBDTRankerConfig(ModelConfig):
    """Hyperparameters of :class:`GBDTRanker` (LightGBM's names where they are LightGBM's)."""

    first_stage: SourceSpec = SourceSpec(model="ease", config={"half_life": 2.0})
    sources: list[SourceSpec] = Field(default_factory=_default_sources)
    n_candidates: int = Field(50, ge=2)
    val_events: int = Field(3, ge=1, description="each user's last N training events become training queries")
    profile_len: int = Field(5, ge=1)
    recent_fraction: float = Field(
        0.1,
        ge=0,
        le=1,
        description="recent popularity = log1p(events in the latest fraction of the log); 0 = off",
    )
    vector_dims: int = Field(8, ge=0, description="principal components of Z_U and Z_I used as features")
    n_estimators: int = Field(300, ge=1)
    learning_rate: float = Field(0.05, gt=0)
    num_leaves: int = Field(31, ge=2)
    min_child_samples: int = Field(20, ge=1)
    early_stopping_rounds: int = Field(30, ge=1)
    valid_fraction: float = Field(0.2, ge=0, lt=1)
    seed: int = 42


class GBDTRanker(Recommender[GBDTRankerConfig, ThreadOptions]):
    """LightGBM LambdaRank re-ranker over a first stage's candidates (see module docstring)."""

    name = "gbdt-ranker"
    #: F_ij's Z_U / Z_I features come from item vectors when given (the CLI and evaluate give them)
    uses_item_vectors = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # the arguments of Recommender.__init__
        super().__init__(*args, **kwargs)
        self.sources_: list[Recommender] = []
        self.booster_: Any = None
        self.item_vectors_: np.ndarray | None = None
        self.pca_: np.ndarray | None = None
        self.feature_names_: list[str] = []
        self.fit_seconds_: float = 0.0
        self.best_iteration_: int = 0
        self.recent_pop_: np.ndarray | None = None

    # ---- sources ---------------------------------------------------------------------------
    def _specs(self) -> list[SourceSpec]:
        return [self.config.first_stage, *self.config.sources]

    def _fit_sources(self, dataset: Dataset, item_vectors: np.ndarray | None) -> list[Recommender]:
        from tokrec.models.registry import create_model

        out = []
        for spec in self._specs():
            model = create_model(spec.model, spec.config)
            model.fit(dataset, item_vectors if model.needs_item_vectors or item_vectors is not None else None)
            out.append(model)
        return out

    # ---- fitting ---------------------------------------------------------------------------
    def _fit(self, dataset: Dataset, item_vectors: np.ndarray | None) -> None:
        import lightgbm as lgb

        start = time.perf_counter()
        c = self.config
        self.item_vectors_ = None if item_vectors is None else np.asarray(item_vectors, dtype=np.float32)
        self._fit_pca()
        ds_val, val_users, val_hists, val_targets = validation_cut(dataset, c.val_events)
        if len(set(val_users.tolist())) < 2:
            raise ConfigError(f"gbdt-ranker: needs at least 2 users with {c.val_events + 2} or more events")
        sources = self._fit_sources(ds_val, item_vectors)
        self.recent_pop_ = recent_popularity(ds_val, c.recent_fraction)
        feats, cands = self._features(sources, val_hists)
        labels = (cands == val_targets[:, None]).astype(np.float32)
        hit = labels.sum(1) > 0
        log.info("gbdt-ranker: first stage recall@%d on validation %.4f", c.n_candidates, hit.mean())
        rng = np.random.default_rng(c.seed)
        is_valid = (rng.random(dataset.n_users) < c.valid_fraction)[val_users]  # by user
        params = {
            "objective": "lambdarank",
            "metric": "ndcg",
            "eval_at": [10],
            "learning_rate": c.learning_rate,
            "num_leaves": c.num_leaves,
            "min_child_samples": c.min_child_samples,
            "seed": c.seed,
            "num_threads": self.runtime.threads,
            "verbose": -1,
            "deterministic": True,
        }
        n_c = cands.shape[1]
        tr = hit & ~is_valid
        train_set = lgb.Dataset(
            feats[tr].reshape(-1, feats.shape[-1]),
            labels[tr].ravel(),
            group=[n_c] * int(tr.sum()),
            feature_name=self.feature_names_,
        )
        valid = hit & is_valid
        callbacks: list[Any] = []
        valid_sets = []
        if valid.any():
            valid_sets = [
                lgb.Dataset(
                    feats[valid].reshape(-1, feats.shape[-1]),
                    labels[valid].ravel(),
                    group=[n_c] * int(valid.sum()),
                    reference=train_set,
                )
            ]
            callbacks = [lgb.early_stopping(c.early_stopping_rounds, verbose=False)]
        booster = lgb.train(
            params, train_set, num_boost_round=c.n_estimators, valid_sets=valid_sets, callbacks=callbacks
        )
        self.best_iteration_ = int(booster.best_iteration or booster.current_iteration())
        self.booster_ = lgb.Booster(model_str=booster.model_to_string(num_iteration=self.best_iteration_))
        self.sources_ = self._fit_sources(dataset, item_vectors)
        self.recent_pop_ = recent_popularity(dataset, c.recent_fraction)
        self.fit_seconds_ = time.perf_counter() - start

    def _fit_pca(self) -> None:
        k = self.config.vector_dims
        if self.item_vectors_ is None or k == 0:
            self.pca_ = None
            return
        x = self.item_vectors_ - self.item_vectors_.mean(0)
        _, _, vt = np.linalg.svd(x, full_matrices=False)
        self.pca_ = vt[: min(k, vt.shape[0])].T.astype(np.float32)  # (D, k)

    # ---- features --------------------------------------------------------------------------
    def _features(self, sources: list[Recommender], hists: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Features ``(Q, C, F)`` float32 and candidate item rows ``(Q, C)`` for histories ``hists``
        (item rows, oldest first; their items are never candidates)."""
        c = self.config
        scores = [_source_scores(s, hists) for s in sources]
        first = scores[0].copy()
        for j, h in enumerate(hists):
            first[j, h] = -np.inf
        n_c = min(c.n_candidates, first.shape[1])
        cands = np.argsort(-first, axis=1, kind="stable")[:, :n_c]
        cols: list[np.ndarray] = []
        names: list[str] = []
        rows = np.arange(len(hists))[:, None]
        for k, (spec, s) in enumerate(zip(self._specs(), scores, strict=True)):
            v = s[rows, cands]
            mu, sd = v.mean(1, keepdims=True), v.std(1, keepdims=True) + 1e-9
            rank = np.argsort(np.argsort(-v, axis=1, kind="stable"), axis=1).astype(np.float32)
            cols += [v, (v - mu) / sd, rank]
            names += [f"{k}_{spec.model}_score", f"{k}_{spec.model}_z", f"{k}_{spec.model}_rank"]
        cols.append(np.repeat(np.array([len(h) for h in hists], np.float32)[:, None], n_c, 1))
        names.append("history_len")
        if self.recent_pop_ is not None:
            cols.append(self.recent_pop_[cands])
            names.append("recent_popularity")
        if self.item_vectors_ is not None:
            cols_v, names_v = self._vector_features(hists, cands)
            cols += cols_v
            names += names_v
        self.feature_names_ = names
        return np.stack(cols, axis=-1).astype(np.float32), cands

    def _vector_features(
        self, hists: list[np.ndarray], cands: np.ndarray
    ) -> tuple[list[np.ndarray], list[str]]:
        assert self.item_vectors_ is not None
        v = self.item_vectors_
        prof = np.stack(
            [
                v[h[-self.config.profile_len :]].mean(0) if len(h) else np.zeros(v.shape[1], np.float32)
                for h in hists
            ]
        )
        prof_n = prof / (np.linalg.norm(prof, axis=1, keepdims=True) + 1e-9)
        vn = v / (np.linalg.norm(v, axis=1, keepdims=True) + 1e-9)
        cos = np.einsum("ud,ucd->uc", prof_n, vn[cands])
        last = np.stack([vn[h[-1]] if len(h) else np.zeros(v.shape[1], np.float32) for h in hists])
        cos_last = np.einsum("ud,ucd->uc", last, vn[cands])
        cols, names = [cos, cos_last], ["text_cosine", "text_cosine_last"]
        if self.pca_ is not None:
            zu = prof @ self.pca_
            zi = v @ self.pca_
            n_c = cands.shape[1]
            for d in range(self.pca_.shape[1]):
                cols.append(np.repeat(zu[:, d : d + 1], n_c, 1))
                names.append(f"zu_{d}")
            for d in range(self.pca_.shape[1]):
                cols.append(zi[cands, d])
                names.append(f"zi_{d}")
        return cols, names

    # ---- scoring ---------------------------------------------------------------------------
    def _score_users(self, user_rows: np.ndarray) -> np.ndarray:
        empty = np.empty(0, dtype=np.int64)
        return self._score_hists([self.seen_.get(int(u), empty) for u in user_rows])

    def _score_history(self, item_rows: np.ndarray, timestamps: np.ndarray | None = None) -> np.ndarray:
        return self._score_hists([np.asarray(item_rows, dtype=np.int64)])[0]

    def _score_hists(self, hists: list[np.ndarray]) -> np.ndarray:
        feats, cands = self._features(self.sources_, hists)
        flat = feats.reshape(-1, feats.shape[-1])
        pred = self.booster_.predict(flat, num_threads=self.runtime.threads).reshape(cands.shape)
        return _place(pred, cands, self.n_items)

    # ---- persistence -----------------------------------------------------------------------
    #: each source model is saved as its own part (a sub-directory); the booster in LightGBM's text format
    state = (
        "sources_",
        "booster_",
        "item_vectors_",
        "pca_",
        "recent_pop_",
        "feature_names_",
        "best_iteration_",
        "fit_seconds_",
    )

    def _encode_state(self, field: str, value: Any) -> Any:
        return value.model_to_string() if field == "booster_" else value

    def _decode_state(self, field: str, value: Any) -> Any:
        if field == "booster_":
            import lightgbm as lgb

            return lgb.Booster(model_str=value)
        return value


def _place(pred: np.ndarray, cands: np.ndarray, n_items: int) -> np.ndarray:
    """Full score rows ``(U, n_items)``: candidates get the booster's score, every other item one
    constant score below all of them."""
    n_u, n_c = cands.shape
    floor = pred.min(1, keepdims=True) - 1.0
    out = np.empty((n_u, n_items), dtype=np.float32)
    out[:] = floor - 1.0  # items the first stage did not propose (or the user has seen)
    rows = np.arange(n_u)[:, None]
    out[rows, cands] = pred
    return out


def recent_popularity(dataset: Dataset, fraction: float) -> np.ndarray | None:
    """``log1p`` of each item's events among the latest ``fraction`` of the log (by timestamp): ``(n_items,)``."""
    if fraction <= 0 or len(dataset) == 0:
        return None
    ts = dataset.interactions["timestamp"].to_numpy()
    recent = ts >= np.quantile(ts, 1.0 - fraction)
    return np.log1p(np.bincount(dataset.item_idx[recent], minlength=dataset.n_items)).astype(np.float32)


def validation_cut(
    dataset: Dataset, n_last: int = 1
) -> tuple[Dataset, np.ndarray, list[np.ndarray], np.ndarray]:
    """Holds out each user's last ``n_last`` events (users with ``n_last + 2`` or more events).

    Every held-out event is one query: its history is everything before it (earlier held-out events
    included), its target the event. Sources are fitted on the dataset without the held-out events.

    Returns:
        ``(dataset without the held-out events, user row per query (Q,) in the dataset's user vocab,
        history per query, target item row per query (Q,))``.
    """
    inter = dataset.interactions
    order = np.lexsort((np.arange(len(inter)), inter["timestamp"].to_numpy(), dataset.user_idx))
    users = dataset.user_idx[order]
    counts = np.bincount(users, minlength=dataset.n_users)
    start = np.searchsorted(users, users)  # first position of each user's block
    pos_from_end = counts[users] - (np.arange(len(order)) - start)  # 1 = the user's last event
    held = (pos_from_end <= n_last) & (counts[users] >= n_last + 2)
    keep = np.ones(len(inter), dtype=bool)
    keep[order[held]] = False
    ds_val = dataset.with_interactions(inter[keep].reset_index(drop=True))
    items = dataset.item_idx[order]
    q_users, q_hists, q_targets = [], [], []
    for p in np.flatnonzero(held):
        q_users.append(int(users[p]))
        q_hists.append(items[start[p] : p])
        q_targets.append(int(items[p]))
    return ds_val, np.array(q_users, dtype=np.int64), q_hists, np.array(q_targets, dtype=np.int64)


def _source_scores(source: Recommender, hists: list[np.ndarray]) -> np.ndarray:
    """``(len(hists), n_items)`` scores of a source model for anonymous histories."""
    batch = getattr(source, "_score_seqs", None)
    if batch is not None:
        return np.asarray(batch(list(hists)), dtype=np.float32)
    return np.stack([np.asarray(source._score_history(h), dtype=np.float32) for h in hists])
