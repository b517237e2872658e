#!/usr/bin/env python
"""Does the synthetic data's behaviour follow its text? A zero-shot check with the bundled MiniLM.

For each user of ``make_synthetic`` the last event is held out; the other events are the history.
Items are ranked by the cosine between their MiniLM text vector and the mean vector of the user's
last 3 history items (no training at all), the history excluded, and compared with popularity
(counted over the histories) and with random ranking, on the same users:

    .venv/bin/python benchmarks/synthetic_text_signal.py [--items 600] [--users 300] [--domain movies]

Prints HR@10 / NDCG@10 of each ranking and the text-to-popularity and text-to-random ratios.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from tokrec.data.synthetic import make_synthetic


def metrics(ranks: np.ndarray, k: int = 10) -> tuple[float, float]:
    """HR@k and NDCG@k from the 0-based rank of each user's held-out item."""
    hit = ranks < k
    return float(hit.mean()), float(np.where(hit, 1.0 / np.log2(ranks + 2.0), 0.0).mean())


def rank_of(scores: np.ndarray, target: int, seen: np.ndarray) -> int:
    s = scores.astype(np.float64).copy()
    s[seen] = -np.inf
    return int((s > s[target]).sum())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=600)
    ap.add_argument("--users", type=int, default=300)
    ap.add_argument("--domain", default="ecommerce", choices=["ecommerce", "movies"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    from tokrec.features import item_vectors

    ds = make_synthetic(n_items=a.items, n_users=a.users, seed=a.seed, domain=a.domain)
    print(f"{ds.name}: {ds.n_items} items, {ds.n_users} users, {len(ds)} events; {ds.report.summary()}")
    z = item_vectors(ds, cache=None)
    z = z / np.linalg.norm(z, axis=1, keepdims=True).clip(1e-12)
    seqs = [s for s in ds.sequences() if len(s) >= 4]
    popularity = np.bincount(np.concatenate([s[:-1] for s in seqs]), minlength=ds.n_items).astype(np.float64)
    rng = np.random.default_rng(a.seed)
    ranks: dict[str, list[int]] = {"text (MiniLM, last 3 items)": [], "popularity": [], "random": []}
    for s in seqs:
        hist, target = s[:-1], int(s[-1])
        q = z[hist[-3:]].mean(axis=0)
        ranks["text (MiniLM, last 3 items)"].append(rank_of(z @ q, target, hist))
        ranks["popularity"].append(rank_of(popularity + rng.random(ds.n_items) * 1e-6, target, hist))
        ranks["random"].append(rank_of(rng.random(ds.n_items), target, hist))
    print(
        f"users evaluated: {len(seqs)} (leave-last-out, full ranking of {ds.n_items} items, history excluded)"
    )
    results = {name: metrics(np.asarray(r)) for name, r in ranks.items()}
    for name, (hr, ndcg) in results.items():
        print(f"{name:<30} HR@10 {hr:.4f}  NDCG@10 {ndcg:.4f}")
    text, pop, rnd = (results[n][1] for n in ranks)
    print(
        f"NDCG@10 ratio text/popularity: {text / max(pop, 1e-12):.2f}x; text/random: {text / max(rnd, 1e-12):.2f}x"
    )


if __name__ == "__main__":
    main()
