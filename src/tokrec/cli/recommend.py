"""`tokrec recommend`: fit a model on an interaction log and write each user's top-k as CSV.

    tokrec recommend --items ITEMS.csv --interactions TRAIN.csv [--model NAME] \\
        [--candidates CANDIDATES.csv] --k 100 --output RECS.csv

The output is ``user_id,item_id,score,rank`` (rank 1 = best), items the user already has are left out.
Without ``--model`` the recommended model (``registry.DEFAULT_MODEL``) is used.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd

from tokrec.cli._args import (
    add_ray_args,
    add_template_arg,
    cache_arg,
    check_ray_args,
    output_file,
    positive_int,
)
from tokrec.cli._data import add_loading_options, load_from_args, read_candidates, read_id_column
from tokrec.errors import ConfigError
from tokrec.fileio import atomic_write


def register(subparsers: argparse._SubParsersAction) -> None:
    from tokrec.models.registry import DEFAULT_MODEL

    p = subparsers.add_parser(
        "recommend",
        help="fit a model and write every user's top-k recommendations (CSV)",
        description=(
            "Fits a recommender on --interactions (columns user_id,item_id and optionally "
            "rating,timestamp,event) over the --items catalog (item_id + attributes) and writes "
            "user_id,item_id,score,rank for every user (rank 1 = best; items the user already has are "
            "excluded). A summary (users, rows, stage times) goes to stderr."
        ),
    )
    p.add_argument(
        "--items", required=True, help="item catalog: item_id + attribute columns (CSV/Parquet/JSONL)"
    )
    p.add_argument(
        "--interactions", required=True, help="interaction log: user_id,item_id[,rating,timestamp,event]"
    )
    p.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help=f"registry name (default: {DEFAULT_MODEL}, the recommended model)",
    )
    p.add_argument("--candidates", help="rank only these items: a one-column CSV with header item_id")
    p.add_argument(
        "--users",
        help=(
            "only these users: a CSV with a user_id column, or comma-separated ids (default: every user with "
            "events, and with --user-attributes every user the table lists too)"
        ),
    )
    p.add_argument("--k", type=int, default=10, help="recommendations per user (default 10)")
    p.add_argument(
        "--output",
        required=True,
        type=output_file(".csv", ".parquet"),
        help="the recommendations file to write (atomically): .csv or .parquet",
    )
    p.add_argument("--config", help="model hyperparameters: a JSON object, or a path to a JSON file")
    p.add_argument(
        "--cache", help="embedding cache folder (default $TOKREC_CACHE_DIR or ~/.cache/tokrec; 'none' = off)"
    )
    p.add_argument(
        "--model-path",
        help="encoder for item vectors: model folder or id (default: bundled all-MiniLM-L6-v2)",
    )
    add_template_arg(p)
    p.add_argument("--include-seen", action="store_true", help="do not exclude items the user already has")
    p.add_argument(
        "--rerank",
        help="re-rank each list for diversity / calibration / long tail: mmr:W, dpp:W, sdpp:W, calibration:W, popularity:W, "
        "propensity:W, tail:W (a long-tail share of at least W where the candidates hold enough) (W in [0, 1]; @N after W: the N best candidates only), "
        "chained with + (the first step chooses the k items, later ones only reorder them; tokrec.rerank); W = auto: chosen on a validation split of the log (--rerank-loss)",
    )
    p.add_argument(
        "--rerank-loss",
        type=float,
        default=0.05,
        help="with --rerank NAME:auto: the NDCG@k loss on validation the re-ranker may spend (default %(default)s)",
    )
    p.add_argument(
        "--threads", type=positive_int, default=None, help="CPU threads for torch (default: torch's own)"
    )
    from tokrec.cli.tune import add_tune_args

    add_tune_args(p)
    add_ray_args(
        p,
        "where users are scored: this process, or a Ray actor pool (fit stays local; default local)",
        "Ray scoring actors (default: one per 2 CPUs)",
    )
    from tokrec.cli._fusion import add_item_vectors_args

    add_item_vectors_args(p)
    add_loading_options(p, users=True)
    p.set_defaults(func=run)


def _users(arg: str | None) -> list[str] | None:
    if arg is None:
        return None
    if Path(arg).is_file():
        return read_id_column(arg, "user_id")
    users = [u.strip() for u in arg.split(",") if u.strip()]
    if not users:
        raise ConfigError("--users: no user ids given")
    return users


def run(args: argparse.Namespace) -> int:
    from tokrec.config import read_json_config
    from tokrec.features import item_vectors_for
    from tokrec.models.registry import create_model

    check_ray_args(args)
    if args.k < 1:
        raise ConfigError("--k must be at least 1")
    if args.rerank and args.engine == "ray":
        raise ConfigError("--rerank works with --engine local only")
    from tokrec.rerank import parse_rerank

    auto_rerank = any(s.auto for s in parse_rerank(args.rerank))  # a bad spec fails before any work
    if auto_rerank and args.candidates:
        raise ConfigError(
            "--rerank NAME:auto chooses the weight on each user's last event; with --candidates give the weight"
        )
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    config = read_json_config(args.config)
    model = create_model(args.model, config)  # a bad config fails before the data is read
    times: dict[str, float] = {}
    t = time.perf_counter()
    ds = load_from_args(args, args.items, args.interactions)
    candidates, candidates_note = read_candidates(args, ds)
    users = _users(args.users)
    if users is None and ds.users is not None:  # the table's users without events are ranked too (new users)
        users = list(ds.user_vocab)
    times["load"] = time.perf_counter() - t
    notes = []
    if candidates_note:
        notes.append(candidates_note)
    vectors = None
    from tokrec.models.base import wants_item_vectors

    cache = cache_arg(args.cache)

    def text_vectors() -> Any:
        """Z_I of the catalog with the command's encoder, template and cache."""
        return item_vectors_for(ds, model=args.model_path, cache=cache, template=args.template)

    if wants_item_vectors(model):
        t = time.perf_counter()
        vectors = text_vectors()
        if args.item_vectors:
            from tokrec.cli._fusion import fuse_from_args

            vectors, _ = fuse_from_args(
                args, ds.item_vocab.ids, vectors, dataset=ds, model=args.model, config=config
            )
        times["embed"] = time.perf_counter() - t
    from tokrec.cli.tune import tune_step

    t = time.perf_counter()
    tuned, result = tune_step(args, args.model, ds, vectors, candidates=candidates, user_config=config)
    if tuned is not None:
        times["tune"] = time.perf_counter() - t
    t = time.perf_counter()
    from tokrec.tuning import fit_tuned

    def fit_on(d: Any) -> Any:
        """The model fitted on ``d``: the tuner's choice (a part it trained is reused, not retrained), else
        the configuration given."""
        if result is not None:
            return fit_tuned(result, d, vectors)
        return create_model(args.model, config).fit(d, vectors)

    model = fit_on(ds)
    times["fit"] = time.perf_counter() - t
    t = time.perf_counter()
    if users is not None:
        missing = sum(u not in ds.user_vocab for u in users)
        if missing:
            notes.append(f"{missing} requested users unknown (no rows)")
    spec = args.rerank
    if auto_rerank:
        from tokrec.tuning import choose_rerank

        t_auto = time.perf_counter()
        rv = vectors if vectors is not None else text_vectors()
        choice = choose_rerank(spec, fit_on, ds, rv, k=args.k, loss=args.rerank_loss)
        assert choice is not None
        spec = choice.spec
        print(choice.line(), file=sys.stderr)
        times["rerank choice"] = time.perf_counter() - t_auto
        t += times["rerank choice"]
    if args.engine == "ray":
        recs = _recommend_ray(model, users, candidates, args)
    else:
        from tokrec.rerank import pool_size, rerank_recommendations

        pool = pool_size(args.k) if parse_rerank(spec) else args.k
        recs = model.recommend_batch(users, k=pool, candidates=candidates, exclude_seen=not args.include_seen)
        if spec:
            scale = None
            if users is not None and any(s.name == "sdpp" for s in parse_rerank(spec)):
                # sdpp's unit from the first training users, not from the few requested (tokrec.rerank)
                from tokrec.rerank import training_score_scale

                scale = training_score_scale(model, pool, candidates, exclude_seen=not args.include_seen)
            recs = rerank_recommendations(
                recs,
                ds,
                spec,
                args.k,
                vectors if vectors is not None else text_vectors,
                scale=scale,
            )
        write_recs(recs, args.output)
    times["recommend"] = time.perf_counter() - t
    stages = ", ".join(f"{k} {v:.1f}s" for k, v in times.items())
    print(
        f"tokrec recommend: model {args.model}; {ds.n_users} users, {ds.n_items} items, {len(ds)} events; "
        f"{recs['user_id'].nunique()} users x top {args.k} = {len(recs)} rows -> {args.output}; {stages}"
        + ("; " + "; ".join(notes) if notes else ""),
        file=sys.stderr,
    )
    return 0


