"""Every endpoint of the HTTP API, online items/events, restart persistence and the API key."""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient

from test_serve_support import HashingEncoder, make_bundle, toy_registry  # noqa: F401
from tokrec.errors import ConfigError
from tokrec.serve.app import create_app
from tokrec.serve.bundle import load_bundle

KEY = {"X-API-Key": "s3cret"}


@pytest.fixture
def bundle_dir(tmp_path, toy_registry):  # noqa: F811
    return make_bundle(tmp_path / "model")


def _client(path, **settings) -> TestClient:
    settings.setdefault("api_key", "s3cret")
    return TestClient(create_app(path, settings=settings, encoder=HashingEncoder()))


def _ids(resp) -> list[str]:
    assert resp.status_code == 200, resp.text
    return [it["item_id"] for it in resp.json()["items"]]


def test_bundle_roundtrip(bundle_dir):
    b = load_bundle(bundle_dir)
    assert b.n_items == 48 and b.item_vectors.shape == (48, 256) and b.item_vectors.dtype == np.float32
    assert b.model.item_vocab_.to_list() == b.items["item_id"].tolist()
    assert b.template["fields"] == ["title", "genres"]  # the default template, pinned to the catalog
    assert b.encoder.fingerprint == "test-hashing-256"
    assert not any(p.suffix in (".pkl", ".pickle") for p in bundle_dir.rglob("*"))
    with pytest.raises(ConfigError, match="no bundle.json"):
        load_bundle(bundle_dir / "model")


def test_bundle_shares_the_model_s_item_vectors(bundle_dir, tmp_path):
    b = load_bundle(bundle_dir)
    # tokrec keeps the encoder's unit-length vectors: the service reads the model's array, not a second copy
    assert b.model.name == "tokrec" and b.item_vectors is b.model.vectors_
    with _client(bundle_dir) as c:
        engine = c.app.state.service.engine
        loaded = engine.model
        assert engine.index.shares(loaded.vectors_)
        # a loaded model's per-item arrays have spare rows: the first item added online is written in place
        r = c.post("/items", json={"items": [{"item_id": "new-1", "title": "Space Opera"}]}, headers=KEY)
        assert r.status_code == 200, r.text
        grown = engine.model
        assert grown is not loaded and len(grown.vectors_) == len(loaded.vectors_) + 1
        assert np.shares_memory(grown.vectors_, loaded.vectors_)
        assert np.shares_memory(grown.features_, loaded.features_) and engine.index.shares(grown.vectors_)
        # the text-neighbour lists too: the new item's row is appended, the loaded model's rows are untouched
        nb, old = grown.neighbours_, loaded.neighbours_
        assert nb.shape[0] == old.shape[0] + 1 and np.shares_memory(nb.data, old.data)
        assert (nb[: old.shape[0]] != old).nnz == 0 and nb[old.shape[0]].nnz > 0
    # a model that keeps other vectors (here none) leaves the bundle its own array
    pop = load_bundle(make_bundle(tmp_path / "pop", model="popularity"))
    assert pop.item_vectors.shape == (48, 256) and getattr(pop.model, "vectors_", None) is None


def test_recommend_history_explains_and_reports_unknown(bundle_dir):
    with _client(bundle_dir) as c:
        r = c.post("/recommend", json={"history": ["space-1", "space-2", "no-such-item"], "k": 5})
        body = r.json()
        assert _ids(r) and all(i.startswith("space-") for i in _ids(r))
        assert not {"space-1", "space-2"} & set(_ids(r))
        assert body["ignored"] == ["no-such-item"] and body["history_length"] == 2 and body["mode"] == "exact"
        for it in body["items"]:
            sims = [b for b in it["because"] if b["kind"] == "similar_item"]
            attrs = [b for b in it["because"] if b["kind"] == "attribute"]
            assert sims and {b["item_id"] for b in sims} <= {"space-1", "space-2"}
            assert {"attribute": "genres", "value": "Space", "count": 2}.items() <= attrs[0].items()
        scores = [it["score"] for it in body["items"]]
        assert scores == sorted(scores, reverse=True)


