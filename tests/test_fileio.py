"""Atomic writes respect the umask and keep an existing file's mode (not tempfile's 0600 / 0700); a bad
``--config`` is one line naming the field."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from tokrec.cli.main import main
from tokrec.fileio import atomic_dir, atomic_write, current_umask, write_text_atomic


@pytest.fixture
def umask_027():
    old = os.umask(0o027)
    yield
    os.umask(old)


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_new_files_and_folders_follow_the_umask(tmp_path, umask_027) -> None:
    assert current_umask() == 0o027
    f = write_text_atomic(tmp_path / "a.txt", "x")
    assert f.read_text() == "x" and _mode(f) == 0o640  # 0666 & ~027, not mkstemp's 0600
    with atomic_dir(tmp_path / "d") as tmp:
        (tmp / "inner.txt").write_text("y")
    assert _mode(tmp_path / "d") == 0o750 and (tmp_path / "d" / "inner.txt").read_text() == "y"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporaries left


def test_an_existing_files_mode_is_kept_and_a_failure_changes_nothing(tmp_path) -> None:
    f = tmp_path / "out.csv"
    f.write_text("old")
    os.chmod(f, 0o604)
    atomic_write(f, lambda t: t.write_text("new"))
    assert f.read_text() == "new" and _mode(f) == 0o604

    def broken(t: Path) -> None:
        t.write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(f, broken)
    assert f.read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["out.csv"]


def test_a_model_directory_follows_the_umask(tmp_path, umask_027) -> None:
    from conformance import checkerboard
    from tokrec.models.ease import EASE

    path = EASE(l2=10.0).fit(checkerboard()[0]).save(tmp_path / "m")
    assert _mode(path) == 0o750 and _mode(path / "config.json") == 0o640
    # safetensors' save_file creates its file 0600 whatever the umask: the folder's writer fixes it
    assert _mode(path / "arrays.safetensors") == 0o640


def test_a_bundle_follows_the_umask_in_every_file(tmp_path, umask_027) -> None:
    from test_serve_support import make_bundle

    path = make_bundle(tmp_path / "b", model="ease")
    modes = {p.relative_to(path).as_posix(): _mode(p) for p in path.rglob("*")}
    assert modes["item_vectors.safetensors"] == 0o640 and modes["model/arrays.safetensors"] == 0o640
    assert all(m == (0o750 if (path / p).is_dir() else 0o640) for p, m in modes.items()), modes


def test_a_bad_config_is_one_line_naming_the_field(tmp_path, capsys) -> None:
    args = ["--items", str(tmp_path / "none.csv"), "--interactions", str(tmp_path / "none.csv")]
    for command in (
        ["recommend", *args, "--output", str(tmp_path / "r.csv")],
        ["fit", *args, "--output", str(tmp_path / "m")],
    ):
        assert main([*command, "--model", "ease", "--config", '{"l2": -5.0, "bogus": 1}']) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1, err
        assert "l2: Input should be greater than 0 (got -5.0)" in err and "bogus: unknown option" in err


def test_staged_dir_moves_a_runs_files_in_together_and_a_failure_changes_nothing(tmp_path) -> None:
    from tokrec.fileio import staged_dir

    out = tmp_path / "report"
    out.mkdir()
    (out / "notes.txt").write_text("the user's")
    (out / "metrics.json").write_text("old")
    with pytest.raises(RuntimeError), staged_dir(out) as stage:
        (stage / "metrics.json").write_text("new")
        (stage / "recs").mkdir()
        (stage / "recs" / "a.csv").write_text("half")
        raise RuntimeError("the run failed")
    assert sorted(p.name for p in out.rglob("*")) == ["metrics.json", "notes.txt"]
    assert (out / "metrics.json").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report"]  # no staging folder left
    with staged_dir(out) as stage:
        (stage / "metrics.json").write_text("new")
        (stage / "recs").mkdir()
        (stage / "recs" / "a.csv").write_text("rows")
    assert (out / "metrics.json").read_text() == "new"
    assert (out / "recs" / "a.csv").read_text() == "rows"
    assert (out / "notes.txt").read_text() == "the user's"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report"]
