"""User text vectors (Z_U from T_U) on a Ray cluster.

Ray Data reads the interactions and numbers their rows (so that errors name the file's row and ties
in time keep the file order, exactly as the single-machine path breaks them), a stable hash of the
user id assigns every event to a shard, and a groupby hands each shard — all events of its users —
to an actor. The actor builds the users' histories with the single-machine code
(:func:`tokrec.features.user_texts`, the encoder's own tokenizer measuring the token budget), encodes
them through the cache and writes a Parquet shard (``user_id`` + ``vector``) named after its users.
Shards, manifest, resume and fault tolerance work as in :mod:`tokrec.distributed.ray_embed`.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from typing_extensions import Unpack

from tokrec.distributed import _ray
from tokrec.distributed import shards as sh
from tokrec.distributed.ray_embed import (
    EncoderSpec,
    ModelSpec,
    _cache_path,
    _EncoderActor,
    _EncoderSetup,
    _model_spec,
    _one_fingerprint,
    _run_resumable,
    _worker_count,
)
from tokrec.errors import ConfigError, DataError

USERS_FORMAT = sh.VECTOR_FORMATS[1]


def embed_users_ray(
    interactions_path: str | os.PathLike[str],
    items_path: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    model: ModelSpec = None,
    cache_dir: str | os.PathLike[str] | None = None,
    budget: int | None = None,
    batch_size: int = 64,
    **cluster: Unpack[_ray.ClusterOptions],
) -> dict[str, Any]:
    """Encodes every user's history text on a Ray cluster.

    Args:
        interactions_path: CSV / Parquet / JSON Lines file(s) with ``user_id``, ``item_id`` and
            optionally ``timestamp``, ``event``, ``value``/``rating`` (as ``load_interactions`` reads).
        items_path: the item catalog (read once by the driver with ``load_items`` and shared).
        output: a folder (shards + ``manifest.json``) or a ``.parquet`` file (users in order of
            first appearance, as the single-machine user vocabulary).
        model: as :func:`~tokrec.distributed.ray_embed.embed_items_ray`.
        cache_dir: as :func:`~tokrec.distributed.ray_embed.embed_items_ray`.
        budget: token budget of a history (default: the encoder's ``max_length``).
        batch_size: texts per forward pass.
        **cluster: ``ray_address`` and ``num_workers`` (encoder actors)
            (:class:`~tokrec.distributed.ClusterOptions`).

    Returns:
        Summary: ``users``, ``shards``, ``shards_reused``, ``cache_hits``, ``cache_misses``,
        ``texts_per_s``, ``seconds``, ``workers``, ``fingerprint``, ``dim``, ``output``.
    """
    from tokrec.data.loaders import load_items

    _ray.require_ray()
    ray_address, num_workers = _ray.cluster_options(cluster)
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, not {batch_size}")
    out = Path(output).expanduser().absolute()
    single = out.suffix.lower() == ".parquet"
    parts = out.with_name(f".{out.name}.parts") if single else out
    sh.check_output_folder(parts)
    items = load_items(items_path)
    cache_path = _cache_path(cache_dir)
    src = str(interactions_path)
    t0 = time.perf_counter()
    cores = os.cpu_count() or 1
    with _ray.ray_session(
        ray_address, num_cpus=None if ray_address else max(cores, num_workers or 1) + 1
    ) as ray:
        users = _user_order(src)
        job = _job_key(src, str(items_path), model, budget)
        workers, gpus, cpus = _worker_count(ray, num_workers)
        n_shards = max(1, min(math.ceil(len(users) / 64), 4 * workers))
        setup = _EncoderSetup.of(model, cache_path, batch_size, job, parts, cpus)

        def encode(done: set[str]) -> list[dict[str, Any]]:
            ctor = {"setup": setup, "items": ray.put(items), "budget": budget}
            return _run(ray, src, done, n_shards, workers, gpus, cpus, ctor, parts)

        shards, reused, new, run_s = _run_resumable(parts, job, users, encode, "user_id")
    fingerprint = _one_fingerprint(parts, shards, new)
    summary = {
        "users": len(users),
        "shards": len(shards),
        "shards_reused": len(reused),
        "cache_hits": sum(int(r["hits"]) for r in new),
        "cache_misses": sum(int(r["misses"]) for r in new),
        "texts_per_s": sum(int(r["rows"]) for r in new) / run_s if new and run_s > 0 else 0.0,
        "seconds": time.perf_counter() - t0,
        "workers": workers,
        "fingerprint": fingerprint,
        "output": str(out),
    }
    got_ids, vecs = sh.read_shards(parts, shards)
    summary["dim"] = int(vecs.shape[1])
    if single:
        pos = {u: i for i, u in enumerate(got_ids)}
        order = np.fromiter((pos[u] for u in users), dtype=np.int64, count=len(users))
        table = sh.vectors_table(users, vecs[order]).rename_columns(["user_id", "vector"])
        sh.write_parquet_atomic(table, out)
        import shutil

        shutil.rmtree(parts, ignore_errors=True)
    else:
        manifest = {
            "format": USERS_FORMAT,
            "complete": True,
            "job_key": job,
            "input": {"interactions": src, "items": str(items_path), "users": len(users)},
            "model": _model_spec(model),
            "fingerprint": fingerprint,
            "dim": summary["dim"],
            "shards": [s.to_json() for s in sorted(shards, key=lambda s: s.file)],
        }
        sh.write_manifest(parts, manifest)
    return summary


def _user_order(src: str) -> list[str]:
    from tokrec.data.loaders import id_strings

    raw, _fmt, _cols = _ray.read_column(src, "user_id")
    ids = id_strings(raw).dropna().astype(str).str.strip()
    users = [u for u in pd.unique(ids) if u]
    if not users:
        raise DataError("no interactions", file=src)
    return users


def _job_key(src: str, items: str, model: ModelSpec, budget: int | None) -> str:
    payload = {
        "f": USERS_FORMAT,
        "in": _ray.input_hash(src),
        "items": _ray.input_hash(items),
        "model": _model_spec(model),
        "budget": budget,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:32]


def _shard_of(ids: pd.Series, n_shards: int) -> np.ndarray:
    """A stable shard number per user id (the same on every machine and run)."""
    return np.fromiter(
        (
            int.from_bytes(hashlib.blake2b(u.encode(), digest_size=8).digest(), "little") % n_shards
            for u in ids
        ),
        dtype=np.int64,
        count=len(ids),
    )


def _tag(batch: pd.DataFrame, *, n_shards: int, done: frozenset[str]) -> pd.DataFrame:
    """Ray Data task: adds the shard number; drops users already in finished shards."""
    from tokrec.data.loaders import id_strings

    col = next(c for c in batch.columns if str(c).strip() == "user_id")
    users = id_strings(batch[col]).fillna("").astype(str).str.strip()
    batch = batch.assign(_shard=_shard_of(users, n_shards))
    return batch[~users.isin(done).to_numpy()] if done else batch


class _EncodeUsers(_EncoderActor):
    """Ray Data actor: renders and encodes the histories of one shard's users."""

    def __init__(self, *, setup: _EncoderSetup, items: Any, budget: int | None, first_row: int) -> None:
        super().__init__(setup)
        import ray

        if isinstance(items, ray.ObjectRef):  # the catalog is put in the object store once, not per actor
            items = ray.get(items)
        self.items: pd.DataFrame = items
        self.budget = budget
        self.first_row = first_row

    @_ray.guarded
    def __call__(self, group: pd.DataFrame) -> pd.DataFrame:
        from tokrec.data.dataset import Dataset
        from tokrec.data.loaders import interactions_from_frame
        from tokrec.features import user_texts

        group = group.sort_values("_row", kind="stable").reset_index(drop=True)
        rows = group["_row"].to_numpy(np.int64)
        raw = group.drop(columns=["_row", "_shard"])
        raw.columns = [str(c).strip() for c in raw.columns]
        inter = interactions_from_frame(raw, rows + self.first_row)
        if "timestamp" not in raw.columns:
            inter["timestamp"] = rows  # file order, as the single-machine loader numbers events
        ds = Dataset(inter, self.items)
        texts = user_texts(ds, encoder=self.encoder, budget=self.budget)
        users = ds.user_vocab.ids
        vecs = np.zeros((len(texts), int(self.encoder.dim)), dtype=np.float32)  # empty history: zeros
        order = np.array(
            [i for i in np.argsort([-len(t) for t in texts], kind="stable") if texts[i]], dtype=np.int64
        )
        sorted_texts = [texts[i] for i in order]
        hits, misses = 0, len(set(sorted_texts))
        if not sorted_texts:
            pass
        elif self.cache_path is None:
            vecs[order] = self.encoder.encode(sorted_texts)
        else:
            from tokrec.cache import CachedEncoder, EmbeddingCache

            with EmbeddingCache(self.cache_path) as cache:
                enc = CachedEncoder(self.encoder, cache, chunk_size=self.chunk)
                vecs[order] = enc.encode(sorted_texts)
                hits, misses = int(enc.stats["hits"]), int(enc.stats["misses"])
        fp = str(self.encoder.fingerprint)
        table = sh.vectors_table(users, vecs).rename_columns(["user_id", "vector"])
        info = sh.write_table_shard(self.parts, users, table, job_key=self.job, fingerprint=fp)
        return pd.DataFrame(
            [{"file": info.file, "rows": info.rows, "fingerprint": fp, "hits": hits, "misses": misses}]
        )


def _run(
    ray: Any,
    src: str,
    done: set[str],
    n_shards: int,
    workers: int,
    gpus: float,
    cpus: float,
    ctor: dict[str, Any],
    parts: Path,
) -> list[dict[str, Any]]:
    ds, fmt = _ray.read_dataset(src)
    ctor = {**ctor, "first_row": 2 if fmt == "csv" else 1}
    n = ds.count()
    ds = ds.zip(
        ray.data.range(n).rename_columns({"id": "_row"})
    )  # the file's row order, kept through the shuffle
    ds = ds.map_batches(
        _tag, batch_format="pandas", fn_kwargs={"n_shards": n_shards, "done": frozenset(done)}
    )
    parts.mkdir(parents=True, exist_ok=True)
    results = ds.groupby("_shard").map_groups(
        _EncodeUsers,
        batch_format="pandas",
        fn_constructor_kwargs=ctor,
        compute=ray.data.ActorPoolStrategy(size=workers),
        num_cpus=cpus,
        num_gpus=gpus or None,
    )
    return [r for r in _ray.collect_rows(results) if int(r["rows"]) > 0]


__all__ = ["EncoderSpec", "embed_users_ray"]
