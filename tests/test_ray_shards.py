"""The shard/manifest layout and the optional-Ray guard (no Ray needed)."""

from __future__ import annotations

import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tokrec.distributed import shards as sh
from tokrec.distributed._testing import DieOnceFactory, HashEncoder, HashEncoderFactory
from tokrec.errors import ConfigError, DataError


def test_shard_name_depends_on_ids_not_order():
    assert sh.shard_name(["a", "b", "c"]) == sh.shard_name(["c", "a", "b"])
    assert sh.shard_name(["a", "b"]) != sh.shard_name(["a", "b", "c"])
    # no ambiguity from concatenation
    assert sh.shard_name(["ab", "c"]) != sh.shard_name(["a", "bc"])


def test_write_scan_read_shards(tmp_path):
    enc = HashEncoder(8)
    ids1, ids2 = ["x1", "x2", "x3"], ["y1", "y2"]
    s1 = sh.write_shard(tmp_path, ids1, enc.encode(ids1), job_key="job-A", fingerprint=enc.fingerprint)
    s2 = sh.write_shard(tmp_path, ids2, enc.encode(ids2), job_key="job-A", fingerprint=enc.fingerprint)
    sh.write_shard(tmp_path, ["z"], enc.encode(["z"]), job_key="job-B", fingerprint=enc.fingerprint)
    (tmp_path / ".part-junk.parquet.123.tmp").write_bytes(b"half a file")
    found = sh.scan_shards(tmp_path, "job-A")
    assert sorted(f.file for f in found) == sorted([s1.file, s2.file])
    assert {f.rows for f in found} == {3, 2}
    # the single-machine layout: item_id string + fixed-size float32 list
    schema = pq.read_schema(tmp_path / s1.file)
    assert str(schema.field("item_id").type) == "string"
    vtype = schema.field("vector").type
    assert pa.types.is_fixed_size_list(vtype) and vtype.list_size == 8 and vtype.value_type == pa.float32()
    ids, vecs = sh.read_shards(tmp_path, [s1, s2])
    assert ids == ids1 + ids2
    np.testing.assert_array_equal(vecs, enc.encode(ids1 + ids2))
    removed = sh.remove_stale(tmp_path, {s1.file, s2.file})
    assert removed == 2  # job-B's shard and the temporary file
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([s1.file, s2.file])


def test_rewriting_a_shard_replaces_it(tmp_path):
    enc = HashEncoder(4)
    ids = ["a", "b"]
    first = sh.write_shard(tmp_path, ids, enc.encode(ids), job_key="j", fingerprint="f")
    again = sh.write_shard(
        tmp_path, list(reversed(ids)), enc.encode(list(reversed(ids))), job_key="j", fingerprint="f"
    )
    assert first.file == again.file
    assert len(list(tmp_path.glob("part-*.parquet"))) == 1


def test_read_vectors_needs_a_complete_manifest(tmp_path):
    enc = HashEncoder(4)
    s = sh.write_shard(tmp_path, ["a"], enc.encode(["a"]), job_key="j", fingerprint="f")
    with pytest.raises(DataError, match="no tokrec manifest"):
        sh.read_vectors(tmp_path)
    manifest = {"format": sh.FORMAT, "complete": False, "shards": [s.to_json()]}
    sh.write_manifest(tmp_path, manifest)
    with pytest.raises(DataError, match="did not finish"):
        sh.read_vectors(tmp_path)
    sh.write_manifest(tmp_path, {**manifest, "complete": True})
    ids, vecs = sh.read_vectors(tmp_path)
    assert ids == ["a"] and vecs.shape == (1, 4)
    with pytest.raises(DataError, match="no such file"):
        sh.read_vectors(tmp_path / "nope.parquet")


def test_hash_encoder_is_deterministic_and_unit_norm():
    a = HashEncoder(16).encode(["t1", "t2", "t1"])
    assert a.dtype == np.float32 and a.shape == (3, 16)
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(a[0], a[2])
    assert not np.allclose(a[0], a[1])
    assert not np.allclose(HashEncoder(16, salt="s").encode(["t1"])[0], a[0])


def test_die_once_factory_fails_exactly_once(tmp_path):
    marker = tmp_path / "died"
    enc = DieOnceFactory(str(marker), after_calls=1, how="raise")()
    enc.encode(["ok"])
    with pytest.raises(RuntimeError, match="injected"):
        enc.encode(["boom"])
    assert marker.exists()
    np.testing.assert_array_equal(enc.encode(["boom"]), HashEncoder(16).encode(["boom"]))


def test_without_ray_the_error_says_how_to_install(monkeypatch):
    from tokrec.distributed import _ray

    monkeypatch.setitem(sys.modules, "ray", None)
    monkeypatch.setitem(sys.modules, "ray.data", None)
    assert _ray.ray_available() is False
    with pytest.raises(ConfigError, match=r"pip install 'tokrec\[ray\]'"):
        _ray.require_ray()
    from tokrec.distributed.ray_embed import embed_items_ray

    with pytest.raises(ConfigError, match="ray"):
        embed_items_ray("items.csv", "out")


