"""Evaluation reports: ``metrics.json``, ``report.md`` / ``report.html``, PNG plots and recommendation CSVs.

Every file is written atomically (a temporary file in the same folder renamed into place). Plots use
matplotlib's object API with the Agg canvas (no display, no global pyplot state).
"""

from __future__ import annotations

import html
import json
import math
import os
import platform
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Any

from tokrec.errors import ConfigError
from tokrec.evaluation.metrics import ACCURACY_METRICS
from tokrec.evaluation.protocol import ProtocolResult, main_k, sampling_label
from tokrec.fileio import atomic_write

LABELS = {
    "ndcg": "NDCG",
    "recall": "Recall",
    "hr": "HR",
    "mrr": "MRR",
    "map": "MAP",
    "coverage": "Coverage",
    "novelty": "Novelty (bits)",
    "arp": "ARP",
    "long_tail": "Long-tail share",
}
#: a figure cell: 4 decimals for metrics, 2 for seconds
METRIC_FMT = "{:.4f}"
SECONDS_FMT = "{:.2f}"


def _to_csv(df: Any, path: Path) -> None:
    df.to_csv(path, index=False)


def machine_description() -> str:
    """CPU model, core count, Python and platform, for reports."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, {platform.system()}"


def fmt_metric(v: Any) -> str:
    return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else METRIC_FMT.format(v)


def fmt_seconds(v: Any) -> str:
    return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else SECONDS_FMT.format(v)


# ---- JSON ------------------------------------------------------------------------------------------
def _nan_to_none(v: Any) -> Any:
    return None if isinstance(v, float) and math.isnan(v) else v


def results_to_json(results: Sequence[ProtocolResult], *, dataset: str, **extra: Any) -> dict[str, Any]:
    """Every figure of ``results`` as one JSON-serialisable dict (the content of ``metrics.json``)."""
    from tokrec import __version__

    ks = sorted({k for r in results for k in r.ks})
    out: dict[str, Any] = {
        "tokrec_version": __version__,
        "created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": machine_description(),
        "dataset": dataset,
        "k": ks,
        "main_k": main_k(ks),
        "protocols": {},
        **extra,
    }
    for r in results:
        models = {}
        for run in r.runs:
            models[run.model] = {
                "config": run.config,
                "ranking": "full",
                "metrics": {k: _nan_to_none(v) for k, v in run.metrics.items()},
                "sampled_metrics": run.sampled_metrics,
                "tune_seconds": _nan_to_none(run.tune_seconds),
                "fit_seconds": _nan_to_none(run.fit_seconds),
                "recommend_seconds": _nan_to_none(run.recommend_seconds),
                "popularity_deciles": run.popularity_deciles,
                "groups": [{k: _nan_to_none(v) for k, v in g.items()} for g in run.groups],
                "rerank": run.rerank,
                "rerank_asked": run.rerank_asked,
                "rerank_validation": run.rerank_validation,
                "tradeoffs": [{k: _nan_to_none(v) for k, v in row.items()} for row in run.tradeoffs],
                "recs_file": None if run.recs is None else f"recs/{r.name}/{run.model}.csv",
                "error": run.error,
            }
        out["protocols"][r.name] = {
            "split": r.split.summary(),
            "ranking": ["full"] + ([sampling_label(r.sampled_negatives)] if r.sampled_negatives else []),
            "models": models,
            "paired": {
                "reference": r.reference,
                "metric": f"ndcg@{main_k(r.ks)}",
                "models": {m: {k: _nan_to_none(v) for k, v in c.items()} for m, c in r.paired.items()},
            },
        }
    return out


# ---- tables ----------------------------------------------------------------------------------------
Table = tuple[list[str], list[list[str]]]


def _scored_runs(result: ProtocolResult, sampled: bool) -> Iterator[tuple[Any, dict[str, Any]]]:
    """``(run, its metrics)`` of every run that did not fail (sampled metrics with ``sampled``)."""
    for run in result.runs:
        if run.error:
            continue
        m = run.sampled_metrics if sampled else run.metrics
        assert m is not None
        yield run, m


def main_table(result: ProtocolResult, k: int, *, sampled: bool = False) -> Table:
    """One row per model at cut-off ``k``: accuracy, beyond-accuracy and timings."""
    head = ["model"] + [f"{LABELS[m]}@{k}" for m in ACCURACY_METRICS] + [f"NDCG@{k} 95% CI"]
    head += [
        f"Coverage@{k}",
        f"Novelty@{k}",
        f"ARP@{k}",
        f"Long-tail@{k}",
        f"Tied@{k}",
        "tune s",
        "fit s",
        "recommend s",
    ]
    rows = []
    for run, m in _scored_runs(result, sampled):
        keys = [f"{x}@{k}" for x in (*ACCURACY_METRICS, "coverage", "novelty", "arp", "long_tail", "tied")]
        lo, hi = m.get(f"ndcg@{k}_ci_low"), m.get(f"ndcg@{k}_ci_high")
        ci = "—" if lo is None or hi is None else f"{fmt_metric(lo)}–{fmt_metric(hi)}"
        rows.append(
            [_label(run)]
            + [fmt_metric(m.get(key)) for key in keys[: len(ACCURACY_METRICS)]]
            + [ci]
            + [fmt_metric(m.get(key)) for key in keys[len(ACCURACY_METRICS) :]]
            + [
                fmt_seconds(run.tune_seconds),
                fmt_seconds(run.fit_seconds),
                fmt_seconds(run.recommend_seconds),
            ]
        )
    return head, rows


def paired_table(result: ProtocolResult, k: int) -> Table:
    """One row per model compared with the reference: its NDCG@k, the mean difference over the same test users
    with its paired 95% bootstrap interval, and how many users each side ranks better."""
    ref = result.reference
    head = [
        "model",
        f"NDCG@{k}",
        f"minus {ref}",
        "95% interval",
        "resolved",
        f"users better / worse than {ref}",
    ]
    ndcg = {run.model: run.metrics.get(f"ndcg@{k}") for run in result.runs if not run.error}
    rows = []
    for name, c in result.paired.items():
        lo, hi = c["ci_low"], c["ci_high"]
        rows.append(
            [name, fmt_metric(ndcg.get(name)), f"{c['diff']:+.4f}", f"{lo:+.4f} to {hi:+.4f}"]
            + ["yes" if c["resolved"] else "no", f"{c['higher']} / {c['lower']}"]
        )
    return head, rows


def paired_summary(result: ProtocolResult, k: int) -> str:
    """One line per compared model: the difference with the reference and whether its interval excludes 0."""
    lines = [
        f"each model minus {result.reference}, NDCG@{k} over the same test users (95% paired bootstrap):"
    ]
    for name, c in result.paired.items():
        verdict = "resolved" if c["resolved"] else "not resolved (the interval holds 0)"
        lines.append(f"  {name}: {c['diff']:+.4f} ({c['ci_low']:+.4f} to {c['ci_high']:+.4f}), {verdict}")
    return "\n".join(lines)


def _label(run: Any) -> str:
    """The model's name, with the re-ranking applied (and the spec asked for, when validation chose it)."""
    if not run.rerank:
        return str(run.model)
    asked = f", chosen on validation for {run.rerank_asked}" if run.rerank_asked else ""
    return f"{run.model} ({run.rerank}{asked})"