def test_recommend_user_candidates_exclude(bundle_dir):
    b = load_bundle(bundle_dir)
    trained = set(b.model.item_vocab_.decode(b.model.seen_[b.model.user_vocab_.get("jazz-u1")]))
    with _client(bundle_dir) as c:
        got = _ids(c.post("/recommend", json={"user_id": "jazz-u1", "k": 48}))
        assert len(got) == 48 - len(trained) and not trained & set(got)
        seen_ok = _ids(c.post("/recommend", json={"user_id": "jazz-u1", "k": 48, "exclude_seen": False}))
        assert trained <= set(seen_ok)
        cands = ["kitchen-1", "kitchen-2", "garden-3", sorted(trained)[0], "ghost"]
        r = c.post(
            "/recommend", json={"user_id": "jazz-u1", "k": 10, "candidates": cands, "exclude": ["kitchen-2"]}
        )
        assert set(_ids(r)) == {"kitchen-1", "garden-3"} and r.json()["ignored"] == ["ghost"]
        assert r.json()["mode"] == "candidates"
        # an unknown user with no events: nothing to go on but the model's popularity
        assert len(_ids(c.post("/recommend", json={"user_id": "stranger", "k": 3}))) == 3


def test_new_item_is_recommended_at_once(bundle_dir):
    history = ["garden-0", "garden-7", "garden-2"]  # compost tulip, tulip seedling, hedge seedling
    with _client(bundle_dir) as c:
        item = {
            "item_id": "g-new",
            "title": "Tulip seedling compost garden",
            "genres": ["Outdoors", "Misc2"],
            "price": 3,
        }
        r = c.post("/items", json={"items": [item]}, headers=KEY)
        assert r.status_code == 200 and r.json() == {"added": ["g-new"], "updated": [], "n_items": 49}
        # the model's own cold path: the new item (no events) is scored at once, on the same scale as the
        # catalog (a finite score in the one list; ranked by content against items without garden evidence)
        after = _ids(c.post("/recommend", json={"history": history, "k": 45}))
        assert "g-new" in after and len(after) == 45
        others = ["g-new", "kitchen-1", "jazz-2", "space-3"]
        got = _ids(c.post("/recommend", json={"history": history, "k": 4, "candidates": others}))
        assert got[0] == "g-new"
        with _client(bundle_dir) as again:  # another server: replays the log into its model
            assert _ids(again.post("/recommend", json={"history": history, "k": 45})) == after
        detail = c.get("/items/g-new").json()
        assert detail == {
            "item_id": "g-new",
            "label": item["title"],
            "attributes": {"title": item["title"], "genres": ["Outdoors", "Misc2"], "price": 3},
        }
        assert _ids(c.get("/items/garden-7/similar?k=3"))[0] == "g-new"
        # updating an item re-encodes it from its merged attributes: now it reads like jazz
        r = c.post(
            "/items",
            json={"items": [{"item_id": "g-new", "title": "Saxophone trumpet bebop quartet jazz"}]},
            headers=KEY,
        )
        assert r.json()["updated"] == ["g-new"] and r.json()["n_items"] == 49
        assert "g-new" not in _ids(c.post("/recommend", json={"history": history, "k": 5}))
        assert (
            _ids(
                c.post(
                    "/recommend",
                    json={"history": ["jazz-0", "jazz-1"], "k": 3, "candidates": ["g-new", "garden-5"]},
                )
            )[0]
            == "g-new"
        )
        assert c.get("/items/g-new").json()["attributes"]["genres"] == ["Outdoors", "Misc2"]


