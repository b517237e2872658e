"""Two app instances sharing state through a real redis-server (skipped where the binary is absent)."""

from __future__ import annotations

import shutil
import subprocess
import time

import pytest
from fastapi.testclient import TestClient

from test_serve_support import HashingEncoder, free_port, make_bundle, toy_registry  # noqa: F401
from tokrec.serve.app import create_app

pytestmark = pytest.mark.redis
KEY = {"X-API-Key": "k"}


@pytest.fixture
def redis_url(tmp_path):
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    port = free_port()
    proc = subprocess.Popen(
        [
            exe,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        import redis

        client = redis.Redis(host="127.0.0.1", port=port)
        deadline = time.monotonic() + 15
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    pytest.fail("redis-server did not start")
                time.sleep(0.05)
        client.close()
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _ids(r) -> list[str]:
    assert r.status_code == 200, r.text
    return [it["item_id"] for it in r.json()["items"]]


def test_two_instances_share_events_and_items(tmp_path, redis_url, toy_registry):  # noqa: F811
    bundle = make_bundle(tmp_path / "model")
    settings = {"api_key": "k", "redis_url": redis_url, "redis_prefix": "t1"}
    a = TestClient(create_app(bundle, settings=settings, encoder=HashingEncoder()))
    b = TestClient(create_app(bundle, settings=settings, encoder=HashingEncoder()))
    with a, b:
        assert a.get("/health").json()["store"] == "redis"
        # an event sent to A changes what B recommends, at once
        assert b.post("/recommend", json={"user_id": "walker", "k": 3}).json()["items"] != []
        evs = [{"user_id": "walker", "item_id": f"jazz-{j}", "event": "click"} for j in range(3)]
        assert a.post("/events", json={"events": evs}, headers=KEY).json()["accepted"] == 3
        got = _ids(b.post("/recommend", json={"user_id": "walker", "k": 4}))
        assert all(i.startswith("jazz-") for i in got) and not {"jazz-0", "jazz-1", "jazz-2"} & set(got)
        assert b.get("/health").json()["events"] == 3
        # an item added through B is searchable through A without a restart
        item = {
            "item_id": "shared-new",
            "title": "Bebop saxophone trumpet swing quartet jazz",
            "genres": "Music|Misc0",
        }
        assert b.post("/items", json={"items": [item]}, headers=KEY).json()["added"] == ["shared-new"]
        assert a.get("/items/shared-new").json()["label"] == item["title"]
        # recommendable at once through the model's cold path: first against a kitchen item for a jazz fan
        both = {"user_id": "walker", "k": 2, "candidates": ["kitchen-1", "shared-new"]}
        assert _ids(a.post("/recommend", json=both)) == ["shared-new", "kitchen-1"]
        assert a.get("/health").json()["n_items"] == 49
    # a third process started later sees everything (from Redis; the log was replayed once, not twice)
    with TestClient(create_app(bundle, settings=settings, encoder=HashingEncoder())) as c:
        h = c.get("/health").json()
        assert h["events"] == 3 and h["n_items"] == 49
    # with Redis emptied (a new prefix stands in for a fresh Redis), the SQLite log restores the state
    fresh = {**settings, "redis_prefix": "t2"}
    with TestClient(create_app(bundle, settings=fresh, encoder=HashingEncoder())) as c:
        h = c.get("/health").json()
        assert h["events"] == 3 and h["n_items"] == 49
        both = {"user_id": "walker", "k": 2, "candidates": ["kitchen-1", "shared-new"]}
        assert _ids(c.post("/recommend", json=both)) == ["shared-new", "kitchen-1"]
