"""Configs are validated on every path; runtime options are apart from hyperparameters and never saved;
model directories of the older format still load."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conformance import checkerboard
from tokrec.config import read_json_config, validate_config
from tokrec.errors import ConfigError
from tokrec.models.ease import EASE, EASEConfig
from tokrec.models.implicit_mf import ALS
from tokrec.models.registry import available_models, create_model, load_model


@pytest.mark.parametrize(
    "make",
    [
        lambda: EASE(l2=-5.0),
        lambda: EASE({"l2": -5.0}),
        lambda: EASE(EASEConfig(l2=3.0), l2=-5.0),  # an override of a config instance is validated too
        lambda: create_model("ease", {"l2": -5.0}),
    ],
)
def test_an_invalid_override_raises_naming_the_field(make) -> None:
    with pytest.raises(
        ConfigError, match=r"ease: invalid config: l2: Input should be greater than 0 \(got -5.0\)"
    ):
        make()


def test_an_unknown_key_raises_naming_it_on_one_line() -> None:
    with pytest.raises(ConfigError) as err:
        EASE(EASEConfig(), bogus=1, l2=-5.0)
    msg = str(err.value)
    assert "\n" not in msg and "bogus: unknown option" in msg and "l2:" in msg


def test_runtime_options_are_apart_and_not_saved(tmp_path) -> None:
    ds, _ = checkerboard()
    model = ALS(
        {"factors": 4, "iterations": 2, "threads": 1}
    )  # a runtime key in the config dict goes to runtime
    assert model.runtime.threads == 1 and "threads" not in model.config.model_dump()
    model.fit(ds)
    model.set_runtime(threads=2)
    with pytest.raises(ConfigError, match="threads"):
        model.set_runtime(threads=-1)
    with pytest.raises(ConfigError, match="bogus"):
        model.set_runtime(bogus=1)
    saved = json.loads((model.save(tmp_path / "m") / "config.json").read_text())
    assert "threads" not in saved["config"] and saved["config"]["factors"] == 4
    assert load_model(tmp_path / "m").runtime.threads == 2  # a loaded model starts from the default


def test_with_scoring_copies_and_leaves_the_fitted_model_unchanged() -> None:
    ds, _ = checkerboard()
    model = EASE(l2=10.0).fit(ds)
    recency = model.with_scoring(half_life=1.0)
    assert model.config.half_life is None and recency.config.half_life == 1.0
    assert recency.weights_ is model.weights_  # the learned state is shared, not refitted
    assert not np.allclose(recency.score(["u0"]), model.score(["u0"]))
    np.testing.assert_allclose(
        recency.score(["u0"]), EASE(l2=10.0, half_life=1.0).fit(ds).score(["u0"]), rtol=1e-5
    )
    with pytest.raises(ConfigError, match="l2"):
        model.with_scoring(l2=5.0)  # changes training
    with pytest.raises(ConfigError, match="half_life"):
        model.with_scoring(half_life=-1.0)


def test_a_format_1_directory_still_loads(tmp_path) -> None:
    """The older layout (hand-written array names, runtime options inside the config) loads unchanged."""
    from safetensors.numpy import save_file

    ds, _ = checkerboard()
    model = ALS({"factors": 4, "iterations": 2}).fit(ds)
    old = tmp_path / "old"
    old.mkdir()
    users = np.array(sorted(model.seen_), dtype=np.int64)
    save_file(
        {
            "user_factors": model.user_factors_,
            "item_factors": model.item_factors_,
            "__seen_users": users,
            "__seen_lengths": np.array([len(model.seen_[u]) for u in users], dtype=np.int64),
            "__seen_items": np.concatenate([model.seen_[u] for u in users]).astype(np.int64),
        },
        str(old / "arrays.safetensors"),
    )
    meta = {
        "format": "tokrec-model/1",
        "model": "als",
        "config": {**model.config.model_dump(mode="json"), "threads": 7},
        "items": model.item_vocab_.to_list(),
        "users": model.user_vocab_.to_list(),
        "state": {},
    }
    (old / "config.json").write_text(json.dumps(meta))
    loaded = load_model(old)
    assert loaded.config == model.config and loaded.runtime.threads == 2  # the saved machine's 7 is dropped
    assert loaded.recommend("u0", k=5) == model.recommend("u0", k=5)


def test_a_tokrec_directory_with_the_item_sized_map_operator_still_loads(tmp_path) -> None:
    """Directories saved before the content map kept its p x p ridge inverse hold an (n_items, p) operator
    (row i = A^-1 f_i for items with events) and no inverse: the inverse is derived on load, same scores."""
    from safetensors.numpy import load_file, save_file

    from tokrec.data.synthetic import make_synthetic

    ds = make_synthetic(n_items=120, n_users=60, seed=2)
    vecs = np.random.default_rng(0).normal(size=(ds.n_items, 16)).astype(np.float32)
    model = create_model("tokrec", {}).fit(ds, vecs)
    model.save(tmp_path / "m")
    arrays = load_file(str(tmp_path / "m" / "arrays.safetensors"))
    warm = model.warm_
    old_op = (model.features_[: len(warm)] @ arrays.pop("map_inv")).astype(np.float32) * warm[:, None]
    save_file({**arrays, "map_t": old_op}, str(tmp_path / "m" / "arrays.safetensors"))
    meta = json.loads((tmp_path / "m" / "config.json").read_text())
    meta["state"] = {("map_t_" if k == "map_inv_" else k): v for k, v in meta["state"].items()}
    (tmp_path / "m" / "config.json").write_text(json.dumps(meta))
    back = load_model(tmp_path / "m")
    np.testing.assert_allclose(back.map_inv_, model.map_inv_, rtol=1e-12, atol=1e-14)
    users = list(ds.user_vocab)[:10]
    np.testing.assert_allclose(back.score(users), model.score(users), rtol=1e-6, atol=1e-6)


def test_every_registered_model_runs_the_conformance_suite() -> None:
    """Adding a model means adding it to the conformance suite (tests/conformance.py)."""
    import importlib

    from conformance import RecommenderConformance

    for module in ("test_models_conformance", "test_deep_sasrec", "test_deep_gbdt"):
        importlib.import_module(module)  # the deep ones skip without torch / lightgbm (the [all] extra)
    covered = {cls.make_model().name for cls in RecommenderConformance.__subclasses__()}
    assert covered == set(available_models())


def test_json_config_errors_are_one_line(tmp_path) -> None:
    assert read_json_config('{"l2": 3}') == {"l2": 3}
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    with pytest.raises(ConfigError, match="bad.json: expected a JSON object"):
        read_json_config(str(bad))
    with pytest.raises(ConfigError, match="--config: invalid JSON"):
        read_json_config("{nope")
    with pytest.raises(ConfigError, match="neither a JSON object nor an existing file"):
        read_json_config(str(tmp_path / "missing.json"))
    with pytest.raises(ConfigError, match="^x: invalid config: l2: "):
        validate_config(EASEConfig, {"l2": "many"}, what="x")


def test_the_type_arguments_name_each_models_config_and_runtime_classes() -> None:
    from tokrec.models.base import ModelConfig, Recommender, ThreadOptions
    from tokrec.models.implicit_mf import BPR, ALSConfig, BPRConfig

    assert (EASE.Config, ALS.Config, BPR.Config) == (EASEConfig, ALSConfig, BPRConfig)
    assert ALS.Runtime is ThreadOptions and BPR(threads=1).runtime == ThreadOptions(threads=1)
    for name in available_models():
        cls = type(create_model(name))
        assert cls.Config is not ModelConfig, f"{name} does not name its config class"

    class OwnConfig(ModelConfig):
        l2: float = 7.0
        half_life: float | None = None
        max_items: int = 10

    class Sub(EASE):  # a subclass that sets Config by assignment keeps it (not the parent's argument)
        Config = OwnConfig

    class Generic2(Recommender[OwnConfig]):
        def _fit(self, dataset, item_vectors):  # pragma: no cover - never fitted
            raise NotImplementedError

        def _score_users(self, user_rows):  # pragma: no cover
            raise NotImplementedError

    assert Sub.Config is OwnConfig and Sub().config == OwnConfig()
    assert Generic2.Config is OwnConfig and Generic2(l2=1.0).config.l2 == 1.0
    with pytest.raises(ConfigError, match="l2"):
        Generic2(l2="x")


def test_key_value_overrides_read_json_values_and_keep_text() -> None:
    from tokrec.config import parse_key_values

    got = parse_key_values(["lr=0.005", "refit=none", "dims=[64, 32]", "flag=true", "name=a=b"])
    assert got == {"lr": 0.005, "refit": "none", "dims": [64, 32], "flag": True, "name": "a=b"}
    with pytest.raises(ConfigError, match="--set: expected key=value, got 'lr'"):
        parse_key_values(["lr"])