def test_events_update_user_at_once(bundle_dir):
    with _client(bundle_dir) as c:
        evs = [
            {"user_id": "newbie", "item_id": f"kitchen-{j}", "event": "click", "timestamp": 100 + j}
            for j in range(3)
        ]
        evs.append({"user_id": "newbie", "item_id": "not-an-item"})
        r = c.post("/events", json={"events": evs}, headers=KEY)
        assert r.json() == {
            "accepted": 3,
            "ignored": [{"index": 3, "item_id": "not-an-item", "reason": "unknown item"}],
        }
        got = _ids(c.post("/recommend", json={"user_id": "newbie", "k": 5}))
        assert all(i.startswith("kitchen-") for i in got) and not {
            "kitchen-0",
            "kitchen-1",
            "kitchen-2",
        } & set(got)
        # a known jazz user who now clicks garden items drifts towards garden (recency weighting)
        evs = [{"user_id": "jazz-u2", "item_id": f"garden-{j}", "event": "purchase"} for j in range(6)]
        assert c.post("/events", json={"events": evs}, headers=KEY).json()["accepted"] == 6
        got = _ids(c.post("/recommend", json={"user_id": "jazz-u2", "k": 3}))
        assert all(i.startswith("garden-") for i in got) and not {f"garden-{j}" for j in range(6)} & set(got)
        # a dislike marks the item seen but does not pull the user towards it
        c.post(
            "/events",
            json={"events": [{"user_id": "newbie", "item_id": "kitchen-5", "event": "dislike"}]},
            headers=KEY,
        )
        assert "kitchen-5" not in _ids(c.post("/recommend", json={"user_id": "newbie", "k": 47}))
        assert c.get("/health").json()["events"] == 10


def test_similar_search_health_metrics_page_docs(bundle_dir):
    with _client(bundle_dir) as c:
        r = c.get("/items/space-3/similar?k=4")
        got = _ids(r)
        assert len(got) == 4 and "space-3" not in got and got[0].startswith("space-")
        assert r.json()["items"][0]["because"][0]["item_id"] == "space-3"
        assert c.get("/items/nope/similar").status_code == 404
        assert c.get("/items/space-3/similar?k=0").status_code == 422
        assert c.get("/items/space-3/similar?k=5000").status_code == 422  # over max_k
        hits = c.get("/items?q=JAZZ 1").json()["items"]
        assert {h["item_id"] for h in hits} == {"jazz-1", "jazz-10", "jazz-11"}
        assert c.get("/items?q=").json() == {"items": []}
        assert c.get("/items/nope").status_code == 404
        h = c.get("/health").json()
        assert (
            h["status"] == "ok"
            and h["n_items"] == 48
            and h["model"] == "tokrec"
            and h["retrieval"] == "exact"
            and h["auth"]
        )
        text = c.get("/metrics").text
        assert (
            'tokrec_requests_total{method="GET",route="/items/{item_id:path}/similar",status="200"} 1' in text
        )
        assert (
            'tokrec_requests_total{method="GET",route="/items/{item_id:path}/similar",status="404"} 1' in text
        )
        assert 'tokrec_request_latency_seconds{route="/health",quantile="0.99"}' in text
        assert "tokrec_catalog_items 48" in text
        js = c.get("/metrics?format=json").json()
        assert js["latency_seconds"]["/items"]["p50"] > 0
        page = c.get("/")
        assert (
            page.status_code == 200
            and "text/html" in page.headers["content-type"]
            and 'id="search"' in page.text
        )
        assert c.get("/static/app.js").status_code == 200
        docs = c.get("/docs")
        assert docs.status_code == 200 and "http" not in docs.text  # no CDN, no other host
        for src in ("/static/docs/swagger-ui-bundle.js", "/static/docs/swagger-ui.css"):
            assert src in docs.text and c.get(src).status_code == 200  # served locally: works offline
        paths = c.get("/openapi.json").json()["paths"]
        assert {"/recommend", "/events", "/items", "/items/{item_id}/similar", "/health", "/metrics"} <= set(
            paths
        )
        k = c.get("/openapi.json").json()["components"]["schemas"]["RecommendRequest"]["properties"]["k"]
        assert k["maximum"] == 1000  # the schema states the limit the server enforces (max_k)
        assert c.post("/recommend", json={"history": ["space-1"], "k": 1001}).status_code == 422


