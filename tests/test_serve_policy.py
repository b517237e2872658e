"""Serving through a bandit policy: exploration slots (flagged and explained), new items explored at once,
learning from every event, the state rebuilt from the log after a restart."""

from __future__ import annotations

from fastapi.testclient import TestClient

from test_serve_support import HashingEncoder, make_bundle
from tokrec.serve.app import create_app

KEY = {"X-API-Key": "k"}
POLICY = {"policy": "linucb", "mode": "shared", "dim": 8, "alpha": 2.0}


def _app(path, **settings):
    settings = {"api_key": "k", "policy": POLICY, "explore_share": 0.5, **settings}
    return create_app(path, settings=settings, encoder=HashingEncoder())


def test_exploration_slots_new_items_and_learning(tmp_path):
    model_dir = make_bundle(tmp_path / "model")
    with TestClient(_app(model_dir)) as c:
        plain = c.post("/recommend", json={"user_id": "jazz-u1", "k": 4, "explore_share": 0.0}).json()[
            "items"
        ]
        assert not any(it["explored"] for it in plain)
        with TestClient(create_app(model_dir, settings={"persist": False}, encoder=HashingEncoder())) as ref:
            want = ref.post("/recommend", json={"user_id": "jazz-u1", "k": 4}).json()["items"]
        assert [it["item_id"] for it in plain] == [it["item_id"] for it in want]  # share 0: the model's list

        item = {"item_id": "g-new", "title": "Bebop saxophone quartet jazz night", "genres": "Music"}
        assert c.post("/items", json={"items": [item]}, headers=KEY).status_code == 200
        got = c.post("/recommend", json={"user_id": "jazz-u1", "k": 4}).json()["items"]
        explored = [it for it in got if it["explored"]]
        assert len(explored) == 2 and [it["item_id"] for it in got[:2]] == [it["item_id"] for it in plain[:2]]
        assert all(it["because"][0]["kind"] == "explore" for it in explored)
        assert "g-new" in {it["item_id"] for it in explored}  # a new item is shown at once, to learn

        service = c.app.state.service
        before = service.engine.policy.n_updates_
        evs = [
            {"user_id": "jazz-u1", "item_id": "g-new", "event": "click", "timestamp": 2000},
            {"user_id": "jazz-u1", "item_id": "space-1", "event": "skip", "timestamp": 2001},
        ]
        assert c.post("/events", json={"events": evs}, headers=KEY).json()["accepted"] == 2
        c.post("/recommend", json={"user_id": "jazz-u1", "k": 4})
        assert service.engine.policy.n_updates_ == before + 2
        learnt = service.engine.policy.n_updates_
    with TestClient(_app(model_dir)) as again:  # restart: the policy is rebuilt from the state log
        again.post("/recommend", json={"user_id": "jazz-u1", "k": 4})
        assert again.app.state.service.engine.policy.n_updates_ == learnt
    bad = TestClient(_app(model_dir)).post("/recommend", json={"user_id": "jazz-u1", "explore_share": 2})
    assert bad.status_code == 422


def test_rerankers_in_the_service(tmp_path):
    import numpy as np

    model_dir = make_bundle(tmp_path / "model")
    with TestClient(create_app(model_dir, settings={"persist": False}, encoder=HashingEncoder())) as c:
        vecs = c.app.state.service.engine.index
        row = c.app.state.service.engine.row_of

        def ild(ids: list[str]) -> float:
            v = vecs.take([row[i] for i in ids])
            sim = v @ v.T
            return float((sim.sum() - np.trace(sim)) / (len(ids) * (len(ids) - 1)))

        def ask(**extra) -> list[str]:
            r = c.post("/recommend", json={"history": ["jazz-0", "jazz-1", "jazz-2"], "k": 8, **extra})
            assert r.status_code == 200, r.text
            return [it["item_id"] for it in r.json()["items"]]

        base, diverse = ask(), ask(rerank="mmr:0.9")
        assert len(diverse) == 8 and diverse != base and ild(diverse) < ild(base)
        dpp = ask(rerank="dpp:0.9@20")
        assert len(dpp) == 8 and dpp != base and ild(dpp) < ild(base)
        sdpp = ask(rerank="sdpp:0.9@20")
        assert len(sdpp) == 8 and sdpp != base and ild(sdpp) < ild(base)
        scales = c.app.state.service.engine._score_scales
        assert len(scales) == 1 and list(scales.values())[0] > 0  # computed once, from the training users
        ask(rerank="sdpp:0.5")
        assert len(scales) == 1
        # propensity: the training popularity reaches the service (it used to have none)
        engine = c.app.state.service.engine
        tail = ask(rerank="propensity:1.0")
        assert len(tail) == 8 and engine._log_pop is not None
        pop = {engine.ids[r]: engine._log_pop[r] for r in range(len(engine._log_pop))}
        assert sum(pop[i] for i in tail) < sum(pop[i] for i in base)
        # tail: every one of the 8 slots goes to an item outside the training short head
        head = {engine.ids[r] for r in np.flatnonzero(engine._in_head)}
        assert sum(i not in head for i in base) == 6  # the base list has 6
        quota = ask(rerank="tail:1.0")
        assert len(quota) == 8 and all(i not in head for i in quota)
        cal = ask(rerank="calibration:1.0")
        assert len(cal) == 8 and sum(i.startswith("jazz-") for i in cal) >= sum(
            i.startswith("jazz-") for i in base
        )
        assert c.post("/recommend", json={"history": ["jazz-0"], "rerank": "shuffle:1"}).status_code == 422
        assert c.post("/recommend", json={"history": ["jazz-0"], "rerank": "tail:auto"}).status_code == 422
