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
