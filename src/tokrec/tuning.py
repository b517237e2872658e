"""Choosing a model's configuration on a validation split cut from the user's own training log.

The recommended model (``tokrec``) and the classical baselines are tuned by the same procedure on the
same validation split, so that comparisons between them are fair:

1. **Validation split** (:func:`make_validation`): cut from the training log the way the benchmark cuts
   test — each user's last event by time (ties by item id; users with one event stay in train), or, when
   the task ranks new items (``cold=True``), 20% of the items with events become pseudo-new items and
   the candidates. Test events are never an input: every function here takes the training log only.
   At most ``max_users`` validation users (a seeded draw) keep the score matrices small.
2. **Each signal alone** (``tokrec`` only): first every signal once with the current choice (the least
   a weighted blend needs), then every signal's hyperparameters by a coordinate search over a short grid
   (scoring-time values first, rounds until one changes nothing, at most three). The search holds ONE
   model fitted on the validation train and refits only the pieces a value changes
   (:meth:`~tokrec.models.recommended.TokrecHybrid.refitted`): a new EASE lambda refits EASE alone, and
   that one EASE fit serves both ``ease`` and ``prop``; half-lives and decays only rescore. Each
   setting's validation score matrix is computed once, z-normalised and kept for the best setting only.
   A signal whose scores are constant for every user (no timestamps, no release dates, no text, no user
   with two events) is reported unavailable and left out.
3. **Blend weights** by Optuna's TPE sampler (seeded) over the cached matrices: each trial is a weighted
   sum and one NDCG@10, no refit, on a seeded sample of the validation users when users x ranked items
   exceeds :data:`WEIGHT_CELLS` (about 1,000 users on 12,000 items; every user on MovieLens 100K; the
   chosen weights are then scored on every validation user). The shipped weights, equal weights and every
   single signal are enqueued as the first trials; then weights that validation does not need are
   switched off one by one (kept off when NDCG does not drop).
4. **The guarantee**: the chosen blend's validation NDCG@10 is never below the best single signal's;
   if it were, the best single signal is chosen.
5. The caller refits on the whole log with the chosen configuration (:func:`fit_tuned`).

Before all of these, **the new-user blend** (:func:`tune_new_users`): a user without events has none of the
history signals, and is ranked by its own blend of time-aware popularity, item age and the content prior
(``new_user_*``). Its weights and the time signal's bandwidth are chosen on a second split of the same log,
20% of the users held out whole (the ``cold-user`` protocol) and ranked from an empty history (on a new-item task,
the new-item split's pseudo-new items, which popularity cannot order); one cheap fit, skipped on logs where its
estimate exceeds a tenth of the budget.

Registered models may join the blend as parts (``parts``), each fitted on the same validation split once every
signal has its validation score (the guarantee needs those; a part is an extra, and a part the time left cannot
pay for is skipped and listed) and weighed like a signal. The sequential model ``text-sasrec`` is time-bounded
(:data:`TIME_BOUNDED_PARTS`): one network trained for a share of the budget (at most what is left beside the
weight search's share) on the validation split's training events, then reused by
:func:`fit_tuned` with each user's whole history as input instead of trained again; with ``parts="auto"``
(the commands' default) it joins on leave-last-out tasks when the budget is large enough (120 s) and the log
small enough (:func:`auto_parts`). Asked for on a new-item task, it trains with the options chosen for new
items (:data:`NEW_ITEM_PART_CONFIG`) and is fitted again on the whole log, since the validation network never
saw the pseudo-new items' events.

The baselines (``ease`` with or without recency weighting, ``als``, ``bpr``, ``itemknn``) are tuned by
Optuna over a small search space each (:data:`BASELINE_SPACES`), their registry defaults enqueued first.

Why hand-written: Optuna does the search; what is tokrec's own is the caching of per-signal validation
matrices (a blend trial costs one weighted sum instead of a refit), the piecewise refits, and the checks of
what the data can support.

**The budget** (``budget_s``, ``--tune-budget``) bounds the tuning, not the final fit on the whole log. Every
costly step (a fit of a piece, a signal's scoring, a weight trial, a baseline's trial) starts only when the
time left pays for its estimate (what the same kind of step took last; a step of a kind not yet run starts
whenever time is left), so the tuning ends within the budget or overruns it by the one step during which it
ran out (``overrun``; the table says which and by how much). What the budget cannot pay for is skipped and
listed (``skipped``, printed in the table). The per-signal search stops where the weight search's share
begins (the cost of ``weight_trials`` trials, at most :data:`WEIGHT_SHARE` of the budget). A budget that
cannot pay for scoring every signal once (0, or less than one EASE fit on a large catalog) keeps the
shipped defaults and says so; a baseline's first trial (its registry defaults) runs whenever the budget is
positive. ``budget_hit`` says that the budget decided something: a faster machine may choose differently.
"""

from __future__ import annotations

import copy
import json
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp

from tokrec.data.dataset import Dataset, ids_in
from tokrec.errors import ConfigError, DataError
from tokrec.evaluation.metrics import ndcg_from_scores, ndcg_per_user_from_scores, paired_difference
from tokrec.evaluation.splits import Split, cold_item_split, cold_user_split, leave_last_out
from tokrec.models import registry
from tokrec.models.base import wants_item_vectors
from tokrec.models.cross_encoder import BLEND_WEIGHTS
from tokrec.models.recommended import (
    COLLAB_SIGNALS,
    LM_SIGNALS,
    NEW_USER_SIGNALS,
    ORDER_SIGNALS,
    PIECE_PARAMS,
    SCORING_PARAMS,
    SIGNAL_PIECES,
    SIGNALS,
    TokrecConfig,
    TokrecHybrid,
)

log = logging.getLogger(__name__)

#: a half-life this long weighs every past event the same (recency off)
NO_RECENCY = 1e9
#: default cap on validation users (a seeded draw when there are more)
MAX_USERS = 3000
#: bytes the cached validation matrices may take together (fewer users on a large catalog), and the
#: fewest users scored whatever the catalog
MATRIX_BYTES = 2 * 2**30
MIN_USERS = 100
#: the weight search scores at most this many (user x ranked item) cells a trial: a seeded sample of the
#: validation users on a large catalog (ml-100k: every user; 12,000 items: about 1,000 users); the chosen
#: weights are then scored on every validation user, as the signals alone are
WEIGHT_CELLS = 12_000_000
#: the share of the budget kept for the weight search at most (less when its trials cost less)
WEIGHT_SHARE = 0.25
#: the file ``tokrec fit`` writes next to the model
TUNING_FILE = "tuning.json"

#: each signal's hyperparameters and the values the coordinate search tries, in search order
SIGNAL_GRID: dict[str, list[tuple[str, list[Any]]]] = {
    "ease": [
        ("ease_lambda", [100.0, 300.0, 1000.0, 3000.0]),
        ("ease_half_life", [1.0, 2.0, 4.0, 8.0, NO_RECENCY]),
    ],
    "trans": [
        ("trans_window", [1, 3, 8]),
        ("trans_last", [1, 3, 10, 20]),
        ("trans_decay", [0.3, 0.5, 0.7]),
    ],
    "time": [("time_bandwidth_bins", [1.0, 3.0, 10.0, 30.0])],
    "age": [],
    "map": [("map_lambda", [1.0, 3.0, 10.0, 30.0]), ("attr_weight", [0.0, 0.3, 1.0])],
    "prop": [("prop_neighbours", [10, 20, 50, 100])],
    "prior": [],
    "profile": [("profile_half_life", [2.0, 10.0, NO_RECENCY])],
}


#: registered models the tuner trains within its budget when they join the blend, with the configuration
#: it trains them with: text-sasrec as ONE network (no seed ensemble), trained on the validation split's
#: training events (each user's last event held out) with early stopping on its own last training event
#: and no refit, at a higher learning rate and smaller batches than its defaults so that it converges in
#: tens of epochs instead of hundreds (chosen on ml-100k's validation split: BENCHMARKS.md). Its
#: ``max_seconds`` is PART_SHARE of the tuning budget, at most what is left once every signal is scored (less the
#: weight search's WEIGHT_SHARE); :func:`fit_tuned` reuses the network it trained.
TIME_BOUNDED_PARTS: dict[str, dict[str, Any]] = {
    "text-sasrec": {"refit": "none", "refit_seeds": 1, "lr": 5e-3, "batch_size": 64, "patience": 3},
}
#: on a log that never repeats a (user, item) pair a time-bounded part also takes these: text-sasrec leaves each
#: user's earlier items out of its training softmax, as the ranking leaves them out (ml-100k: the default
#: command's test NDCG@10 0.1120 -> 0.1200; BENCHMARKS.md, "Earlier items out of the softmax"); where users
#: come back to items, their earlier items are what may come next, and the option stays off
NO_REPEAT_PART_CONFIG: dict[str, dict[str, Any]] = {"text-sasrec": {"mask_history": True}}
#: on a next-item task whose budget gives a time-bounded part at least this many seconds, it also takes
#: ENSEMBLE_PART_CONFIG: text-sasrec as two networks (seeds s, s+1; each its own validation run, side by side on
#: CPU, their scores averaged). On ml-100k two networks need about 120 s to reach their early stops on 2 cores;
#: given only the default budget's 84 s they stop short and score below one network (test 0.1191 against
#: 0.1200), given 280 s (`--tune-budget 400`) they score 0.1245 in 148 s end to end (BENCHMARKS.md)
ENSEMBLE_PART_SECONDS = 150.0
ENSEMBLE_PART_CONFIG: dict[str, dict[str, Any]] = {"text-sasrec": {"refit_seeds": 2}}
#: on a new-item task (``--candidates`` of items without events) a time-bounded part is trained for that task
#: instead: text-sasrec with the options chosen on ml-100k's cold-item validation split (BENCHMARKS.md, "Cold"):
#: each position trained on one of its next 10 events and new items scored by the uniform mixture over every
#: prefix of the history ("what fits anywhere", not "what comes next"), no ID dropout
NEW_ITEM_PART_CONFIG: dict[str, dict[str, Any]] = {
    "text-sasrec": {"target_window": 10, "score_half_life": 1e9, "id_dropout": 0.0},
}
#: the share of the tuning budget a time-bounded part may train for; the signals' search gets the rest
#: (on ml-100k it needs about 30 s of the default 120 s)
PART_SHARE = 0.7
#: a part the time left would give fewer seconds than this is not fitted (and the table says so)
MIN_PART_SECONDS = 5.0
#: ``parts="auto"`` (the commands' default): text-sasrec joins on a leave-last-out task when the budget is
#: at least AUTO_MIN_BUDGET seconds (the default 120 s: at 70% it gets 84 s, in which it reached its early stop on
#: ml-100k on a 2-core CPU, 0.1178 on test in 92 s end to end; on a slower or busy machine it gets fewer epochs and
#: validation gives it less weight or none) and an
#: epoch is small (events x items at most AUTO_MAX_WORK: about three times ml-100k's 1.7e8, a few seconds an
#: epoch on two cores), so that a large log never waits on it
AUTO_PARTS = ("text-sasrec",)
AUTO_MIN_BUDGET = 120.0
AUTO_MAX_WORK = 5e8


