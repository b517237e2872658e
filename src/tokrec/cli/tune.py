"""`tokrec tune`: choose a model's configuration on a validation split cut from the log; and the tuning
step that `fit`, `recommend` and `evaluate` run by default (``--tune-budget``, ``--no-tune``).

    tokrec tune --items ITEMS.csv --interactions TRAIN.csv [--candidates NEW.csv] [--model tokrec] \\
        [--budget 120] [--seed 0] --output-dir DIR

writes ``DIR/tuning.json`` (the choice, each signal's validation NDCG@10 alone and its weight, the
ablation) and ``DIR/config.json`` (the chosen hyperparameters, for ``--config`` of the other commands)
and prints one short table. See :mod:`tokrec.tuning` for the procedure.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Literal

from tokrec.cli._args import add_template_arg, cache_arg, output_folder, positive_seconds
from tokrec.cli._data import add_data_args, add_loading_options, read_candidates

#: default seconds of tuning inside fit / recommend / evaluate
DEFAULT_BUDGET = 120.0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "tune",
        help="choose a model's hyperparameters on a validation split of the log (never the test events)",
        description=(
            "Cuts a validation split from --interactions (each user's last event by time; pseudo-new items "
            "when --candidates are new items), chooses the model's configuration on it and writes "
            "tuning.json + config.json to --output-dir. tokrec: which signals enter, their weights, EASE "
            "lambda, half-lives, neighbour counts; the baselines (ease, ease-recency, itemknn, als, bpr): "
            "their own hyperparameters."
        ),
    )
    add_data_args(p, "interaction log (the training events)")
    p.add_argument(
        "--model",
        default="tokrec",
        help="tokrec (default) or a baseline: ease, ease-recency, itemknn, als, bpr",
    )
    p.add_argument("--candidates", help="the items to rank (CSV with item_id): new items -> cold validation")
    p.add_argument(
        "--budget",
        "--tune-budget",
        dest="budget",
        type=positive_seconds,
        default=DEFAULT_BUDGET,
        help=f"seconds to aim for (default {DEFAULT_BUDGET:g})",
    )
    p.add_argument(
        "--seed",
        "--tune-seed",
        dest="seed",
        type=int,
        default=0,
        help="seed of the validation draw and the search (default 0)",
    )
    p.add_argument(
        "--output-dir", required=True, type=output_folder, help="where tuning.json and config.json go"
    )
    _parts_arg(p)
    p.add_argument("--model-path", help="encoder for item vectors (default: bundled all-MiniLM-L6-v2)")
    add_template_arg(p)
    p.add_argument(
        "--cache", help="embedding cache folder (default $TOKREC_CACHE_DIR or ~/.cache/tokrec; 'none' = off)"
    )
    add_loading_options(p, users=True)
    p.set_defaults(func=run)


def add_tune_args(p: argparse.ArgumentParser) -> None:
    """``--tune-budget`` / ``--no-tune`` / ``--tune-seed`` for fit, recommend and evaluate."""
    g = p.add_argument_group("tuning (on by default: a validation split cut from the training log)")
    g.add_argument(
        "--tune-budget",
        type=positive_seconds,
        default=DEFAULT_BUDGET,
        metavar="SECONDS",
        help=f"seconds of tuning per model (default {DEFAULT_BUDGET:g})",
    )
    g.add_argument(
        "--no-tune", action="store_true", help="use the shipped defaults (or --config) as they are"
    )
    g.add_argument(
        "--tune-seed", type=int, default=0, help="seed of the validation draw and search (default 0)"
    )
    _parts_arg(g)


def _parts_arg(p: Any) -> None:
    p.add_argument(
        "--blend-parts",
        default="auto",
        metavar="NAMES",
        help=(
            "tokrec: comma-separated registered models validation may add to the blend (e.g. "
            "text-sasrec,als); 'none': no part; 'auto' (default): text-sasrec, trained for up to 70%% of the "
            "budget (what the signals leave), on next-item tasks (no new-item --candidates) when the budget is at least 120 s (the default) and "
            "the log is small (events x items <= 5e8); named on a new-item task, text-sasrec trains for new "
            "items (what fits anywhere in a history); on a log without repeated (user, item) pairs it leaves "
            "each user's earlier items out of its softmax, and as two networks once it gets 150 s or more "
            "(ml-100k: --tune-budget 300)"
        ),
    )


def _parts(args: argparse.Namespace) -> list[str] | Literal["auto"]:
    text = (getattr(args, "blend_parts", "") or "").strip()
    if text == "auto":
        return "auto"
    return [x.strip() for x in text.split(",") if x.strip() and x.strip() != "none"]


def candidates_are_new(dataset: Any, candidates: list[str] | None) -> bool:
    """True when most candidate items have no event in ``dataset`` (a new-item task: cold validation)."""
    if not candidates:
        return False
    with_events = set(dataset.interactions["item_id"].unique())
    return sum(c not in with_events for c in candidates) > len(candidates) / 2


def tune_step(
    args: argparse.Namespace,
    name: str,
    dataset: Any,
    vectors: Any,
    *,
    candidates: list[str] | None = None,
    user_config: dict[str, Any] | None = None,
) -> tuple[dict[str, Any] | None, Any]:
    """The tuning step of fit / recommend: ``(config to fit with, TuneResult or None)``.

    Skipped (``(None, None)``) with ``--no-tune``, for a model without a tuner, or when ``--config`` was
    given (the user's hyperparameters win)."""
    from tokrec.tuning import tunable, tune

    if getattr(args, "no_tune", False) or not tunable(name):
        return None, None
    if user_config:
        print(f"tuning skipped: --config gives {name}'s hyperparameters", file=sys.stderr)
        return None, None
    cold = candidates_are_new(dataset, candidates)
    result = tune(
        name, dataset, vectors, cold=cold, budget_s=args.tune_budget, seed=args.tune_seed, parts=_parts(args),
        cold_items=held_out_by_encoder(args) if cold else None,
    )  # fmt: skip
    print(result.table(), file=sys.stderr)
    return result.config, result


def held_out_by_encoder(args: argparse.Namespace) -> list[str] | None:
    """The items the command's encoder (``--model-path`` or ``--encoder``) was fine-tuned without, where it is a
    folder written by ``tokrec finetune``: a new-item validation holds these out, so that the tuned encoder
    is as blind to its validation items as to real new ones (:func:`tokrec.tuning.make_validation`)."""
    from tokrec.encoders import finetuned_without

    return finetuned_without(getattr(args, "model_path", None) or getattr(args, "encoder", None))


def run(args: argparse.Namespace) -> int:
    from tokrec.cli._data import load_from_args
    from tokrec.errors import ConfigError
    from tokrec.evaluation.report import atomic_write
    from tokrec.models.base import wants_item_vectors
    from tokrec.models.registry import model_class
    from tokrec.tuning import baseline_model, tunable, tune, write_tuning

    if not tunable(args.model):
        raise ConfigError(
            f"--model {args.model!r} has no tuner; tunable: tokrec, ease, ease-recency, itemknn, als, bpr"
        )
    ds = load_from_args(args, args.items, args.interactions)
    candidates, note = read_candidates(args, ds)
    if note:
        print(f"tokrec tune: {note}", file=sys.stderr)
    vectors = None
    if wants_item_vectors(model_class(baseline_model(args.model))):
        from tokrec.features import item_vectors_for

        vectors = item_vectors_for(
            ds, model=args.model_path, cache=cache_arg(args.cache), template=args.template
        )
    cold = candidates_are_new(ds, candidates)
    result = tune(
        args.model, ds, vectors, cold=cold, budget_s=args.budget, seed=args.seed, parts=_parts(args),
        cold_items=held_out_by_encoder(args) if cold else None,
    )  # fmt: skip
    out = Path(args.output_dir)
    write_tuning(result, out)
    text = json.dumps(result.config, indent=1)
    atomic_write(out / "config.json", lambda tmp: tmp.write_text(text))
    print(result.table())
    print(
        f"wrote {out / 'tuning.json'} and {out / 'config.json'} (use: --config {out / 'config.json'} --no-tune)"
    )
    return 0


def tune_vectors_step(
    args: argparse.Namespace,
    name: str,
    dataset: Any,
    user_config: dict[str, Any],
    encoder: Any = None,
    *,
    candidates: list[str] | None = None,
) -> tuple[Any, Any]:
    """The tuning step of ``tokrec fit``: item vectors with the command's encoder (``encoder``, already loaded,
    or ``--encoder``) and template (the bundle's, :func:`~tokrec.serve.bundle.pinned_template`), then
    :func:`tune_step` (on new items where most ``candidates`` have no events). Returns ``(TuneResult or None, the item vectors or None)``: the fit that follows
    takes the vectors instead of computing them again."""
    from tokrec.models.base import wants_item_vectors
    from tokrec.models.registry import model_class
    from tokrec.tuning import baseline_model, tunable

    if args.no_tune or not tunable(name):
        return None, None
    if user_config:
        print(f"tuning skipped: --config gives {name}'s hyperparameters", file=sys.stderr)
        return None, None
    vectors = None
    if wants_item_vectors(model_class(baseline_model(name))):
        from tokrec.encoders import load_encoder
        from tokrec.features import item_vectors
        from tokrec.serve.bundle import pinned_template

        encoder = encoder if encoder is not None else load_encoder(args.encoder)
        cache = None if args.no_cache else "default"
        template = pinned_template(args.template, dataset.items)[0]  # what the bundle renders
        vectors = item_vectors(
            dataset, encoder=encoder, cache=cache, template=template, progress=args.progress
        )
    return tune_step(args, name, dataset, vectors, candidates=candidates)[1], vectors


def tune_split(
    args: argparse.Namespace, split: Any, models: list[str], configs: dict[str, Any], vectors: Any
) -> tuple[dict[str, Any], list[Any]]:
    """The tuning step of ``tokrec evaluate`` for one split: every tunable model without a ``--config``
    entry is tuned on ONE validation split cut from ``split.train`` (cold when the split has candidates),
    the same for all of them. Returns ``(configs with the choices, TuneResults)``."""
    from tokrec.tuning import make_validation, tunable, tune_baseline, tune_tokrec

    todo = [m for m in models if tunable(m) and m not in configs]
    if args.no_tune or not todo:
        return configs, []
    cold = split.candidates is not None
    val = make_validation(
        split.train, cold=cold, seed=args.tune_seed, cold_items=held_out_by_encoder(args) if cold else None
    )
    out = dict(configs)
    results = []
    for name in todo:
        if name == "tokrec":
            r = tune_tokrec(
                val, vectors(), budget_s=args.tune_budget, seed=args.tune_seed, parts=_parts(args)
            )
        else:
            r = tune_baseline(name, val, budget_s=args.tune_budget, seed=args.tune_seed)
        print(r.table(), file=sys.stderr)
        out[name] = r.config
        results.append(r)
    return out, results


def tuning_markdown(per_split: dict[str, list[Any]]) -> str:
    """The evaluate report's tuning section: each tuned model's table, per split."""
    lines = ["", "## Tuning (validation split cut from each split's training events)", ""]
    for split, results in per_split.items():
        lines.append(f"### {split}")
        lines.append("")
        lines.append("```")
        lines.extend(r.table() for r in results)
        lines.append("```")
        lines.append("")
    return "\n".join(lines)


def write_tuning_report(tuned: dict[str, list[Any]], out_dir: str, report: Path | None) -> None:
    """``tuning.json`` (every tuned model per split) into the evaluate folder, and the tuning section
    appended to the Markdown ``report`` (None: no report to extend)."""
    from tokrec.evaluation.report import atomic_write
    from tokrec.tuning import TUNING_FILE

    tuned = {p: rs for p, rs in tuned.items() if rs}
    if not tuned:
        return
    data = json.dumps({p: [r.to_json() for r in rs] for p, rs in tuned.items()}, indent=1)
    atomic_write(Path(out_dir) / TUNING_FILE, lambda tmp: tmp.write_text(data))
    if report is not None:
        text = report.read_text() + tuning_markdown(tuned)
        atomic_write(report, lambda tmp: tmp.write_text(text))
