"""Shared pieces of the serve tests (a toy model, a hashing encoder, a small topical catalog) and unit
tests of the retrieval index, the state stores and the SQLite log."""

from __future__ import annotations

import re
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tokrec.data.dataset import Dataset
from tokrec.models import registry
from tokrec.models.base import ModelConfig, Recommender
from tokrec.serve.bundle import EncoderSpec, save_bundle, template_spec
from tokrec.serve.index import VectorIndex
from tokrec.serve.state import StateLog
from tokrec.serve.store import Event, ItemRecord, MemoryStore
from tokrec.text import ItemTemplate

TOPICS = {
    "space": ("Space", ["starship", "galaxy", "orbit", "astronaut", "comet"]),
    "kitchen": ("Cooking", ["skillet", "recipe", "oven", "saucepan", "spatula"]),
    "jazz": ("Music", ["saxophone", "trumpet", "swing", "bebop", "quartet"]),
    "garden": ("Outdoors", ["trowel", "tulip", "compost", "hedge", "seedling"]),
}


class ToyPopularity(Recommender):
    """Counts events per item; scores every history with the same popularity (tests only)."""

    name = "serve-toy"
    state = ("pop_",)

    class Config(ModelConfig):
        smoothing: float = 1.0

    def _fit(self, dataset: Dataset, item_vectors: np.ndarray | None) -> None:
        counts = np.bincount(dataset.item_idx, minlength=dataset.n_items).astype(np.float32)
        self.pop_ = np.log1p(counts + self.config.smoothing)  # type: ignore[attr-defined]

    def _score_users(self, user_rows: np.ndarray) -> np.ndarray:
        return np.tile(self.pop_, (len(user_rows), 1))

    def _score_history(self, item_rows: np.ndarray, timestamps: np.ndarray | None = None) -> np.ndarray:
        return self.pop_.copy()


class HashingEncoder:
    """Bag of words hashed into ``dim`` signed buckets, L2-normalised: texts sharing words are close."""

    def __init__(self, dim: int = 256) -> None:
        self._dim = dim
        self.calls = 0

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def fingerprint(self) -> str:
        return f"test-hashing-{self._dim}"

    def encode(self, texts, *, progress: bool = False) -> np.ndarray:
        self.calls += 1
        out = np.zeros((len(texts), self._dim), dtype=np.float32)
        for j, t in enumerate(texts):
            for w in re.findall(r"[a-z]+", t.lower()):
                h = zlib.crc32(w.encode())
                out[j, h % self._dim] += 1.0 if (h >> 16) & 1 else -1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.where(norms == 0, 1.0, norms)

    def count_tokens(self, texts) -> list[int]:
        return [len(t.split()) for t in texts]


def topical_dataset(per_topic: int = 12, users_per_topic: int = 6, seed: int = 0) -> Dataset:
    """Items ``<topic>-<j>`` whose titles use their topic's words; each user stays in one topic."""
    rng = np.random.default_rng(seed)
    rows = []
    for topic, (genre, words) in TOPICS.items():
        for j in range(per_topic):
            w = rng.choice(words, size=2, replace=False)
            rows.append(
                {
                    "item_id": f"{topic}-{j}",
                    "title": f"{w[0].title()} {w[1]} {topic} {j}",
                    "genres": f"{genre}|Misc{j % 3}",
                }
            )
    items = pd.DataFrame(rows)
    events = []
    t = 1_000
    for topic in TOPICS:
        for u in range(users_per_topic):
            for j in rng.choice(per_topic, size=5, replace=False):
                t += 1
                events.append({"user_id": f"{topic}-u{u}", "item_id": f"{topic}-{j}", "timestamp": t})
    return Dataset(pd.DataFrame(events), items, name="topical")


@pytest.fixture
def toy_registry(monkeypatch):
    monkeypatch.setitem(registry._MODELS, "serve-toy", "test_serve_support:ToyPopularity")


