"""Misuse of the Python API gets a clear tokrec error naming what is wrong, never a raw KeyError /
IndexError / AttributeError deep inside, and never a silently wrong result (QA items D2, D3, D6, D7)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conformance import N_ITEMS, N_USERS, checkerboard
from tokrec.data.dataset import Dataset, Vocab
from tokrec.errors import ConfigError, DataError, TokrecError, UnknownIdError
from tokrec.features import pair_features, user_aggregate_vectors, user_profiles
from tokrec.models.registry import create_model, load_model


@pytest.fixture(scope="module")
def data() -> tuple[Dataset, np.ndarray]:
    return checkerboard()


@pytest.fixture(scope="module")
def ease(data):
    ds, _ = data
    return create_model("ease", {"l2": 10.0}).fit(ds)


# ---- D2: fit validates item_vectors ----------------------------------------------------------------
def _bad_vectors(vecs: np.ndarray) -> dict[str, tuple[object, str]]:
    nan, inf = vecs.copy(), vecs.copy()
    nan[3, 1] = np.nan
    inf[5, 0] = np.inf
    return {
        "1-D": (vecs[:, 0], rf"2-D .*shape \({N_ITEMS},\)"),
        "3-D": (vecs[:, :, None], "2-D"),
        "no columns": (np.zeros((len(vecs), 0), np.float32), "no columns"),
        "NaN": (nan, "NaN or inf"),
        "inf": (inf, "NaN or inf"),
        "strings": (np.full(vecs.shape, "a"), "numbers"),
        "objects": (vecs.astype(object), "numbers"),
        "wrong rows": (vecs[:10], f"10 rows, the catalog has {N_ITEMS}"),
    }


@pytest.mark.parametrize("case", list(_bad_vectors(np.zeros((N_ITEMS, 4), np.float32))))
@pytest.mark.parametrize("name", ["text-profile", "hybrid-map"])
def test_fit_refuses_malformed_item_vectors(data, name: str, case: str) -> None:
    ds, vecs = data
    assert ds.n_items == N_ITEMS
    bad, match = _bad_vectors(vecs)[case]
    with pytest.raises(ConfigError, match=match):
        create_model(name).fit(ds, bad)


def test_fit_with_valid_vectors_is_unchanged(data) -> None:
    """A float array goes to the model as it is; a list of lists or integers is read as the same numbers."""
    ds, vecs = data
    a = create_model("text-profile").fit(ds, vecs).score(["u0", "u25"])
    b = create_model("text-profile").fit(ds, vecs.tolist()).score(["u0", "u25"])
    np.testing.assert_array_equal(a, b)
    assert np.isfinite(a).all()
    ints = np.rint(vecs * 100).astype(np.int64)
    c = create_model("text-profile").fit(ds, ints).score(["u0"])
    d = create_model("text-profile").fit(ds, ints.astype(np.float32)).score(["u0"])
    np.testing.assert_array_equal(c, d)


@pytest.mark.parametrize("bad", [None, "dataset", "frame"])
def test_fit_refuses_what_is_not_a_dataset(data, bad: str | None) -> None:
    ds, _ = data
    arg = ds.interactions if bad == "frame" else bad
    with pytest.raises(ConfigError, match="expects a tokrec Dataset"):
        create_model("ease").fit(arg)  # type: ignore[arg-type]


def test_user_aggregate_vectors_refuses_non_finite_vectors_and_bad_half_life(data) -> None:
    ds, vecs = data
    bad = vecs.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ConfigError, match="NaN or inf"):
        user_aggregate_vectors(ds, bad)
    for half_life in (float("nan"), 0, -1.0):
        with pytest.raises(ConfigError, match="half_life"):
            user_aggregate_vectors(ds, vecs, half_life=half_life)
    with pytest.raises(ConfigError, match="2-D"):
        user_aggregate_vectors(ds, vecs[:, 0])
    # an infinite half-life weighs every event 1, as None does
    np.testing.assert_array_equal(
        user_aggregate_vectors(ds, vecs, half_life=float("inf")), user_aggregate_vectors(ds, vecs)
    )
    z = user_aggregate_vectors(ds, vecs, half_life=2.0)
    np.testing.assert_allclose(np.linalg.norm(z, axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("many", [False, True], ids=["one history", "many histories"])
def test_user_profiles_refuses_bad_n_last_rows_and_non_finite_vectors(data, many: bool) -> None:
    _, vecs = data
    h = [np.array([1, 2, 3])] + ([np.array([4])] if many else [])
    for n_last in (0, -1, 1.5):
        with pytest.raises(ConfigError, match="n_last"):
            user_profiles(h, vecs, n_last=n_last)  # type: ignore[arg-type]
    for row in (-1, N_ITEMS):
        with pytest.raises(ConfigError, match=f"row {row} is outside item_vecs"):
            user_profiles([np.array([1, row])] + h[1:], vecs)
    with pytest.raises(ConfigError, match="half_life"):
        user_profiles(h, vecs, half_life=float("nan"))
    bad = vecs.copy()
    bad[2] = np.nan
    with pytest.raises(ConfigError, match="NaN or inf"):
        user_profiles(h, bad)
    # a NaN in a vector no history reads is not looked at (the service reads only a query's rows)
    bad_unused = vecs.copy()
    bad_unused[N_ITEMS - 1] = np.nan
    np.testing.assert_array_equal(user_profiles(h, bad_unused), user_profiles(h, vecs))
    # n_last=1 is the latest event's vector alone (unit length)
    one = user_profiles(h, vecs, n_last=1)[0]
    np.testing.assert_allclose(one, vecs[3] / np.linalg.norm(vecs[3]), rtol=1e-5, atol=1e-6)


# ---- D3: load_model checks the directory -----------------------------------------------------------
def _edit(key: str, value: object):
    def f(meta: dict) -> None:
        if value is _DROP:
            meta.pop(key)
        else:
            meta[key] = value(meta) if callable(value) else value

    return f


_DROP = object()
_BROKEN_CONFIG = {
    "no model": (_edit("model", _DROP), "'model'"),
    "no config": (_edit("config", _DROP), "'config'"),
    "config a list": (_edit("config", [1]), "'config' should be a JSON object"),
    "items a number": (_edit("items", 5), "'items' should be a JSON array"),
    "items numbers": (
        _edit("items", lambda m: list(range(len(m["items"])))),
        "'items' should be a list of id",
    ),
    "items cut": (_edit("items", lambda m: m["items"][:5]), "'items' lists 5 items"),
    "items duplicated": (_edit("items", lambda m: m["items"][:1] * len(m["items"])), "duplicate ids"),
    "users cut": (_edit("users", lambda m: m["users"][:5]), "'users' lists 5 users"),
    "state a list": (_edit("state", []), "'state' should be a JSON object"),
    "state spec not an object": (_edit("state", {"counts_": 3}), "state 'counts'"),
    "state kind unknown": (_edit("state", {"counts_": {"kind": "zzz"}}), "unknown state kind"),
    "state array missing": (
        _edit("state", {"counts_": {"kind": "csr", "shape": [1, 1]}}),
        "no array 'counts.data'",
    ),
    "model dir escapes": (_edit("state", {"counts_": {"kind": "model", "dir": "../x"}}), "'dir'"),
}


@pytest.fixture(scope="module")
def saved_pop(data, tmp_path_factory) -> Path:
    ds, _ = data
    return create_model("popularity").fit(ds).save(tmp_path_factory.mktemp("pop") / "m")


@pytest.mark.parametrize("case", list(_BROKEN_CONFIG))
def test_load_model_refuses_a_config_that_does_not_fit(saved_pop, tmp_path, case: str) -> None:
    edit, match = _BROKEN_CONFIG[case]
    d = tmp_path / "m"
    shutil.copytree(saved_pop, d)
    meta = json.loads((d / "config.json").read_text())
    edit(meta)
    (d / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ConfigError, match=match) as err:
        load_model(d)
    assert "config.json" in str(err.value) or "arrays.safetensors" in str(err.value)


def test_load_model_refuses_missing_truncated_or_foreign_files(saved_pop, tmp_path) -> None:
    d = tmp_path / "m"
    shutil.copytree(saved_pop, d)
    (d / "config.json").write_text("[1, 2]")
    with pytest.raises(ConfigError, match=r"config.json: expected a JSON object"):
        load_model(d)
    shutil.copy(saved_pop / "config.json", d / "config.json")
    arrays = (d / "arrays.safetensors").read_bytes()
    for cut in (len(arrays) // 2, 4):
        (d / "arrays.safetensors").write_bytes(arrays[:cut])
        with pytest.raises(ConfigError, match=r"arrays.safetensors: unreadable"):
            load_model(d)
    (d / "arrays.safetensors").unlink()
    with pytest.raises(ConfigError, match=r"arrays.safetensors: missing"):
        load_model(d)
    # histories that reach past the vocabularies: the arrays of a bigger model under this config
    big_ds, _ = checkerboard(n_users=N_USERS + 10, n_items=N_ITEMS + 10, drop=None)
    big = create_model("popularity").fit(big_ds).save(tmp_path / "big")
    shutil.copy(big / "arrays.safetensors", d / "arrays.safetensors")
    with pytest.raises(ConfigError, match="do not belong together"):
        load_model(d)
    shutil.copy(saved_pop / "arrays.safetensors", d / "arrays.safetensors")
    assert load_model(d).recommend("u0", k=3) == load_model(saved_pop).recommend("u0", k=3)


# ---- D6: unknown ids, k, configs, save targets ---------------------------------------------------
def test_unknown_ids_raise_an_error_naming_them(ease) -> None:
    with pytest.raises(UnknownIdError, match="unknown user id 'nope'") as err:
        ease.recommend("nope")
    assert isinstance(err.value, KeyError) and isinstance(err.value, DataError)
    assert str(err.value).startswith("unknown user id 'nope'")  # not quoted like a bare KeyError
    with pytest.raises(UnknownIdError, match="unknown item id 'zz'"):
        ease.score(["u0"], ["i1", "zz"])
    with pytest.raises(UnknownIdError, match=r"'zz'.*\(2 unknown item ids in all\)"):
        ease.score(["u0"], ["zz", "i1", "yy"])
    with pytest.raises(KeyError, match="'e'"):
        Vocab(["a"]).encode(["a", "e"])


@pytest.mark.parametrize("k", [1.5, "5", -3, True, None])
def test_k_must_be_a_whole_number(ease, k: object) -> None:
    with pytest.raises(ConfigError, match="k must be a whole number"):
        ease.recommend("u0", k=k)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="k must be a whole number"):
        ease.recommend_batch(["u0"], k=k)  # type: ignore[arg-type]


def test_k_zero_and_numpy_ints_still_work(ease) -> None:
    assert ease.recommend("u0", k=0) == []
    assert len(ease.recommend_batch(["u0"], k=0)) == 0
    assert ease.recommend("u0", k=np.int64(3)) == ease.recommend("u0", k=3)


@pytest.mark.parametrize("config", [[1, 2], "{}", 3])
def test_create_model_refuses_a_config_that_is_not_a_dict(config: object) -> None:
    with pytest.raises(
        ConfigError, match=f"ease: config must be a dict of settings, not {type(config).__name__}"
    ):
        create_model("ease", config)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="a model name is a string"):
        create_model(None)  # type: ignore[arg-type]
    assert create_model("ease", None).config == create_model("ease", {}).config


def test_save_refuses_a_file_and_a_path_under_a_file(ease, tmp_path) -> None:
    f = tmp_path / "notes.txt"
    f.write_text("keep me")
    with pytest.raises(ConfigError, match="exists and is not a folder"):
        ease.save(f)
    with pytest.raises(ConfigError, match="is not a folder; cannot save a model under it"):
        ease.save(f / "model")
    assert f.read_text() == "keep me" and sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


# ---- D7: strings as id lists, pair_features rows, Dataset ids --------------------------------------
def test_a_string_is_not_a_list_of_ids(ease) -> None:
    with pytest.raises(ConfigError, match=r"history must be a list of ids, not a string \('i5'\)"):
        ease.recommend(history="i5", k=3)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="candidates must be a list"):
        ease.recommend("u0", candidates="i1")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="exclude must be a list"):
        ease.recommend("u0", exclude="i1")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="user_ids must be a list"):
        ease.score("u0")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="user_ids must be a list"):
        ease.recommend_batch("u0")  # type: ignore[arg-type]
    # lists, tuples, arrays and generators still work, and give the same answer
    a = ease.recommend(history=["i5"], k=3)
    assert a == ease.recommend(history=("i5",), k=3) == ease.recommend(history=np.array(["i5"]), k=3)
    assert len(a) == 3 and "i5" not in {i for i, _ in a}
    np.testing.assert_array_equal(ease.score(u for u in ["u0", "u1"]), ease.score(["u0", "u1"]))


def test_pair_features_checks_rows_against_the_matrices(data) -> None:
    ds, z_i = data
    z_u = user_aggregate_vectors(ds, z_i)
    users, items = ds.user_vocab, ds.item_vocab
    ok = pair_features(["u0", "u25"], ["i1", "i2"], z_u, z_i, user_index=users, item_index=items)
    want = np.array([z_u[0] @ z_i[1], z_u[25] @ z_i[2]]) / np.linalg.norm(z_i[[1, 2]], axis=1)
    np.testing.assert_allclose(ok.score, want, rtol=1e-5)
    by_row = pair_features([0, 25], [1, 2], z_u, z_i)
    np.testing.assert_array_equal(by_row.score, ok.score)
    with pytest.raises(
        ConfigError, match=f"Z_U has {N_ITEMS} rows but user_index has {N_USERS} users.*swapped"
    ):
        pair_features(["u0"], ["i1"], z_i, z_u, user_index=users, item_index=items)
    with pytest.raises(ConfigError, match=f"Z_U has 10 rows but user_index has {N_USERS}"):
        pair_features(["u39"], ["i1"], z_u[:10], z_i, user_index=users, item_index=items)
    with pytest.raises(ConfigError, match=rf"user row -1 is outside Z_U \(rows 0..{N_USERS - 1}"):
        pair_features([-1], [0], z_u, z_i)
    with pytest.raises(ConfigError, match="item row 999 is outside Z_I"):
        pair_features([0], [999], z_u, z_i)
    with pytest.raises(ConfigError, match="whole row numbers"):
        pair_features([0.5], [0], z_u, z_i)
    with pytest.raises(ConfigError, match=rf"Z_U must be 2-D .*\({N_USERS},\)"):
        pair_features([0], [0], z_u[:, 0], z_i)
    with pytest.raises(ConfigError, match="user_index has duplicate ids"):
        pair_features(["a"], ["i1"], z_u[:2], z_i, user_index=["a", "a", "b"], item_index=items)
    with pytest.raises(ConfigError, match="user_ids must be a list of ids, not a string"):
        pair_features("u0", ["i1", "i2"], z_u, z_i, user_index=users, item_index=items)


def _frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    inter = pd.DataFrame({"user_id": ["a", "b", "b"], "item_id": ["x", "y", "x"], "timestamp": [1, 2, 3]})
    return inter, pd.DataFrame({"item_id": ["x", "y", "z"], "title": ["X", "Y", "Z"]})


def test_dataset_refuses_missing_and_duplicate_ids_naming_the_column() -> None:
    inter, items = _frames()
    with pytest.raises(
        DataError,
        match=r"column 'user_id': interactions: 1 rows have no user_id \(missing or NaN; the first at position 1 of the frame\)",
    ):
        Dataset(inter.assign(user_id=["a", None, "b"]), items)
    with pytest.raises(DataError, match="column 'item_id'.*no item_id"):
        Dataset(inter, items.assign(item_id=["x", np.nan, "z"]))
    with pytest.raises(DataError, match=r"column 'item_id': items: duplicate item_id 'x' \(1 duplicate rows"):
        Dataset(inter, pd.concat([items, items.iloc[:1]]))
    with pytest.raises(DataError, match="column 'user_id': users: missing column"):
        Dataset(inter, items, users=pd.DataFrame({"uid": ["a"]}))
    with pytest.raises(DataError, match="users: duplicate user_id 'a'"):
        Dataset(inter, items, users=pd.DataFrame({"user_id": ["a", "a", "c"], "age": [1, 2, 3]}))
    with pytest.raises(DataError, match="column 'timestamp': expected whole numbers"):
        Dataset(inter.assign(timestamp=["2020-01-01"] * 3), items)
    with pytest.raises(DataError, match="column 'value': expected numbers"):
        Dataset(inter.assign(value=["x", "1", "2"]), items)
    with pytest.raises(DataError, match="interactions must be a pandas DataFrame, not NoneType"):
        Dataset(None, items)  # type: ignore[arg-type]
    # the literal id "nan" (a string) is an id like any other; users given in a frame join the vocabulary
    ds = Dataset(inter.assign(user_id=["nan", "b", "b"]), items, users=pd.DataFrame({"user_id": ["c"]}))
    assert ds.user_vocab.ids == ["nan", "b", "c"] and ds.item_vocab.ids == ["x", "y", "z"]


def test_every_error_here_is_a_tokrec_error() -> None:
    assert issubclass(UnknownIdError, TokrecError) and issubclass(UnknownIdError, KeyError)
