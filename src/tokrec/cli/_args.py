"""Argument groups that several commands share and that are not about reading data (see ``_data``)."""

from __future__ import annotations

import argparse
from typing import Any


def add_torch_args(
    p: argparse.ArgumentParser, dtypes: tuple[str, ...], threads: int | None, threads_help: str
) -> None:
    """``--device`` (auto / cpu / cuda), ``--dtype`` (one of ``dtypes``, the first the default) and
    ``--threads`` (torch CPU threads, default ``threads``) of the commands that train a torch network."""
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--dtype", choices=dtypes, default=dtypes[0])
    p.add_argument("--threads", type=int, default=threads, help=threads_help)


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