def make_bundle(
    path: Path, dataset: Dataset | None = None, encoder: HashingEncoder | None = None, model: str = "tokrec"
) -> Path:
    """Fits ``model`` (default: the recommended model, as ``tokrec fit`` does) on ``dataset`` and writes a
    bundle with hashing-encoder vectors."""
    from tokrec.models import create_model

    dataset = dataset or topical_dataset()
    encoder = encoder or HashingEncoder()
    template = ItemTemplate()
    spec = template_spec(template, dataset.items)
    texts = ItemTemplate.from_spec(_spec(spec)).render_many(dataset.items)
    vectors = encoder.encode(texts)
    fitted = create_model(model).fit(dataset, vectors)
    return save_bundle(
        path,
        model=fitted,
        item_vectors=vectors,
        items=dataset.items,
        encoder=EncoderSpec(None, {}, encoder.fingerprint, encoder.dim),
        template=spec,
    )


def _spec(d):
    from tokrec.text import TemplateSpec

    return TemplateSpec.model_validate(d)


# ---- unit tests: index ------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_index_exact_and_ann_agree_and_grow(kind):
    rng = np.random.default_rng(0)  # clustered, like text embeddings (IVF's cells follow the clusters)
    v = (rng.normal(size=(40, 16))[rng.integers(40, size=2000)] + 0.5 * rng.normal(size=(2000, 16))).astype(
        np.float32
    )
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    exact = VectorIndex(v, ann=False)
    ann = VectorIndex(v, ann=True, kind=kind)
    assert ann.uses_ann and not exact.uses_ann
    q = v[7]
    r_exact, s_exact = exact.search(q, 10)
    r_ann, s_ann = ann.search(q, 100)  # over-fetch, as the engine does (256 candidates), then re-scored
    r_ann, s_ann = r_ann[:10], s_ann[:10]
    assert r_exact[0] == 7 and np.isclose(s_exact[0], 1.0, atol=1e-5)
    assert len(set(r_ann) & set(r_exact)) >= 9
    np.testing.assert_allclose(s_ann, v[r_ann] @ q, rtol=1e-5)  # exact scores
    np.testing.assert_allclose(np.sort(s_ann)[::-1], s_ann)  # best first, exact scores
    # a new row is found at once; a replaced row is found under its new vector only
    new = -v[7]
    for idx in (exact, ann):
        idx.set(len(idx), new)
        assert idx.search(new, 1)[0][0] == 2000
        idx.set(3, v[7])
        rows, _ = idx.search(v[7], 2)
        assert set(rows) == {3, 7}
    rows, _ = ann.search(v[3] * 0 + new, 5)
    assert len(rows) == len(set(rows))


def test_index_rejects_bad_dimension():
    idx = VectorIndex(np.eye(4, dtype=np.float32))
    with pytest.raises(ValueError, match="dimension"):
        idx.set(4, np.ones(5))


# ---- unit tests: store and log -------------------------------------------------------------------------
def test_memory_store_trims_and_logs_items():
    s = MemoryStore(max_user_events=3)
    s.append_events([Event("u", f"i{j}", "click", j) for j in range(5)])
    assert [e.item_id for e in s.user_events("u", 10)] == ["i2", "i3", "i4"]
    assert [e.item_id for e in s.user_events("u", 2)] == ["i3", "i4"]
    assert s.user_events("nobody", 5) == [] and s.n_events() == 5
    s.add_items([ItemRecord("a", {"title": "A"}, np.ones(3, np.float32))])
    assert s.items_count() == 1 and s.items_since(1) == [] and s.items_since(0)[0].item_id == "a"


def test_item_record_json_roundtrip():
    r = ItemRecord("x", {"title": "T", "tags": ["a", "b"]}, np.array([0.5, -1.25, 3.0], np.float32))
    back = ItemRecord.from_json(r.to_json())
    assert back.item_id == "x" and back.attributes == r.attributes
    np.testing.assert_array_equal(back.vector, r.vector)


def test_state_log_roundtrip_and_refuses_other_encoder(tmp_path):
    log = StateLog(tmp_path / "s.sqlite", fingerprint="enc-a", dim=3)
    log.append_events([Event("u1", "i1", "click", 10, 1.0), Event("u2", "i2", "rating", 11, 4.5)])
    log.add_items([ItemRecord("new", {"title": "N"}, np.array([1, 2, 3], np.float32))])
    log.close()
    log = StateLog(tmp_path / "s.sqlite", fingerprint="enc-a", dim=3)
    assert log.counts() == (2, 1)
    assert [e for batch in log.iter_events(batch=1) for e in batch] == [
        Event("u1", "i1", "click", 10, 1.0),
        Event("u2", "i2", "rating", 11, 4.5),
    ]
    (item,) = list(log.iter_items())
    assert item.item_id == "new" and item.vector.tolist() == [1, 2, 3]
    log.close()
    from tokrec.errors import ConfigError

    with pytest.raises(ConfigError, match="enc-a"):
        StateLog(tmp_path / "s.sqlite", fingerprint="enc-b", dim=3)
    (tmp_path / "junk.sqlite").write_bytes(b"not a database at all" * 100)
    with pytest.raises(ConfigError, match="junk.sqlite"):
        StateLog(tmp_path / "junk.sqlite", fingerprint="enc-a", dim=3)


