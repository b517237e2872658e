"""The scoring engine directly: ANN mode agrees with exact mode, online items in the HNSW index, blocking."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from test_serve_support import ToyPopularity
from tokrec.data.dataset import Dataset
from tokrec.serve.engine import Engine, EngineOptions
from tokrec.serve.index import VectorIndex
from tokrec.serve.store import ItemRecord, MemoryStore


@pytest.fixture(scope="module")
def clustered():
    """3,000 items in 30 clusters of vectors, users who stay in a cluster, a popularity model."""
    rng = np.random.default_rng(7)
    n, d, k = 3000, 32, 30
    centers = rng.normal(size=(k, d))
    cluster = rng.integers(k, size=n)
    vecs = centers[cluster] + 0.6 * rng.normal(size=(n, d))
    vecs = (vecs / np.linalg.norm(vecs, axis=1, keepdims=True)).astype(np.float32)
    items = pd.DataFrame(
        {
            "item_id": [f"i{j}" for j in range(n)],
            "title": [f"item {j}" for j in range(n)],
            "genres": [f"C{c}" for c in cluster],
        }
    )
    events = []
    for u in range(200):
        members = np.flatnonzero(cluster == u % k)
        for t, j in enumerate(rng.choice(members, size=8, replace=False)):
            events.append({"user_id": f"u{u}", "item_id": f"i{j}", "timestamp": t})
    ds = Dataset(pd.DataFrame(events), items)
    model = ToyPopularity().fit(ds, vecs)
    return ds, model, vecs, cluster


def _engine(clustered, ann: bool, **opts) -> Engine:
    ds, model, vecs, _ = clustered
    return Engine(
        model, ds.items, vecs, MemoryStore(), EngineOptions(**opts), index=VectorIndex(vecs, ann=ann)
    )


def test_ann_mode_matches_exact_mode(clustered):
    exact, ann = _engine(clustered, False), _engine(clustered, True)
    assert ann.index.uses_ann and not exact.index.uses_ann
    ds = clustered[0]
    overlap = []
    for u in list(ds.user_vocab)[:40]:
        a = exact.recommend(user_id=u, k=10, explain=False)
        b = ann.recommend(user_id=u, k=10, explain=False)
        assert a.mode == "exact" and b.mode == "ann"
        overlap.append(len({r.item_id for r in a.items} & {r.item_id for r in b.items}) / 10)
    assert np.mean(overlap) >= 0.95


def test_online_item_enters_the_ann_index(clustered):
    ann = _engine(clustered, True, model_weight=0.0)
    vecs, cluster = clustered[2], clustered[3]
    members = np.flatnonzero(cluster == 4)[:6]
    history = [f"i{j}" for j in members]
    target = vecs[members].mean(axis=0)
    ann.add_items(
        [ItemRecord("fresh", {"title": "fresh one", "genres": "C4"}, target / np.linalg.norm(target))]
    )
    res = ann.recommend(history=history, k=5)
    assert res.mode == "ann" and res.items[0].item_id == "fresh"
    assert {"kind": "attribute", "attribute": "genres", "value": "C4", "count": 6} in res.items[0].because


def test_blocked_items_never_come_back(clustered):
    exact = _engine(clustered, False)
    top = [r.item_id for r in exact.recommend(user_id="u3", k=5).items]
    blocked = _engine(clustered, True, blocked=tuple(top[:3]))
    again = [r.item_id for r in blocked.recommend(user_id="u3", k=5).items]
    assert not set(top[:3]) & set(again)
    assert not set(top[:3]) & {r.item_id for r in blocked.similar(top[4], 20)}


class _TimedToy(ToyPopularity):
    """Keeps each user's training timestamps (as text-sasrec does) and records the histories scored."""

    name = "serve-toy-timed"

    def _fit(self, dataset: Dataset, item_vectors: np.ndarray | None) -> None:
        super()._fit(dataset, item_vectors)
        self.times_ = {u: t for u, t in enumerate(dataset.timestamp_sequences()) if len(t)}
        self.calls: list[tuple[list[int], list[int] | None]] = []

    def user_timestamps(self, user_row: int) -> np.ndarray | None:
        return self.times_.get(int(user_row))

    def _score_history(self, item_rows: np.ndarray, timestamps: np.ndarray | None = None) -> np.ndarray:
        self.calls.append((list(item_rows), None if timestamps is None else list(timestamps)))
        return self.pop_.copy()


def test_a_known_users_online_events_are_scored_with_the_training_timestamps(clustered):
    """The model gets the training events' times (from the model) joined with the online events' own, in
    the order of the rows; a dislike is neither a row nor a time; an item added online (not the model's)
    is dropped from both; a model that keeps no timestamps gets None."""
    from tokrec.serve.store import Event

    ds, _, vecs, _ = clustered
    model = _TimedToy().fit(ds, vecs)
    engine = Engine(model, ds.items, vecs, MemoryStore(), EngineOptions(), index=VectorIndex(vecs, ann=False))
    engine.add_items([ItemRecord("fresh", {"title": "fresh one", "genres": "C1"}, vecs[0])])
    engine.add_events(
        [
            Event("u5", "i10", "view", 1000),
            Event("u5", "i11", "dislike", 1001),
            Event("u5", "fresh", "view", 1002),
            Event("u5", "i12", "view", 1003),
        ]
    )
    engine.recommend(user_id="u5", k=3, explain=False)
    rows, times = model.calls[-1]
    train_rows = list(model.seen_[model.user_vocab_.get("u5")])
    assert rows == [*train_rows, 10, 12]
    assert times == [*range(8), 1000, 1003]  # the fixture's training events are at t = 0..7
    engine.add_events([Event("new-user", "i20", "view", 50), Event("new-user", "i21", "view", 70)])
    engine.recommend(user_id="new-user", k=3, explain=False)
    assert model.calls[-1] == ([20, 21], [50, 70])
    plain = Engine(clustered[1], ds.items, vecs, MemoryStore(), EngineOptions())
    plain.add_events([Event("u5", "i10", "view", 1000)])
    positive, _, _, t = plain.user_history("u5")
    assert t is None and positive[-1] == 10