# ---- the validation split ----------------------------------------------------------------------
@dataclass
class Validation:
    """A validation split as matrices: the users scored, what they had, what they must find."""

    split: Split
    users: np.ndarray  # user rows of split.train scored (at most max_users)
    seen: sp.csr_matrix  # (len(users), n_items) the users' training items
    rel: sp.csr_matrix  # (len(users), n_items) held-out items
    cols: np.ndarray | None  # candidate item rows (cold), None = the whole catalog
    #: the log the split was cut from (:func:`fit_tuned` reuses what was trained on the split for it)
    source: Dataset | None = None

    @property
    def train(self) -> Dataset:
        return self.split.train

    @property
    def user_ids(self) -> list[str]:
        return self.train.user_vocab.decode(self.users)

    def restrict(self, full: np.ndarray) -> np.ndarray:
        """Full-catalog scores ``(len(users), n_items)`` -> the columns ranked (candidates when cold)."""
        return full if self.cols is None else full[:, self.cols]

    def ndcg(self, scores: np.ndarray, k: int = 10) -> float:
        """Mean NDCG@k of restricted scores (seen items and non-candidates never count)."""
        return ndcg_from_scores(scores, *self._ranked(), k=k)

    def ndcg_users(self, scores: np.ndarray, k: int = 10) -> np.ndarray:
        """NDCG@k of each validation user with a held-out item (in row order): :meth:`ndcg`'s terms."""
        return ndcg_per_user_from_scores(scores, *self._ranked(), k=k)

    def _ranked(self) -> tuple[sp.csr_matrix, sp.csr_matrix]:
        """``(rel, seen)`` over the columns ranked (candidates when cold)."""
        if self.cols is None:
            return self.rel, self.seen
        return self.rel[:, self.cols], self.seen[:, self.cols]

    def summary(self) -> dict[str, Any]:
        given = self.split.params.get("items")  # cold_item_split(items=...): the encoder's held-out items
        return {
            "protocol": self.split.protocol
            + (f" on the {given} items the encoder was fine-tuned without" if given else ""),
            "train_events": len(self.train),
            "held_out_events": len(self.split.test),
            "users_scored": len(self.users),
            "candidates": None if self.cols is None else len(self.cols),
        }


