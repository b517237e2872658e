"""Defects found by the QA pass on the HTTP service: bounded event values (the policy's reward), a state log
that cannot poison a restart, exploration vs re-ranking, ids ending in /similar, ids the loaders refuse,
a strict explore_share, and the smaller API inconsistencies."""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient

from test_serve_support import HashingEncoder, make_bundle
from tokrec.errors import ConfigError
from tokrec.serve.app import create_app
from tokrec.serve.store import Event

KEY = {"X-API-Key": "k"}
JSON = {**KEY, "Content-Type": "application/json"}
POLICY = {"policy": "linucb", "mode": "shared", "dim": 8, "alpha": 2.0}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return make_bundle(tmp_path_factory.mktemp("hardening") / "model")


def _client(model_dir, **settings) -> TestClient:
    settings = {"api_key": "k", "persist": False, **settings}
    return TestClient(create_app(model_dir, settings=settings, encoder=HashingEncoder()))


def _items(resp) -> list[tuple[str, bool]]:
    assert resp.status_code == 200, resp.text
    return [(it["item_id"], it["explored"]) for it in resp.json()["items"]]


def _finite_policy(client: TestClient) -> bool:
    policy = client.app.state.service.engine.policy
    return all(np.isfinite(v).all() for v in policy._arrays().values())


# ---- D1, D3: event values ----------------------------------------------------------------------------
def test_event_values_are_bounded_and_huge_numbers_get_422_not_500(model_dir):
    with _client(model_dir) as c:

        def post(value: str):
            body = '{"events": [{"user_id": "u3", "item_id": "jazz-1", "value": ' + value + "}]}"
            return c.post("/events", content=body.encode(), headers=JSON)

        for value in ("1e308", "-1e308", "1000001", "-1000000.5", "1" + "0" * 400, "-1" + "0" * 400):
            r = post(value)
            assert r.status_code == 422, (value[:10], r.text)
            assert "events.0.value" in r.json()["error"]
        r = post("1" + "0" * 5000)  # over Python's int-parsing limit: json cannot read it at all
        assert r.status_code == 422 and r.json()["error"].startswith("invalid JSON")
        for value in ("NaN", "Infinity", "1e400"):
            r = post(value)
            assert r.status_code == 422 and "finite" in r.json()["error"], r.text
        assert post("1000000").json()["accepted"] == 1  # the bound itself
        assert post("-1000000").json()["accepted"] == 1
        assert c.get("/health").json()["events"] == 2


def test_an_extreme_event_in_the_log_or_store_cannot_kill_exploration(model_dir, tmp_path):
    state = tmp_path / "state.sqlite"
    ask = {"user_id": "jazz-u1", "k": 4, "explore_share": 1}
    good = {"user_id": "jazz-u1", "item_id": "jazz-3", "event": "click", "timestamp": 2000}
    with _client(model_dir, policy=POLICY, persist=True, state_path=str(state)) as c:
        r = c.post("/events", json={"events": [{**good, "value": 1e308}]}, headers=KEY)
        assert r.status_code == 422 and "less than or equal to 1000000" in r.json()["error"]
        assert c.post("/events", json={"events": [good]}, headers=KEY).json()["accepted"] == 1
        before = _items(c.post("/recommend", json=ask))
        assert sum(ex for _, ex in before) >= 2  # explore_share 1: items outside the model's top 4
        engine = c.app.state.service.engine
        # events that bypassed the validation (an older version; another process on Redis): refused, counted
        huge = [
            Event("ghost", "jazz-1", "click", 2001, 1e308),
            Event("ghost", "jazz-2", "click", 2002, -1e308),
        ]
        engine.add_events(huge)
        assert _items(c.post("/recommend", json=ask)) == before
        assert engine.policy_refused == 2 and engine.policy.n_updates_ == 1 and _finite_policy(c)
        gauges = c.get("/metrics", params={"format": "json"}).json()["gauges"]
        assert gauges["policy_updates_refused"] == 2
        # what an older, laxer version logged: a bad value and a NUL id, replayed at the next start-up
        c.app.state.service.log.append_events([*huge, Event("nul\x00id", "jazz-4", "click", 2003, 1.0)])
    with _client(model_dir, policy=POLICY, persist=True, state_path=str(state)) as again:
        engine = again.app.state.service.engine
        assert again.get("/health").json()["events"] == 1  # the two bad ones were not replayed
        assert engine.policy.n_updates_ == 1 and engine.policy_refused == 0 and _finite_policy(again)
        assert _items(again.post("/recommend", json=ask)) == before  # exploration as before


