"""EmbeddingCache / CachedEncoder: hits and misses, fingerprint isolation, dim checks, kill -9 and resume."""

from __future__ import annotations

import hashlib
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from tokrec.cache import CachedEncoder, EmbeddingCache, cache_key, default_cache_dir
from tokrec.errors import DataError


class HashEncoder:
    """Deterministic fake encoder: a text's vector is seeded by its sha256; counts what it encodes."""

    def __init__(self, dim: int = 8, fingerprint: str = "hash-v1") -> None:
        self.dim = dim
        self.fingerprint = fingerprint
        self.encoded: list[str] = []

    def encode(self, texts, *, progress=False):
        self.encoded.extend(texts)
        rows = [
            np.random.default_rng(
                int.from_bytes(hashlib.sha256(t.encode()).digest()[:8], "little")
            ).standard_normal(self.dim)
            for t in texts
        ]
        return np.asarray(rows, dtype=np.float32).reshape(len(texts), self.dim)

    def count_tokens(self, texts):
        return [len(t.split()) for t in texts]


def test_put_get_roundtrip_and_misses(tmp_path):
    cache = EmbeddingCache(tmp_path)
    assert cache.path == tmp_path / "embeddings.sqlite"
    vecs = np.arange(6, dtype=np.float32).reshape(2, 3)
    cache.put_many("fp", ["a", "b"], vecs)
    got = cache.get_many("fp", ["b", "zzz", "a"], dim=3)
    np.testing.assert_array_equal(got[0], vecs[1])
    assert got[1] is None
    np.testing.assert_array_equal(got[2], vecs[0])
    assert len(cache) == 2 and cache.count("fp") == 2


def test_never_serves_another_fingerprint(tmp_path):
    cache = EmbeddingCache(tmp_path / "c.sqlite")
    cache.put_many("model-A", ["toy story"], np.ones((1, 4), dtype=np.float32))
    assert cache.get_many("model-B", ["toy story"]) == [None]
    # even a row planted under B's key but recorded as made by A is refused
    with sqlite3.connect(cache.path) as conn:
        conn.execute(
            "INSERT INTO embeddings VALUES (?, ?, ?, ?)",
            (cache_key("model-B", "heat"), "model-A", 4, np.ones(4, np.float32).tobytes()),
        )
    assert cache.get_many("model-B", ["heat"]) == [None]


def test_dim_mismatch_is_an_error(tmp_path):
    cache = EmbeddingCache(tmp_path)
    cache.put_many("fp", ["a"], np.ones((1, 4), dtype=np.float32))
    with pytest.raises(DataError, match="dim 4"):
        cache.get_many("fp", ["a"], dim=8)


def test_default_dir_follows_env(tmp_path, monkeypatch):
    monkeypatch.setenv("TOKREC_CACHE_DIR", str(tmp_path / "x"))
    assert default_cache_dir() == tmp_path / "x"
    assert EmbeddingCache().path == tmp_path / "x" / "embeddings.sqlite"


def test_cached_encoder_dedupes_and_counts(tmp_path):
    inner = HashEncoder()
    enc = CachedEncoder(inner, EmbeddingCache(tmp_path), chunk_size=2)
    first = enc.encode(["a", "b", "a", "c"])
    assert inner.encoded == ["a", "b", "c"]
    assert (enc.stats["hits"], enc.stats["misses"], enc.stats["texts"]) == (0, 3, 4)
    np.testing.assert_array_equal(first, inner.encode(["a", "b", "a", "c"]))
    inner.encoded.clear()
    second = enc.encode(["c", "d", "a"])
    assert inner.encoded == ["d"]
    assert (enc.stats["hits"], enc.stats["misses"]) == (2, 4)
    np.testing.assert_array_equal(second[0], first[3])
    np.testing.assert_array_equal(second[2], first[0])
    assert second.dtype == np.float32 and second.flags.c_contiguous


