"""Generic loaders: item catalogs and interaction logs from CSV, Parquet or JSON Lines.

Every value is validated with vectorised pandas operations; only when something is wrong does a
slower pass find the first bad row, so that the :class:`~tokrec.errors.DataError` names the file,
the row and the column. Rows are numbered as a person sees them in the file: for CSV the 1-based
line number (the header is line 1, so the first record is row 2), for JSON Lines the 1-based line
number, for Parquet the 1-based record number (the first record is row 1). An error about a column
as a whole (a missing column) names row 1, the header, for CSV / TSV, and no row for Parquet and
JSON Lines, which have no header line.

Timestamps are epoch seconds (numbers; fractions are floored) or ISO-8601 dates / date-times
(``2020-01-01``, ``2020-01-01T10:00:00Z``, ``2020-01-01 10:00:00+05:00``; naive ones are UTC), within
datetime64[ns]'s range (1677-09-21 to 2262-04-11). Anything else (``May``, ``12/11/1997``, ``now``,
booleans, epoch milliseconds) is an error naming the row, never a guess.

Ids are always strings exactly as written in the file (``"007"`` stays ``"007"``, ``1`` is ``"1"``,
never ``"1.0"``). Empty cells in attribute columns become missing values (NaN).
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Literal, TypedDict

import numpy as np
import pandas as pd
from typing_extensions import Unpack

from tokrec.data.dataset import Dataset, LoadReport
from tokrec.errors import ConfigError, DataError, printable

Format = Literal["csv", "tsv", "parquet", "jsonl"]
PathLike = str | os.PathLike

#: canonical interaction column -> names accepted as keys of ``columns=`` (and, except "value",
#: recognised automatically in a file's header)
_CANONICAL = {
    "user_id": ("user_id", "user"),
    "item_id": ("item_id", "item"),
    "timestamp": ("timestamp", "time", "ts"),
    "event": ("event", "event_type"),
    "value": ("value", "rating"),
}
_EXTENSIONS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
}

__all__ = [
    "detect_format",
    "id_strings",
    "load_dataset",
    "load_interactions",
    "load_items",
    "interactions_from_frame",
    "items_from_frame",
    "load_users",
    "parse_timestamps",
    "read_table",
    "ReadOptions",
]


# ---------------------------------------------------------------------------------------------
# reading a table
# ---------------------------------------------------------------------------------------------
def detect_format(path: PathLike, format: str | None = None) -> str:
    """Returns ``"csv"``, ``"tsv"``, ``"parquet"`` or ``"jsonl"`` from ``format`` or the extension.

    A trailing ``.gz`` / ``.bz2`` / ``.xz`` / ``.zip`` compression suffix is looked through.
    """
    if format is not None:
        fmt = format.lower().lstrip(".")
        fmt = {"ndjson": "jsonl", "json": "jsonl", "pq": "parquet", "tab": "tsv"}.get(fmt, fmt)
        if fmt not in ("csv", "tsv", "parquet", "jsonl"):
            raise ConfigError(f"unknown format {format!r}; use csv, tsv, parquet or jsonl")
        return fmt
    p = Path(path)
    suffixes = [s.lower() for s in p.suffixes]
    if suffixes and suffixes[-1] in (".gz", ".bz2", ".xz", ".zip"):
        suffixes = suffixes[:-1]
    ext = suffixes[-1] if suffixes else ""
    if ext not in _EXTENSIONS:
        raise DataError(
            f"cannot tell the format from the extension {ext or '(none)'!r}; "
            "use .csv, .tsv, .parquet or .jsonl, or pass format=",
            file=str(path),
        )
    return _EXTENSIONS[ext]


class ReadOptions(TypedDict, total=False):
    """How a file is read: the ``**read`` options of every loader, with :func:`read_table`'s defaults.

    ``format``: ``csv``, ``tsv``, ``parquet`` or ``jsonl`` (default: from the extension); ``encoding``:
    text encoding of CSV / JSON Lines (default ``utf-8``); ``sep``: CSV field separator (default ``,``;
    ``\\t`` for tsv).
    """

    format: str | None
    encoding: str
    sep: str | None


def read_table(
    path: PathLike,
    *,
    format: str | None = None,
    encoding: str = "utf-8",
    sep: str | None = None,
) -> tuple[pd.DataFrame, np.ndarray]:
    """Reads a table with every cell as text (CSV) or as stored (Parquet, JSON Lines).

    Args:
        path: the file.
        format: ``csv``, ``tsv``, ``parquet`` or ``jsonl``; by default from the extension.
        encoding: text encoding for CSV / JSON Lines.
        sep: CSV field separator (default ``,``; ``\\t`` for tsv).

    Returns:
        ``(frame, rows)``: the frame (fresh RangeIndex) and, aligned with it, each record's row
        number as a person sees it in the file (int64, shape ``(n,)``).

    Raises:
        DataError: the file is missing, empty, undecodable or malformed (naming the row).
    """
    p = Path(path)
    fmt = detect_format(p, format)
    if not p.is_file():
        raise DataError("file not found", file=str(p))
    if p.stat().st_size == 0:
        raise DataError("file is empty (0 bytes)", file=str(p))
    if fmt == "parquet":
        try:
            df = pd.read_parquet(p)
        except Exception as e:  # pyarrow raises many types for corrupt files
            raise DataError(f"cannot read Parquet: {e}", file=str(p)) from e
        rows = np.arange(1, len(df) + 1, dtype=np.int64)
    elif fmt == "jsonl":
        df, rows = _read_jsonl(p, encoding)
    else:
        df, rows = _read_csv(p, encoding, sep if sep is not None else ("\t" if fmt == "tsv" else ","))
    if len(df) == 0:
        raise DataError(
            "file has no data rows" + (" (only a header)" if fmt in ("csv", "tsv") else ""), file=str(p)
        )
    return df.reset_index(drop=True), rows


def _read_csv(p: Path, encoding: str, sep: str) -> tuple[pd.DataFrame, np.ndarray]:
    try:
        df = pd.read_csv(
            p,
            sep=sep,
            dtype=str,
            keep_default_na=False,
            na_values=[""],
            encoding=encoding,
            skip_blank_lines=True,
        )
    except UnicodeDecodeError as e:
        raise _decode_error(p, encoding, sep, e) from e
    except pd.errors.EmptyDataError as e:
        raise DataError("file is empty (no header)", file=str(p)) from e
    except pd.errors.ParserError as e:
        reason, row = _parser_error_line(e, p, encoding, sep)
        raise DataError(f"malformed CSV: {reason}", file=str(p), row=row) from e
    except LookupError as e:
        raise ConfigError(f"unknown encoding {encoding!r}") from e
    df.columns = [str(c).strip() for c in df.columns]
    rows = _csv_record_lines(p, encoding, sep, len(df))
    return df, rows


def _parser_error_line(e: Exception, p: Path, encoding: str, sep: str) -> tuple[str, int | None]:
    """``(reason, line)`` of a pandas ``ParserError``: its message without pandas' own position, and the
    1-based line on which the bad record starts.

    Pandas counts records, not lines (``in line N`` is the N-th record, 1-based; ``starting at row N``
    the N-th, 0-based, header included, a blank line counting as one); a ``csv`` scan maps that record
    to the line it starts on, which differs once a quoted field spans lines.
    """
    text = re.sub(r"^Error tokenizing data\. C error: ", "", str(e)).strip()
    if m := re.search(r"EOF inside string starting at row (\d+)", text):
        record, reason = int(m.group(1)), "a quote opened on this row is never closed"
    elif m := re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", text):
        record = int(m.group(2)) - 1
        reason = f"expected {m.group(1)} fields (as in the header), saw {m.group(3)}"
    else:
        return text.splitlines()[0] if text else "cannot parse", None
    return reason, _record_start_line(p, encoding, sep, record)


def _record_start_line(p: Path, encoding: str, sep: str, record: int) -> int | None:
    """The 1-based line on which the 0-based ``record`` (header = 0, a blank line = one record) starts."""
    if len(sep) != 1:
        return None
    try:
        text = _raw_bytes(p).decode(encoding)
    except (UnicodeDecodeError, LookupError, DataError):
        return None
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=sep)
    line = 1
    try:
        for i, _ in enumerate(reader):
            if i == record:
                return line
            line = reader.line_num + 1
    except csv.Error:
        return None
    return line if record == i + 1 else None  # a record the reader never yields (an unclosed quote at EOF)


def _raw_bytes(p: Path) -> bytes:
    """The file's bytes, decompressed by suffix (.gz, .bz2, .xz, .zip with one member)."""
    suffix = p.suffix.lower()
    if suffix == ".gz":
        import gzip

        return gzip.decompress(p.read_bytes())
    if suffix == ".bz2":
        import bz2

        return bz2.decompress(p.read_bytes())
    if suffix == ".xz":
        import lzma

        return lzma.decompress(p.read_bytes())
    if suffix == ".zip":
        import zipfile

        with zipfile.ZipFile(p) as z:
            names = z.namelist()
            if len(names) != 1:
                raise DataError(f"a zipped table must hold exactly one file, not {len(names)}", file=str(p))
            return z.read(names[0])
    return p.read_bytes()


