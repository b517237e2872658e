"""Features: Z_I alignment and caching, Z_U (text and aggregate), F_ij, Parquet export."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from tokrec.cache import CachedEncoder
from tokrec.data.dataset import Dataset
from tokrec.errors import DataError
from tokrec.features import (
    item_texts,
    item_vectors,
    pair_features,
    read_vectors,
    user_aggregate_vectors,
    user_text_vectors,
    user_texts,
    write_vectors,
)

ITEMS = pd.DataFrame(
    {
        "item_id": ["10", "20", "30"],
        "title": ["Toy Story (1995)", "Heat (1995)", "Fargo (1996)"],
        "genres": ["Animation|Comedy", "Action|Crime", "Crime|Drama"],
    }
)


class TableEncoder:
    """A fake encoder that maps known texts to fixed vectors and counts calls."""

    fingerprint = "table-v1"
    max_length = 64

    def __init__(self, table: dict[str, list[float]]) -> None:
        self.table = table
        self.dim = len(next(iter(table.values())))
        self.calls = 0

    def encode(self, texts, *, progress=False):
        self.calls += 1
        return np.asarray([self.table[t] for t in texts], dtype=np.float32).reshape(len(texts), self.dim)

    def count_tokens(self, texts):
        return [len(t.split()) for t in texts]


def _dataset():
    inter = pd.DataFrame(
        {
            "user_id": ["a", "a", "a", "b"],
            "item_id": ["10", "20", "30", "20"],
            "timestamp": [1, 2, 3, 1],
            "event": "rating",
            "value": [4.0, 5.0, 3.0, 1.0],
        }
    )
    users = pd.DataFrame({"user_id": ["c"]})  # a user without events
    return Dataset(inter, ITEMS, users)


def test_item_vectors_aligned_and_cached(tmp_path):
    texts = item_texts(ITEMS)
    table = {t: [float(i), 1.0] for i, t in enumerate(texts)}
    enc = TableEncoder(table)
    z = item_vectors(ITEMS, encoder=enc, cache=tmp_path)
    np.testing.assert_array_equal(z, [[0, 1], [1, 1], [2, 1]])
    shuffled = ITEMS.iloc[[2, 0, 1]].reset_index(drop=True)
    z2 = item_vectors(shuffled, encoder=enc, cache=tmp_path)
    np.testing.assert_array_equal(z2, z[[2, 0, 1]])
    assert enc.calls == 1  # the second call was served from the cache
    z3 = item_vectors(_dataset(), encoder=enc, cache=None)
    np.testing.assert_array_equal(z3, z)
    assert enc.calls == 2


def test_item_vectors_with_a_template_and_the_default_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("TOKREC_CACHE_DIR", str(tmp_path / "cc"))
    enc = TableEncoder({"Toy Story (1995)": [1.0], "Heat (1995)": [2.0], "Fargo (1996)": [3.0]})
    z = item_vectors(ITEMS, encoder=enc, template="{title}")
    np.testing.assert_array_equal(z[:, 0], [1, 2, 3])
    assert (tmp_path / "cc" / "embeddings.sqlite").is_file()


def test_user_aggregate_vectors_recency_weights():
    ds = _dataset()
    z_i = np.array([[1, 0], [0, 1], [1, 1]], dtype=np.float32)
    plain = user_aggregate_vectors(ds, z_i)
    np.testing.assert_allclose(plain[0], np.array([2, 2]) / np.sqrt(8), atol=1e-6)
    np.testing.assert_allclose(plain[1], [0, 1])
    np.testing.assert_array_equal(plain[2], [0, 0])  # no events
    # half-life 1 event: weights 0.25, 0.5, 1 for items 10, 20, 30 (oldest first)
    recent = user_aggregate_vectors(ds, z_i, half_life=1.0)
    expect = np.array([0.25 + 1, 0.5 + 1])
    np.testing.assert_allclose(recent[0], expect / np.linalg.norm(expect), atol=1e-6)
    with pytest.raises(DataError):
        user_aggregate_vectors(ds, z_i[:2])


def test_user_text_vectors_follow_the_history_text():
    ds = _dataset()
    texts = user_texts(ds, template=None)
    assert texts[1] == "rated 1: Heat (1995)." and texts[2] == ""
    enc = TableEncoder({texts[0]: [1.0, 0.0], texts[1]: [0.0, 1.0]})
    z_u = user_text_vectors(ds, encoder=enc, cache=None)
    np.testing.assert_array_equal(z_u, [[1, 0], [0, 1], [0, 0]])
    # the encoder's max_length (64 words here) is the default budget; 6 words keep only the latest event
    short = user_texts(ds, encoder=enc, budget=6)
    assert short[0] == "rated 3: Fargo (1996)."


def test_pair_features_cosine_and_layout():
    z_u = np.array([[1, 0], [0, 2], [0, 0]], dtype=np.float32)
    z_i = np.array([[1, 1], [0, 1], [3, 0]], dtype=np.float32)
    f = pair_features(
        ["a", "b", "c", "a"],
        ["10", "10", "20", "30"],
        z_u,
        z_i,
        user_index=["a", "b", "c"],
        item_index=["10", "20", "30"],
    )
    np.testing.assert_allclose(f.score, [1 / np.sqrt(2), 1 / np.sqrt(2), 0.0, 1.0], atol=1e-6)
    m = f.matrix()
    assert m.shape == (4, 5) and m.dtype == np.float32
    np.testing.assert_allclose(m[1], [1 / np.sqrt(2), 0, 2, 1, 1], atol=1e-6)
    by_row = pair_features([0, 1], [2, 2], z_u, z_i)
    np.testing.assert_allclose(by_row.score, [1.0, 0.0], atol=1e-6)
    with pytest.raises(DataError, match="unknown item"):
        pair_features(["a"], ["99"], z_u, z_i, user_index=["a", "b", "c"], item_index=["10", "20", "30"])


def test_parquet_roundtrip_layout(tmp_path):
    z = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    out = write_vectors(
        tmp_path / "sub" / "v.parquet", ["10", "20", "30"], z, extra={"n": np.array([1, 2, 3])}
    )
    table = pq.read_table(out)
    assert table.column_names == ["item_id", "n", "vector"]
    assert str(table.schema.field("vector").type) == "fixed_size_list<element: float>[4]"
    ids, back = read_vectors(out)
    assert ids == ["10", "20", "30"]
    np.testing.assert_array_equal(back, z)
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["v.parquet"]  # no temp file left behind


def test_cached_encoder_is_not_wrapped_twice(tmp_path):
    from tokrec.features import resolve_encoder

    enc = CachedEncoder(TableEncoder({"x": [1.0]}), tmp_path)
    assert resolve_encoder(enc, cache=tmp_path / "other") is enc


def test_one_users_profile_is_the_same_as_in_a_batch():
    # user_profiles of one history (the service's query: no sparse matrix built) gives the bits it gives
    # for that history among others, repeated items, n_last and half-life included
    from tokrec.features import user_profiles

    rng = np.random.default_rng(0)
    vecs = rng.normal(size=(300, 16)).astype(np.float32)
    for _ in range(200):
        h = rng.integers(0, 300, int(rng.integers(0, 30)))
        for half_life in (None, 2.0):
            for n_last in (None, 8):
                one = user_profiles([h], vecs, half_life=half_life, n_last=n_last)
                batch = user_profiles([h, h[::-1], h[:0]], vecs, half_life=half_life, n_last=n_last)
                np.testing.assert_array_equal(one[0], batch[0])
    assert not user_profiles([np.array([], dtype=np.int64)], vecs).any()
