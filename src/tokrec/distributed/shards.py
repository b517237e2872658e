"""Parquet vector shards and their manifest: the on-disk form of a (distributed) embedding run.

Nothing here needs Ray, so the layout can be read, checked and assembled anywhere.

Layout of an output directory::

    OUT/
      manifest.json          # written last, atomically: shards, row counts, fingerprint, input hash
      part-<hash>.parquet    # item_id (string) + vector (fixed_size_list<float32>[d]), one per shard

A shard's name is a hash of the ids it holds, so a shard that is written twice (a retried task
after a worker died) lands on the same file, replaced atomically: a retry can never duplicate rows.
Every shard also carries the run's ``job key`` in its Parquet metadata, so a re-run finds the shards
an interrupted run finished even when the manifest was never updated for them.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tokrec.errors import ConfigError, DataError
from tokrec.fileio import atomic_write, write_text_atomic

FORMAT = "tokrec-embeddings/1"
#: manifests of vector outputs that :func:`read_vectors` reads (item vectors, user vectors)
VECTOR_FORMATS = (FORMAT, "tokrec-user-vectors/1")
MANIFEST = "manifest.json"
_META_JOB = b"tokrec.job_key"
_META_FP = b"tokrec.fingerprint"


@dataclass(frozen=True)
class ShardInfo:
    """One finished shard: file name (relative to the shard folder), rows, encoder fingerprint."""

    file: str
    rows: int
    fingerprint: str

    def to_json(self) -> dict[str, Any]:
        return {"file": self.file, "rows": self.rows, "fingerprint": self.fingerprint}


def shard_name(ids: Sequence[str]) -> str:
    """Deterministic file name for a shard holding ``ids`` (order-insensitive)."""
    h = hashlib.sha256()
    for i in sorted(ids):
        h.update(i.encode("utf-8"))
        h.update(b"\0")
    return f"part-{h.hexdigest()[:20]}.parquet"


def vectors_table(
    ids: Sequence[str], vectors: np.ndarray, metadata: dict[bytes, bytes] | None = None
) -> pa.Table:
    """The single-machine layout: ``item_id`` + ``vector``.

    Args:
        ids: ``n`` external item ids.
        vectors: ``(n, d)`` float32.
        metadata: optional Parquet schema metadata.

    Returns:
        A table with columns ``item_id`` (string) and ``vector`` (fixed_size_list<float32>[d]).
    """
    vecs = np.ascontiguousarray(vectors, dtype=np.float32)
    if vecs.ndim != 2 or len(vecs) != len(ids):
        raise ValueError(f"vectors must be (n={len(ids)}, d); got {vecs.shape}")
    flat = pa.array(vecs.reshape(-1), type=pa.float32())
    col = pa.FixedSizeListArray.from_arrays(flat, vecs.shape[1])
    table = pa.table({"item_id": pa.array(list(ids), type=pa.string()), "vector": col})
    return table.replace_schema_metadata(metadata) if metadata else table


def write_parquet_atomic(table: pa.Table, path: Path) -> None:
    """Writes ``table`` to a temporary name beside ``path``, then renames it into place."""
    atomic_write(path, lambda tmp: pq.write_table(table, tmp))


def write_shard(
    folder: Path, ids: Sequence[str], vectors: np.ndarray, *, job_key: str, fingerprint: str
) -> ShardInfo:
    """Writes one shard atomically under its content name and describes it."""
    name = shard_name(ids)
    meta = {_META_JOB: job_key.encode(), _META_FP: fingerprint.encode()}
    write_parquet_atomic(vectors_table(ids, vectors, meta), folder / name)
    return ShardInfo(name, len(ids), fingerprint)


def scan_shards(folder: Path, job_key: str) -> list[ShardInfo]:
    """Finished shards of the run ``job_key`` found in ``folder`` (others are ignored)."""
    found: list[ShardInfo] = []
    if not folder.is_dir():
        return found
    for p in sorted(folder.glob("part-*.parquet")):
        try:
            meta = pq.read_schema(p).metadata or {}
            rows = pq.read_metadata(p).num_rows
        except (OSError, pa.ArrowInvalid):
            continue  # unreadable leftovers are re-encoded
        if meta.get(_META_JOB) == job_key.encode():
            found.append(ShardInfo(p.name, rows, meta.get(_META_FP, b"").decode()))
    return found


def check_output_folder(folder: Path) -> None:
    """Refuses (ConfigError) an existing folder holding files no tokrec job wrote: a job writes its shards among
    them and deletes the ``part-*.parquet`` files it does not keep (:func:`remove_stale`), which in a folder of
    another tool's Parquet parts would be the user's data. Absent, empty, or holding only tokrec shards (of an
    earlier or interrupted run: they carry a job key), a manifest and temporaries is fine."""
    if not folder.exists():
        return
    if not folder.is_dir():
        raise ConfigError(f"output {folder} is a file: give a folder, or a single-file output path")
    for p in sorted(folder.iterdir()):
        if p.name == "manifest.json" or (p.name.startswith(".part-") and p.name.endswith(".tmp")):
            continue
        if p.name.startswith("part-") and p.suffix == ".parquet":
            try:
                meta = pq.read_schema(p).metadata or {}
            except (OSError, pa.ArrowInvalid):
                meta = {}
            if _META_JOB in meta:
                continue
        raise ConfigError(
            f"output folder {folder} holds {p.name!r}, which no tokrec job wrote; give a new or empty folder"
        )


def remove_stale(folder: Path, keep: set[str]) -> int:
    """Deletes ``part-*.parquet`` and temporary files in ``folder`` not named in ``keep``."""
    n = 0
    if folder.is_dir():
        for p in list(folder.glob("part-*.parquet")) + list(folder.glob(".part-*.tmp")):
            if p.name not in keep:
                p.unlink(missing_ok=True)
                n += 1
    return n


def shard_ids(folder: Path, shards: Sequence[ShardInfo], column: str = "item_id") -> list[str]:
    """The keys held by ``shards`` (each shard's distinct values of ``column``), shard after shard."""
    import pyarrow.compute as pc

    out: list[str] = []
    for s in shards:
        col = pq.read_table(folder / s.file, columns=[column]).column(0)
        out.extend(pc.unique(col).to_pylist())
    return out


def write_table_shard(
    folder: Path, keys: Sequence[str], table: pa.Table, *, job_key: str, fingerprint: str
) -> ShardInfo:
    """Writes any table as a shard named after its distinct ``keys`` (e.g. the users it covers)."""
    name = shard_name(keys)
    meta = {_META_JOB: job_key.encode(), _META_FP: fingerprint.encode()}
    write_parquet_atomic(table.replace_schema_metadata(meta), folder / name)
    return ShardInfo(name, len(keys), fingerprint)


def read_shards(folder: Path, shards: Sequence[ShardInfo]) -> tuple[list[str], np.ndarray]:
    """Concatenates vector shards: ``(ids from the first column, vectors (n, d) float32)``."""
    tables = [pq.read_table(folder / s.file) for s in shards]
    if not tables:
        return [], np.zeros((0, 0), dtype=np.float32)
    table = pa.concat_tables([t.replace_schema_metadata(None) for t in tables])
    return table.column(0).to_pylist(), _vectors(table)  # the id column comes first (item_id / user_id)


def _vectors(table: pa.Table) -> np.ndarray:
    col = table.column("vector").combine_chunks()
    d = col.type.list_size
    return np.asarray(col.values.to_numpy(zero_copy_only=False), dtype=np.float32).reshape(-1, d)


def write_manifest(folder: Path, manifest: dict[str, Any]) -> Path:
    """Writes ``manifest.json`` atomically."""
    return write_text_atomic(folder / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True))