def responsibility_table(result: ProtocolResult, k: int) -> Table:
    """One row per model: intra-list diversity, category coverage, miscalibration, exposure Gini, ARP,
    long-tail share at ``k``."""
    head = ["model", f"ILD@{k}", f"Category coverage@{k}", f"Miscalibration@{k}", f"Gini@{k}", f"ARP@{k}"]
    head.append(f"Long-tail@{k}")
    rows = []
    for run in result.runs:
        if run.error:
            continue
        m = run.metrics
        name = _label(run)
        keys = ("ild", "category_coverage", "miscalibration", "gini", "arp", "long_tail")
        rows.append([name] + [fmt_metric(m.get(f"{x}@{k}")) for x in keys])
    return head, rows


GOAL_LABELS = {
    "ild": "intra-list diversity",
    "miscalibration": "miscalibration (KL)",
    "long_tail": "long-tail share",
}


def tradeoffs_table(result: ProtocolResult, k: int) -> Table:
    """One row per model, re-ranker and weight: NDCG@k and the re-ranker's goal, each with its change against
    the model's own list (weight 0)."""
    head = [
        "model",
        "re-ranker",
        "weight",
        f"NDCG@{k}",
        "NDCG change",
        "NDCG difference, 95% paired interval",
    ]
    head += ["goal", "value", "goal change", f"Coverage@{k}"]
    rows = []
    for run in result.runs:
        base: dict[str, dict[str, Any]] = {}
        for row in run.tradeoffs:
            b, goal = base.setdefault(row["control"], row), row["goal"]
            paired = "—"
            if row.get("ndcg_diff_low") is not None and row["weight"] > 0:
                paired = (
                    f"{row['ndcg_diff']:+.4f} ({row['ndcg_diff_low']:+.4f} to {row['ndcg_diff_high']:+.4f})"
                )
            rows.append(
                [run.model, row["control"], f"{row['weight']:g}", fmt_metric(row["ndcg"])]
                + [_change(row["ndcg"], b["ndcg"]), paired, GOAL_LABELS[goal], fmt_metric(row[goal])]
                + [_change(row[goal], b[goal]), fmt_metric(row["coverage"])]
            )
    return head, rows