def _csv_record_lines(p: Path, encoding: str, sep: str, n: int) -> np.ndarray:
    """1-based line number at which each data record starts.

    The fast path assumes one record per line (no quoted newlines, no blank lines); this is
    checked by counting newlines, and the exact numbering comes from a ``csv`` scan otherwise.
    """
    data = _raw_bytes(p)
    n_lines = data.count(b"\n") + (0 if data.endswith(b"\n") else 1)
    if n_lines == n + 1:
        return np.arange(2, n + 2, dtype=np.int64)
    starts: list[int] = []
    reader = csv.reader(io.StringIO(data.decode(encoding), newline=""), delimiter=sep)
    line = 1
    for i, rec in enumerate(reader):
        if i > 0 and rec:
            starts.append(line)
        line = reader.line_num + 1
    if len(starts) != n:  # a dialect corner csv and pandas disagree on: fall back to record order
        return np.arange(2, n + 2, dtype=np.int64)
    return np.asarray(starts, dtype=np.int64)


def _decode_error(p: Path, encoding: str, sep: str | None, e: UnicodeDecodeError) -> DataError:
    """Names the line (and, for CSV, the column) holding the first undecodable byte; a file with NUL bytes
    in its first 8 KiB is named as binary (its bytes are never echoed)."""
    data = _raw_bytes(p)
    if b"\x00" in data[:8192]:
        return DataError(
            "not a text file (binary content); give a CSV, TSV, Parquet or JSON Lines file", file=str(p)
        )
    try:
        data.decode(encoding)
        start = e.start
    except UnicodeDecodeError as full:
        start = full.start
    line_no = data.count(b"\n", 0, start) + 1
    column = None
    if sep is not None:
        line_start = data.rfind(b"\n", 0, start) + 1
        header = data.split(b"\n", 1)[0].decode(encoding, errors="replace").rstrip("\r").split(sep)
        field_idx = data.count(sep.encode(), line_start, start)
        if field_idx < len(header):
            column = header[field_idx].strip()
    return DataError(
        f"cannot decode byte 0x{data[start]:02x} as {encoding}; give the file's encoding "
        "(command line: --encoding latin-1; Python: encoding='latin-1')",
        file=str(p),
        row=line_no,
        column=column,
    )


