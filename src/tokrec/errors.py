"""Errors that tokrec raises on bad input. The CLI turns them into one clear line and exit code 2."""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable

_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def printable(text: object, limit: int = 80) -> str:
    """``text`` safe to print on one terminal line: control bytes escaped (``\\x1b``), at most ``limit``
    characters (a longer value ends in ``...``). Messages echo input through it, never raw."""
    s = _UNPRINTABLE.sub(lambda m: f"\\x{ord(m.group()):02x}", str(text))
    return s if len(s) <= limit else s[: limit - 3] + "..."


class TokrecError(Exception):
    """Base class for every error tokrec raises on purpose."""


class ConfigError(TokrecError, ValueError):
    """A configuration (model config, template, CLI option) is invalid."""


class DataError(TokrecError, ValueError):
    """Input data is invalid. Names the file, the row (1-based, header = row 1) and the column when known."""

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        row: int | None = None,
        column: str | None = None,
    ) -> None:
        self.file = file
        self.row = row
        self.column = column
        self.reason = message
        where = []
        if file is not None:
            where.append(str(file))
        if row is not None:
            where.append(f"row {row}")
        if column is not None:
            where.append(f"column '{printable(column)}'")
        prefix = ", ".join(where)
        message = _UNPRINTABLE.sub(lambda m: f"\\x{ord(m.group()):02x}", message)
        super().__init__(f"{prefix}: {message}" if prefix else message)


def require_columns(
    present: Collection[object], needed: Iterable[str], message: str, *, file: str | None
) -> None:
    """Raises ``DataError(message)`` at the header (row 1), naming the first of ``needed`` not in ``present``."""
    for col in needed:
        if col not in present:
            raise DataError(message, file=file, row=1, column=col)


class UnknownIdError(DataError, KeyError):
    """An id that the model or vocabulary does not know (a user or item id passed to ``recommend`` /
    ``score``). Also a ``KeyError``, so that callers written against the older bare ``KeyError`` still
    catch it."""

    __str__ = DataError.__str__  # the message as given (KeyError would print it quoted)
