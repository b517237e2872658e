"""Warm ranking with a behaviour-tuned encoder against the frozen one, through the public command.

The default command tunes on a validation split of the training log: each user's last training event
(``tokrec.tuning.make_validation``). An encoder fine-tuned on the whole training log has seen those
events as positives, which would flatter the text-carried signals on validation and bias the weights
the tuner chooses. So the comparison is made in two steps:

1. ``--prepare OUT``: writes ``OUT/val_train.csv``, the training log without each user's last event
   (exactly the events the tuner trains on for its validation). Fine-tune on that file::

       tokrec finetune --items ITEMS --interactions OUT/val_train.csv --output TUNED ...

   The tuned encoder is then blind to the tuner's validation events and, like every command, to the
   test events.
2. ``--encoder frozen TUNED``: runs ``tokrec recommend`` (tuned by default, and with ``--no-tune``: the
   shipped weights, which no validation chose) on the whole warm training file once per encoder and
   scores each list with the shared scorer. ``frozen`` stands for the bundled all-MiniLM-L6-v2.

Usage:
    python benchmarks/warm_tuned.py --splits DIR --prepare OUT
    python benchmarks/warm_tuned.py --splits DIR --encoder frozen TUNED [--out DIR]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import run_scorer
from tokrec.data.loaders import load_dataset
from tokrec.fileio import atomic_write
from tokrec.tuning import make_validation

SHARED = Path(__file__).resolve().parents[2] / "shared"
TOKREC = [sys.executable, "-m", "tokrec.cli.main"]


def prepare(splits: Path, out: Path) -> Path:
    ds = load_dataset(items=splits / "items.csv", interactions=splits / "warm" / "train.csv")
    val = make_validation(ds)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "val_train.csv"
    inter = val.train.interactions
    cols = [c for c in ("user_id", "item_id", "rating", "timestamp") if c in inter.columns]
    atomic_write(path, lambda tmp: inter[cols].to_csv(tmp, index=False))
    print(
        f"wrote {path}: {len(inter):,} events ({len(val.split.test):,} held out, the tuner's "
        f"validation targets)"
    )
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--splits", type=Path, default=SHARED / "data" / "ml-100k-splits")
    ap.add_argument("--scorer", type=Path, default=SHARED / "bench" / "score_recs.py")
    ap.add_argument("--prepare", type=Path, default=None, help="write DIR/val_train.csv and stop")
    ap.add_argument("--encoder", nargs="+", default=["frozen"], help="'frozen' or encoder folders")
    ap.add_argument("--modes", nargs="+", default=["tuned", "no-tune"], choices=("tuned", "no-tune"))
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args()
    if a.prepare is not None:
        prepare(a.splits, a.prepare)
        return
    out = a.out or Path(tempfile.mkdtemp(prefix="warm_tuned."))
    out.mkdir(parents=True, exist_ok=True)
    d = a.splits
    rows = []
    for enc in a.encoder:
        for mode in a.modes:
            name = f"{'frozen' if enc == 'frozen' else Path(enc).name}-{mode}"
            cmd = [*TOKREC, "recommend", "--items", str(d / "items.csv")]
            cmd += ["--interactions", str(d / "warm" / "train.csv"), "--k", "100"]
            cmd += ["--output", str(out / f"{name}.csv")]
            if enc != "frozen":
                cmd += ["--model-path", enc]
            if mode == "no-tune":
                cmd += ["--no-tune"]
            print("$", " ".join(cmd[2:]).replace("tokrec.cli.main", "tokrec"), flush=True)
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True)
            wall = time.perf_counter() - t0
            m = run_scorer(a.scorer, out / f"{name}.csv", d / "warm" / "test.csv", d / "warm" / "train.csv")
            rows.append((enc, mode, m["ndcg@10"], m.get("hr@10", float("nan")), wall))
            print(
                f"{name}: NDCG@10 {m['ndcg@10']:.4f}  HR@10 {m.get('hr@10', float('nan')):.4f}  {wall:.0f}s"
            )
    print("\n| encoder | weights | NDCG@10 | HR@10 | wall s |\n| --- | --- | ---: | ---: | ---: |")
    for enc, mode, ndcg, hr, wall in rows:
        weights = "tuned on validation" if mode == "tuned" else "shipped (--no-tune)"
        print(f"| {enc} | {weights} | {ndcg:.4f} | {hr:.4f} | {wall:.0f} |")


if __name__ == "__main__":
    main()