def _read_jsonl(p: Path, encoding: str) -> tuple[pd.DataFrame, np.ndarray]:
    try:
        text = _raw_bytes(p).decode(encoding)
    except UnicodeDecodeError as e:
        raise _decode_error(p, encoding, None, e) from e
    except LookupError as e:
        raise ConfigError(f"unknown encoding {encoding!r}") from e
    lines = text.split("\n")  # JSON Lines separates records by \n only (a JSON string may hold U+2028)
    starts = [ln.lstrip()[:1] for ln in lines]
    nonblank = np.asarray([i + 1 for i, c in enumerate(starts) if c], dtype=np.int64)
    if len(nonblank) == 0:
        raise DataError("file has no records", file=str(p))
    # a line not starting with "{" is no object: pandas would read an array as a row (or fail with a
    # TypeError), so the first bad line (of either kind) is named before pandas sees the file
    if any(starts[ln - 1] != "{" for ln in nonblank):
        for ln in nonblank:
            _check_jsonl_line(p, lines, int(ln))
    try:
        df = pd.read_json(io.StringIO(text), lines=True, dtype=False)
    except (ValueError, TypeError) as e:
        for ln in nonblank:
            _check_jsonl_line(p, lines, int(ln))
        raise DataError(f"cannot read JSON Lines: {printable(e, 200)}", file=str(p)) from e
    return df, nonblank


def _check_jsonl_line(p: Path, lines: list[str], line: int) -> None:
    """Raises a DataError naming ``line`` (1-based) unless it holds one JSON object."""
    try:
        obj = json.loads(lines[line - 1])
    except json.JSONDecodeError as je:
        raise DataError(f"invalid JSON: {je.msg}", file=str(p), row=line) from None
    if not isinstance(obj, dict):
        kind = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
            type(obj), "a number"
        )
        raise DataError(f"a JSON Lines record must be an object, not {kind}", file=str(p), row=line)


# ---------------------------------------------------------------------------------------------
# column helpers
# ---------------------------------------------------------------------------------------------
#: values that are never ids, with the name a message gives them (a Parquet list arrives as an ndarray)
_NOT_IDS: tuple[tuple[type, str], ...] = (
    (bool, "boolean"),
    (np.bool_, "boolean"),
    (bytes, "bytes"),
    (bytearray, "bytes"),
    (list, "list"),
    (tuple, "list"),
    (np.ndarray, "list"),
    (dict, "dict/struct"),
    (set, "set"),
)
_NOT_ID_TYPES = tuple(t for t, _ in _NOT_IDS)


def id_strings(s: pd.Series, *, file: str | None = None, rows: np.ndarray | None = None) -> pd.Series:
    """Ids as strings; integral floats (from Parquet/JSON with gaps) lose their ``.0``.

    Args:
        s: the id column (its name is the column an error names).
        file: the file an error names.
        rows: each value's row number in the file, for the row an error names.

    Raises:
        DataError: a boolean, bytes, list or dict/struct value (which would become a made-up id such
            as ``"[1]"`` or ``"b'7'"``), naming the column, its dtype and the first such row.
    """
    if pd.api.types.is_bool_dtype(s):
        _not_an_id(s, 0, "boolean", file, rows)
    if pd.api.types.is_integer_dtype(s):
        return s.astype("Int64").astype(str).where(s.notna())
    if pd.api.types.is_float_dtype(s):
        vals = s.to_numpy(dtype=np.float64, na_value=np.nan)
        integral = np.isnan(vals) | (vals == np.round(vals))
        if integral.all():
            return s.astype("Int64").astype(str).where(s.notna())
        return s.astype(str).where(s.notna())
    if pd.api.types.is_string_dtype(s) and s.dtype != object:
        return s  # already text (CSV cells): no per-row work
    out = s.map(_one_id, na_action="ignore")  # mixed Python objects (JSON, Parquet lists): per value
    bad = (out.isna() & s.notna()).to_numpy()  # pd.isna of a list value is False: only None/NaN skip
    if bad.any():
        i = first_error(bad)
        kind = next(name for t, name in _NOT_IDS if isinstance(s.iloc[i], t))
        _not_an_id(s, i, kind, file, rows)
    return out


def _not_an_id(s: pd.Series, i: int, kind: str, file: str | None, rows: np.ndarray | None) -> None:
    raise DataError(
        f"an id must be text or an integer, not a {kind} value such as {printable(repr(_shown(s.iloc[i])), 40)} "
        f"(column dtype {s.dtype})",
        file=file,
        row=int(rows[i]) if rows is not None else None,
        column=str(s.name),
    )


def _one_id(v: object) -> str | None:
    """``v`` as an id; None for a value that is never an id (see ``_NOT_IDS``)."""
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    if isinstance(v, _NOT_ID_TYPES):
        return None
    return str(v)


def _shown(v: object) -> object:
    """``v`` for a message: numpy scalars as plain Python (``True``, not ``np.True_``)."""
    return v.item() if isinstance(v, np.generic) else v


def _missing(s: pd.Series) -> np.ndarray:
    """Cells that are NaN/None or only whitespace."""
    miss = s.isna().to_numpy()
    if s.dtype == object or pd.api.types.is_string_dtype(s):
        blank = s.astype(str).str.strip().eq("").to_numpy()
        miss = miss | blank
    return miss


