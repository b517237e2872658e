"""Builds the folder that ``benchmarks/gpu_suite.sh`` runs from on a bare GPU machine.

Usage (from the repository root; the default output folder is git-ignored, so it travels with the
device tool's ``carry`` and is never committed):

    .venv/bin/python benchmarks/gpu_bundle.py --shared ../shared            # writes gpu_bundle/
    # on the device machine (the device tool: run(command=..., carry=["gpu_bundle"])):
    bash gpu_bundle/benchmarks/gpu_suite.sh gpu_bundle $OUT cold

What it writes (a GPU session's working tree may carry 64 MiB in all; the script prints the total):

- ``src/``, ``benchmarks/``: the checkout's tracked files (``git ls-files``), as committed or edited;
- ``minilm16/``: the bundled all-MiniLM-L6-v2 with its weights rounded to fp16 (45 MB instead of 90;
  ``gpu_suite.sh`` widens them back to fp32 there; the rounding moves ml-100k cold NDCG@10 by 0.0002);
- ``data/<split>/**.csv.gz``: the benchmark splits, gzipped (read-only inputs; delete the folder after the
  run: the datasets may not be redistributed);
- ``bench/score_recs.py``: the shared scorer;
- ``wheels/``: the packages tokrec's commands import that the GPU image lacks (its package list is in the
  device tool's KINDS.md): pydantic and its core, and optuna (the tuning step of every ``recommend``) with
  colorlog. The versions are the ones installed here, for CPython 3.12 on manylinux x86-64; ``gpu_suite.sh``
  installs them into a folder on ``PYTHONPATH`` before its first step.
"""

from __future__ import annotations

import argparse
import gzip
import importlib.metadata
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: packages the suite imports that the GPU image does not have (pydantic-core's version is pinned by pydantic's)
WHEELS = ["pydantic", "pydantic-core", "annotated-types", "typing-inspection", "optuna", "colorlog"]
PLATFORMS = [
    "manylinux_2_28_x86_64",
    "manylinux_2_27_x86_64",
    "manylinux_2_17_x86_64",
    "manylinux2014_x86_64",
]
LIMIT = 64 * 2**20


def _size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def copy_sources(out: Path) -> None:
    files = subprocess.run(
        ["git", "ls-files", "src", "benchmarks"], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout.split()
    for rel in files:
        dst = out / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, dst)


def copy_minilm_fp16(out: Path) -> None:
    from safetensors.torch import load_file, save_file

    from tokrec.encoders.hf import default_model_path

    src = Path(default_model_path())
    dst = out / "minilm16"
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("*.bin", "*.onnx", "onnx", "openvino", "*.h5"))
    weights = load_file(str(src / "model.safetensors"))
    half = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in weights.items()}
    save_file(half, str(dst / "model.safetensors"), metadata={"format": "pt"})


def copy_data(out: Path, shared: Path, datasets: list[str]) -> None:
    for name in datasets:
        base = shared / "data" / name
        if not base.is_dir():
            raise SystemExit(
                f"gpu_bundle: {base} not found (--shared points at the folder holding data/ and bench/)"
            )
        for csv in base.rglob("*.csv"):
            dst = out / "data" / name / csv.relative_to(base)
            dst.parent.mkdir(parents=True, exist_ok=True)
            with open(csv, "rb") as f, gzip.open(f"{dst}.gz", "wb", compresslevel=9) as g:
                shutil.copyfileobj(f, g)
    scorer = shared / "bench" / "score_recs.py"
    (out / "bench").mkdir(parents=True, exist_ok=True)
    shutil.copy2(scorer, out / "bench" / "score_recs.py")


def download_wheels(out: Path) -> None:
    pins = [f"{name}=={importlib.metadata.version(name)}" for name in WHEELS]
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "-q",
        "--no-deps",
        "--only-binary=:all:",
        "--python-version",
        "3.12",
    ]
    cmd += ["--implementation", "cp", "-d", str(out / "wheels")]
    for p in PLATFORMS:
        cmd += ["--platform", p]
    subprocess.run(cmd + pins, check=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--shared", type=Path, default=ROOT.parent / "shared", help="the folder with data/ and bench/"
    )
    ap.add_argument("--out", type=Path, default=ROOT / "gpu_bundle")
    ap.add_argument(
        "--datasets",
        nargs="+",
        default=["ml-100k-splits", "amazon-beauty-splits"],
        help="folders of SHARED/data",
    )
    ap.add_argument("--no-wheels", action="store_true", help="for a machine that has pydantic and optuna")
    a = ap.parse_args(argv)
    if a.out.exists():
        shutil.rmtree(a.out)
    a.out.mkdir(parents=True)
    copy_sources(a.out)
    copy_minilm_fp16(a.out)
    copy_data(a.out, a.shared, a.datasets)
    if not a.no_wheels:
        download_wheels(a.out)
    total = _size(a.out)
    for part in sorted(p for p in a.out.iterdir() if p.is_dir()):
        print(f"{part.name:<12} {_size(part) / 2**20:7.1f} MiB")
    print(
        f"{'total':<12} {total / 2**20:7.1f} MiB in {a.out} (the device tool carries 64 MiB with the working tree)"
    )
    return 0 if total < LIMIT else 1


if __name__ == "__main__":
    sys.exit(main())
