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


@pytest.fixture(scope="module")
def ray_cluster():
    import ray

    if ray.is_initialized():
        yield ray
        return
    ray.init(num_cpus=3, include_dashboard=False, object_store_memory=100 * 1024**2, log_to_driver=False)
    yield ray
    ray.shutdown()


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