# ---- D2: exploration or re-ranking ---------------------------------------------------------------------
def test_a_request_s_rerank_wins_over_the_server_s_exploration_and_both_explicit_is_422(model_dir):
    with _client(model_dir) as plain:  # no policy: the reference lists
        model_top = [i for i, _ in _items(plain.post("/recommend", json={"user_id": "jazz-u1", "k": 4}))]
        mmr = _items(plain.post("/recommend", json={"user_id": "jazz-u1", "k": 4, "rerank": "mmr:0.9"}))
    assert [i for i, _ in mmr] != model_top
    with _client(model_dir, policy=POLICY, explore_share=0.5) as c:
        got = _items(c.post("/recommend", json={"user_id": "jazz-u1", "k": 4}))
        assert any(ex for _, ex in got) and [i for i, _ in got[:2]] == model_top[:2]  # the server's default
        assert _items(c.post("/recommend", json={"user_id": "jazz-u1", "k": 4, "rerank": "mmr:0.9"})) == mmr
        zero = {"user_id": "jazz-u1", "k": 4, "rerank": "mmr:0.9", "explore_share": 0}
        assert _items(c.post("/recommend", json=zero)) == mmr
        both = c.post("/recommend", json={**zero, "explore_share": 0.5})
        assert both.status_code == 422 and "not both" in both.json()["error"]
    with _client(model_dir, policy=POLICY, explore_share=0.0, rerank="mmr:0.9") as c:
        assert _items(c.post("/recommend", json={"user_id": "jazz-u1", "k": 4})) == mmr  # server's default
        r = _items(c.post("/recommend", json={"user_id": "jazz-u1", "k": 4, "explore_share": 0.5}))
        assert r == got  # exploration, without the server's re-ranker
        r = _items(c.post("/recommend", json={"user_id": "jazz-u1", "k": 4, "rerank": ""}))
        assert r == [(i, False) for i in model_top]


def test_a_default_rerank_with_a_policy_that_explores_is_refused_at_start_up(model_dir):
    with pytest.raises(ConfigError, match="do not combine"):
        create_app(
            model_dir,
            settings={"persist": False, "policy": POLICY, "explore_share": 0.2, "rerank": "mmr:0.3"},
        )
    with pytest.raises(ConfigError, match="needs a policy"):
        create_app(model_dir, settings={"persist": False, "explore_share": 0.2})
    with pytest.raises(ConfigError, match="unknown re-ranker"):
        create_app(model_dir, settings={"persist": False, "rerank": "shuffle:0.3"})

    from tokrec.cli.main import build_parser
    from tokrec.cli.serve import settings_from_args

    base = [
        "serve",
        "--model",
        "m",
        "--policy",
        '{"policy": "linucb", "mode": "shared"}',
        "--rerank",
        "mmr:0.3",
    ]
    with pytest.raises(ConfigError) as err:
        settings_from_args(build_parser().parse_args(base))
    assert "--explore-share 0" in str(err.value) and "\n" not in str(err.value)
    st = settings_from_args(build_parser().parse_args([*base, "--explore-share", "0"]))
    assert st.rerank == "mmr:0.3" and st.explore_share == 0.0 and st.policy["policy"] == "linucb"


# ---- D4: ids ending in /similar --------------------------------------------------------------------------
def test_an_id_ending_in_similar_is_reachable_with_encoded_slashes(model_dir):
    with _client(model_dir) as c:
        items = [
            {"item_id": "a/b/similar", "title": "Slashy bebop saxophone", "genres": "Music"},
            {"item_id": "a/b", "title": "Plain bebop trumpet", "genres": "Music"},
        ]
        assert c.post("/items", json={"items": items}, headers=KEY).status_code == 200
        r = c.get("/items/a%2Fb%2Fsimilar")
        assert r.status_code == 200 and r.json()["item_id"] == "a/b/similar"
        assert r.json()["label"] == "Slashy bebop saxophone"
        r = c.get("/items/a/b%2Fsimilar")
        assert r.status_code == 200 and r.json()["item_id"] == "a/b/similar"
        sim = c.get("/items/a%2Fb%2Fsimilar/similar", params={"k": 3})
        assert sim.status_code == 200 and sim.json()["item_id"] == "a/b/similar"
        assert len(sim.json()["items"]) == 3
        sim = c.get("/items/a/b/similar", params={"k": 3})  # a literal /similar: a/b's similar items
        assert sim.status_code == 200 and sim.json()["item_id"] == "a/b"
        assert "a/b/similar" in [it["item_id"] for it in sim.json()["items"]]
        assert c.get("/items/a%2Fc%2Fsimilar").json() == {"error": "unknown item 'a/c/similar'"}


