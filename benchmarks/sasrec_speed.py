"""How fast ``text-sasrec`` trains on ml-100k warm: the validation run, and the refit of one and of two networks.

Usage:
    .venv/bin/python benchmarks/sasrec_speed.py [--epochs 6] [--vectors /tmp/deep_vecs.npy]

Measured in one run, on the same data (``attributes=false``, ``--epochs`` epochs, which the validation
run always chooses this early in training):
1. ``refit=none``: the validation run alone (V; one network, 2 torch threads, every epoch scored on
   each user's last training event), printed as seconds an epoch;
2. ``refit=scratch, refit_seeds=1``: V plus retraining one network (R1 = T1 - V);
3. ``refit=scratch, refit_seeds=2`` (the default): V plus retraining two networks (R2 = T2 - V);
and prints seconds an epoch of each. A full fit costs about (chosen epoch + patience) * V/epoch +
refit_seeds * chosen epoch * R1/epoch.
Run it on an idle machine: on two cores anything else running distorts every number.

To time a change to the training step, run it at the change's commit and at its parent.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from deep_sasrec import SCORER, load_split, load_vectors  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--splits", type=Path, default=SCORER.parents[1] / "data" / "ml-100k-splits")
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--vectors", default=None, help=".npy cache of the item vectors")
    a = ap.parse_args()
    from tokrec.models.sequential import TextSASRec

    ds, items = load_split(a.splits, "warm")
    vecs = load_vectors(items, a.vectors)
    base = {"attributes": False, "epochs": a.epochs, "patience": a.epochs, "threads": 2}

    def fit(**over: object) -> tuple[float, int]:
        model = TextSASRec({**base, **over})
        t0 = time.perf_counter()
        model.fit(ds, vecs)
        return time.perf_counter() - t0, model.best_epoch_

    fit(refit="none", refit_seeds=1, epochs=1)  # warm-up: imports, allocator
    v, _ = fit(refit="none", refit_seeds=1)
    t1, e1 = fit(refit="scratch", refit_seeds=1)
    t2, e2 = fit(refit="scratch", refit_seeds=2)
    r1, r2 = t1 - v, t2 - v
    print(f"validation run: {v:.1f} s for {a.epochs} epochs ({v / a.epochs:.2f} s an epoch, 2 threads)")
    print(f"refit of one network ({e1} epochs): {r1:.1f} s ({r1 / max(e1, 1):.2f} s an epoch)")
    print(
        f"refit of two networks ({e2} epochs each): {r2:.1f} s ({r2 / max(2 * e2, 1):.2f} s a network-epoch)"
    )


if __name__ == "__main__":
    main()
