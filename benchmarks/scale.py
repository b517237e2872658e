"""`tokrec fit` at catalog sizes: wall time and peak resident memory of the public command.

For each size N, writes a synthetic catalog of N items with about 10 events per item
(``tokrec.data.synthetic``), then runs ``tokrec fit`` in a child process and reads its peak RSS
(``getrusage(RUSAGE_CHILDREN)``). The encoder is all-MiniLM-L6-v2 by default, through the embedding
cache (a second run at the same size encodes nothing; ``TOKREC_CACHE_DIR`` moves the cache); ``--encoder
tiny`` is a stand-in (a random 2-layer BERT of width 32 from ``tokrec.encoders.testing``) for measuring
the model's own cost when encoding N texts would take hours — its figures say so.

    python benchmarks/scale.py --sizes 10000 100000            # MiniLM (encodes the texts once)
    python benchmarks/scale.py --sizes 10000 100000 --encoder tiny
    python benchmarks/scale.py --sizes 1000000 --encoder tiny --tiny-width 384   # MiniLM's vector size

``--tiny-width 384 --tiny-layers 1`` gives the stand-in MiniLM's vector size, so every item block the model
keeps has its real size; only the encoding time is not MiniLM's. The fit's own output (phase times, the
tuning decision) is kept in ``WORKDIR/fit-N.log``.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    p.add_argument("--events-per-item", type=float, default=10.0)
    p.add_argument("--encoder", choices=("minilm", "tiny"), default="minilm")
    p.add_argument("--tiny-width", type=int, default=32, help="vector size of the tiny stand-in encoder")
    p.add_argument("--tiny-layers", type=int, default=2, help="layers of the tiny stand-in encoder")
    p.add_argument("--fit-args", default="", help="extra `tokrec fit` arguments, e.g. --fit-args=--no-tune")
    p.add_argument(
        "--workdir", default=None, help="where the data and models go (default: a temporary folder)"
    )
    args = p.parse_args()
    from tokrec.data.synthetic import write_synthetic
    from tokrec.encoders.testing import make_tiny_bert

    work = Path(args.workdir or tempfile.mkdtemp(prefix="tokrec-scale-"))
    tiny = work / f"tiny-bert-{args.tiny_width}-{args.tiny_layers}"
    encoder = (
        []
        if args.encoder == "minilm"
        else ["--encoder", str(make_tiny_bert(tiny, hidden=args.tiny_width, layers=args.tiny_layers))]
    )
    print(f"{'items':>9s} {'events':>10s} {'fit wall':>10s} {'peak RSS':>10s}  encoder")
    for n in args.sizes:
        users = max(100, int(n * args.events_per_item / 20))  # about 20 events per user
        t0 = time.perf_counter()
        data = work / f"data-{n}"
        files = (
            {"items": data / "items.csv", "interactions": data / "interactions.csv"}
            if (data / "interactions.csv").exists()
            else write_synthetic(data, n_items=n, n_users=users, seed=0)
        )
        with open(files["interactions"]) as f:
            n_events = sum(1 for _ in f) - 1
        gen = time.perf_counter() - t0
        cmd = [sys.executable, "-m", "tokrec.cli.main", "fit", "--items", str(files["items"])]
        cmd += ["--interactions", str(files["interactions"]), "--output", str(work / f"model-{n}"), *encoder]
        cmd += args.fit_args.split()
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        t0 = time.perf_counter()
        r = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        (work / f"fit-{n}.log").write_text(r.stdout + r.stderr)
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB, the largest child so far
        if r.returncode != 0:
            print(f"{n:>9,d} {n_events:>10,d}  fit failed: {r.stderr.strip().splitlines()[-1]}")
            continue
        note = "" if peak > before else " (peak of an earlier, larger child)"
        print(
            f"{n:>9,d} {n_events:>10,d} {wall:>9.1f}s {peak / 2**20:>8.2f}GB  {args.encoder}"
            f"{note}  (data written in {gen:.0f}s)",
            flush=True,
        )


if __name__ == "__main__":
    main()
