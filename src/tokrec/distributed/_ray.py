"""Ray as an optional dependency: import checks, cluster connection, input reading."""

from __future__ import annotations

import csv
import functools
import hashlib
import io
import json
import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypedDict

import pandas as pd

from tokrec.errors import ConfigError, DataError, TokrecError

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'tokrec[ray]'  (or: pip install 'ray[data]>=2.30')"
_FORMATS = {
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "json",
    ".ndjson": "json",
    ".json": "json",
}
#: local clusters get this much object store unless the caller says otherwise (bytes)
LOCAL_OBJECT_STORE = 512 * 1024**2
#: inputs smaller than this are hashed by content; larger ones by (path, size, mtime) listing
_CONTENT_HASH_LIMIT = 1024**3


class ClusterOptions(TypedDict, total=False):
    """Where a Ray job runs: the ``**cluster`` options of every Ray job.

    ``ray_address``: a cluster to join (``"auto"``, ``"ray://head:10001"``, ``"host:6379"``); None or
    absent starts a local one (or uses the one already initialised in this process). ``num_workers``:
    the job's actors (>= 1; default: the job's own, see each job).
    """

    ray_address: str | None
    num_workers: int | None


def cluster_options(cluster: ClusterOptions) -> tuple[str | None, int | None]:
    """``(ray_address, num_workers)`` of a job's ``**cluster`` options, checked."""
    workers = cluster.get("num_workers")
    if workers is not None and workers < 1:
        raise ConfigError(f"num_workers must be >= 1, not {workers}")
    return cluster.get("ray_address"), workers


def ray_available() -> bool:
    """True when ``ray[data]`` can be imported."""
    try:
        import ray  # noqa: F401
        import ray.data  # noqa: F401
    except ImportError:
        return False
    return True


def require_ray() -> Any:
    """Imports ray, or raises :class:`ConfigError` telling how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as e:
        raise ConfigError(f"the Ray engine needs ray[data], which is not installed: {INSTALL_HINT}") from e
    return ray


@contextmanager
def ray_session(ray_address: str | None, *, num_cpus: int | None = None) -> Iterator[Any]:
    """Connects to a cluster (``ray_address``), reuses an initialised one, or starts a local one.

    A cluster this function started is shut down on exit; one it found running is left alone.

    Args:
        ray_address: ``"auto"``, ``"ray://host:10001"``, ``"host:6379"``, or None for a local cluster
            (or the one already initialised in this process).
        num_cpus: logical CPUs of a local cluster.

    Yields:
        The ``ray`` module.
    """
    ray = require_ray()
    started = False
    if not ray.is_initialized():
        kwargs: dict[str, Any] = {
            "include_dashboard": False,
            "log_to_driver": False,
            "logging_level": logging.WARNING,
        }
        if ray_address:
            _check_reachable(ray_address)
            kwargs["address"] = ray_address
        else:
            kwargs.update(num_cpus=num_cpus, object_store_memory=LOCAL_OBJECT_STORE)
        try:
            ray.init(**kwargs)
        except ConnectionError as e:
            raise ConfigError(f"cannot connect to the Ray cluster at {ray_address!r}: {e}") from e
        started = True
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)  # "progress bars disabled"
    try:
        yield ray
    finally:
        if started:
            ray.shutdown()


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fails at once (ConfigError) when a ``host:port`` or ``ray://host:port`` address refuses a TCP connection:
    ``ray.init`` would otherwise retry an unreachable cluster for minutes. ``auto`` is left to Ray."""
    import socket

    hostport = address.split("://", 1)[1] if "://" in address else address
    host, _, port = hostport.rpartition(":")
    if address == "auto" or not host or not port.isdigit():
        return
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except OSError as e:
        raise ConfigError(f"cannot reach the Ray cluster at {address!r}: {e.strerror or e}") from None


# ---- input files --------------------------------------------------------------------------------
def _filesystem(path: str) -> tuple[Any, str]:
    import pyarrow.fs as pafs

    if "://" in path:
        return pafs.FileSystem.from_uri(path)
    return pafs.LocalFileSystem(), os.path.abspath(os.path.expanduser(path))


def input_files(path: str) -> tuple[list[Any], str]:
    """The files under ``path`` (a file or a folder, on any pyarrow filesystem) and their format.

    Returns:
        ``(file infos sorted by path, format)`` with format ``csv``, ``parquet`` or ``json`` (lines).

    Raises:
        DataError: nothing there, or an unknown or mixed extension.
    """
    import pyarrow.fs as pafs

    fs, p = _filesystem(path)
    info = fs.get_file_info(p)
    if info.type == pafs.FileType.NotFound:
        raise DataError("file not found", file=path)
    if info.type == pafs.FileType.Directory:
        infos = [
            i
            for i in fs.get_file_info(pafs.FileSelector(p, recursive=True))
            if i.is_file and not i.base_name.startswith((".", "_"))
        ]
    else:
        infos = [info]
    formats = {_FORMATS.get(os.path.splitext(i.path)[1].lower()) for i in infos}
    if not infos:
        raise DataError("folder holds no files", file=path)
    if None in formats or len(formats) != 1:
        raise DataError("input must be .csv, .parquet or .jsonl files (one format)", file=path)
    fmt = formats.pop()
    assert fmt is not None
    return sorted(infos, key=lambda i: i.path), fmt


