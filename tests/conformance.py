"""The conformance suite every recommender passes (LensKit's ``ScorerTests`` idea).

Use it by subclassing in a ``tests/test_*.py`` file and giving a factory::

    from conformance import RecommenderConformance

    class TestMyModel(RecommenderConformance):
        @staticmethod
        def make_model(**config):
            return MyModel({"epochs": 30, **config})

Class attributes tune what is asserted:

* ``known_answer`` (default True): on a checkerboard (two user groups, each liking one half of the
  catalog) the item withheld from a user must come first. Set False for non-personalised models.
* ``history`` (default True): the model implements ``_score_history`` (anonymous visitors).
* ``bad_config``: a config key the model must reject (default: a made-up key).

The data is tiny and synthetic (``checkerboard``), so a model's whole run takes seconds. Item vectors
are a fixed random projection of the items' group attribute plus noise: text models see the same
structure as collaborative ones.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from tokrec.data.dataset import Dataset
from tokrec.errors import ConfigError
from tokrec.models.base import Recommender
from tokrec.models.registry import load_model

N_USERS = 40
N_ITEMS = 20
HALF = N_ITEMS // 2
#: the user whose item is withheld in the known-answer test, and that item
PROBE_USER = "u3"
PROBE_ITEM = "i7"


def checkerboard(
    *,
    n_users: int = N_USERS,
    n_items: int = N_ITEMS,
    drop: tuple[str, str] | None = (PROBE_USER, PROBE_ITEM),
    seed: int = 0,
    extra_items: int = 0,
) -> tuple[Dataset, np.ndarray]:
    """Users ``u0..`` in two groups (the first and the second half of the user ids), each of which
    interacted with every item of its half of the catalog, in a random order, minus ``drop``.

    Args:
        extra_items: new catalog items without any events (half in each group), ids ``n0, n1, ...``.

    Returns:
        ``(dataset, item_vectors (n_items + extra_items, 8) float32)``.
    """
    rng = np.random.default_rng(seed)
    half = n_items // 2
    rows = []
    for u in range(n_users):
        group = 0 if u < n_users // 2 else 1
        items = np.arange(group * half, (group + 1) * half)
        rng.shuffle(items)
        for t, i in enumerate(items):
            if drop is not None and (f"u{u}", f"i{i}") == drop:
                continue
            rows.append((f"u{u}", f"i{i}", 1_000_000 + 1000 * u + t, 4.0))
    inter = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp", "value"])
    ids = [f"i{i}" for i in range(n_items)] + [f"n{j}" for j in range(extra_items)]
    groups = [0 if i < half else 1 for i in range(n_items)] + [j % 2 for j in range(extra_items)]
    items = pd.DataFrame(
        {
            "item_id": ids,
            "title": [f"Item {x}" for x in ids],
            "genres": ["Alpha|Common" if g == 0 else "Beta|Common" for g in groups],
        }
    )
    proj = np.random.default_rng(123).normal(size=(2, 8))
    vecs = proj[np.asarray(groups)] + 0.1 * np.random.default_rng(7).normal(size=(len(ids), 8))
    return Dataset(inter, items, name="checkerboard"), vecs.astype(np.float32)


def write_checkerboard_files(folder: Path) -> dict[str, Path]:
    """The checkerboard (with 4 items without events, ``n0``..``n3``) as the files a command reads:
    ``items.csv``, ``train.csv`` (user_id, item_id, rating, timestamp) and ``candidates.csv`` (the new items and
    the probe item), plus ``dir``."""
    ds, _ = checkerboard(extra_items=4)
    items = folder / "items.csv"
    ds.items.to_csv(items, index=False)
    inter = ds.interactions.rename(columns={"value": "rating"})[["user_id", "item_id", "rating", "timestamp"]]
    train = folder / "train.csv"
    inter.to_csv(train, index=False)
    cands = folder / "candidates.csv"
    pd.DataFrame({"item_id": ["n0", "n1", "n2", "n3", PROBE_ITEM]}).to_csv(cands, index=False)
    return {"items": items, "train": train, "candidates": cands, "dir": folder}


class RecommenderConformance:
    """Base class of the conformance tests: subclasses define ``make_model(**config)``."""

    known_answer: ClassVar[bool] = True
    history: ClassVar[bool] = True
    bad_config: ClassVar[dict[str, Any]] = {"no_such_option": 1}

    @staticmethod
    def make_model(**config: Any) -> Recommender:
        raise NotImplementedError

    # ---- fixtures ------------------------------------------------------------------------------
    @pytest.fixture(scope="class")
    @classmethod
    def data(cls) -> tuple[Dataset, np.ndarray]:
        return checkerboard()

    @pytest.fixture(scope="class")
    @classmethod
    def fitted(cls, data) -> Recommender:
        ds, vecs = data
        return cls.make_model().fit(ds, vecs)

    # ---- the interface -------------------------------------------------------------------------
    def test_fit_returns_self_and_scores_shape(self, data) -> None:
        ds, vecs = data
        model = self.make_model()
        assert model.fit(ds, vecs) is model
        s = model.score(["u0", "u25"])
        assert s.shape == (2, N_ITEMS) and s.dtype == np.float32
        assert np.isfinite(s).all()
        sub = model.score(["u0"], ["i3", "i15"])
        np.testing.assert_allclose(sub, s[:1, [3, 15]], rtol=1e-5, atol=1e-6)

    def test_unknown_user(self, fitted) -> None:
        s = fitted.score(["nobody", "u1"])
        assert np.isnan(s[0]).all() and np.isfinite(s[1]).all()
        with pytest.raises(KeyError):
            fitted.recommend("nobody")

    def test_recommend_excludes_seen_and_sorted(self, fitted, data) -> None:
        ds, _ = data
        seen = set(ds.interactions.loc[ds.interactions["user_id"] == "u0", "item_id"])
        recs = fitted.recommend("u0", k=N_ITEMS)
        ids = [i for i, _ in recs]
        assert not seen & set(ids)
        assert len(ids) == N_ITEMS - len(seen) and len(set(ids)) == len(ids)
        scores = [s for _, s in recs]
        assert scores == sorted(scores, reverse=True)
        with_seen = [i for i, _ in fitted.recommend("u0", k=N_ITEMS, exclude_seen=False)]
        assert len(with_seen) == N_ITEMS and seen <= set(with_seen)

    def test_candidates_and_exclude(self, fitted) -> None:
        cands = ["i1", "i12", "i13", "i19", "not-an-item"]
        ids = [i for i, _ in fitted.recommend("u0", k=10, candidates=cands, exclude=["i13"])]
        assert set(ids) == {"i12", "i19"}  # u0 has seen i1; i13 excluded; unknown ids ignored

    def test_k_handling(self, fitted) -> None:
        assert fitted.recommend("u30", k=0) == []
        assert len(fitted.recommend("u30", k=3)) == 3
        assert len(fitted.recommend("u30", k=1000)) == N_ITEMS - HALF

    def test_recommend_batch_frame(self, fitted) -> None:
        df = fitted.recommend_batch(["u0", "nobody", "u30"], k=4)
        assert list(df.columns) == ["user_id", "item_id", "score", "rank"]
        assert set(df["user_id"]) == {"u0", "u30"}
        for _, g in df.groupby("user_id"):
            assert g["rank"].tolist() == [1, 2, 3, 4]
            assert g["score"].is_monotonic_decreasing
        single = fitted.recommend("u30", k=4)
        batch = df[df["user_id"] == "u30"]
        # same scores in the same order (ids may swap only between scores equal to float precision)
        np.testing.assert_allclose(batch["score"].to_numpy(), [s for _, s in single], rtol=1e-4, atol=1e-5)
        assert batch["item_id"].iloc[0] == single[0][0] or np.isclose(
            batch["score"].iloc[0], batch["score"].iloc[1]
        )

    def test_save_load_round_trip(self, fitted, tmp_path: Path) -> None:
        path = fitted.save(tmp_path / "model")
        assert (path / "config.json").exists() and (path / "arrays.safetensors").exists()
        assert not list(path.glob("*.pkl")) and not list(path.glob("*.pickle"))
        # runtime options are not saved (a loaded model starts from this machine's defaults); the thread
        # count changes float sums, so the loaded model runs under the fitted one's options to compare
        loaded = load_model(path)
        loaded.set_runtime(**fitted.runtime.model_dump())
        assert type(loaded) is type(fitted) and loaded.config == fitted.config
        a = fitted.recommend_batch(k=5)
        b = loaded.recommend_batch(k=5)
        pd.testing.assert_frame_equal(a, b)
        fitted.save(path)  # overwriting an existing model directory works
        again = load_model(path)
        again.set_runtime(**fitted.runtime.model_dump())
        assert again.recommend("u0", k=3) == fitted.recommend("u0", k=3)

    def test_save_load_save_is_byte_identical(self, fitted, tmp_path: Path) -> None:
        """The saved form follows from the declared state alone: saving a loaded model writes the same
        bytes, file for file (parts included)."""
        first = fitted.save(tmp_path / "a")
        second = load_model(first).save(tmp_path / "b")
        files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
        assert files == sorted(p.relative_to(second) for p in second.rglob("*") if p.is_file())
        for f in files:
            assert (first / f).read_bytes() == (second / f).read_bytes(), f
        assert set(json.loads((first / "config.json").read_text())["state"]) == set(type(fitted).state)

    def test_config_rejects_unknown_keys(self) -> None:
        with pytest.raises(ConfigError, match=next(iter(self.bad_config))):
            self.make_model(**self.bad_config)

    def test_fitted_config_is_frozen_and_overrides_are_validated(self, fitted) -> None:
        """A fitted model's config never changes; a bad override of a valid config raises, naming it."""
        with pytest.raises(ValidationError):  # pydantic refuses assignment to a frozen model
            fitted.config.__setattr__(next(iter(type(fitted.config).model_fields)), None)
        with pytest.raises(ConfigError, match="bogus"):
            type(fitted)(fitted.config, bogus=1)
        with pytest.raises(ConfigError):
            fitted.with_scoring(bogus=1)

    def test_unfitted_model_refuses(self) -> None:
        with pytest.raises(ConfigError):
            self.make_model().recommend("u0")

    # ---- known answers -------------------------------------------------------------------------
    def test_known_answer_withheld_item_first(self, fitted) -> None:
        """Checkerboard: the one item ``u3``'s group likes that ``u3`` has not seen must come first."""
        if not self.known_answer:
            pytest.skip("not a personalised model")
        top = fitted.recommend(PROBE_USER, k=3)
        assert top[0][0] == PROBE_ITEM, top

    def test_anonymous_history(self, fitted) -> None:
        if not self.history:
            pytest.skip("model does not score anonymous histories")
        recs = fitted.recommend(history=["i0", "i1", "i2", "i3"], k=4)
        assert len(recs) == 4 and not {"i0", "i1", "i2", "i3"} & {i for i, _ in recs}
        if self.known_answer:
            assert all(int(i[1:]) < HALF for i, _ in recs), recs  # the same half of the catalog

    def test_new_items(self) -> None:
        """Models that score new items rank an unseen item of the user's group above the other group's."""
        model = self.make_model()
        ds, vecs = checkerboard(extra_items=4)
        model.fit(ds, vecs)
        s = model.score(["u0", "u30"], ["n0", "n1", "n2", "n3"])
        assert np.isfinite(s).all()
        if not type(model).scores_new_items:
            return
        # n0, n2 belong to group 0 (u0's half), n1, n3 to group 1 (u30's half)
        assert min(s[0, [0, 2]]) > max(s[0, [1, 3]])
        assert min(s[1, [1, 3]]) > max(s[1, [0, 2]])
        top = [i for i, _ in model.recommend("u0", k=2, candidates=["n0", "n1", "n2", "n3"])]
        assert set(top) == {"n0", "n2"}
