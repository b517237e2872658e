"""`tokrec fit` and `tokrec serve` end to end with the default MiniLM encoder and the default model."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import httpx
import pytest
from fastapi.testclient import TestClient

from test_serve_support import free_port
from tokrec.cli.main import main
from tokrec.data.synthetic import write_synthetic
from tokrec.models import registry
from tokrec.serve.app import create_app
from tokrec.serve.bundle import load_bundle


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """A bundle fitted by the exact `tokrec fit` command line on a small synthetic catalog."""
    d = tmp_path_factory.mktemp("fit")
    files = write_synthetic(d / "data", n_items=80, n_users=60, seed=3)
    out = d / "model"
    argv = [
        "fit",
        "--items",
        str(files["items"]),
        "--interactions",
        str(files["interactions"]),
        "--output",
        str(out),
    ]
    old = os.environ.get("TOKREC_CACHE_DIR")
    os.environ["TOKREC_CACHE_DIR"] = str(d / "cache")
    try:
        assert main(argv) == 0
    finally:
        if old is None:
            del os.environ["TOKREC_CACHE_DIR"]
        else:
            os.environ["TOKREC_CACHE_DIR"] = old
    return files, out


@pytest.mark.slow
def test_fit_writes_a_complete_bundle(fitted):
    files, out = fitted
    names = {p.name for p in out.iterdir()}
    assert {"bundle.json", "model", "item_vectors.safetensors", "items.parquet", "vocab.json"} <= names
    b = load_bundle(out)
    assert b.model.name == registry.DEFAULT_MODEL and b.n_items == 80 and b.item_vectors.shape == (80, 384)
    assert (
        b.encoder.model is None
        and b.encoder.options["pooling"] == "mean"
        and b.encoder.fingerprint.startswith("hf:")
    )
    assert b.template["fields"] and "title" in b.template["fields"]
    # refitting replaces the directory atomically (no leftovers next to it)
    argv = [
        "fit",
        "--items",
        str(files["items"]),
        "--interactions",
        str(files["interactions"]),
        "--model",
        "popularity",
        "--output",
        str(out),
    ]
    assert main(argv) == 0
    assert load_bundle(out).model.name == "popularity"
    assert not [p.name for p in out.parent.iterdir() if p.name.startswith(".")]
    argv = [
        "fit",
        "--items",
        str(files["items"]),
        "--interactions",
        str(files["interactions"]),
        "--output",
        str(out),
    ]
    assert main(argv) == 0


def test_fit_bad_input_is_one_line_exit_2(tmp_path, capsys):
    (tmp_path / "items.csv").write_text("item_id,title\na,A\n")
    (tmp_path / "inter.csv").write_text("user_id,item_id\nu,zzz\n")
    argv = [
        "fit",
        "--items",
        str(tmp_path / "items.csv"),
        "--interactions",
        str(tmp_path / "inter.csv"),
        "--output",
        str(tmp_path / "m"),
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "inter.csv" in err[0] and "item_id" in err[0]
    assert main([*argv[:-2], "--model", "nope", "--output", str(tmp_path / "m")]) == 2
    assert not (tmp_path / "m").exists()


@pytest.mark.slow
def test_served_bundle_encodes_new_items_with_minilm_through_the_cache(fitted):
    _, out = fitted
    with TestClient(create_app(out, settings={"api_key": "k"})) as c:
        item = {
            "item_id": "brand-new",
            "title": "Stainless nonstick skillet for weeknight cooking",
            "category": "Kitchen",
        }
        r = c.post("/items", json={"items": [item]}, headers={"X-API-Key": "k"})
        assert r.status_code == 200, r.text
        sim = c.get("/items/brand-new/similar?k=5").json()["items"]
        assert len(sim) == 5 and sim[0]["score"] > 0.5
        r = c.post("/items", json={"items": [item]}, headers={"X-API-Key": "k"})  # same text: a cache hit
        assert r.json()["updated"] == ["brand-new"]
        js = c.get("/metrics?format=json").json()
        assert js["counters"]["embedding_texts_total"] == 2 and js["counters"]["embedding_encoded_total"] == 1
        assert js["gauges"]["embedding_cache_hits"] == 1
        recs = c.post("/recommend", json={"history": [sim[0]["item_id"], "brand-new"], "k": 5}).json()
        assert len(recs["items"]) == 5 and all(it["because"] for it in recs["items"])


@pytest.mark.slow
def test_encoder_for_new_items_is_loaded_at_start_up(fitted):
    _, out = fitted
    app = create_app(out, settings={"persist": False})
    service = app.state.service
    assert service._encoder is None  # building the app loads no encoder; starting it does, in the background
    with TestClient(app) as c:
        deadline = time.time() + 120
        while time.time() < deadline and (service._encoder is None or service._encoder.inner._model is None):
            time.sleep(0.05)
        assert service._encoder is not None and service._encoder.inner._model is not None
        deadline = time.time() + 60
        while time.time() < deadline and c.get("/health").json()["encoder"] == "loading":
            time.sleep(0.05)
        assert c.get("/health").json()["encoder"] == "ready"
        counters = c.get("/metrics?format=json").json()["counters"]
        assert counters.get("embedding_encoded_total", 0) == 0  # the warm-up text is not an item's
    lazy = create_app(out, settings={"persist": False, "preload_encoder": False})
    with TestClient(lazy) as c:
        time.sleep(0.2)
        assert lazy.state.service._encoder is None and c.get("/health").json()["encoder"] == "lazy"
        r = c.post("/items", json={"items": [{"item_id": "n1", "title": "Cast iron pan"}]})
        assert r.status_code == 200, r.text
        assert c.get("/health").json()["encoder"] == "ready"


@pytest.mark.slow
def test_tokrec_serve_command_line(fitted, tmp_path):
    _, out = fitted
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "tokrec.cli.main",
        "serve",
        "--model",
        str(out),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--api-key",
        "abc",
        "--state",
        str(tmp_path / "s.sqlite"),
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            try:
                h = httpx.get(url + "/health", timeout=2).json()
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    pytest.fail(
                        f"server did not start: {proc.stdout.read() if proc.poll() is not None else 'timeout'}"
                    )
                time.sleep(0.2)
        assert h["auth"] and h["n_items"] == 80
        assert (
            httpx.post(url + "/events", json={"events": [{"user_id": "u", "item_id": "i1"}]}).status_code
            == 401
        )
        assert (
            httpx.post(
                url + "/events",
                json={"events": [{"user_id": "u", "item_id": "i1"}]},
                headers={"X-API-Key": "abc"},
            ).status_code
            == 200
        )
        assert len(httpx.post(url + "/recommend", json={"user_id": "u", "k": 3}).json()["items"]) == 3
        assert "tokrec_requests_total" in httpx.get(url + "/metrics").text
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    assert (tmp_path / "s.sqlite").exists()
    bad = subprocess.run(
        [sys.executable, "-m", "tokrec.cli.main", "serve", "--model", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and "not a tokrec model directory" in bad.stderr


def test_serve_arguments_become_settings(monkeypatch):
    from tokrec.cli.main import build_parser
    from tokrec.cli.serve import settings_from_args

    monkeypatch.setenv("TOKREC_API_KEY", "from-env")
    args = build_parser().parse_args(
        ["serve", "--model", "m", "--ann", "yes", "--ann-kind", "hnsw", "--state", "s.db", "--max-k", "50"]
    )
    st = settings_from_args(args)
    assert (st.api_key, st.ann, st.ann_kind, str(st.state_path), st.max_k, st.persist) == (
        "from-env",
        True,
        "hnsw",
        "s.db",
        50,
        True,
    )
    args = build_parser().parse_args(
        ["serve", "--model", "m", "--api-key", "k", "--no-persist", "--redis-url", "redis://h:1/0"]
    )
    st = settings_from_args(args)
    assert (st.api_key, st.persist, st.redis_url, st.ann, st.ann_kind) == (
        "k",
        False,
        "redis://h:1/0",
        None,
        "ivf",
    )


def test_serve_fails_on_a_taken_port_before_printing_a_url(fitted):
    import socket

    _, out = fitted
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = subprocess.run(
            [sys.executable, "-m", "tokrec.cli.main", "serve", "--model", str(out), "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert r.returncode == 2 and "http://" not in r.stdout
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and f"cannot listen on 127.0.0.1:{port}" in err[0]
    r = subprocess.run(
        [sys.executable, "-m", "tokrec.cli.main", "serve", "--model", str(out), "--workers", "2"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2 and "--redis-url" in r.stderr


def test_serve_policy_arguments(capsys):
    from tokrec.cli.main import build_parser
    from tokrec.cli.serve import settings_from_args
    from tokrec.errors import ConfigError

    args = build_parser().parse_args(["serve", "--model", "m", "--policy", '{"policy": "ts", "dim": 4}'])
    st = settings_from_args(args)
    assert st.policy["policy"] == "ts" and st.policy["dim"] == 4 and st.explore_share == 0.2
    args = build_parser().parse_args(["serve", "--model", "m", "--policy", '{"policy": "ucb"}'])
    with pytest.raises(ConfigError, match="--policy"):
        settings_from_args(args)
    with pytest.raises(ConfigError, match="needs --policy"):
        settings_from_args(build_parser().parse_args(["serve", "--model", "m", "--explore-share", "0.5"]))
