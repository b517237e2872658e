"""Train/test splits over one catalog, deterministic for a given seed.

Every splitter takes a :class:`~tokrec.data.dataset.Dataset` and returns a :class:`Split`: a train and a
test ``Dataset`` sharing the catalog (and user vocabulary), plus what was held out (``candidates`` for
the cold-item protocol). No test event is ever in train.

Random draws use :class:`random.Random` over the sorted ids (numeric order when every id is an integer),
exactly as the benchmark's ``make_splits.py`` does, so ``cold_item_split(ml100k, fraction=0.2, seed=0)``
rebuilds the benchmark's cold split.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from tokrec.data.dataset import Dataset, ids_in
from tokrec.errors import ConfigError, DataError

PROTOCOLS = ("leave-last-out", "temporal", "cold-item", "cold-user")


@dataclass
class Split:
    """A train/test split.

    Attributes:
        train: the events a model may learn from (same catalog as ``test``).
        test: the held-out events.
        protocol: ``leave-last-out``, ``temporal``, ``cold-item``, ``cold-user`` or ``given``.
        candidates: item ids to rank (the held-out items of ``cold-item``); None = the whole catalog.
        params: the splitter's parameters (for reports).
    """

    train: Dataset
    test: Dataset
    protocol: str
    candidates: list[str] | None = None
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def test_users(self) -> list[str]:
        """Users with at least one test event, in first-appearance order."""
        return list(pd.unique(self.test.interactions["user_id"]))

    def summary(self) -> dict[str, Any]:
        """Sizes and parameters, JSON-serialisable."""
        return {
            "protocol": self.protocol,
            "params": dict(self.params),
            "train_events": len(self.train),
            "test_events": len(self.test),
            "test_users": len(self.test_users),
            "catalog_items": self.train.n_items,
            "candidates": None if self.candidates is None else len(self.candidates),
        }


def _sort_ids(ids: Sequence[str]) -> list[str]:
    """Ids in numeric order when all are integers, else in string order."""
    ids = list(ids)
    try:
        return sorted(ids, key=int)
    except ValueError:
        return sorted(ids)


def _tie_key(item_ids: pd.Series) -> np.ndarray:
    """A sort key for item ids: the integer value when every id is an integer, else the string."""
    try:
        return item_ids.astype(np.int64).to_numpy()
    except (ValueError, OverflowError):
        return pd.factorize(item_ids.astype(str), sort=True)[0]


def _time_order(df: pd.DataFrame, tie_break: str) -> np.ndarray:
    """Row positions sorted by user, time, then ``tie_break`` (``item_id`` or ``source`` order)."""
    if tie_break not in ("item_id", "source"):
        raise ConfigError(f"tie_break must be 'item_id' or 'source', not {tie_break!r}")
    source = np.arange(len(df))
    tie = _tie_key(df["item_id"]) if tie_break == "item_id" else source
    users = pd.factorize(df["user_id"], sort=True)[0]
    return np.lexsort((source, tie, df["timestamp"].to_numpy(), users))


def _make(
    ds: Dataset,
    train_mask: np.ndarray,
    protocol: str,
    *,
    candidates: list[str] | None = None,
    test_mask: np.ndarray | None = None,
    **params: Any,
) -> Split:
    inter = ds.interactions
    test_mask = ~train_mask if test_mask is None else test_mask
    train = ds.with_interactions(inter[train_mask].reset_index(drop=True), name=f"{ds.name}-train")
    test = ds.with_interactions(inter[test_mask].reset_index(drop=True), name=f"{ds.name}-test")
    if len(test) == 0:
        raise DataError(f"{protocol} split of {ds.name!r} left no test events ({params})")
    return Split(train, test, protocol, candidates, params)


def leave_last_out(dataset: Dataset, *, n: int = 1, min_train: int = 1, tie_break: str = "item_id") -> Split:
    """Each user's last ``n`` events (by time) go to test.

    Args:
        dataset: the events to split.
        n: events held out per user.
        min_train: users with fewer than ``n + min_train`` events stay wholly in train.
        tie_break: equal timestamps are ordered by ``item_id`` (as the benchmark does; numerically when
            every id is an integer) or by ``source`` row order.
    """
    if n < 1 or min_train < 0:
        raise ConfigError(
            f"leave-last-out needs n >= 1 and min_train >= 0 (got n={n}, min_train={min_train})"
        )
    inter = dataset.interactions
    order = _time_order(inter, tie_break)
    users = inter["user_id"].to_numpy()[order]
    # position from the end within each user's sorted events
    from_end = pd.Series(users).groupby(users, sort=False).cumcount(ascending=False).to_numpy()
    size = pd.Series(users).groupby(users, sort=False).transform("size").to_numpy()
    is_test = np.zeros(len(inter), dtype=bool)
    is_test[order] = (from_end < n) & (size >= n + min_train)
    return _make(dataset, ~is_test, "leave-last-out", n=n, min_train=min_train, tie_break=tie_break)


def temporal_split(
    dataset: Dataset,
    *,
    at: int | None = None,
    quantile: float | None = None,
    keep_new_users: bool = False,
    drop_repeats: bool = True,
) -> Split:
    """A global cut in time: events before the cut train, events at or after it test.

    Args:
        dataset: the events to split.
        at: the cut as a timestamp.
        quantile: the cut as a quantile of the timestamps (e.g. 0.8); give exactly one of ``at``/``quantile``.
        keep_new_users: keep test events of users with no training event (cold users); dropped by default.
        drop_repeats: drop test events of items the user already had in train (they can never be hit,
            because recommendations exclude seen items).
    """
    if (at is None) == (quantile is None):
        raise ConfigError("temporal split: give exactly one of at= or quantile=")
    ts = dataset.interactions["timestamp"].to_numpy()
    if quantile is not None:
        if not 0.0 < quantile < 1.0:
            raise ConfigError(f"temporal split: quantile must be in (0, 1), got {quantile}")
        cut = int(np.quantile(ts, quantile, method="higher"))
    else:
        cut = int(at)  # type: ignore[arg-type]
    train_mask = ts < cut
    test_mask = ~train_mask
    inter = dataset.interactions
    if not keep_new_users:
        test_mask &= ids_in(inter["user_id"], pd.unique(inter.loc[train_mask, "user_id"]))
    if drop_repeats:
        tr = inter.loc[train_mask]
        seen = set(zip(tr["user_id"], tr["item_id"], strict=True))
        test_mask &= ~np.fromiter(
            ((u, i) in seen for u, i in zip(inter["user_id"], inter["item_id"], strict=True)),
            bool,
            len(inter),
        )
    return _make(
        dataset,
        train_mask,
        "temporal",
        test_mask=test_mask,
        cut=cut,
        quantile=quantile,
        keep_new_users=keep_new_users,
        drop_repeats=drop_repeats,
    )


def _draw(ids: Sequence[str], fraction: float, seed: int, what: str) -> set[str]:
    if not 0.0 < fraction < 1.0:
        raise ConfigError(f"{what} fraction must be in (0, 1), got {fraction}")
    ordered = _sort_ids(ids)
    n = math.floor(len(ordered) * fraction + 1e-9)
    if n == 0:
        raise ConfigError(f"{what} fraction {fraction} of {len(ordered)} ids holds out nothing")
    return set(random.Random(seed).sample(ordered, n))


def cold_item_split(
    dataset: Dataset, *, fraction: float = 0.2, seed: int = 0, items: Sequence[str] | None = None
) -> Split:
    """A share of the catalog becomes new items: all their events go to test, none to train.

    The held-out items, ``floor(fraction * n)`` of the ``n`` items with at least one event, are the
    split's ``candidates``: a model ranks only them. Items without events stay in the catalog (a
    validation split cut from a cold-item train set therefore never redraws the held-out items).
    ``items``, instead of the draw: these items are held out (those of them with events; ``fraction``
    and ``seed`` are then not used), e.g. the items an encoder was fine-tuned without.
    """
    with_events = list(pd.unique(dataset.interactions["item_id"]))
    if items is None:
        cold = _draw(with_events, fraction, seed, "cold-item")
        params: dict[str, Any] = {"fraction": fraction, "seed": seed}
    else:
        cold = set(map(str, items)) & set(with_events)
        if not cold or len(cold) == len(with_events):
            raise ConfigError(
                f"cold-item split: {len(cold)} of the {len(with_events)} items with events are among the "
                f"{len(items)} given: nothing to hold out, or nothing left to train on"
            )
        params = {"items": len(cold)}
    is_test = ids_in(dataset.interactions["item_id"], cold)
    return _make(dataset, ~is_test, "cold-item", candidates=_sort_ids(list(cold)), **params)


def cold_user_split(
    dataset: Dataset, *, fraction: float = 0.2, seed: int = 0, history: int = 0, tie_break: str = "item_id"
) -> Split:
    """A share of the users become new users: their events go to test, except their first ``history``.

    Args:
        dataset: the events to split.
        fraction: share of the users (with at least one event) held out.
        seed: the draw's seed.
        history: each held-out user's first ``history`` events (by time) stay in train, so that a model
            sees a short history of the new user (0 = a user never seen before).
        tie_break: as in :func:`leave_last_out`.
    """
    if history < 0:
        raise ConfigError(f"cold-user history must be >= 0, got {history}")
    inter = dataset.interactions
    cold = _draw(list(pd.unique(inter["user_id"])), fraction, seed, "cold-user")
    order = _time_order(inter, tie_break)
    users = inter["user_id"].to_numpy()[order]
    position = pd.Series(users).groupby(users, sort=False).cumcount().to_numpy()
    is_test = np.zeros(len(inter), dtype=bool)
    is_test[order] = ids_in(users, cold) & (position >= history)
    return _make(dataset, ~is_test, "cold-user", fraction=fraction, seed=seed, history=history)


SPLITTERS: dict[str, Callable[..., Split]] = {
    "leave-last-out": leave_last_out,
    "temporal": temporal_split,
    "cold-item": cold_item_split,
    "cold-user": cold_user_split,
}


def make_split(dataset: Dataset, protocol: str, **params: Any) -> Split:
    """Splits ``dataset`` with the named protocol (one of :data:`PROTOCOLS`)."""
    try:
        fn = SPLITTERS[protocol]
    except KeyError:
        raise ConfigError(f"unknown protocol {protocol!r}; available: {', '.join(PROTOCOLS)}") from None
    if protocol == "temporal" and "at" not in params and "quantile" not in params:
        params = {**params, "quantile": 0.8}
    try:
        return fn(dataset, **params)
    except TypeError as e:
        raise ConfigError(f"{protocol}: {e}") from e


def validation_split(train: Dataset | Split, protocol: str | None = None, **params: Any) -> Split:
    """Cuts a validation split out of a training set, the same way the test split was made.

    Use it to choose hyperparameters: the returned split's train and test are both subsets of ``train``,
    so the real test events are never looked at.

    Args:
        train: a training ``Dataset``, or a ``Split`` (its ``train`` is cut with its own protocol and
            parameters unless others are given; a ``given`` split is cut ``cold-item`` when it has
            candidates, else ``leave-last-out``, with default parameters).
        protocol: the protocol to cut with (default: the split's, else ``leave-last-out``).
        **params: the splitter's parameters (default: the split's).
    """
    given_candidates = False
    if isinstance(train, Split):
        given_candidates = train.protocol == "given" and train.candidates is not None
        if protocol is None:
            protocol = train.protocol
            params = {**{k: v for k, v in train.params.items() if k not in ("cut",)}, **params}
        train = train.train
    if protocol in (None, "given"):
        # a pre-made split: held-out candidate items look like cold-item, anything else like leave-last-out
        protocol = "cold-item" if given_candidates else "leave-last-out"
        params = {}
    if protocol == "temporal" and params.get("at") is not None:
        params.pop("quantile", None)
    elif protocol == "temporal":
        params.pop("at", None)
    split = make_split(train, protocol, **params)
    split.params = {**split.params, "validation": True}
    return split


def given_split(
    train: Dataset, test: pd.DataFrame, *, candidates: Sequence[object] | None = None, source: str = "test"
) -> Split:
    """A split made elsewhere (e.g. the benchmark's files): ``test`` events must use catalog items."""
    for col in ("user_id", "item_id"):
        if col not in test.columns:
            raise DataError("missing column", file=source, column=col)
    t = test.copy()
    t["item_id"] = t["item_id"].astype(str)
    unknown = ~ids_in(t["item_id"], train.item_vocab.ids)
    if unknown.any():
        first = int(np.flatnonzero(unknown)[0])
        raise DataError(
            f"item {t['item_id'].iloc[first]!r} is not in the catalog",
            file=source,
            row=first + 2,
            column="item_id",
        )
    test_ds = train.with_interactions(t, name=f"{train.name}-test")
    cands = None if candidates is None else [str(c) for c in candidates]
    if cands is not None:
        missing = [c for c in cands if c not in train.item_vocab]
        if missing:
            raise DataError(f"{len(missing)} candidate items are not in the catalog (first: {missing[0]!r})")
    return Split(train, test_ds, "given", cands, {"source": source})
