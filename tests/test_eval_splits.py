"""Splits: no leakage, cold items absent from train, validation cut from train only, determinism."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tokrec.data.dataset import Dataset
from tokrec.errors import ConfigError
from tokrec.evaluation.splits import (
    Split,
    cold_item_split,
    cold_user_split,
    given_split,
    leave_last_out,
    make_split,
    temporal_split,
    validation_split,
)


def _dataset(n_users: int = 40, n_items: int = 60, n_events: int = 900, seed: int = 3) -> Dataset:
    rng = np.random.default_rng(seed)
    inter = pd.DataFrame(
        {
            "user_id": [f"u{u}" for u in rng.integers(0, n_users, n_events)],
            "item_id": [str(i) for i in rng.integers(0, n_items, n_events)],
            "timestamp": rng.integers(0, 1000, n_events),  # many ties
        }
    )
    items = pd.DataFrame(
        {"item_id": [str(i) for i in range(n_items)], "title": [f"t{i}" for i in range(n_items)]}
    )
    return Dataset(inter, items, name="toy")


def _pairs(ds: Dataset) -> pd.DataFrame:
    return ds.interactions[["user_id", "item_id", "timestamp"]]


def _assert_partition(ds: Dataset, split: Split) -> None:
    """train and test are disjoint sets of the original rows and together give them all back."""
    both = pd.concat([_pairs(split.train), _pairs(split.test)])
    key = ["user_id", "item_id", "timestamp"]
    assert (
        both.sort_values(key)
        .reset_index(drop=True)
        .equals(_pairs(ds).sort_values(key).reset_index(drop=True))
    )
    assert split.train.item_vocab.ids == ds.item_vocab.ids == split.test.item_vocab.ids


def test_leave_last_out_holds_out_each_users_latest_event() -> None:
    ds = _dataset()
    s = leave_last_out(ds)
    _assert_partition(ds, s)
    test = s.test.interactions
    assert test["user_id"].is_unique
    train = s.train.interactions
    for u, row in test.set_index("user_id").iterrows():
        tr = train[train["user_id"] == u]
        # nothing in train is later; on equal time the held-out event has the largest item id
        later = (tr["timestamp"] > row["timestamp"]) | (
            (tr["timestamp"] == row["timestamp"]) & (tr["item_id"].astype(int) > int(row["item_id"]))
        )
        assert not later.any()


def test_leave_last_out_n_and_min_train() -> None:
    inter = pd.DataFrame(
        {
            "user_id": ["a"] * 4 + ["b"] * 2,
            "item_id": ["1", "2", "3", "4", "1", "2"],
            "timestamp": [1, 2, 3, 4, 1, 2],
        }
    )
    ds = Dataset(inter, pd.DataFrame({"item_id": ["1", "2", "3", "4"]}))
    s = leave_last_out(ds, n=2, min_train=1)
    # b has 2 events < n + min_train = 3: stays wholly in train
    assert s.test.interactions[["user_id", "item_id"]].values.tolist() == [["a", "3"], ["a", "4"]]
    assert len(s.train) == 4


def test_source_order_tie_break() -> None:
    inter = pd.DataFrame({"user_id": ["a"] * 3, "item_id": ["9", "10", "2"], "timestamp": [5, 5, 5]})
    ds = Dataset(inter, pd.DataFrame({"item_id": ["2", "9", "10"]}))
    assert leave_last_out(ds).test.interactions["item_id"].tolist() == ["10"]  # numeric, not "9" > "10"
    assert leave_last_out(ds, tie_break="source").test.interactions["item_id"].tolist() == ["2"]


def test_cold_item_split_keeps_held_out_items_out_of_train() -> None:
    ds = _dataset()
    s = cold_item_split(ds, fraction=0.25, seed=7)
    _assert_partition(ds, s)
    assert s.candidates is not None and len(s.candidates) == 15  # floor(0.25 * 60 items with events)
    assert not s.train.interactions["item_id"].isin(s.candidates).any()
    assert s.test.interactions["item_id"].isin(s.candidates).all()
    assert cold_item_split(ds, fraction=0.25, seed=7).candidates == s.candidates
    assert cold_item_split(ds, fraction=0.25, seed=8).candidates != s.candidates


def test_cold_user_split_gives_history_and_holds_out_the_rest() -> None:
    ds = _dataset()
    s = cold_user_split(ds, fraction=0.25, seed=1, history=2)
    _assert_partition(ds, s)
    cold = set(s.test.interactions["user_id"])
    assert len(cold) == 10
    train = s.train.interactions
    test = s.test.interactions
    for u in cold:
        tr, te = train[train["user_id"] == u], test[test["user_id"] == u]
        assert len(tr) == 2  # the first two events are history
        assert tr["timestamp"].max() <= te["timestamp"].min()
    s0 = cold_user_split(ds, fraction=0.25, seed=1, history=0)
    assert not s0.train.interactions["user_id"].isin(set(s0.test.interactions["user_id"])).any()


def test_temporal_split_cuts_at_a_time() -> None:
    ds = _dataset()
    s = temporal_split(ds, quantile=0.7, drop_repeats=False, keep_new_users=True)
    _assert_partition(ds, s)
    cut = s.params["cut"]
    assert s.train.interactions["timestamp"].max() < cut <= s.test.interactions["timestamp"].min()
    strict = temporal_split(ds, at=cut)
    tr, te = strict.train.interactions, strict.test.interactions
    seen = set(zip(tr["user_id"], tr["item_id"], strict=True))
    assert not any(p in seen for p in zip(te["user_id"], te["item_id"], strict=True))  # repeats dropped
    assert te["user_id"].isin(set(tr["user_id"])).all()  # new users dropped


@pytest.mark.parametrize("protocol", ["leave-last-out", "temporal", "cold-item", "cold-user"])
def test_validation_is_cut_from_train_only_and_deterministic(protocol: str) -> None:
    ds = _dataset()
    s = make_split(ds, protocol)
    v = validation_split(s)
    assert v.protocol == protocol and v.params["validation"] is True
    key = ["user_id", "item_id", "timestamp"]
    train_rows = set(map(tuple, _pairs(s.train).values.tolist()))
    test_rows = set(map(tuple, _pairs(s.test).values.tolist()))
    for part in (v.train, v.test):
        rows = set(map(tuple, part.interactions[key].values.tolist()))
        assert rows <= train_rows
        assert not rows & test_rows
    v2 = validation_split(make_split(ds, protocol))
    assert v2.test.interactions.equals(v.test.interactions)
    assert v2.candidates == v.candidates


def test_given_split_and_errors() -> None:
    ds = _dataset()
    s = given_split(ds, pd.DataFrame({"user_id": ["u1"], "item_id": [3]}), candidates=[3, 4])
    assert s.protocol == "given" and s.candidates == ["3", "4"]
    with pytest.raises(Exception, match="row 3.*item_id"):
        given_split(ds, pd.DataFrame({"user_id": ["u1", "u2"], "item_id": ["3", "nope"]}), source="t.csv")
    assert validation_split(s).protocol == "cold-item"  # held-out candidates: validate the same way
    assert validation_split(
        given_split(ds, pd.DataFrame({"user_id": ["u1"], "item_id": ["3"]}))
    ).protocol == ("leave-last-out")
    with pytest.raises(ConfigError, match="unknown protocol"):
        make_split(ds, "random")
    with pytest.raises(ConfigError, match="fraction"):
        cold_item_split(ds, fraction=1.5)
    with pytest.raises(ConfigError, match="exactly one"):
        temporal_split(ds)


@pytest.mark.realdata
def test_rebuilds_the_benchmark_splits(shared: Path, ml100k_splits: Path) -> None:
    raw = shared / "data" / "ml-100k" / "u.data"
    if not raw.exists():
        pytest.skip(f"{raw} is absent")
    events = pd.read_csv(raw, sep="\t", names=["user_id", "item_id", "value", "timestamp"])
    ds = Dataset(events, pd.read_csv(ml100k_splits / "items.csv", dtype=str))
    warm = leave_last_out(ds).test.interactions[["user_id", "item_id"]]
    ref = pd.read_csv(ml100k_splits / "warm" / "test.csv", dtype=str)[["user_id", "item_id"]]
    key = ["user_id", "item_id"]
    assert warm.sort_values(key).reset_index(drop=True).equals(ref.sort_values(key).reset_index(drop=True))
    cold = cold_item_split(ds, fraction=0.2, seed=0)
    ref_c = pd.read_csv(ml100k_splits / "cold" / "candidates.csv", dtype=str)["item_id"].tolist()
    assert cold.candidates == ref_c
    assert len(cold.test) == len(pd.read_csv(ml100k_splits / "cold" / "test.csv"))