# ---- a real HTTP server in a thread ----------------------------------------------------------------
def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ThreadServer:
    """Runs an ASGI app under uvicorn in a background thread on a free loopback port."""

    def __init__(self, app) -> None:
        import threading

        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="error", access_log=False, lifespan="on"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> ThreadServer:
        import time

        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_index_loads_a_saved_ann(tmp_path, kind):
    import gc

    from tokrec.serve.index import ANN_FILE, build_ann, write_ann

    rng = np.random.default_rng(1)
    v = rng.normal(size=(500, 8)).astype(np.float32)
    write_ann(build_ann(v, kind), tmp_path)
    saved = (tmp_path / ANN_FILE).stat().st_mtime_ns
    idx = VectorIndex(v, ann=True, ann_path=tmp_path / ANN_FILE, kind=kind)
    gc.collect()  # the loaded index must be owned by the VectorIndex, not freed with a temporary
    rows, scores = idx.search(v[42], 3)
    assert rows[0] == 42 and np.isclose(scores[0], float(v[42] @ v[42]), rtol=1e-5)
    other = VectorIndex(v[:400], ann=True, ann_path=tmp_path / ANN_FILE, kind=kind)  # size differs: rebuilt
    assert other.ann_.ntotal == 400 and (tmp_path / ANN_FILE).stat().st_mtime_ns == saved


def test_index_score_stats_track_the_catalog():
    rng = np.random.default_rng(2)
    v = rng.normal(size=(300, 6)).astype(np.float32)
    idx = VectorIndex(v, ann=False)
    idx.set(300, rng.normal(size=6))  # append
    idx.set(5, rng.normal(size=6))  # replace
    q = rng.normal(size=6).astype(np.float32)
    direct = idx.take(np.arange(len(idx))) @ q
    # the same inner products; a replaced row is one dot product, not a row of the matrix product, so its
    # float32 sum may differ in the last bit (BLAS kernels sum in their own order)
    np.testing.assert_allclose(idx.exact_scores(q), direct, rtol=1e-6, atol=1e-6)
    mean, sd = idx.score_stats(q)
    assert np.isclose(mean, direct.mean(), atol=1e-4) and np.isclose(sd, direct.std(), rtol=1e-4)


def test_index_reads_the_fitted_vectors_in_place_and_keeps_online_rows_beside_them():
    rng = np.random.default_rng(3)
    v = rng.normal(size=(50, 4)).astype(np.float32)
    before = v.copy()
    idx = VectorIndex(v, ann=False)
    assert np.shares_memory(idx._base, v)  # the caller's array, not a copy
    want = v.copy()
    for _ in range(40):  # appends past the first block (16 rows) and past its doubling
        x = rng.normal(size=4).astype(np.float32)
        idx.set(len(idx), x)
        want = np.vstack([want, x])
    for row in (3, 49, 60):  # fitted rows and an online row replaced
        x = rng.normal(size=4).astype(np.float32)
        idx.set(row, x)
        want[row] = x
    np.testing.assert_array_equal(v, before)  # the fitted array is never written
    assert len(idx) == 90
    rows = np.array([60, 3, 0, 89, 49, 3, 17])
    np.testing.assert_array_equal(idx.take(rows), want[rows])
    np.testing.assert_array_equal(idx.row(49), want[49])
    q = rng.normal(size=4).astype(np.float32)
    np.testing.assert_allclose(idx.exact_scores(q), want @ q, rtol=1e-6)
    np.testing.assert_allclose(idx.exact_scores(q, rows), want[rows] @ q, rtol=1e-6)
    top, scores = idx.search(q, 3)
    np.testing.assert_array_equal(top, np.argsort(-(want @ q), kind="stable")[:3])
