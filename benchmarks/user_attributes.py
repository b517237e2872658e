"""New users described by a user table: which representation of their attributes finds the peers that rank best.

Usage:
    python benchmarks/user_attributes.py [--shared ../shared] [--seeds 0 1 2 3 4] [--neighbours 25 50 100 200 400]

MovieLens 100K's ``warm/train.csv`` with ``u.user`` (age, gender, occupation, zip code); for each seed the
``cold-user`` split (20% of the users held out whole, the split of ``tokrec evaluate --protocol cold-user --seed S``),
the default model ``tokrec`` fitted on its train (shipped configuration), and every held-out user ranked from no
history by each of:

* ``popularity``: the shipped new-user blend (time-aware popularity over the whole log);
* ``peers (table)``: the model's own ``peers`` signal alone (:meth:`TokrecHybrid.peer_scores`: the k users with
  events whose table attributes are closest: age standardised, gender and occupation one-hot; zip codes left out);
* ``peers (MiniLM)``: the same share of the k nearest users' items, the nearest by the cosine of MiniLM vectors
  of a sentence that says the same attributes ("A 24-year-old man, occupation: technician.") -- a stand-in
  computed here, not a path of the library: it asks whether the language model's reading of the attributes
  finds better peers than the attributes themselves.

NDCG@10 against all of each held-out user's events (:func:`tokrec.evaluation.metrics.ndcg_from_scores`, the shared
scorer's definitions), the mean over the seeds and each seed's figure.
"""

from __future__ import annotations

import argparse

import numpy as np
import scipy.sparse as sp

from common import shared_dir
from tokrec.data.loaders import load_dataset
from tokrec.encoders import load_encoder
from tokrec.evaluation.metrics import ndcg_from_scores
from tokrec.evaluation.splits import cold_user_split
from tokrec.features import item_vectors_for
from tokrec.models import create_model


def sentence(row) -> str:
    who = {"M": "man", "F": "woman"}.get(str(row.gender), "person")
    return f"A {row.age}-year-old {who}, occupation: {row.occupation}."


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shared", help="the shared folder (default: ../shared or $TOKREC_SHARED)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--neighbours", type=int, nargs="+", default=[25, 50, 100, 200, 400])
    args = ap.parse_args()
    shared = shared_dir(args.shared)
    s = shared / "data" / "ml-100k-splits"
    ds = load_dataset(s / "items.csv", s / "warm" / "train.csv", users=shared / "data" / "ml-100k" / "u.user")
    vecs = item_vectors_for(ds)
    assert ds.users is not None
    text = load_encoder().encode([sentence(r) for r in ds.users.itertuples()])
    text = text / np.linalg.norm(text, axis=1, keepdims=True)
    row_of = {u: i for i, u in enumerate(ds.users["user_id"])}
    results: dict[str, list[float]] = {}
    for seed in args.seeds:
        split = cold_user_split(ds, fraction=0.2, seed=seed)
        train = split.train
        m = create_model("tokrec").fit(train, vecs)
        test = split.test.interactions
        users = train.user_vocab.encode(sorted(set(test["user_id"])))
        u, i = train.user_vocab.encode(test["user_id"]), train.item_vocab.encode(test["item_id"])
        rel = sp.csr_matrix((np.ones(len(u)), (u, i)), shape=(train.n_users, train.n_items))[users]
        rel.data[:] = 1.0

        def add(name: str, scores: np.ndarray, rel: sp.csr_matrix = rel) -> None:
            results.setdefault(name, []).append(ndcg_from_scores(scores, rel))

        add("popularity", m.new_user_scores(int(m.user_time_.max()))[None, :])
        pool = np.array(sorted(m.seen_), dtype=np.int64)
        ids = train.user_vocab.decode(pool)
        pool_text = text[[row_of[x] for x in ids]]
        query_text = text[[row_of[x] for x in train.user_vocab.decode(users)]]
        sim = query_text @ pool_text.T
        for k in args.neighbours:
            add(f"peers (table), {k}", m.peer_scores(users, k))
            near = np.argpartition(-sim, k - 1, axis=1)[:, :k]
            lm = np.zeros((len(users), train.n_items), dtype=np.float32)
            for r, peers in enumerate(near):
                items = np.concatenate([np.unique(m.seen_[int(p)]) for p in pool[peers]])
                lm[r] = np.bincount(items, minlength=train.n_items) / k
            add(f"peers (MiniLM, stand-in), {k}", lm)
    print(f"| new users, NDCG@10 (seeds {', '.join(map(str, args.seeds))}) | mean | each seed |")
    print("| --- | ---: | --- |")
    for name, v in results.items():
        print(f"| {name} | {np.mean(v):.4f} | {' / '.join(f'{x:.4f}' for x in v)} |")


if __name__ == "__main__":
    main()