def _recommend_ray(
    model: Any, users: list[str] | None, candidates: list[str] | None, args: argparse.Namespace
) -> pd.DataFrame:
    """Scores users in a Ray actor pool with the model just fitted (saved to a folder next to the output)."""
    import shutil

    from tokrec.distributed import require_ray
    from tokrec.distributed.ray_recommend import recommend_ray

    require_ray()  # before the model is saved for the workers
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.ray.", dir=out.parent))
    try:
        model.save(work / "model")
        ids = users if users is not None else [u for r, u in enumerate(model.user_vocab_) if r in model.seen_]
        pd.DataFrame({"user_id": ids}).to_csv(work / "users.csv", index=False)
        recommend_ray(
            work / "model",
            work / "users.csv",
            out,
            k=args.k,
            candidates=candidates,
            exclude_seen=not args.include_seen,
            ray_address=args.ray_address,
            num_workers=args.num_workers,
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if out.suffix.lower() == ".parquet":
        return pd.read_parquet(out).astype({"user_id": str, "item_id": str})
    return pd.read_csv(out, dtype={"user_id": str, "item_id": str})


def write_recs(recs: pd.DataFrame, path: str | Path) -> Path:
    """Writes a recommendations frame atomically: Parquet where ``path`` ends in .parquet, else CSV."""
    if Path(path).suffix.lower() == ".parquet":
        return atomic_write(path, lambda tmp: recs.to_parquet(tmp, index=False))
    return atomic_write(path, lambda tmp: recs.to_csv(tmp, index=False))
