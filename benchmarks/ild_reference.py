"""How diverse is "+20% intra-list diversity"? ILD@10 of the default model's lists against reference lists.

    PYTHONPATH=src python benchmarks/ild_reference.py [--shared ../shared] [--seed 0]

Issue 17 asks a diversity control to raise ILD@10 (mean pairwise cosine distance of the MiniLM item vectors within
a user's top 10, :func:`tokrec.evaluation.responsibility.intra_list_diversity`) by 20% for at most 5% of NDCG@10 on
MovieLens 100K warm. This script puts that target on a scale, with the same ILD function and vectors:

* the default model's lists (``tokrec``, shipped configuration, every user's top 10; what the controls start from);
* random lists: 10 items drawn uniformly from each user's unseen items, and drawn in proportion to popularity;
* the most dispersed 10 a re-ranker could pick from the model's top N (N = 30, 100), relevance ignored: greedy
  max-sum dispersion (first the model's best item, then each next item the farthest on average from those
  chosen) — roughly the ceiling of any re-ranker over that pool.

NDCG@10 on ``warm/test.csv`` is printed beside each for scale only: nothing here is chosen, so the test events
choose nothing.
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd

from common import max_sum_dispersion, shared_dir
from tokrec.data.loaders import load_dataset
from tokrec.evaluation.metrics import clean_recommendations, score_recommendations
from tokrec.evaluation.responsibility import intra_list_diversity
from tokrec.features import item_vectors
from tokrec.models.registry import create_model
from tokrec.rerank import RerankContext

K = 10


def dispersed(rows: np.ndarray, v: np.ndarray, k: int) -> np.ndarray:
    """Greedy max-sum dispersion over ``rows`` (in the model's order) with relevance ignored after the first row:
    the first row, then each next row the farthest on average from those chosen."""
    first = np.zeros(len(rows))
    first[0] = np.inf
    return rows[max_sum_dispersion(first, v[rows], k, 1.0)]


def frame(lists: dict[str, np.ndarray], ids: list[str]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {"user_id": u, "item_id": ids[r], "score": float(K - p), "rank": p + 1}
            for u, rows in lists.items()
            for p, r in enumerate(rows)
        ]
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", help="the shared folder (default: ../shared or $TOKREC_SHARED)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    d = shared_dir(args.shared) / "data" / "ml-100k-splits"
    ds = load_dataset(d / "items.csv", d / "warm" / "train.csv")
    test = pd.read_csv(d / "warm" / "test.csv", dtype={"user_id": str, "item_id": str})
    train = ds.interactions.assign(user_id=ds.interactions["user_id"].astype(str))
    vectors = item_vectors(ds)
    context = RerankContext.from_train(train, ds.items, vectors=vectors)
    ids = [str(i) for i in ds.item_vocab.ids]
    v = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    users = sorted(set(test["user_id"]) & set(map(str, ds.user_vocab.ids)), key=int)
    model = create_model("tokrec", {}).fit(ds, vectors)
    recs = model.recommend_batch(users, k=100)
    recs = recs.assign(user_id=recs["user_id"].astype(str), item_id=recs["item_id"].astype(str))
    pools = {
        u: g.sort_values("rank")["item_id"].map(context.index).to_numpy() for u, g in recs.groupby("user_id")
    }
    seen = train.groupby("user_id")["item_id"].agg(lambda s: set(map(str, s)))
    pop = np.bincount(ds.item_idx, minlength=ds.n_items).astype(np.float64)
    rng = np.random.default_rng(args.seed)

    def random_lists(weights: np.ndarray | None) -> dict[str, np.ndarray]:
        out = {}
        for u in users:
            allowed = np.array([i not in seen.get(u, set()) for i in ids])
            p = allowed * (1.0 if weights is None else weights)
            out[u] = rng.choice(len(ids), K, replace=False, p=p / p.sum())
        return out

    candidates = {
        "the default model (tokrec, shipped configuration)": {u: pools[u][:K] for u in users},
        "random unseen items, uniform": random_lists(None),
        "random unseen items, by popularity": random_lists(pop),
        "most dispersed 10 of the model's top 30": {u: dispersed(pools[u][:30], v, K) for u in users},
        "most dispersed 10 of the model's top 100": {u: dispersed(pools[u][:100], v, K) for u in users},
    }
    print("| lists (943 users, k = 10) | ILD@10 | vs the model | NDCG@10 (test, for scale) |")
    print("| --- | ---: | ---: | ---: |")
    base = None
    for name, lists in candidates.items():
        f = frame(lists, ids)
        clean, _ = clean_recommendations(f, train)
        ild = intra_list_diversity(clean, context, K)
        base = ild if base is None else base
        ndcg = score_recommendations(f, test[test["user_id"].isin(users)], train, k=K)["ndcg@10"]
        print(f"| {name} | {ild:.3f} | {ild / base - 1:+.1%} | {ndcg:.4f} |")
    print(f"| the issue's target: the model's ILD + 20% | {1.2 * base:.3f} | +20.0% | ≥ 95% of the model's |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