# ---- D5: ids the loaders refuse --------------------------------------------------------------------------
@pytest.mark.parametrize("bad", ["   ", "\t", "nul\x00id", "esc\x1bid", "line\u2028sep", "del\x7f"])
def test_blank_ids_and_control_characters_get_422(model_dir, bad):
    with _client(model_dir) as c:
        requests = [
            ("/items", {"items": [{"item_id": bad, "title": "Spaces"}]}, "items.0.item_id"),
            ("/events", {"events": [{"user_id": bad, "item_id": "jazz-1"}]}, "events.0.user_id"),
            ("/events", {"events": [{"user_id": "u", "item_id": bad}]}, "events.0.item_id"),
            ("/recommend", {"user_id": bad}, "user_id"),
            ("/recommend", {"history": ["jazz-1", bad]}, "history.1"),
            ("/recommend", {"history": ["jazz-1"], "exclude": [bad]}, "exclude.0"),
        ]
        for path, body, where in requests:
            r = c.post(path, json=body, headers=KEY)
            assert r.status_code == 422, (path, r.text)
            msg = r.json()["error"]
            assert msg.startswith(f"invalid request: {where}: ") and (
                "must not be blank" in msg if not bad.strip() else "control characters" in msg
            ), msg
        h = c.get("/health").json()
        assert h["n_items"] == h["n_model_items"] and h["events"] == 0
        assert c.post("/items", json={"items": [{"item_id": " ok id ", "title": "T"}]}, headers=KEY).json()[
            "added"
        ] == [" ok id "]  # spaces inside or around a non-blank id are kept, as the loaders keep them


# ---- D6: explore_share -------------------------------------------------------------------------------------
def test_explore_share_is_strict_and_needs_a_policy(model_dir):
    with _client(model_dir) as c:
        for share in ("0.5", True, [0.5], 2, -0.1):
            r = c.post("/recommend", json={"user_id": "jazz-u1", "explore_share": share})
            assert r.status_code == 422 and "explore_share" in r.json()["error"], (share, r.text)
        r = c.post("/recommend", content=b'{"user_id": "jazz-u1", "explore_share": NaN}', headers=JSON)
        assert r.status_code == 422 and "finite" in r.json()["error"]
        r = c.post("/recommend", json={"user_id": "jazz-u1", "explore_share": 0.5})
        assert r.status_code == 422 and "no bandit policy" in r.json()["error"]
        ok = c.post("/recommend", json={"user_id": "jazz-u1", "explore_share": 0, "k": 3})
        assert len(_items(ok)) == 3
    with _client(model_dir, policy=POLICY) as c:
        got = _items(c.post("/recommend", json={"user_id": "jazz-u1", "k": 4, "explore_share": 1}))
        assert any(ex for _, ex in got) and got[0] == ("jazz-10", False)


# ---- D7: error texts, HEAD, unreadable bodies ------------------------------------------------------------
def test_api_errors_name_fields_not_cli_flags_head_works_and_unreadable_bodies_get_422(model_dir):
    with _client(model_dir) as c:
        for spec, says in (
            ("foo:0.3", "rerank: unknown re-ranker 'foo'"),
            ("mmr:2", "rerank: weight of mmr must lie in [0, 1]"),
            ("mmr:auto", "not auto"),
        ):
            r = c.post("/recommend", json={"history": ["jazz-0"], "rerank": spec})
            assert r.status_code == 422 and says in r.json()["error"] and "--" not in r.json()["error"], (
                r.text
            )
        for path in ("/", "/health"):
            r = c.head(path)
            assert r.status_code == 200 and r.content == b"", path
        assert c.head("/health").headers["content-type"] == "application/json"
        r = c.post("/recommend", content=b'{"history": ["jazz-0", "\xff"]}', headers=JSON)
        assert r.status_code == 422 and r.json()["error"].startswith("invalid JSON")
        r = c.post("/recommend", content=b"[" * 5000 + b"]" * 5000, headers=JSON)
        assert r.status_code == 422 and r.json()["error"].startswith("invalid JSON")


def test_encoded_similar_ids_and_head_under_uvicorn(model_dir):
    """The same routing through a real server (uvicorn passes the still-encoded path on)."""
    import httpx

    from test_serve_support import ThreadServer

    app = create_app(model_dir, settings={"persist": False}, encoder=HashingEncoder())
    with ThreadServer(app) as srv, httpx.Client(base_url=srv.url, timeout=30) as c:
        item = {"item_id": "x/similar", "title": "Bebop trumpet night", "genres": "Music"}
        assert c.post("/items", json={"items": [item]}).status_code == 200
        assert c.get("/items/x%2Fsimilar").json()["label"] == "Bebop trumpet night"
        assert c.get("/items/x%2Fsimilar/similar?k=2").json()["item_id"] == "x/similar"
        assert c.get("/items/x/similar").json() == {"error": "unknown item 'x'"}
        head = c.head("/health")
        assert head.status_code == 200 and head.content == b""
