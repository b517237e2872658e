"""Text normalisation shared by every template: Unicode NFKC, control characters out, whitespace collapsed.

The same function is applied to every attribute value before it goes into a template, so that two
catalogs that differ only in Unicode form or stray whitespace give the same LLM tokens (and hit the
same embedding-cache rows).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

import numpy as np
import pandas as pd

# C0/C1 control characters (tab, newline and CR are whitespace and collapse to one space instead), plus
# invisible format characters that only confuse tokenizers: zero-width space/joiners, bidi marks and
# overrides, word joiner, BOM.
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2060-\u2064\ufeff]")
_SPACE = re.compile(r"\s+")


def normalize_text(text: object) -> str:
    """Normalises one value to clean single-line text.

    Args:
        text: any value; ``None`` and NaN become ``""``, other non-strings go through ``str``.

    Returns:
        The NFKC form with control/format characters removed and every run of whitespace
        (including newlines and tabs) replaced by one space, stripped at both ends.
    """
    if text is None or (isinstance(text, float) and np.isnan(text)):
        return ""
    s = text if isinstance(text, str) else str(text)
    if not s.isascii():
        s = unicodedata.normalize("NFKC", s)
    s = _CONTROL.sub("", s)
    return _SPACE.sub(" ", s).strip()


_NEEDS_WORK = re.compile(
    r"[\x00-\x09\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2060-\u2064\ufeff]|  |\n | \n|^ | $"
)


def normalize_array(values: pd.Series | Iterable[object]) -> np.ndarray:
    """Vectorised :func:`normalize_text`: an object array of ``n`` clean strings (missing -> ``""``).

    Works on the distinct values only, and skips the per-value work altogether when one regex pass over
    all of them finds nothing to fix (plain ASCII, single spaces, no control characters).
    """
    s = values if isinstance(values, pd.Series) else pd.Series(list(values), dtype=object)
    codes, uniques = pd.factorize(s, use_na_sentinel=True)
    u = [x if isinstance(x, str) else str(x) for x in uniques]
    blob = "\n".join(u)
    clean = blob.isascii() and blob.count("\n") == max(len(u) - 1, 0) and not _NEEDS_WORK.search(blob)
    if not clean:
        u = [normalize_text(x) for x in u]
    table = np.empty(len(u) + 1, dtype=object)
    table[: len(u)] = u
    table[len(u)] = ""
    return table[codes]


def normalize_series(values: pd.Series | Iterable[object]) -> pd.Series:
    """Vectorised :func:`normalize_text` over a column.

    Args:
        values: a pandas Series (any dtype) or an iterable of values, length ``n``.

    Returns:
        A Series of ``n`` Python strings (object dtype), missing values as ``""``, index kept.
    """
    index = values.index if isinstance(values, pd.Series) else None
    return pd.Series(normalize_array(values), index=index, dtype=object)
