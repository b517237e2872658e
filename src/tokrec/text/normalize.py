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


def normalize_series(values: pd.Series | Iterable[object]) -> pd.Series:
    """Vectorised :func:`normalize_text` over a column.

    Args:
        values: a pandas Series (any dtype) or an iterable of values, length ``n``.

    Returns:
        A Series of ``n`` Python strings (object dtype), missing values as ``""``, index kept.
    """
    s = values if isinstance(values, pd.Series) else pd.Series(list(values), dtype=object)
    missing = s.isna().to_numpy()
    out = s.astype(object).where(~missing, "").astype(str).astype(object)
    # NFKC only where needed: pure-ASCII strings are already in NFKC.
    arr = out.to_numpy()
    non_ascii = np.fromiter((not x.isascii() for x in arr), dtype=bool, count=len(arr))
    if non_ascii.any():
        idx = np.flatnonzero(non_ascii)
        arr = arr.copy()
        arr[idx] = [unicodedata.normalize("NFKC", x) for x in arr[idx]]
        out = pd.Series(arr, index=s.index, dtype=object)
    out = out.str.replace(_CONTROL, "", regex=True).str.replace(_SPACE, " ", regex=True).str.strip()
    return out.astype(object)
