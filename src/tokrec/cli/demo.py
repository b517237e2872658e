"""`tokrec demo`: the whole pipeline end to end, on MovieLens 100K when it can be had, else synthetic data;
``--domain news|music|ecommerce|movies`` picks a domain (news adds MIND's impression metrics).

data -> LLM tokens (T_I, T_U) -> encoder + cache (Z_I, Z_U) -> F_ij -> recommenders, evaluated warm
(leave-last-out) and cold (new items) -> a report with plots, and a few recommendations to read.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Literal

import numpy as np

from tokrec.cli._args import output_folder
from tokrec.errors import TokrecError


def register(sub: Any) -> None:
    p = sub.add_parser(
        "demo",
        help="run the whole pipeline end to end (MovieLens 100K if found or downloadable, else synthetic)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--data",
        help="a MovieLens 100K folder (default: $TOKREC_ML100K, the download cache, ../shared/data/ml-100k)",
    )
    p.add_argument("--no-download", action="store_true", help="never try to download MovieLens")
    p.add_argument(
        "--synthetic", action="store_true", help="use a synthetic catalog even when MovieLens is found"
    )
    p.add_argument(
        "--output-dir",
        default="tokrec-demo",
        type=output_folder,
        help="where features and the report go (default: %(default)s)",
    )
    p.add_argument(
        "--models",
        default="popularity,ease,text-profile,tokrec",
        help="comma-separated registry models to compare (default: %(default)s)",
    )
    p.add_argument("--user-budget", type=int, default=128, help="token budget of user history texts")
    p.add_argument(
        "--domain",
        choices=("news", "music", "ecommerce", "movies"),
        default=None,
        help="a domain's data: movies = MovieLens 100K when found (else synthetic films); news, music, "
        "ecommerce = a synthetic catalog of that domain (news with MIND-like impressions, scored with "
        "MIND's impression metrics). Default: MovieLens when found, else synthetic e-commerce",
    )
    p.add_argument("--n-items", type=int, default=2000, help="synthetic catalog size (default %(default)s)")
    p.add_argument("--n-users", type=int, default=800, help="synthetic users (default %(default)s)")
    p.add_argument(
        "--model",
        "--model-path",
        dest="model",
        default=None,
        help="encoder: HF id or local folder (default: bundled all-MiniLM-L6-v2)",
    )
    p.set_defaults(func=run)


def _say(msg: str = "") -> None:
    print(msg, flush=True)


def _load(args: argparse.Namespace) -> tuple[Any, str]:
    from tokrec.data.movielens import download_movielens, find_movielens_100k, load_ml100k
    from tokrec.data.synthetic import make_synthetic

    domain = getattr(args, "domain", None)
    n_items, n_users = getattr(args, "n_items", 2000), getattr(args, "n_users", 800)
    if domain in ("news", "music", "ecommerce"):
        ds = make_synthetic(n_items=n_items, n_users=n_users, seed=0, domain=domain)
        extra = (
            " with impressions (each click shown among up to 4 non-clicked items)" if domain == "news" else ""
        )
        return ds, f"a synthetic {domain} catalog ({n_items:,} items, {n_users:,} users){extra}"
    if not args.synthetic:
        path = find_movielens_100k(args.data)
        if path is not None:
            return load_ml100k(path), f"MovieLens 100K from {path}"
        if not args.no_download:
            try:
                path = download_movielens("ml-100k", timeout=15.0)
                return load_ml100k(path), f"MovieLens 100K downloaded from GroupLens to {path}"
            except TokrecError as e:
                _say(f"MovieLens 100K is not here and could not be downloaded ({e}).")
    fallback: Literal["movies", "ecommerce"] = "movies" if domain == "movies" else "ecommerce"
    ds = make_synthetic(n_items=n_items, n_users=n_users, seed=0, domain=fallback)
    return ds, (
        f"a synthetic {fallback} catalog ({n_items:,} items, {n_users:,} users; behaviour follows tastes "
        "in the item text)"
    )


def run(args: argparse.Namespace) -> int:
    from tokrec.cache import CachedEncoder
    from tokrec.encoders import load_encoder
    from tokrec.evaluation.protocol import evaluate_split, main_k
    from tokrec.evaluation.report import paired_summary, write_report
    from tokrec.evaluation.splits import cold_item_split, leave_last_out
    from tokrec.features import (
        item_texts,
        pair_features,
        user_aggregate_vectors,
        user_text_vectors,
        user_texts,
        write_vectors,
    )
    from tokrec.text import UserTemplate

    t_start = time.perf_counter()
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    models = [m.strip() for m in args.models.split(",") if m.strip()]

    _say("== 1. data")
    ds, source = _load(args)
    _say(f"using {source}")
    _say(f"{ds.n_users} users, {ds.n_items} items, {len(ds)} interactions; {ds.report.summary()}")

    _say("\n== 2. LLM tokens (T_I, T_U)")
    encoder: Any = CachedEncoder(load_encoder(getattr(args, "model", None)), None)
    _say(f"encoder: {encoder.describe() if hasattr(encoder, 'describe') else encoder.fingerprint}")
    texts = item_texts(ds)
    n_item = encoder.count_tokens([texts[0]])[0]
    cut = f"; the encoder reads the first {encoder.max_length}" if n_item > encoder.max_length else ""
    _say(f"item {ds.item_vocab.ids[0]}: {texts[0]!r}  ({n_item} tokens{cut})")
    tpl = UserTemplate(budget=args.user_budget)
    u_texts = user_texts(ds, encoder=encoder, template=tpl)
    first_user = next(u for u, t in enumerate(u_texts) if t)
    n_tok = encoder.count_tokens([u_texts[first_user]])[0]
    _say(
        f"user {ds.user_vocab.ids[first_user]} (budget {args.user_budget} tokens, most recent kept): "
        f"{u_texts[first_user][:300]!r}{'...' if len(u_texts[first_user]) > 300 else ''}  ({n_tok} tokens)"
    )

    _say("\n== 3. embeddings (Z_I, Z_U) through the content-addressed cache")
    t0 = time.perf_counter()
    z_i = encoder.encode(texts, progress=True)
    dt = time.perf_counter() - t0
    s = encoder.stats
    _say(
        f"Z_I: {z_i.shape} in {dt:.1f}s; cache hits {int(s['hits'])}, misses {int(s['misses'])} over "
        f"{len(set(texts))} distinct texts (run the demo again: everything is served from the cache)"
    )
    t0 = time.perf_counter()
    z_u_text = user_text_vectors(ds, encoder=encoder, template=tpl, progress=True)
    z_u_agg = user_aggregate_vectors(ds, z_i, half_life=10.0)
    _say(
        f"Z_U: text {z_u_text.shape} + recency-weighted aggregate {z_u_agg.shape} in {time.perf_counter() - t0:.1f}s"
    )

    _say("\n== 4. features F_ij = (R_ij, Z_U, Z_I), exported to Parquet")
    rng = np.random.default_rng(0)
    users = rng.choice(ds.n_users, size=min(200, ds.n_users), replace=False)
    pu = np.repeat(users, 5)
    pi = rng.integers(0, ds.n_items, size=len(pu))
    f = pair_features(pu.tolist(), pi.tolist(), z_u_agg, z_i)
    paths = [
        write_vectors(out / "items.parquet", ds.item_vocab.ids, z_i),
        write_vectors(
            out / "users.parquet",
            ds.user_vocab.ids,
            {"text_vector": z_u_text, "agg_vector": z_u_agg},
            id_column="user_id",
        ),
        write_vectors(
            out / "pairs.parquet",
            ds.user_vocab.decode(pu),
            {"user_vector": f.user_vectors, "item_vector": f.item_vectors},
            id_column="user_id",
            extra={"item_id": ds.item_vocab.decode(pi), "R_ij": f.score},
        ),
    ]
    _say("wrote " + ", ".join(str(p) for p in paths))

    _say("\n== 5. recommenders, warm (leave-last-out) and cold (20% of items new: text only)")
    warm = evaluate_split(leave_last_out(ds), models, ks=(5, 10, 20, 50), item_vectors=z_i, on_error="record")
    cold = evaluate_split(
        cold_item_split(ds, fraction=0.2, seed=0),
        models,
        ks=(5, 10, 20, 50),
        item_vectors=z_i,
        on_error="record",
    )
    k = main_k(warm.ks)
    _say(f"{'model':14s} {'warm NDCG@' + str(k):>14s} {'cold NDCG@' + str(k):>14s} {'fit s':>8s}")
    for w, c in zip(warm.runs, cold.runs, strict=True):
        if w.error or c.error:
            _say(f"{w.model:14s} failed: {w.error or c.error}")
            continue
        _say(
            f"{w.model:14s} {w.metrics[f'ndcg@{k}']:14.4f} {c.metrics[f'ndcg@{k}']:14.4f} {w.fit_seconds:8.1f}"
        )
    for name, result in (("warm", warm), ("cold", cold)):
        if result.paired:
            _say(f"{name}: " + paired_summary(result, k))
    if ds.impressions is not None:
        _impressions(ds, z_i, models)
    files = write_report([warm, cold], out / "report", dataset=source)
    _say("report: " + ", ".join(str(p) for p in files.values() if Path(p).suffix in (".md", ".json", ".png")))

    _say(
        "\n== 6. a user's latest history and their recommendations (recommended model, fitted on every event)"
    )
    _show_user(ds, z_i, models)
    if ds.users is not None and "tokrec" in models:
        _show_new_users(ds, z_i)
    _say(f"\ndone in {time.perf_counter() - t_start:.0f}s; outputs in {out}/")
    return 0


def _impressions(ds: Any, z_i: np.ndarray, models: list[str]) -> None:
    """MIND's protocol: rank each later impression's shown items (clicked vs not), per model."""
    from tokrec.evaluation.impressions import evaluate_impressions, impression_split, item_first_seen
    from tokrec.models.registry import create_model

    train, test = impression_split(ds, quantile=0.8)
    first = item_first_seen(ds.impressions, ds.interactions)
    _say(
        f"\n== 5b. impressions (MIND protocol): {test['impression_id'].nunique()} impressions after the "
        f"80% time cut, their shown items ranked"
    )
    _say(f"{'model':14s} {'AUC':>7s} {'MRR':>7s} {'nDCG@5':>7s} {'nDCG@10':>8s} {'fresh@5':>8s}")
    for name in models:
        try:
            model = create_model(name).fit(train, z_i)
            m = evaluate_impressions(model, test, first_seen=first)
        except TokrecError as e:
            _say(f"{name:14s} failed: {e}")
            continue
        _say(
            f"{name:14s} {m['auc']:7.4f} {m['mrr']:7.4f} {m['ndcg@5']:7.4f} {m['ndcg@10']:8.4f} "
            f"{m['freshness@5']:8.4f}"
        )


def _show_user(ds: Any, z_i: np.ndarray, models: list[str]) -> None:
    from tokrec.models.registry import DEFAULT_MODEL, create_model

    name = DEFAULT_MODEL if DEFAULT_MODEL in models else models[-1]
    model = create_model(name)
    model.fit(ds, z_i)
    title_col = next((c for c in ("title", "name") if c in ds.items.columns), ds.item_text_columns()[0])
    titles = dict(zip(ds.items["item_id"], ds.items[title_col].astype(str), strict=True))
    seqs = ds.sequences()
    user = max(range(min(50, ds.n_users)), key=lambda u: len(seqs[u]) if len(seqs[u]) < 60 else 0)
    uid = ds.user_vocab.ids[user]
    _say(f"user {uid}, last 5 of {len(seqs[user])} events:")
    for i in ds.item_vocab.decode(seqs[user][-5:]):
        _say(f"   {titles[i]}")
    _say(f"top 5 by '{name}':")
    for item, score in model.recommend(uid, k=5):
        _say(f"   {score:7.3f}  {titles[item]}")


#: two new visitors described by MovieLens' user table (age, gender, occupation)
_VISITORS = (
    {"age": 22, "gender": "F", "occupation": "student"},
    {"age": 62, "gender": "M", "occupation": "retired"},
)


def _show_new_users(ds: Any, z_i: np.ndarray) -> None:
    """Users without events described by the user table: the tuner's new-user step on 20% of the users held out
    whole, then two visitors who give only their attributes."""
    from tokrec.models.base import top_k_rows
    from tokrec.models.registry import create_model
    from tokrec.tuning import new_user_config, tune_new_users

    _say("\n== 7. new users (no events) described by the user table: ranked by their peers")
    report = tune_new_users(ds, z_i, {}, seed=0)
    if report is None or not report["weights"].get("peers"):
        _say("validation on users held out whole kept popularity alone (the table's attributes did not help)")
        return
    w = report["weights"]
    beside = (
        "alone" if not (w["time"] or w["age"] or w["prior"]) else f"at weight {w['peers']:g} beside the rest"
    )
    _say(
        f"validation, {report['users_scored']} users held out whole: NDCG@10 {report['ndcg']:.4f} with "
        f"{report['peer_neighbours']} peers {beside}; popularity alone {report['alone']['popularity']:.4f}"
    )
    model = create_model("tokrec", new_user_config(report)).fit(ds, z_i)
    title_col = next((c for c in ("title", "name") if c in ds.items.columns), ds.item_text_columns()[0])
    titles = dict(zip(ds.items["item_id"], ds.items[title_col].astype(str), strict=True))
    empty = np.empty(0, dtype=np.int64)
    for who in ({}, *_VISITORS):
        top = top_k_rows(model.score_rows(-1, empty, attributes=who), 5)
        label = ", ".join(f"{k} {v}" for k, v in who.items()) or "no attributes (popularity)"
        _say(f"a new visitor, {label}: " + "; ".join(titles[i] for i in model.item_vocab_.decode(top)))


if __name__ == "__main__":  # pragma: no cover
    from tokrec.cli.main import main

    sys.exit(main(["demo", *sys.argv[1:]]))
