"""Batch recommendation on a Ray cluster: a saved model scores many users in an actor pool.

The same shape as :mod:`tokrec.distributed.ray_embed`: Ray Data reads the user list, splits it into
shards, actors (each loading the model directory once, no pickle) write one Parquet shard per chunk of
users, named after the users it covers; a re-run keeps finished shards; the driver writes a manifest,
or assembles one CSV / Parquet file in the benchmark's ``user_id,item_id,score,rank`` form.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from typing_extensions import Unpack

from tokrec.distributed import _ray
from tokrec.distributed import shards as sh
from tokrec.distributed.ray_embed import _run_resumable
from tokrec.errors import ConfigError, DataError
from tokrec.fileio import atomic_write

RECS_FORMAT = "tokrec-recs/1"


def recommend_ray(
    model_path: str | os.PathLike[str],
    users_path: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    k: int = 10,
    candidates: Sequence[str] | None = None,
    exclude_seen: bool = True,
    batch_size: int = 256,
    **cluster: Unpack[_ray.ClusterOptions],
) -> dict[str, Any]:
    """Top-``k`` recommendations for many users with a saved model, on a Ray cluster.

    Args:
        model_path: a model directory written by ``Recommender.save`` (visible to every worker).
        users_path: CSV / Parquet / JSON Lines file(s) with a ``user_id`` column (repeated ids are
            served once; other columns are ignored).
        output: a folder (Parquet shards + ``manifest.json``), or a ``.csv`` / ``.parquet`` file with
            ``user_id,item_id,score,rank`` (rank 1 = best), users in input order.
        k: recommendations per user.
        candidates: rank only these item ids.
        exclude_seen: leave out the items each user had in training.
        batch_size: users scored together (one score matrix of ``batch_size x n_items``).
        **cluster: ``ray_address`` and ``num_workers`` (:class:`~tokrec.distributed.ClusterOptions`):
            scoring actors default to one per 2 CPUs.

    Returns:
        Summary: ``users``, ``rows``, ``users_without_recs`` (unknown to the model, or nothing left
        to recommend), ``duplicate_user_rows``, ``shards``, ``shards_reused``, ``users_per_s``,
        ``seconds``, ``workers``, ``output``.
    """
    _ray.require_ray()
    ray_address, num_workers = _ray.cluster_options(cluster)
    if k < 1:
        raise ConfigError(f"k must be >= 1, not {k}")
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, not {batch_size}")
    model_dir = Path(model_path).expanduser().absolute()
    if not (model_dir / "config.json").is_file():
        raise ConfigError(f"{model_dir}: not a tokrec model directory (no config.json)")
    out = Path(output).expanduser().absolute()
    single = out.suffix.lower() in (".csv", ".parquet")
    parts = out.with_name(f".{out.name}.parts") if single else out
    sh.check_output_folder(parts)
    cands = None if candidates is None else [str(c) for c in candidates]
    src = str(users_path)
    t0 = time.perf_counter()
    workers = num_workers or max(1, (os.cpu_count() or 1) // 2)
    with _ray.ray_session(ray_address, num_cpus=None if ray_address else workers + 1) as ray:
        users, dups = _user_ids(src)
        job = _job_key(model_dir, src, k, cands, exclude_seen)
        shard_rows = int(min(4096, max(64, math.ceil(len(users) / (4 * workers)))))
        opts = dict(
            model_dir=str(model_dir), k=k, candidates=cands, exclude_seen=exclude_seen, batch_size=batch_size
        )
        shards, reused, new, run_s = _run_resumable(
            parts,
            job,
            users,
            lambda done: _run(ray, src, parts, job, done, shard_rows, workers, opts),
            "user_id",
        )
    recs = _assemble(parts, shards, users)
    summary = {
        "users": len(users),
        "rows": len(recs),
        "users_without_recs": len(users) - int(recs["user_id"].nunique()),
        "duplicate_user_rows": dups,
        "shards": len(shards),
        "shards_reused": len(reused),
        "users_per_s": sum(int(r["rows"]) for r in new) / run_s if new and run_s > 0 else 0.0,
        "seconds": time.perf_counter() - t0,
        "workers": workers,
        "output": str(out),
    }
    manifest = {
        "format": RECS_FORMAT,
        "complete": True,
        "job_key": job,
        "model": str(model_dir),
        "input": {"path": src, "users": len(users)},
        "k": k,
        "exclude_seen": exclude_seen,
        "shards": [s.to_json() for s in sorted(shards, key=lambda s: s.file)],
    }
    if single:
        _write_single(recs, out)
        shutil.rmtree(parts, ignore_errors=True)
    else:
        sh.write_manifest(parts, manifest)
    return summary


def _user_ids(src: str) -> tuple[list[str], int]:
    """Distinct user ids in input order, and how many repeated rows were folded."""
    from tokrec.data.loaders import id_strings

    raw, fmt, _cols = _ray.read_column(src, "user_id")
    ids = id_strings(raw)
    blank = ids.isna().to_numpy() | ids.fillna("").str.strip().eq("").to_numpy()
    if blank.any():
        row = int(np.flatnonzero(blank)[0]) + (2 if fmt == "csv" else 1)
        raise DataError(f"{int(blank.sum())} rows have no user id", file=src, row=row, column="user_id")
    ids = ids.str.strip()
    distinct = list(dict.fromkeys(ids.tolist()))
    if not distinct:
        raise DataError("no users", file=src)
    return distinct, len(ids) - len(distinct)


def _job_key(model_dir: Path, src: str, k: int, cands: list[str] | None, exclude_seen: bool) -> str:
    h = hashlib.sha256()
    for name in ("config.json", "arrays.safetensors"):
        p = model_dir / name
        if p.is_file():
            st = p.stat()
            h.update(f"{name}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
    payload = {
        "f": RECS_FORMAT,
        "model": h.hexdigest(),
        "users": _ray.input_hash(src),
        "k": k,
        "seen": exclude_seen,
    }
    payload["candidates"] = None if cands is None else hashlib.sha256("\0".join(cands).encode()).hexdigest()
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:32]


def _users_only(batch: pd.DataFrame, *, done: frozenset[str]) -> pd.DataFrame:
    """Ray Data task: the user ids still to do (first occurrence within the block)."""
    from tokrec.data.loaders import id_strings

    col = next(c for c in batch.columns if str(c).strip() == "user_id")
    ids = id_strings(batch[col]).str.strip()
    ids = ids[~ids.isin(done)].drop_duplicates()
    return pd.DataFrame({"user_id": ids.astype(str).to_numpy(dtype=object)})


class _RecommendShards:
    """Ray Data actor: loads the model once; each call scores one shard of users and writes it."""

    def __init__(
        self,
        *,
        model_dir: str,
        k: int,
        candidates: list[str] | None,
        exclude_seen: bool,
        batch_size: int,
        job: str,
        parts: str,
    ) -> None:
        from tokrec.models.registry import load_model

        self.model = load_model(model_dir)
        self.k, self.candidates, self.exclude_seen, self.batch_size = k, candidates, exclude_seen, batch_size
        self.job, self.parts = job, Path(parts)

    @_ray.guarded
    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        users = list(dict.fromkeys(batch["user_id"].astype(str).tolist()))
        recs = self.model.recommend_batch(
            users,
            k=self.k,
            candidates=self.candidates,
            exclude_seen=self.exclude_seen,
            batch_size=self.batch_size,
        )
        missing = [u for u in users if u not in set(recs["user_id"])]
        table = pa.table(
            {
                "user_id": pa.array(recs["user_id"].astype(str).tolist() + missing, type=pa.string()),
                "item_id": pa.array(
                    recs["item_id"].astype(str).tolist() + [None] * len(missing), type=pa.string()
                ),
                "score": pa.array(
                    np.concatenate([recs["score"].to_numpy(np.float64), np.full(len(missing), np.nan)])
                ),
                "rank": pa.array(
                    np.concatenate([recs["rank"].to_numpy(np.int64), np.zeros(len(missing), np.int64)])
                ),
            }
        )
        info = sh.write_table_shard(self.parts, users, table, job_key=self.job, fingerprint=self.model.name)
        return pd.DataFrame([{"file": info.file, "rows": info.rows, "fingerprint": info.fingerprint}])


def _run(
    ray: Any,
    src: str,
    parts: Path,
    job: str,
    done: set[str],
    shard_rows: int,
    workers: int,
    opts: dict[str, Any],
) -> list[dict[str, Any]]:
    ds, _fmt = _ray.read_dataset(src)
    ds = ds.map_batches(_users_only, batch_format="pandas", fn_kwargs={"done": frozenset(done)})
    ds = ds.repartition(target_num_rows_per_block=shard_rows, strict=True)
    parts.mkdir(parents=True, exist_ok=True)
    cpus = ray.cluster_resources().get("CPU", 1)
    results = ds.map_batches(
        _RecommendShards,
        batch_size=None,
        batch_format="pandas",
        fn_constructor_kwargs={**opts, "job": job, "parts": str(parts)},
        compute=ray.data.ActorPoolStrategy(size=workers),
        num_cpus=1 if cpus > workers else cpus / (workers + 1),
    )
    return [r for r in _ray.collect_rows(results) if int(r["rows"]) > 0]


def _assemble(parts: Path, shards: list[sh.ShardInfo], users: list[str]) -> pd.DataFrame:
    """All recommendations, users in input order, rank order within a user."""
    import pyarrow.parquet as pq

    tables = [pq.read_table(parts / s.file).replace_schema_metadata(None) for s in shards]
    df = (
        pa.concat_tables(tables).to_pandas()
        if tables
        else pd.DataFrame(columns=["user_id", "item_id", "score", "rank"])
    )
    df = df[df["item_id"].notna()]
    pos = {u: i for i, u in enumerate(users)}
    df = df.assign(_u=df["user_id"].map(pos)).sort_values(["_u", "rank"], kind="stable").drop(columns="_u")
    return df.reset_index(drop=True).astype({"rank": np.int64})


def _write_single(recs: pd.DataFrame, out: Path) -> None:
    def write(tmp: Path) -> None:
        if out.suffix.lower() == ".csv":
            recs.to_csv(tmp, index=False)
        else:
            recs.to_parquet(tmp, index=False)

    atomic_write(out, write)
