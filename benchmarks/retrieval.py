"""Does retrieval change what the recommended model recommends? `tokrec` on a large catalog against itself
scoring every item.

Loads a fitted model directory (e.g. ``benchmarks/scale.py``'s ``WORKDIR/model-N/model``), and for a seeded draw
of its users ranks the top 10 twice through the one scoring path (``score_rows`` + ``top_k_rows``): as served
(candidate retrieval and the exact blend over the candidates, ``tokrec.models.retrieval``), and with retrieval
off (``with_scoring(retrieval_min_items=...)``: every item scored). Prints the share of the whole-catalog top 10
that retrieval returns, and the time per query of each (one BLAS thread, as the service runs); with ``--threads 2``
also the queries per second of each path when two Python threads score at once (what one server process does with two
requests in flight: a path that holds the GIL between many small calls gains little from the second thread).

    python benchmarks/retrieval.py /work/scale/model-200000/model --users 100 [--threads 2]
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("model", help="a fitted tokrec model directory")
    p.add_argument("--users", type=int, default=100)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument(
        "--threads", type=int, default=1, help="also measure queries/s with this many threads at once"
    )
    args = p.parse_args()
    from threadpoolctl import threadpool_limits

    from tokrec.models import load_model
    from tokrec.models.base import top_k_rows

    threadpool_limits(1)
    served = load_model(args.model)
    t0 = time.perf_counter()
    served.prepare()
    prep = time.perf_counter() - t0
    full = served.with_scoring(retrieval_min_items=10**9)
    users = np.random.default_rng(args.seed).choice(sorted(served.seen_), args.users, replace=False)
    agree, t_served, t_full = [], 0.0, 0.0
    for u in users:
        seen = served.seen_[int(u)]
        t0 = time.perf_counter()
        a = top_k_rows(served.score_rows(int(u)), args.k, drop=(seen,))
        t_served += time.perf_counter() - t0
        t0 = time.perf_counter()
        b = top_k_rows(full.score_rows(int(u)), args.k, drop=(seen,))
        t_full += time.perf_counter() - t0
        agree.append(len(set(a) & set(b)) / args.k)
    n = len(users)
    print(
        f"{served.n_items:,} items, retrieval {'on' if served.uses_retrieval() else 'OFF'} (prepared in {prep:.1f}s); "
        f"{n} users: top-{args.k} agreement with every item scored {np.mean(agree):.4f} (lowest {np.min(agree):.1f}); "
        f"ms/query retrieval {t_served / n * 1e3:.1f}, every item {t_full / n * 1e3:.1f}"
    )
    if args.threads > 1:
        for name, model in (("retrieval", served), ("every item", full)):
            one, many = _throughput(model, users, 1), _throughput(model, users, args.threads)
            print(
                f"{name}: {one:.0f} queries/s on 1 thread, {many:.0f} on {args.threads} (x{many / one:.2f})"
            )


def _throughput(model, users, threads: int) -> float:
    """Queries per second when ``threads`` Python threads score the users at once."""
    import threading

    parts = [users[i::threads] for i in range(threads)]

    def run(us) -> None:
        for u in us:
            model.score_rows(int(u))

    workers = [threading.Thread(target=run, args=(us,)) for us in parts]
    t0 = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return len(users) / (time.perf_counter() - t0)


if __name__ == "__main__":
    main()
