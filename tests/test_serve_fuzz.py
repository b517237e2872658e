"""1,000 malformed requests against a real server: every one gets a 4xx, the server stays up, no state is lost."""

from __future__ import annotations

import json
import random
import socket

import httpx
import pytest

from test_serve_support import HashingEncoder, ThreadServer, make_bundle, toy_registry  # noqa: F401
from tokrec.serve.app import create_app

KEY = {"X-API-Key": "k3y"}
BAD_VALUES = [
    None,
    True,
    False,
    -1,
    0,
    1.5,
    10**30,
    "",
    "x" * 300,
    [],
    {},
    [1],
    [None],
    {"a": 1},
    "NaN",
    float("inf"),
]


def _bad_json_bodies(rng: random.Random) -> list[bytes]:
    return [
        b"{",
        b"",
        b"null",
        b"[]",
        b'{"history": ["a",]}',
        b"\xff\xfe\x00garbage",
        b'{"history": ["space-1"], "k": NaN}',
        b'{"k": 1e999, "history": ["space-1"]}',
        b'{"history": "space-1"}',
        ("[" * 5000 + "]" * 5000).encode(),
        json.dumps({"history": ["space-1"], "k": 5})[: rng.randint(1, 20)].encode(),
    ]


def _malformed(rng: random.Random):
    """Yields ``(method, path, kwargs)`` for one malformed request at a time."""
    kind = rng.randrange(12)
    bad = rng.choice(BAD_VALUES)
    if kind == 0:  # wrong types in /recommend
        field = rng.choice(["user_id", "history", "k", "candidates", "exclude", "exclude_seen", "explain"])
        body = (
            {"history": ["space-1"], field: bad}
            if field != "history"
            else {"history": bad if bad != [] else [5]}
        )
        if field == "k" and isinstance(bad, int) and not isinstance(bad, bool) and 1 <= bad <= 1000:
            body["k"] = 0
        if field in ("exclude_seen", "explain") and isinstance(bad, bool):
            body[field] = "yes"
        if field in ("candidates", "exclude") and bad in ([],):
            body[field] = [5]
        return "POST", "/recommend", {"json": body}
    if kind == 1:  # huge / non-positive k
        return (
            "POST",
            "/recommend",
            {"json": {"history": ["space-1"], "k": rng.choice([0, -5, 1001, 10**6, 2**63])}},
        )
    if kind == 2:  # unknown ids everywhere
        choice = rng.randrange(5)
        ghost = f"ghost-{rng.randrange(10**6)}"
        if choice == 0:
            return "POST", "/recommend", {"json": {"history": [ghost, ghost + "x"]}}
        if choice == 1:
            return "POST", "/recommend", {"json": {"user_id": "space-u1", "candidates": [ghost]}}
        if choice == 2:
            return "GET", f"/items/{ghost}/similar", {}
        if choice == 3:
            return "GET", f"/items/{ghost}", {}
        return "POST", "/events", {"json": {"events": [{"user_id": "u", "item_id": ghost}]}, "headers": KEY}
    if kind == 3:  # both or neither of user_id / history, unknown keys
        return (
            "POST",
            "/recommend",
            {
                "json": rng.choice(
                    [{}, {"user_id": "a", "history": ["space-1"]}, {"history": ["space-1"], "kk": 1}]
                )
            },
        )
    if kind == 4:  # oversized bodies (declared and chunked)
        big = {"history": ["space-1"] * 200_000}
        if rng.random() < 0.5:
            return "POST", "/recommend", {"json": big}
        payload = json.dumps(big).encode()
        return (
            "POST",
            "/recommend",
            {
                "content": iter([payload[i : i + 65536] for i in range(0, len(payload), 65536)]),
                "headers": {"content-type": "application/json"},
            },
        )
    if kind == 5:  # bad JSON
        return (
            "POST",
            rng.choice(["/recommend", "/events", "/items"]),
            {
                "content": rng.choice(_bad_json_bodies(rng)),
                "headers": {"content-type": "application/json", **KEY},
            },
        )
    if kind == 6:  # wrong content types
        ctype = rng.choice(
            ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data", "", "application/xml"]
        )
        headers = {"content-type": ctype, **KEY} if ctype else dict(KEY)
        return (
            "POST",
            rng.choice(["/recommend", "/events", "/items"]),
            {"content": b'{"history": ["space-1"]}', "headers": headers},
        )
    if kind == 7:  # malformed events
        ev = {"user_id": "u", "item_id": "space-1", "event": "click", "timestamp": 5, "value": 1.0}
        field = rng.choice(list(ev))
        ev[field] = (
            bad if not isinstance(bad, str) or field in ("timestamp", "value") else ("" if bad != "" else 7)
        )
        if (
            field in ("timestamp",)
            and isinstance(bad, int)
            and not isinstance(bad, bool)
            and 0 <= bad < 2**62
        ):
            ev[field] = -3
        if field == "value" and (
            isinstance(bad, int | float) and not isinstance(bad, bool) and abs(bad) < 1e300
        ):
            ev[field] = "1"
        body = rng.choice([{"events": [ev]}, {"events": []}, {"events": ev}, {"evts": [ev]}])
        return "POST", "/events", {"json": body, "headers": KEY}
    if kind == 8:  # malformed items
        body = rng.choice(
            [
                {"items": [{"title": "no id"}]},
                {"items": [{"item_id": bad, "title": "x"}]},
                {"items": [{"item_id": "n1", "title": {"nested": 1}}]},
                {"items": [{"item_id": "n1", "x" * 100: "long name"}]},
                {"items": [{"item_id": "n1", "tags": [1, 2]}]},
                {"items": []},
                {"items": "n1"},
            ]
        )
        if (
            body == {"items": [{"item_id": bad, "title": "x"}]}
            and isinstance(bad, str)
            and 0 < len(bad) <= 256
        ):
            body = {"items": [{"item_id": 5, "title": "x"}]}
        return "POST", "/items", {"json": body, "headers": KEY}
    if kind == 9:  # missing or wrong API key on writes
        headers = rng.choice([{}, {"X-API-Key": "wrong"}, {"X-API-Key": ""}, {"X-API-Key": "k3yy"}])
        path, body = rng.choice(
            [
                ("/events", {"events": [{"user_id": "u", "item_id": "space-1"}]}),
                ("/items", {"items": [{"item_id": "evil", "title": "x"}]}),
            ]
        )
        return "POST", path, {"json": body, "headers": headers}
    if kind == 10:  # bad query parameters
        return (
            "GET",
            rng.choice(
                [
                    "/items/space-1/similar?k=0",
                    "/items/space-1/similar?k=abc",
                    "/items/space-1/similar?k=99999",
                    "/items?limit=0",
                    "/items?limit=x",
                    "/metrics?format=xml",
                    "/items?q=" + "a" * 300,
                ]
            ),
            {},
        )
    # unknown routes and methods
    return rng.choice(
        [
            ("GET", "/nope", {}),
            ("DELETE", "/items/space-1", {}),
            ("PUT", "/recommend", {"json": {}}),
            ("GET", "/recommend", {}),
        ]
    )


