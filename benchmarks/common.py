"""What the benchmark scripts share: where the read-only shared data lives, the shared scorer, the greedy
max-sum dispersion.

Imported by the scripts as ``from common import shared_dir`` (run as ``python benchmarks/NAME.py``, the scripts'
folder is on the import path).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def shared_dir(arg: str | None, need: str = "data/ml-100k-splits") -> Path:
    """The shared folder: ``arg`` (``--shared``), else ``$TOKREC_SHARED``, else ``../shared`` beside the
    repository; exits with a message when ``need`` is not under it."""
    d = Path(arg or os.environ.get("TOKREC_SHARED") or REPO.parent / "shared")
    if not (d / need).is_dir():
        sys.exit(f"{d}/{need} not found (pass --shared)")
    return d


def run_scorer(
    scorer: Path, recs: Path, test: Path, train: Path, candidates: Path | None = None
) -> dict[str, float]:
    """The shared scorer's metrics (its last output line, JSON) for a recommendations file."""
    cmd = [sys.executable, str(scorer), str(recs), str(test), str(train)]
    if candidates is not None:
        cmd += ["--candidates", str(candidates)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
    return dict(json.loads(out))


def max_sum_dispersion(rel: np.ndarray, v: np.ndarray, k: int, lam: float) -> np.ndarray:
    """Greedy: next item maximises ``rel_i + lam * mean_{j in S} (1 - cos(v_i, v_j))``."""
    free = np.ones(len(rel), dtype=bool)
    dist = np.zeros(len(rel))
    chosen: list[int] = []
    for t in range(min(k, len(rel))):
        j = int(np.argmax(np.where(free, rel + lam * dist / max(t, 1), -np.inf)))
        chosen.append(j)
        free[j] = False
        dist += 1.0 - v @ v[j]
    return np.asarray(chosen, dtype=np.int64)
