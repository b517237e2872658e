"""User history vectors on a local Ray cluster equal the single-machine user_text_vectors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("ray", reason="ray is not installed (pip install 'tokrec[ray]')")
pytest.importorskip("ray.data", reason="ray[data] is not installed (pip install 'tokrec[ray]')")

from tokrec.data.loaders import load_dataset  # noqa: E402
from tokrec.distributed import read_vectors  # noqa: E402
from tokrec.distributed._testing import HashEncoder, HashEncoderFactory  # noqa: E402
from tokrec.distributed.ray_users import embed_users_ray  # noqa: E402
from tokrec.features import user_text_vectors  # noqa: E402

pytestmark = [pytest.mark.ray, pytest.mark.timeout(300)]


def test_user_vectors_on_ray_equal_the_single_machine(ray_cluster, tmp_path):
    rng = np.random.default_rng(7)
    items = pd.DataFrame(
        {"item_id": [f"i{i}" for i in range(30)], "title": [f"Item number {i}" for i in range(30)]}
    )
    items.to_csv(tmp_path / "items.csv", index=False)
    rows = []
    for _ in range(400):
        u = f"u{int(rng.integers(0, 150))}"
        # coarse timestamps: many ties, broken by file order on both paths
        rows.append((u, f"i{int(rng.integers(0, 30))}", int(rng.integers(0, 5)), float(rng.integers(1, 6))))
    pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp", "rating"]).to_csv(
        tmp_path / "inter.csv", index=False
    )
    out = tmp_path / "uv"
    s = embed_users_ray(
        tmp_path / "inter.csv",
        tmp_path / "items.csv",
        out,
        model=HashEncoderFactory(),
        cache_dir=False,
        num_workers=1,
    )
    ds = load_dataset(items=tmp_path / "items.csv", interactions=tmp_path / "inter.csv")
    ref = user_text_vectors(ds, encoder=HashEncoder(), cache=None)
    ids, vecs = read_vectors(out)
    assert sorted(ids) == sorted(ds.user_vocab.ids) and len(ids) == len(set(ids))
    assert s["users"] == ds.n_users and s["shards"] > 1 and s["cache_misses"] == ds.n_users
    np.testing.assert_array_equal(vecs, ref[ds.user_vocab.encode(ids)])
    again = embed_users_ray(
        tmp_path / "inter.csv",
        tmp_path / "items.csv",
        out,
        model=HashEncoderFactory(),
        cache_dir=False,
        num_workers=1,
    )
    assert again["shards_reused"] == again["shards"] == s["shards"] and again["cache_misses"] == 0


def test_cli_features_engine_ray_equals_local(ray_cluster, tmp_path, capsys):
    """`tokrec features --engine ray` writes the same Z_I and Z_U (history text) as the local engine."""
    from tokrec.cli.main import main
    from tokrec.encoders.testing import make_tiny_bert
    from tokrec.features import read_vectors as read_parquet_vectors

    model = str(make_tiny_bert(tmp_path / "bert"))
    items = pd.DataFrame(
        {"item_id": [f"i{i}" for i in range(25)], "title": [f"item {i} red" for i in range(25)]}
    )
    items.to_csv(tmp_path / "items.csv", index=False)
    rng = np.random.default_rng(3)
    rows = [(f"u{u}", f"i{int(rng.integers(0, 25))}", t) for u in range(20) for t in range(4)]
    pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"]).to_csv(
        tmp_path / "inter.csv", index=False
    )
    common = [
        "features",
        "--items",
        str(tmp_path / "items.csv"),
        "--interactions",
        str(tmp_path / "inter.csv"),
    ]
    common += ["--model", model, "--no-cache", "--dtype", "fp32", "--no-progress"]
    assert main([*common, "--output-dir", str(tmp_path / "local")]) == 0
    assert (
        main([*common, "--output-dir", str(tmp_path / "ray"), "--engine", "ray", "--num-workers", "1"]) == 0
    )
    for name, column in (("items.parquet", "vector"), ("users.parquet", "text_vector")):
        ids_l, v_l = read_parquet_vectors(tmp_path / "local" / name, column=column)
        ids_r, v_r = read_parquet_vectors(tmp_path / "ray" / name, column=column)
        assert ids_l == ids_r
        cos = (v_l * v_r).sum(1) / np.linalg.norm(v_l, axis=1) / np.linalg.norm(v_r, axis=1)
        assert cos.min() > 0.9999, (name, cos.min())
    # the workers' cache counts reach the closing line: a fresh cache misses every text, the next run hits them
    import re

    cached = [a for a in common if a != "--no-cache"] + [
        "--cache",
        str(tmp_path / "cache"),
        "--engine",
        "ray",
    ]
    counts = []
    for run in ("r1", "r2"):
        assert main([*cached, "--num-workers", "1", "--output-dir", str(tmp_path / run)]) == 0
        line = capsys.readouterr().err.strip().splitlines()[-1]
        hits, misses = map(int, re.search(r"cache hits (\d+) misses (\d+)", line).groups())
        counts.append((hits, misses))
    assert counts[0][0] == 0 and counts[0][1] > 25  # the 25 item texts and the users' history texts
    assert counts[1] == (counts[0][1], 0)
