"""The options every data-reading command takes, and the one call that reads the data with them.

The loaders' error messages name these flags (``--encoding``, ``--unknown-items drop``, ``--empty-ids
drop``) next to the Python arguments, so both exist for every command that reads a catalog and a log.
"""

from __future__ import annotations

import argparse
from typing import Any

#: ``--items`` help, the same in every command that reads a catalog
ITEMS_HELP = "item catalog (CSV / Parquet / JSONL)"


def add_data_args(p: argparse.ArgumentParser, interactions: str) -> None:
    """``--items`` and ``--interactions`` (both required); ``interactions`` is the latter's help (what
    the command does with the log)."""
    p.add_argument("--items", required=True, help=ITEMS_HELP)
    p.add_argument("--interactions", required=True, help=interactions)


def add_loading_options(p: argparse.ArgumentParser, *, events: bool = True) -> None:
    """``--encoding``, ``--unknown-items``, ``--empty-ids`` (the loaders' ``encoding``, ``unknown_items``,
    ``empty_ids``); ``events=False`` for a command that reads only the catalog (no ``--unknown-items``)."""
    g = p.add_argument_group("reading the data")
    g.add_argument("--encoding", default="utf-8", help="text encoding of the input files (default utf-8)")
    flags = [("--unknown-items", "events on items missing from the catalog")] if events else []
    for flag, rows in (
        *flags,
        ("--empty-ids", "rows with an empty user or item id"),
    ):
        g.add_argument(
            flag,
            choices=("error", "drop"),
            default="error",
            help=f"{rows}: stop with an error (default) or drop and count them",
        )


def load_from_args(args: argparse.Namespace, items: Any, interactions: Any) -> Any:
    """:func:`tokrec.data.loaders.load_dataset` with the command's loading options."""
    from tokrec.data.loaders import load_dataset

    return load_dataset(
        items,
        interactions,
        encoding=args.encoding,
        unknown_items=args.unknown_items,
        empty_ids=args.empty_ids,
    )