def test_model_spec_is_stable_for_names_specs_dataclasses_and_partials():
    import functools

    from tokrec.distributed.ray_embed import EncoderSpec, _model_spec
    from tokrec.encoders import load_encoder

    assert _model_spec(None) == _model_spec(EncoderSpec(None))
    assert _model_spec(EncoderSpec("m", {"dtype": "fp32", "batch_size": 8})) == _model_spec(
        EncoderSpec("m", {"dtype": "fp32"})
    )
    assert _model_spec(HashEncoderFactory(8)) != _model_spec(HashEncoderFactory(16))
    p1 = functools.partial(load_encoder, "m", dtype="fp32", pooling="cls")
    p2 = functools.partial(load_encoder, "m", pooling="cls", dtype="fp32")
    assert _model_spec(p1) == _model_spec(p2) and "0x" not in _model_spec(p1)
    with pytest.raises(ConfigError, match="no stable repr"):
        _model_spec(lambda: HashEncoder())


def test_a_worker_error_comes_back_as_a_row_and_is_raised_on_the_driver():
    """`guarded` turns an exception inside an actor call into an error row; `collect_rows` raises the
    first one as the same tokrec error class (a DataError keeps file, row and column) and returns the
    other rows untouched when there is none. (No Ray needed: the dataset is any object with iter_rows.)"""
    import pandas as pd

    from tokrec.distributed._ray import collect_rows, guarded
    from tokrec.errors import TokrecError

    class Actor:
        @guarded
        def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
            kind = batch["kind"].iloc[0]
            if kind == "data":
                raise DataError("bad value", file="items.csv", row=7, column="title")
            if kind == "config":
                raise ConfigError("no such template field")
            if kind == "other":
                raise RuntimeError("injected failure")
            return pd.DataFrame([{"file": "part-1.parquet", "rows": 3}])

    class Results:
        def __init__(self, *kinds: str) -> None:
            self.frames = [Actor()(pd.DataFrame({"kind": [k]})) for k in kinds]

        def iter_rows(self):
            for f in self.frames:
                yield from f.to_dict("records")

    assert collect_rows(Results("ok", "ok")) == [{"file": "part-1.parquet", "rows": 3}] * 2
    with pytest.raises(DataError) as e:
        collect_rows(Results("ok", "data", "other"))
    assert (e.value.file, e.value.row, e.value.column) == ("items.csv", 7, "title")
    assert "bad value (1 more shard(s) failed)" in str(e.value)
    with pytest.raises(ConfigError, match="no such template field"):
        collect_rows(Results("config"))
    with pytest.raises(TokrecError, match="a Ray worker failed: RuntimeError: injected failure"):
        collect_rows(Results("ok", "other"))


def test_every_ray_job_checks_its_cluster_options_the_same_way():
    from tokrec.distributed._ray import cluster_options

    assert cluster_options({}) == (None, None)
    assert cluster_options({"ray_address": "auto", "num_workers": 3}) == ("auto", 3)
    with pytest.raises(ConfigError, match="num_workers must be >= 1, not 0"):
        cluster_options({"num_workers": 0})  # recommend_ray / embed_users_ray used to take 0 as "default"


@pytest.mark.timeout(120)  # without the check, ray.init would retry for minutes
def test_an_unreachable_cluster_address_fails_at_once_in_one_line() -> None:
    """ray.init retries an address nobody listens on for minutes; the job refuses it before (a closed port)."""
    import socket

    from tokrec.distributed._ray import ray_session

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # free once the socket closes: nothing listens there
    session = ray_session(f"127.0.0.1:{port}")
    with pytest.raises(ConfigError, match=f"cannot reach the Ray cluster at '127.0.0.1:{port}'"):
        session.__enter__()


def test_a_folder_of_other_files_is_refused_as_a_job_output(tmp_path) -> None:
    """A job deletes the part-*.parquet files it does not keep: a folder of another tool's Parquet parts (Spark
    writes part-00000-....parquet) must be refused, not emptied; tokrec's own shards and an empty folder are fine."""
    spark = tmp_path / "spark"
    spark.mkdir()
    pq.write_table(pa.table({"x": [1, 2]}), spark / "part-00000-abc.parquet")
    with pytest.raises(ConfigError, match="holds 'part-00000-abc.parquet', which no tokrec job wrote"):
        sh.check_output_folder(spark)
    assert (spark / "part-00000-abc.parquet").exists()
    (tmp_path / "empty").mkdir()
    sh.check_output_folder(tmp_path / "empty")
    sh.check_output_folder(tmp_path / "absent")
    ours = tmp_path / "ours"
    ours.mkdir()
    name = sh.shard_name(["a"])
    table = pa.table({"item_id": ["a"]}).replace_schema_metadata({sh._META_JOB: b"job"})
    pq.write_table(table, ours / name)
    (ours / "manifest.json").write_text("{}")
    sh.check_output_folder(ours)
