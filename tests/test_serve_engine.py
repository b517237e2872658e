"""The serving engine directly: the same ranking as batch, new items through the model's cold path, the ANN
index for similar items, blocking, timestamps."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from test_serve_support import ToyPopularity
from tokrec.data.dataset import Dataset
from tokrec.serve.engine import Engine, EngineOptions
from tokrec.serve.index import VectorIndex
from tokrec.serve.schemas import RecommendRequest as Q
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


@pytest.mark.parametrize("retrieval", [False, True], ids=["whole-catalog", "retrieval"])
def test_the_service_ranks_exactly_as_batch(clustered, retrieval):
    """One scoring path: the engine returns recommend_batch's ranking (ties included) for known users, the
    model's own recommend() ranking for a visitor's history, with the recommended model ``tokrec`` (also
    when it retrieves candidates, as it does on large catalogs)."""
    from tokrec.models import create_model

    ds, _, vecs, _ = clustered
    model = create_model("tokrec", {"retrieval_min_items": 1 if retrieval else 20_000}).fit(ds, vecs)
    assert model.uses_retrieval() == retrieval
    engine = Engine(model, ds.items, vecs, MemoryStore(), EngineOptions(), index=VectorIndex(vecs, ann=True))
    users = list(ds.user_vocab)[:25]
    batch = model.recommend_batch(users, k=20)
    for u in users:
        want = batch[batch["user_id"] == u]
        got = engine.recommend(Q(user_id=u, k=20, explain=False)).items
        assert [r.item_id for r in got] == want["item_id"].tolist()
        np.testing.assert_allclose([r.score for r in got], want["score"], rtol=1e-5, atol=1e-5)
    history = [f"i{j}" for j in (5, 77, 1203, 2999)]
    want_h = model.recommend(history=history, k=15)
    got_h = engine.recommend(Q(history=history, k=15, explain=False)).items
    assert [r.item_id for r in got_h] == [i for i, _ in want_h]


def test_items_added_online_score_as_if_fitted_with_them(clustered):
    """New items through the model's cold path: a model fitted without 300 items, which are then added
    online, ranks them as the model fitted with them in the catalog (no events either way) does."""
    from tokrec.data.dataset import Dataset
    from tokrec.models import create_model

    ds, _, vecs, _ = clustered
    new = ds.items["item_id"].isin([f"i{j}" for j in range(2700, 3000)]).to_numpy()
    inter = ds.interactions[~ds.interactions["item_id"].isin(ds.items["item_id"][new])]
    full = Dataset(inter, ds.items)
    part = Dataset(inter, ds.items[~new].reset_index(drop=True))
    batch = create_model("tokrec").fit(full, vecs)
    online = create_model("tokrec").fit(part, vecs[~new])
    engine = Engine(
        online, part.items, vecs[~new], MemoryStore(), EngineOptions(), index=VectorIndex(vecs[~new])
    )
    new_items = ds.items[new].reset_index(drop=True)
    engine.add_items(
        [
            ItemRecord(i, {"title": t, "genres": g}, v)
            for i, t, g, v in zip(
                new_items["item_id"], new_items["title"], new_items["genres"], vecs[new], strict=True
            )
        ]
    )
    cands = new_items["item_id"].tolist()
    for u in list(ds.user_vocab)[:20]:
        want = [i for i, _ in batch.recommend(u, k=10, candidates=cands)]
        got = [r.item_id for r in engine.recommend(Q(user_id=u, k=10, candidates=cands, explain=False)).items]
        assert got == want


def test_online_item_enters_the_ann_index(clustered):
    ann = _engine(clustered, True)
    vecs, cluster = clustered[2], clustered[3]
    members = np.flatnonzero(cluster == 4)[:6]
    target = vecs[members].mean(axis=0)
    ann.add_items(
        [ItemRecord("fresh", {"title": "fresh one", "genres": "C4"}, target / np.linalg.norm(target))]
    )
    assert ann.index.uses_ann
    assert "fresh" in [r.item_id for r in ann.similar(f"i{members[0]}", 5)]
    # a model without a cold path (this toy) ranks it last (not at all) until a refit; it is explained all the same
    assert "fresh" not in [
        r.item_id for r in ann.recommend(Q(history=[f"i{j}" for j in members], k=3000)).items
    ]
    because = ann.explain(ann.row_of["fresh"], members)
    assert {"kind": "attribute", "attribute": "genres", "value": "C4", "count": 6} in because


def test_blocked_items_never_come_back(clustered):
    exact = _engine(clustered, False)
    top = [r.item_id for r in exact.recommend(Q(user_id="u3", k=5)).items]
    blocked = _engine(clustered, True, blocked=tuple(top[:3]))
    again = [r.item_id for r in blocked.recommend(Q(user_id="u3", k=5)).items]
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
    the order of the rows; a dislike is neither a row nor a time; an item added online is the model's too
    (row 3000, after the fitted catalog)."""
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
    engine.recommend(Q(user_id="u5", k=3, explain=False))
    rows, times = model.calls[-1]
    train_rows = list(model.seen_[model.user_vocab_.get("u5")])
    assert rows == [*train_rows, 10, 3000, 12]
    assert times == [*range(8), 1000, 1002, 1003]  # the fixture's training events are at t = 0..7
    engine.add_events([Event("new-user", "i20", "view", 50), Event("new-user", "i21", "view", 70)])
    engine.recommend(Q(user_id="new-user", k=3, explain=False))
    assert model.calls[-1] == ([20, 21], [50, 70])


def test_items_added_online_grow_the_model_in_place_and_the_index_shares_its_vectors(clustered):
    """An online add writes the new rows into the spare capacity of the model's per-item arrays (the model
    before the add still reads its own rows, unchanged), and the service's vector index keeps reading the
    model's array instead of holding a second copy."""
    from tokrec.models import create_model

    ds, _, vecs, _ = clustered
    model = create_model("tokrec").fit(ds, vecs)
    engine = Engine(model, ds.items, model.vectors_, MemoryStore(), EngineOptions())
    assert engine.index.shares(model.vectors_)
    rng = np.random.default_rng(0)
    before = None
    for j in range(3):
        v = rng.normal(size=vecs.shape[1]).astype(np.float32)
        engine.add_items([ItemRecord(f"new-{j}", {"title": f"new {j}"}, v / np.linalg.norm(v))])
        engine.sync()
        m = engine.model
        assert len(m.vectors_) == len(ds.items) + j + 1 and engine.index.shares(m.vectors_)
        if before is not None:  # the second and third adds wrote into the first one's buffer
            assert np.shares_memory(m.vectors_, before.vectors_) and np.shares_memory(
                m.features_, before.features_
            )
            assert len(before.vectors_) == len(m.vectors_) - 1  # the earlier model's rows are its own
        before = m
    np.testing.assert_allclose(model.vectors_, vecs, atol=1e-6)  # the fitted model's rows are untouched
    # a replaced row copies (the earlier models must keep reading the old value)
    old_row = before.vectors_[0].copy()
    engine.add_items([ItemRecord(ds.items["item_id"].iloc[0], {}, -old_row)])
    engine.sync()
    assert not np.shares_memory(engine.model.vectors_, before.vectors_)
    np.testing.assert_array_equal(before.vectors_[0], old_row)
    np.testing.assert_allclose(engine.index.row(0), -old_row)
