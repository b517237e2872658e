"""benchmarks/ml100k.py: rewriting BENCHMARKS.md keeps the "## Deep models" section of engineer "deep"."""

from __future__ import annotations

from pathlib import Path

from repo_scripts import load_script


def _script():
    return load_script("benchmarks/ml100k.py", "bench_ml100k")


def test_rewrite_keeps_the_deep_models_section(tmp_path: Path) -> None:
    bench = _script()
    path = tmp_path / "BENCHMARKS.md"
    path.write_text("# Benchmarks\n\nold table\n\n## Deep models\n\n| sasrec | 0.11 |\n\n### more\ntext\n")
    bench._write(path, "# Benchmarks\n\nnew table\n")
    assert (
        path.read_text()
        == "# Benchmarks\n\nnew table\n\n## Deep models\n\n| sasrec | 0.11 |\n\n### more\ntext\n"
    )
    fresh = tmp_path / "NEW.md"
    bench._write(fresh, "# Benchmarks\n\nonly\n")
    assert fresh.read_text() == "# Benchmarks\n\nonly\n"
