"""`tokrec evaluate`: several models, one dataset, one or more protocols -> report, metrics.json, plots."""

from __future__ import annotations

import argparse
import functools
import json
import logging
import sys
from pathlib import Path
from typing import Any

from tokrec.cli._args import add_template_arg, output_folder
from tokrec.cli._data import add_data_args, add_loading_options, load_from_args, read_candidates

log = logging.getLogger(__name__)

DEFAULT_MODELS = "popularity,ease,als,tokrec"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "evaluate",
        help="compare models on one dataset under one protocol; write a report",
        description=(
            "Fits each model on the training part of a split, ranks the whole catalog (or the cold-item "
            "candidates) for every test user and writes report.md/.html, metrics.json, PNG plots and each "
            "model's recommendations CSV. Always full ranking; --sampled-negatives N adds a separate, labelled "
            "sampled evaluation."
        ),
    )
    add_data_args(p, "interaction log; the training events when --test is given")
    p.add_argument(
        "--models", default=DEFAULT_MODELS, help=f"comma-separated registry names (default {DEFAULT_MODELS})"
    )
    p.add_argument(
        "--protocol",
        default=None,
        help="comma-separated: leave-last-out (default), temporal, cold-item, cold-user",
    )
    p.add_argument(
        "--test", help="a pre-made test file (e.g. the benchmark's); --interactions is then the train"
    )
    p.add_argument("--candidates", help="with --test: the item ids to rank (a file with an item_id column)")
    p.add_argument("--k", default="5,10,20,50", help="comma-separated cut-offs (default 5,10,20,50)")
    p.add_argument(
        "--output-dir",
        default="evaluation",
        type=output_folder,
        help="where to write the report (default ./evaluation)",
    )
    p.add_argument("--format", choices=("md", "html"), default="md", help="report format (default md)")
    p.add_argument(
        "--sampled-negatives",
        type=int,
        default=None,
        metavar="N",
        help="ALSO evaluate against N sampled negatives per user (labelled sampled-N; full ranking is always reported)",
    )
    p.add_argument(
        "--reference",
        metavar="MODEL",
        help="the model every other is compared with, user by user (paired difference in NDCG with its 95%% "
        "bootstrap interval; default tokrec when evaluated, else the first of --models)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the random splits and negative sampling")
    p.add_argument(
        "--fraction", type=float, default=0.2, help="cold-item / cold-user: share held out (default 0.2)"
    )
    p.add_argument(
        "--history", type=int, default=0, help="cold-user: first events of a new user kept in train"
    )
    p.add_argument(
        "--quantile", type=float, default=0.8, help="temporal: the cut as a quantile of time (default 0.8)"
    )
    p.add_argument(
        "--validation", action="store_true", help="score on a validation split cut from train (tuning)"
    )
    p.add_argument("--config", help='JSON file {"model name": {config...}} of model hyperparameters')
    p.add_argument(
        "--encoder",
        "--model-path",
        dest="encoder",
        help="encoder for item vectors (default: the bundled all-MiniLM-L6-v2)",
    )
    add_template_arg(p)
    p.add_argument(
        "--n-recs", type=int, default=None, help="recommendations kept per user (default max(100, K))"
    )
    p.add_argument(
        "--half-life-hours",
        type=float,
        default=24.0,
        help="impression datasets (MIND): half life of the freshness decay (default %(default)s)",
    )
    p.add_argument(
        "--rerank",
        help="re-rank every model's lists before scoring: mmr:W, dpp:W, sdpp:W, calibration:W, popularity:W, propensity:W, "
        "tail:W (a long-tail share of at least W where the candidates hold enough), optionally @N (the N best candidates only), chained with + (the first step chooses the k items, later ones only reorder them); "
        "the list re-ranked is the main cut-off's (10 when evaluated), deeper positions keep the model's order; "
        "W = auto: chosen on a validation split cut from each split's training part (--rerank-loss)",
    )
    p.add_argument(
        "--rerank-loss",
        type=float,
        default=0.05,
        help="with --rerank NAME:auto: the NDCG loss on validation the re-ranker may spend (default %(default)s)",
    )
    p.add_argument(
        "--tradeoffs",
        help="re-rankers whose trade-off curves to draw, e.g. mmr,calibration,tail: each re-ranks every model's "
        "own lists at weights 0, 0.1, ..., 0.9, and the report tabulates and plots NDCG against the re-ranker's goal",
    )
    p.add_argument(
        "--users",
        help=(
            "user attributes for per-group accuracy only (CSV/Parquet/JSONL with user_id, or MovieLens' u.user; "
            "default: the --user-attributes table, which the models read too)"
        ),
    )
    add_loading_options(p, users=True)
    from tokrec.cli.tune import add_tune_args

    add_tune_args(p)
    p.set_defaults(func=run)


