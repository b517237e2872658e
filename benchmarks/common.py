"""What the benchmark scripts share: where the read-only shared data lives.

Imported by the scripts as ``from common import shared_dir`` (run as ``python benchmarks/NAME.py``, the scripts'
folder is on the import path).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def shared_dir(arg: str | None, need: str = "data/ml-100k-splits") -> Path:
    """The shared folder: ``arg`` (``--shared``), else ``$TOKREC_SHARED``, else ``../shared`` beside the
    repository; exits with a message when ``need`` is not under it."""
    d = Path(arg or os.environ.get("TOKREC_SHARED") or REPO.parent / "shared")
    if not (d / need).is_dir():
        sys.exit(f"{d}/{need} not found (pass --shared)")
    return d