def test_other_fingerprint_reencodes(tmp_path):
    cache = EmbeddingCache(tmp_path)
    CachedEncoder(HashEncoder(fingerprint="v1"), cache).encode(["a", "b"])
    inner2 = HashEncoder(fingerprint="v2")
    CachedEncoder(inner2, cache).encode(["a", "b"])
    assert inner2.encoded == ["a", "b"]


_WORKER = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    from tokrec.cache import CachedEncoder, EmbeddingCache
    from tokrec.encoders import load_encoder

    class Slow:
        # the tiny model is fast; sleep after each chunk so that the parent can kill us midway
        def __init__(self, enc):
            self.enc = enc
        def __getattr__(self, name):
            return getattr(self.enc, name)
        def encode(self, texts, progress=False):
            out = self.enc.encode(texts)
            time.sleep(0.3)
            return out
        def encode_windows(self, texts, window=None):  # what CachedEncoder calls on an HFEncoder
            for rows, vecs in self.enc.encode_windows(texts, window):
                yield rows, vecs
                time.sleep(0.3)

    model, db, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    texts = [f"story {i} of the war movie" for i in range(n)]
    enc = CachedEncoder(Slow(load_encoder(model, dtype="fp32")), EmbeddingCache(db), chunk_size=20)
    print("start", flush=True)
    enc.encode(texts)
    print("done", flush=True)
    """
)


@pytest.mark.slow
def test_kill_minus_9_keeps_committed_chunks_and_resumes(tmp_path):
    from tokrec.encoders import load_encoder
    from tokrec.encoders.testing import make_tiny_bert

    model = make_tiny_bert(tmp_path / "bert")
    db = tmp_path / "cache.sqlite"
    n, chunk = 400, 20
    script = tmp_path / "worker.py"
    script.write_text(_WORKER)
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, str(script), str(model), str(db), str(n)], env=env, stdout=subprocess.PIPE
    )
    committed = 0
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if db.exists():
                try:
                    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
                        committed = conn.execute("SELECT COUNT(*) FROM embeddings").fetchone()[0]
                except sqlite3.OperationalError:
                    committed = 0  # schema not created yet
            if committed >= 2 * chunk:
                break
            time.sleep(0.05)
        assert proc.poll() is None, "worker finished before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL

    cache = EmbeddingCache(db)
    stored = len(cache)
    assert 2 * chunk <= stored < n and stored % chunk == 0  # whole chunks only
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        dims = conn.execute("SELECT DISTINCT dim, length(vector) FROM embeddings").fetchall()
    assert dims == [(32, 128)]

    texts = [f"story {i} of the war movie" for i in range(n)]
    enc = load_encoder(str(model), dtype="fp32")
    resumed = CachedEncoder(enc, cache, chunk_size=chunk)
    got = resumed.encode(texts)
    assert resumed.stats["hits"] == stored and resumed.stats["misses"] == n - stored
    np.testing.assert_allclose(got, enc.encode(texts), atol=1e-5)
    again = CachedEncoder(enc, cache).encode(texts)
    np.testing.assert_array_equal(again, got)


def test_a_cache_around_a_cache_goes_through_it(tmp_path):
    """The outer cache reaches the encoder only through the inner cache (never the encoder's encode_windows
    past it), and both end up holding every text, the same vectors as the encoder alone."""
    from tokrec.encoders import load_encoder
    from tokrec.encoders.testing import make_tiny_bert

    enc = load_encoder(str(make_tiny_bert(tmp_path / "bert")), dtype="fp32")
    inner = CachedEncoder(enc, EmbeddingCache(tmp_path / "inner.sqlite"), chunk_size=3)
    outer = CachedEncoder(inner, EmbeddingCache(tmp_path / "outer.sqlite"), chunk_size=3)
    texts = [f"story {i} of the war movie" for i in range(7)]
    got = outer.encode(texts)
    assert len(inner.cache) == 7 and len(outer.cache) == 7 and inner.stats["misses"] == 7
    np.testing.assert_allclose(got, enc.encode(texts), atol=1e-6)