def first_error(mask: np.ndarray) -> int:
    """The position of the first ``True`` of ``mask`` (the row a ``DataError`` names)."""
    return int(np.flatnonzero(mask)[0])


def check_unique(
    ids: pd.Series,
    rows: np.ndarray,
    what: str,
    *,
    file: str | None,
    column: str,
    keep: np.ndarray | None = None,
) -> None:
    """Raises ``DataError("duplicate {what} {id!r} (first at row R; N duplicate rows in all)")`` at the
    first id seen before, among the rows ``keep`` marks (default: all)."""
    keep = np.ones(len(ids), dtype=bool) if keep is None else keep
    dup = ids.duplicated(keep="first").to_numpy() & keep
    if dup.any():
        i = first_error(dup)
        first = int(rows[first_error((ids == ids.iloc[i]).to_numpy() & keep)])
        at = f"(first at row {first}; {int(dup.sum())} duplicate rows in all)"
        raise DataError(f"duplicate {what} {ids.iloc[i]!r} {at}", file=file, row=int(rows[i]), column=column)


def _frame_start(
    df: pd.DataFrame, rows: np.ndarray | None, report: LoadReport | None
) -> tuple[pd.DataFrame, np.ndarray, LoadReport]:
    """An in-memory table's validation start: a 0..n-1 index, each record's row number for messages
    (default ``index + 2``, as in a CSV with a header), and the report to fill (a new one if None)."""
    df = df.reset_index(drop=True)
    rows = np.arange(2, len(df) + 2, dtype=np.int64) if rows is None else np.asarray(rows)
    return df, rows, report if report is not None else LoadReport()


def _require_columns(
    df: pd.DataFrame, required: Mapping[str, str], file: str | None, header_row: int | None = 1
) -> None:
    for canonical, source in required.items():
        if source not in df.columns:
            hint = f" (mapped to {canonical!r})" if source != canonical else ""
            raise DataError(
                f"missing required column{hint}; found columns: {', '.join(map(str, df.columns))}",
                file=file,
                row=header_row,
                column=source,
            )


def _header_row(path: PathLike, format: str | None) -> int | None:
    """The row an error about a whole column names: 1 (the header) for CSV / TSV, None for Parquet and
    JSON Lines (no header line; their row 1 is the first record)."""
    return 1 if detect_format(path, format) in ("csv", "tsv") else None


def _check_ids(
    ids: pd.Series,
    rows: np.ndarray,
    column: str,
    file: str | None,
    *,
    empty: str,
    report: LoadReport,
    what: str,
) -> np.ndarray:
    """Validates an id column; returns the mask of rows to keep."""
    if empty not in ("error", "drop"):
        raise ConfigError(f"empty_ids must be 'error' or 'drop', not {empty!r}")
    miss = _missing(ids)
    if miss.any():
        if empty == "drop":
            report.count(f"{what} rows with empty {column}", int(miss.sum()))
            return ~miss
        i = first_error(miss)
        raise DataError(
            f"missing id ({int(miss.sum())} rows have none); to drop them: --empty-ids drop (Python: empty_ids='drop')",
            file=file,
            row=int(rows[i]),
            column=column,
        )
    return np.ones(len(ids), dtype=bool)


