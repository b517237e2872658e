"""`tokrec` entry point: one module per sub-command under ``tokrec.cli``.

Each command module defines ``register(subparsers)`` which adds its parser and sets ``func``
(a callable taking the parsed ``argparse.Namespace`` and returning an exit code).
Errors that tokrec raises on bad input, and files the system refuses to read or write, become one line on stderr
and exit code 2 (``-v`` shows the traceback of the second kind).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from tokrec.errors import TokrecError

#: sub-command modules, in the order `tokrec --help` lists them
COMMANDS = (
    "demo",
    "tokens",
    "embed",
    "features",
    "recommend",
    "evaluate",
    "fit",
    "serve",
    "classify",
    "finetune",
    "distill",
    "tune",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tokrec",
        description="Language-model features for recommender systems.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:  # every listed command is part of the package: a failed import is a bug, not hidden
        importlib.import_module(f"tokrec.cli.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except TokrecError as e:
        print(f"tokrec {args.command}: error: {e}", file=sys.stderr)
        return 2
    except (
        OSError
    ) as e:  # a file or folder the system refused (full disk, permissions): one line, -v for more
        if args.verbose:
            raise
        where = f" {e.filename}" if e.filename else ""
        print(f"tokrec {args.command}: error:{where}: {e.strerror or e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
