"""New items with a behaviour-tuned encoder: the default model's cold weights re-chosen on validation.

`tokrec finetune` holds out a share of the training items (``cold_item_split``, its ``--val-fraction``
and ``--seed``) and never makes them a positive, so for the SAME split the tuned encoder is still
blind to those items. This script cuts that split from the training events, fits the default model
`tokrec` on its train part with the tuned item vectors under a small grid of signal weights (the
text-carried signals: profile, prop, map, prior), scores each on the held-out items' events (NDCG@10,
official scorer), and refits the chosen weights on all training events for ONE test score.
Test events are read only for that last score.

Usage:
    python benchmarks/cold_tuned.py --encoder TUNED_DIR --splits DIR --scorer score_recs.py [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from common import run_scorer
from tokrec.data.loaders import load_dataset
from tokrec.encoders import load_encoder
from tokrec.evaluation.splits import cold_item_split
from tokrec.features import item_vectors
from tokrec.models.registry import create_model

SHARED = Path(__file__).resolve().parents[2] / "shared"
WEIGHTS = ("w_ease", "w_trans", "w_time", "w_age", "w_map", "w_prop", "w_prior", "w_profile")


def score(recs: Path, test: Path, train: Path, cand: Path, scorer: Path) -> float:
    return run_scorer(scorer, recs, test, train, cand)["ndcg@10"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--encoder", required=True, help="the tuned encoder folder (or any encoder)")
    ap.add_argument("--splits", type=Path, default=SHARED / "data" / "ml-100k-splits")
    ap.add_argument("--scorer", type=Path, default=SHARED / "bench" / "score_recs.py")
    ap.add_argument("--val-fraction", type=float, default=0.2, help="as given to tokrec finetune")
    ap.add_argument("--seed", type=int, default=42, help="as given to tokrec finetune")
    ap.add_argument("--grid", default="small", choices=("small", "none"))
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument(
        "--signals-alone",
        action="store_true",
        help="diagnostic, after the chosen score: each cold signal alone (every other weight 0) on the test "
        "events; nothing is chosen from these",
    )
    a = ap.parse_args()
    out = a.out or Path(tempfile.mkdtemp(prefix="cold_tuned."))
    out.mkdir(parents=True, exist_ok=True)
    d = a.splits
    ds = load_dataset(items=d / "items.csv", interactions=d / "cold" / "train.csv")
    t0 = time.perf_counter()
    vecs = np.asarray(item_vectors(ds, encoder=load_encoder(a.encoder)), dtype=np.float32)
    print(f"encoded {len(vecs)} items in {time.perf_counter() - t0:.1f}s", flush=True)
    split = cold_item_split(ds, fraction=a.val_fraction, seed=a.seed)
    vtrain, vtest = split.train.interactions, split.test.interactions
    vtrain[["user_id", "item_id"]].to_csv(out / "val_train.csv", index=False)
    vtest[["user_id", "item_id"]].to_csv(out / "val_test.csv", index=False)
    pd.DataFrame({"item_id": split.candidates}).to_csv(out / "val_cand.csv", index=False)
    grid: list[dict[str, float]] = [{}]
    if a.grid == "small":  # more weight on the signals the text carries
        grid += [
            {"w_profile": 2.0},
            {"w_profile": 4.0},
            {"w_profile": 2.0, "w_prop": 1.0},
            {"w_profile": 4.0, "w_prop": 1.0},
            {"w_profile": 4.0, "w_map": 0.5},
            {"w_profile": 8.0, "w_prop": 1.0},
        ]
    val: list[float] = []
    for k, cfg in enumerate(grid):
        model = create_model("tokrec", cfg)
        model.fit(split.train, vecs)
        recs = model.recommend_batch(k=100, candidates=split.candidates)
        recs.to_csv(out / f"val-{k}.csv", index=False)
        val.append(
            score(
                out / f"val-{k}.csv",
                out / "val_test.csv",
                out / "val_train.csv",
                out / "val_cand.csv",
                a.scorer,
            )
        )
        print(f"validation NDCG@10 {val[-1]:.4f}  config {json.dumps(cfg)}", flush=True)
    best = int(np.argmax(val))
    cfg = grid[best]
    model = create_model("tokrec", cfg)
    model.fit(ds, vecs)
    cand = pd.read_csv(d / "cold" / "candidates.csv", dtype=str)["item_id"].tolist()
    model.recommend_batch(k=100, candidates=cand).to_csv(out / "test.csv", index=False)
    test = score(
        out / "test.csv",
        d / "cold" / "test.csv",
        d / "cold" / "train.csv",
        d / "cold" / "candidates.csv",
        a.scorer,
    )
    print(
        f"chosen on validation: {json.dumps(cfg)} (validation NDCG@10 {val[best]:.4f}; the default weights "
        f"{val[0]:.4f}); test NDCG@10 {test:.4f}"
    )
    print(
        json.dumps(
            {"config": cfg, "val_ndcg10": val[best], "val_ndcg10_default": val[0], "test_ndcg10": test}
        )
    )
    if a.signals_alone:
        alone = {}
        for signal in ("map", "prop", "prior", "profile", "age"):
            only = {w: float(w == f"w_{signal}") for w in WEIGHTS}
            model = create_model("tokrec", only)
            model.fit(ds, vecs)
            model.recommend_batch(k=100, candidates=cand).to_csv(out / f"alone-{signal}.csv", index=False)
            alone[signal] = round(
                score(
                    out / f"alone-{signal}.csv",
                    d / "cold" / "test.csv",
                    d / "cold" / "train.csv",
                    d / "cold" / "candidates.csv",
                    a.scorer,
                ),
                4,
            )
        print("each signal alone on test (diagnostic):", json.dumps(alone))


if __name__ == "__main__":
    main()
