"""Item embedding on a Ray cluster: Ray Data reads and renders the catalog, an actor pool encodes it.

The pipeline (one Ray Data plan, streaming)::

    read_csv / read_parquet / read_json(lines)      any filesystem Ray reads
      -> render (tasks)                             ItemTemplate, the single-machine path's text
      -> streaming repartition into shards          ~shard_rows rows each
      -> encode + write (actor pool)                model loaded once per actor; num_gpus=1 on GPU clusters
                                                    cache lookups/fills; texts length-sorted per shard
      -> one small row per shard back to the driver -> manifest.json

Fault tolerance: the actors run with ``max_restarts`` / ``max_task_retries``, so a worker that dies is
restarted and its shard re-done. A shard's file name is a hash of the ids it holds, and it is written
to a temporary name and renamed, so a re-done shard replaces itself: rows are neither lost nor
duplicated. A re-run after a crash keeps every finished shard (found by the run's job key in the
shard's Parquet metadata) and encodes only the rest; the embedding cache makes even half-finished
shards cheap.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
import os
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from typing_extensions import Unpack

from tokrec.distributed import _ray
from tokrec.distributed import shards as sh
from tokrec.encoders.spec import EncoderSpec
from tokrec.errors import ConfigError, DataError, TokrecError

log = logging.getLogger(__name__)

#: shard size bounds (rows); the size aims at ~4 shards per worker
MIN_SHARD_ROWS = 64
MAX_SHARD_ROWS = 8192
_ENV_FOR_WORKERS = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HOME", "TOKENIZERS_PARALLELISM")

ModelSpec = str | Callable[[], Any] | None


def embed_items_ray(
    items_path: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    model: ModelSpec = None,
    cache_dir: str | os.PathLike[str] | Literal[False] | None = None,
    template: Any = None,
    batch_size: int = 64,
    **cluster: Unpack[_ray.ClusterOptions],
) -> dict[str, Any]:
    """Embeds an item catalog on a Ray cluster into Parquet.

    Args:
        items_path: CSV / Parquet / JSON Lines file or folder of them, local or any URI Ray reads
            (``s3://...``); an ``item_id`` column plus attribute columns (as ``load_items`` reads).
        output: a folder (Parquet shards + ``manifest.json``) or a ``.parquet`` file (one table in
            input order). Columns ``item_id`` (string) and ``vector`` (fixed_size_list<float32>[d]).
            Must be visible to every worker (a shared filesystem on a multi-node cluster).
        model: a model id or folder for :func:`tokrec.encoders.load_encoder` (None: the bundled
            all-MiniLM-L6-v2), or a zero-argument callable returning an Encoder (built in each worker).
        cache_dir: the embedding cache (a folder or ``.sqlite`` file; None: ``$TOKREC_CACHE_DIR`` or
            ``~/.cache/tokrec``; ``False``: no cache). On a multi-node cluster give a node-local path.
        template: an :class:`~tokrec.text.ItemTemplate`, a format string or a template file
            (None: the default ``name: value.`` listing).
        batch_size: texts per forward pass.
        **cluster: ``ray_address`` and ``num_workers`` (:class:`~tokrec.distributed.ClusterOptions`):
            encoder actors default to one per GPU on a GPU cluster; on CPUs, one per 2 CPUs after one is
            left to Ray Data's read/render tasks (each actor runs as many torch threads as CPUs it holds).

    Returns:
        Summary: ``rows``, ``shards``, ``texts_per_s`` (rows embedded by this run per second of the
        encode stage, start-up included), ``worker_texts_per_s`` (one worker's rate inside shards),
        ``cache_hits`` / ``cache_misses`` (distinct texts), ``rows_reused`` and ``shards_reused`` (kept
        from an earlier interrupted run), ``seconds``, ``encode_seconds``, ``workers``,
        ``gpus_per_worker``, ``cpus_per_worker``, ``fingerprint``, ``dim``, ``output``.

    Raises:
        ConfigError: ray is not installed, the cluster is unreachable or an option is invalid.
        DataError: the input is missing, malformed, or has blank or duplicate ids.
    """
    from tokrec.text import ItemTemplate

    _ray.require_ray()
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, not {batch_size}")
    ray_address, num_workers = _ray.cluster_options(cluster)
    tmpl = ItemTemplate.from_spec(template)
    src = str(items_path)
    out = Path(output).expanduser().absolute()
    single = out.suffix.lower() == ".parquet"
    parts = out.with_name(f".{out.name}.parts") if single else out
    if not single and out.exists() and not out.is_dir():
        raise ConfigError(f"output {out} is a file: give a folder, or a path ending in .parquet")
    sh.check_output_folder(parts)
    cache_path = _cache_path(cache_dir)
    t_start = time.perf_counter()
    cores = os.cpu_count() or 1
    local_cpus = None if ray_address else max(cores, num_workers or 1) + 1  # +1: Ray Data's read/render tasks
    with _ray.ray_session(ray_address, num_cpus=local_cpus) as ray:
        ids = _input_ids(src, tmpl)
        job, ihash = _job_key(src, tmpl, model)
        workers, gpus, cpus_per = _worker_count(ray, num_workers)
        shard_rows = int(min(MAX_SHARD_ROWS, max(MIN_SHARD_ROWS, math.ceil(len(ids) / (4 * workers)))))
        plan = _Plan(
            src, tmpl, model, cache_path, batch_size, job, parts, workers, gpus, cpus_per, shard_rows
        )
        shards, reused, new, enc_s = _run_resumable(
            parts, job, ids, lambda done: _run_encode(ray, plan, done)
        )
    summary = _summary(plan, shards, reused, new, enc_s, n_rows=len(ids))
    summary.update(seconds=time.perf_counter() - t_start, output=str(out))
    manifest = _manifest(plan, ihash, len(ids), shards, summary)
    if single:
        _write_single(out, parts, shards, ids, manifest)
    else:
        sh.write_manifest(parts, manifest)
    return summary


# ---- planning --------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Plan:
    src: str
    tmpl: Any
    model: ModelSpec
    cache_path: str | None
    batch_size: int
    job: str
    parts: Path
    workers: int
    gpus: float
    cpus: float
    shard_rows: int


def _worker_count(ray: Any, num_workers: int | None) -> tuple[int, float, float]:
    """(actors, GPUs per actor, CPUs per actor = its torch threads).

    With GPUs: one actor per GPU (1 CPU each). On CPUs: one CPU is left to Ray Data's read/render
    tasks and the rest is shared out, 2 per actor by default (two threads already keep a
    MiniLM-size model busy; more actors are better than more threads past that).
    """
    res = ray.cluster_resources()
    n_gpu = int(res.get("GPU", 0))
    if n_gpu >= 1:
        return (num_workers or n_gpu), 1.0, 1.0
    avail = max(1.0, float(res.get("CPU", 1)) - 1)
    workers = num_workers or max(1, int(avail // 2))
    per = float(int(avail // workers)) if avail >= workers else avail / workers
    return workers, 0.0, per


def _cache_path(cache_dir: Any) -> str | None:
    if cache_dir is False:
        return None
    from tokrec.cache import EmbeddingCache, default_cache_dir

    path = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    with EmbeddingCache(path) as c:  # creates it (WAL) once here, not racing in every actor
        return str(c.path)


def _model_spec(model: ModelSpec) -> str:
    """A stable description of the model argument (part of the job key)."""
    if model is None or isinstance(model, str):
        model = EncoderSpec(model)
    if isinstance(model, functools.partial):
        fn = model.func
        text = (
            f"partial({fn.__module__}.{fn.__qualname__}, {model.args!r}, {sorted(model.keywords.items())!r})"
        )
    else:
        text = f"{type(model).__module__}.{model!r}"
    if " at 0x" in text:
        raise ConfigError(
            f"model {text} has no stable repr (a lambda or partial?): pass a model name, an EncoderSpec or a "
            "dataclass factory, so that an interrupted run can be resumed"
        )
    return text


def _job_key(src: str, tmpl: Any, model: ModelSpec) -> tuple[str, str]:
    """(job key, input hash): the job key names the input bytes, the template and the model argument."""
    ihash = _ray.input_hash(src)
    payload = {
        "format": sh.FORMAT,
        "input": ihash,
        "template": tmpl.to_spec().model_dump(mode="json"),
        "model": _model_spec(model),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:32], ihash


def _input_ids(src: str, tmpl: Any) -> list[str]:
    """The catalog's ids in input order, checked like ``load_items`` (blank or duplicate: DataError).

    Also checks that the template's fields are columns of the input (ConfigError) before any work.
    """
    from tokrec.data.loaders import id_strings

    id_column = tmpl.id_column
    raw, fmt, cols = _ray.read_column(src, id_column)
    tmpl.render_many(pd.DataFrame(columns=cols))  # raises naming a missing template field
    ids = id_strings(raw)
    first_row = 2 if fmt == "csv" else 1
    blank = ids.isna().to_numpy() | ids.fillna("").str.strip().eq("").to_numpy()
    if blank.any():
        i = int(np.flatnonzero(blank)[0])
        raise DataError(f"{int(blank.sum())} rows have no id", file=src, row=i + first_row, column=id_column)
    ids = ids.str.strip()
    dup = ids.duplicated().to_numpy()
    if dup.any():
        i = int(np.flatnonzero(dup)[0])
        raise DataError(f"duplicate item id {ids.iloc[i]!r}", file=src, row=i + first_row, column=id_column)
    if not len(ids):
        raise DataError("the catalog has no rows", file=src)
    return ids.tolist()


def _resume(parts: Path, job: str, ids: Sequence[str], column: str = "item_id") -> list[sh.ShardInfo]:
    """Finished shards of this job (overlaps and foreign ids dropped); removes everything else."""
    found = sh.scan_shards(parts, job)
    wanted = set(ids)
    seen: set[str] = set()
    keep: list[sh.ShardInfo] = []
    for s in found:
        got = sh.shard_ids(parts, [s], column)
        if seen.isdisjoint(got) and wanted.issuperset(got):
            keep.append(s)
            seen.update(got)
    sh.remove_stale(parts, {s.file for s in keep})
    try:
        stale = json.loads((parts / sh.MANIFEST).read_text())
    except (OSError, ValueError):
        stale = None
    if (
        isinstance(stale, dict)
        and str(stale.get("format", "")).startswith("tokrec-")
        and stale.get("job_key") != job
    ):
        (parts / sh.MANIFEST).unlink()  # it describes another run's shards, just removed
    if keep:
        log.info("resuming: %d finished shards (%d rows) kept", len(keep), len(seen))
    return keep


def _run_resumable(
    parts: Path,
    job: str,
    ids: Sequence[str],
    run: Callable[[set[str]], list[dict[str, Any]]],
    column: str = "item_id",
) -> tuple[list[sh.ShardInfo], list[sh.ShardInfo], list[dict[str, Any]], float]:
    """A sharded job, resumed: keeps this job's finished shards, calls ``run(done)`` (the ids already
    written) when ids are left, and checks that every id is written exactly once.

    Returns:
        ``(shards, reused, new, run_s)``: every shard of the output, the shards kept from an earlier
        run, one row per shard ``run`` wrote, and the seconds ``run`` took.
    """
    reused = _resume(parts, job, ids, column)
    done = set(sh.shard_ids(parts, reused, column))
    t_run = time.perf_counter()
    new = run(done) if len(done) < len(ids) else []
    run_s = time.perf_counter() - t_run
    return _check_complete(parts, reused, new, ids, column), reused, new, run_s


# ---- the Ray Data plan -----------------------------------------------------------------------
def _render(batch: pd.DataFrame, *, template: Any, done: frozenset[str]) -> pd.DataFrame:
    """Ray Data task: rows -> (item_id, text), skipping ids already in finished shards."""
    from tokrec.data.loaders import id_strings

    df = batch.rename(columns={c: str(c).strip() for c in batch.columns})
    idc = template.id_column
    ids = id_strings(df[idc]).str.strip()
    keep = ~ids.isin(done).to_numpy() if done else np.ones(len(df), dtype=bool)
    df = df.loc[keep].reset_index(drop=True)
    df[idc] = ids[keep].to_numpy()
    texts = template.render_many(df) if len(df) else []
    return pd.DataFrame(
        {"item_id": df[idc].astype(str).to_numpy(dtype=object), "text": np.asarray(texts, dtype=object)}
    )


@dataclass(frozen=True)
class _EncoderSetup:
    """What an encoding actor (:class:`_EncoderActor`) is built from."""

    model: ModelSpec
    cache_path: str | None
    batch_size: int
    job: str
    parts: str
    #: the actor's torch threads
    threads: int
    #: the driver's hub / tokenizer settings (``_ENV_FOR_WORKERS``), set in the actor's process
    env: dict[str, str]

    @classmethod
    def of(
        cls, model: ModelSpec, cache_path: str | None, batch_size: int, job: str, parts: Path, cpus: float
    ) -> _EncoderSetup:
        """The setup of actors given ``cpus`` CPUs each, with this process's environment."""
        env = {k: os.environ[k] for k in _ENV_FOR_WORKERS if k in os.environ}
        return cls(model, cache_path, batch_size, job, str(parts), max(1, int(cpus)), env)


class _EncoderActor:
    """A Ray Data actor that encodes: the driver's environment, one encoder, its torch threads, the
    output folder (item shards: :class:`_EncodeShards`; user shards: ``ray_users._EncodeUsers``)."""

    def __init__(self, setup: _EncoderSetup) -> None:
        os.environ.update(setup.env)
        os.environ.setdefault("OMP_NUM_THREADS", str(setup.threads))
        self.encoder = _build_encoder(setup.model, setup.batch_size)
        _limit_threads(setup.threads)
        self.chunk = max(setup.batch_size * 8, 256)
        self.cache_path = setup.cache_path
        self.job = setup.job
        self.parts = Path(setup.parts)


class _EncodeShards(_EncoderActor):
    """Ray Data actor: one encoder per actor; each call gets one shard and writes it."""

    def __init__(self, *, setup: _EncoderSetup) -> None:
        super().__init__(setup)
        self.fingerprint = str(self.encoder.fingerprint)
        self.dim = int(self.encoder.dim)

    @_ray.guarded
    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        ids = batch["item_id"].astype(str).tolist()
        texts = batch["text"].astype(str).tolist()
        t0 = time.perf_counter()
        vectors, hits, misses = self._vectors(texts)
        info = sh.write_shard(self.parts, ids, vectors, job_key=self.job, fingerprint=self.fingerprint)
        row = {"file": info.file, "rows": info.rows, "hits": hits, "misses": misses, "dim": self.dim}
        row.update(fingerprint=self.fingerprint, seconds=time.perf_counter() - t0, pid=os.getpid())
        return pd.DataFrame([row])

    def _vectors(self, texts: list[str]) -> tuple[np.ndarray, int, int]:
        """Encodes texts longest first (so padded batches are tight), through the cache."""
        order = np.argsort([-len(t) for t in texts], kind="stable")
        sorted_texts = [texts[i] for i in order]
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        if self.cache_path is None:
            vecs = np.concatenate(
                [
                    self.encoder.encode(sorted_texts[i : i + self.chunk])
                    for i in range(0, len(texts), self.chunk)
                ]
            )
            out[order] = vecs
            return out, 0, len(set(texts))
        from tokrec.cache import CachedEncoder, EmbeddingCache

        cache = EmbeddingCache(self.cache_path)
        try:
            enc = CachedEncoder(self.encoder, cache, chunk_size=self.chunk)
            out[order] = enc.encode(sorted_texts)
        finally:
            cache.close()
        return out, int(enc.stats["hits"]), int(enc.stats["misses"])


def _limit_threads(threads: int) -> None:
    torch = sys.modules.get("torch")  # only where the encoder uses it: importing it costs seconds
    if torch is not None:
        torch.set_num_threads(threads)


def _build_encoder(model: ModelSpec, batch_size: int) -> Any:
    if model is None or isinstance(model, str):
        model = EncoderSpec(model)
    if isinstance(model, EncoderSpec):
        return model(batch_size)
    if callable(model):
        return model()
    raise ConfigError(
        f"model must be a name, a folder or a callable returning an Encoder, not {type(model).__name__}"
    )


def _run_encode(ray: Any, plan: _Plan, done: set[str]) -> list[dict[str, Any]]:
    """Executes the Ray Data plan; returns one row per shard written."""
    ds, _fmt = _ray.read_dataset(plan.src)
    ds = ds.map_batches(
        _render, batch_format="pandas", fn_kwargs={"template": plan.tmpl, "done": frozenset(done)}
    )
    ds = ds.repartition(target_num_rows_per_block=plan.shard_rows, strict=True)
    setup = _EncoderSetup.of(plan.model, plan.cache_path, plan.batch_size, plan.job, plan.parts, plan.cpus)
    plan.parts.mkdir(parents=True, exist_ok=True)
    # Ray Data gives its actors max_restarts=-1 and max_task_retries=-1: a dead actor is restarted and
    # the shard it held is handed out again (same rows, same file name).
    results = ds.map_batches(
        _EncodeShards,
        batch_size=None,
        batch_format="pandas",
        fn_constructor_kwargs={"setup": setup},
        compute=ray.data.ActorPoolStrategy(size=plan.workers),
        num_cpus=plan.cpus,
        num_gpus=plan.gpus or None,
    )
    return [r for r in _ray.collect_rows(results) if int(r["rows"]) > 0]


# ---- completion ------------------------------------------------------------------------------
def _check_complete(
    parts: Path,
    reused: list[sh.ShardInfo],
    new: list[dict[str, Any]],
    ids: Sequence[str],
    column: str = "item_id",
) -> list[sh.ShardInfo]:
    """Every id exactly once across the shards, or an error (the re-run repairs it)."""
    shards = list(reused)
    names = {s.file for s in shards}
    for r in new:
        if r["file"] not in names:  # a retried shard reports the same file twice
            shards.append(sh.ShardInfo(str(r["file"]), int(r["rows"]), str(r["fingerprint"])))
            names.add(str(r["file"]))
    got = sh.shard_ids(parts, shards, column)
    if len(got) != len(set(got)) or set(got) != set(ids):
        missing = len(set(ids) - set(got))
        raise TokrecError(
            f"embedding output in {parts} is inconsistent ({len(got)} rows written, {len(set(got))} distinct, "
            f"{missing} missing); run the same command again to repair it"
        )
    return shards


def _one_fingerprint(parts: Path, shards: list[sh.ShardInfo], new: list[dict[str, Any]]) -> str:
    fps = {s.fingerprint for s in shards}
    if len(fps) != 1:
        # the model changed under the same name since an interrupted run: drop the old shards
        current = str(new[0]["fingerprint"]) if new else sorted(fps)[0]
        stale = [s for s in shards if s.fingerprint != current]
        for s in stale:
            (parts / s.file).unlink(missing_ok=True)
        raise TokrecError(
            f"{len(stale)} shards in {parts} were made by another encoder version and were removed; "
            "run the same command again to re-encode them"
        )
    return fps.pop()


def _dim_of(parts: Path, shards: list[sh.ShardInfo]) -> int:
    _, vecs = sh.read_shards(parts, shards[:1])
    return int(vecs.shape[1])


def _summary(
    plan: _Plan,
    shards: list[sh.ShardInfo],
    reused: list[sh.ShardInfo],
    new: list[dict[str, Any]],
    enc_s: float,
    *,
    n_rows: int,
) -> dict[str, Any]:
    rows_new = sum(int(r["rows"]) for r in new)
    return {
        "rows": n_rows,
        "shards": len(shards),
        "texts_per_s": rows_new / enc_s if rows_new and enc_s > 0 else 0.0,
        # steady state of one worker: rows over the time actors spent inside shards (no start-up)
        "worker_texts_per_s": rows_new / busy
        if rows_new and (busy := sum(float(r["seconds"]) for r in new)) > 0
        else 0.0,
        "cache_hits": sum(int(r["hits"]) for r in new),
        "cache_misses": sum(int(r["misses"]) for r in new),
        "rows_reused": sum(s.rows for s in reused),
        "shards_reused": len(reused),
        "encode_seconds": enc_s,
        "workers": plan.workers,
        "gpus_per_worker": plan.gpus,
        "cpus_per_worker": plan.cpus,
        "fingerprint": _one_fingerprint(plan.parts, shards, new),
        "dim": int(new[0]["dim"]) if new else _dim_of(plan.parts, shards),
    }


def _manifest(
    plan: _Plan, ihash: str, n_rows: int, shards: list[sh.ShardInfo], summary: dict[str, Any]
) -> dict[str, Any]:
    return {
        "format": sh.FORMAT,
        "complete": True,
        "job_key": plan.job,
        "input": {"path": plan.src, "hash": ihash, "rows": n_rows},
        "model": _model_spec(plan.model),
        "template": plan.tmpl.to_spec().model_dump(mode="json"),
        "fingerprint": summary["fingerprint"],
        "dim": summary["dim"],
        "shards": [s.to_json() for s in sorted(shards, key=lambda s: s.file)],
        "order": "shard rows are in no particular order; a .parquet output is in input order",
    }


def _write_single(
    out: Path, parts: Path, shards: list[sh.ShardInfo], ids: Sequence[str], manifest: dict[str, Any]
) -> None:
    """One Parquet file in input order (the shard folder beside it is removed once it is written)."""
    got_ids, vecs = sh.read_shards(parts, shards)
    pos = {i: k for k, i in enumerate(got_ids)}
    order = np.fromiter((pos[i] for i in ids), dtype=np.int64, count=len(ids))
    meta = {b"tokrec.manifest": json.dumps({k: v for k, v in manifest.items() if k != "shards"}).encode()}
    sh.write_parquet_atomic(sh.vectors_table(list(ids), vecs[order], meta), out)
    shutil.rmtree(parts, ignore_errors=True)
