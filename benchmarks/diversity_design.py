"""Diversity re-rankers compared on a design split of MovieLens 100K warm (never the validation or test events).

    PYTHONPATH=src python benchmarks/diversity_design.py [--shared ../shared] [--out runs/diversity_design]

Why: the responsibility benchmark (``benchmarks/responsibility.py``) chooses each control's setting on a
validation split with one event per user, whose NDCG@10 moves by several percent from noise alone (the same
``dpp`` setting lost 4.9% there and 16.7% on test). Comparing *methods* needs a less noisy yardstick that
still never reads the validation or test events: this script cuts each user's last 5 events out of the
validation split's training file (``leave-last-out``, ``n = 5``), fits the default ``tokrec`` model on the
rest, and measures NDCG@10 (5 held-out events per user) and ILD@10 (MiniLM ``Z_I``) for each re-ranker of
the user's top 100 at a few weights. Methods:

* library re-rankers (``tokrec.rerank``): ``dpp`` (min-max relevance), ``sdpp`` (relevance on the model's
  score scale shared by all users);
* not in the library, for the comparison only: MMR with its set returned in the model's order;
  max-sum dispersion (greedy ``rel_i + lam * mean distance to the list``, the ILD objective itself), on
  min-max and on the shared score scale; personalised ``dpp`` (Eskandanian et al. 2017: each user's weight
  ``min(0.99, 2 w p_u)``, ``p_u`` the percentile of the user's history ILD, and the reverse ``2 w (1 - p_u)``
  as a control); aspect coverage over 20 k-means clusters of ``Z_I`` (xQuAD with the user's cluster mix
  from history, and Steck's KL calibration to that mix); max-sum dispersion over *calibrated* relevance
  (isotonic hit probability of the raw score fitted on this same design split, so in-sample: an
  optimistic bound for idea "(c)").

Every set-valued method returns its chosen set in the model's order. Also measures the ``propensity``
popularity control at 0.3 .. 0.6 and the ``tail`` quota at shares 0.2 .. 0.5 on the same split (NDCG@10 and
long-tail share). Writes ``design.json`` and
prints Markdown tables (changes against the base list of the same split).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from common import max_sum_dispersion, shared_dir
from tokrec.data.loaders import load_dataset, load_interactions
from tokrec.evaluation.metrics import score_recommendations
from tokrec.evaluation.responsibility import responsibility_metrics
from tokrec.evaluation.splits import given_split, leave_last_out, validation_split
from tokrec.features import item_vectors
from tokrec.models.registry import create_model
from tokrec.rerank import RerankContext, calibrate, dpp, min_max, mmr, rerank_frame, score_scale

K = 10
POOL = 100

#: (positions into the user's candidates) = fn(user, candidate rows, scores)
Picker = Callable[[str, np.ndarray, np.ndarray], np.ndarray]


def model_order(pick: np.ndarray, scores: np.ndarray) -> np.ndarray:
    return pick[np.lexsort((pick, -scores[pick]))]


def xquad_aspects(rel: np.ndarray, aspect: np.ndarray, p_user: np.ndarray, k: int, w: float) -> np.ndarray:
    """xQuAD over hard aspects: ``(1 - w) rel_i + w P(c_i | u) [c_i not yet covered]``."""
    free = np.ones(len(rel), dtype=bool)
    left = np.ones(len(p_user))
    chosen: list[int] = []
    for _ in range(min(k, len(rel))):
        j = int(np.argmax(np.where(free, (1 - w) * rel + w * (p_user * left)[aspect], -np.inf)))
        chosen.append(j)
        free[j] = False
        left[aspect[j]] = 0.0
    return np.asarray(chosen, dtype=np.int64)


def apply(recs: pd.DataFrame, index: dict[str, int], pick: Picker) -> pd.DataFrame:
    frames = []
    for user, g in recs.groupby("user_id", sort=False):
        rows = g["item_id"].map(index).to_numpy()
        pos = pick(str(user), rows, g["score"].to_numpy(dtype=np.float64))[:K]
        out = g.iloc[pos][["user_id", "item_id", "score"]].copy()
        out["rank"] = np.arange(1, len(out) + 1)
        frames.append(out)
    return pd.concat(frames, ignore_index=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", help="the shared folder (default: ../shared or $TOKREC_SHARED)")
    ap.add_argument("--out", default="runs/diversity_design", help="folder for design.json")
    args = ap.parse_args(argv)
    from sklearn.cluster import KMeans
    from sklearn.isotonic import IsotonicRegression
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
    t0 = time.perf_counter()
    d = shared_dir(args.shared) / "data" / "ml-100k-splits"
    ds = load_dataset(d / "items.csv", d / "warm" / "train.csv")
    test_split = given_split(ds, load_interactions(d / "warm" / "test.csv"), source="warm/test.csv")
    split = leave_last_out(validation_split(test_split).train, n=5)
    print(f"design split: {split.summary()}", file=sys.stderr)
    vectors = item_vectors(ds)
    model = create_model("tokrec", {})
    model.fit(split.train, vectors)
    recs = model.recommend_batch(split.test_users, k=POOL)
    recs = recs.assign(user_id=recs["user_id"].astype(str), item_id=recs["item_id"].astype(str))
    recs = recs.sort_values(["user_id", "rank"], kind="mergesort")
    train, test = split.train.interactions, split.test.interactions
    catalog = split.train.item_vocab.ids
    context = RerankContext.from_train(train, split.train.items, vectors=vectors)
    index = context.index
    v = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    scale = score_scale(recs)

    # each user's history ILD (mean pairwise cosine distance, closed form for unit vectors) and its percentile
    hist = train.assign(row=train["item_id"].astype(str).map(index)).groupby(train["user_id"].astype(str))[
        "row"
    ]
    h_ild = {}
    for u, rows in hist:
        s, n = v[rows.to_numpy()].sum(axis=0), len(rows)
        h_ild[str(u)] = 1.0 - (s @ s - n) / (n * (n - 1)) if n > 1 else 0.0
    ranked = np.sort(np.fromiter(h_ild.values(), dtype=float))
    pct = {u: np.searchsorted(ranked, x, side="right") / len(ranked) for u, x in h_ild.items()}
    # aspects: k-means on Z_I, each user's aspect mix from history
    aspect = KMeans(20, n_init=4, random_state=0).fit(v).labels_
    mix = {str(u): np.bincount(aspect[rows.to_numpy()], minlength=20) / len(rows) for u, rows in hist}
    # calibrated relevance (in-sample): isotonic hit probability of the raw score on this split
    hits = recs.merge(test.astype({"user_id": str, "item_id": str}).assign(hit=1.0), how="left")["hit"]
    iso = IsotonicRegression(out_of_bounds="clip").fit(recs["score"], hits.fillna(0.0))
    p_range = float(np.median(recs.groupby("user_id")["score"].apply(lambda s: np.ptp(iso.predict(s)))))

    methods: dict[str, tuple[str, list[float], Callable[[float], Picker | str]]] = {
        "dpp": ("library", [0.4, 0.5, 0.6, 0.65, 0.7], lambda w: f"dpp:{w}"),
        "sdpp": ("library", [0.4, 0.5, 0.6, 0.65, 0.7, 0.75], lambda w: f"sdpp:{w}"),
        "mmr, set in model order": (
            "comparison",
            [0.4, 0.6, 0.7, 0.8],
            lambda w: lambda u, r, s: model_order(mmr(s, v[r], K, w), s),
        ),
        "max-sum dispersion, min-max": (
            "comparison",
            [2.0, 3.0, 4.0, 5.0, 6.0],
            lambda w: lambda u, r, s: model_order(max_sum_dispersion(min_max(s), v[r], K, w), s),
        ),
        "max-sum dispersion, shared score scale": (
            "comparison",
            [2.0, 3.0, 4.0, 5.0, 6.0],
            lambda w: lambda u, r, s: model_order(max_sum_dispersion((s - s.max()) / scale, v[r], K, w), s),
        ),
        "dpp, weight x 2 percentile of history ILD": (
            "comparison",
            [0.4, 0.5, 0.6, 0.7],
            lambda w: lambda u, r, s: model_order(dpp(s, v[r], K, min(0.99, 2 * w * pct.get(u, 0.5))), s),
        ),
        "dpp, weight x 2 (1 - percentile) (reverse)": (
            "comparison",
            [0.5, 0.6, 0.7],
            lambda w: (
                lambda u, r, s: model_order(dpp(s, v[r], K, min(0.99, 2 * w * (1 - pct.get(u, 0.5)))), s)
            ),
        ),
        "xQuAD over 20 k-means aspects": (
            "comparison",
            [0.4, 0.6, 0.8],
            lambda w: lambda u, r, s: model_order(xquad_aspects(min_max(s), aspect[r], mix[u], K, w), s),
        ),
        "calibration to the 20-aspect mix": (
            "comparison",
            [0.3, 0.5, 0.7, 0.9],
            lambda w: lambda u, r, s: model_order(calibrate(s, np.eye(20)[aspect[r]], mix[u], K, w), s),
        ),
        "max-sum dispersion, isotonic probability (in-sample)": (
            "comparison",
            [2.0, 3.0, 4.0, 5.0],
            lambda w: (
                lambda u, r, s: model_order(max_sum_dispersion(iso.predict(s) / p_range, v[r], K, w), s)
            ),
        ),
    }

    def measure(r: pd.DataFrame) -> dict[str, float]:
        m = score_recommendations(r, test, train, k=K, catalog=catalog, with_clean=True)
        m.update(responsibility_metrics(m.pop("clean"), context, catalog, K))
        return {"ndcg": m[f"ndcg@{K}"], "ild": m[f"ild@{K}"], "long_tail": m[f"long_tail@{K}"]}

    base = measure(recs)
    rows = []
    print(f"\nbase: NDCG@10 {base['ndcg']:.4f}, ILD@10 {base['ild']:.4f}; score scale {scale:.2f}\n")
    print("| method | kind | weight | NDCG@10 change | ILD@10 change |\n| --- | --- | ---: | ---: | ---: |")
    for name, (kind, weights, make) in methods.items():
        for w in weights:
            how = make(w)
            r = rerank_frame(recs, context, how, K) if isinstance(how, str) else apply(recs, index, how)
            m = measure(r)
            dn, di = m["ndcg"] / base["ndcg"] - 1, m["ild"] / base["ild"] - 1
            rows.append({"method": name, "kind": kind, "weight": w, **m, "ndcg_change": dn, "ild_change": di})
            print(f"| {name} | {kind} | {w:g} | {dn:+.1%} | {di:+.1%} |", flush=True)
    # the popularity control on the same yardstick (a check of the responsibility benchmark's choice)
    print(
        "\n| popularity control | weight | NDCG@10 change | long-tail share@10 |\n| --- | ---: | ---: | ---: |"
    )
    popularity = []
    for control, weights in (("propensity", (0.3, 0.4, 0.5, 0.6)), ("tail", (0.2, 0.3, 0.4, 0.5))):
        for w in weights:
            m = measure(rerank_frame(recs, context, f"{control}:{w}", K))
            dn = m["ndcg"] / base["ndcg"] - 1
            popularity.append({"method": control, "weight": w, **m, "ndcg_change": dn})
            print(
                f"| {control} | {w:g} | {dn:+.1%} | {base['long_tail']:.3f} → {m['long_tail']:.3f} |",
                flush=True,
            )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    summary = split.summary()
    (out / "design.json").write_text(
        json.dumps(
            {"split": summary, "base": base, "score_scale": scale, "rows": rows, "popularity": popularity},
            indent=1,
            default=float,
        )
    )
    print(f"\n{out / 'design.json'}; {time.perf_counter() - t0:.0f}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