def _change(new: float | None, old: float | None) -> str:
    """``new`` against ``old`` as a signed percentage; a dash when ``old`` is 0 or missing."""
    return "—" if not old or new is None else f"{new / old - 1:+.1%}"


def groups_table(result: ProtocolResult, k: int) -> Table:
    """NDCG@k per user group (rows) and model (columns), with 95% bootstrap intervals."""
    runs = [r for r in result.runs if not r.error and r.groups]
    head = ["grouping", "group", "users"] + [f"{r.model} NDCG@{k} (95% CI)" for r in runs]
    keyed: dict[tuple[str, str], list[str]] = {}
    for j, run in enumerate(runs):
        for g in run.groups:
            key = (str(g["grouping"]), str(g["group"]))
            row = keyed.setdefault(key, [key[0], key[1], str(g["users"])] + ["—"] * len(runs))
            row[3 + j] = (
                f"{fmt_metric(g.get(f'ndcg@{k}'))} ({fmt_metric(g['ci_low'])}–{fmt_metric(g['ci_high'])})"
            )
    return head, list(keyed.values())


def groups_summary(result: ProtocolResult, k: int) -> str:
    """One sentence per grouping: the best and worst group of the first model and whether their
    intervals overlap."""
    runs = [r for r in result.runs if not r.error and r.groups]
    if not runs:
        return ""
    run = runs[0]
    parts = []
    for grouping in dict.fromkeys(str(g["grouping"]) for g in run.groups):
        gs = [g for g in run.groups if g["grouping"] == grouping and int(g["users"]) >= 20]
        if len(gs) < 2:
            continue
        best = max(gs, key=lambda g: g[f"ndcg@{k}"])
        worst = min(gs, key=lambda g: g[f"ndcg@{k}"])
        apart = worst["ci_high"] < best["ci_low"]
        parts.append(
            f"by {grouping}, {best['group']} users get NDCG@{k} {fmt_metric(best[f'ndcg@{k}'])} and "
            f"{worst['group']} {fmt_metric(worst[f'ndcg@{k}'])} "
            + (
                "(95% intervals apart)"
                if apart
                else "(95% intervals overlap: no gap these test users resolve)"
            )
        )
    head = f"{run.model}, best and worst group of 20+ users (one comparison per grouping; with many groups "
    head += "a chance gap is likelier): "
    return head + "; ".join(parts) + "." if parts else ""


def by_k_table(result: ProtocolResult, *, sampled: bool = False) -> Table:
    """NDCG@K and Recall@K of every model at every K."""
    ks = result.ks
    head = ["model"] + [f"NDCG@{k}" for k in ks] + [f"Recall@{k}" for k in ks]
    rows = []
    for run, m in _scored_runs(result, sampled):
        rows.append(
            [run.model]
            + [fmt_metric(m[f"ndcg@{k}"]) for k in ks]
            + [fmt_metric(m[f"recall@{k}"]) for k in ks]
        )
    return head, rows


