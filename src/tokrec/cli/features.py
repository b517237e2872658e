"""`tokrec features`: items.parquet (Z_I), users.parquet (Z_U from text and from items), pairs.parquet (F_ij)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tokrec.cli._args import add_ray_args, check_ray_args, output_folder, positive_int
from tokrec.cli._data import add_data_args, add_loading_options, load_from_args
from tokrec.cli.embed import add_encoder_args, encoder_from_args
from tokrec.errors import ConfigError, DataError


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "features",
        help="write item, user and pair language-model features as Parquet",
        description=(
            "Writes DIR/items.parquet (item_id, vector = Z_I), DIR/users.parquet (user_id, text_vector = "
            "Z_U from the history text within the token budget, agg_vector = recency-weighted mean of the "
            "user's item vectors, n_events), and with --pairs DIR/pairs.parquet (user_id, item_id, score = "
            "cosine R_ij of text_vector and vector, user_vector, item_vector, plus the pairs file's other columns)."
        ),
    )
    add_data_args(p, "interaction log")
    p.add_argument("--output-dir", required=True, type=output_folder, help="folder for the Parquet files")
    p.add_argument(
        "--pairs", default=None, help="CSV/Parquet of user_id,item_id pairs (other columns are kept)"
    )
    p.add_argument(
        "--half-life",
        type=float,
        default=None,
        help="recency half-life in events for agg_vector (default: plain mean)",
    )
    p.add_argument(
        "--budget",
        type=positive_int,
        default=None,
        help="user-history token budget (default: the encoder's max length)",
    )
    p.add_argument(
        "--user-template",
        default=None,
        help="how an item appears in a user history (format string or file; default '{title}')",
    )
    p.add_argument(
        "--pair-user-vector",
        default="text",
        choices=["text", "agg"],
        help="which Z_U the pairs use (default text)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_ray_args(p, "encode item and user texts here (default) or on a Ray cluster", "Ray encoder workers")
    add_encoder_args(p)
    from tokrec.cli._fusion import add_item_vectors_args

    add_item_vectors_args(p)
    add_loading_options(p)
    p.set_defaults(func=run)


def _load_pairs(path: str, ds: Any, encoding: str = "utf-8") -> pd.DataFrame:
    """The --pairs table: ids normalised as the loaders do (stripped, integral floats without ``.0``), each id
    known to ``ds`` (else an error naming the file, the row and the column); other columns numeric where they
    parse."""
    from tokrec.data.loaders import id_strings, read_table

    if not Path(path).exists():
        raise ConfigError(f"pairs file not found: {path}")
    df, rows = read_table(path, encoding=encoding)
    for col, vocab, what in (("user_id", ds.user_vocab, "user"), ("item_id", ds.item_vocab, "item")):
        if col not in df.columns:
            raise DataError("missing column", file=path, column=col)
        ids = id_strings(df[col], file=path, rows=rows).fillna("").str.strip()
        known = np.array([i in vocab for i in ids], dtype=bool)
        if not known.all():
            at = int(np.argmin(known))
            raise DataError(
                f"{what} {ids.iloc[at]!r} is not in the data ({int((~known).sum())} unknown in all)",
                file=path,
                row=int(rows[at]),
                column=col,
            )
        df[col] = ids
    for col in df.columns:
        if col not in ("user_id", "item_id"):
            try:
                df[col] = pd.to_numeric(df[col])
            except (ValueError, TypeError):
                df[col] = df[col].astype(str)
    return df


def run(args: argparse.Namespace) -> int:
    from tokrec.features import item_texts, pair_features, user_aggregate_vectors, user_texts, write_vectors
    from tokrec.fileio import staged_dir
    from tokrec.text import UserTemplate

    check_ray_args(args)
    t0 = time.perf_counter()
    ds = load_from_args(args, args.items, args.interactions)
    pairs = _load_pairs(args.pairs, ds, args.encoding) if args.pairs else None
    enc = encoder_from_args(args)
    out = Path(args.output_dir)
    progress = not args.no_progress
    i_texts = item_texts(ds, args.template)
    tpl = UserTemplate(args.user_template, budget=args.budget or enc.max_length)
    u_texts = user_texts(ds, encoder=enc, template=tpl)
    t1 = time.perf_counter()
    ray_stats = None
    if args.engine == "ray":
        z_i, z_u, ray_stats = _encode_ray(args, ds, out, enc.dim)
    else:
        z_i = enc.encode(i_texts, progress=progress)
        has = np.array([bool(t) for t in u_texts], dtype=bool)
        z_u = np.zeros((ds.n_users, enc.dim), dtype=np.float32)
        if has.any():
            z_u[has] = enc.encode([t for t in u_texts if t], progress=progress)
    encode_s = time.perf_counter() - t1
    if args.item_vectors:  # Z_I fused with other item vectors; agg_vector follows, text_vector cannot
        from tokrec.cli._fusion import fuse_from_args

        if pairs is not None and args.pair_user_vector == "text":
            raise ConfigError(
                "with --item-vectors the pairs need --pair-user-vector agg (text_vector is text-only)"
            )
        z_i, _ = fuse_from_args(args, ds.item_vocab.ids, z_i, dataset=ds)
    z_agg = user_aggregate_vectors(ds, z_i, half_life=args.half_life)
    n_events = np.bincount(ds.user_idx, minlength=ds.n_users)
    rows = ds.n_items + ds.n_users
    with staged_dir(out) as stage:  # the files of one run move in together; a failure leaves the last run's
        write_vectors(stage / "items.parquet", ds.item_vocab.ids, z_i, id_column="item_id")
        write_vectors(
            stage / "users.parquet",
            ds.user_vocab.ids,
            {"text_vector": z_u, "agg_vector": z_agg},
            id_column="user_id",
            extra={"n_events": n_events.astype(np.int64)},
        )
        if pairs is not None:
            zu = z_u if args.pair_user_vector == "text" else z_agg
            f = pair_features(
                pairs["user_id"].tolist(),
                pairs["item_id"].tolist(),
                zu,
                z_i,
                user_index=ds.user_vocab,
                item_index=ds.item_vocab,
            )
            extra = {c: pairs[c].to_numpy() for c in pairs.columns if c not in ("user_id", "item_id")}
            extra = {"item_id": f.item_id, "score": f.score, **extra}
            write_vectors(
                stage / "pairs.parquet",
                f.user_id,
                {"user_vector": f.user_vectors, "item_vector": f.item_vectors},
                id_column="user_id",
                extra=extra,
            )
            rows += len(pairs)
    from tokrec.cli.embed import summary_line

    line = summary_line(
        "features",
        rows=rows,
        texts=i_texts + [t for t in u_texts if t],
        enc=enc,
        encode_s=encode_s,
        elapsed=time.perf_counter() - t0,
        out=out,
        stats=ray_stats,
    )
    print(
        f"{line}; {ds.n_items} items, {ds.n_users} users"
        + (f", {len(pairs)} pairs" if pairs is not None else ""),
        file=sys.stderr,
    )
    return 0


def _encode_ray(
    args: argparse.Namespace, ds: Any, out: Path, dim: int
) -> tuple[np.ndarray, np.ndarray, dict[str, Any] | None]:
    """Z_I and Z_U (history text) computed on a Ray cluster, aligned to the dataset's vocabularies, and the
    workers' cache hits / misses summed over both jobs (None without a cache)."""
    import shutil
    import tempfile

    from tokrec.cli.embed import ray_model_spec

    if args.user_template is not None:
        raise ConfigError("--user-template is not supported with --engine ray (the workers use the default)")
    from tokrec.distributed import read_vectors, require_ray
    from tokrec.distributed.ray_embed import embed_items_ray
    from tokrec.distributed.ray_users import embed_users_ray

    require_ray()
    model = ray_model_spec(args)
    cache = False if getattr(args, "no_cache", False) else getattr(args, "cache", None)
    common = {"model": model, "cache_dir": cache, "batch_size": args.batch_size or 64}
    common |= {"ray_address": args.ray_address, "num_workers": args.num_workers}
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".features-ray.", dir=out))
    try:
        jobs = [
            embed_items_ray(args.items, work / "items.parquet", template=args.template, **common),
            embed_users_ray(
                args.interactions, args.items, work / "users.parquet", budget=args.budget, **common
            ),
        ]
        item_ids, item_vecs = read_vectors(work / "items.parquet")
        user_ids, user_vecs = read_vectors(work / "users.parquet")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    z_i = np.zeros((ds.n_items, dim), dtype=np.float32)
    z_i[ds.item_vocab.encode(item_ids)] = item_vecs
    z_u = np.zeros((ds.n_users, dim), dtype=np.float32)
    z_u[ds.user_vocab.encode(user_ids)] = user_vecs
    if cache is False:
        return z_i, z_u, None
    stats = {k: sum(int((j or {}).get(f"cache_{k}", 0)) for j in jobs) for k in ("hits", "misses")}
    return z_i, z_u, stats
