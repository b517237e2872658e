"""The recommended model on the MovieLens-100K benchmark splits, scored by the shared scorer script.

Needs ../shared (skipped where absent). Bars from the task: warm NDCG@10 >= 0.085, cold >= 0.30.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tokrec.cli.main import main

pytestmark = [pytest.mark.slow, pytest.mark.realdata]


def _score(shared: Path, recs: Path, split: str, candidates: Path | None) -> dict:
    d = shared / "data" / "ml-100k-splits"
    cmd = [
        sys.executable,
        str(shared / "bench" / "score_recs.py"),
        str(recs),
        str(d / split / "test.csv"),
        str(d / split / "train.csv"),
    ]
    if candidates is not None:
        cmd += ["--candidates", str(candidates)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    """One embedding cache for both splits (same catalog): the second run hits it."""
    return tmp_path_factory.mktemp("emb-cache")


@pytest.mark.parametrize(("split", "bar"), [("warm", 0.085), ("cold", 0.30)])
def test_recommended_model_meets_the_bar(
    shared: Path, ml100k_splits: Path, tmp_path: Path, cache_dir: Path, split: str, bar: float
) -> None:
    d = ml100k_splits
    out = tmp_path / "recs.csv"
    args = ["recommend", "--items", str(d / "items.csv"), "--interactions", str(d / split / "train.csv")]
    cands = d / "cold" / "candidates.csv" if split == "cold" else None
    if cands is not None:
        args += ["--candidates", str(cands)]
    assert main([*args, "--k", "100", "--output", str(out), "--threads", "2", "--cache", str(cache_dir)]) == 0
    res = _score(shared, out, split, cands)
    assert res["users_without_recs"] == 0 and res["seen_items_filtered"] == 0
    assert res["outside_candidates_filtered"] == 0 and res["duplicates_filtered"] == 0
    assert res["ndcg@10"] >= bar, res
