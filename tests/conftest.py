"""Shared fixtures. Real-data tests find ../shared/data relative to the repository (or $TOKREC_SHARED)
and skip with a reason where it is absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_dir() -> Path | None:
    env = os.environ.get("TOKREC_SHARED")
    cand = Path(env) if env else REPO.parent / "shared"
    return cand if (cand / "data").is_dir() else None


@pytest.fixture(scope="session")
def shared() -> Path:
    d = shared_dir()
    if d is None:
        pytest.skip("../shared/data is absent (MovieLens is not redistributed); real-data test skipped")
    return d


@pytest.fixture(scope="session")
def ml100k_splits(shared: Path) -> Path:
    d = shared / "data" / "ml-100k-splits"
    if not d.is_dir():
        pytest.skip(f"{d} is absent")
    return d


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Every test gets its own embedding-cache directory unless it sets one itself."""
    monkeypatch.setenv("TOKREC_CACHE_DIR", str(tmp_path_factory.mktemp("tokrec-cache")))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="module")
def ray_cluster():
    """A small local Ray cluster for one test module (the Ray tests skip where ray is not installed)."""
    ray = pytest.importorskip("ray", reason="ray is not installed (pip install 'tokrec[ray]')")
    if ray.is_initialized():
        yield ray
        return
    ray.init(num_cpus=3, include_dashboard=False, object_store_memory=100 * 1024**2, log_to_driver=False)
    yield ray
    ray.shutdown()