def read_manifest(folder: Path) -> dict[str, Any] | None:
    """The manifest in ``folder``, or None where there is none or it is not ours."""
    path = folder / MANIFEST
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) and data.get("format") in VECTOR_FORMATS else None


def read_vectors(path: str | os.PathLike[str]) -> tuple[list[str], np.ndarray]:
    """Reads an embedding output: a single ``.parquet`` file or a shard directory with a manifest.

    Returns:
        ``(ids, vectors)`` with vectors ``(n, d)`` float32, in file order (for a directory: the
        manifest's shard order).
    """
    p = Path(path)
    if p.is_dir():
        manifest = read_manifest(p)
        if manifest is None:
            raise DataError("no tokrec manifest.json in this directory", file=str(p))
        if not manifest.get("complete"):
            raise DataError(
                "the embedding run that wrote this directory did not finish", file=str(p / MANIFEST)
            )
        shards = [ShardInfo(s["file"], s["rows"], s.get("fingerprint", "")) for s in manifest["shards"]]
        return read_shards(p, shards)
    if not p.is_file():
        raise DataError("no such file or directory", file=str(p))
    table = pq.read_table(p)
    if "vector" not in table.column_names:
        raise DataError("missing column", file=str(p), column="vector")
    return table.column(0).to_pylist(), _vectors(table)
