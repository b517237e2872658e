"""A new visitor who gives their attributes, against a known user: per-query time of the recommended model.

Usage:
    python benchmarks/peers_latency.py [--items 200000] [--users 100000] [--queries 50]

A synthetic catalog (``tokrec.data.synthetic.make_synthetic``: N items, U users with 5-30 events each) with a
user table of three attributes (age 18-79, one of 40 countries, one of 3 devices, drawn at random), random
64-dimensional item vectors, and the default model ``tokrec`` fitted with the peers on (``new_user_w_peers`` 1,
``peer_neighbours`` 100: what the tuner weighs on real data). Then, one query at a time through the one scoring path
(``score_rows``, which the service calls), the median and 90th percentile over ``--queries`` queries of:

* a known user (their training history; the reference);
* a visitor with no events and no attributes (the new-user blend: popularity, one vector per query time, kept);
* a visitor with no events who gives age, country and device (their peers searched among every user with events).

Prints each and the ratio of the visitor with attributes to the known user.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from tokrec.data.dataset import Dataset
from tokrec.data.synthetic import make_synthetic
from tokrec.models import create_model


def _timed(fn, n: int) -> tuple[float, float]:
    """Median and 90th percentile of ``n`` calls of ``fn(i)``, milliseconds (one warm-up call first)."""
    fn(0)
    out = []
    for i in range(n):
        t = time.perf_counter()
        fn(i)
        out.append((time.perf_counter() - t) * 1000)
    return float(np.median(out)), float(np.percentile(out, 90))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--items", type=int, default=200_000)
    ap.add_argument("--users", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=50)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    ds = make_synthetic(n_items=args.items, n_users=args.users, events_per_user=(5, 30), seed=1)
    ids = list(ds.user_vocab)
    users = pd.DataFrame(
        {
            "user_id": ids,
            "age": rng.integers(18, 80, len(ids)),
            "country": rng.choice([f"c{i}" for i in range(40)], len(ids)),
            "device": rng.choice(["ios", "android", "web"], len(ids)),
        }
    )
    ds = Dataset(ds.interactions, ds.items, users)
    vectors = rng.normal(size=(ds.n_items, 64)).astype(np.float32)
    t = time.perf_counter()
    model = create_model("tokrec", {"new_user_w_peers": 1.0, "peer_neighbours": 100}).fit(ds, vectors)
    model.prepare()
    print(f"{ds.n_items} items, {ds.n_users} users, {len(ds)} events; fit {time.perf_counter() - t:.0f}s")
    empty = np.empty(0, dtype=np.int64)
    known = rng.choice(ds.n_users, args.queries + 1, replace=False)
    visitors = [
        {"age": int(rng.integers(18, 80)), "country": f"c{rng.integers(40)}", "device": "web"}
        for _ in range(args.queries + 1)
    ]
    rows = {
        "known user (reference)": _timed(lambda i: model.score_rows(int(known[i])), args.queries),
        "visitor, no attributes": _timed(lambda i: model.score_rows(-1, empty), args.queries),
        "visitor with age, country, device": _timed(
            lambda i: model.score_rows(-1, empty, attributes=visitors[i]), args.queries
        ),
    }
    print("| query | median ms | p90 ms |\n| --- | ---: | ---: |")
    for name, (med, p90) in rows.items():
        print(f"| {name} | {med:.2f} | {p90:.2f} |")
    ref = rows["known user (reference)"][0]
    print(
        f"visitor with attributes / known user (median): {rows['visitor with age, country, device'][0] / ref:.2f}x"
    )


if __name__ == "__main__":
    main()
