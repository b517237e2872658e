"""``tokrec``: the project's recommended model, collaborative + sequential + language-model signals.

Eight signals, each a score for every (user, catalog item), z-normalised per user and summed with
weights that were chosen on validation splits cut from training data (``benchmarks/ml100k_recs.py
--tune``; never on test events):

========== ======================================================================= ==============
signal     what                                                                    new items
========== ======================================================================= ==============
``ease``   EASE item weights (Steck 2019) applied to a recency-weighted user row:  0 (no events)
           each past item weighs ``0.5 ** (age in events / ease_half_life)``
``trans``  items that tend to FOLLOW the user's last few items (transition counts) 0
``time``   time-aware popularity: events near the user's last timestamp (kernel)   0
``age``    log interaction rate by item age at the user's last timestamp (age =    yes (release
           that time minus the item's release date; rates from items with events)  date known)
``map``    text->collaborative map: ridge regression from item features            yes
           ``F_i = [Z_I, attributes]`` to the user's interaction vector
``prop``   the user's EASE scores carried to each item's nearest LM neighbours     yes
           among items with events (``Z_I`` cosine, top ``prop_neighbours``)
``prior``  predicted popularity: ridge from ``F_i`` to log-popularity              yes
``profile`` cosine of ``Z_I`` to the recency-weighted mean vector of the user's    yes
           items (the zero-shot text profile)
========== ======================================================================= ==============

Because every signal is z-normalised over the whole catalog per user, a new item's score sits on the
same scale as a warm item's: the signals that exist for it (age, map, prop, prior, profile) carry it, and
the ones that do not (ease, trans, time) give it the z-score of a raw 0, that of a warm item with no
collaborative evidence for this user. One default model serves
warm ranking (the whole catalog) and cold ranking (candidates with no training events).

Fitting computes only what the signals with a positive weight need (``needed_parts``); the ``ease``
signal is the registered :class:`~tokrec.models.ease.EASE` model (its weights also feed ``prop``).
:func:`tokrec.tuning.tune_tokrec` chooses the signals, weights and hyperparameters on a validation
split cut from the user's own log; the defaults below are what it falls back to (``--no-tune``).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
from pydantic import Field, model_validator

from tokrec.data.dataset import Dataset
from tokrec.errors import ConfigError
from tokrec.models import _signals as sig
from tokrec.models.base import ModelConfig, Recommender

SIGNALS = ("ease", "trans", "time", "age", "map", "prop", "prior", "profile")
#: signals computed from the item text vectors (the language-model signals)
LM_SIGNALS = ("map", "prop", "prior", "profile")
#: signals that read the order or the timing of a user's events
ORDER_SIGNALS = ("trans", "time")
#: hyperparameters used only when scoring: :meth:`TokrecHybrid.with_scoring` changes them without refitting
SCORING_PARAMS = ("ease_half_life", "trans_last", "trans_decay", "time_bandwidth_bins", "profile_half_life")
#: fitted state each signal needs (``ease_`` also serves ``prop``)
_NEEDS: dict[str, tuple[str, ...]] = {
    "ease": ("ease",),
    "trans": ("trans",),
    "time": ("time",),
    "age": ("time", "age"),
    "map": ("features",),
    "prop": ("ease", "neighbours"),
    "prior": ("features",),
    "profile": ("vectors",),
}
DAY = 86400.0


class BlendPart(ModelConfig):
    """A registered model added to the blend: its scores, z-normalised per user, times ``weight``."""

    model: str
    config: dict[str, Any] = Field(default_factory=dict)
    weight: float = Field(1.0, ge=0)

    @model_validator(mode="after")
    def _known(self) -> BlendPart:
        from tokrec.models.registry import available_models

        if self.model == "tokrec" or self.model not in available_models():
            raise ValueError(f"blend part {self.model!r} is not a registered model other than tokrec")
        return self


class TokrecConfig(ModelConfig):
    """Hyperparameters of :class:`TokrecHybrid`.

    The defaults are the output of ``benchmarks/ml100k_recs.py --tune`` (validation splits cut from the
    MovieLens-100K training files; test events never used). ``w_*`` are the blend weights of the
    signals; a zero weight skips computing that signal.
    """

    ease_lambda: float = Field(1000.0, gt=0)
    ease_half_life: float = Field(4.0, gt=0)
    trans_window: int = Field(8, ge=1)
    trans_gap_decay: float = Field(0.7, gt=0, le=1)
    trans_last: int = Field(20, ge=1)
    trans_decay: float = Field(0.5, gt=0, le=1)
    time_bin_days: float = Field(1.0, gt=0)
    time_bandwidth_bins: float = Field(10.0, gt=0)
    map_lambda: float = Field(10.0, gt=0)
    attr_weight: float = Field(sig.ATTR_WEIGHT, ge=0)
    prop_neighbours: int = Field(50, ge=1)
    profile_half_life: float = Field(2.0, gt=0)
    w_ease: float = Field(6.0, ge=0)
    w_trans: float = Field(4.0, ge=0)
    w_time: float = Field(0.25, ge=0)
    w_age: float = Field(0.25, ge=0)
    w_map: float = Field(1.5, ge=0)
    w_prop: float = Field(0.25, ge=0)
    w_prior: float = Field(1.0, ge=0)
    w_profile: float = Field(0.5, ge=0)
    #: registered models added to the blend (``tokrec tune --parts``; none by default)
    parts: tuple[BlendPart, ...] = ()

    @model_validator(mode="after")
    def _some_weight(self) -> TokrecConfig:
        if not any(getattr(self, f"w_{s}") > 0 for s in SIGNALS) and not any(
            p.weight > 0 for p in self.parts
        ):
            raise ValueError("at least one signal weight (w_*) must be positive")
        return self


class TokrecHybrid(Recommender):
    """The recommended model: a validated blend of collaborative, sequential and LM signals."""

    name: ClassVar[str] = "tokrec"
    Config: ClassVar[type[ModelConfig]] = TokrecConfig
    needs_item_vectors: ClassVar[bool] = True
    scores_new_items: ClassVar[bool] = True
    config: TokrecConfig

    # ---- fitting -----------------------------------------------------------------------------
    def needed_parts(self) -> set[str]:
        """The fitted pieces the signals with a positive weight need."""
        return {p for s in self._active() for p in _NEEDS[s]}

    def _fit(self, dataset: Dataset, item_vectors: np.ndarray | None) -> None:
        assert item_vectors is not None
        from tokrec.models.ease import EASE

        c = self.config
        need = self.needed_parts()
        n = dataset.n_items
        empty2 = np.zeros((0, 0), dtype=np.float32)
        x = dataset.interaction_matrix()
        pop = np.asarray(x.sum(axis=0)).ravel()
        warm = np.flatnonzero(pop > 0)
        self.ease_ = empty2
        if "ease" in need:  # the registered `ease` model, with this blend's lambda and half-life
            part = EASE.Config.model_validate({"l2": c.ease_lambda, "half_life": c.ease_half_life})
            ease = EASE(part)
            ease.fit(dataset)
            self.ease_ = ease.weights_
        self.trans_ = sp.csr_matrix((n, n), dtype=np.float32)
        if "trans" in need:
            self.trans_ = sig.transition_matrix(dataset.sequences(), n, c.trans_window, c.trans_gap_decay)
        self._fit_time(dataset)
        attrs, release = sig.attribute_features(dataset.items)
        self.release_ = release
        self.age_rates_ = np.zeros(len(sig.AGE_EDGES_DAYS) + 2, dtype=np.float32)
        if "age" in need:
            self.age_rates_ = sig.age_log_rates(x, self.user_time_, release, warm)
        self.features_ = empty2
        self.map_op_ = empty2
        self.prior_ = np.zeros(n, dtype=np.float32)
        if "features" in need:
            f = sig.content_features(item_vectors, attrs, c.attr_weight)
            self.features_ = f
            self.map_op_ = sig.ridge_operator(f, warm, c.map_lambda)
            if len(warm):
                w = sig.ridge(f[warm].astype(np.float64), np.log1p(pop[warm])[:, None], c.map_lambda)
                self.prior_ = (f @ w).ravel().astype(np.float32)
        z = sig.l2_rows(np.asarray(item_vectors, dtype=np.float32))
        self.vectors_ = z
        self.neighbours_ = sp.csr_matrix((n, n), dtype=np.float32)
        if "neighbours" in need:
            self.neighbours_ = sig.top_k_neighbours(z @ z.T, c.prop_neighbours, allowed=pop > 0)
        self.parts_ = [fit_part(p, dataset, item_vectors) for p in c.parts if p.weight > 0]

    def _fit_time(self, dataset: Dataset) -> None:
        """Events per item and time bin, and each user's last timestamp."""
        ts = dataset.interactions["timestamp"].to_numpy(dtype=np.int64)
        self.t0_ = int(ts.min()) if len(ts) else 0
        self.bin_seconds_ = float(max(self.config.time_bin_days * DAY, 1.0))
        bins = ((ts - self.t0_) // self.bin_seconds_).astype(np.int64)
        n_bins = int(bins.max()) + 1 if len(bins) else 1
        self.time_counts_ = np.zeros((dataset.n_items, n_bins), dtype=np.float32)
        np.add.at(self.time_counts_, (dataset.item_idx, bins), 1.0)
        last = np.full(dataset.n_users, int(ts.max()) if len(ts) else 0, dtype=np.int64)
        if len(ts):
            seen_last = np.full(dataset.n_users, np.iinfo(np.int64).min, dtype=np.int64)
            np.maximum.at(seen_last, dataset.user_idx, ts)
            last = np.where(seen_last > np.iinfo(np.int64).min, seen_last, last)
        self.user_time_ = last

    # ---- scoring -------------------------------------------------------------------------------
    def _weights(self) -> dict[str, float]:
        c = self.config
        return {s: float(getattr(c, f"w_{s}")) for s in SIGNALS}

    def signals(
        self, seqs: list[np.ndarray], user_times: np.ndarray, which: tuple[str, ...] = SIGNALS
    ) -> dict[str, np.ndarray]:
        """Raw (not normalised) signals ``(len(seqs), n_items)`` for histories (item rows, oldest first)
        and the time of each history's last event (epoch seconds)."""
        c = self.config
        n = self.n_items
        missing = sorted(set(which) - set(self._active()))
        if missing:
            raise ConfigError(f"tokrec: signals {missing} were not fitted (their weights are 0)")
        out: dict[str, np.ndarray] = {}
        plain = sig.user_rows(seqs, n, None)
        if "ease" in which:
            out["ease"] = np.asarray(sig.user_rows(seqs, n, c.ease_half_life) @ self.ease_)
        if "trans" in which:
            out["trans"] = sig.next_item_scores(self.trans_, seqs, c.trans_last, c.trans_decay)
        if "time" in which:
            bins = np.clip((user_times - self.t0_) // self.bin_seconds_, 0, self.time_counts_.shape[1] - 1)
            out["time"] = sig.time_kernel_scores(self.time_counts_, bins, c.time_bandwidth_bins)
        if "age" in which:
            b = sig.age_bins(user_times, self.release_)
            out["age"] = self.age_rates_[np.where(b >= 0, b, len(self.age_rates_) - 1)]
        if "map" in which:
            out["map"] = np.asarray(plain @ self.map_op_.T) @ self.features_.T
        if "prop" in which:
            full = np.asarray(plain @ self.ease_)
            out["prop"] = np.asarray((self.neighbours_ @ full.T).T)
        if "prior" in which:
            out["prior"] = np.tile(self.prior_, (len(seqs), 1))
        if "profile" in which:
            prof = np.asarray(sig.user_rows(seqs, n, c.profile_half_life) @ self.vectors_)
            out["profile"] = sig.l2_rows(prof) @ self.vectors_.T
        return {k: v.astype(np.float32) for k, v in out.items()}

    def blend(self, signals: dict[str, np.ndarray], weights: dict[str, float] | None = None) -> np.ndarray:
        """Weighted sum of per-user z-normalised signals: ``(n_users, n_items)`` float32."""
        weights = weights or self._weights()
        first = next(iter(signals.values()))
        total = np.zeros(first.shape, dtype=np.float32)
        for name, w in weights.items():
            if w and name in signals:
                total += np.float32(w) * sig.znorm_rows(signals[name])
        return total

    def _active(self) -> tuple[str, ...]:
        return tuple(s for s, w in self._weights().items() if w)

    def with_scoring(self, **params: Any) -> TokrecHybrid:
        """The fitted model with other scoring-time hyperparameters (:data:`SCORING_PARAMS`), sharing
        every fitted array (no refit): the tuner scores half-lives and decays this way."""
        bad = sorted(set(params) - set(SCORING_PARAMS))
        if bad:
            raise ConfigError(
                f"tokrec: {bad} change the fit; only {list(SCORING_PARAMS)} can change after it"
            )
        self._check_fitted()
        cfg = TokrecConfig.model_validate({**self.config.model_dump(), **params})
        other = TokrecHybrid(cfg)
        other.__dict__.update({k: v for k, v in self.__dict__.items() if k != "config"})
        return other

    def _parts_score(self, scores: list[np.ndarray]) -> np.ndarray | float:
        """The weighted, z-normalised scores of the blend's registered parts (0.0 without parts)."""
        weights = [p.weight for p in self.config.parts if p.weight > 0]
        return sum(
            (np.float32(w) * sig.znorm_rows(np.nan_to_num(s)) for w, s in zip(weights, scores, strict=True)),
            0.0,
        )

    def _score_users(self, user_rows: np.ndarray) -> np.ndarray:
        empty = np.empty(0, dtype=np.int64)
        seqs = [self.seen_.get(int(r), empty) for r in user_rows]
        parts = self._parts_score([p._score_users(user_rows) for p in self.parts_])
        return self.blend(self.signals(seqs, self.user_time_[user_rows], self._active())) + parts

    def _score_history(self, item_rows: np.ndarray, timestamps: np.ndarray | None = None) -> np.ndarray:
        """Scores for an anonymous history; without timestamps the history is taken to end at the
        training data's last event."""
        t = int(self.user_time_.max()) if len(self.user_time_) else self.t0_
        if timestamps is not None and len(timestamps):
            t = int(timestamps[-1])
        seq = np.asarray(item_rows, dtype=np.int64)
        parts = self._parts_score([p._score_history(seq, timestamps)[None, :] for p in self.parts_])
        return (self.blend(self.signals([seq], np.array([t], dtype=np.int64), self._active())) + parts)[0]

    # ---- persistence ---------------------------------------------------------------------------
    def _arrays(self) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {
            "ease": self.ease_,
            "time_counts": self.time_counts_,
            "user_time": self.user_time_,
            "release": self.release_,
            "age_rates": self.age_rates_,
            "features": self.features_,
            "map_op": self.map_op_,
            "prior": self.prior_,
            "vectors": self.vectors_,
        }
        out.update(sig.csr_to_arrays("trans", self.trans_))
        out.update(sig.csr_to_arrays("neighbours", self.neighbours_))
        for i, part in enumerate(self.parts_):
            out.update({f"part{i}.{k}": v for k, v in part._arrays().items()})
        return out

    def _set_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        self.ease_ = arrays["ease"]
        self.time_counts_ = arrays["time_counts"]
        self.user_time_ = arrays["user_time"]
        self.release_ = arrays["release"]
        self.age_rates_ = arrays["age_rates"]
        self.features_ = arrays["features"]
        self.map_op_ = arrays["map_op"]
        self.prior_ = arrays["prior"]
        self.vectors_ = arrays["vectors"]
        n = len(self.prior_)
        self.trans_ = sig.csr_from_arrays("trans", arrays, (n, n))
        self.neighbours_ = sig.csr_from_arrays("neighbours", arrays, (n, n))
        from tokrec.models.registry import model_class

        self.parts_ = []
        active = [p for p in self.config.parts if p.weight > 0]
        for i, (p, state) in enumerate(
            zip(active, getattr(self, "_part_states", [{}] * len(active)), strict=True)
        ):
            part = model_class(p.model)(p.config)
            part.item_vocab_, part.user_vocab_, part.seen_ = self.item_vocab_, self.user_vocab_, self.seen_
            part._set_extra_state(state)
            part._set_arrays(
                {k[len(f"part{i}.") :]: v for k, v in arrays.items() if k.startswith(f"part{i}.")}
            )
            self.parts_.append(part)

    def _extra_state(self) -> dict[str, Any]:
        return {
            "t0": self.t0_,
            "bin_seconds": self.bin_seconds_,
            "parts": [p._extra_state() for p in self.parts_],
        }

    def _set_extra_state(self, state: dict[str, Any]) -> None:
        self.t0_ = int(state["t0"])
        self.bin_seconds_ = float(state["bin_seconds"])
        self._part_states = list(state.get("parts", []))


def fit_part(part: BlendPart, dataset: Dataset, item_vectors: np.ndarray | None) -> Recommender:
    """Fits a blend part: the registered model with its config (item vectors when it wants them)."""
    from tokrec.models.base import wants_item_vectors
    from tokrec.models.registry import create_model

    model = create_model(part.model, part.config)
    model.fit(dataset, item_vectors if wants_item_vectors(model) else None)
    return model


__all__ = ["SIGNALS", "BlendPart", "TokrecConfig", "TokrecHybrid", "fit_part"]
