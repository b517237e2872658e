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


def add_loading_options(p: argparse.ArgumentParser, *, events: bool = True, users: bool = False) -> None:
    """``--encoding``, ``--unknown-items``, ``--empty-ids`` (the loaders' ``encoding``, ``unknown_items``,
    ``empty_ids``); ``events=False`` for a command that reads only the catalog (no ``--unknown-items``);
    ``users=True`` for a command whose model reads a user table (``--user-attributes``)."""
    g = p.add_argument_group("reading the data")
    if users:
        g.add_argument(
            "--user-attributes",
            metavar="FILE",
            help=(
                "a user table: user_id plus attributes such as age, gender, country (CSV / Parquet / JSONL; "
                "MovieLens' u.user by name). A new user it lists (no events) is ranked by the events of the users "
                "with the closest attributes as well as by popularity; the tuner weighs the two"
            ),
        )
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
        users=getattr(args, "user_attributes", None),
        encoding=args.encoding,
        unknown_items=args.unknown_items,
        empty_ids=args.empty_ids,
    )


def read_id_column(path: str, column: str, encoding: str = "utf-8") -> list[str]:
    """The ids in ``column`` of a table (CSV, TSV, Parquet or JSON Lines by extension, as every input), stripped,
    first occurrence kept; errors name the file, and the row of an empty id.

    Raises:
        DataError: the file is missing or unreadable, lacks the column, has an empty id or no rows.
    """
    from tokrec.data.loaders import id_strings, read_table
    from tokrec.errors import DataError

    table, rows = read_table(path, encoding=encoding)
    if column not in table.columns:
        raise DataError(
            f"missing column (found: {', '.join(map(str, table.columns))})", file=path, column=column
        )
    ids = id_strings(table[column], file=path, rows=rows)
    empty = (ids.isna() | (ids.fillna("").str.strip() == "")).to_numpy()
    if empty.any():
        raise DataError("empty id", file=path, row=int(rows[empty.argmax()]), column=column)
    if not len(ids):
        raise DataError("no ids: the file has no rows", file=path, column=column)
    return list(dict.fromkeys(ids.str.strip().tolist()))


def read_candidates(args: argparse.Namespace, dataset: Any) -> tuple[list[str] | None, str | None]:
    """``--candidates`` (read as :func:`read_id_column`, with ``--encoding``) checked against ``dataset``'s
    catalog: ``(ids or None, a note counting the unknown ones or None)``.

    Raises:
        DataError: as :func:`read_id_column`, or none of the ids is in the catalog.
    """
    if not args.candidates:
        return None, None
    path = args.candidates
    candidates = read_id_column(path, "item_id", getattr(args, "encoding", "utf-8"))
    unknown = sum(c not in dataset.item_vocab for c in candidates)
    if unknown == len(candidates):
        from tokrec.errors import DataError

        raise DataError(
            f"none of the {len(candidates)} candidate ids is in the catalog", file=path, column="item_id"
        )
    return candidates, f"{unknown} candidate ids not in the catalog ignored" if unknown else None