def _csv_list(text: str, what: str) -> list[str]:
    from tokrec.errors import ConfigError

    items = [x.strip() for x in text.split(",") if x.strip()]
    if not items:
        raise ConfigError(f"--{what} is empty")
    return items


def _ks(text: str) -> list[int]:
    from tokrec.errors import ConfigError

    try:
        ks = sorted({int(x) for x in _csv_list(text, "k")})
    except ValueError:
        raise ConfigError(f"--k must be comma-separated positive integers, got {text!r}") from None
    if ks[0] < 1:
        raise ConfigError(f"--k must be positive, got {text!r}")
    return ks


def _configs(path: str | None, models: list[str]) -> dict[str, Any]:
    """The --config object ``{"model": {...}}``: each key one of ``models``, each config validated by creating the
    model (a typo in a name or a field fails before any data is read)."""
    from tokrec.config import read_json_config
    from tokrec.errors import ConfigError
    from tokrec.models.registry import create_model

    data = read_json_config(path)
    if not all(isinstance(v, dict) for v in data.values()):
        raise ConfigError(f'{path}: expected {{"model": {{...config...}}}}')
    unknown = [m for m in data if m not in models]
    if unknown:
        raise ConfigError(
            f"--config: {', '.join(map(repr, unknown))} not among --models ({', '.join(models)}); its config "
            "would not be used"
        )
    for m, config in data.items():
        create_model(m, config)
    return data


def _splits(args: argparse.Namespace, dataset: Any) -> list[Any]:
    from tokrec.data.loaders import check_known_items, load_interactions
    from tokrec.errors import ConfigError
    from tokrec.evaluation.splits import given_split, make_split, validation_split

    if args.test:
        if args.protocol:
            raise ConfigError("give either --test (a pre-made split) or --protocol, not both")
        test = load_interactions(args.test, encoding=args.encoding, empty_ids=args.empty_ids)
        test = check_known_items(test, dataset.items, unknown_items=args.unknown_items, file=args.test)
        cands = None
        if args.candidates:
            cands, _ = read_candidates(args, dataset)
        splits = [given_split(dataset, test, candidates=cands, source=args.test)]
    else:
        if args.candidates:
            raise ConfigError("--candidates needs --test (cold-item makes its own candidates)")
        params = {
            "leave-last-out": {},
            "temporal": {"quantile": args.quantile},
            "cold-item": {"fraction": args.fraction, "seed": args.seed},
            "cold-user": {"fraction": args.fraction, "seed": args.seed, "history": args.history},
        }
        names = _csv_list(args.protocol or "leave-last-out", "protocol")
        splits = [make_split(dataset, n, **params.get(n, {})) for n in names]
    if args.validation:
        splits = [validation_split(s) for s in splits]
    return splits


def _vector_source(args: argparse.Namespace, dataset: Any) -> Any:
    """A callable computing the catalog's item vectors once, on first use (every split shares the catalog)."""

    @functools.cache
    def compute() -> Any:
        from tokrec.features import item_vectors

        encoder = None
        if args.encoder:
            from tokrec.encoders import load_encoder

            encoder = load_encoder(args.encoder)
        print(f"encoding {dataset.n_items} item texts (cached by content) ...", file=sys.stderr)
        return item_vectors(dataset, encoder=encoder, template=args.template)

    return compute


