"""Benchmark the buy/not-buy classifier on the ml-100k warm split, and its blended re-ranking.

1. Users are split 80/20; the held-out users' LAST training event is cut off (leave-last-out, with
   tokrec.evaluation.splits) to make a validation set. The classifier is fine-tuned on pairs of the
   other users from that cut training set (its behaviour features count those users only).
2. ROC-AUC on held-out users: their test event (warm/test.csv) given their whole training history,
   against never-seen items drawn uniformly and (separately) in proportion to popularity, with the
   popularity-only ROC-AUC on the same pairs beside it.
3. Re-ranking: the default model `tokrec` (first stage) is fitted on the cut training set (validation)
   and on the whole training set (test); the classifier re-ranks the held-out users' top ``--top-n``
   with ``(1-w) z(first stage) + w z(classifier)``. ``w`` is chosen on the validation events as
   ``tokrec classify --rerank`` chooses it (:func:`tokrec.tuning.choose_rerank_weight`; NDCG@10 by the shared
   scorer's definitions), then applied once to the test events (scored by the shared scorer).

Usage:
    python benchmarks/deep_classifier.py [--model-path ENCODER] [--top-n 20] [--set key=value ...]
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
from tokrec.config import parse_key_values
from tokrec.data.dataset import Dataset
from tokrec.encoders import load_encoder
from tokrec.evaluation.splits import leave_last_out
from tokrec.features import item_vectors
from tokrec.models.cross_encoder import CrossEncoderClassifier, heldout_pairs, sample_pairs, split_users
from tokrec.models.registry import create_model
from tokrec.tuning import choose_rerank_weight

SHARED = Path(__file__).resolve().parents[2] / "shared"
WEIGHTS = [round(0.1 * i, 1) for i in range(11)]


def score(recs: Path, test: Path, train: Path, scorer: Path) -> dict[str, float]:
    return run_scorer(scorer, recs, test, train)


def first_stage(ds: Dataset, vecs: np.ndarray, users: list[str], k: int) -> pd.DataFrame:
    model = create_model("tokrec", None)
    model.fit(ds, vecs)
    return model.recommend_batch(users, k=k)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--splits", type=Path, default=SHARED / "data" / "ml-100k-splits")
    ap.add_argument("--scorer", type=Path, default=SHARED / "bench" / "score_recs.py")
    ap.add_argument("--model-path", default=None, help="encoder of the first stage's item vectors")
    ap.add_argument("--top-n", type=int, default=20)
    ap.add_argument("--heldout-fraction", type=float, default=0.2)
    ap.add_argument("--eval-negatives", type=int, default=1)
    ap.add_argument("--out", type=Path, default=None, help="folder for the recommendation files")
    ap.add_argument(
        "--set", nargs="*", default=[], help="CrossEncoderConfig overrides key=value (JSON values)"
    )
    a = ap.parse_args()
    cfg = parse_key_values(a.set)
    clf = CrossEncoderClassifier(cfg)
    c = clf.config
    items = pd.read_csv(a.splits / "items.csv", dtype=str, keep_default_na=False)
    train_path, test_path = a.splits / "warm" / "train.csv", a.splits / "warm" / "test.csv"
    train = pd.read_csv(train_path, dtype={"user_id": str, "item_id": str}).rename(
        columns={"rating": "value"}
    )
    test = pd.read_csv(test_path, dtype={"user_id": str, "item_id": str})
    full = Dataset(train, items, name="ml-100k-warm")
    val_split = leave_last_out(full)
    cut = val_split.train
    train_users, held = split_users(full, a.heldout_fraction, c.seed)
    held_ids = [str(u) for u in full.user_vocab.decode(held)]
    cut_train_users = cut.user_vocab.encode(full.user_vocab.decode(train_users), missing="mask")
    cut_train_users = cut_train_users[cut_train_users >= 0]
    pairs = sample_pairs(
        cut,
        cut_train_users,
        n_pairs=c.max_pairs,
        negatives=c.negatives,
        how=c.negative_sampling,
        history_items=c.history_items,
        seed=c.seed,
        feature_history=c.feature_history,
    )
    t0 = time.perf_counter()
    clf.fit(cut, pairs, stats_users=cut_train_users)
    fit_s = time.perf_counter() - t0
    device = str(next(clf.model_.parameters()).device)
    evals = {}
    for how in ("uniform", "popularity"):
        evals[how] = clf.evaluate(
            full,
            heldout_pairs(
                full,
                held,
                negatives=a.eval_negatives,
                how=how,
                history_items=c.history_items,
                seed=c.seed,
                test=test,
                feature_history=c.feature_history,
            ),
        )
    print(f"config: {json.dumps(c.model_dump(mode='json'))}")
    print(f"training pairs {len(pairs)} from {len(cut_train_users)} users; fit {fit_s:.0f}s on {device}")
    for how, ev in evals.items():
        print(
            f"held-out users {len(held)}, {how} negatives: evaluation pairs {ev['n_pairs']} ({ev['positives']} positives)"
        )
        print(ev["report"])
        print(
            f"ROC-AUC (held-out users, {how} negatives): {ev['roc_auc']:.4f}; popularity alone on the same "
            f"pairs: {ev['popularity_roc_auc']:.4f}",
            flush=True,
        )

    out = a.out or Path(tempfile.mkdtemp(prefix="deep_classifier."))
    out.mkdir(parents=True, exist_ok=True)
    enc = load_encoder(a.model_path) if a.model_path else None
    vecs = np.asarray(item_vectors(full, encoder=enc), dtype=np.float32)
    held_set = set(held_ids)
    test[test["user_id"].isin(held_set)].to_csv(out / "test_heldout.csv", index=False)
    t0 = time.perf_counter()
    # validation: the held-out users' last training events, the first stage refitted without them (the
    # command's own choice, tokrec.tuning.choose_rerank_weight; NDCG@10 by the scorer's definitions)
    choice = choose_rerank_weight(
        clf, full, create_model("tokrec", None), held_ids, item_vectors=vecs, top_n=a.top_n, weights=WEIGHTS
    )
    best = choice.weight
    curve: dict[str, dict[float, float]] = {"val": choice.curve, "test": {}}
    recs = first_stage(full, vecs, held_ids, a.top_n + 10)
    fs_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    files = (out / "test_heldout.csv", train_path)
    for w, r in clf.rerank_weights(full, recs, top_n=a.top_n, weights=sorted({0.0, 1.0, best})).items():
        path = out / f"test-w{w}.csv"
        r.to_csv(path, index=False)
        curve["test"][w] = score(path, *files, a.scorer)["ndcg@10"]
    chosen = {"ndcg@10": curve["test"][best]}
    rr_s = time.perf_counter() - t0
    print(f"first stage `tokrec` (validation and test) for {len(held_ids)} held-out users, {fs_s:.0f}s")
    print(
        "validation NDCG@10 by blend weight: " + ", ".join(f"{w}: {v:.4f}" for w, v in curve["val"].items())
    )
    print(
        f"chosen w={best}: validation NDCG@10 {curve['val'][0.0]:.4f} -> {curve['val'][best]:.4f}; "
        f"test NDCG@10 {curve['test'][0.0]:.4f} (first stage) -> {chosen['ndcg@10']:.4f} (blend), "
        f"{curve['test'][1.0]:.4f} (classifier alone, for reference); re-ranking {rr_s:.0f}s"
    )
    print(
        json.dumps(
            {
                "roc_auc": {how: ev["roc_auc"] for how, ev in evals.items()},
                "popularity_roc_auc": {how: ev["popularity_roc_auc"] for how, ev in evals.items()},
                "blend_weight": best,
                "val_ndcg10": {str(k): v for k, v in curve["val"].items()},
                "test_ndcg10_first_stage": curve["test"][0.0],
                "test_ndcg10_blend": chosen["ndcg@10"],
                "test_ndcg10_classifier_alone": curve["test"][1.0],
                "train_pairs": len(pairs),
                "fit_s": round(fit_s, 1),
                "device": device,
            }
        )
    )


if __name__ == "__main__":
    main()