def _to_float(s: pd.Series) -> np.ndarray:
    """Numbers as float64 (shape ``(n,)``); NaN where a cell is missing or not a number."""
    if pd.api.types.is_bool_dtype(s):
        return np.full(len(s), np.nan)
    if pd.api.types.is_numeric_dtype(s):
        return s.to_numpy(dtype=np.float64, na_value=np.nan)
    try:  # fast: a C-level cast of the whole column (3x faster than to_numeric on text)
        return s.astype(np.float64).to_numpy(dtype=np.float64, na_value=np.nan)
    except (ValueError, TypeError):  # some cell is not a number: coerce those to NaN
        text = s.astype(str).str.strip()
        return pd.to_numeric(text, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


#: the epoch seconds a timestamp may hold: datetime64[ns]'s range, 1677-09-21 .. 2262-04-11 (UTC);
#: epoch milliseconds of any date after 1970-04-17 lie outside it
_EPOCH_S_MIN, _EPOCH_S_MAX = -9_223_372_036, 9_223_372_036
#: the ISO-8601 shapes accepted: a date (``2020-01-01``, ``2020-01``), a date-time with ``T`` or a space,
#: optional seconds / fraction and a ``Z`` or ``+hh:mm`` offset (pandas ``format="ISO8601"`` alone would
#: also take ``now`` and ``today``)
_ISO_8601 = (
    r"\d{4}-\d{1,2}(?:-\d{1,2}(?:[T ]\d{1,2}(?::\d{2}(?::\d{2}(?:\.\d+)?)?)?(?:Z|[+-]\d{2}(?::?\d{2})?)?)?)?"
)
_TIMESTAMP_FORMS = "expected epoch seconds or an ISO-8601 date/time such as 2020-01-31T10:00:00Z"


def parse_timestamps(s: pd.Series, rows: np.ndarray, *, file: str | None, column: str) -> np.ndarray:
    """Epoch seconds (int64) from epoch seconds (numbers) or ISO-8601 dates / date-times.

    Naive date-times are taken as UTC; an offset (``Z``, ``+05:00``) is honoured. Fractional epoch
    seconds are floored. Every value must lie in 1677-09-21 .. 2262-04-11 (datetime64[ns]'s range).

    Raises:
        DataError: naming the first row whose timestamp is missing, a boolean, out of range (epoch
            milliseconds among them) or in any other form (``May``, ``12/11/1997``, ``now``).
    """
    n = len(s)
    out = np.zeros(n, dtype=np.int64)
    is_bool = np.zeros(n, dtype=bool)
    if pd.api.types.is_datetime64_any_dtype(s):
        dt = pd.to_datetime(s, utc=True)
        ok = dt.notna().to_numpy()
        out[ok] = _epoch_seconds(dt[ok])
        in_range = ~ok | ((out >= _EPOCH_S_MIN) & (out <= _EPOCH_S_MAX))
    else:
        if pd.api.types.is_bool_dtype(s):
            is_bool[:] = True
        elif s.dtype == object:  # JSON true/false among numbers
            is_bool = s.map(lambda v: isinstance(v, (bool, np.bool_)), na_action="ignore").eq(True).to_numpy()
        num = np.where(is_bool, np.nan, _to_float(s))
        numeric = np.isfinite(num)
        num = np.floor(np.where(numeric, num, 0.0))
        in_range = ~numeric | ((num >= _EPOCH_S_MIN) & (num <= _EPOCH_S_MAX))
        out[numeric & in_range] = num[numeric & in_range].astype(np.int64)
        ok = numeric.copy()
        todo = ~numeric & ~is_bool
        if todo.any():
            text = s[todo].astype(str).str.strip()
            iso = text.str.fullmatch(_ISO_8601).fillna(False).to_numpy(dtype=bool)
            dt = pd.to_datetime(text if iso.all() else text[iso], errors="coerce", utc=True, format="ISO8601")
            parsed = np.zeros(len(text), dtype=bool)
            parsed[iso] = dt.notna().to_numpy()
            if parsed.all():  # the common case: every text cell a date-time
                secs = _epoch_seconds(dt)
            else:
                secs = np.zeros(len(text), dtype=np.int64)
                secs[parsed] = _epoch_seconds(dt[dt.notna()])
            idx = np.flatnonzero(todo)
            ok[idx] = parsed
            out[idx] = secs
            in_range[idx] = ~parsed | ((secs >= _EPOCH_S_MIN) & (secs <= _EPOCH_S_MAX))
    bad = ~ok | ~in_range
    if bad.any():
        i = first_error(bad)
        raw = _shown(s.iloc[i])
        shown = printable(repr(raw), 60)
        if is_bool[i]:
            why = f"a boolean is not a timestamp: {shown} ({_TIMESTAMP_FORMS})"
        elif not ok[i]:
            missing = pd.api.types.is_datetime64_any_dtype(s) or _missing(s.iloc[[i]])[0]
            why = "missing timestamp" if missing else f"cannot parse timestamp {shown}"
            why += f" ({_TIMESTAMP_FORMS})"
        else:
            why = f"timestamp {shown} is out of range: epoch seconds must lie in 1677-09-21 .. 2262-04-11"
            if isinstance(raw, (int, float, str)) and _looks_like_ms(raw):
                why += "; this looks like epoch milliseconds: give seconds (divide by 1000)"
        raise DataError(why, file=file, row=int(rows[i]), column=column)
    return out


def _looks_like_ms(raw: int | float | str) -> bool:
    try:
        v = float(raw)
    except ValueError:
        return False
    return bool(np.isfinite(v)) and _EPOCH_S_MIN <= v / 1000 <= _EPOCH_S_MAX


def _epoch_seconds(dt: pd.Series) -> np.ndarray:
    epoch = pd.Timestamp("1970-01-01", tz="UTC")
    return ((dt - epoch) // pd.Timedelta(seconds=1)).to_numpy(dtype=np.int64)


def _parse_values(
    s: pd.Series, rows: np.ndarray, *, file: str | None, column: str, events: pd.Series | None
) -> np.ndarray:
    """Float ratings/values. Empty cells are allowed only on rows whose event is not "rating"."""
    num = _to_float(s)
    if s.dtype == object:  # JSON true/false among numbers: not a rating of 1 / 0
        is_bool = s.map(lambda v: isinstance(v, (bool, np.bool_)), na_action="ignore").eq(True).to_numpy()
        num = np.where(is_bool, np.nan, num)
    miss = _missing(s)
    bad = np.isnan(num) & ~miss
    if bad.any():
        i = first_error(bad)
        raw = _shown(s.iloc[i])
        why = f"a boolean is not a number: {raw!r}" if isinstance(raw, bool) else f"not a number: {raw!r}"
        raise DataError(why, file=file, row=int(rows[i]), column=column)
    if miss.any():
        allowed = np.zeros(len(s), dtype=bool) if events is None else (events.to_numpy() != "rating")
        need = miss & ~allowed
        if need.any():
            i = first_error(need)
            raise DataError("missing rating/value", file=file, row=int(rows[i]), column=column)
        num = np.where(miss, 1.0, num)
    if not np.isfinite(num).all():
        i = first_error(~np.isfinite(num))
        raise DataError(
            f"not a finite number: {_shown(s.iloc[i])!r}", file=file, row=int(rows[i]), column=column
        )
    return num


# ---------------------------------------------------------------------------------------------
# public loaders
# ---------------------------------------------------------------------------------------------
def load_items(
    path: PathLike,
    *,
    id_column: str = "item_id",
    empty_ids: Literal["error", "drop"] = "error",
    report: LoadReport | None = None,
    **read: Unpack[ReadOptions],
) -> pd.DataFrame:
    """Loads an item catalog: an id column plus any attribute columns.

    Args:
        path: CSV / TSV / Parquet / JSON Lines file.
        id_column: the file's id column; it is renamed to ``item_id``.
        empty_ids: ``"error"`` (default) or ``"drop"`` rows without an id (counted in ``report``).
        report: a :class:`LoadReport` to record rows read and filtered.
        **read: ``format`` (overrides the extension), ``encoding``, ``sep`` (:class:`ReadOptions`).

    Returns:
        Frame with ``item_id`` (str) first, then the attribute columns in file order; one row per
        item in file order. Empty attribute cells are NaN.

    Raises:
        DataError: missing id column, missing or duplicate ids, unreadable file.

    A catalog in a public format (MIND ``news.tsv``, Last.fm ``artists.dat``, Amazon metadata; see
    :mod:`tokrec.data.domains`) is recognised by its first line and read by that format's loader.
    """
    if read.get("format") is None and id_column == "item_id":
        from tokrec.data.domains import load_domain_items

        domain_items = load_domain_items(path)
        if domain_items is not None:
            return domain_items
    df, rows = read_table(path, **read)
    return items_from_frame(
        df,
        rows,
        file=str(path),
        id_column=id_column,
        empty_ids=empty_ids,
        report=report,
        header_row=_header_row(path, read.get("format")),
    )


def items_from_frame(
    df: pd.DataFrame,
    rows: np.ndarray | None = None,
    *,
    file: str | None = None,
    id_column: str = "item_id",
    empty_ids: Literal["error", "drop"] = "error",
    report: LoadReport | None = None,
    header_row: int | None = 1,
) -> pd.DataFrame:
    """Validates an in-memory item table exactly as :func:`load_items` validates a file.

    Args:
        df: the raw table.
        rows: each record's row number for error messages (default: ``index + 2``, as in a CSV).
        file: the name used in error messages.
        id_column: see :func:`load_items`.
        empty_ids: see :func:`load_items`.
        report: see :func:`load_items`.
        header_row: the row an error about a whole column (a missing column) names: 1, the header of
            a CSV, or None for a table without a header line (Parquet, JSON Lines).
    """
    return _id_table(
        df,
        rows,
        "item",
        file=file,
        id_column=id_column,
        empty_ids=empty_ids,
        report=report,
        header_row=header_row,
    )


def _id_table(
    df: pd.DataFrame,
    rows: np.ndarray | None,
    what: Literal["item", "user"],
    *,
    file: str | None,
    id_column: str,
    empty_ids: Literal["error", "drop"],
    report: LoadReport | None,
    header_row: int | None = 1,
) -> pd.DataFrame:
    """An item or user table, validated: ``{what}_id`` (from ``id_column``: present, not empty unless
    dropped, unique) first, then the other columns in file order; rows read counted under ``{what}s``."""
    df, rows, report = _frame_start(df, rows, report)
    key = f"{what}_id"
    _require_columns(df, {key: id_column}, file, header_row)
    if id_column != key and key in df.columns:
        raise DataError(f"both the id column and another {key!r} column exist", file=file, column=key)
    ids = id_strings(df[id_column], file=file, rows=rows)
    keep = _check_ids(ids, rows, id_column, file, empty=empty_ids, report=report, what=what)
    ids = ids.str.strip()
    check_unique(ids, rows, f"{what} id", file=file, column=id_column, keep=keep)
    out = df.drop(columns=[id_column])
    out.insert(0, key, ids)
    out = out[keep].reset_index(drop=True)
    report.rows_read[f"{what}s"] = report.rows_read.get(f"{what}s", 0) + len(df)
    return out


def load_users(
    path: PathLike,
    *,
    id_column: str = "user_id",
    report: LoadReport | None = None,
    **read: Unpack[ReadOptions],
) -> pd.DataFrame:
    """Loads a user table (``user_id`` plus attributes); same rules as :func:`load_items` (an empty id is
    an error). A file named ``u.user`` is read as MovieLens 100K's (pipe-separated, no header:
    ``user_id, age, gender, occupation, zip_code``)."""
    header: int | None = None
    if Path(path).name == "u.user":
        from tokrec.data.movielens import read_ml100k_users  # it reads the other files through this module

        df, rows = read_ml100k_users(path)
    else:
        df, rows = read_table(path, **read)
        header = _header_row(path, read.get("format"))
    return _id_table(
        df,
        rows,
        "user",
        file=str(path),
        id_column=id_column,
        empty_ids="error",
        report=report,
        header_row=header,
    )


def _resolve_columns(
    columns: Mapping[str, str] | None, header: list[str], file: str | None, header_row: int | None = 1
) -> dict[str, str]:
    """canonical name -> source column, from ``columns=`` and the header's standard names."""
    mapping: dict[str, str] = {}
    for key, source in (columns or {}).items():
        canon = next((c for c, names in _CANONICAL.items() if key in names), None)
        if canon is None:
            raise ConfigError(
                f"unknown key {key!r} in columns=; use user_id, item_id, timestamp, event, value (or rating)"
            )
        if canon in mapping:
            raise ConfigError(f"columns= maps {canon!r} twice")
        mapping[canon] = str(source)
    for canon in ("user_id", "item_id", "timestamp", "event"):
        if canon not in mapping and canon in header:
            mapping[canon] = canon
    if "value" not in mapping:
        for name in ("value", "rating"):
            if name in header:
                mapping["value"] = name
                break
    for canon, source in mapping.items():
        if canon not in ("user_id", "item_id") and source not in header:
            raise DataError(
                f"column named in columns= ({canon!r} -> {source!r}) is not in the file; "
                f"found columns: {', '.join(header)}",
                file=file,
                row=header_row,
                column=source,
            )
    return mapping


def load_interactions(
    path: PathLike,
    *,
    columns: Mapping[str, str] | None = None,
    empty_ids: Literal["error", "drop"] = "error",
    duplicates: Literal["keep", "drop"] = "keep",
    report: LoadReport | None = None,
    **read: Unpack[ReadOptions],
) -> pd.DataFrame:
    """Loads an interaction log.

    The file needs a user and an item column; ``timestamp``, ``event`` and ``rating`` / ``value``
    are optional. ``columns`` maps canonical names to the file's names, e.g.
    ``{"user": "uid", "item": "movie", "timestamp": "ts", "event": "action", "value": "stars"}``
    (keys: ``user``/``user_id``, ``item``/``item_id``, ``timestamp``/``time``, ``event``,
    ``value``/``rating``). Other columns are kept, after the standard ones.

    Args:
        path: CSV / TSV / Parquet / JSON Lines file.
        columns: canonical name -> column in the file.
        empty_ids: ``"error"`` or ``"drop"`` rows with an empty user/item id (counted).
        duplicates: ``"keep"`` or ``"drop"`` exact duplicate rows after parsing (counted).
        report: a :class:`LoadReport` to record rows read and filtered.
        **read: ``format`` (overrides the extension), ``encoding``, ``sep`` (:class:`ReadOptions`).

    Returns:
        Frame with ``user_id`` (str), ``item_id`` (str), ``timestamp`` (int64 epoch seconds; the
        row order where the file has none), ``event`` (str: the file's, else ``"rating"`` where a
        value column exists, else ``"interaction"``), ``value`` (float64; 1.0 where none), then
        the file's other columns; row ``i`` of the file's records is row ``i`` here (minus drops).
        ``frame.attrs["rows"]`` holds each row's line number in the file (int64 array).

    Raises:
        DataError: missing columns or ids, unparsable timestamps, non-numeric ratings, bad file.
        ConfigError: an unknown key in ``columns``.
    """
    df, rows = read_table(path, **read)
    return interactions_from_frame(
        df,
        rows,
        file=str(path),
        columns=columns,
        empty_ids=empty_ids,
        duplicates=duplicates,
        report=report,
        header_row=_header_row(path, read.get("format")),
    )


def interactions_from_frame(
    df: pd.DataFrame,
    rows: np.ndarray | None = None,
    *,
    file: str | None = None,
    columns: Mapping[str, str] | None = None,
    empty_ids: Literal["error", "drop"] = "error",
    duplicates: Literal["keep", "drop"] = "keep",
    report: LoadReport | None = None,
    header_row: int | None = 1,
) -> pd.DataFrame:
    """Validates an in-memory interaction table exactly as :func:`load_interactions` validates a file.

    Args:
        df, rows, file: the raw table, its records' row numbers and its name, as in :func:`items_from_frame`.
        columns: see :func:`load_interactions`.
        empty_ids: see :func:`load_interactions`.
        duplicates: see :func:`load_interactions`.
        report: see :func:`load_interactions`.
        header_row: see :func:`items_from_frame`.
    """
    df, rows, report = _frame_start(df, rows, report)
    header = [str(c) for c in df.columns]
    m = _resolve_columns(columns, header, file, header_row)
    _require_columns(
        df,
        {"user_id": m.get("user_id", "user_id"), "item_id": m.get("item_id", "item_id")},
        file,
        header_row,
    )
    m.setdefault("user_id", "user_id")
    m.setdefault("item_id", "item_id")
    n_read = len(df)
    keep = np.ones(n_read, dtype=bool)
    ids = {}
    for canon in ("user_id", "item_id"):
        ids[canon] = id_strings(df[m[canon]], file=file, rows=rows)
        keep &= _check_ids(
            ids[canon], rows, m[canon], file, empty=empty_ids, report=report, what="interaction"
        )
    if not keep.all():
        df, rows = df[keep].reset_index(drop=True), rows[keep]
        ids = {k: v[keep].reset_index(drop=True) for k, v in ids.items()}
    out = _standard_columns(df, rows, m, ids, file)
    if duplicates == "drop":
        dup = out.duplicated().to_numpy()
        report.count("duplicate interaction rows", int(dup.sum()))
        out = out[~dup].reset_index(drop=True)
        rows = rows[~dup]
    elif duplicates != "keep":
        raise ConfigError(f"duplicates must be 'keep' or 'drop', not {duplicates!r}")
    out.attrs["rows"] = rows
    out.attrs["file"] = file
    report.rows_read["interactions"] = report.rows_read.get("interactions", 0) + n_read
    return out


def _standard_columns(
    df: pd.DataFrame, rows: np.ndarray, m: Mapping[str, str], ids: Mapping[str, pd.Series], file: str | None
) -> pd.DataFrame:
    """Builds user_id, item_id, timestamp, event, value (+ the file's other columns) from ``df``."""
    out = pd.DataFrame({"user_id": ids["user_id"].str.strip(), "item_id": ids["item_id"].str.strip()})
    if "timestamp" in m:
        out["timestamp"] = parse_timestamps(df[m["timestamp"]], rows, file=file, column=m["timestamp"])
    else:
        out["timestamp"] = np.arange(len(df), dtype=np.int64)
    events = None
    if "event" in m:
        ev = df[m["event"]]
        miss = _missing(ev)
        if miss.any():
            i = first_error(miss)
            raise DataError("missing event", file=file, row=int(rows[i]), column=m["event"])
        events = ev.astype(str).str.strip()
    if "value" in m:
        values = _parse_values(df[m["value"]], rows, file=file, column=m["value"], events=events)
    else:
        values = np.ones(len(df), dtype=np.float64)
    if events is None:
        events = pd.Series("rating" if "value" in m else "interaction", index=out.index, dtype=str)
    out["event"] = events
    out["value"] = values.astype(np.float64)
    out["timestamp"] = out["timestamp"].astype(np.int64)
    used = set(m.values())
    for c in df.columns:
        if c not in used and c not in out.columns:
            out[c] = df[c]
    return out


def check_known_items(
    interactions: pd.DataFrame,
    items: pd.DataFrame,
    *,
    unknown_items: Literal["error", "drop"] = "error",
    report: LoadReport | None = None,
    file: str | None = None,
) -> pd.DataFrame:
    """Handles interactions whose item is not in the catalog: raise (naming the row) or drop + count."""
    unknown = pd.Index(items["item_id"]).get_indexer(interactions["item_id"]) < 0  # ids are unique
    if not unknown.any():
        return interactions
    rows = interactions.attrs.get("rows")
    file = file or interactions.attrs.get("file")
    n = int(unknown.sum())
    if unknown_items == "drop":
        if report is not None:
            report.count("interactions with unknown items", n)
        out = interactions[~unknown].reset_index(drop=True)
        out.attrs.update(interactions.attrs)
        if rows is not None:
            out.attrs["rows"] = np.asarray(rows)[~unknown]
        return out
    if unknown_items != "error":
        raise ConfigError(f"unknown_items must be 'error' or 'drop', not {unknown_items!r}")
    i = first_error(unknown)
    row = int(rows[i]) if rows is not None else i + 2
    raise DataError(
        f"item {interactions['item_id'].iloc[i]!r} is not in the item catalog ({n} interactions reference "
        "unknown items); to drop and count them: --unknown-items drop (Python: unknown_items='drop')",
        file=file,
        row=row,
        column="item_id",
    )


def load_dataset(
    items: PathLike,
    interactions: PathLike,
    users: PathLike | None = None,
    name: str | None = None,
    *,
    columns: Mapping[str, str] | None = None,
    item_id_column: str = "item_id",
    user_id_column: str = "user_id",
    unknown_items: Literal["error", "drop"] = "error",
    empty_ids: Literal["error", "drop"] = "error",
    duplicates: Literal["keep", "drop"] = "keep",
    encoding: str = "utf-8",
    format: str | None = None,
) -> Dataset:
    """Loads an item catalog and an interaction log (and optionally users) into a :class:`Dataset`.

    Args:
        items: item catalog file (see :func:`load_items`).
        interactions: interaction log file (see :func:`load_interactions`).
        users: optional user table file.
        name: dataset label (default: the interactions file's stem).
        columns: interaction column mapping (see :func:`load_interactions`).
        item_id_column: the catalog's id column.
        user_id_column: the user table's id column.
        unknown_items: interactions with items not in the catalog: ``"error"`` or ``"drop"`` (counted).
        empty_ids: rows with empty ids: ``"error"`` or ``"drop"`` (counted).
        duplicates: exact duplicate interaction rows: ``"keep"`` or ``"drop"`` (counted).
        encoding: text encoding of every file.
        format: force one format for every file (default: by extension).

    Returns:
        The dataset; ``dataset.report`` says what was read and filtered (``report.summary()``).

    A pair in a public format (MIND, HetRec Last.fm, Amazon reviews 2014/2018, a listening log given as
    both files) is recognised from the files' first lines (:func:`tokrec.data.domains.detect`) and read
    by that format's loader; ``format=`` may also name it (``"mind"``, ``"lastfm"``, ``"amazon"``,
    ``"listening"``).
    """
    from tokrec.data.domains import FORMATS, detect, load_domain_dataset

    domain = format if format in FORMATS else (detect(items, interactions) if format is None else None)
    if domain is not None:
        if users is not None:
            raise ConfigError(f"a {domain} dataset brings its own users; do not pass a users file")
        return load_domain_dataset(domain, items, interactions, name=name)
    report = LoadReport()
    read: ReadOptions = {"format": format, "encoding": encoding}  # the same for every file
    items_df = load_items(items, id_column=item_id_column, empty_ids=empty_ids, report=report, **read)
    inter = load_interactions(
        interactions, columns=columns, empty_ids=empty_ids, duplicates=duplicates, report=report, **read
    )
    inter = check_known_items(inter, items_df, unknown_items=unknown_items, report=report)
    users_df = None
    if users is not None:
        users_df = load_users(users, id_column=user_id_column, report=report, **read)
        absent = pd.Index(users_df["user_id"]).get_indexer(inter["user_id"].unique()) < 0
        if absent.any():  # kept (they get vocabulary rows), but said
            report.notes.append(f"{int(absent.sum())} interaction users are not in the user table")
    inter.attrs.clear()
    return Dataset(inter, items_df, users_df, name=name or _dataset_name(interactions), report=report)


#: file stems that say which part of a split a file is, not which data: the folder above names the data
_SPLIT_STEMS = {"train", "test", "valid", "validation", "events", "interactions", "ratings"}


def _dataset_name(path: PathLike) -> str:
    """A label for the data in ``path``: its stem, with the folders above for a split's part
    (``ml-100k-splits/warm/train.csv`` -> ``ml-100k-splits/warm/train``)."""
    p = Path(path)
    if p.stem.lower() not in _SPLIT_STEMS:
        return p.stem
    parts = [x for x in p.absolute().parent.parts[-2:] if x not in ("/", "")]
    return "/".join([*parts, p.stem])
