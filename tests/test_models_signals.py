"""Numerical building blocks of the recommenders, against hand-computed values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from tokrec.data.dataset import Dataset
from tokrec.models import signals as sig
from tokrec.models.registry import create_model


def test_recency_weights_halve_every_half_life() -> None:
    np.testing.assert_allclose(sig.recency_weights(4, 2.0), [0.5**1.5, 0.5, 0.5**0.5, 1.0])
    np.testing.assert_array_equal(sig.recency_weights(3, None), [1, 1, 1])


def test_user_rows_keep_the_latest_weight_of_a_repeated_item() -> None:
    m = sig.user_rows([np.array([2, 0, 2]), np.array([], dtype=np.int64)], 3, half_life=1.0).toarray()
    np.testing.assert_allclose(m, [[0.5, 0.0, 1.0], [0.0, 0.0, 0.0]])


def test_ease_matches_the_closed_form() -> None:
    rng = np.random.default_rng(0)
    x = (rng.random((30, 6)) < 0.4).astype(float)
    lam = 2.0
    b = sig.ease_weights(sp.csr_matrix(x), lam)
    # Steck 2019: B = argmin ||X - XB||^2 + lam ||B||^2 s.t. diag(B) = 0; check per column with the
    # constrained least squares solved directly (drop column j from the regressors).
    for j in range(6):
        others = [k for k in range(6) if k != j]
        xo = x[:, others]
        w = np.linalg.solve(xo.T @ xo + lam * np.eye(5), xo.T @ x[:, j])
        np.testing.assert_allclose(b[others, j], w, rtol=1e-4, atol=1e-5)
        assert b[j, j] == 0


def test_transition_matrix_counts_followers() -> None:
    t = sig.transition_matrix([np.array([0, 1, 2]), np.array([0, 1])], 3, window=2, gap_decay=0.5).toarray()
    # from item 0: item 1 twice (gap 1), item 2 once at gap 2 (weight 0.5); row sum 2.5, divided by 3.5
    np.testing.assert_allclose(t[0], [0, 2 / 3.5, 0.5 / 3.5], rtol=1e-6)
    np.testing.assert_allclose(t[1], [0, 0, 1 / 2], rtol=1e-6)
    np.testing.assert_allclose(t[2], [0, 0, 0])
    s = sig.next_item_scores(sp.csr_matrix(t), [np.array([1, 0])], n_last=2, decay=0.5)
    np.testing.assert_allclose(s[0], t[0] + 0.5 * t[1], rtol=1e-6)


def test_time_kernel_prefers_events_near_the_user() -> None:
    counts = np.array([[5.0, 0.0, 0.0], [0.0, 0.0, 5.0]])
    s = sig.time_kernel_scores(counts, np.array([0, 2]), bandwidth=1.0)
    assert s[0, 0] > s[0, 1] and s[1, 1] > s[1, 0]
    np.testing.assert_allclose(s[0, 0], np.log1p(5.0), rtol=1e-6)


def test_top_k_neighbours_and_znorm() -> None:
    sim = np.array([[1.0, 0.9, 0.1, 0.5], [0.9, 1.0, 0.2, -0.3], [0.1, 0.2, 1.0, 0.4], [0.5, -0.3, 0.4, 1.0]])
    nn = sig.top_k_neighbours(sim, 2, allowed=np.array([True, True, True, False])).toarray()
    np.testing.assert_allclose(nn[0], [0, 0.9, 0.1, 0])  # 3 not allowed, diagonal never kept
    np.testing.assert_allclose(nn[1], [0.9, 0, 0.2, 0])
    z = sig.znorm_rows(np.array([[1.0, 2.0, 3.0], [4.0, 4.0, 4.0]]))
    np.testing.assert_allclose(z[0], [-1.2247449, 0, 1.2247449], rtol=1e-6)
    np.testing.assert_array_equal(z[1], [0, 0, 0])


def test_attribute_features_dates_genres_numbers() -> None:
    items = pd.DataFrame(
        {
            "item_id": ["a", "b", "c"],
            "title": ["Alpha (1995)", "Beta (1996)", "Gamma"],
            "release_date": ["01-Jan-1995", "15-Jun-1996", ""],
            "genres": ["Comedy|Drama", "Drama", "Horror"],
            "price": [1.0, 2.0, 3.0],
        }
    )
    f, release = sig.attribute_features(items)
    assert np.isnan(release[2])
    assert release[0] == pd.Timestamp("1995-01-01").timestamp()
    # year one-hot (2 years) + scaled year + 3 genres + price; the title (free text) is not a feature
    assert f.shape == (3, 2 + 1 + 3 + 1)


def test_age_rates_learn_that_recent_releases_are_rated() -> None:
    day = 86400.0
    release = np.array([0.0, 0.0, -3000 * day, -3000 * day])
    user_time = np.full(50, 10 * day)  # every user is 10 days after items 0, 1 came out
    x = sp.csr_matrix(np.tile([1.0, 1.0, 0.0, 1.0], (50, 1)) * (np.arange(50) % 5 != 0)[:, None])
    rates = sig.age_log_rates(x, user_time, release, np.arange(4))
    b = sig.age_bins(user_time[:1], release)[0]
    assert rates[b[0]] > rates[b[2]]  # the 0-30 day bin rates higher than the 3000-day bin


def _sequential_dataset() -> Dataset:
    """Users who all watch items in the order 0 -> 1 -> 2 -> ... : the next item is known."""
    rows = []
    for u in range(30):
        start = u % 5
        for t, i in enumerate(range(start, start + 5)):
            rows.append((f"u{u}", f"i{i}", 1000 * u + t))
    inter = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])
    items = pd.DataFrame({"item_id": [f"i{i}" for i in range(10)], "genres": ["x|y"] * 10})
    return Dataset(inter, items)


@pytest.mark.parametrize("name", ["tokrec", "ease"])
def test_sequence_known_answer(name: str) -> None:
    """After i4, i5, i6 the model predicts i7 (the item that follows), not an earlier one."""
    ds = _sequential_dataset()
    vecs = np.random.default_rng(0).normal(size=(10, 8)).astype(np.float32)
    cfg = {"ease_lambda": 1.0} if name == "tokrec" else {"l2": 1.0, "half_life": 1.0}
    model = create_model(name, cfg).fit(ds, vecs)
    top = model.recommend(history=["i4", "i5", "i6"], k=1)
    assert top[0][0] == "i7"


def test_tokrec_config_is_validated() -> None:
    from tokrec.errors import ConfigError

    weights = {f"w_{s}": 0.0 for s in ("ease", "trans", "time", "age", "map", "prop", "prior", "profile")}
    with pytest.raises(ConfigError, match="at least one signal weight"):
        create_model("tokrec", weights)
    with pytest.raises(ConfigError):
        create_model("tokrec", {"ease_lambda": -1})
    only_ease = create_model("tokrec", {**weights, "w_ease": 1.0})
    assert only_ease._active() == ("ease",)


def test_dense_models_refuse_huge_catalogs(monkeypatch) -> None:
    from tokrec.errors import ConfigError

    monkeypatch.setattr(sig, "MAX_DENSE_ITEMS", 5)
    with pytest.raises(ConfigError, match="dense 6 x 6"):
        sig.ease_weights(sp.csr_matrix(np.eye(6)), 1.0)


def test_iso_dates_are_not_read_day_first() -> None:
    """1997-06-04 is the 4th of June: the day-first fallback is for dates like 04/06/1997 only."""
    items = pd.DataFrame({"item_id": ["a", "b", "c"], "released": ["1997-06-04", "1997-01-02", "2001-12-31"]})
    release = sig.attribute_features(items)[1]
    assert list(pd.to_datetime(release, unit="s").strftime("%Y-%m-%d")) == [
        "1997-06-04",
        "1997-01-02",
        "2001-12-31",
    ]
    day_first = pd.DataFrame({"item_id": ["a", "b"], "released": ["04/06/1997", "31/12/2001"]})
    assert list(pd.to_datetime(sig.attribute_features(day_first)[1], unit="s").strftime("%Y-%m-%d")) == [
        "1997-06-04",
        "2001-12-31",
    ]


@pytest.mark.parametrize("name", ["als", "bpr"])
def test_implicit_factorisations_fit_with_blas_on_one_thread(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # implicit threads over users itself and warns (RuntimeWarning) when BLAS has threads of its own too
    import warnings

    import implicit.utils
    from threadpoolctl import threadpool_info

    seen = []
    real = implicit.utils.check_blas_config

    def check() -> None:
        seen.append([a["num_threads"] for a in threadpool_info() if a["user_api"] == "blas"])
        real()

    monkeypatch.setattr(implicit.utils, "_checked_blas_config", False)
    for module in ("implicit.cpu.als", "implicit.cpu.bpr"):
        monkeypatch.setattr(f"{module}.check_blas_config", check, raising=False)
    inter = pd.DataFrame({"user_id": list("aabbccdd"), "item_id": list("xyxzyzxw")})
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        model = create_model(name, {"factors": 4, "iterations": 3}).fit(
            Dataset(inter, pd.DataFrame({"item_id": list("wxyz")}))
        )
    assert model.item_factors_.shape[0] == 4
    if name == "als":  # BPR's constructor does not check
        assert seen and all(n == 1 for ns in seen for n in ns)
