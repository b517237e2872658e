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

A user without events (a new user, an empty history) has none of the history signals: they are ranked by
the new-user blend instead (``new_user_*``: time-aware popularity at the query time, item age, the content
prior and, for a user the user table describes, the events of the users with the closest attributes;
:meth:`TokrecHybrid.new_user_scores`), on every scoring path, chosen by the tuner on users held out
whole. Before it, such a user got the warm blend's weights on those three signals, where the text-predicted
prior outweighed the observed popularity (NDCG@10 0.36 against popularity's 0.53 for new MovieLens users).

Fitting computes only what the signals with a positive weight need (``needed_parts``); the ``ease``
signal is the registered :class:`~tokrec.models.ease.EASE` model (its weights also feed ``prop``).
:func:`tokrec.tuning.tune_tokrec` chooses the signals, weights and hyperparameters on a validation
split cut from the user's own log; the defaults below are what it falls back to (``--no-tune``).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from pydantic import Field, model_validator

from tokrec.config import with_overrides
from tokrec.data.dataset import Dataset
from tokrec.errors import ConfigError
from tokrec.features import user_profiles
from tokrec.models import signals as sig
from tokrec.models.base import ModelConfig, Recommender
from tokrec.models.growth import csr_with_headroom, grown, grown_rows, with_headroom
from tokrec.models.retrieval import CatalogIndex

SIGNALS = ("ease", "trans", "time", "age", "map", "prop", "prior", "profile")
#: signals that exist only for items with events (an item without events gets their z-score of 0)
COLLAB_SIGNALS = ("ease", "trans", "time")
#: signals computed from the item text vectors (the language-model signals)
LM_SIGNALS = ("map", "prop", "prior", "profile")
#: signals that read the order or the timing of a user's events
ORDER_SIGNALS = ("trans", "time")
#: hyperparameters used only when scoring: :meth:`TokrecHybrid.with_scoring` changes them without refitting
SCORING_PARAMS = (
    "ease_half_life",
    "trans_last",
    "trans_decay",
    "time_bandwidth_bins",
    "profile_half_life",
    "retrieval_min_items",
    "retrieval_per_source",
    "cold_calibration",
    "cold_offset",
    "fresh_slot",
    "fresh_match",
    "new_user_w_time",
    "new_user_w_age",
    "new_user_w_prior",
    "new_user_bandwidth_bins",
    "new_user_w_peers",
    "peer_neighbours",
)
#: the signals that exist for a history without events (a new user): the others are all 0 for it; ``peers``
#: only for a user the user table describes (the events of the users whose attributes are closest)
NEW_USER_SIGNALS = ("time", "age", "prior", "peers")
#: fitted state each signal needs (``ease_`` also serves ``prop``)
SIGNAL_PIECES: dict[str, tuple[str, ...]] = {
    "ease": ("ease",),
    "trans": ("trans",),
    "time": ("time",),
    "age": ("time", "age"),
    "map": ("features",),
    "prop": ("ease", "neighbours"),
    "prior": ("features",),
    "profile": ("vectors",),
}
#: the pieces of the learned state and the config fields each is fitted with (:meth:`TokrecHybrid.refitted`
#: refits a piece when one of them changes); every other field only changes scoring
PIECE_PARAMS: dict[str, tuple[str, ...]] = {
    "ease": ("ease_lambda", "ease_max_items"),
    "trans": ("trans_window", "trans_gap_decay"),
    "time": ("time_bin_days",),
    "age": (),
    "features": ("attr_weight", "map_lambda"),
    "neighbours": ("prop_neighbours",),
    "vectors": (),
    "parts": ("parts",),
    "users": (),
}
#: pieces fitted whatever the weights (the cold path of items added online needs the time statistics and
#: the content features, a new user's blend the time statistics, item ages and the prior; the registered
#: parts follow ``parts``)
_ALWAYS = frozenset({"time", "age", "features", "parts", "users"})
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
    signals; a zero weight skips computing that signal. ``ease_max_items`` bounds EASE's dense item x item
    matrix: on a larger catalog EASE covers the most popular ``ease_max_items`` items (16 bytes x N^2 at
    its peak while fitting: 6.4 GB at 20,000) and the rest take the ``prop`` signal's path, as items
    without events do.
    """

    ease_lambda: float = Field(1000.0, gt=0)
    ease_max_items: int = Field(20_000, ge=1)
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
    #: place items without events in one list with the rest as their content predicts (see ``blend``)
    cold_calibration: bool = True
    #: added to the score of every item without events (the blend's units: weighted z-scores): 0 places new
    #: items where their content predicts; a positive value favours them over known items (a freshness boost,
    #: at a cost in accuracy that ``benchmarks/cold_placement.py`` measures)
    cold_offset: float = 0.0
    #: a new item (no events) among the ``fresh_match`` unseen items whose text is closest to the user's recent
    #: items (cosine to the ``profile`` vector) ranks above every known item but the ``fresh_slot - 1`` best:
    #: a new item that matches what the user just had is shown at once (see :meth:`TokrecHybrid.fresh_slot`);
    #: 0 turns it off
    fresh_slot: int = Field(10, ge=0)
    fresh_match: int = Field(2, ge=1)
    profile_half_life: float = Field(2.0, gt=0)
    w_ease: float = Field(6.0, ge=0)
    w_trans: float = Field(4.0, ge=0)
    w_time: float = Field(0.25, ge=0)
    w_age: float = Field(0.25, ge=0)
    w_map: float = Field(1.5, ge=0)
    w_prop: float = Field(0.25, ge=0)
    w_prior: float = Field(1.0, ge=0)
    w_profile: float = Field(0.5, ge=0)
    #: a user with no events (a new user, an empty history) has none of the history signals (ease, trans,
    #: map, prop and profile are all 0 for them, and the blend's parts are left out) and is ranked by this
    #: blend of the signals that exist without a history instead: time-aware popularity at the query time
    #: (with its own bandwidth: ``new_user_bandwidth_bins``, 1e9 = popularity over the whole log), item
    #: age and the content prior (which also places items without events). :mod:`tokrec.tuning` chooses
    #: them on pseudo-new users, a share of the log's users held out whole; the defaults are its choice on
    #: MovieLens 100K's training file
    new_user_w_time: float = Field(1.0, ge=0)
    new_user_w_age: float = Field(0.0, ge=0)
    new_user_w_prior: float = Field(0.0, ge=0)
    new_user_bandwidth_bins: float = Field(1e9, gt=0)
    #: a new user the user table describes (``Dataset.users``: age, gender, country, ...) can also be ranked
    #: by their peers, the ``peer_neighbours`` users with events whose attributes are closest (numeric
    #: columns standardised, categorical ones one-hot, squared distance): the share of those peers that had
    #: each item. Off by default; the tuner weighs it on pseudo-new users when the log comes with a user table.
    #: With the peers alone (the other new-user weights 0), a new user the table does not describe gets popularity
    new_user_w_peers: float = Field(0.0, ge=0)
    peer_neighbours: int = Field(100, ge=1)
    #: registered models added to the blend (``tokrec tune --parts``; none by default)
    parts: tuple[BlendPart, ...] = ()
    #: catalogs of at least this many items are scored by candidate retrieval and the exact blend over the
    #: candidates (:mod:`tokrec.models.retrieval`); smaller ones by the blend over every item
    retrieval_min_items: int = Field(10_000, ge=1)
    #: candidates each signal's index contributes per query
    retrieval_per_source: int = Field(200, ge=10)

    @model_validator(mode="after")
    def _some_weight(self) -> TokrecConfig:
        if not any(getattr(self, f"w_{s}") > 0 for s in SIGNALS) and not any(
            p.weight > 0 for p in self.parts
        ):
            raise ValueError("at least one signal weight (w_*) must be positive")
        if not any(getattr(self, f"new_user_w_{s}") > 0 for s in NEW_USER_SIGNALS):
            raise ValueError("at least one new-user weight (new_user_w_*) must be positive")
        return self


#: what the peers signal keeps: the pool of users with events the table describes, a few queries' peers
_PEER_CACHES = ("_peers_cache", "_query_peers")

#: the per-item arrays :meth:`TokrecHybrid.add_items` grows (see :func:`tokrec.models.growth.grown`)
GROWN_ONLINE = ("vectors_", "features_", "prior_", "release_")


class TokrecHybrid(Recommender[TokrecConfig]):
    """The recommended model: a validated blend of collaborative, sequential and LM signals."""

    name = "tokrec"
    #: fitted models :meth:`fit_with_parts` hands to ``_fit`` for the weighted parts (None: fit that part);
    #: empty outside that call
    _given_parts: list[Recommender | None] = []  # reassigned, never mutated
    needs_item_vectors = True
    scores_new_items = True
    scores_candidates = True

    # ---- fitting -----------------------------------------------------------------------------
    def needed_parts(self) -> set[str]:
        """The fitted pieces the signals with a positive weight need."""
        return {p for s in self._active() for p in SIGNAL_PIECES[s]}

    def _fit(self, dataset: Dataset, item_vectors: np.ndarray | None) -> None:
        assert item_vectors is not None
        n = dataset.n_items
        x = dataset.interaction_matrix()
        self.warm_ = np.asarray(x.sum(axis=0)).ravel() > 0
        self.layout_ = sig.AttributeLayout.fit(dataset.items)
        self.release_ = self.layout_.transform(dataset.items)[1]
        self.vectors_ = sig.l2_rows(np.asarray(item_vectors, dtype=np.float32))
        self.ease_ = np.zeros((0, 0), dtype=np.float32)
        self.ease_items_ = np.arange(0, dtype=np.int64)
        self.trans_ = sp.csr_matrix((n, n), dtype=np.float32)
        self.age_rates_ = np.zeros(len(sig.AGE_EDGES_DAYS) + 2, dtype=np.float32)
        self.neighbours_ = sp.csr_matrix((n, n), dtype=np.float32)
        # the time statistics, content features, content map and popularity prior: always (the cold path of
        # items added online needs them even when the blend gives map and prior no weight)
        self._fit_pieces(dataset, item_vectors, self.needed_parts() | _ALWAYS, x)

    def _fit_pieces(
        self, dataset: Dataset, item_vectors: np.ndarray, pieces: set[str], x: sp.csr_matrix | None = None
    ) -> None:
        """Fits the named pieces of the learned state (:data:`PIECE_PARAMS`) on ``dataset``; every piece is
        assigned anew, never changed in place (a copy made by :meth:`refitted` shares the rest). ``x``: the
        dataset's interaction matrix when the caller has it (built here only if a piece reads it)."""
        from tokrec.models.ease import EASE

        c = self.config
        n = dataset.n_items
        if x is None and pieces & {"age", "features"}:
            x = dataset.interaction_matrix()
        warm = np.flatnonzero(self.warm_)
        # the registered `ease` model, with this blend's lambda, half-life and size bound
        if "ease" in pieces:
            part = EASE.Config.model_validate(
                {"l2": c.ease_lambda, "half_life": c.ease_half_life, "max_items": c.ease_max_items}
            )
            ease = EASE(part)
            ease.fit(dataset)
            self.ease_, self.ease_items_ = ease.weights_, ease.items_
        if "trans" in pieces:
            self.trans_ = sig.transition_matrix(dataset.sequences(), n, c.trans_window, c.trans_gap_decay)
        if "time" in pieces:
            self._fit_time(dataset)
        if "age" in pieces:
            assert x is not None
            self.age_rates_ = sig.age_log_rates(x, self.user_time_, self.release_, warm)
        if "features" in pieces:
            f = sig.content_features(item_vectors, self.layout_.transform(dataset.items)[0], c.attr_weight)
            self.features_ = f
            # one factorised ridge system for both: the map's operator A^-1 (p x p) and the prior's weights
            assert x is not None
            pop = np.asarray(x.sum(axis=0)).ravel()
            self.map_inv_, prior_w = sig.content_ridge(f, warm, c.map_lambda, np.log1p(pop[warm]))
            self.prior_w_ = prior_w if prior_w is not None and len(warm) else np.zeros(f.shape[1], np.float32)
            self.prior_ = (f @ self.prior_w_).astype(np.float32)
        if "neighbours" in pieces:
            z = self.vectors_
            self.neighbours_ = sig.neighbours_among(z, z, warm, c.prop_neighbours, np.arange(len(z)))
        if "users" in pieces:
            if dataset.users is not None:
                self.user_attr_, self.user_layout_ = sig.user_attribute_features(
                    dataset.users, dataset.user_vocab.to_list()
                )
            else:
                self.user_attr_ = np.zeros((dataset.n_users, 0), dtype=np.float32)
                self.user_layout_ = sig.AttributeLayout()
            for cache in _PEER_CACHES:
                self.__dict__.pop(cache, None)
        if "parts" in pieces:
            given = self._given_parts or [None] * sum(p.weight > 0 for p in c.parts)
            self.parts_ = [
                model if model is not None else fit_part(p, dataset, item_vectors)
                for p, model in zip([p for p in c.parts if p.weight > 0], given, strict=True)
            ]

    def refitted(self, dataset: Dataset, item_vectors: np.ndarray, **overrides: Any) -> TokrecHybrid:
        """A copy of this fitted model with ``overrides`` (any config fields) that fits on ``dataset`` (the
        log this model was fitted on) only the pieces the overrides change or newly need, and shares the
        rest: ``ease_lambda`` refits EASE alone, ``prop_neighbours`` the text neighbours, ``map_lambda`` the
        content ridge, a weight made positive that signal's pieces; scoring options and weights refit
        nothing (as :meth:`with_scoring`). The tuner's search runs on it (one EASE fit serves the ``ease``
        and ``prop`` signals); this model is unchanged."""
        self._check_fitted()
        assert self.item_vocab_ is not None
        if self.item_vocab_.to_list() != dataset.item_vocab.to_list() or len(item_vectors) != dataset.n_items:
            raise ConfigError(
                "refitted: the dataset or item vectors are not the ones the model was fitted on"
            )
        config = with_overrides(self.config, overrides, what=self.name)
        clone = copy.copy(self)
        clone.config = config
        for cache in ("_catalog", "_attr_cache", "_new_user_cache", *_PEER_CACHES):
            clone.__dict__.pop(cache, None)
        clone._fit_pieces(dataset, item_vectors, self.refit_pieces(config))
        return clone

    def refit_pieces(self, config: TokrecConfig) -> set[str]:
        """The pieces :meth:`refitted` fits to go from this model's config to ``config``: those ``config``
        needs that this model lacks or fitted with other values of their :data:`PIECE_PARAMS`."""
        had = self.needed_parts() | _ALWAYS
        need = {
            p
            for s, w in config.model_dump().items()
            if s.startswith("w_") and w
            for p in SIGNAL_PIECES[s[2:]]
        }
        return {
            p
            for p in need | _ALWAYS
            if p not in had or any(getattr(self.config, k) != getattr(config, k) for k in PIECE_PARAMS[p])
        }

    def fit_with_parts(
        self, dataset: Dataset, item_vectors: np.ndarray, parts: Sequence[Recommender | None]
    ) -> TokrecHybrid:
        """:meth:`fit`, taking already fitted models as the blend's registered parts: ``parts`` holds one
        entry per part with a positive weight, in order, a fitted model of that part's registry name (on
        this catalog) or None to fit it here. The tuner passes the part it fitted on its validation split
        this way (:func:`tokrec.tuning.fit_tuned`) instead of training it again."""
        weighted = [p for p in self.config.parts if p.weight > 0]
        if len(parts) != len(weighted):
            raise ConfigError(f"fit_with_parts: {len(parts)} models for {len(weighted)} weighted parts")
        for p, model in zip(weighted, parts, strict=True):
            if model is not None and (
                model.name != p.model
                or model.item_vocab_ is None
                or model.item_vocab_.to_list() != dataset.item_vocab.to_list()
            ):
                raise ConfigError(f"fit_with_parts: the model given for part {p.model!r} does not fit it")
        self._given_parts = list(parts)
        try:
            return self.fit(dataset, item_vectors)
        finally:
            self._given_parts = []

    def _fit_time(self, dataset: Dataset) -> None:
        """Events per item and time bin, and each user's last timestamp."""
        ts = dataset.interactions["timestamp"].to_numpy(dtype=np.int64)
        self.t0_ = int(ts.min()) if len(ts) else 0
        self.bin_seconds_ = float(max(self.config.time_bin_days * DAY, 1.0))
        bins = ((ts - self.t0_) // self.bin_seconds_).astype(np.int64)
        n_bins = int(bins.max()) + 1 if len(bins) else 1
        self.time_counts_ = sp.csr_matrix(
            (np.ones(len(bins), dtype=np.float32), (dataset.item_idx, bins)), shape=(dataset.n_items, n_bins)
        )  # duplicates summed: events per (item, bin), one entry per pair with events
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
        and the time of each history's last event (epoch seconds).

        Items added after fitting (:meth:`add_items`, rows from ``n_fitted``) have no events: the
        collaborative signals (ease, trans, time) give them 0, as they give a catalog item without
        events, and their rows in a history count for the content signals only.
        """
        c = self.config
        n = self.n_items
        missing = sorted(set(which) - set(self._active()))
        if missing:
            raise ConfigError(f"tokrec: signals {missing} were not fitted (their weights are 0)")
        nf = self.n_fitted
        fitted = seqs if n == nf else [s[s < nf] for s in (np.asarray(q, dtype=np.int64) for q in seqs)]
        out: dict[str, np.ndarray] = {}
        # user rows in float32, the item matrices' type: a float64 row would make scipy upcast (copy) the
        # whole item x item matrix on every query
        plain = sig.user_rows(fitted, nf, None).astype(np.float32)
        if "ease" in which:
            out["ease"] = self._ease_scores(sig.user_rows(fitted, nf, c.ease_half_life).astype(np.float32), n)
        if "trans" in which:
            out["trans"] = _pad(sig.next_item_scores(self.trans_, fitted, c.trans_last, c.trans_decay), n)
        if "time" in which:
            bins = np.clip((user_times - self.t0_) // self.bin_seconds_, 0, self.time_counts_.shape[1] - 1)
            out["time"] = _pad(sig.time_kernel_scores(self.time_counts_, bins, c.time_bandwidth_bins), n)
        if "age" in which:
            b = sig.age_bins(user_times, self.release_)
            out["age"] = self.age_rates_[np.where(b >= 0, b, len(self.age_rates_) - 1)]
        # map and profile both read the unit text vectors Z (features_ = [Z, attributes, 1]): one product
        # with both right-hand sides reads Z once (the catalog's largest block) instead of twice
        rhs: list[np.ndarray] = []
        d = self.vectors_.shape[1]
        if "map" in which:
            w = self.map_weights(plain)  # (users, d + attributes + 1)
            rhs.append(w[:, :d])
        if "profile" in which:
            rhs.append(user_profiles(seqs, self.vectors_, half_life=c.profile_half_life))
        if rhs:
            both = self.vectors_ @ np.vstack(rhs).T  # (n_items, k * users)
            u = len(seqs)
            if "map" in which:
                attrs = self._attribute_block()
                out["map"] = (both[:, :u] + attrs @ w[:, d:-1].T + w[:, -1]).T
            if "profile" in which:
                out["profile"] = both[:, -u:].T
        if "prop" in which:
            full = self._ease_scores(plain, nf)
            out["prop"] = np.asarray((self.neighbours_ @ full.T).T)
        if "prior" in which:
            out["prior"] = np.tile(self.prior_, (len(seqs), 1))
        return {k: v.astype(np.float32) for k, v in out.items()}

    def map_weights(self, rows: sp.csr_matrix) -> np.ndarray:
        """The content map's weights over the content features for user rows ``(users, n_fitted)``: the ridge
        map ``A^-1 sum f_i`` of each row's items with events (weighted by the row), ``(users, p)`` float32."""
        keep = rows.copy()
        keep.data = keep.data * self.warm_[keep.indices]  # items without events are not in the ridge fit
        sums = np.asarray(keep @ self.features_[: rows.shape[1]], dtype=np.float64)
        return (sums @ self.map_inv_).astype(np.float32)

    def history_map_weights(self, items: np.ndarray) -> np.ndarray:
        """:meth:`map_weights` of one history given as its distinct fitted item rows, sorted: ``(p,)`` float32,
        the same sums in the same order (item by item), without building a sparse row (one query of the
        retrieval path; ``np.dot``, which releases the GIL in BLAS, where ``@`` with a one-row left side holds it)."""
        items = np.asarray(items, dtype=np.int64)
        sums = np.add.reduce(self.features_[items[self.warm_[items]]], axis=0, keepdims=True)
        return np.dot(sums.astype(np.float64), self.map_inv_).astype(np.float32)[0]

    def _attribute_block(self) -> np.ndarray:
        """The attribute columns of ``features_`` (between the text vector and the constant), contiguous;
        cached per catalog (``add_items`` replaces ``features_``, which drops it)."""
        cached = self.__dict__.get("_attr_cache")
        if cached is not None and cached[0] is self.features_:
            return cached[1]
        block = np.ascontiguousarray(self.features_[:, self.vectors_.shape[1] : -1])
        self.__dict__["_attr_cache"] = (self.features_, block)
        return block

    def _ease_scores(self, rows: sp.csr_matrix, n: int) -> np.ndarray:
        """EASE scores ``(users, n)`` from user rows over the fitted items (0 outside EASE's items)."""
        cols = self.ease_items_
        if len(cols) == rows.shape[1] == n:
            return np.asarray(rows @ self.ease_)
        out = np.zeros((rows.shape[0], n), dtype=np.float32)
        out[:, cols] = np.asarray(rows[:, cols] @ self.ease_)
        return out

    @property
    def n_fitted(self) -> int:
        """Items the model was fitted on (the first rows of the catalog); later rows came by :meth:`add_items`."""
        return int(len(self.warm_))

    def memory_estimate(self, dataset: Dataset, dim: int = 384) -> int:
        """Peak bytes while fitting (the tuning step included), from the data's sizes before any encoding:
        the loaded log (~200 bytes an event) and catalog, the encoder (1 GiB), the item vectors (encoder
        output and the model's copy), the content features (4 bytes x items x (dim + 128 attribute
        columns)) and the ridge fit's float64 blocks (two of 65,536 rows at most), the text-neighbour search
        (its cell-sorted copy of the vectors, 50 neighbours an item), transitions and time statistics (~300
        bytes an event while built) and EASE's solve (:func:`~tokrec.models.signals.ease_memory`); the
        tuning step's matrices are the caller's to add (``check_memory(..., extra=)``)."""
        n, e = dataset.n_items, len(dataset)
        p = dim + 128
        ridge_blocks = 2 * 8 * min(n, 65_536) * p
        item_blocks = 8 * n * dim + 4 * n * p + ridge_blocks + 4 * n * dim + 600 * n + 1024 * n
        events = 500 * e
        ease = (
            sig.ease_memory(min(n, self.config.ease_max_items))
            if self.config.w_ease or self.config.w_prop
            else 0
        )
        return int(2**30 + item_blocks + events + ease)

    def memory_advice(self) -> str:
        return (
            "lower ease_max_items (--config '{\"ease_max_items\": 10000}': EASE then covers the most popular "
            "items only), use a machine with more memory, or a model that scales (als, bpr)"
        )

    def blend(self, signals: dict[str, np.ndarray], weights: dict[str, float] | None = None) -> np.ndarray:
        """Weighted sum of per-user z-normalised signals: ``(n_users, n_items)`` float32.

        With ``cold_calibration``, an item without events (never one of the collaborative signals' items)
        gets, in place of the collaborative part it cannot have (ease, trans, time: their z-score of 0),
        the value that part takes on average for this user's items WITH events at the same strength of
        the content part: a least-squares line ``collab = a + b * content`` over the items with events
        (``b`` kept >= 0). So new items are placed in one list with known ones as their text predicts,
        and among themselves keep the content part's order (a ranking of new items only is unchanged).
        ``cold_offset`` is then added to every item without events (the same for all: their order among
        themselves is unchanged again).
        """
        weights = weights or self._weights()
        first = next(iter(signals.values()))
        collab = np.zeros(first.shape, dtype=np.float32)
        content = np.zeros(first.shape, dtype=np.float32)
        for name, w in weights.items():
            if w and name in signals:
                part = collab if name in COLLAB_SIGNALS else content
                part += np.float32(w) * sig.znorm_rows(signals[name])
        warm = np.zeros(first.shape[1], dtype=bool)
        warm[: len(self.warm_)] = self.warm_
        if self.config.cold_calibration and warm.any() and not warm.all() and collab.any():
            x, y = content[:, warm], collab[:, warm]
            mx, my = x.mean(axis=1, keepdims=True), y.mean(axis=1, keepdims=True)
            var = ((x - mx) ** 2).mean(axis=1, keepdims=True)
            b = np.maximum(((x - mx) * (y - my)).mean(axis=1, keepdims=True) / np.maximum(var, 1e-12), 0.0)
            collab[:, ~warm] = my - b * mx + b * content[:, ~warm]
        if self.config.cold_offset:
            collab[:, ~warm] += np.float32(self.config.cold_offset)
        return collab + content

    def _active(self) -> tuple[str, ...]:
        return tuple(s for s, w in self._weights().items() if w)

    def _parts_score(self, scores: list[np.ndarray]) -> np.ndarray | float:
        """The weighted, z-normalised scores of the blend's registered parts (0.0 without parts)."""
        weights = [p.weight for p in self.config.parts if p.weight > 0]
        return sum(
            (
                np.float32(w) * sig.znorm_rows(part_scores(s, self.n_items))
                for w, s in zip(weights, scores, strict=True)
            ),
            0.0,
        )

    def uses_retrieval(self) -> bool:
        """Whether queries go through candidate retrieval (a catalog of at least ``retrieval_min_items``
        items; a blend with registered parts always scores every item)."""
        return self.n_items >= self.config.retrieval_min_items and not self.parts_

    def catalog_index(self) -> CatalogIndex:
        """The retrieval index of the current catalog (built on first use, a few seconds at a million items;
        :meth:`add_items` extends it)."""
        cached = self.__dict__.get("_catalog")
        if cached is not None and cached[0] is self.features_:
            return cached[1]
        index = CatalogIndex.build(self)
        self.__dict__["_catalog"] = (self.features_, index)
        return index

    def prepare(self) -> None:
        if self.uses_retrieval():
            self.catalog_index().warm_time(self)

    def _retrieved(
        self, seq: np.ndarray, t: int, candidates: np.ndarray | None, user_row: int | None = None
    ) -> np.ndarray:
        """Scores of the retrieved (or given) candidates, -inf elsewhere, the fresh slot applied among them.
        Retrieval searches the items closest to the history's profile vector anyway: the slot's close items
        are read from the candidates' cosines; a given candidate list asks the text search itself."""
        seq = np.asarray(seq, dtype=np.int64)
        if not len(seq):  # a new user: the new-user blend over every item, no retrieval
            full = (
                self.new_user_scores(t)
                if user_row is None
                else self._new_users_score(np.array([user_row], dtype=np.int64))[0]
            )
            if candidates is None:
                return full
            out = np.full(self.n_items, -np.inf, dtype=np.float32)
            rows = np.asarray(candidates, dtype=np.int64)
            out[rows] = full[rows]
            return out
        slot = self._slot_applies()
        index = self.catalog_index()
        if candidates is None:
            rows, scores, cos = index.scores(self, seq, t, None, text=slot)
            close = self._closest_new(rows, cos, seq) if slot and cos is not None and len(seq) else rows[:0]
        else:
            close = self._fresh_candidates([seq])[0]
            rows, scores, _ = index.scores(self, seq, t, candidates)
        if len(close):
            self._slot(rows, scores, seq, close)
        out = np.full(self.n_items, -np.inf, dtype=np.float32)
        out[rows] = scores
        return out

    def _score_users(self, user_rows: np.ndarray, candidates: np.ndarray | None = None) -> np.ndarray:
        empty = np.empty(0, dtype=np.int64)
        seqs = [self.seen_.get(int(r), empty) for r in user_rows]
        if self.uses_retrieval():
            from contextlib import nullcontext

            from threadpoolctl import threadpool_limits

            # a batch of queries, one at a time: their products are small, and a multi-threaded BLAS spends
            # longer synchronising its threads than computing them (a single query, the service's case, runs
            # under the process's own limit: `tokrec serve --threads`)
            with threadpool_limits(limits=1) if len(user_rows) > 1 else nullcontext():
                out = [
                    self._retrieved(s, int(self.user_time_[r]), candidates, user_row=int(r))
                    for s, r in zip(seqs, user_rows, strict=True)
                ]
            return np.vstack(out).reshape(len(user_rows), self.n_items)
        known = np.array([len(s) > 0 for s in seqs], dtype=bool)
        if known.all():
            return self._histories_score(user_rows, seqs, candidates)
        scores = np.empty((len(user_rows), self.n_items), dtype=np.float32)
        if known.any():
            at = np.flatnonzero(known)
            scores[at] = self._histories_score(user_rows[at], [seqs[i] for i in at], candidates)
        new = np.flatnonzero(~known)  # users without events: the new-user blend
        scores[new] = self._new_users_score(np.asarray(user_rows)[new])
        return scores

    def _histories_score(
        self, user_rows: np.ndarray, seqs: list[np.ndarray], candidates: np.ndarray | None
    ) -> np.ndarray:
        """Known users' scores from their (non-empty) training histories: the signals, the parts, the slot."""
        parts = self._parts_score([p._score_users(user_rows) for p in self.parts_])
        return self.fresh_slot(
            self._signals_score(seqs, self.user_time_[user_rows]) + parts, seqs, candidates
        )

    def _score_history(
        self,
        item_rows: np.ndarray,
        timestamps: np.ndarray | None = None,
        candidates: np.ndarray | None = None,
    ) -> np.ndarray:
        """Scores for an anonymous history; without timestamps the history is taken to end at the
        training data's last event."""
        t = self._log_end()
        if timestamps is not None and len(timestamps):
            t = int(timestamps[-1])
        seq = np.asarray(item_rows, dtype=np.int64)
        if self.uses_retrieval() or not len(seq):  # _retrieved scores an empty history as a new user
            return self._retrieved(seq, t, candidates)
        parts = self._parts_score([_part_history(p, seq, timestamps)[None, :] for p in self.parts_])
        scores = self._signals_score([seq], np.array([t], dtype=np.int64)) + parts
        return self.fresh_slot(scores, [seq], candidates)[0]

    # ---- the fresh slot ----------------------------------------------------------------------------
    def _is_new(self, rows: np.ndarray) -> np.ndarray:
        """Which catalog ``rows`` have no training events (catalog items without events, items added since)."""
        rows = np.asarray(rows, dtype=np.int64)
        new = rows >= len(self.warm_)
        new[~new] = ~self.warm_[rows[~new]]
        return new

    def _slot_applies(self) -> bool:
        """The fresh slot is on and the catalog has both new items and known ones."""
        n_warm = int(np.count_nonzero(self.warm_))
        return bool(self.config.fresh_slot) and 0 < n_warm < self.n_items

    def _closest_new(self, pool: np.ndarray, cos: np.ndarray, seq: np.ndarray) -> np.ndarray:
        """The new items among the ``fresh_match`` rows of ``pool`` with the largest ``cos``, history excluded."""
        cos = np.where(np.isin(pool, seq), -np.inf, cos)
        m = min(self.config.fresh_match, int(np.isfinite(cos).sum()))
        if not m:
            return np.empty(0, dtype=np.int64)
        close = pool[np.argpartition(-cos, m - 1)[:m]]
        return np.sort(close[self._is_new(close)])

    def _fresh_candidates(self, seqs: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Per history, the new items among its ``fresh_match`` closest unseen items by text: the cosine of
        ``Z_I`` to the history's ``profile`` vector, over the whole catalog (by the catalog index's text
        search on catalogs scored by retrieval, then exactly)."""
        c = self.config
        empty = np.empty(0, dtype=np.int64)
        if not self._slot_applies():  # no new item, or nothing known to rank among
            return [empty for _ in seqs]
        seqs = [np.asarray(q, dtype=np.int64) for q in seqs]
        prof = user_profiles(seqs, self.vectors_, half_life=c.profile_half_life)
        out: list[np.ndarray] = []
        for q, u in zip(seqs, prof, strict=True):
            if not len(q) or not np.any(u):
                out.append(empty)
            elif self.uses_retrieval():
                pool = np.unique(
                    self.catalog_index().nearest_text(self, u, c.fresh_match + len(np.unique(q)))
                )
                out.append(self._closest_new(pool, self.vectors_[pool] @ u, q))
            else:
                out.append(self._closest_new(np.arange(self.n_items), self.vectors_ @ u, q))
        return out

    def _slot(self, rows: np.ndarray, vals: np.ndarray, seq: np.ndarray, close: np.ndarray) -> None:
        """The fresh slot for one query, in place on ``vals``: the scores of the ranked ``rows`` (finite)."""
        r = self.config.fresh_slot
        at = np.flatnonzero(np.isin(rows, close))
        if not len(at):
            return
        known = ~self._is_new(rows) & ~np.isin(rows, seq)
        n_known = int(np.count_nonzero(known))
        if n_known < r:
            return
        target = np.partition(vals[known], n_known - r)[n_known - r]  # the r-th best known score
        best = at[int(np.argmax(vals[at]))]
        if vals[best] <= target:
            vals[best] = np.nextafter(np.float32(target), np.float32(np.inf))

    def fresh_slot(
        self, scores: np.ndarray, seqs: Sequence[np.ndarray], candidates: np.ndarray | None = None
    ) -> np.ndarray:
        """The fresh slot (``fresh_slot`` = r, ``fresh_match`` = m), applied to whole-catalog scores
        ``(len(seqs), n_items)`` in place, one row per history: of the new items (no training events) among
        the m unseen items whose text is closest to the user's recent items, the best scored is raised, where
        it stands lower, to just above the r-th best score of the known items that are ranked (unseen, and
        candidates when the caller gave some). Such an item then ranks above every known item but the r - 1
        best, at once, and keeps its place after a refit (it still has no events). A list of new items only
        (the cold-item task) has no known item and is left as it is, and so are lists without a close new
        item. (Catalogs scored by retrieval apply the same rule to their candidates in ``_retrieved``.)

        Why a slot and not a better calibration: on mixed lists (``benchmarks/cold_placement.py``, a fifth of
        the items made new) placing every new item higher costs accuracy, while one place for the item that
        matches what the user just had costs about nothing; BENCHMARKS.md has the figures."""
        if not self.config.fresh_slot:
            return scores
        rows = np.arange(self.n_items) if candidates is None else np.unique(np.asarray(candidates, np.int64))
        for i, close in enumerate(self._fresh_candidates(seqs)):
            if len(close):
                ranked = rows[np.isfinite(scores[i, rows])]
                vals = scores[i, ranked]
                self._slot(ranked, vals, np.asarray(seqs[i], dtype=np.int64), close)
                scores[i, ranked] = vals
        return scores

    def _signals_score(self, seqs: list[np.ndarray], user_times: np.ndarray) -> np.ndarray:
        """The blend of the active signals, ``(len(seqs), n_items)``; zeros when only registered parts have
        weight (the tuner may choose a part alone)."""
        active = self._active()
        if not active:
            return np.zeros((len(seqs), self.n_items), dtype=np.float32)
        return self.blend(self.signals(seqs, user_times, active))

    # ---- new users -------------------------------------------------------------------------------
    def new_user_weights(self) -> dict[str, float]:
        """The new-user blend's weights, ``{signal: new_user_w_<signal>}`` over :data:`NEW_USER_SIGNALS`."""
        return {s: float(getattr(self.config, f"new_user_w_{s}")) for s in NEW_USER_SIGNALS}

    def new_user_signals(self, t: int, bandwidth_bins: float | None = None) -> dict[str, np.ndarray]:
        """The raw signals of a history without events at time ``t`` (epoch seconds), each ``(1, n_items)``
        float32: ``time`` (time-aware popularity, with ``bandwidth_bins``, default ``new_user_bandwidth_bins``),
        ``age`` and ``prior``, as :meth:`signals` computes them for any history."""
        times = np.array([t], dtype=np.int64)
        bins = np.clip((times - self.t0_) // self.bin_seconds_, 0, self.time_counts_.shape[1] - 1)
        bw = self.config.new_user_bandwidth_bins if bandwidth_bins is None else bandwidth_bins
        age = sig.age_bins(times, self.release_)
        return {
            "time": _pad(sig.time_kernel_scores(self.time_counts_, bins, bw), self.n_items),
            "age": self.age_rates_[np.where(age >= 0, age, len(self.age_rates_) - 1)].astype(np.float32),
            "prior": np.asarray(self.prior_, dtype=np.float32)[None, :],
        }

    def new_user_scores(self, t: int, peers: np.ndarray | None = None) -> np.ndarray:
        """The scores of a user without events at time ``t``: ``(n_items,)`` float32, the blend (:meth:`blend`:
        z-normalised, items without events placed by their content) of :meth:`new_user_signals` with
        :meth:`new_user_weights`. Every history without events at the same time gets the same vector, so a
        few are kept (a copy is returned). ``peers``: this user's :meth:`peer_scores` row (a user the user
        table describes), blended in with ``new_user_w_peers``; a blend of the peers alone ranks a user the table
        does not describe by popularity (the time signal at ``new_user_bandwidth_bins``). The registered parts
        and the fresh slot do not apply."""
        w = self.new_user_weights()
        if peers is not None and w["peers"] > 0:
            raw = {s: v for s, v in self.new_user_signals(t).items() if w[s]}
            raw["peers"] = np.asarray(peers, dtype=np.float32).reshape(1, -1)
            return self.blend(raw, w)[0]
        if not any(v for s, v in w.items() if s != "peers"):  # the peers alone, and no peers here
            w = {**w, "time": 1.0}
        key = (int(t), self.n_items, self.config.new_user_bandwidth_bins, *w.values())
        cache = self.__dict__.setdefault("_new_user_cache", {})
        scores = cache.get(key)
        if scores is None:
            raw = {s: v for s, v in self.new_user_signals(t).items() if w[s]}
            scores = self.blend(raw, w)[0]
            if len(cache) >= 16:
                cache.clear()
            cache[key] = scores
        return scores.copy()

    def _log_end(self) -> int:
        """The training log's last time (epoch seconds): the query time of a history given without times."""
        return int(self.user_time_.max()) if len(self.user_time_) else self.t0_

    def _user_time(self, user_row: int) -> int:
        """A user's query time: their last training event's (the log's last for a user without one, and for
        -1 or a user added since the fit)."""
        return int(self.user_time_[user_row]) if 0 <= user_row < len(self.user_time_) else self._log_end()

    def has_attributes(self, user_rows: np.ndarray) -> np.ndarray:
        """Whether the user table described each user (bool per row; False for users added since the fit)."""
        rows = np.asarray(user_rows, dtype=np.int64)
        attr = getattr(self, "user_attr_", None)
        if attr is None or attr.shape[1] == 0:
            return np.zeros(len(rows), dtype=bool)
        inside = rows < len(attr)
        out = np.zeros(len(rows), dtype=bool)
        out[inside] = attr[rows[inside], -1] > 0  # the table's users carry a constant last column
        return out

    def peer_scores(self, user_rows: np.ndarray, neighbours: int | None = None) -> np.ndarray:
        """The ``peers`` signal of users the user table describes: ``(len(user_rows), n_items)`` float32, the
        share of their ``neighbours`` (default ``peer_neighbours``) closest users by attributes (squared
        distance between :func:`~tokrec.models.signals.user_attribute_features` rows; users with training
        events only, never the user itself) who had each item. Rows of users without attributes are 0."""
        k = neighbours or self.config.peer_neighbours
        return self.peer_scores_by_count(user_rows, (k,))[k]

    def peer_scores_by_count(self, user_rows: np.ndarray, counts: Sequence[int]) -> dict[int, np.ndarray]:
        """:meth:`peer_scores` at several neighbour counts, the neighbours searched once (the tuner's grid)."""
        rows = np.asarray(user_rows, dtype=np.int64)
        out = {int(k): np.zeros((len(rows), self.n_items), dtype=np.float32) for k in counts}
        has = self.has_attributes(rows)
        if has.any():
            for k, v in self._peers_of(self.user_attr_[rows[has]], rows[has], counts).items():
                out[k][has] = v
        return out

    def attribute_peer_scores(self, attributes: Mapping[str, object]) -> np.ndarray | None:
        """The ``peers`` signal of a user described only now (a service request's ``attributes``, column ->
        value, in the user table's columns): ``(n_items,)`` float32, or None when no attribute given is one
        the table's layout knows (no column, or a value it never had)."""
        layout = getattr(self, "user_layout_", None)
        if layout is None or layout.width == 0:
            return None
        known = {c["name"] for c in layout.columns}
        row = pd.DataFrame([{k: v for k, v in attributes.items() if k in known}])
        feats = sig.user_attribute_rows(layout, row)
        if not feats[0, :-1].any():
            return None
        k = self.config.peer_neighbours
        return self._peers_of(feats, np.array([-1], dtype=np.int64), (k,))[k][0]

    def _peer_pool(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The users with events the table describes (sorted rows), their attribute rows and squared norms:
        built once, kept."""
        cached = self.__dict__.get("_peers_cache")
        if cached is None:
            with_events = np.array(sorted(self.seen_), dtype=np.int64)
            pool = with_events[self.has_attributes(with_events)]
            p = self.user_attr_[pool]
            cached = self.__dict__["_peers_cache"] = (pool, p, (p * p).sum(axis=1))
        return cached

    def _peers_of(self, feats: np.ndarray, rows: np.ndarray, counts: Sequence[int]) -> dict[int, np.ndarray]:
        """The peers signal of attribute rows ``feats`` at each neighbour count of ``counts`` (``rows``: their
        user rows, each left out of its own peers; -1 for none): ``{k: (len(feats), n_items) float32}``. The
        nearest ``max(counts)`` are found once, in blocks of at most 2^25 distances."""
        out = {int(k): np.zeros((len(feats), self.n_items), dtype=np.float32) for k in counts}
        pool, p, p_sq = self._peer_pool()
        if not len(pool):
            return out
        k_max = min(max(out), len(pool))
        step = max(1, min(256, 2**25 // len(pool)))
        for a in range(0, len(feats), step):
            d2 = p_sq[None, :] - 2.0 * (feats[a : a + step] @ p.T)  # + |q|^2, the same for every peer
            own = rows[a : a + step]
            at = np.minimum(np.searchsorted(pool, own), len(pool) - 1)
            hit = (own >= 0) & (pool[at] == own)
            d2[np.flatnonzero(hit), at[hit]] = np.inf  # never a user's own peer
            near = (
                np.argpartition(d2, k_max - 1, axis=1)[:, :k_max]
                if k_max < len(pool)
                else np.tile(np.arange(len(pool)), (len(d2), 1))
            )
            order = np.argsort(np.take_along_axis(d2, near, axis=1), axis=1, kind="stable")
            near = np.take_along_axis(near, order, axis=1)  # nearest first
            for i, peers in enumerate(near, start=a):
                sets = [np.unique(self.seen_[int(u)]) for u in pool[peers]]  # a peer once an item
                items, ends = np.concatenate(sets), np.cumsum([len(s) for s in sets])  # nearest first
                for k, share in out.items():
                    kk = min(k, len(sets))
                    share[i] = np.bincount(items[: ends[kk - 1]], minlength=self.n_items)[
                        : self.n_items
                    ] / np.float32(kk)
        return out

    def _score_described(self, attributes: Mapping[str, object], user_row: int) -> np.ndarray | None:
        """A user without events described by a request's ``attributes``: the new-user blend with the peers
        those attributes find; None (the usual path) for a user the user table already describes, or without
        peers for these attributes (:meth:`query_peers`)."""
        if user_row >= 0 and self.has_attributes(np.array([user_row]))[0]:
            return None
        found = self.query_peers(user_row, attributes)
        return None if found is None else self.new_user_scores(self._user_time(user_row), found[0])

    def query_peers(
        self, user_row: int, attributes: Mapping[str, object] | None
    ) -> tuple[np.ndarray, int] | None:
        """The peers behind a query without events (:meth:`Recommender.query_peers`): a user the table
        describes, else the request's ``attributes``; None without a peers weight or a description. A few
        queries' shares are kept, so that scoring a query and explaining it search its peers once."""
        if self.config.new_user_w_peers <= 0 or (user_row >= 0 and user_row in self.seen_):
            return None
        described = user_row >= 0 and bool(self.has_attributes(np.array([user_row]))[0])
        if not described and not attributes:
            return None
        key = (
            ("row", user_row)
            if described
            else tuple(sorted((str(k), repr(v)) for k, v in (attributes or {}).items()))
        )
        memo = self.__dict__.setdefault("_query_peers", {})
        if key not in memo:
            share = (
                self.peer_scores(np.array([user_row]))[0]
                if described
                else self.attribute_peer_scores(attributes or {})
            )
            if len(memo) >= 64:
                memo.clear()
            memo[key] = share
        share = memo[key]
        return None if share is None else (share, min(self.config.peer_neighbours, len(self._peer_pool()[0])))

    def _new_users_score(self, user_rows: np.ndarray) -> np.ndarray:
        """Scores of users without events (rows of the vocabulary): the new-user blend at each one's time,
        with their peers where the user table describes them and ``new_user_w_peers`` is positive (one query:
        through :meth:`query_peers`, which its explanation reads again; a batch: searched together)."""
        rows = np.asarray(user_rows, dtype=np.int64)
        has = (
            self.has_attributes(rows) if self.config.new_user_w_peers > 0 else np.zeros(len(rows), dtype=bool)
        )
        if len(rows) == 1 and has[0]:
            found = self.query_peers(int(rows[0]), None)
            peers = None if found is None else found[0][None, :]
        else:
            peers = self.peer_scores(rows) if has.any() else None  # rows without attributes: 0, unused
        out = np.empty((len(rows), self.n_items), dtype=np.float32)
        for i, r in enumerate(rows):
            t = self._user_time(int(r))
            out[i] = (
                self.new_user_scores(t, peers[i]) if has[i] and peers is not None else self.new_user_scores(t)
            )
        return out

    # ---- new items -------------------------------------------------------------------------------
    def add_items(
        self, item_ids: Sequence[str], item_vectors: np.ndarray, *, items: pd.DataFrame | None = None
    ) -> None:
        """:meth:`Recommender.add_items`; the blend's registered parts get the items through their own
        ``add_items`` where they have a cold path (``scores_new_items``), each on a copy (a copy of this
        model may share the fitted parts); a part without one keeps its catalog and ranks the new items
        last (:func:`part_scores`) until the next fit."""
        super().add_items(item_ids, item_vectors, items=items)
        parts = [copy.copy(p) if p.scores_new_items else p for p in self.parts_]
        for p in parts:
            if p.scores_new_items:
                p.add_items(item_ids, item_vectors, items=items)
        self.parts_ = parts

    def _add_items(self, rows: np.ndarray, item_vectors: np.ndarray, items: pd.DataFrame | None) -> None:
        """New items through the model's own cold path, exactly as they would be scored had they been in
        the catalog (without events) at fit time: their content features from the fitted attribute
        layout, the popularity prior and the content map from the ridge models fitted on the warm items,
        their text neighbours among the warm items, release-date age; collaborative signals 0."""
        c = self.config
        n_old = len(self.prior_)
        n_new = max(int(rows.max()) + 1 - n_old, 0) if len(rows) else 0
        width = self.features_.shape[1] - self.vectors_.shape[1] - 1  # the attribute block
        attrs, release = np.zeros((len(rows), width), np.float32), np.full(len(rows), np.nan)
        if items is not None and self.layout_.width == width:
            attrs, release = self.layout_.transform(items)
        f = sig.content_features(item_vectors, attrs, c.attr_weight)
        z = sig.l2_rows(np.asarray(item_vectors, dtype=np.float32))
        nf = self.n_fitted
        block = sig.neighbours_among(
            z,
            self.vectors_[:nf],
            np.flatnonzero(self.warm_),
            c.prop_neighbours,
            np.where(rows < nf, rows, -1),
        )
        cached = self.__dict__.get("_catalog")
        self.__dict__.pop("_new_user_cache", None)  # the catalog changes: a new user's vector too
        self.__dict__.pop("_query_peers", None)  # and a query's peers' shares
        old_features = self.features_
        self.vectors_ = grown(self.vectors_, n_new, rows, z)
        self.features_ = grown(self.features_, n_new, rows, f)
        self.prior_ = grown(self.prior_, n_new, rows, (f @ self.prior_w_).astype(np.float32))
        self.release_ = grown(self.release_, n_new, rows, release, fill=np.nan)
        if np.array_equal(rows, np.arange(n_old, n_old + n_new)):  # the common case: appended rows
            nb = grown_rows(self.neighbours_, block.astype(np.float32, copy=False))
        else:
            empty = sp.csr_matrix((n_new, nf), dtype=np.float32)
            lil = sp.vstack([self.neighbours_, empty], format="csr").tolil()
            for j, r in enumerate(rows):
                lil.rows[r] = list(block.indices[block.indptr[j] : block.indptr[j + 1]])
                lil.data[r] = list(block.data[block.indptr[j] : block.indptr[j + 1]])
            nb = lil.tocsr()
        self.neighbours_ = nb.astype(np.float32, copy=False)
        if cached is not None and cached[0] is old_features:  # a built retrieval index follows the catalog
            self.__dict__["_catalog"] = (self.features_, cached[1].extended(self, rows, old_features))

    # ---- persistence ---------------------------------------------------------------------------
    state = (
        "ease_",
        "ease_items_",
        "time_counts_",
        "user_time_",
        "release_",
        "age_rates_",
        "features_",
        "map_inv_",
        "prior_",
        "prior_w_",
        "warm_",
        "vectors_",
        "trans_",
        "neighbours_",
        "t0_",
        "bin_seconds_",
        "layout_",
        "user_attr_",
        "user_layout_",
        "parts_",
    )
    #: hyperparameters used only when scoring: ``with_scoring`` changes them on a fitted model, no refit
    scoring_options = frozenset(SCORING_PARAMS)

    #: saved by an older version without them: derived on load (``_reset_caches``)
    optional_state = frozenset({"map_inv_", "user_attr_", "user_layout_"})

    def _encode_state(self, field: str, value: Any) -> Any:
        if field in ("layout_", "user_layout_"):
            return value.to_json()
        if field == "warm_":
            return np.asarray(value, dtype=np.uint8)
        return value

    def _decode_state(self, field: str, value: Any) -> Any:
        if field in GROWN_ONLINE and value is not None:  # loaded with spare rows: online adds write in place
            return with_headroom(value)
        if field == "neighbours_" and value is not None:  # the same for the text-neighbour lists' arrays
            return csr_with_headroom(value)
        if field in ("layout_", "user_layout_"):  # None: saved before it was kept (no attributes)
            return sig.AttributeLayout(value or [])
        if field == "warm_" and value is not None:
            return np.asarray(value, dtype=bool)
        if field == "time_counts_" and value is not None and not sp.issparse(value):
            return sp.csr_matrix(value)  # saved dense (format 1)
        return value

    def _reset_caches(self) -> None:
        """Fills what a model saved by an older version lacks (format 1: no prior weights, warm mask or EASE
        item list; before this version: the content map's ``(n_items, p)`` operator instead of its ``p x p``
        ridge inverse): each follows exactly from the rest. A new user's kept vectors are dropped (a copy made
        by ``with_scoring`` may score them with other weights)."""
        self.__dict__.pop("_new_user_cache", None)
        for cache in _PEER_CACHES:
            self.__dict__.pop(cache, None)
        if getattr(self, "ease_items_", None) is None and getattr(self, "ease_", None) is not None:
            self.ease_items_ = np.arange(len(self.ease_), dtype=np.int64)
        if getattr(self, "warm_", None) is None and getattr(self, "features_", None) is not None:
            # the items with training events: every one is in some user's training history
            warm = np.zeros(len(self.features_), dtype=bool)
            for rows in (self.seen_ or {}).values():
                warm[rows[rows < len(warm)]] = True
            self.warm_ = warm
        if getattr(self, "map_inv_", None) is None and getattr(self, "features_", None) is not None:
            nf = len(self.warm_)
            self.map_inv_ = sig.content_ridge(
                self.features_[:nf], np.flatnonzero(self.warm_), self.config.map_lambda
            )[0]
        if getattr(self, "parts_", None) is None:
            self.parts_ = []  # format 1: no registered parts
        if getattr(self, "prior_w_", None) is None and getattr(self, "features_", None) is not None:
            f, y = self.features_.astype(np.float64), self.prior_.astype(np.float64)
            self.prior_w_ = np.linalg.lstsq(f, y, rcond=None)[0].astype(np.float32)


def _pad(scores: np.ndarray, n: int) -> np.ndarray:
    """``(u, m)`` scores with zero columns appended up to ``n`` (items added after fitting)."""
    if scores.shape[1] >= n:
        return scores
    return np.hstack([scores, np.zeros((scores.shape[0], n - scores.shape[1]), dtype=scores.dtype)])


def part_scores(scores: np.ndarray, n_items: int) -> np.ndarray:
    """A blend part's scores ``(..., m)`` over the whole catalog of ``n_items`` (before z-normalising):
    items it cannot score (NaN, -inf, or added after its fit, by a part without a cold path: columns
    beyond ``m``) take each row's lowest score."""
    s = np.asarray(scores, dtype=np.float32)
    finite = np.isfinite(s)
    low = np.where(finite, s, np.inf).min(axis=-1, keepdims=True)
    low = np.where(np.isfinite(low), low, 0.0).astype(np.float32)
    s = np.where(finite, s, low)
    if s.shape[-1] < n_items:
        s = np.concatenate([s, np.repeat(low, n_items - s.shape[-1], axis=-1)], axis=-1)
    return s


def _part_history(part: Recommender, seq: np.ndarray, timestamps: np.ndarray | None) -> np.ndarray:
    """A part's scores for a history; items beyond the part's catalog (added after its fit to a part
    without a cold path) are left out of the history it sees."""
    known = seq < part.n_items
    if not known.all():
        seq = seq[known]
        timestamps = None if timestamps is None else np.asarray(timestamps)[known]
    return part._score_history(seq, timestamps)


def fit_part(part: BlendPart, dataset: Dataset, item_vectors: np.ndarray | None) -> Recommender:
    """Fits a blend part: the registered model with its config (item vectors when it wants them)."""
    from tokrec.models.base import wants_item_vectors
    from tokrec.models.registry import create_model

    model = create_model(part.model, part.config)
    model.fit(dataset, item_vectors if wants_item_vectors(model) else None)
    return model


__all__ = ["SIGNALS", "BlendPart", "TokrecConfig", "TokrecHybrid", "fit_part", "part_scores"]
