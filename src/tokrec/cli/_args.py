"""Argument groups that several commands share and that are not about reading data (see ``_data``)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any


def add_torch_args(
    p: argparse.ArgumentParser, dtypes: tuple[str, ...], threads: int | None, threads_help: str
) -> None:
    """``--device`` (auto / cpu / cuda), ``--dtype`` (one of ``dtypes``, the first the default) and
    ``--threads`` (torch CPU threads, default ``threads``) of the commands that train a torch network."""
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--dtype", choices=dtypes, default=dtypes[0])
    p.add_argument("--threads", type=positive_int, default=threads, help=threads_help)


def add_template_arg(p: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """``--template``: the item template of every command that encodes the catalog (``T_I``)."""
    p.add_argument(
        "--template",
        default=None,
        help="item template: a format string like '{title} ({genres})' or a .json/.txt file "
        "(default: every column as 'name: value.')",
    )


def cache_arg(value: str | None) -> str | None:
    """An embedding-cache flag as the encoders take it: unset -> ``"default"``, ``none`` -> None (off), else the
    folder."""
    if value is None:
        return "default"
    return None if value.lower() == "none" else value


def same_named(args: argparse.Namespace, *names: str) -> dict[str, Any]:
    """``{name: args.name}``: the options a command passes on under the flag's own name."""
    return {n: getattr(args, n) for n in names}


def _writable_parent(path: Path) -> None:
    """Raises ArgumentTypeError unless the nearest existing folder above ``path`` is a folder a file can be
    created in (probed with a temporary file: permission bits say nothing to root, or of read-only mounts)."""
    import tempfile

    above = path.parent
    while not above.exists():
        above = above.parent
    if not above.is_dir():
        raise argparse.ArgumentTypeError(f"{path}: {above} is a file, not a folder")
    try:
        with tempfile.TemporaryFile(dir=above):
            pass
    except OSError as e:
        raise argparse.ArgumentTypeError(f"{path}: cannot write in {above} ({e.strerror or e})") from e


def output_file(*suffixes: str, folder_ok: bool = False) -> Callable[[str], str]:
    """argparse ``type`` of a flag naming a file to write: refused at parse time (exit 2, before any work) when
    it is empty, an existing folder (unless ``folder_ok``: a Ray job writes a folder of shards), lies under a
    file or in a folder that cannot be written, or (``suffixes`` given) does not end in one of them."""

    def check(value: str) -> str:
        if not value.strip():
            raise argparse.ArgumentTypeError("empty path")
        p = Path(value)
        if suffixes and p.suffix.lower() not in suffixes:
            raise argparse.ArgumentTypeError(f"{value}: give a file ending in {' or '.join(suffixes)}")
        if p.is_dir() and not folder_ok:
            raise argparse.ArgumentTypeError(f"{value} is a folder; give a file")
        _writable_parent(p)
        return value

    return check


def output_folder(value: str) -> str:
    """argparse ``type`` of a flag naming a folder to write: refused at parse time when it is empty, an
    existing file, or cannot be created or written in."""
    if not value.strip():
        raise argparse.ArgumentTypeError("empty path")
    p = Path(value)
    if p.exists() and not p.is_dir():
        raise argparse.ArgumentTypeError(f"{value} is a file; give a folder")
    _writable_parent(p / "x")
    return value


def _positive(value: str, cast: Callable[[str], Any], what: str) -> Any:
    """``cast(value)`` when it is a finite number above 0, else argparse's error naming ``what``."""
    import math

    try:
        x = cast(value)
    except ValueError:
        x = None
    if x is None or not math.isfinite(x) or x <= 0:
        raise argparse.ArgumentTypeError(f"expected {what}, got {value!r}")
    return x


def positive_int(value: str) -> int:
    """argparse ``type`` of a count that must be at least 1 (threads, budgets, batch sizes)."""
    return int(_positive(value, int, "a positive integer"))


def positive_seconds(value: str) -> float:
    """argparse ``type`` of a time budget: a finite number of seconds above 0."""
    return float(_positive(value, float, "seconds (a number above 0)"))


def add_ray_args(p: argparse.ArgumentParser, engine_help: str, workers_help: str) -> None:
    """``--engine`` (local / ray), ``--ray-address`` and ``--num-workers`` (the last two only with ``--engine ray``:
    :func:`check_ray_args`) in a "scale-out" group, for the commands that can run on a Ray cluster."""
    g = p.add_argument_group("scale-out")
    g.add_argument("--engine", choices=("local", "ray"), default="local", help=engine_help)
    g.add_argument("--ray-address", default=None, help="a Ray cluster to join (default: start a local one)")
    g.add_argument("--num-workers", type=positive_int, default=None, help=workers_help)


def check_ray_args(args: argparse.Namespace) -> None:
    """Refuses Ray options without ``--engine ray`` (they would be silently ignored)."""
    from tokrec.errors import ConfigError

    given = [f for f, v in (("--ray-address", args.ray_address), ("--num-workers", args.num_workers)) if v]
    if given and args.engine != "ray":
        raise ConfigError(f"{' and '.join(given)} only apply with --engine ray")
