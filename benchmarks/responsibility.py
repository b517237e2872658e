"""Diversity, calibration and popularity controls on MovieLens 100K warm: trade-off curves and chosen settings.

    PYTHONPATH=src python benchmarks/responsibility.py [--shared ../shared] [--out runs/responsibility] [--no-tune]

The default model ``tokrec`` as the public command fits it (tuned on a validation split of the training file it
is given, ``--tune-budget`` seconds, blend parts ``auto``: what ``tokrec recommend`` does; ``--no-tune``: the
shipped configuration) ranks the whole catalog for each user; each re-ranker of
``tokrec.rerank`` (mmr, dpp, sdpp = dpp on the model's score scale, calibration, popularity = xQuAD, propensity,
tail = a long-tail quota) re-ranks the user's top 100 into a top 10 at weights 0 .. 0.9 (tail: shares 0.1 .. 0.6); mmr, dpp and calibration also within the user's top
30 and top 50 only (``@30``, ``@50``), dpp and sdpp on a finer grid of weights. Every setting (weight, pool) is measured on a validation split cut
from the warm training file (``tokrec.evaluation.splits.validation_split``: each user's last training event),
and the setting of each control is chosen there: the one with the largest gain in the control's goal
(intra-list diversity, lower miscalibration, long-tail share) whose NDCG@10 loss stays within the budget (5%,
5%, 10%). The same settings are then measured on the test file, and the chosen ones reported. Writes ``tradeoffs.png``
(NDCG@10 against each goal, validation and test, chosen weights circled), ``responsibility.json`` and
prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from common import shared_dir
from tokrec.data.loaders import load_dataset, load_interactions
from tokrec.evaluation.responsibility import tradeoff_curves
from tokrec.evaluation.splits import given_split, validation_split
from tokrec.features import item_vectors
from tokrec.models.registry import create_model
from tokrec.rerank import RerankContext
from tokrec.tuning import fit_tuned, tunable, tune

K = 10
POOL = 100
WEIGHTS = (0.0, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
DPP_WEIGHTS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.9)
#: ``tail``'s weight is the long-tail share it guarantees: a tenth of the list per step
TAIL_WEIGHTS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6)
#: control -> (goal metric, "up"/"down", NDCG@10 loss budget)
CONTROLS = {
    "mmr": ("ild", "up", 0.05),
    "dpp": ("ild", "up", 0.05),
    "sdpp": ("ild", "up", 0.05),
    "calibration": ("miscalibration", "down", 0.05),
    "popularity": ("long_tail", "up", 0.10),
    "propensity": ("long_tail", "up", 0.10),
    "tail": ("long_tail", "up", 0.10),
}
#: what each setting records (``tokrec.evaluation.responsibility.tradeoff_curves`` row keys)
FIGURES = ("ndcg", "ild", "miscalibration", "long_tail", "arp", "coverage", "gini", "category_coverage")
#: control -> pools measured (POOL = the whole top 100, no ``@``)
POOLS = {"mmr": (30, 50, POOL), "dpp": (30, 50, POOL), "calibration": (30, 50, POOL)}


def settings(control: str) -> list[tuple[float, int]]:
    """(weight, pool) pairs measured for ``control``; weight 0 (the base list) once."""
    weights = {"dpp": DPP_WEIGHTS, "sdpp": DPP_WEIGHTS, "tail": TAIL_WEIGHTS}.get(control, WEIGHTS)
    return [(0.0, POOL)] + [(w, p) for p in POOLS.get(control, (POOL,)) for w in weights if w > 0]


def key(weight: float, pool: int) -> str:
    """The setting as written after ``control:`` in a ``--rerank`` spec: ``0.6`` or ``0.65@50``."""
    return f"{weight:g}" if pool == POOL else f"{weight:g}@{pool}"


def fit_base(split, vectors: np.ndarray, model_name: str, budget: float | None) -> tuple[Any, str]:
    """The base model fitted on ``split.train`` as ``tokrec recommend`` fits it: tuned on a validation split cut
    from ``split.train`` alone (``budget`` seconds, parts ``auto``), or the shipped configuration when
    ``budget`` is None. Returns the model and the tuning table (empty when not tuned)."""
    if budget is None or not tunable(model_name):
        return create_model(model_name, {}).fit(split.train, vectors), ""
    result = tune(model_name, split.train, vectors, budget_s=budget, parts="auto")
    return fit_tuned(result, split.train, vectors), result.table()


def measure(
    split, vectors: np.ndarray, model_name: str, budget: float | None = None
) -> dict[str, dict[str, dict[str, float]]]:
    """Every control at every setting on ``split``: {control: {setting key: figures}}."""
    model, table = fit_base(split, vectors, model_name, budget)
    if table:
        print(table, file=sys.stderr)
    recs = model.recommend_batch(split.test_users, k=POOL)
    # the re-rankers: many tiny matrix products, where one BLAS thread is ~10x faster than several contending
    # ones (the fit above keeps every thread, as the command does)
    with threadpool_limits(1):
        return _measure_reranked(split, recs, vectors)


def _measure_reranked(split, recs, vectors: np.ndarray) -> dict[str, dict[str, dict[str, float]]]:
    context = RerankContext.from_train(split.train.interactions, split.train.items, vectors=vectors)
    out: dict[str, dict[str, dict[str, float]]] = {}
    for control in CONTROLS:
        got = {}
        for pool in POOLS.get(control, (POOL,)):
            weights = [
                w for w, p in settings(control) if p == pool
            ]  # weight 0 (the base list) with POOL only
            rows = tradeoff_curves(
                recs, split, context, [control], K, weights, None if pool == POOL else pool
            )
            got.update({key(row["weight"], pool): {m: row[m] for m in FIGURES} for row in rows})
        out[control] = {key(w, p): got[key(w, p)] for w, p in settings(control)}
    return out


def choose(curves: dict[str, dict[str, float]], goal: str, direction: str, budget: float) -> str:
    """The setting with the best goal whose NDCG loss against weight 0 is within ``budget`` (ties: the
    smaller weight)."""
    base = curves["0"]
    ok = [w for w, m in curves.items() if m["ndcg"] >= (1 - budget) * base["ndcg"]]
    sign = 1.0 if direction == "up" else -1.0
    return max(ok, key=lambda w: (sign * curves[w][goal], -float(w.split("@")[0])))


def plot(val: dict, test: dict, chosen: dict[str, str], path: Path) -> None:
    from matplotlib.figure import Figure

    cols = 4
    rows = -(-len(CONTROLS) // cols)
    fig = Figure(figsize=(5.2 * cols, 4.6 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax in axes[len(CONTROLS) :]:
        ax.set_visible(False)
    for ax, (control, (goal, _, budget)) in zip(axes, CONTROLS.items(), strict=False):
        pools = POOLS.get(control, (POOL,))
        for colour, pool in enumerate(pools):
            keys = ["0"] + [key(w, p) for w, p in settings(control) if p == pool and w > 0]
            for name, data, style in (("validation", val, "--"), ("test", test, "-")):
                xs = [data[control][k][goal] for k in keys]
                ys = [data[control][k]["ndcg"] for k in keys]
                label = name if len(pools) == 1 else f"{name}, top {pool}"
                ax.plot(xs, ys, style, marker="o", markersize=3, color=f"C{colour}", label=label)
                for k, x, y in zip(keys, xs, ys, strict=True):
                    if (
                        k.split("@")[0] in ("0.2", "0.5", "0.9" if control != "tail" else "0.4")
                        and pool == POOL
                    ):
                        ax.annotate(k, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
        for data in (val, test):
            c = chosen[control]
            ax.scatter(
                [data[control][c][goal]],
                [data[control][c]["ndcg"]],
                s=160,
                facecolors="none",
                edgecolors="red",
            )
        base = test[control]["0"]["ndcg"]
        ax.axhline((1 - budget) * base, color="grey", linestyle=":", label=f"test NDCG -{budget:.0%}")
        ax.set_xlabel(
            {
                "ild": "intra-list diversity@10 (LM cosine distance)",
                "miscalibration": "miscalibration@10 (KL)",
                "long_tail": "long-tail share@10",
            }[goal]
        )
        ax.set_ylabel("NDCG@10")
        grid = "share 0 .. 0.6" if control == "tail" else "weight 0 .. 0.9"
        ax.set_title(f"{control}: {grid} (chosen circled)", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    from tokrec.fileio import atomic_write

    atomic_write(path, lambda t: fig.savefig(t, dpi=110, format="png"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", help="the shared folder (default: ../shared or $TOKREC_SHARED)")
    ap.add_argument("--out", default="runs/responsibility", help="folder for the PNG and JSON")
    ap.add_argument("--model", default="tokrec", help="registry model (default: tokrec)")
    ap.add_argument(
        "--tune-budget",
        type=float,
        default=120.0,
        help="seconds of tuning per fit, as the command's flag (120)",
    )
    ap.add_argument("--no-tune", action="store_true", help="the model's shipped configuration (no tuning)")
    args = ap.parse_args(argv)
    shared = shared_dir(args.shared)
    d = shared / "data" / "ml-100k-splits"
    t0 = time.perf_counter()
    ds = load_dataset(d / "items.csv", d / "warm" / "train.csv")
    test_split = given_split(ds, load_interactions(d / "warm" / "test.csv"), source="warm/test.csv")
    val_split = validation_split(test_split)
    vectors = item_vectors(ds)
    print(f"validation: {val_split.summary()}\ntest: {test_split.summary()}", file=sys.stderr)
    budget = None if args.no_tune else args.tune_budget
    val = measure(val_split, vectors, args.model, budget)
    test = measure(test_split, vectors, args.model, budget)
    chosen = {c: choose(val[c], goal, direction, budget) for c, (goal, direction, budget) in CONTROLS.items()}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    plot(val, test, chosen, out / "tradeoffs.png")
    rows = []
    print(
        "\n| control | setting (chosen on validation) | validation NDCG@10 / goal change | NDCG@10 base → re-ranked | change | goal | base → re-ranked | change | target |"
    )
    print("| --- | ---: | ---: | ---: | ---: | --- | ---: | ---: | --- |")
    for control, (goal, _, _) in CONTROLS.items():
        w = chosen[control]
        b, r = test[control]["0"], test[control][w]
        vb, vr = val[control]["0"], val[control][w]
        vchange = f"{vr['ndcg'] / vb['ndcg'] - 1:+.1%} / {vr[goal] / vb[goal] - 1:+.1%}"
        dn = r["ndcg"] / b["ndcg"] - 1
        dg = r[goal] / b[goal] - 1
        target = {
            "mmr": "ILD +20%, NDCG -5% at most",
            "dpp": "ILD +20%, NDCG -5% at most",
            "sdpp": "ILD +20%, NDCG -5% at most",
            "calibration": "KL halved, NDCG -5% at most",
            "popularity": "long tail x2, NDCG -10% at most",
            "propensity": "long tail x2, NDCG -10% at most",
            "tail": "long tail x2, NDCG -10% at most",
        }[control]
        print(
            f"| {control} | {control}:{w} | {vchange} | {b['ndcg']:.4f} → {r['ndcg']:.4f} | {dn:+.1%} | {goal} | {b[goal]:.4f} → {r[goal]:.4f} | {dg:+.1%} | {target} |"
        )
        rows.append({"control": control, "weight": w, "base": b, "reranked": r})
    data = {
        "model": args.model,
        "tuned": budget is not None,
        "tune_budget": budget,
        "k": K,
        "pool": POOL,
        "settings": {c: [key(w, p) for w, p in settings(c)] for c in CONTROLS},
        "chosen": chosen,
        "validation": val,
        "test": test,
        "rows": rows,
    }
    (out / "responsibility.json").write_text(json.dumps(data, indent=1, default=float))
    print(
        f"\n{out / 'tradeoffs.png'}, {out / 'responsibility.json'}; {time.perf_counter() - t0:.0f}s",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
