"""Helpers the public-format loaders (MIND, Last.fm, Amazon) share: reading delimited files whose
layout is fixed by the format (no header, or a known header) with the row of every record kept, and
JSON-ish lines (strict JSON or, for Amazon 2014 metadata, Python literals).

Rows are numbered as in :mod:`tokrec.data.loaders`: the 1-based line number in the file.
"""

from __future__ import annotations

import ast
import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tokrec.data.loaders import _decode_error, _raw_bytes
from tokrec.errors import ConfigError, DataError


def read_text(path: str | Path, encoding: str = "utf-8") -> str:
    """The decoded text of a file (decompressed by suffix); errors name the file, the row and the byte."""
    p = Path(path)
    if not p.is_file():
        raise DataError("file not found", file=str(p))
    data = _raw_bytes(p)
    if not data.strip():
        raise DataError("file is empty", file=str(p))
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as e:
        raise _decode_error(p, encoding, None, e) from e
    except LookupError as e:
        raise ConfigError(f"unknown encoding {encoding!r}") from e


def first_line(path: str | Path, limit: int = 65536) -> str:
    """The first non-blank line of a (possibly compressed) text file, '' when unreadable."""
    p = Path(path)
    try:
        suffix = p.suffix.lower()
        if suffix == ".gz":
            import gzip

            with gzip.open(p, "rb") as f:
                head = f.read(limit)
        elif suffix in (".parquet", ".pq", ".zip", ".bz2", ".xz"):
            return ""
        else:
            with open(p, "rb") as f:
                head = f.read(limit)
    except OSError:
        return ""
    for line in head.decode("utf-8", errors="replace").splitlines():
        if line.strip():
            return line
    return ""


def read_delimited(
    path: str | Path,
    names: Sequence[str],
    *,
    header: Sequence[str] | None = None,
    sep: str = "\t",
    encoding: str = "utf-8",
    text: str | None = None,
) -> tuple[pd.DataFrame, np.ndarray]:
    """Reads a file of ``sep``-separated fields in a fixed layout, every cell as text (no quoting).

    Args:
        path: the file (named in errors).
        names: the column names, as the format's documentation calls them.
        header: when the file starts with a header line, its expected fields (compared case-insensitively);
            None for a file without one.
        sep: the field separator.
        encoding: text encoding.
        text: the decoded text when the caller already has it.

    Returns:
        ``(frame, rows)``: one column per name (str; ``""`` where empty) and each record's 1-based line.

    Raises:
        DataError: a record with another number of fields than ``names`` (naming the row and the first
            missing or extra column), a different header, or a file without records.
    """
    file = str(path)
    if text is None:
        text = read_text(path, encoding)
    # field counts and line numbers from the bytes (vectorised), the parsing by pandas' C reader
    arr = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
    nl = np.flatnonzero(arr == 10)
    starts = np.concatenate([[0], nl + 1])
    ends = np.concatenate([nl, [len(arr)]])
    cr = (ends > starts) & (arr[np.maximum(ends - 1, 0)] == 13)
    ends = ends - cr
    nonblank = ends > starts
    seps = np.flatnonzero(arr == ord(sep))
    fields = np.diff(np.searchsorted(seps, np.stack([starts, ends], axis=1)), axis=1)[:, 0] + 1
    line_no = np.flatnonzero(nonblank) + 1
    fields = fields[nonblank]
    body = text
    if header is not None and len(line_no):
        first = int(line_no[0])
        parts = text.split("\n", first)
        got_line = parts[first - 1].rstrip("\r")
        got = [h.strip().lower() for h in got_line.split(sep)]
        if got != [h.lower() for h in header]:
            raise DataError(
                f"expected the header {sep.join(header)!r}, found {got_line!r}", file=file, row=first
            )
        body = parts[first] if len(parts) > first else ""
        line_no, fields = line_no[1:], fields[1:]
    if len(line_no) == 0:
        raise DataError("file has no records", file=file)
    n = len(names)
    bad = fields != n
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        col = names[int(fields[i])] if fields[i] < n else f"(field {n + 1})"
        raise DataError(
            f"expected {n} {'tab' if sep == chr(9) else repr(sep)}-separated fields "
            f"({', '.join(names)}), found {int(fields[i])}",
            file=file,
            row=int(line_no[i]),
            column=col,
        )
    df = pd.read_csv(
        io.StringIO(body),
        sep=sep,
        header=None,
        names=list(names),
        quoting=csv.QUOTE_NONE,
        dtype=str,
        keep_default_na=False,
        na_values=[],
        skip_blank_lines=True,
        engine="c",
    )
    if len(df) != len(line_no):  # a line pandas reads otherwise (e.g. only spaces): number by record
        line_no = np.arange(1, len(df) + 1, dtype=np.int64) + (0 if header is None else 1)
    return df, line_no.astype(np.int64)


def parse_record(line: str, *, literal: bool) -> Any:
    """One JSON object; with ``literal`` a Python-literal dict is accepted too (Amazon 2014 metadata)."""
    try:
        return json.loads(line)
    except json.JSONDecodeError:
        if not literal:
            raise
    return ast.literal_eval(line)  # never eval(): literals only


def read_records(
    path: str | Path, fields: Sequence[str], *, literal: bool = False, encoding: str = "utf-8"
) -> tuple[list[dict[str, Any]], np.ndarray]:
    """Reads one JSON object (or Python-literal dict) per line, keeping only ``fields``.

    Returns the records (dicts with the present fields) and each one's 1-based line.

    Raises:
        DataError: a line that is neither (naming the row), or a record that is not an object.
    """
    file = str(path)
    text = read_text(path, encoding)
    out: list[dict[str, Any]] = []
    rows: list[int] = []
    wanted = tuple(fields)
    for i, line in enumerate(text.split("\n"), start=1):
        s = line.strip()
        if not s:
            continue
        try:
            obj = parse_record(s, literal=literal)
        except (ValueError, SyntaxError, MemoryError, RecursionError) as e:
            what = "JSON or a Python-literal dict" if literal else "JSON"
            raise DataError(f"not valid {what}: {str(e).splitlines()[0][:120]}", file=file, row=i) from e
        if not isinstance(obj, dict):
            raise DataError("a record must be an object", file=file, row=i)
        out.append({k: obj[k] for k in wanted if k in obj})
        rows.append(i)
    if not out:
        raise DataError("file has no records", file=file)
    return out, np.asarray(rows, dtype=np.int64)
