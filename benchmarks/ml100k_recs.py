#!/usr/bin/env python
"""MovieLens-100K benchmark of the recommenders, and the tuning procedure of the recommended model.

Run (from the repository root; the data stays in ../shared, it is never copied):

    .venv/bin/python benchmarks/ml100k_recs.py                      # every model, warm + cold, scored
    .venv/bin/python benchmarks/ml100k_recs.py --models tokrec als  # some models
    .venv/bin/python benchmarks/ml100k_recs.py --tune               # choose `tokrec` hyperparameters

Scoring uses ``../shared/bench/score_recs.py`` on the official splits (``--k 10``).

``--tune`` never looks at test events. It cuts two validation sets from the TRAIN files:

* warm validation: each user's last training event (time order, ties by item id) is held out;
* cold validation: 20% of the items that have training events (seed 0) become pseudo-new items: all
  their events are held out and they are the candidates.

Each structural hyperparameter only affects one signal, so it is chosen by that signal's validation
NDCG@10 alone (warm validation for ease/trans/time, cold validation for map/prop/prior/profile); the
blend weights are then chosen by coordinate ascent on ``warm/warm0 + cold/cold0`` (NDCG@10 on both
validation sets relative to the starting point). The printed JSON is what `TokrecConfig` ships.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from common import shared_dir

MODELS = ["popularity", "itemknn", "ease", "als", "bpr", "text-profile", "hybrid-map", "fij-scorer", "tokrec"]


def load_split(shared: Path, split: str):
    from tokrec.data.loaders import load_dataset

    d = shared / "data" / "ml-100k-splits"
    ds = load_dataset(d / "items.csv", d / split / "train.csv")
    cand = None
    if split == "cold":
        cand = pd.read_csv(d / "cold" / "candidates.csv", dtype=str)["item_id"].tolist()
    return ds, cand


class ValSet:
    """A training dataset plus held-out validation events as matrices for
    :func:`tokrec.evaluation.metrics.score_matrix_metrics` (same rules as score_recs.py)."""

    def __init__(self, train, held: pd.DataFrame, cand_ids: list[str] | None) -> None:
        self.train = train
        n_u, n_i = train.n_users, train.n_items
        self.seen = train.interaction_matrix()
        u = train.user_vocab.encode(held["user_id"])
        i = train.item_vocab.encode(held["item_id"])
        self.rel = sp.csr_matrix((np.ones(len(u)), (u, i)), shape=(n_u, n_i))
        self.cand = None
        if cand_ids is not None:
            self.cand = np.zeros(n_i, dtype=bool)
            self.cand[train.item_vocab.encode(cand_ids)] = True

    def score(self, scores: np.ndarray) -> float:
        from tokrec.evaluation.metrics import score_matrix_metrics

        return score_matrix_metrics(scores, self.rel, exclude=self.seen, candidates=self.cand)["ndcg@10"]


def warm_validation(ds) -> ValSet:
    df = ds.interactions.sort_values(["user_id", "timestamp", "item_id"], kind="stable")
    last = df.groupby("user_id").tail(1)
    train = ds.with_interactions(df.drop(last.index))
    return ValSet(train, last, None)


def cold_validation(ds, fraction: float = 0.2, seed: int = 0) -> ValSet:
    with_events = sorted(set(ds.interactions["item_id"]))
    rng = np.random.default_rng(seed)
    new = set(rng.choice(with_events, size=int(round(fraction * len(with_events))), replace=False).tolist())
    is_new = ds.interactions["item_id"].isin(new)
    train = ds.with_interactions(ds.interactions[~is_new])
    return ValSet(train, ds.interactions[is_new], sorted(new))


# ---- tuning ------------------------------------------------------------------------------------
GRID: dict[str, tuple[str, str, list]] = {
    # param: (signal it drives, validation set, values)
    "ease_lambda": ("ease", "warm", [100.0, 300.0, 1000.0, 3000.0]),
    "ease_half_life": ("ease", "warm", [1.0, 2.0, 4.0, 8.0]),
    "trans_window": ("trans", "warm", [1, 3, 5, 8, 12]),
    "trans_gap_decay": ("trans", "warm", [0.5, 0.7, 1.0]),
    "trans_last": ("trans", "warm", [1, 3, 5, 10, 20]),
    "trans_decay": ("trans", "warm", [0.3, 0.5, 0.7]),
    "time_bandwidth_bins": ("time", "warm", [1.0, 3.0, 10.0, 30.0]),
    "map_lambda": ("map", "cold", [1.0, 3.0, 10.0, 30.0]),
    "attr_weight": ("map", "cold", [0.0, 0.3, 1.0, 3.0]),
    "prop_neighbours": ("prop", "cold", [10, 20, 50, 100, 200]),
    "profile_half_life": ("profile", "cold", [2.0, 10.0, 1000.0]),
}
#: where the search starts (fixed here, so that --tune reproduces the shipped defaults)
START = {
    "ease_lambda": 300.0,
    "ease_half_life": 2.0,
    "trans_window": 5,
    "trans_gap_decay": 0.7,
    "trans_last": 3,
    "trans_decay": 0.5,
    "time_bin_days": 1.0,
    "time_bandwidth_bins": 3.0,
    "map_lambda": 3.0,
    "attr_weight": 0.3,
    "prop_neighbours": 20,
    "profile_half_life": 2.0,
}
WEIGHT_STEPS = [0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0]


def _signals(cfg: dict, vs: ValSet, vecs: np.ndarray, which: tuple[str, ...]) -> dict[str, np.ndarray]:
    from tokrec.models.recommended import TokrecHybrid

    m = TokrecHybrid(cfg).fit(vs.train, vecs)
    seqs = [m.seen_.get(u, np.empty(0, dtype=np.int64)) for u in range(vs.train.n_users)]
    return m.signals(seqs, m.user_time_, which)


def tune(shared: Path, vecs: np.ndarray) -> dict:
    from tokrec.models import signals as sig
    from tokrec.models.recommended import SIGNALS

    warm_ds, _ = load_split(shared, "warm")
    cold_ds, _ = load_split(shared, "cold")
    sets = {"warm": warm_validation(warm_ds), "cold": cold_validation(cold_ds)}
    cfg = dict(START)
    for param, (signal, which, values) in GRID.items():
        results = []
        for v in values:
            s = _signals({**cfg, param: v}, sets[which], vecs, (signal,))[signal]
            results.append((sets[which].score(s), v))
        best = max(results, key=lambda t: t[0])
        print(
            f"  {param:20s} {signal:8s} {which}: " + "  ".join(f"{v}={r:.4f}" for r, v in results), flush=True
        )
        cfg[param] = best[1]
    z = {
        name: {k: sig.znorm_rows(v) for k, v in _signals(cfg, vs, vecs, SIGNALS).items()}
        for name, vs in sets.items()
    }
    weights = {s: 1.0 for s in SIGNALS}

    def evaluate(w: dict[str, float]) -> tuple[float, float]:
        out = []
        for name, vs in sets.items():
            total = sum(np.float32(w[s]) * z[name][s] for s in SIGNALS if w[s])
            out.append(vs.score(total) if not np.isscalar(total) else 0.0)
        return out[0], out[1]

    w0, c0 = evaluate(weights)
    print(f"  equal weights: warm {w0:.4f} cold {c0:.4f}", flush=True)
    best_obj = 2.0
    for _round in range(3):
        changed = False
        for s in SIGNALS:
            base = weights[s]
            for step in WEIGHT_STEPS:
                trial = {**weights, s: step}
                if step == base:
                    continue
                wv, cv = evaluate(trial)
                obj = wv / w0 + cv / c0
                if obj > best_obj + 1e-4:
                    best_obj, weights, changed = obj, trial, True
        wv, cv = evaluate(weights)
        print(f"  round {_round + 1}: warm {wv:.4f} cold {cv:.4f} weights {weights}", flush=True)
        if not changed:
            break
    cfg.update({f"w_{s}": w for s, w in weights.items()})
    return cfg


# ---- benchmark ---------------------------------------------------------------------------------
def run_model(
    name: str, shared: Path, split: str, vecs: np.ndarray, out_dir: Path, k: int, config: dict
) -> dict:
    from tokrec.models.registry import create_model

    ds, cand = load_split(shared, split)
    model = create_model(name, config)
    t0 = time.perf_counter()
    model.fit(ds, vecs if (model.needs_item_vectors or name in ("fij-scorer",)) else None)
    t1 = time.perf_counter()
    recs = model.recommend_batch(k=k, candidates=cand)
    t2 = time.perf_counter()
    path = out_dir / f"{name}-{split}.csv"
    recs.to_csv(path, index=False)
    d = shared / "data" / "ml-100k-splits"
    cmd = [
        sys.executable,
        str(shared / "bench" / "score_recs.py"),
        str(path),
        str(d / split / "test.csv"),
        str(d / split / "train.csv"),
    ]
    if cand is not None:
        cmd += ["--candidates", str(d / "cold" / "candidates.csv")]
    res = subprocess.run(cmd, capture_output=True, text=True, check=True)
    out = json.loads(res.stdout.strip().splitlines()[-1])
    out.update({"fit_s": round(t1 - t0, 2), "recommend_s": round(t2 - t1, 2)})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shared", help="the shared folder (default: ../shared or $TOKREC_SHARED)")
    ap.add_argument("--models", nargs="*", default=MODELS)
    ap.add_argument("--splits", nargs="*", default=["warm", "cold"])
    ap.add_argument(
        "--tune", action="store_true", help="choose the tokrec hyperparameters on validation splits"
    )
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--k", type=int, default=100)
    ap.add_argument("--out", help="folder for the recommendation files (default: a temporary folder)")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    shared = shared_dir(args.shared)
    from tokrec.features import item_vectors_for

    ds, _ = load_split(shared, "warm")
    t = time.perf_counter()
    vecs = item_vectors_for(ds)
    print(f"item vectors {vecs.shape} in {time.perf_counter() - t:.1f}s", flush=True)
    if args.tune:
        cfg = tune(shared, vecs)
        print(json.dumps(cfg))
        return
    out_dir = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="tokrec-ml100k-"))
    out_dir.mkdir(parents=True, exist_ok=True)
    print(
        "| model | split | NDCG@10 | HR@10 | Recall@10 | fit s | recommend s |\n| --- | --- | ---: | ---: | ---: | ---: | ---: |"
    )
    for name in args.models:
        for split in args.splits:
            r = run_model(name, shared, split, vecs, out_dir, args.k, {})
            print(
                f"| {name} | {split} | {r['ndcg@10']:.4f} | {r['hr@10']:.4f} | {r['recall@10']:.4f} | {r['fit_s']} | {r['recommend_s']} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
