"""Item embedding on a local Ray cluster: same vectors as the single-machine path, worker deaths,
resume after a crash, bad input. Skipped where ray is not installed."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("ray", reason="ray is not installed (pip install 'tokrec[ray]')")
pytest.importorskip("ray.data", reason="ray[data] is not installed (pip install 'tokrec[ray]')")

from tokrec.data.loaders import load_items  # noqa: E402
from tokrec.distributed import read_vectors  # noqa: E402
from tokrec.distributed import shards as sh  # noqa: E402
from tokrec.distributed._testing import DieOnceFactory, HashEncoder, HashEncoderFactory  # noqa: E402
from tokrec.distributed.ray_embed import embed_items_ray  # noqa: E402
from tokrec.errors import ConfigError, DataError  # noqa: E402
from tokrec.text import ItemTemplate  # noqa: E402

pytestmark = [pytest.mark.ray, pytest.mark.timeout(300)]

GENRES = ["Drama", "Comedy", "Action|Thriller", "Animation|Children's", ""]


def write_catalog(path, n=300):
    """A catalog with ids that are not in sorted order, blanks, and texts of varied length."""
    rows = []
    for i in range(n):
        title = f"Film {i} " + "long words " * (i % 9)
        rows.append(
            {"item_id": f"m{(i * 7919) % 100003}", "title": title.strip(), "genres": GENRES[i % len(GENRES)]}
        )
    df = pd.DataFrame(rows)
    if str(path).endswith(".csv"):
        df.to_csv(path, index=False)
    elif str(path).endswith(".parquet"):
        df.to_parquet(path, index=False)
    else:
        df.to_json(path, orient="records", lines=True)
    return path


def reference(path, encoder):
    """The single-machine path: load_items -> ItemTemplate -> encoder."""
    items = load_items(path)
    return items["item_id"].tolist(), encoder.encode(ItemTemplate().render_many(items))


def test_embeds_into_shards_with_manifest_equal_to_single_machine(ray_cluster, tmp_path):
    src = write_catalog(tmp_path / "items.csv")
    out = tmp_path / "vectors"
    s = embed_items_ray(src, out, model=HashEncoderFactory(), num_workers=2)
    ids_ref, vec_ref = reference(src, HashEncoder())
    assert s["rows"] == 300 and s["cache_misses"] == 300 and s["cache_hits"] == 0
    assert s["rows_reused"] == 0 and s["dim"] == 16 and s["workers"] == 2
    assert s["fingerprint"] == HashEncoder().fingerprint
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["complete"] is True and manifest["input"]["rows"] == 300
    assert sum(x["rows"] for x in manifest["shards"]) == 300 and len(manifest["shards"]) == s["shards"] > 1
    assert sorted(p.name for p in out.glob("part-*.parquet")) == sorted(x["file"] for x in manifest["shards"])
    ids, vecs = read_vectors(out)
    assert len(ids) == len(set(ids)) == 300
    order = np.argsort(ids)
    ref_order = np.argsort(ids_ref)
    assert [ids[i] for i in order] == [ids_ref[i] for i in ref_order]
    np.testing.assert_array_equal(vecs[order], vec_ref[ref_order])

    # the same run again: every shard is found finished, nothing is encoded
    again = embed_items_ray(src, out, model=HashEncoderFactory(), num_workers=2)
    assert (
        again["shards_reused"] == s["shards"] and again["rows_reused"] == 300 and again["cache_misses"] == 0
    )


def test_single_parquet_output_is_in_input_order_and_uses_the_cache(ray_cluster, tmp_path):
    src = write_catalog(tmp_path / "items.jsonl", n=200)
    cache = tmp_path / "cache"
    out = tmp_path / "z.parquet"
    first = embed_items_ray(src, out, model=HashEncoderFactory(), cache_dir=cache, num_workers=1)
    assert first["cache_misses"] == 200
    ids_ref, vec_ref = reference(src, HashEncoder())
    ids, vecs = read_vectors(out)
    assert ids == ids_ref
    np.testing.assert_array_equal(vecs, vec_ref)
    assert not (tmp_path / ".z.parquet.parts").exists()
    # a fresh output, same texts: all served by the cache
    second = embed_items_ray(
        src, tmp_path / "again.parquet", model=HashEncoderFactory(), cache_dir=cache, num_workers=1
    )
    assert second["cache_hits"] == 200 and second["cache_misses"] == 0
    np.testing.assert_array_equal(read_vectors(tmp_path / "again.parquet")[1], vec_ref)


def test_a_folder_of_files_keeps_file_order(ray_cluster, tmp_path):
    folder = tmp_path / "catalog"
    folder.mkdir()
    big = write_catalog(folder / "a.csv", n=400)  # read first, finishes last
    pd.DataFrame({"item_id": ["z1", "z2"], "title": ["Zed", "Zee"], "genres": ["", "Drama"]}).to_csv(
        folder / "b.csv", index=False
    )
    pd.DataFrame({"item_id": ["y1"], "title": ["Why"], "genres": ["Comedy"]}).to_csv(
        folder / "c.csv", index=False
    )
    out = tmp_path / "v.parquet"
    embed_items_ray(folder, out, model=HashEncoderFactory(), cache_dir=False, num_workers=1)
    ids, vecs = read_vectors(out)
    assert ids == load_items(big)["item_id"].tolist() + ["z1", "z2", "y1"]
    texts = ItemTemplate().render_many(
        pd.concat([load_items(folder / f) for f in ("a.csv", "b.csv", "c.csv")])
    )
    np.testing.assert_array_equal(vecs, HashEncoder().encode(texts))


def test_a_worker_killed_midway_loses_and_duplicates_nothing(ray_cluster, tmp_path):
    src = write_catalog(tmp_path / "items.parquet", n=300)
    marker = tmp_path / "killed"
    out = tmp_path / "vectors"
    # one actor; 300 rows make 4 shards of 75; it SIGKILLs itself while encoding the second shard
    s = embed_items_ray(
        src, out, model=DieOnceFactory(str(marker), after_calls=1, how="kill"), cache_dir=False, num_workers=1
    )
    assert marker.exists(), "the worker never died: the test proves nothing"
    dead_pid = int(marker.read_text())
    assert dead_pid != os.getpid()
    assert s["rows"] == 300 and s["shards"] == 4
    ids, vecs = read_vectors(out)
    assert len(ids) == len(set(ids)) == 300
    ids_ref, vec_ref = reference(src, HashEncoder())
    pos = {i: k for k, i in enumerate(ids)}
    np.testing.assert_array_equal(vecs[[pos[i] for i in ids_ref]], vec_ref)
    assert len(list(out.glob("part-*.parquet"))) == 4 and not list(out.glob(".*.tmp"))


def test_a_rerun_after_a_crash_encodes_only_what_is_missing(ray_cluster, tmp_path):
    src = write_catalog(tmp_path / "items.csv", n=300)
    marker = tmp_path / "crashed"
    out = tmp_path / "vectors"
    model = DieOnceFactory(str(marker), after_calls=2, how="raise")
    with pytest.raises(Exception, match="injected failure"):
        embed_items_ray(src, out, model=model, cache_dir=False, num_workers=1)
    assert marker.exists() and not (out / "manifest.json").exists()
    finished = list(out.glob("part-*.parquet"))
    # 4 shards of 75 rows; the third call failed, the others were written (a worker's error is returned
    # as data so the run ends instead of hanging in Ray Data's abort path; the driver then raises it)
    assert len(finished) == 3
    s = embed_items_ray(src, out, model=model, cache_dir=False, num_workers=1)
    assert s["shards_reused"] == len(finished) and s["rows_reused"] == 75 * len(finished)
    assert s["cache_misses"] == 300 - 75 * len(finished)  # no cache: exactly the missing rows were encoded
    ids, vecs = read_vectors(out)
    ids_ref, vec_ref = reference(src, HashEncoder())
    assert sorted(ids) == sorted(ids_ref) and len(ids) == 300
    pos = {i: k for k, i in enumerate(ids)}
    np.testing.assert_array_equal(vecs[[pos[i] for i in ids_ref]], vec_ref)
    # a different model is another job: the old shards are replaced, not mixed in
    other = embed_items_ray(src, out, model=HashEncoderFactory(salt="v2"), cache_dir=False, num_workers=1)
    assert other["shards_reused"] == 0 and other["cache_misses"] == 300
    manifest = json.loads((out / "manifest.json").read_text())
    assert sorted(p.name for p in out.glob("part-*.parquet")) == sorted(x["file"] for x in manifest["shards"])
    assert manifest["fingerprint"] == HashEncoder(salt="v2").fingerprint


def test_bad_input_is_reported_with_file_row_and_column(ray_cluster, tmp_path):
    dup = tmp_path / "dup.csv"
    dup.write_text("item_id,title\na,One\nb,Two\na,Three\n")
    with pytest.raises(DataError) as e:
        embed_items_ray(dup, tmp_path / "o1", model=HashEncoderFactory())
    assert e.value.row == 4 and e.value.column == "item_id" and "duplicate" in str(e.value)
    noid = tmp_path / "noid.csv"
    noid.write_text("id,title\na,One\n")
    with pytest.raises(DataError, match="missing column") as e:
        embed_items_ray(noid, tmp_path / "o2", model=HashEncoderFactory())
    assert e.value.column == "item_id"
    blank = tmp_path / "blank.csv"
    blank.write_text("item_id,title\na,One\n ,Two\n")
    with pytest.raises(DataError, match="no id") as e:
        embed_items_ray(blank, tmp_path / "o3", model=HashEncoderFactory())
    assert e.value.row == 3
    with pytest.raises(DataError, match="file not found"):
        embed_items_ray(tmp_path / "absent.csv", tmp_path / "o4", model=HashEncoderFactory())
    (tmp_path / "items.txt").write_text("item_id\n1\n")
    with pytest.raises(DataError, match=r"\.csv, \.parquet or \.jsonl"):
        embed_items_ray(tmp_path / "items.txt", tmp_path / "o5", model=HashEncoderFactory())
    good = tmp_path / "good.csv"
    good.write_text("item_id,title\na,One\n")
    with pytest.raises(ConfigError, match="batch_size"):
        embed_items_ray(good, tmp_path / "o6", model=HashEncoderFactory(), batch_size=0)
    with pytest.raises(ConfigError, match=r"template field\(s\) \['nope'\]"):
        embed_items_ray(good, tmp_path / "o7", model=HashEncoderFactory(), template="{nope}")
    assert not (tmp_path / "o7").exists()
    with pytest.raises(ConfigError, match="is a file"):
        embed_items_ray(good, good, model=HashEncoderFactory())


@pytest.mark.slow
def test_default_model_on_ray_equals_the_single_machine_path(ray_cluster, tmp_path):
    from tokrec.features import item_vectors

    src = write_catalog(tmp_path / "items.csv", n=200)
    out = tmp_path / "minilm.parquet"
    s = embed_items_ray(src, out, cache_dir=False, num_workers=1)
    assert s["dim"] == 384 and s["rows"] == 200
    items = load_items(src)
    ref = item_vectors(items, cache=None)
    ids, vecs = read_vectors(out)
    assert ids == items["item_id"].tolist()
    cos = (vecs * ref).sum(1) / (np.linalg.norm(vecs, axis=1) * np.linalg.norm(ref, axis=1))
    assert cos.min() >= 0.9999, f"min cosine {cos.min()}"
    assert sh.read_manifest(tmp_path) is None  # a single file leaves no manifest folder behind