def make_validation(
    train: Dataset,
    *,
    cold: bool = False,
    seed: int = 0,
    max_users: int = MAX_USERS,
    cold_items: Sequence[str] | None = None,
) -> Validation:
    """Cuts the validation split from ``train`` (the training log only; see the module docstring).

    ``cold_items`` (with ``cold``): the pseudo-new items are these instead of a seeded 20% draw: the items a
    behaviour-tuned encoder was fine-tuned without (:func:`tokrec.encoders.finetuned_without`), so that its
    text signals are scored on items it never learnt from, as they will be on real new items."""
    split = None
    if cold and cold_items is not None:
        try:
            split = cold_item_split(train, items=cold_items)
        except ConfigError:  # none of them (or all) in this log: the seeded draw, as the summary then says
            split = None
    if split is None:
        try:
            split = cold_item_split(train, fraction=0.2, seed=seed) if cold else leave_last_out(train)
        except DataError as e:  # e.g. one event per user: nothing to validate on
            raise DataError(
                f"the tuning step cuts a validation split from the training log, and cannot here: {e}; "
                "--no-tune fits the shipped configuration without one"
            ) from None
    vt = split.train
    # the search keeps a (users x items) float32 matrix per signal: bound them together by MATRIX_BYTES
    max_users = min(max_users, max(MIN_USERS, MATRIX_BYTES // (4 * (len(SIGNALS) + 2) * max(vt.n_items, 1))))
    rel_all, users = _held_out(split, max_users, seed)
    seen = vt.interaction_matrix()[users].tocsr()
    cols = None
    if cold:
        assert split.candidates is not None
        cols = vt.item_vocab.encode(split.candidates)
    return Validation(split, users, seen, rel_all[users].tocsr(), cols, train)


def _held_out(split: Split, max_users: int, seed: int) -> tuple[sp.csr_matrix, np.ndarray]:
    """A split's held-out events as a ``(users, items)`` 0/1 matrix over its training vocabularies, and the user
    rows with some (a seeded draw of ``max_users`` when there are more), sorted."""
    vt = split.train
    u = vt.user_vocab.encode(split.test.interactions["user_id"])
    i = vt.item_vocab.encode(split.test.interactions["item_id"])
    rel = sp.csr_matrix((np.ones(len(u), dtype=np.float32), (u, i)), shape=(vt.n_users, vt.n_items))
    rel.data[:] = 1.0
    users = np.flatnonzero(np.diff(rel.indptr) > 0)
    if len(users) > max_users:
        users = np.sort(np.random.default_rng(seed).choice(users, size=max_users, replace=False))
    return rel, users


# ---- new users ---------------------------------------------------------------------------------------
#: the share of the log's users held out whole as pseudo-new users (as ``evaluate --protocol cold-user``)
NEW_USER_SHARE = 0.2
#: the new-user blend's search: the time signal's bandwidths (time bins; NO_RECENCY: the whole log, plain
#: popularity), then the weights of age and prior beside time's 1 or 0
NEW_USER_BANDWIDTHS = (1.0, 3.0, 10.0, 30.0, 100.0, NO_RECENCY)
NEW_USER_WEIGHTS = (0.0, 0.1, 0.25, 0.5, 1.0, 2.0)
#: the peers signal (a user table's attributes): the neighbour counts tried, then its weight beside the rest
PEER_NEIGHBOURS = (25, 50, 100, 200, 400)
#: a peers weight that ranks by the peers alone, the rest breaking their ties (z-scores differ by far less)
PEERS_FIRST = 1000.0
PEER_WEIGHTS = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, PEERS_FIRST)
#: the tuner runs :func:`tune_new_users` when its cost, estimated at NEW_USER_SECONDS_PER_EVENT per event of the
#: log (measured: 4 us on ml-100k, 7 us at 2.25M events on 2 cores), is at most this share of the budget
NEW_USER_BUDGET_SHARE = 0.1
NEW_USER_SECONDS_PER_EVENT = 1e-5


def tune_new_users(
    log: Dataset,
    item_vectors: np.ndarray,
    params: dict[str, Any],
    *,
    seed: int = 0,
    max_users: int = MAX_USERS,
    new_items: Validation | None = None,
) -> dict[str, Any] | None:
    """Chooses the blend a user without events gets (``new_user_*``) on pseudo-new users.

    :data:`NEW_USER_SHARE` of the users of ``log`` (a seeded draw, the ``cold-user`` split of
    :func:`~tokrec.evaluation.splits.cold_user_split`) are held out with all their events (at most
    ``max_users`` of them scored); the pieces the new-user blend reads (time statistics, item ages, the content
    prior, with ``params``) are fitted on the other users' events, and each held-out user ranks the catalog
    from an empty history at the last time of that log, as the fitted model ranks a user without events
    (:meth:`~tokrec.models.recommended.TokrecHybrid.new_user_scores`). The search: the time signal's bandwidth
    alone (:data:`NEW_USER_BANDWIDTHS`), then every weight of age and prior in :data:`NEW_USER_WEIGHTS` beside
    time at 1 or 0. Each signal alone is a point of that grid, so the choice is never below the best single
    signal on this split; of equal scores the first in the grid's order (fewest signals) is kept. When the log
    comes with a user table (``Dataset.users``) that describes the held-out users, the ``peers`` signal
    (:meth:`~tokrec.models.recommended.TokrecHybrid.peer_scores`) is then added: its neighbour count alone
    (:data:`PEER_NEIGHBOURS`), then its weight beside the chosen blend (:data:`PEER_WEIGHTS`; the last,
    ``PEERS_FIRST``, ranks by the peers and breaks their ties by the rest), then the peers alone (users the table
    does not describe then get popularity), kept only where it raises validation NDCG: the guarantee holds for the
    peers too.

    ``new_items``: the task ranks new items (the tuner's cold-item validation split): the split is that one
    instead, its pseudo-new items ranked for its users as if they had no history (the time signal, 0 for
    items without events, cannot order them; age and the prior can).

    Returns:
        The report (``"weights"``, ``"bandwidth_bins"``, ``"ndcg"``, ``"alone"``, ``"shipped"``, ...), or None
        when the log cannot be split so (too few users).
    """
    t0 = time.perf_counter()
    cols: np.ndarray | None = None
    if new_items is not None and new_items.cols is not None:
        train, users, rel, cols = new_items.train, new_items.users, new_items.rel, new_items.cols
        rel = rel[:, cols].tocsr()
        protocol = "cold-item: the validation's new items ranked for its users as if they had no history"
    else:
        try:
            split = cold_user_split(log, fraction=NEW_USER_SHARE, seed=seed)
        except (ConfigError, DataError):
            return None
        train = split.train
        rel_all, users = _held_out(split, max_users, seed)
        rel = rel_all[users].tocsr()
        protocol = f"cold-user: {NEW_USER_SHARE:.0%} of the users held out whole, ranked with no history"
    if not len(users) or not len(train):
        return None
    only_time = {**params, **{f"w_{s}": 0.0 for s in SIGNALS}, "w_time": 1.0, "parts": []}
    model = TokrecHybrid(TokrecConfig.model_validate(only_time)).fit(train, item_vectors)
    t = int(model.user_time_.max())

    def ndcg(raw: dict[str, np.ndarray], w: dict[str, float]) -> float:
        scores = model.blend(raw, w)
        return ndcg_from_scores(scores if cols is None else scores[:, cols], rel)

    def ndcg_users(raw: dict[str, np.ndarray], w: dict[str, float]) -> np.ndarray:
        scores = model.blend(raw, w)
        return ndcg_per_user_from_scores(scores if cols is None else scores[:, cols], rel)

    raw = model.new_user_signals(t, NO_RECENCY)
    by_bandwidth = {}
    for b in NEW_USER_BANDWIDTHS:
        time_b = model.new_user_signals(t, b)["time"]
        by_bandwidth[b] = (ndcg({"time": time_b}, {"time": 1.0}), time_b)
    # of equal scores the widest (the last: plain popularity), which assumes least about the query time
    bandwidth = max(NEW_USER_BANDWIDTHS, key=lambda b: (by_bandwidth[b][0], NEW_USER_BANDWIDTHS.index(b)))
    raw["time"] = by_bandwidth[bandwidth][1]
    usable = [
        s
        for s in NEW_USER_SIGNALS
        if s in raw and np.ptp(raw[s] if cols is None else raw[s][:, cols]) > 1e-12
    ]
    alone = {
        s: ndcg({s: raw[s]}, {s: 1.0}) if s in usable else None for s in NEW_USER_SIGNALS if s != "peers"
    }
    grid = [
        {"time": wt, "age": wa, "prior": wp, "peers": 0.0}
        for wt in (1.0, 0.0)
        for wa in NEW_USER_WEIGHTS
        for wp in NEW_USER_WEIGHTS
        if wt + wa + wp > 0
    ]
    grid = [w for w in grid if all(w[s] == 0 or s in usable for s in NEW_USER_SIGNALS)] or [
        {"time": 1.0, "age": 0.0, "prior": 0.0, "peers": 0.0}
    ]
    grid.sort(key=lambda w: sum(v > 0 for v in w.values()))  # stable: fewest signals first
    best_w, best = grid[0], -1.0
    for w in grid:
        score = ndcg(raw, w)
        if score > best + 1e-9:
            best_w, best = w, score
    shipped = TokrecConfig.model_validate(params)
    neighbours = shipped.peer_neighbours
    has = model.has_attributes(users) if cols is None else np.zeros(0, dtype=bool)
    if has.any():  # the user table describes held-out users: their peers, alone, then beside the blend
        shared = {s: np.repeat(v, len(users), axis=0) for s, v in raw.items()}
        by_k = {
            n: (ndcg({"peers": peers}, {"peers": 1.0}), peers)
            for n, peers in model.peer_scores_by_count(users, PEER_NEIGHBOURS).items()
        }
        neighbours = max(PEER_NEIGHBOURS, key=lambda n: (by_k[n][0], -PEER_NEIGHBOURS.index(n)))
        alone["peers"], shared["peers"] = by_k[neighbours]
        base = best_w
        alone_w = {
            "time": 0.0,
            "age": 0.0,
            "prior": 0.0,
            "peers": 1.0,
        }  # last: of equal scores, a blend is kept
        for w in [{**base, "peers": wp} for wp in PEER_WEIGHTS] + [alone_w]:
            score = ndcg(shared, w)
            if score > best + 1e-9:
                best_w, best = w, score
    # the choice against plain popularity on the same held-out users (where popularity can rank them)
    vs_popularity = None
    if cols is None and "time" in usable:
        chosen_raw = shared if has.any() else raw
        popular = {"time": by_bandwidth[NO_RECENCY][1]}
        vs_popularity = paired_difference(
            ndcg_users(chosen_raw, best_w), ndcg_users(popular, {"time": 1.0}), seed=seed
        )
    shipped_w = {s: float(getattr(shipped, f"new_user_w_{s}")) for s in NEW_USER_SIGNALS}
    shipped_raw = {**raw, "time": model.new_user_signals(t, shipped.new_user_bandwidth_bins)["time"]}
    if has.any() and shipped_w["peers"] > 0:  # a configuration given with peers: scored with its own count
        shipped_raw = {s: np.repeat(v, len(users), axis=0) for s, v in shipped_raw.items()}
        shipped_raw["peers"] = model.peer_scores(users, shipped.peer_neighbours)
    return {
        "protocol": protocol,
        "users_scored": int(len(users)),
        "train_events": int(len(train)),
        "weights": best_w,
        "bandwidth_bins": bandwidth,
        "peer_neighbours": neighbours,
        "ndcg": best,
        # a blend of signals that are constant on the ranked items only ties them (its figure is the tie-break's)
        "alone": {**alone, "popularity": by_bandwidth[NO_RECENCY][0] if "time" in usable else None},
        "shipped": ndcg(shipped_raw, shipped_w) if any(shipped_w[s] for s in usable) else None,
        # the chosen blend minus plain popularity, user by user (metrics.paired_difference); None: not rankable
        "vs_popularity": vs_popularity,
        "seconds": round(time.perf_counter() - t0, 2),
    }


def new_user_config(report: dict[str, Any]) -> dict[str, Any]:
    """The ``new_user_*`` config fields of a :func:`tune_new_users` report."""
    return {
        **{f"new_user_w_{s}": float(report["weights"].get(s, 0.0)) for s in NEW_USER_SIGNALS},
        "new_user_bandwidth_bins": float(report["bandwidth_bins"]),
        **({"peer_neighbours": int(report["peer_neighbours"])} if "peer_neighbours" in report else {}),
    }


# ---- what the data supports ----------------------------------------------------------------------
def has_repeats(log: Dataset) -> bool:
    """Whether some user has the same item more than once in ``log``."""
    key = log.user_idx.astype(np.int64) * max(log.n_items, 1) + log.item_idx
    return len(np.unique(key)) < len(key)


def data_checks(train: Dataset, item_vectors: np.ndarray | None) -> dict[str, Any]:
    """What the log can support: timestamps, text, users with more than one event (for the report)."""
    ts = train.interactions["timestamp"].to_numpy(dtype=np.int64)
    span_days = float((ts.max() - ts.min()) / 86400.0) if len(ts) else 0.0
    per_user = train.interactions.groupby("user_id", sort=False).size()
    text = bool(train.item_text_columns())
    if item_vectors is not None and len(item_vectors) > 1:
        text = text and float(np.asarray(item_vectors, dtype=np.float64).std(axis=0).max()) > 1e-6
    notes = []
    if span_days < 1.0:
        notes.append(
            "timestamps span less than a day (or are event positions): the time signal is plain popularity"
        )
    if not text:
        notes.append("no item text: the language-model signals are off")
    if len(per_user) and float((per_user > 1).mean()) == 0.0:
        notes.append("every user has one event: nothing to validate on, nor any order to learn")
    return {
        "timestamps_span_days": round(span_days, 2),
        "item_text": text,
        "users_with_two_or_more_events": round(float((per_user > 1).mean()) if len(per_user) else 0.0, 4),
        "notes": notes,
    }


# ---- the result --------------------------------------------------------------------------------
@dataclass
class SignalReport:
    signal: str
    available: bool
    alone_ndcg: float | None
    weight: float
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class TuneResult:
    """What the tuner chose and why (``to_json`` is what ``tuning.json`` holds)."""

    model: str
    config: dict[str, Any]
    val_ndcg: float
    validation: dict[str, Any]
    seconds: float
    seed: int
    budget_s: float
    choice: str = "blend"
    signals: list[SignalReport] = field(default_factory=list)
    ablation: dict[str, float] = field(default_factory=dict)
    #: per ablation: the blend minus it over the same validation users, with the paired 95% bootstrap interval
    #: (:func:`tokrec.evaluation.metrics.paired_difference`): whether those signals' help is resolved on this log
    ablation_paired: dict[str, dict[str, Any]] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    trials: int = 0
    budget_hit: bool = False
    #: the steps the budget could not pay for (not run), in order
    skipped: list[str] = field(default_factory=list)
    #: the step during which the budget ran out (the one step that may overrun it), None: it never did
    overrun: str | None = None
    #: the new-user blend's choice (:func:`tune_new_users`'s report; empty: not tuned)
    new_users: dict[str, Any] = field(default_factory=dict)
    #: the models the tuner fitted on its validation split for the weighted parts of ``config["parts"]``, in
    #: order, and the log that split was cut from (None: unknown); :func:`fit_tuned` reuses them; not saved
    fitted_parts: list[Any] = field(default_factory=list, repr=False, compare=False)
    fitted_on: Any = field(default=None, repr=False, compare=False)

    def to_json(self) -> dict[str, Any]:
        out = copy.deepcopy({f.name: getattr(self, f.name) for f in fields(self) if f.name not in _NOT_SAVED})
        out["signals"] = [asdict(s) for s in self.signals]
        out["val_ndcg"] = round(self.val_ndcg, 5)
        out["seconds"] = round(self.seconds, 1)
        return out

    def table(self) -> str:
        """One short table: each signal's validation NDCG@10 alone, its weight, the blend, the ablation."""
        users = f"{self.validation.get('users_scored')} users"
        if self.validation.get("weight_search_users"):
            users += f" ({self.validation['weight_search_users']} for the weights)"
        budget = f"tuned in {self.seconds:.0f}s of a {self.budget_s:g}s budget, {self.trials} trials"
        if self.seconds > self.budget_s and self.overrun:
            budget += f"; over by {self.seconds - self.budget_s:.0f}s in one step: {self.overrun}"
        elif self.budget_hit:
            budget += ", budget reached"
        lines = [
            f"{self.model}: validation NDCG@10 {self.val_ndcg:.4f} ({self.choice}; "
            f"{self.validation.get('protocol')}, {users}; {budget})"
        ]
        if self.signals:
            lines.append(f"  {'signal':8s} {'alone':>7s} {'weight':>7s}  params")
            for s in self.signals:
                alone = "n/a" if s.alone_ndcg is None else f"{s.alone_ndcg:.4f}"
                params = ", ".join(f"{k}={_fmt(v)}" for k, v in s.params.items())
                if not s.available:
                    params = "unavailable on this data"
                lines.append(f"  {s.signal:8s} {alone:>7s} {s.weight:7.3f}  {params}")
        for name, v in self.ablation.items():
            c = self.ablation_paired.get(name)
            if c is None:
                lines.append(f"  {name}: {v:.4f}")
                continue
            lines.append(
                f"  {name}: {v:.4f} (the blend {c['diff']:+.4f} over it, 95% interval {c['ci_low']:+.4f} to "
                f"{c['ci_high']:+.4f}: {'resolved' if c['resolved'] else 'not resolved'})"
            )
        if self.new_users:
            lines.append(_new_users_line(self.new_users))
        if self.skipped:
            lines.append(f"  skipped (budget): {_grouped(self.skipped)}")
        for note in self.data.get("notes", []):
            lines.append(f"  note: {note}")
        return "\n".join(lines)


_NOT_SAVED = ("fitted_parts", "fitted_on")


def _new_users_line(nu: dict[str, Any]) -> str:
    """The table's line for the new-user blend: its validation NDCG@10, weights, and each signal alone."""
    w = ", ".join(f"{s} {v:g}" for s, v in nu["weights"].items() if s != "peers" or "peers" in nu["alone"])
    if "peers" in nu["alone"]:
        w += f" ({nu['peer_neighbours']} peers)"
    shipped = "shipped: ties every item" if nu["shipped"] is None else f"shipped {nu['shipped']:.4f}"
    alone = ", ".join(f"{s} {'n/a' if v is None else f'{v:.4f}'}" for s, v in nu["alone"].items())
    vs = nu.get("vs_popularity")
    if vs is not None and not np.isnan(vs["diff"]):
        vs_text = (
            f"; against popularity {vs['diff']:+.4f}, 95% interval {vs['ci_low']:+.4f} to {vs['ci_high']:+.4f}: "
            f"{'resolved' if vs['resolved'] else 'not resolved'}"
        )
    else:
        vs_text = ""
    return (
        f"  new users (no history; {nu['users_scored']} {_NEW_USER_WHO[nu['protocol'].split(':')[0]]}): "
        f"NDCG@10 {nu['ndcg']:.4f} "
        f"({shipped}) with {w}, time bandwidth {_bandwidth(float(nu['bandwidth_bins']))}; "
        f"alone: {alone}{vs_text}"
    )


_NEW_USER_WHO = {"cold-user": "held out whole", "cold-item": "ranking the new items"}


def _bandwidth(bins: float) -> str:
    return "the whole log" if bins >= NO_RECENCY else f"{bins:g} bins"


def _grouped(steps: list[str]) -> str:
    """``["ease ease_lambda=100", "ease ease_lambda=300", "ablation"]`` -> ``"ease ease_lambda=100, 300;
    ablation"`` (repeats once)."""
    groups: dict[str, list[str]] = {}
    for step in dict.fromkeys(steps):
        key, _, value = step.partition("=") if "=" in step else (step, "", "")
        groups.setdefault(key, []).append(value)
    return "; ".join(k + ("=" + ", ".join(v) if any(v) else "") for k, v in groups.items())


def _fmt(v: Any) -> str:
    if isinstance(v, float) and v >= NO_RECENCY:
        return "off"
    return f"{v:g}" if isinstance(v, float) else str(v)


def write_tuning(result: TuneResult | dict[str, Any], folder: str | Path) -> Path:
    """Writes ``tuning.json`` into ``folder`` atomically."""
    from tokrec.evaluation.report import atomic_write

    data = result.to_json() if isinstance(result, TuneResult) else result
    text = json.dumps(data, indent=1)
    return atomic_write(Path(folder) / TUNING_FILE, lambda tmp: tmp.write_text(text))


# ---- tuning the recommended model ----------------------------------------------------------------
class _Clock:
    """The tuning budget: seconds since the start by ``now`` (injectable: tests pass their own clock), and
    which step was running when the budget ran out (the one step that may overrun it)."""

    def __init__(self, budget_s: float, now: Callable[[], float] | None = None) -> None:
        self.now = now or time.perf_counter
        self.t0 = self.now()
        self.budget_s = budget_s
        self.crossed: str | None = None

    def elapsed(self) -> float:
        return self.now() - self.t0

    def left(self) -> float:
        return self.budget_s - self.elapsed()

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        """Times a costly step; the step during which the budget ran out is kept in ``crossed``."""
        before = self.left()
        yield
        if before > 0 >= self.left() and self.crossed is None:
            self.crossed = name


class _SignalScores:
    """The per-signal search's state: ONE model fitted on the validation train whose config holds the
    current choice (each signal scored so far with weight 1), refitted piece by piece
    (:meth:`~tokrec.models.recommended.TokrecHybrid.refitted`: a new EASE lambda refits EASE alone, which
    serves ``ease`` and ``prop``), and what each piece and each signal's scoring cost, for the estimates."""

    def __init__(self, val: Validation, vectors: np.ndarray, base: dict[str, Any], clock: _Clock) -> None:
        from tokrec.models import signals as sig

        self.val = val
        self.vectors = vectors
        self.base = base
        self.clock = clock
        self.model: TokrecHybrid | None = None
        self._znorm = sig.znorm_rows
        seqs = val.train.sequences()
        self.seqs = [seqs[int(u)] for u in val.users]
        #: seconds of the last fit of each piece, of each signal's scoring (+ its NDCG)
        self.piece_s: dict[str, float] = {}
        self.score_s: dict[str, float] = {}

    def _config(self, signal: str, params: dict[str, Any]) -> TokrecConfig:
        weights = {f"w_{s}": 0.0 for s in SIGNALS}
        if self.model is not None:
            weights.update({f"w_{s}": 1.0 for s in self.model._active()})
        return TokrecConfig.model_validate({**self.base, **params, **weights, f"w_{signal}": 1.0})

    def _pieces(self, cfg: TokrecConfig) -> set[str]:
        if self.model is None:  # the first fit: what every signal needs, then the signal's own pieces
            return {"time", "features", "parts"} | TokrecHybrid(cfg).needed_parts()
        return self.model.refit_pieces(cfg)

    def estimate(self, signal: str, params: dict[str, Any]) -> float:
        """Seconds :meth:`matrix` is expected to take (0 for what has not run yet: it may overrun)."""
        pieces = self._pieces(self._config(signal, params))
        return sum(self.piece_s.get(p, 0.0) for p in pieces) + self.score_s.get(signal, 0.0)

    def matrix(self, signal: str, params: dict[str, Any]) -> tuple[np.ndarray, float, TokrecHybrid]:
        """The signal's z-normalised, restricted validation matrix with ``params``, its NDCG@10, and the
        model that scored it (:meth:`accept` it to keep its pieces)."""
        cfg = self._config(signal, params)
        model = self.fitted(signal, params)
        t = self.clock.now()
        m = model.with_scoring(**{k: getattr(cfg, k) for k in SCORING_PARAMS})
        assert isinstance(m, TokrecHybrid)
        raw = m.signals(self.seqs, m.user_time_[self.val.users], (signal,))[signal]
        z = self.val.restrict(self._znorm(raw))
        score = self.val.ndcg(z)
        self.score_s[signal] = self.clock.now() - t
        return z, score, model

    def fitted(self, signal: str, params: dict[str, Any]) -> TokrecHybrid:
        """The current model refitted for ``signal`` with ``params`` (the pieces that changes, timed)."""
        cfg = self._config(signal, params)
        # first what every signal needs (the time signal needs nothing more), timed alone
        if self.model is None:
            t = self.clock.now()
            first = {**cfg.model_dump(), **{f"w_{s}": 0.0 for s in SIGNALS}, "w_time": 1.0}
            self.model = TokrecHybrid(TokrecConfig.model_validate(first)).fit(self.val.train, self.vectors)
            spent = self.clock.now() - t
            for p in self.model.needed_parts() | {"features", "parts"}:  # charged the whole: an upper bound
                self.piece_s[p] = spent
        pieces = self.model.refit_pieces(cfg)
        t = self.clock.now()
        changed = {k: v for k, v in cfg.model_dump().items() if getattr(self.model.config, k) != v}
        model = self.model.refitted(self.val.train, self.vectors, **changed) if changed else self.model
        if pieces:
            spent = self.clock.now() - t
            for p in pieces:  # several pieces in one fit: each is charged the whole (an upper bound)
                self.piece_s[p] = spent
        return model

    def accept(self, model: TokrecHybrid) -> None:
        self.model = model


def _constant(z: np.ndarray) -> bool:
    return not bool(np.any(z))


def _fit_params(signal: str) -> set[str]:
    """The hyperparameters a signal's fitted pieces depend on (its matrix is stale when one changes)."""
    return {k for p in SIGNAL_PIECES[signal] for k in PIECE_PARAMS.get(p, ())}


def tune_tokrec(
    train: Dataset | Validation,
    item_vectors: np.ndarray,
    *,
    cold: bool = False,
    budget_s: float = 120.0,
    seed: int = 0,
    max_users: int = MAX_USERS,
    weight_trials: int = 200,
    base: dict[str, Any] | None = None,
    parts: Sequence[str] | Literal["auto"] = (),
    grid: dict[str, list[tuple[str, list[Any]]]] | None = None,
    clock: Callable[[], float] | None = None,
    cold_items: Sequence[str] | None = None,
) -> TuneResult:
    """Chooses ``tokrec``'s signals, weights and hyperparameters on a validation split of ``train``.

    Args:
        train: the training log (never the test events), or a validation split already cut from it.
        item_vectors: ``(n_items, d)`` item vectors aligned with ``train.item_vocab``.
        cold: the task ranks new items (``--candidates``): validate on pseudo-new items.
        budget_s: seconds of tuning. Every costly step (a fit, a signal's scoring, a weight trial) starts
            only if the time left pays for its estimate (what the same kind of step took before), and what
            the budget cannot pay for is skipped and listed (``skipped``); so the tuning overruns the
            budget by at most the one step during which it ran out, and the table says which. A budget
            too small to score every signal once keeps the shipped defaults and says so. A run whose
            budget decided something (``budget_hit``) may choose differently on a faster machine.
        seed: seeds the validation draw and the sampler; the same inputs and seed give the same choice
            where the budget decided nothing.
        max_users: validation users scored at most.
        weight_trials: blend-weight trials at most (the budget may allow fewer).
        base: hyperparameters to start from (default: the shipped ``TokrecConfig``).
        parts: registered models that may join the blend (e.g. ``als``); each is fitted first on the
            same validation split, tuned as a baseline (a fifth of the budget) where it has a tuner or
            trained within :data:`PART_SHARE` of the budget where it is time-bounded (text-sasrec), and
            validation decides its weight like a signal's. ``"auto"``: :func:`auto_parts`.
        grid: the values each signal's search tries (default :data:`SIGNAL_GRID`).
        clock: seconds now (default ``time.perf_counter``; tests inject their own).
        cold_items: with ``cold``, the pseudo-new items of the validation split (:func:`make_validation`).

    Returns:
        A :class:`TuneResult`; ``config`` validates as a ``TokrecConfig``.
    """
    clk = _Clock(budget_s, clock)
    grid_all = SIGNAL_GRID if grid is None else grid
    start = TokrecConfig.model_validate(base or {}).model_dump()
    new_users: dict[str, Any] = {}
    skipped: list[str] = []

    def defaults(note: str, vsum: dict[str, Any], checks: dict[str, Any]) -> TuneResult:
        checks["notes"].append(note)
        hit = clk.left() <= 0
        return TuneResult(
            "tokrec",
            start,
            0.0,
            vsum,
            clk.elapsed(),
            seed,
            budget_s,
            "defaults",
            data=checks,
            budget_hit=hit,
            skipped=list(skipped),
            overrun=clk.crossed,
            new_users=new_users,
        )

    if budget_s <= 0:
        return defaults("the budget allows no step: the shipped defaults are kept", {}, {"notes": []})
    val = (
        train
        if isinstance(train, Validation)
        else make_validation(train, cold=cold, seed=seed, max_users=max_users, cold_items=cold_items)
    )
    checks = data_checks(val.train, item_vectors)
    vsum = val.summary()
    if len(val.users) == 0:
        return defaults("no validation user: the shipped defaults are kept", vsum, checks)
    # 0. the new-user blend, on users held out whole from the log: one fit of three pieces, about a second
    # per 100,000 events, run when that is within NEW_USER_BUDGET_SHARE of the budget (else the shipped one)
    source = train if isinstance(train, Dataset) else train.source
    cost = NEW_USER_SECONDS_PER_EVENT * len(source) if source is not None else 0.0
    if source is not None and cost > NEW_USER_BUDGET_SHARE * budget_s:
        skipped.append(f"the new-user blend (about {cost:.0f}s on this log: the shipped one is kept)")
    elif source is not None:
        with clk.step("the new-user blend"):
            new_users = (
                tune_new_users(
                    source,
                    item_vectors,
                    start,
                    seed=seed,
                    max_users=max_users,
                    new_items=val if val.cols is not None else None,
                )
                or {}
            )
        if new_users:
            start = {**start, **new_user_config(new_users)}
            log.info(
                "tune: new users %.4f %s (%.0fs)", new_users["ndcg"], new_users["weights"], clk.elapsed()
            )
    if isinstance(parts, str):  # "auto"
        parts = auto_parts(val, budget_s)
    cache = _SignalScores(val, item_vectors, start, clk)
    params = dict(start)
    mats: dict[str, np.ndarray] = {}
    alone: dict[str, float] = {}
    scored_with: dict[str, dict[str, Any]] = {}  # the fit parameters each signal's matrix was scored with
    order = list(SIGNALS)
    if not checks["item_text"]:
        order = [s for s in order if s not in LM_SIGNALS]
    if val.cols is not None and not val.train.interaction_matrix()[:, val.cols].nnz:
        # new items: the collaborative signals give every candidate the same score (no events), so they are
        # not scored (EASE is still fitted when prop, which carries its scores to text neighbours, is)
        order = [s for s in order if s not in COLLAB_SIGNALS]
        checks["notes"].append("the candidates have no events: the collaborative signals cannot rank them")
    # 1. every signal once, with the current choice: the least a weighted blend needs
    out_of_time = "the budget ran out before every signal was scored once: the shipped defaults are kept"
    for s in order:
        if clk.left() <= 0:
            return defaults(out_of_time, vsum, checks)
        if s == "prop" and "ease" not in order:  # EASE alone first: its fit is timed apart from prop's own
            with clk.step("EASE fit for prop"):
                cache.accept(cache.fitted("ease", params))
            if clk.left() <= 0:
                return defaults(out_of_time, vsum, checks)
        with clk.step(f"{s} with its defaults"):
            z, score, model = cache.matrix(s, params)
        cache.accept(model)
        log.info("tune: %s with its defaults -> %.4f (%.0fs)", s, score, clk.elapsed())
        if _constant(z):
            log.info("tune: %s is constant on this data: off", s)
            continue
        mats[s], alone[s], scored_with[s] = z, score, dict(params)
    # the parts once every signal has a score (the blend's guarantee needs those, a part is an extra): each
    # trains for its share of the budget, at most what is left beside the weight search's share
    with clk.step("the blend parts"):
        part_mats, part_alone, part_cfgs, part_models, too_late = _fit_parts(
            parts, val, item_vectors, budget_s, seed, lambda: clk.left() - WEIGHT_SHARE * budget_s
        )
    skipped += too_late
    for key in part_mats:
        log.info("tune: part %s alone %.4f (%.0fs)", key, part_alone[key], clk.elapsed())
    # the weight search's users (fewer on a large catalog: WEIGHT_CELLS) and what a trial costs there
    wval, wrows = _weight_users(val, seed)
    wmats = {k: m[wrows] for k, m in {**mats, **part_mats}.items()} if wrows is not None else None
    shipped = {s: float(start.get(f"w_{s}", 0.0)) for s in {**mats, **part_mats}}
    t = clk.now()
    with clk.step("a weight trial"):
        _blend_ndcg(wmats or {**mats, **part_mats}, shipped, wval)
    trial_s = clk.now() - t
    # a full blend (all validation users) costs about this: the chosen one is scored so after the search
    full_s = trial_s * (1 if wrows is None else len(val.users) / len(wrows))
    keep = full_s if wrows is not None else 0.0
    reserve = min(max(weight_trials, 1) * trial_s, WEIGHT_SHARE * budget_s) + keep
    log.info(
        "tune: a weight trial %.2fs on %d users; %.0fs kept for the weights",
        trial_s,
        len(wval.users),
        reserve,
    )

    # 2. each signal's hyperparameters by a coordinate search, scoring-time values first (no refit), then
    # the fit's, rounds while one improves; a step starts only if what is left before the weight search's
    # reserve pays for its estimate
    def current(s: str, room: float) -> bool:
        """Whether signal ``s``'s matrix is scored with the current choice of its fitted pieces (another
        signal's search may have moved one: prop reads EASE, prior map's ridge); if not, it is scored
        again (no refit: the model holds the pieces) or, when ``room`` cannot pay for that, left out."""
        if not _fit_params(s) & {k for k in params if params[k] != scored_with[s].get(k)}:
            return True
        if cache.estimate(s, params) > room:
            skipped.append(f"{s} (not rescored after another signal's choice: left out)")
            del mats[s], alone[s]
            return False
        with clk.step(f"{s} rescored"):
            mats[s], alone[s], _ = cache.matrix(s, params)
        scored_with[s] = dict(params)
        return True

    for s in list(mats):
        sgrid = grid_all.get(s, [])
        if not current(s, clk.left() - reserve):
            continue
        best, best_z = alone[s], mats[s]
        grid_order = sorted(sgrid, key=lambda g: g[0] not in SCORING_PARAMS)
        tried: set[tuple[str, Any]] = set()
        for _round in range(3):
            improved = False
            for name, values in grid_order:
                for v in values:
                    if v == params[name] or (name, v) in tried:
                        continue
                    trial = {**params, name: v}
                    # and the signals already scored that read the same piece, rescored if it wins (prop: EASE)
                    after = sum(cache.score_s.get(d, 0.0) for d in mats if d != s and name in _fit_params(d))
                    if cache.estimate(s, trial) + after > clk.left() - reserve:
                        skipped.append(f"{s} {name}={_fmt(v)}")
                        tried.add((name, v))
                        continue
                    with clk.step(f"{s} {name}={_fmt(v)}"):
                        z, score, model = cache.matrix(s, trial)
                    tried.add((name, v))
                    log.info("tune: %s %s=%s -> %.4f (%.0fs)", s, name, v, score, clk.elapsed())
                    if score > best + 1e-6:
                        best, best_z, params[name], improved = score, z, v, True
                        cache.accept(model)
                        tried = {(n, x) for n, x in tried if n == name}  # other values may now do better
                        for d in [d for d in mats if d != s and name in _fit_params(d)]:
                            current(d, float("inf"))  # rescored now: its cost was part of the estimate
            if not improved or len(grid_order) < 2:
                break
        mats[s], alone[s], scored_with[s] = best_z, best, dict(params)
    for s in list(mats):  # a later signal's search may have moved an earlier one's piece (custom grids)
        current(s, clk.left() - reserve)
    chosen = {s: {name: params[name] for name, _ in grid_all.get(s, [])} for s in mats}
    if "prior" in chosen:  # prior shares map's ridge features
        chosen["prior"] = {k: params[k] for k in ("map_lambda", "attr_weight")}
    for s in mats:
        log.info("tune: %s alone %.4f %s", s, alone[s], chosen[s])
    mats.update(part_mats)
    alone.update(part_alone)
    chosen.update({key: dict(cfg) for key, (_, cfg) in part_cfgs.items()})
    if not mats:
        return defaults("every signal is constant on this data: the shipped defaults are kept", vsum, checks)
    # 3. the blend weights on the cached matrices, trials while the budget pays for them
    if wrows is not None:
        wmats = {k: m[wrows] for k, m in mats.items()}
    weights, blend, trials = _search_weights(wmats or mats, wval, seed, weight_trials, start, clk, keep)
    log.info("tune: %d weight trials -> %.4f (%.0fs)", trials, blend, clk.elapsed())
    if trials < weight_trials:
        skipped.append(f"{weight_trials - trials} of {weight_trials} weight trials")
    if wrows is not None:  # chosen on a sample of the users: scored on all of them, as the signals alone
        with clk.step("the chosen blend scored on every validation user"):
            blend = _blend_ndcg(mats, weights, val)
    best_single = max(alone, key=lambda k: alone[k])
    choice = "blend"
    if blend < alone[best_single]:  # the guarantee: never below the best single component
        weights = {s: float(s == best_single) for s in mats}
        blend, choice = alone[best_single], f"single signal {best_single}"
    config = {**params, **{f"w_{s}": float(weights.get(s, 0.0)) for s in SIGNALS}}
    entered = [k for k in part_cfgs if weights.get(k, 0.0) > 0]
    config["parts"] = [
        {"model": part_cfgs[k][0], "config": part_cfgs[k][1], "weight": float(weights[k])} for k in entered
    ]
    config = TokrecConfig.model_validate(config).model_dump()
    # 4. the ablation (for the report), as far as the budget goes: each against the chosen blend, user by user
    ablation: dict[str, float] = {}
    paired: dict[str, dict[str, Any]] = {}
    chosen_users: np.ndarray | None = None

    def ablate(label: str, ms: dict[str, np.ndarray], w: dict[str, float]) -> None:
        nonlocal chosen_users
        if chosen_users is None:
            chosen_users = _blend_users(mats, weights, val)
        # nothing weighted left: the ablated blend ranks nothing, every user scores 0
        each = _blend_users(ms, w, val) if any(w.values()) else np.zeros(len(chosen_users))
        ablation[label] = float(np.mean(each)) if len(each) else 0.0
        if len(each):
            paired[label] = paired_difference(chosen_users, each, seed=seed)

    # a blend part counts as what it reads: text vectors (LM), the order of events (order)
    lm_group = (
        *LM_SIGNALS,
        *(k for k, m in part_models.items() if m.needs_item_vectors or m.uses_item_vectors),
    )
    order_group = (*ORDER_SIGNALS, *(k for k, m in part_models.items() if m.reads_order))
    for label, group in (("without LM signals", lm_group), ("without order signals", order_group)):
        w = {s: (0.0 if s in group else weights.get(s, 0.0)) for s in mats}
        if full_s > clk.left():
            skipped.append(f"ablation {label}")
            continue
        with clk.step(f"ablation {label}"):
            ablate(label, mats, w)
    if "ease" in mats and chosen["ease"].get("ease_half_life", NO_RECENCY) < NO_RECENCY:
        label = "without order signals or recency"
        if full_s + cache.score_s.get("ease", 0.0) > clk.left():
            skipped.append(f"ablation {label}")
        else:
            with clk.step(f"ablation {label}"):
                z = cache.matrix("ease", {**params, "ease_half_life": NO_RECENCY})[0]
                w = {s: (0.0 if s in order_group else weights.get(s, 0.0)) for s in mats}
                ablate(label, {**mats, "ease": z}, w)
    reports = [
        SignalReport(s, s in mats, alone.get(s), float(weights.get(s, 0.0)), chosen.get(s, {}))
        for s in [*SIGNALS, *part_cfgs]
    ]
    if wrows is not None:
        vsum["weight_search_users"] = len(wrows)
    return TuneResult(
        "tokrec",
        config,
        blend,
        vsum,
        clk.elapsed(),
        seed,
        budget_s,
        choice,
        reports,
        ablation,
        paired,
        checks,
        trials,
        bool(skipped) or clk.left() <= 0,
        skipped=list(dict.fromkeys(skipped)),
        overrun=clk.crossed,
        new_users=new_users,
        fitted_parts=[part_models[k] for k in entered],
        fitted_on=train.source if isinstance(train, Validation) else train,
    )


def _weight_users(val: Validation, seed: int) -> tuple[Validation, np.ndarray | None]:
    """The users the weight search scores: all of them, or a seeded sample of at least :data:`MIN_USERS` when
    users x ranked items exceeds :data:`WEIGHT_CELLS` (rows of ``val``'s matrices; None = all)."""
    width = val.rel.shape[1] if val.cols is None else len(val.cols)
    n = max(MIN_USERS, int(WEIGHT_CELLS // max(width, 1)))
    if len(val.users) <= n:
        return val, None
    rows = np.sort(np.random.default_rng(seed).choice(len(val.users), size=n, replace=False))
    sub = Validation(
        val.split, val.users[rows], val.seen[rows].tocsr(), val.rel[rows].tocsr(), val.cols, val.source
    )
    return sub, rows


def auto_parts(val: Validation, budget_s: float) -> list[str]:
    """The registered models that join the blend by default (``parts="auto"``): :data:`AUTO_PARTS` on a
    leave-last-out task whose budget and log allow them (:data:`AUTO_MIN_BUDGET`, :data:`AUTO_MAX_WORK`),
    else none."""
    train = val.train
    if val.cols is not None or budget_s < AUTO_MIN_BUDGET or len(train) * train.n_items > AUTO_MAX_WORK:
        return []
    return list(AUTO_PARTS)


def _fit_parts(
    parts: Sequence[str],
    val: Validation,
    item_vectors: np.ndarray,
    budget_s: float,
    seed: int,
    room: Callable[[], float] = lambda: float("inf"),
) -> tuple[
    dict[str, np.ndarray], dict[str, float], dict[str, tuple[str, dict[str, Any]]], dict[str, Any], list[str]
]:
    """Each registered part fitted on the validation split's training events: its z-normalised validation
    matrix, NDCG@10 alone, ``(model, config)`` and the fitted model, keyed ``"i:name"`` (a part whose
    scores are constant is left out), and the parts left out for want of time. A baseline is tuned first (a
    fifth of the budget); a time-bounded part (:data:`TIME_BOUNDED_PARTS`) trains for :data:`PART_SHARE` of
    it, on a new-item task with :data:`NEW_ITEM_PART_CONFIG` on top. ``room()``: the seconds the parts may
    still take, read on the tuner's clock before each part; a part takes at most that, and one that would get
    under :data:`MIN_PART_SECONDS` is not fitted."""
    from tokrec.models import signals as sig
    from tokrec.models.recommended import BlendPart, fit_part, part_scores

    mats: dict[str, np.ndarray] = {}
    alone: dict[str, float] = {}
    cfgs: dict[str, tuple[str, dict[str, Any]]] = {}
    models: dict[str, Any] = {}
    too_late: list[str] = []
    for i, name in enumerate(parts):
        key = f"{i}:{name}"
        left = room()
        cfg: dict[str, Any] = {}
        if name in BASELINE_SPACES and BASELINE_SPACES[name][0] == name:
            seconds = min(budget_s / 5, left)
            if seconds < MIN_PART_SECONDS:
                too_late.append(f"the blend part {name} (no time left for it)")
                continue
            cfg = tune_baseline(name, val, budget_s=seconds, seed=seed).config
        elif name in TIME_BOUNDED_PARTS:
            seconds = min(PART_SHARE * budget_s, left)
            if seconds < MIN_PART_SECONDS:
                too_late.append(f"the blend part {name} (no time left for it)")
                continue
            task = NEW_ITEM_PART_CONFIG.get(name, {}) if val.cols is not None else {}
            log = val.source if val.source is not None else val.train  # the held-out events count too
            once = NO_REPEAT_PART_CONFIG.get(name, {}) if not has_repeats(log) else {}
            long = ENSEMBLE_PART_CONFIG.get(name, {}) if seconds >= ENSEMBLE_PART_SECONDS and not task else {}
            cfg = {**TIME_BOUNDED_PARTS[name], **once, **long, **task, "max_seconds": round(seconds, 1)}
        part = BlendPart.model_validate({"model": name, "config": cfg})
        model = fit_part(part, val.train, item_vectors)
        z = val.restrict(sig.znorm_rows(part_scores(model.score(val.user_ids), val.train.n_items)))
        if _constant(z):
            continue
        mats[key], alone[key], cfgs[key], models[key] = z, val.ndcg(z), (name, part.config), model
    return mats, alone, cfgs, models, too_late


def fit_tuned(result: TuneResult, dataset: Dataset, item_vectors: np.ndarray | None) -> Any:
    """The model ``result`` chose, fitted on the whole log ``dataset`` (the log it was tuned on).

    A ``tokrec`` blend part that the tuner fitted on its leave-last-out validation split of this same
    ``dataset`` and that can score from the whole histories (``with_histories``: text-sasrec) is reused
    instead of trained again: the event validation held out from each user was only missing as a
    training target, and the reused model takes it as input. Everything else is fitted here."""
    model = registry.create_model(baseline_model(result.model), result.config)
    vecs = item_vectors if wants_item_vectors(model) else None
    reusable = (
        result.model == "tokrec"
        and result.fitted_on is dataset
        and result.validation.get("protocol") == "leave-last-out"
        and len(result.fitted_parts) == len(model.config.parts)
    )
    if not reusable:
        return model.fit(dataset, vecs)
    given = [m.with_histories(dataset) if hasattr(m, "with_histories") else None for m in result.fitted_parts]
    assert vecs is not None
    return model.fit_with_parts(dataset, vecs, given)


def _blend(mats: dict[str, np.ndarray], w: dict[str, float]) -> np.ndarray:
    first = next(iter(mats.values()))
    total = np.zeros(first.shape, dtype=np.float32)
    for s, m in mats.items():
        if w.get(s):
            total += np.float32(w[s]) * m
    return total


def _blend_ndcg(mats: dict[str, np.ndarray], w: dict[str, float], val: Validation) -> float:
    return val.ndcg(_blend(mats, w))


def _blend_users(mats: dict[str, np.ndarray], w: dict[str, float], val: Validation) -> np.ndarray:
    return val.ndcg_users(_blend(mats, w))


def _stacked_ndcg(stack: np.ndarray, w: np.ndarray, buf: np.ndarray, val: Validation) -> float:
    """:func:`_blend_ndcg` over matrices stacked as ``(signals, users * items)``, written into ``buf``."""
    np.dot(w, stack, out=buf.reshape(-1))
    return val.ndcg(buf)


def _optuna() -> Any:
    try:
        import optuna
    except ImportError as e:  # pragma: no cover - optuna is in the recs extra
        raise ConfigError("tuning needs optuna: pip install 'tokrec[recs]' (or pass --no-tune)") from e
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def _search_weights(
    mats: dict[str, np.ndarray],
    val: Validation,
    seed: int,
    n_trials: int,
    start: dict[str, Any],
    clock: _Clock | None = None,
    keep_s: float = 0.0,
) -> tuple[dict[str, float], float, int]:
    """Optuna TPE over blend weights on cached matrices, then switch-offs that do not cost NDCG.

    The seeded starting points (the shipped weights, all equal, each signal alone) run first, then TPE
    trials, ``n_trials`` in all at most; with a ``clock``, a trial (and a switch-off) starts only while the
    time left, less ``keep_s`` (what must run after the search), pays for the mean trial so far (the first
    always runs)."""
    optuna = _optuna()
    names = list(mats)
    cache: dict[tuple[float, ...], float] = {}
    spent: list[float] = []
    clk = clock or _Clock(float("inf"))
    # a trial is one matrix-vector product over the stacked matrices into one reused buffer: a single
    # pass over memory, no temporaries (on 12,000 items a third of the time of a sum signal by signal)
    stack = np.stack([mats[s] for s in names]).reshape(len(names), -1)
    buf = np.empty(next(iter(mats.values())).shape, dtype=np.float32)

    def affordable() -> bool:
        return not spent or float(np.mean(spent)) <= clk.left() - keep_s

    def score(w: dict[str, float]) -> float:
        key = tuple(round(w.get(s, 0.0), 6) for s in names)
        if key not in cache:
            t = clk.now()
            with clk.step("a weight trial"):
                cache[key] = (
                    _stacked_ndcg(stack, np.array(key, dtype=np.float32), buf, val) if any(key) else 0.0
                )
            spent.append(clk.now() - t)
        return cache[key]

    def objective(trial: Any) -> float:
        return score({s: trial.suggest_float(f"w_{s}", 0.0, 1.0) for s in names})

    sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=10)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    shipped = {s: float(start.get(f"w_{s}", 0.0)) for s in names}
    top = max(shipped.values()) or 1.0
    study.enqueue_trial({f"w_{s}": shipped[s] / top for s in names})
    study.enqueue_trial({f"w_{s}": 1.0 for s in names})
    for s in names:
        study.enqueue_trial({f"w_{t}": float(t == s) for t in names})
    # enqueued starting points count as trials only once run (``study.trials`` lists them while they wait)
    done = 0
    while done < max(n_trials, 1) and (not done or affordable()):
        study.optimize(objective, n_trials=1)
        done += 1
    best = {s: float(study.best_params[f"w_{s}"]) for s in names}
    best_score = score(best)
    changed = True
    while changed and affordable():  # switch off what validation does not need
        changed = False
        for s in sorted((s for s in names if best[s] > 0), key=lambda t: best[t]):
            trial = {**best, s: 0.0}
            if not affordable():
                break
            if any(trial.values()) and score(trial) >= best_score:
                best, best_score, changed = trial, score(trial), True
    top = max(best.values()) or 1.0
    best = {s: round(w / top, 4) for s, w in best.items()}  # largest weight 1 (scale-free blend)
    return best, score(best), done


# ---- tuning the baselines --------------------------------------------------------------------------
def _ease_space(trial: Any) -> dict[str, Any]:
    return {"l2": trial.suggest_float("l2", 10.0, 20000.0, log=True)}


def _ease_recency_space(trial: Any) -> dict[str, Any]:
    hl = trial.suggest_categorical("half_life", [0.0, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0])
    return {"l2": trial.suggest_float("l2", 10.0, 20000.0, log=True), "half_life": hl or None}


def _itemknn_space(trial: Any) -> dict[str, Any]:
    return {"neighbours": trial.suggest_int("neighbours", 5, 400, log=True)}


def _als_space(trial: Any) -> dict[str, Any]:
    return {
        "factors": trial.suggest_categorical("factors", [16, 32, 64, 128]),
        "regularization": trial.suggest_float("regularization", 0.01, 100.0, log=True),
        "alpha": trial.suggest_float("alpha", 1.0, 100.0, log=True),
        "iterations": 15,
    }


def _bpr_space(trial: Any) -> dict[str, Any]:
    return {
        "factors": trial.suggest_categorical("factors", [16, 32, 64, 128]),
        "learning_rate": trial.suggest_float("learning_rate", 0.003, 0.1, log=True),
        "regularization": trial.suggest_float("regularization", 1e-4, 0.1, log=True),
        "iterations": trial.suggest_categorical("iterations", [50, 100, 200]),
    }


#: baseline -> (registry model, search space, the first trial's parameters)
BASELINE_SPACES: dict[str, tuple[str, Callable[[Any], dict[str, Any]], dict[str, Any]]] = {
    "ease": ("ease", _ease_space, {"l2": 300.0}),
    "ease-recency": ("ease", _ease_recency_space, {"l2": 300.0, "half_life": 2.0}),
    "itemknn": ("itemknn", _itemknn_space, {"neighbours": 50}),
    "als": ("als", _als_space, {"factors": 64, "regularization": 1.0, "alpha": 20.0}),
    "bpr": (
        "bpr",
        _bpr_space,
        {"factors": 32, "learning_rate": 0.01, "regularization": 0.01, "iterations": 200},
    ),
}


def tunable(name: str) -> bool:
    """Whether ``name`` (a registry name, or ``ease-recency``) has a tuner."""
    return name == "tokrec" or name in BASELINE_SPACES


def tune_baseline(
    name: str,
    train: Dataset | Validation,
    *,
    cold: bool = False,
    budget_s: float = 60.0,
    seed: int = 0,
    max_users: int = MAX_USERS,
    max_trials: int = 40,
    item_vectors: np.ndarray | None = None,
    clock: Callable[[], float] | None = None,
    cold_items: Sequence[str] | None = None,
) -> TuneResult:
    """Tunes a classical baseline (a key of :data:`BASELINE_SPACES`) by Optuna on the same validation
    split :func:`tune_tokrec` uses (``cold_items``: as there); ``config`` is the registry model's config. The
    first trial (the registry defaults) runs whenever the budget is positive; each later one only while the
    time left pays for the mean trial so far (``clock``: seconds now, injectable). A budget of 0 keeps the
    defaults."""
    optuna = _optuna()
    if name not in BASELINE_SPACES:
        raise ConfigError(f"no tuner for {name!r}; tunable: tokrec, {', '.join(BASELINE_SPACES)}")
    model_name, space, first = BASELINE_SPACES[name]
    clk = _Clock(budget_s, clock)
    val = (
        train
        if isinstance(train, Validation)
        else make_validation(train, cold=cold, seed=seed, max_users=max_users, cold_items=cold_items)
    )
    if len(val.users) == 0 or budget_s <= 0:
        cfg = registry.model_class(model_name).Config.model_validate({}).model_dump()
        note = "no validation user" if len(val.users) == 0 else "the budget allows no trial"
        return TuneResult(
            name, cfg, 0.0, val.summary(), clk.elapsed(), seed, budget_s, "defaults",
            data={"notes": [f"{note}: the registry defaults are kept"]}, budget_hit=budget_s <= 0,
        )  # fmt: skip
    cls = registry.model_class(model_name)
    vecs = item_vectors if wants_item_vectors(cls) else None
    user_ids = val.user_ids

    def objective(trial: Any) -> float:
        cfg = cls.Config.model_validate(space(trial))
        model = registry.create_model(model_name, cfg.model_dump()).fit(val.train, vecs)
        scores = model.score(user_ids)
        return val.ndcg(val.restrict(np.nan_to_num(scores, nan=-np.inf)))

    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    study.enqueue_trial(first)
    n, hit, spent = 0, False, 0.0
    while n < max_trials:
        if n and spent / n > clk.left():  # the mean trial so far no longer fits
            hit = True
            break
        t = clk.now()
        with clk.step(f"trial {n + 1}"):
            study.optimize(objective, n_trials=1)
        spent += clk.now() - t
        n += 1
    best = study.best_trial
    cfg = cls.Config.model_validate(space(optuna.trial.FixedTrial(best.params))).model_dump()
    return TuneResult(
        name,
        cfg,
        float(best.value),
        val.summary(),
        clk.elapsed(),
        seed,
        budget_s,
        "search",
        trials=len(study.trials),
        budget_hit=hit,
        skipped=[f"{max_trials - n} of {max_trials} trials"] if hit else [],
        overrun=clk.crossed,
    )


def baseline_model(name: str) -> str:
    """The registry model a baseline name stands for (``ease-recency`` is the ``ease`` model)."""
    return BASELINE_SPACES[name][0] if name in BASELINE_SPACES else name


@dataclass(frozen=True)
class RerankChoice:
    """A re-ranking blend weight chosen on validation: ``weight``, validation NDCG@10 at every weight tried
    (``curve``), and how many validation users scored it."""

    weight: float
    curve: dict[float, float]
    users: int

    def line(self) -> str:
        """One line: the chosen weight and the validation curve."""
        curve = ", ".join(f"{w:g}: {v:.4f}" for w, v in self.curve.items())
        return (
            f"blend weight {self.weight:g} chosen on validation ({self.users} users' last events): NDCG@10 "
            f"{self.curve[0.0]:.4f} (first stage) -> {self.curve[self.weight]:.4f}; by weight {curve}"
        )


def choose_rerank_weight(
    reranker: Any,
    dataset: Dataset,
    first_stage: Any,
    users: Sequence[str],
    *,
    item_vectors: np.ndarray | None = None,
    top_n: int = 20,
    weights: Sequence[float] | None = None,
    k: int = 10,
) -> RerankChoice:
    """The blend weight of a classifier's re-ranking (``reranker.rerank_weights``, e.g.
    :class:`~tokrec.models.cross_encoder.CrossEncoderClassifier`) chosen on validation: each user's last event
    of ``dataset`` is held out (leave-last-out), ``first_stage`` (an unfitted registered model) is fitted on the
    rest, its top ``top_n`` for ``users`` (those the classifier never trained on) is re-ranked at each weight,
    and the weight with the best NDCG@``k`` on those users' held-out events wins (ties: the smaller weight, so
    0 — the first stage alone — wins unless the classifier helps). The classifier is used as fitted: it must
    not have seen ``users``' events as training pairs."""
    from tokrec.evaluation.metrics import score_recommendations

    split = leave_last_out(dataset)
    held = split.test.interactions
    held = held[ids_in(held["user_id"].astype(str), {str(u) for u in users})]
    if held.empty:
        raise ConfigError("no validation events: none of the given users has two or more events")
    vecs = item_vectors if wants_item_vectors(first_stage) else None
    model = first_stage.fit(split.train, vecs)
    ids = sorted(held["user_id"].astype(str).unique())
    recs = model.recommend_batch(ids, k=max(top_n, k))
    grid = sorted({0.0, *(BLEND_WEIGHTS if weights is None else weights)})
    reranked = reranker.rerank_weights(split.train, recs, top_n=top_n, weights=grid)
    train = split.train.interactions
    curve = {w: float(score_recommendations(reranked[w], held, train, k=k)[f"ndcg@{k}"]) for w in grid}
    best = max(curve, key=lambda w: (curve[w], -w))
    return RerankChoice(weight=best, curve=curve, users=len(ids))


@dataclass
class RerankSpecChoice:
    """A re-ranker's weight chosen on validation (``spec``, e.g. ``tail:0.6``) for a ``spec`` written ``name:auto``:
    the validation trade-off curve (:func:`tokrec.evaluation.responsibility.tradeoff_curves` rows), the NDCG@k
    loss allowed, and how many validation users scored it."""

    asked: str
    spec: str
    curve: list[dict[str, Any]]
    loss: float
    users: int

    def line(self) -> str:
        """One line: the choice, and what it did on validation."""
        from tokrec.rerank import parse_rerank

        rows = {r["weight"]: r for r in self.curve}
        base, chosen = rows[0.0], rows[parse_rerank(self.spec)[0].weight]
        goal = chosen["goal"]
        return (
            f"rerank {self.asked} -> {self.spec}, chosen on validation ({self.users} users' last events; NDCG@k loss "
            f"allowed {self.loss:.0%}): NDCG {base['ndcg']:.4f} -> {chosen['ndcg']:.4f}, {goal} "
            f"{base[goal]:.4f} -> {chosen[goal]:.4f}"
        )


def choose_rerank(
    spec: str,
    fit: Callable[[Dataset], Any],
    dataset: Dataset,
    item_vectors: np.ndarray | None,
    *,
    k: int = 10,
    loss: float = 0.05,
) -> RerankSpecChoice | None:
    """Resolves ``name:auto`` in a re-ranking ``spec`` on a validation split of ``dataset`` (each user's last
    event held out, :func:`tokrec.evaluation.splits.validation_split`): the model ``fit`` returns (fitted on the
    rest) ranks its best :func:`tokrec.rerank.pool_size` candidates per validation user, the re-ranker is measured
    at the weights of :data:`tokrec.rerank.TRADEOFF_WEIGHTS`, and the weight with the largest gain in its goal
    (:data:`tokrec.rerank.GOALS`: intra-list diversity and long-tail share up, miscalibration down) whose NDCG@k
    loss stays within ``loss`` wins (ties: the smaller weight; 0, the model's own list, when none does). None
    when ``spec`` has no ``auto``. The test events of whoever calls this are never read: ``dataset`` is the
    training log."""
    from tokrec.evaluation.responsibility import tradeoff_curves
    from tokrec.evaluation.splits import validation_split
    from tokrec.rerank import GOALS, RerankContext, parse_rerank, pool_size

    steps = parse_rerank(spec)
    if not any(s.auto for s in steps):
        return None
    if not 0.0 <= loss < 1.0:
        raise ConfigError(f"the NDCG loss allowed to an auto re-ranker must lie in [0, 1), got {loss}")
    (step,) = steps
    split = validation_split(dataset)
    model = fit(split.train)
    recs = model.recommend_batch(split.test_users, k=pool_size(k))
    context = RerankContext.from_train(split.train.interactions, split.train.items, vectors=item_vectors)
    curve = tradeoff_curves(recs, split, context, [step.name], k, pool=step.pool, figures=(GOALS[step.name],))
    base = curve[0]
    sign = -1.0 if GOALS[step.name] == "miscalibration" else 1.0
    ok = [r for r in curve if r["ndcg"] >= (1.0 - loss) * base["ndcg"]]
    best = max(ok, key=lambda r: (sign * r[r["goal"]], -r["weight"]))
    chosen = replace(step, weight=best["weight"], auto=False).spec()
    return RerankSpecChoice(spec, chosen, curve, loss, len(split.test_users))


def tune(
    name: str,
    train: Dataset,
    item_vectors: np.ndarray | None,
    *,
    cold: bool = False,
    budget_s: float = 120.0,
    seed: int = 0,
    max_users: int = MAX_USERS,
    parts: Sequence[str] | Literal["auto"] = (),
    cold_items: Sequence[str] | None = None,
) -> TuneResult:
    """Tunes ``tokrec`` (``parts``: registered models that may join its blend, or ``"auto"``) or a baseline
    on a validation split of ``train`` (``cold_items``: :func:`make_validation`)."""
    if name == "tokrec":
        if item_vectors is None:
            raise ConfigError("tuning tokrec needs item vectors")
        return tune_tokrec(
            train, item_vectors, cold=cold, budget_s=budget_s, seed=seed, max_users=max_users, parts=parts,
            cold_items=cold_items,
        )  # fmt: skip
    return tune_baseline(
        name, train, cold=cold, budget_s=budget_s, seed=seed, max_users=max_users, item_vectors=item_vectors,
        cold_items=cold_items,
    )  # fmt: skip


__all__ = [
    "BASELINE_SPACES",
    "NO_RECENCY",
    "RerankChoice",
    "TUNING_FILE",
    "TuneResult",
    "Validation",
    "auto_parts",
    "baseline_model",
    "choose_rerank_weight",
    "data_checks",
    "fit_tuned",
    "make_validation",
    "tunable",
    "tune",
    "tune_baseline",
    "tune_tokrec",
    "write_tuning",
]
