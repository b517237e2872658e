"""Replay simulation of bandit policies on MovieLens 100K: cumulative reward and regret, new items explored.

    PYTHONPATH=src python benchmarks/bandit_sim.py [--shared ../shared] [--rounds 4000] [--k 10] [--out DIR]

Protocol. Events are cut at the median timestamp: the first half is history (each user's profile, the
popularity counts, and a warm start for the learning policies), the second half the future. Rounds follow
the future events in time order: at each, that event's user arrives (active users arrive more often), the
policy shows ``k`` items the user has not had, and the round's reward is 1 when at least one shown item is
among the user's remaining future events (each future item pays once; a paid item joins the user's
history). The context is the user's ``Z_U``: the mean MiniLM vector of the user's history items
(``tokrec.features.item_vectors``, the default encoder); arm features are the item vectors
(``tokrec.bandits``, 16-dimensional PCA). Every shown item is fed back (1 = among the future events, 0 =
not), so the learning policies learn online.

Policies. ``random``; ``popularity`` (history counts plus rewards so far); ``greedy``: hybrid LinUCB
exploiting its mean only (``explore_share=0``); ``linucb``: hybrid LinUCB ranking by its upper confidence
bound (``explore_share=1``); ``ts``: linear Thompson sampling over the shared model only (``mode="shared"``);
``ts-hybrid``: Thompson sampling over the hybrid model (shared plus per-item coefficients, as LinUCB's). The three learning policies are warm-started
identically by replaying history: each of up to ``--warm`` history events as reward 1 for its item and
reward 0 for one random item the user never had. Their scale (UCB width, TS posterior scale) is the
package default 0.5 unless ``--choose`` picks it from 0.1 / 0.25 / 0.5 / 1 on a validation window that
ends where the test window's history ends (history before the 25% time quantile, future up to the
median; ``--choose-rounds`` rounds), so no test-window event is used to choose. Regret is against an oracle paid whenever the user has any remaining future
item (an upper bound no policy can reach with unknown futures).

A new item is one with no history event; the script counts the new items each policy showed, and those
LinUCB / TS showed that greedy never did.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from tokrec.bandits import BanditPolicy
from tokrec.data.movielens import load_ml100k
from tokrec.features import item_vectors

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", help="the shared folder (default: ../shared or $TOKREC_SHARED)")
    ap.add_argument("--rounds", type=int, default=4000)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument(
        "--warm", type=int, default=5000, help="history events replayed to warm-start the learners"
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--alpha-linucb", type=float, default=0.5, help="LinUCB width (default: the package's)")
    ap.add_argument("--alpha-ts", type=float, default=0.5, help="TS posterior scale (default: the package's)")
    ap.add_argument(
        "--choose",
        action="store_true",
        help="choose both scales on a validation window before the test window",
    )
    ap.add_argument("--choose-rounds", type=int, default=1500, help="rounds per validation replay")
    ap.add_argument("--out", default="runs/bandit_sim")
    args = ap.parse_args(argv)
    from threadpoolctl import threadpool_limits

    # many tiny matrix products: one BLAS thread is ~10x faster than several contending ones
    threadpool_limits(1)
    shared = Path(args.shared or os.environ.get("TOKREC_SHARED") or REPO.parent / "shared")
    folder = shared / "data" / "ml-100k"
    if not (folder / "u.data").is_file():
        sys.exit(f"{folder}/u.data not found (pass --shared)")
    t0 = time.perf_counter()
    ds = load_ml100k(folder)
    vectors = item_vectors(ds).astype(np.float64)
    ids = list(ds.item_vocab.ids)
    inter = ds.interactions.sort_values(["timestamp", "user_id", "item_id"], kind="mergesort")

    def run_window(cut: float, upper: float, policies: dict, rounds: int) -> tuple[dict, np.ndarray, int]:
        """One replay: history = events up to ``cut``, future = events in (``cut``, ``upper``]."""
        ts = inter["timestamp"]
        hist, fut = inter[ts <= cut], inter[(ts > cut) & (ts <= upper)]
        item_row = {i: j for j, i in enumerate(ids)}
        n_items = len(ids)
        history: dict[str, set[int]] = {}
        for u, i in zip(hist["user_id"], hist["item_id"], strict=True):
            history.setdefault(u, set()).add(item_row[i])
        future: dict[str, set[int]] = {}
        for u, i in zip(fut["user_id"], fut["item_id"], strict=True):
            if item_row[i] not in history.get(u, set()):
                future.setdefault(u, set()).add(item_row[i])
        pop = np.bincount([item_row[i] for i in hist["item_id"]], minlength=n_items).astype(float)
        new_items = pop == 0
        arrivals = fut["user_id"].tolist()[:rounds]
        unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
        global_mean = unit.mean(axis=0)
        print(
            f"history {len(hist)} events, future {len(fut)}; {int(new_items.sum())} new items; {len(arrivals)} rounds of k={args.k}",
            file=sys.stderr,
        )

        def context(hist_rows: set[int]) -> np.ndarray:
            return unit[sorted(hist_rows)].mean(axis=0) if hist_rows else global_mean

        rng0 = np.random.default_rng(args.seed)
        warm_rows = rng0.choice(len(hist), size=min(args.warm, len(hist)), replace=False)
        warm = [(hist["user_id"].iloc[j], item_row[hist["item_id"].iloc[j]]) for j in sorted(warm_rows)]
        warm_neg = []
        for u, _ in warm:
            while True:
                j = int(rng0.integers(n_items))
                if j not in history.get(u, set()):
                    warm_neg.append(j)
                    break

        def learner(config: dict) -> BanditPolicy:
            p = BanditPolicy(dict(config, seed=args.seed)).fit_items(ids, vectors)
            for (u, pos), neg in zip(warm, warm_neg, strict=True):
                c = context(history.get(u, set()))
                p.update(ids[pos], c, 1.0)
                p.update(ids[neg], c, 0.0)
            return p

        results = {}
        for name, spec in policies.items():
            t = time.perf_counter()
            rng = np.random.default_rng(args.seed + 1)
            hist_u = {u: set(s) for u, s in history.items()}
            fut_u = {u: set(s) for u, s in future.items()}
            counts = pop.copy()
            policy = learner(spec[0]) if spec else None
            rewards, oracle, shown = (
                np.zeros(len(arrivals)),
                np.zeros(len(arrivals)),
                np.zeros(n_items, dtype=bool),
            )
            for t_, u in enumerate(arrivals):
                seen = hist_u.setdefault(u, set())
                remaining = fut_u.get(u, set())
                oracle[t_] = 1.0 if remaining else 0.0
                allowed = np.ones(n_items, dtype=bool)
                allowed[list(seen)] = False
                cand = np.flatnonzero(allowed)
                c = context(seen)
                if name == "random":
                    rows = rng.choice(cand, size=args.k, replace=False)
                elif name == "popularity":
                    rows = cand[np.lexsort((cand, -counts[cand]))[: args.k]]
                else:
                    assert policy is not None and spec is not None
                    slate = policy.select(c, [ids[j] for j in cand], k=args.k, explore_share=spec[1])
                    rows = np.array([item_row[s.item_id] for s in slate])
                shown[rows] = True
                hits = [j for j in rows if j in remaining]
                rewards[t_] = 1.0 if hits else 0.0
                if policy is not None:
                    for j in rows:
                        policy.update(ids[j], c, 1.0 if j in remaining else 0.0)
                for j in hits:
                    remaining.discard(j)
                    seen.add(j)
                    counts[j] += 1
            results[name] = {
                "rewards": rewards,
                "oracle": oracle,
                "shown": shown,
                "seconds": time.perf_counter() - t,
            }
            print(
                f"{name}: reward {rewards.sum():.0f} / {len(arrivals)} in {results[name]['seconds']:.0f}s",
                file=sys.stderr,
            )
        return results, new_items, len(arrivals)

    alphas = {"linucb": args.alpha_linucb, "ts": args.alpha_ts, "ts-hybrid": args.alpha_ts}
    if args.choose:
        # validation window: history before the 25% time quantile, future up to the median (the test
        # window's history); every candidate scale is replayed there and the best total reward wins
        q25, q50 = inter["timestamp"].quantile(0.25), inter["timestamp"].median()
        grid = (0.1, 0.25, 0.5, 1.0)
        for name, config in (
            ("linucb", {"policy": "linucb", "mode": "hybrid"}),
            ("ts", {"policy": "ts", "mode": "shared"}),
            ("ts-hybrid", {"policy": "ts", "mode": "hybrid"}),
        ):
            scores = {}
            for a in grid:
                res, _, _ = run_window(q25, q50, {name: (dict(config, alpha=a), 1.0)}, args.choose_rounds)
                scores[a] = float(res[name]["rewards"].sum())
            alphas[name] = max(grid, key=lambda a: (scores[a], -a))
            print(f"validation {name}: reward by alpha {scores} -> {alphas[name]}", file=sys.stderr)
    policies = {
        "random": None,
        "popularity": None,
        "greedy": ({"policy": "linucb", "mode": "hybrid", "alpha": alphas["linucb"]}, 0.0),
        "linucb": ({"policy": "linucb", "mode": "hybrid", "alpha": alphas["linucb"]}, 1.0),
        "ts": ({"policy": "ts", "mode": "shared", "alpha": alphas["ts"]}, 1.0),
        "ts-hybrid": ({"policy": "ts", "mode": "hybrid", "alpha": alphas["ts-hybrid"]}, 1.0),
    }
    results, new_items, n_rounds = run_window(inter["timestamp"].median(), np.inf, policies, args.rounds)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    greedy_new = results["greedy"]["shown"] & new_items
    table = {}
    print(
        f"\n| policy | cumulative reward ({n_rounds} rounds) | hit rate | regret vs oracle | distinct items shown | new items shown | new items greedy never showed | seconds |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, r in results.items():
        new_shown = r["shown"] & new_items
        beyond = int((new_shown & ~greedy_new).sum())
        row = {
            "reward": float(r["rewards"].sum()),
            "hit_rate": float(r["rewards"].mean()),
            "regret": float((r["oracle"] - r["rewards"]).sum()),
            "distinct_shown": int(r["shown"].sum()),
            "new_shown": int(new_shown.sum()),
            "new_not_by_greedy": beyond,
            "seconds": r["seconds"],
            "curve": np.cumsum(r["rewards"]).tolist(),
        }
        table[name] = row
        print(
            f"| {name} | {row['reward']:.0f} | {row['hit_rate']:.3f} | {row['regret']:.0f} | {row['distinct_shown']} | "
            f"{row['new_shown']} | {beyond if name != 'greedy' else '—'} | {row['seconds']:.0f} |"
        )
    from matplotlib.figure import Figure

    from tokrec.fileio import atomic_write

    fig = Figure(figsize=(13, 4.6), layout="constrained")
    ax1, ax2 = fig.subplots(1, 2)
    x = np.arange(1, n_rounds + 1)
    for name, r in results.items():
        ax1.plot(x, np.cumsum(r["rewards"]), label=name)
        ax2.plot(x, np.cumsum(r["oracle"] - r["rewards"]), label=name)
    ax1.set_title(f"ml-100k replay: cumulative reward (slates of {args.k})")
    ax2.set_title("cumulative regret against the oracle")
    for ax in (ax1, ax2):
        ax.set_xlabel("round (a user arrives)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    atomic_write(out / "bandit_sim.png", lambda t: fig.savefig(t, dpi=110, format="png"))
    (out / "bandit_sim.json").write_text(json.dumps({"args": vars(args), "policies": table}, indent=1))
    print(f"\n{out / 'bandit_sim.png'}; {time.perf_counter() - t0:.0f}s in all", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