# ---- plots -----------------------------------------------------------------------------------------
def _figure(n_panels: int, width: float = 6.0, height: float = 4.2) -> Any:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * n_panels, height), layout="constrained")
    axes = fig.subplots(1, n_panels, squeeze=False)[0]
    return fig, axes


def _save(fig: Any, path: Path) -> Path:
    return atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))


def _colors(results: Sequence[ProtocolResult]) -> dict[str, Any]:
    """One colour per model, the same in every plot."""
    from matplotlib import colormaps

    names: list[str] = []
    for r in results:
        names += [run.model for run in r.runs if run.model not in names]
    cmap = colormaps["tab10"] if len(names) <= 10 else colormaps["tab20"]
    return {n: cmap(i % cmap.N) for i, n in enumerate(names)}


def plot_ndcg_curves(results: Sequence[ProtocolResult], path: Path) -> Path:
    """NDCG@K against K, one line per model, one panel per protocol."""
    fig, axes = _figure(len(results))
    colors = _colors(results)
    for ax, r in zip(axes, results, strict=True):
        for run in r.runs:
            if run.error:
                continue
            ys = [run.metrics[f"ndcg@{k}"] for k in r.ks]
            ax.plot(r.ks, ys, marker="o", label=run.model, color=colors[run.model])
        ax.set_ylim(bottom=0)
        ax.set_xscale("log")
        ax.set_xticks(r.ks, [str(k) for k in r.ks])
        ax.minorticks_off()
        ax.set_xlabel("K (cut-off)")
        ax.set_ylabel("NDCG@K")
        ax.set_title(f"{r.name}: NDCG@K (full ranking)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return _save(fig, path)


def plot_protocols(results: Sequence[ProtocolResult], k: int, path: Path) -> Path:
    """Grouped bars: NDCG@k of each model under each protocol (e.g. warm vs cold)."""
    import numpy as np

    models: list[str] = []
    for r in results:
        models += [run.model for run in r.runs if not run.error and run.model not in models]
    fig, axes = _figure(1, width=max(6.0, 1.1 * len(models) + 2))
    ax = axes[0]
    width = 0.8 / len(results)
    x = np.arange(len(models))
    for j, r in enumerate(results):
        vals = {run.model: run.metrics[f"ndcg@{k}"] for run in r.runs if not run.error}
        heights = [vals.get(m, np.nan) for m in models]
        bars = ax.bar(x + (j - (len(results) - 1) / 2) * width, heights, width, label=r.name)
        ax.bar_label(bars, fmt="%.3f", fontsize=7, padding=2)
    ax.set_xticks(x, models, rotation=20, ha="right")
    ax.set_ylabel(f"NDCG@{k}")
    ax.set_title(f"NDCG@{k} by protocol (full ranking)")
    ax.legend(title="protocol")
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def plot_popularity_bias(results: Sequence[ProtocolResult], k: int, path: Path) -> Path:
    """Left: share of top-k recommendations per catalog popularity decile (first protocol).
    Right: NDCG@k against average recommendation popularity, every model and protocol without candidates."""
    from matplotlib.lines import Line2D

    fig, axes = _figure(2)
    colors = _colors(results)
    first = results[0]
    deciles = list(range(1, 11))
    for run in first.runs:
        if run.error or not run.popularity_deciles:
            continue
        axes[0].plot(deciles, run.popularity_deciles, marker="o", label=run.model, color=colors[run.model])
    axes[0].axhline(0.1, color="grey", linestyle="--", linewidth=1, label="uniform (10%)")
    axes[0].set_xticks(deciles, ["1\n(most\npopular)"] + [str(d) for d in deciles[1:-1]] + ["10\n(least)"])
    axes[0].set_xlabel("catalog popularity decile (training users)")
    axes[0].set_ylabel(f"share of top-{k} recommendations")
    axes[0].set_title(f"{first.name}: where recommendations fall")
    axes[0].legend(fontsize=8)
    axes[0].grid(alpha=0.3)
    markers = "osD^v<>"
    # candidate protocols (cold items) recommend only items without training events: ARP is 0 there
    shown = [r for r in results if r.split.candidates is None] or list(results)
    for j, r in enumerate(shown):
        points: dict[tuple[float, float], list[str]] = {}
        for run in r.runs:
            if run.error:
                continue
            x, y = run.metrics[f"arp@{k}"], run.metrics[f"ndcg@{k}"]
            axes[1].scatter([x], [y], marker=markers[j % len(markers)], s=45, color=colors[run.model])
            points.setdefault((round(x, 4), round(y, 4)), []).append(run.model)
        for (x, y), names in points.items():  # models on the same spot share one label
            axes[1].annotate(", ".join(names), (x, y), fontsize=7, xytext=(4, 3), textcoords="offset points")
    handles = [
        Line2D([], [], linestyle="", marker=markers[j % len(markers)], color="grey", label=r.name)
        for j, r in enumerate(shown)
    ]
    axes[1].legend(handles=handles, title="protocol", fontsize=8)
    axes[1].set_ylim(bottom=0)
    axes[1].set_xlabel(f"ARP@{k}: mean share of training users who had the recommended item")
    axes[1].set_ylabel(f"NDCG@{k}")
    left_out = [r.name for r in results if not any(r is x for x in shown)]
    axes[1].set_title(
        "accuracy against popularity of what is recommended"
        + (f"\n({', '.join(left_out)} left out: new items only, ARP 0)" if left_out else "")
    )
    axes[1].grid(alpha=0.3)
    return _save(fig, path)


# ---- documents -------------------------------------------------------------------------------------
Block = tuple[str, Any]  # ("h1"|"h2"|"h3"|"p"|"table"|"img", content)


def plot_tradeoffs(results: Sequence[ProtocolResult], k: int, path: Path) -> Path:
    """NDCG@k against each re-ranker's goal as its weight varies: one row of panels per protocol, one panel
    per goal, one line per model and re-ranker (weights 0.5 and the largest labelled)."""
    from matplotlib.figure import Figure

    with_curves = [r for r in results if any(run.tradeoffs for run in r.runs)]
    goals = [
        g
        for g in GOAL_LABELS
        if any(t["goal"] == g for r in with_curves for run in r.runs for t in run.tradeoffs)
    ]
    fig = Figure(figsize=(5.6 * len(goals), 4.4 * len(with_curves)), layout="constrained")
    axes = fig.subplots(len(with_curves), len(goals), squeeze=False)
    colors = _colors(results)
    styles = ("-", "--", ":", "-.")
    for i, r in enumerate(with_curves):
        for j, goal in enumerate(goals):
            ax = axes[i][j]
            for run in r.runs:
                controls = list(dict.fromkeys(t["control"] for t in run.tradeoffs if t["goal"] == goal))
                for c_no, control in enumerate(controls):
                    pts = [t for t in run.tradeoffs if t["control"] == control]
                    xs, ys = [t[goal] for t in pts], [t["ndcg"] for t in pts]
                    ax.plot(
                        xs,
                        ys,
                        styles[c_no % len(styles)],
                        marker="o",
                        markersize=3,
                        color=colors[run.model],
                        label=f"{run.model}: {control}",
                    )
                    for t in (pts[len(pts) // 2], pts[-1]):
                        ax.annotate(
                            f"{t['weight']:g}",
                            (t[goal], t["ndcg"]),
                            fontsize=7,
                            xytext=(3, 3),
                            textcoords="offset points",
                        )
            ax.set_xlabel(f"{GOAL_LABELS[goal]}@{k}")
            ax.set_ylabel(f"NDCG@{k}")
            ax.set_title(f"{r.name}: NDCG@{k} against {GOAL_LABELS[goal]}", fontsize=10)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
    return _save(fig, path)


def _blocks(results: Sequence[ProtocolResult], dataset: str, plots: dict[str, str]) -> list[Block]:
    ks = sorted({k for r in results for k in r.ks})
    k = main_k(ks)
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    out: list[Block] = [
        ("h1", f"Evaluation: {dataset}"),
        ("p", f"{now}; {machine_description()}. Every figure is also in `metrics.json`."),
        (
            "p",
            "Ranking: **full** — each model ranks the whole catalog (or the protocol's candidate items) minus "
            "the user's training items; a test user without recommendations counts as a miss. "
            "Coverage: distinct recommended items / catalog (or candidates); novelty: mean -log2 share of "
            "training users who had the item; ARP: mean share of training users who had it; long-tail: "
            "share of recommendations outside the 20% most popular items; tied: share of users whose "
            "top-K was decided by a tie-break (K-th and K+1-th scores equal), i.e. the model could not tell "
            "the items apart and the tie-break decided; 95% CI: percentile bootstrap over test users.",
        ),
    ]
    for r in results:
        s = r.split.summary()
        out.append(("h2", f"{r.name} (full ranking)"))
        cand = f", {s['candidates']} candidate items" if s["candidates"] is not None else ""
        out.append(
            (
                "p",
                f"{s['train_events']} training events, {s['test_events']} test events, "
                f"{s['test_users']} test users, {s['catalog_items']} catalog items{cand}; parameters {s['params']}.",
            )
        )
        out.append(("table", main_table(r, k)))
        if r.paired:
            out.append(("h3", f"{r.name}: each model against {r.reference}, user by user"))
            out.append(
                (
                    "p",
                    f"The difference of NDCG@{k} between each model and {r.reference} over the same "
                    f"{s['test_users']} test users, with a 95% paired bootstrap interval (users resampled, a user's "
                    'two figures together: narrower than comparing the two models\' own intervals). "resolved": '
                    'the interval excludes 0, a difference these test users resolve; "no": they do not tell the '
                    "two apart.",
                )
            )
            out.append(("table", paired_table(r, k)))
        chosen = [f"{run.model}: {run.rerank_validation}." for run in r.runs if run.rerank_validation]
        if chosen:  # NAME:auto: the evidence the weight was chosen on (test is read once, above)
            out.append(("p", "Re-ranking weights chosen on validation. " + " ".join(chosen)))
        out.append(("h3", f"{r.name}: diversity, calibration and exposure"))
        out.append(
            (
                "p",
                f"ILD: mean pairwise cosine distance of the LM vectors within a user's top {k}; category "
                "coverage: mean share of the catalog's categories in a user's list; miscalibration: mean "
                "KL of the user's training category mix to the list's (Steck 2018, alpha 0.01); Gini: of the "
                "items' exposure over the catalog.",
            )
        )
        out.append(("table", responsibility_table(r, k)))
        if any(run.tradeoffs for run in r.runs):
            out.append(("h3", f"{r.name}: what each re-ranker trades"))
            out.append(
                (
                    "p",
                    f"Each re-ranker (`tokrec.rerank`) turns the model's own lists (its best candidates per user, "
                    f"before any --rerank) into a top {k} at each weight (0: the model's list; for tail, the "
                    "weight is the long-tail share it asks of each list, reached where the user's candidates hold enough long-tail items); NDCG and the re-ranker's goal are read on this "
                    "split's test events, so the curve describes the trade-off and a weight is chosen on a "
                    "validation split (for example this command on the training file with --protocol "
                    "leave-last-out), not here. Plot: tradeoffs.png.",
                )
            )
            out.append(("table", tradeoffs_table(r, k)))
        if any(run.groups for run in r.runs):
            out.append(("h3", f"{r.name}: accuracy per user group"))
            summary = groups_summary(r, k)
            if summary:
                out.append(("p", summary))
            out.append(("table", groups_table(r, k)))
        out.append(("h3", f"{r.name}: NDCG and Recall at every K (full ranking)"))
        out.append(("table", by_k_table(r)))
        failed = [f"{run.model}: {run.error}" for run in r.runs if run.error]
        if failed:
            out.append(("p", "Failed: " + "; ".join(failed)))
        if r.sampled_negatives:
            label = sampling_label(r.sampled_negatives)
            out.append(("h2", f"{r.name} — SAMPLED ({label}): not comparable with full ranking"))
            out.append(
                (
                    "p",
                    f"Each test user's relevant items ranked against {r.sampled_negatives} sampled items "
                    "the user never had. Sampled metrics overstate quality and can reorder models.",
                )
            )
            head, rows = main_table(r, k, sampled=True)
            out.append(("table", ([f"{h} [{label}]" if "@" in h else h for h in head], rows)))
    out.append(("h2", "Plots"))
    for title, file in plots.items():
        out.append(("img", (title, file)))
    return out


def _markdown(blocks: list[Block]) -> str:
    lines: list[str] = []
    for kind, content in blocks:
        if kind in ("h1", "h2", "h3"):
            lines += ["#" * int(kind[1]) + " " + content, ""]
        elif kind == "p":
            lines += [content, ""]
        elif kind == "table":
            head, rows = content
            lines.append("| " + " | ".join(head) + " |")
            lines.append("| --- |" + " ---: |" * (len(head) - 1))
            lines += ["| " + " | ".join(row) + " |" for row in rows]
            lines.append("")
        elif kind == "img":
            lines += [f"![{content[0]}]({content[1]})", ""]
    return "\n".join(lines)


def _html(blocks: list[Block], title: str) -> str:
    e = html.escape
    parts = [
        "<!doctype html>",
        f"<html><head><meta charset='utf-8'><title>{e(title)}</title>",
        "<style>body{font-family:sans-serif;max-width:1200px;margin:2em auto}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px}"
        "td{text-align:right}td:first-child{text-align:left}img{max-width:100%}</style></head><body>",
    ]
    for kind, content in blocks:
        if kind in ("h1", "h2", "h3"):
            parts.append(f"<{kind}>{e(content)}</{kind}>")
        elif kind == "p":
            parts.append(f"<p>{e(content).replace('**', '')}</p>")
        elif kind == "table":
            head, rows = content
            parts.append("<table><tr>" + "".join(f"<th>{e(h)}</th>" for h in head) + "</tr>")
            parts += ["<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in rows]
            parts.append("</table>")
        elif kind == "img":
            parts.append(
                f"<figure><img src='{e(content[1])}' alt='{e(content[0])}'><figcaption>{e(content[0])}</figcaption></figure>"
            )
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(
    results: Sequence[ProtocolResult],
    out_dir: str | os.PathLike[str],
    *,
    dataset: str = "dataset",
    fmt: str = "md",
    **extra: Any,
) -> dict[str, Path]:
    """Writes the report, ``metrics.json``, the plots and every model's recommendations.

    Args:
        results: one :class:`ProtocolResult` per protocol.
        out_dir: the folder (created).
        dataset: the dataset's label.
        fmt: ``md`` or ``html``.
        **extra: more top-level keys for ``metrics.json``.

    Returns:
        Written files by role: ``report``, ``metrics``, ``plot:<name>``, ``recs:<protocol>/<model>``.
    """
    if fmt not in ("md", "html"):
        raise ConfigError(f"report format must be 'md' or 'html', not {fmt!r}")
    if not results:
        raise ConfigError("nothing to report: no protocol was run")
    out = Path(out_dir)
    written: dict[str, Path] = {}
    for r in results:
        for run in r.runs:
            if run.recs is not None:
                p = out / "recs" / r.name / f"{run.model}.csv"
                written[f"recs:{r.name}/{run.model}"] = atomic_write(p, partial(_to_csv, run.recs))
    data = results_to_json(results, dataset=dataset, **extra)
    written["metrics"] = atomic_write(
        out / "metrics.json", lambda t: t.write_text(json.dumps(data, indent=2, allow_nan=False) + "\n")
    )
    k = data["main_k"]
    ok = [r for r in results if any(not run.error for run in r.runs)]
    plots: dict[str, str] = {}
    if ok:
        written["plot:ndcg_at_k"] = plot_ndcg_curves(ok, out / "ndcg_at_k.png")
        plots["NDCG@K per model"] = "ndcg_at_k.png"
        if len(ok) > 1:
            written["plot:protocols"] = plot_protocols(ok, k, out / "protocols.png")
            plots[f"NDCG@{k} by protocol"] = "protocols.png"
        written["plot:popularity_bias"] = plot_popularity_bias(ok, k, out / "popularity_bias.png")
        plots["Popularity bias"] = "popularity_bias.png"
        if any(run.tradeoffs for r in ok for run in r.runs):
            written["plot:tradeoffs"] = plot_tradeoffs(ok, k, out / "tradeoffs.png")
            plots["What each re-ranker trades"] = "tradeoffs.png"
    blocks = _blocks(results, dataset, plots)
    text = _markdown(blocks) if fmt == "md" else _html(blocks, f"Evaluation: {dataset}")
    written["report"] = atomic_write(out / f"report.{fmt}", lambda t: t.write_text(text))
    return written