def run(args: argparse.Namespace) -> int:
    from tokrec.evaluation.protocol import evaluate_split, main_k
    from tokrec.evaluation.report import main_table, paired_summary, write_report
    from tokrec.fileio import staged_dir
    from tokrec.models.registry import model_class

    ks = _ks(args.k)
    models = _csv_list(args.models, "models")
    for m in models:
        model_class(m)  # unknown names fail before any work
    configs = _configs(args.config, models)
    from tokrec.errors import ConfigError

    if args.reference is not None and args.reference not in models:
        raise ConfigError(f"--reference {args.reference}: not among --models ({', '.join(models)})")
    if args.n_recs is not None and args.n_recs < ks[-1]:
        raise ConfigError(
            f"--n-recs {args.n_recs} is below the largest K ({ks[-1]}): metrics at K need lists of at least K"
        )

    if args.sampled_negatives is not None and args.sampled_negatives < 1:
        raise ConfigError("--sampled-negatives must be a positive integer")
    from tokrec.rerank import CATEGORY_COLUMNS, category_matrix, parse_controls, parse_rerank

    steps = parse_rerank(args.rerank)  # a bad spec fails before any work
    tradeoffs = parse_controls(args.tradeoffs)
    from tokrec.data.loaders import load_users

    users = (
        load_users(args.users) if args.users else None
    )  # MovieLens' u.user by name, else a table with user_id
    dataset = load_from_args(args, args.items, args.interactions)
    if users is None:  # the models' user table also groups the accuracy (gender, age band, ...)
        users = dataset.users
    if dataset.impressions is not None and not args.protocol:
        if args.rerank or tradeoffs:
            raise ConfigError(
                "--rerank and --tradeoffs re-rank full-ranking lists; an impression dataset is evaluated on its "
                "impressions unless --protocol is given"
            )
        return _run_impressions(args, dataset, models, configs)
    named = {s.name for s in steps} | set(tradeoffs)
    if "calibration" in named and category_matrix(dataset.items) is None:
        raise ConfigError(
            f"calibration needs a category column in the items file ({', '.join(CATEGORY_COLUMNS)}); "
            f"{args.items} has none"
        )
    splits = _splits(args, dataset)
    if any(s.auto for s in steps) and any(sp.candidates is not None for sp in splits):
        raise ConfigError(
            f"--rerank {args.rerank}: auto chooses the weight on each user's last event; with candidate items "
            "(a cold-item protocol or --candidates) give the weight"
        )
    vectors = _vector_source(args, dataset)
    from tokrec.cli.tune import tune_split, write_tuning_report
    from tokrec.tuning import fit_tuned

    results = []
    tuned: dict[str, list[Any]] = {}
    for split in splits:
        print(f"{split.protocol}: {split.summary()}", file=sys.stderr)
        split_configs, tuned[split.protocol] = tune_split(args, split, models, configs, vectors)
        results.append(
            evaluate_split(
                split,
                models,
                ks=ks,
                configs=split_configs,
                item_vectors=vectors,
                n_recs=args.n_recs,
                sampled_negatives=args.sampled_negatives,
                seed=args.seed,
                rerank=args.rerank,
                users=users,
                # each tuned model fitted through fit_tuned: a blend part the tuner trained is reused
                fits={r.model: functools.partial(fit_tuned, r) for r in tuned[split.protocol]},
                tradeoffs=tradeoffs,
                rerank_loss=args.rerank_loss,
                tune_seconds={r.model: r.seconds for r in tuned[split.protocol]},
                reference=args.reference,
            )
        )
    with staged_dir(args.output_dir) as stage:  # a failure leaves the last run's report folder as it was
        staged = write_report(
            results,
            stage,
            dataset=dataset.name,
            fmt=args.format,
            command="tokrec evaluate " + " ".join(sys.argv[2:]) if sys.argv[1:2] == ["evaluate"] else None,
        )
        write_tuning_report(tuned, str(stage), staged["report"] if args.format == "md" else None)
    written = {role: Path(args.output_dir) / p.relative_to(stage) for role, p in staged.items()}
    k = main_k(ks)
    for r in results:
        head, rows = main_table(r, k)
        print(f"\n{r.name} (full ranking)")
        print("  ".join(f"{h:>12s}" for h in head[:6] + head[-3:]))
        for row in rows:
            print("  ".join(f"{c:>12s}" for c in row[:6] + row[-3:]))
        if r.paired:
            print(paired_summary(r, k))
    print(f"\nreport: {written['report']}\nmetrics: {written['metrics']}")
    return 0


def _run_impressions(
    args: argparse.Namespace, dataset: Any, models: list[str], configs: dict[str, Any]
) -> int:
    """MIND's protocol for a dataset with impressions: rank each test impression's shown items.

    With --test (another behaviors.tsv, e.g. MIND's dev split) its impressions are the test; otherwise the
    impressions after the --quantile of time. Writes OUTPUT_DIR/impressions.json.
    """
    from tokrec.evaluation.impressions import (
        evaluate_impressions,
        given_impressions,
        impression_split,
        item_first_seen,
    )
    from tokrec.fileio import atomic_write
    from tokrec.models.base import wants_item_vectors
    from tokrec.models.registry import create_model

    if args.test:
        train, test = given_impressions(dataset, args.test)
    else:
        train, test = impression_split(dataset, quantile=args.quantile)
    first = item_first_seen(dataset.impressions, test, dataset.interactions)
    print(
        f"impressions: {len(train)} training clicks, {test['impression_id'].nunique()} test impressions "
        f"({len(test)} shown items)",
        file=sys.stderr,
    )
    vectors = _vector_source(args, dataset)
    results: dict[str, Any] = {}
    for name in models:
        model = create_model(name, configs.get(name))
        model.fit(train, vectors() if wants_item_vectors(model) else None)
        results[name] = evaluate_impressions(
            model, test, first_seen=first, half_life_hours=args.half_life_hours, seed=args.seed
        )
    keys = ("auc", "mrr", "ndcg@5", "ndcg@10", "freshness@5", "freshness@10")
    print("\n" + f"{'model':>14s}  " + "  ".join(f"{k:>12s}" for k in keys))
    for name, m in results.items():
        print(f"{name:>14s}  " + "  ".join(f"{m[k]:12.4f}" for k in keys))
    out = Path(args.output_dir) / "impressions.json"
    payload = {"dataset": dataset.name, "protocol": "impressions", "test": args.test, "models": results}
    atomic_write(out, lambda p: p.write_text(json.dumps(payload, indent=2, default=float)))
    print(f"\nmetrics: {out}")
    return 0
