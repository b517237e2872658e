"""Batch recommendation on a local Ray cluster equals the model's own recommend_batch."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("ray", reason="ray is not installed (pip install 'tokrec[ray]')")
pytest.importorskip("ray.data", reason="ray[data] is not installed (pip install 'tokrec[ray]')")

from tokrec.data.dataset import Dataset  # noqa: E402
from tokrec.distributed.ray_recommend import recommend_ray  # noqa: E402
from tokrec.errors import ConfigError, DataError  # noqa: E402
from tokrec.models.itemknn import ItemKNN  # noqa: E402

pytestmark = [pytest.mark.ray, pytest.mark.timeout(300)]


@pytest.fixture
def saved_model(tmp_path):
    rng = np.random.default_rng(3)
    rows = [
        (f"u{u}", f"i{i}", t) for u in range(120) for t, i in enumerate(rng.choice(40, size=6, replace=False))
    ]
    ds = Dataset(
        pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"]),
        pd.DataFrame({"item_id": [f"i{i}" for i in range(40)]}),
    )
    model = ItemKNN().fit(ds)
    path = model.save(tmp_path / "model")
    return model, path


def test_recommend_ray_equals_recommend_batch(ray_cluster, saved_model, tmp_path):
    model, path = saved_model
    users = [f"u{u}" for u in range(119, -1, -1)] + ["u5", "stranger"]  # reversed, one repeat, one unknown
    pd.DataFrame({"user_id": users, "other": 1}).to_csv(tmp_path / "users.csv", index=False)
    out = tmp_path / "recs.csv"
    s = recommend_ray(path, tmp_path / "users.csv", out, k=5, num_workers=1)
    assert s["users"] == 121 and s["duplicate_user_rows"] == 1 and s["users_without_recs"] == 1
    got = pd.read_csv(out, dtype={"user_id": str, "item_id": str})
    want = model.recommend_batch(users[:120], k=5)
    assert list(got.columns) == ["user_id", "item_id", "score", "rank"]
    assert s["rows"] == len(got) == len(want) == 600
    assert got["user_id"].tolist() == want["user_id"].tolist()  # input order, rank order within a user
    assert got["item_id"].tolist() == want["item_id"].tolist()
    np.testing.assert_allclose(got["score"].to_numpy(), want["score"].to_numpy(), rtol=1e-6)
    assert got["rank"].tolist() == want["rank"].tolist()

    # a folder output: shards + manifest; a re-run reuses every shard
    folder = tmp_path / "recs"
    first = recommend_ray(path, tmp_path / "users.csv", folder, k=5, num_workers=1)
    again = recommend_ray(path, tmp_path / "users.csv", folder, k=5, num_workers=1)
    assert first["shards"] > 1 and again["shards_reused"] == first["shards"] and again["rows"] == 600
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["complete"] and manifest["input"]["users"] == 121

    with pytest.raises(ConfigError, match="not a tokrec model"):
        recommend_ray(tmp_path, tmp_path / "users.csv", tmp_path / "x.csv")
    (tmp_path / "nouser.csv").write_text("id\n1\n")
    with pytest.raises(DataError, match="missing column"):
        recommend_ray(path, tmp_path / "nouser.csv", tmp_path / "y.csv")


def test_cli_recommend_engine_ray_equals_local(ray_cluster, tmp_path):
    """`tokrec recommend --engine ray` writes the same file as the local engine."""
    from tokrec.cli.main import main

    rng = np.random.default_rng(5)
    rows = [
        (f"u{u}", f"i{i}", t) for u in range(60) for t, i in enumerate(rng.choice(30, size=5, replace=False))
    ]
    pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"]).to_csv(
        tmp_path / "train.csv", index=False
    )
    pd.DataFrame({"item_id": [f"i{i}" for i in range(30)], "title": [f"t{i}" for i in range(30)]}).to_csv(
        tmp_path / "items.csv", index=False
    )
    common = [
        "recommend",
        "--items",
        str(tmp_path / "items.csv"),
        "--interactions",
        str(tmp_path / "train.csv"),
    ]
    common += ["--model", "itemknn", "--k", "4"]
    assert main([*common, "--output", str(tmp_path / "local.csv")]) == 0
    assert (
        main([*common, "--output", str(tmp_path / "ray.csv"), "--engine", "ray", "--num-workers", "1"]) == 0
    )
    local = pd.read_csv(tmp_path / "local.csv", dtype=str)
    ray_out = pd.read_csv(tmp_path / "ray.csv", dtype=str)
    assert len(local) == 240
    assert local[["user_id", "item_id", "rank"]].equals(ray_out[["user_id", "item_id", "rank"]])
    assert not any(p.name.startswith(".ray.csv.ray.") for p in tmp_path.iterdir())  # work folder removed
