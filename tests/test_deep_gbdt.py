"""gbdt-ranker: conformance, persistence without pickle, and a planted signal it must pick up."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conformance import RecommenderConformance
from tokrec.data.dataset import Dataset
from tokrec.models.gbdt_ranker import GBDTRanker, validation_cut
from tokrec.models.registry import create_model, load_model

pytest.importorskip("lightgbm")


class TestGBDTConformance(RecommenderConformance):
    @staticmethod
    def make_model(**config):
        return GBDTRanker(
            {
                "n_candidates": 10,
                "n_estimators": 20,
                "min_child_samples": 2,
                "valid_fraction": 0.0,
                "threads": 1,
                **config,
            }
        )

    def test_parts_are_sub_directories_that_load_alone_in_any_order(self, fitted, tmp_path) -> None:
        """A composite saves each source as its own model directory (config.json + arrays): every part
        loads on its own, in any order, and a part can be swapped for another of the same catalog."""
        import json
        import shutil

        path = fitted.save(tmp_path / "m")
        state = json.loads((path / "config.json").read_text())["state"]["sources_"]
        dirs = [item["dir"] for item in state["items"]]
        assert dirs == [f"sources.{j}" for j in range(len(fitted.sources_))]
        history = ["i0", "i1", "i2"]
        for j in reversed(range(len(dirs))):  # last part first
            part = load_model(path / dirs[j])
            assert part.name == fitted.sources_[j].name and part.config == fitted.sources_[j].config
            assert part.recommend(history=history, k=5) == fitted.sources_[j].recommend(history=history, k=5)
        whole = load_model(path)
        assert whole.recommend("u0", k=5) == fitted.recommend("u0", k=5)
        # swap the first stage (EASE, half-life 2) for the popularity source: the composite follows it
        pop = next(j for j, s in enumerate(fitted.sources_) if s.name == "popularity")
        shutil.rmtree(path / dirs[0])
        shutil.copytree(path / dirs[pop], path / dirs[0])
        swapped = load_model(path)
        assert swapped.sources_[0].name == "popularity" and swapped.sources_[pop].name == "popularity"
        np.testing.assert_array_equal(swapped.sources_[0].score(["u0"]), fitted.sources_[pop].score(["u0"]))
        assert swapped.recommend("u0", k=5)  # the composite still scores with the swapped part


def test_registered() -> None:
    assert isinstance(create_model("gbdt-ranker", {"n_candidates": 5}), GBDTRanker)


def test_the_cli_and_evaluate_give_it_item_vectors() -> None:
    """F_ij's Z_U / Z_I need item vectors: `tokrec recommend` / `evaluate` must pass them, while it still
    fits without them (the popularity baseline gets none)."""
    from tokrec.evaluation.protocol import _needs_vectors
    from tokrec.models.base import wants_item_vectors

    assert wants_item_vectors(GBDTRanker) and not GBDTRanker.needs_item_vectors
    assert _needs_vectors("gbdt-ranker") and not _needs_vectors("popularity")


def test_validation_cut_holds_out_each_users_last_events() -> None:
    inter = pd.DataFrame(
        {
            "user_id": ["a", "a", "a", "b", "b", "c", "c", "c", "c"],
            "item_id": ["1", "2", "3", "1", "2", "3", "1", "2", "4"],
            "timestamp": [3, 1, 2, 1, 2, 5, 6, 7, 8],
        }
    )
    ds = Dataset(inter, pd.DataFrame({"item_id": ["1", "2", "3", "4"]}))
    ds_val, users, hists, items = validation_cut(ds)
    got = {
        ds.user_vocab.decode([u])[0]: (ds.item_vocab.decode(h), ds.item_vocab.decode([i])[0])
        for u, h, i in zip(users, hists, items, strict=True)
    }
    assert got == {"a": (["2", "3"], "1"), "c": (["3", "1", "2"], "4")}  # b has only 2 events: kept whole
    assert len(ds_val) == 7
    ds_val, users, hists, items = validation_cut(ds, n_last=2)
    assert ds.user_vocab.decode(users) == ["c", "c"] and ds.item_vocab.decode(items) == ["2", "4"]
    assert [len(h) for h in hists] == [2, 3] and len(ds_val) == 7


def planted(seed: int = 0, n_users: int = 300, n_items: int = 60) -> tuple[Dataset, np.ndarray]:
    """Users browse random items; each user's last event is the item whose LM vector is closest to
    the previous item's. Collaborative first stages cannot see this; the text-cosine feature can."""
    rng = np.random.default_rng(seed)
    vecs = rng.normal(size=(n_items, 16)).astype(np.float32)
    vn = vecs / np.linalg.norm(vecs, axis=1, keepdims=True)
    sim = vn @ vn.T
    np.fill_diagonal(sim, -np.inf)
    nearest = sim.argmax(1)
    rows = []
    for u in range(n_users):
        hist = list(rng.choice(n_items, size=8, replace=False))
        for _ in range(3):  # the planted link: item -> its text neighbour, three times per user
            nxt = nearest[hist[-1]]
            if nxt in hist:
                break
            hist.append(nxt)
        rows += [(f"u{u}", f"i{i}", t) for t, i in enumerate(hist)]
    inter = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])
    return Dataset(inter, pd.DataFrame({"item_id": [f"i{i}" for i in range(n_items)]})), vecs


def _hit_rate(model, ds: Dataset, test: pd.DataFrame, k: int = 5) -> float:
    recs = model.recommend_batch(test["user_id"].tolist(), k=k)
    got = set(zip(recs["user_id"], recs["item_id"], strict=True))
    return float(np.mean([(u, i) in got for u, i in zip(test["user_id"], test["item_id"], strict=True)]))


def test_beats_its_first_stage_on_a_planted_signal(tmp_path) -> None:
    ds, vecs = planted()
    inter = ds.interactions
    last = inter.groupby("user_id")["timestamp"].transform("max") == inter["timestamp"]
    train = ds.with_interactions(inter[~last].reset_index(drop=True))
    test = inter[last]
    cfg = {
        "first_stage": {"model": "popularity"},
        "sources": [],
        "n_candidates": 60,
        "n_estimators": 100,
        "threads": 1,
        "vector_dims": 0,
    }
    ranker = GBDTRanker(cfg).fit(train, vecs)
    first = create_model("popularity").fit(train)
    hr_rank, hr_first = _hit_rate(ranker, train, test), _hit_rate(first, train, test)
    assert hr_rank > hr_first + 0.3, (hr_rank, hr_first)
    assert "text_cosine" in ranker.feature_names_
    path = ranker.save(tmp_path / "gbdt")
    loaded = load_model(path)
    np.testing.assert_allclose(loaded.score(["u1", "u2"]), ranker.score(["u1", "u2"]), rtol=1e-6)
    assert "tree" in (path / "config.json").read_text()  # the booster travels in LightGBM's text format
