"""text-sasrec: conformance, a learnable next-item rule, new items from text alone, persistence, seeds."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conformance import RecommenderConformance
from tokrec.data.dataset import Dataset
from tokrec.errors import ConfigError
from tokrec.models.registry import create_model, load_model
from tokrec.models.sequential import TextSASRec

pytest.importorskip("torch")

TINY = {
    "hidden": 16,
    "n_blocks": 1,
    "n_heads": 2,
    "inner": 32,
    "max_len": 10,
    "batch_size": 32,
    "threads": 1,
    "device": "cpu",
}


class TestTextSASRecConformance(RecommenderConformance):
    @staticmethod
    def make_model(**config):
        return TextSASRec(
            {**TINY, "epochs": 40, "patience": 40, "lr": 5e-3, "dropout": 0.0, "refit": "none", **config}
        )


def cycle_data(
    n_items: int = 30, n_users: int = 120, length: int = 12, seed: int = 0
) -> tuple[Dataset, np.ndarray]:
    """Each user walks a fixed cycle ``i -> perm[i]`` from a random start: the next item is a
    deterministic function of the previous one. Item vectors are random (no text signal)."""
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n_items)
    rows = []
    for u in range(n_users):
        i = int(rng.integers(n_items))
        for t in range(length):
            rows.append((f"u{u}", f"i{i}", t))
            i = int(perm[i])
    inter = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])
    items = pd.DataFrame({"item_id": [f"i{i}" for i in range(n_items)]})
    vecs = rng.normal(size=(n_items, 12)).astype(np.float32)
    return Dataset(inter, items), vecs


@pytest.fixture(scope="module")
def cycle_model() -> tuple[TextSASRec, Dataset, np.ndarray]:
    ds, vecs = cycle_data()
    model = TextSASRec(
        {
            **TINY,
            "epochs": 60,
            "patience": 60,
            "lr": 5e-3,
            "dropout": 0.0,
            "id_dropout": 0.0,
            "refit": "none",
            "seed": 3,
        }
    )
    return model.fit(ds, vecs), ds, vecs


def test_learns_a_deterministic_next_item_rule(cycle_model) -> None:
    model, ds, _ = cycle_model
    perm = {}
    for s in ds.sequences():
        for a, b in zip(s[:-1], s[1:], strict=True):
            perm[int(a)] = int(b)
    hits = 0
    rng = np.random.default_rng(1)
    for _ in range(50):
        start = int(rng.integers(ds.n_items))
        hist = [start]
        for _ in range(int(rng.integers(1, 5))):
            hist.append(perm[hist[-1]])
        top = model.recommend(history=ds.item_vocab.decode(hist), k=1, exclude_seen=False)[0][0]
        hits += top == ds.item_vocab.decode([perm[hist[-1]]])[0]
    assert hits / 50 > 0.5, hits  # chance is 1/30


def test_validation_history_and_chosen_epoch(cycle_model) -> None:
    model, _, _ = cycle_model
    assert len(model.history_) == 60 and 1 <= model.best_epoch_ <= 60
    best = max(h["val_ndcg10"] for h in model.history_)
    assert model.history_[model.best_epoch_ - 1]["val_ndcg10"] == best
    assert best > 0.5


def test_add_items_scores_new_items_from_text(tmp_path) -> None:
    """Two item groups with distinct text vectors; users stay in their group. New items added after
    training (no events, no retraining) must be ranked by the group their text belongs to."""
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(2, 12)) * 3
    n = 24
    group = np.arange(n) % 2
    vecs = (centres[group] + rng.normal(size=(n, 12)) * 0.3).astype(np.float32)
    rows = []
    for u in range(80):
        g = u % 2
        for t, i in enumerate(rng.permutation(np.flatnonzero(group == g))[:8]):
            rows.append((f"u{u}", f"i{i}", t))
    ds = Dataset(
        pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"]),
        pd.DataFrame({"item_id": [f"i{i}" for i in range(n)]}),
    )
    model = TextSASRec(
        {**TINY, "epochs": 25, "patience": 25, "lr": 5e-3, "id_dropout": 0.5, "refit": "none"}
    ).fit(ds, vecs)
    new_vecs = (centres[[0, 1, 0, 1]] + rng.normal(size=(4, 12)) * 0.3).astype(np.float32)
    before = model.n_items
    model.add_items(["new0", "new1", "new2", "new3"], new_vecs)
    assert model.n_items == before + 4 and len(ds.item_vocab) == before  # the dataset's vocab is untouched
    s = model.score(["u0", "u1"], ["new0", "new1", "new2", "new3"])  # u0 in group 0, u1 in group 1
    assert min(s[0, [0, 2]]) > max(s[0, [1, 3]]) and min(s[1, [1, 3]]) > max(s[1, [0, 2]])
    recs = [i for i, _ in model.recommend("u1", k=2, candidates=["new0", "new1", "new2", "new3"])]
    assert set(recs) == {"new1", "new3"}
    loaded = load_model(model.save(tmp_path / "m"))
    np.testing.assert_allclose(loaded.score(["u0"], ["new0", "new1"]), s[:1, :2], rtol=1e-5, atol=1e-6)
    with pytest.raises(ConfigError):
        model.add_items(["x"], np.zeros((1, 5), np.float32))


def test_seed_reproducibility_and_save_load(tmp_path) -> None:
    ds, vecs = cycle_data(n_users=40, length=8)
    cfg = {**TINY, "epochs": 4, "patience": 4}
    a = TextSASRec({**cfg, "seed": 7}).fit(ds, vecs)
    b = TextSASRec({**cfg, "seed": 7}).fit(ds, vecs)
    c = TextSASRec({**cfg, "seed": 8}).fit(ds, vecs)
    sa, sb, sc = a.score(["u0", "u5"]), b.score(["u0", "u5"]), c.score(["u0", "u5"])
    np.testing.assert_array_equal(sa, sb)
    assert not np.allclose(sa, sc)
    loaded = load_model(a.save(tmp_path / "m"))
    np.testing.assert_allclose(loaded.score(["u0", "u5"]), sa, rtol=1e-5, atol=1e-6)
    assert loaded.best_epoch_ == a.best_epoch_ and loaded.history_ == a.history_


def test_config_checks() -> None:
    with pytest.raises(ConfigError):
        create_model("text-sasrec", {"hidden": 10, "n_heads": 3}).fit(*cycle_data(n_users=5))
    with pytest.raises(ConfigError):
        create_model("text-sasrec", {"dtype": "int8"})
    with pytest.raises(ConfigError):
        TextSASRec(TINY).fit(cycle_data(n_users=5)[0])  # needs item vectors


def test_refit_modes_train_on_the_full_sequences() -> None:
    ds, vecs = cycle_data(n_users=30, length=8)
    scores = {}
    for mode in ("none", "continue", "scratch"):
        m = TextSASRec({**TINY, "epochs": 3, "patience": 3, "refit": mode, "continue_epochs": 1}).fit(
            ds, vecs
        )
        assert len(m.history_) == 3
        scores[mode] = m.score(["u0", "u1"])
        assert np.isfinite(scores[mode]).all()
    assert not np.allclose(scores["none"], scores["continue"])
    assert not np.allclose(scores["none"], scores["scratch"])
