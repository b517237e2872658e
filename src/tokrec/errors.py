"""Errors that tokrec raises on bad input. The CLI turns them into one clear line and exit code 2."""

from __future__ import annotations


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
            where.append(f"column '{column}'")
        prefix = ", ".join(where)
        super().__init__(f"{prefix}: {message}" if prefix else message)
