"""One user profile Z_U (tokrec.features.user_profiles): the former profile paths give the same Z_U on the
same history, repeated items included."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tokrec.data.dataset import Dataset
from tokrec.features import user_aggregate_vectors, user_profiles
from tokrec.models.registry import create_model

HALF_LIFE = 2.0


@pytest.fixture(scope="module")
def data():
    """Eight users whose histories repeat items (item 3 three times for u0), unit item vectors."""
    rng = np.random.default_rng(5)
    rows = []
    for u in range(8):
        seq = rng.integers(0, 12, size=9)
        if u == 0:
            seq = np.array([3, 1, 3, 5, 3, 7, 2, 2, 9])
        rows += [(f"u{u}", f"i{i}", t) for t, i in enumerate(seq)]
    ds = Dataset(
        pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"]),
        pd.DataFrame({"item_id": [f"i{i}" for i in range(12)]}),
    )
    vecs = rng.normal(size=(12, 6))
    return ds, (vecs / np.linalg.norm(vecs, axis=1, keepdims=True)).astype(np.float32)


def _by_hand(seq: np.ndarray, vecs: np.ndarray, n_last: int | None, half_life: float | None) -> np.ndarray:
    """The definition, written out: last n_last events, 0.5 ** (age / half_life), a repeated item once
    with its latest weight, unit length."""
    recent = list(seq[-n_last:] if n_last else seq)
    weight: dict[int, float] = {}
    for age, item in enumerate(reversed(recent)):
        weight.setdefault(int(item), 1.0 if half_life is None else 0.5 ** (age / half_life))
    u = sum(w * vecs[i].astype(np.float64) for i, w in weight.items())
    return u / np.linalg.norm(u)


def test_the_definition_on_a_history_with_repeats(data) -> None:
    ds, vecs = data
    seqs = ds.sequences()
    for n_last, hl in [(None, None), (None, HALF_LIFE), (4, None), (4, HALF_LIFE)]:
        got = user_profiles(seqs, vecs, n_last=n_last, half_life=hl)
        for u, s in enumerate(seqs):
            np.testing.assert_allclose(got[u], _by_hand(s, vecs, n_last, hl), rtol=1e-5, atol=1e-6)
    assert (user_profiles([np.empty(0, np.int64)], vecs) == 0).all()


def test_the_former_profile_paths_agree(data) -> None:
    """features.user_aggregate_vectors (the `features` command), the text-profile model, the fij-scorer
    and the tokrec model's ``profile`` signal all give user_profiles' Z_U."""
    ds, vecs = data
    seqs = ds.sequences()
    want = user_profiles(seqs, vecs, half_life=HALF_LIFE)
    np.testing.assert_allclose(
        user_aggregate_vectors(ds, vecs, half_life=HALF_LIFE), want, rtol=1e-5, atol=1e-6
    )
    text = create_model("text-profile", {"n_last": 100, "half_life": HALF_LIFE}).fit(ds, vecs)
    np.testing.assert_allclose(text.user_vectors(seqs), want, rtol=1e-5, atol=1e-6)
    fij = create_model("fij-scorer", {"n_last": 4, "epochs": 1, "rank": 2, "threads": 1}).fit(ds, vecs)
    np.testing.assert_allclose(
        fij.user_vectors(seqs), user_profiles(seqs, vecs, n_last=4), rtol=1e-5, atol=1e-6
    )
    tokrec = create_model("tokrec", {"profile_half_life": HALF_LIFE}).fit(ds, vecs)
    times = np.full(len(seqs), 10, dtype=np.int64)
    profile = tokrec.signals(seqs, times, ("profile",))["profile"]
    np.testing.assert_allclose(profile, want @ vecs.T, rtol=1e-4, atol=1e-5)


def test_one_historys_dense_weights_are_its_user_row():
    from tokrec.features import history_weights, user_rows

    seq = np.array([4, 2, 7, 2, 9, 4, 4])
    items, w = history_weights(seq, half_life=2.0)
    row = user_rows([seq], 10, 2.0)
    np.testing.assert_array_equal(items, row.indices[np.argsort(row.indices)])
    np.testing.assert_allclose(w, row.toarray()[0, items])
    assert w[list(items).index(4)] == 1.0  # item 4's latest event is the latest: weight 1