@pytest.mark.slow
def test_fuzz_1000_malformed_requests(tmp_path, toy_registry):  # noqa: F811
    bundle = make_bundle(tmp_path / "model")
    app = create_app(bundle, settings={"api_key": "k3y", "max_body_bytes": 200_000}, encoder=HashingEncoder())
    rng = random.Random(1234)
    with ThreadServer(app) as srv, httpx.Client(base_url=srv.url, timeout=30) as c:
        c.post(
            "/items",
            json={"items": [{"item_id": "keep-me", "title": "Comet orbit", "genres": "Space"}]},
            headers=KEY,
        ).raise_for_status()
        c.post(
            "/events",
            json={
                "events": [
                    {"user_id": "keeper", "item_id": "space-3"},
                    {"user_id": "keeper", "item_id": "keep-me"},
                ]
            },
            headers=KEY,
        ).raise_for_status()
        before = (c.get("/health").json(), c.post("/recommend", json={"user_id": "keeper", "k": 8}).json())
        statuses: dict[int, int] = {}
        failures = []
        for n in range(1000):
            method, path, kw = _malformed(rng)
            if "json" in kw:  # encode here: NaN/Infinity allowed, as a careless client would send them
                kw["content"] = json.dumps(kw.pop("json")).encode()
                kw["headers"] = {"content-type": "application/json", **kw.get("headers", {})}
            r = c.request(method, path, **kw)
            statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
            if not 400 <= r.status_code < 500:
                failures.append((n, method, path, str(kw)[:200], r.status_code, r.text[:200]))
            elif method != "HEAD" and r.headers.get("content-type", "").startswith("application/json"):
                assert "error" in r.json() or "detail" in r.json()
        # raw garbage on the socket: the server answers 400 and keeps going
        for raw in (b"GARBAGE\r\n\r\n", b"POST /recommend HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n"):
            with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as s:
                s.sendall(raw)
                assert s.recv(100).startswith(b"HTTP/1.1 4")
        after = (c.get("/health").json(), c.post("/recommend", json={"user_id": "keeper", "k": 8}).json())
        assert not failures, failures[:10]
        assert after == before  # the server is up and no state was lost or changed
        assert sum(statuses.values()) == 1000 and len(statuses) >= 5, statuses
        metrics = c.get("/metrics").text
        assert 'status="500"' not in metrics