def test_api_key_guards_writes_only(bundle_dir):
    ev = {"events": [{"user_id": "a", "item_id": "space-1"}]}
    item = {"items": [{"item_id": "z", "title": "Z"}]}
    with _client(bundle_dir) as c:
        for path, body in (("/events", ev), ("/items", item)):
            assert c.post(path, json=body).status_code == 401
            assert c.post(path, json=body, headers={"X-API-Key": "s3cret!"}).status_code == 401
            assert c.post(path, json=body, headers={"X-API-Key": "S3CRET"}).status_code == 401
        assert c.get("/health").json()["events"] == 0 and c.get("/health").json()["n_items"] == 48
        # the key is checked before the body is read: an anonymous invalid body learns nothing about the schema
        r = c.post("/items", json={"items": [{"bogus": 1}]})
        assert r.status_code == 401 and "detail" not in r.json()
        assert c.post("/events", json=ev, headers=KEY).status_code == 200
        assert c.post("/items", json=item, headers=KEY).status_code == 200
        assert c.post("/recommend", json={"history": ["space-1"]}).status_code == 200
    with _client(bundle_dir, api_key=None) as c:
        assert c.post("/events", json=ev).status_code == 200


def test_state_survives_restart(bundle_dir, tmp_path):
    item = {"item_id": "s-new", "title": "Comet comet starship galaxy orbit", "genres": "Space"}
    with _client(bundle_dir) as c:
        c.post("/items", json={"items": [item]}, headers=KEY)
        c.post(
            "/events",
            json={"events": [{"user_id": "v1", "item_id": "s-new"}, {"user_id": "v1", "item_id": "space-4"}]},
            headers=KEY,
        )
        before = c.post("/recommend", json={"user_id": "v1", "k": 5}).json()
    with _client(bundle_dir) as c:  # a new app on the same directory: replayed from state.sqlite
        h = c.get("/health").json()
        assert h["n_items"] == 49 and h["events"] == 2
        assert c.post("/recommend", json={"user_id": "v1", "k": 5}).json() == before
        assert c.get("/items/s-new").json()["label"] == item["title"]
    with _client(bundle_dir, persist=False) as c:
        assert c.get("/health").json()["n_items"] == 48  # no log: neither read ...
        c.post("/events", json={"events": [{"user_id": "v2", "item_id": "space-1"}]}, headers=KEY)
    with _client(bundle_dir) as c:
        assert c.get("/health").json()["events"] == 2  # ... nor written
    other = tmp_path / "elsewhere" / "state.sqlite"
    with _client(bundle_dir, state_path=str(other)) as c:
        assert c.get("/health").json()["n_items"] == 48
    assert other.exists()


def test_bad_settings_and_bundle_are_config_errors(bundle_dir, tmp_path):
    with pytest.raises(ConfigError, match="invalid serve settings"):
        create_app(bundle_dir, settings={"max_kk": 3})
    with pytest.raises(ConfigError, match="not a tokrec model directory"):
        create_app(tmp_path)
    with pytest.raises(ConfigError, match="Redis"):
        create_app(bundle_dir, settings={"redis_url": "redis://127.0.0.1:1/0"})


def test_empty_history_gets_model_cold_scores(bundle_dir):
    with _client(bundle_dir) as c:
        r = c.post("/recommend", json={"history": [], "k": 4})
        assert r.status_code == 200 and len(_ids(r)) == 4
        scores = [it["score"] for it in r.json()["items"]]
        assert scores == sorted(scores, reverse=True) and scores[0] > scores[-1]
        r = c.post("/recommend", json={"history": ["ghost-1", "ghost-2"]})
        assert r.status_code == 422 and "none of the 2 item ids" in r.json()["error"]
        r = c.post("/events", json={"events": [{"user_id": "u", "item_id": "ghost"}]}, headers=KEY)
        assert r.status_code == 422 and "ghost" in r.json()["error"]


def test_item_ids_with_slashes_are_reachable(bundle_dir):
    with _client(bundle_dir) as c:
        item = {"item_id": "shop/a/b", "title": "Bebop saxophone quartet", "genres": "Music"}
        assert c.post("/items", json={"items": [item]}, headers=KEY).status_code == 200
        assert c.get("/items/shop%2Fa%2Fb").json()["item_id"] == "shop/a/b"
        assert c.get("/items/shop/a/b").json()["label"] == "Bebop saxophone quartet"
        sim = c.get("/items/shop/a/b/similar?k=3")
        assert (
            sim.status_code == 200 and sim.json()["item_id"] == "shop/a/b" and len(sim.json()["items"]) == 3
        )