def input_hash(path: str) -> str:
    """sha256 over the input's bytes (or, past 1 GiB, over its (path, size, mtime) listing)."""
    fs, _ = _filesystem(path)
    infos, _fmt = input_files(path)
    h = hashlib.sha256()
    by_content = sum(i.size or 0 for i in infos) <= _CONTENT_HASH_LIMIT
    for i in infos:
        h.update(f"{os.path.basename(i.path)}\0{i.size}\0".encode())
        if not by_content:
            h.update(str(i.mtime_ns).encode())
            continue
        with fs.open_input_stream(i.path) as f:
            while chunk := f.read(1 << 22):
                h.update(chunk)
    return f"{'sha256' if by_content else 'listing'}:{h.hexdigest()}"


def _csv_header(path: str, fs: Any) -> list[str]:
    with fs.open_input_stream(path) as f:
        head = f.read(1 << 16).decode("utf-8-sig", errors="replace")
    line = head.splitlines()[0] if head else ""
    return list(next(csv.reader(io.StringIO(line)), []))


def read_dataset(path: str) -> tuple[Any, str]:
    """A Ray Dataset over the item file(s), CSV cells kept as text like the single-machine loader.

    Returns:
        ``(dataset, format)``.
    """
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import ray.data

    infos, fmt = input_files(path)
    if fmt == "parquet":
        return ray.data.read_parquet(path), fmt
    if fmt == "json":
        return ray.data.read_json(path, lines=True), fmt
    fs, _ = _filesystem(path)
    header = _csv_header(infos[0].path, fs)
    if not header or not any(c.strip() for c in header):
        raise DataError("file is empty (no header)", file=path)
    convert = pacsv.ConvertOptions(column_types={c: pa.string() for c in header}, strings_can_be_null=True)
    return ray.data.read_csv(path, convert_options=convert), fmt


def read_column(path: str, column: str) -> tuple[Any, str, list[str]]:
    """One column of the input, in file order, as a pandas Series.

    Returns:
        ``(series, format, column names)``.

    Raises:
        DataError: the column is missing (naming the file).
    """
    import ray.data

    # Blocks otherwise come back in completion order. A Dataset copies the context when it is
    # created, so the option is set before the read.
    opts = ray.data.DataContext.get_current().execution_options
    before = opts.preserve_order
    opts.preserve_order = True
    try:
        ds, fmt = read_dataset(path)
        cols = {c.strip(): c for c in ds.schema().names}
        if column not in cols:
            raise DataError("missing column", file=path, column=column)
        series = ds.select_columns([cols[column]]).to_pandas().iloc[:, 0]
    finally:
        opts.preserve_order = before
    return series, fmt, list(cols)


# ---- worker errors ----------------------------------------------------------------------------
#: the column an actor's error row carries (JSON); a normal row has no such column
ERROR_COLUMN = "_tokrec_error"


def guarded(call: Callable[[Any, pd.DataFrame], pd.DataFrame]) -> Callable[[Any, pd.DataFrame], pd.DataFrame]:
    """Wraps a Ray Data actor's ``__call__`` so that an exception becomes one error row.

    Why: when a map actor raises, Ray Data 2.60's streaming executor logs "Dataset execution will now
    abort" and the driver can then block in ``get_output_blocking`` for ever instead of receiving the
    error (seen on this project's CI machine). Returning the error as data keeps the run alive: the
    other shards are still written (a re-run then has less to do), and :func:`collect_rows` raises
    the first error on the driver, as a tokrec error of the same class where it was one.
    """

    @functools.wraps(call)
    def wrapper(self: Any, batch: pd.DataFrame) -> pd.DataFrame:
        try:
            return call(self, batch)
        except Exception as e:  # reported on the driver by collect_rows
            info: dict[str, Any] = {"type": type(e).__name__, "message": str(e)}
            if isinstance(e, DataError):
                info.update(reason=e.reason, file=e.file, row=e.row, column=e.column)
            return pd.DataFrame([{ERROR_COLUMN: json.dumps(info, default=str)}])

    return wrapper


def tokrec_cause(e: BaseException) -> TokrecError | None:
    """The tokrec error somewhere in a (Ray) exception chain, if any."""
    seen = set()
    cur: BaseException | None = e
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, TokrecError):
            return cur
        inner = getattr(cur, "cause", None)
        cur = inner if isinstance(inner, BaseException) else (cur.__cause__ or cur.__context__)
    return None


def collect_rows(results: Any) -> list[dict[str, Any]]:
    """All rows of a Ray dataset built with :func:`guarded` actors; raises the first worker error
    (errors raised outside ``__call__``, e.g. in an actor's constructor, surface as Ray exceptions and
    are unwrapped to the tokrec error inside them when there is one)."""
    try:
        rows = [dict(r) for r in results.iter_rows()]
    except TokrecError:
        raise
    except Exception as e:
        cause = tokrec_cause(e)
        if cause is not None:
            raise cause from e
        raise
    errors = [r[ERROR_COLUMN] for r in rows if isinstance(r.get(ERROR_COLUMN), str)]
    if errors:
        info = json.loads(errors[0])
        more = f" ({len(errors) - 1} more shard(s) failed)" if len(errors) > 1 else ""
        if info["type"] == "DataError":
            raise DataError(
                info["reason"] + more, file=info.get("file"), row=info.get("row"), column=info.get("column")
            )
        if info["type"] == "ConfigError":
            raise ConfigError(info["message"] + more)
        raise TokrecError(f"a Ray worker failed: {info['type']}: {info['message']}{more}")
    return [{k: v for k, v in r.items() if k != ERROR_COLUMN} for r in rows]
