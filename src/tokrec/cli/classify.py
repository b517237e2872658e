"""`tokrec classify`: fine-tune the buy/not-buy cross-encoder, report it on held-out users, re-rank.

Prints sklearn's ``classification_report`` and ROC-AUC on held-out users' (history, next item) pairs
against sampled negatives, then optionally re-ranks the top ``--top-n`` of a recommendations file.
The last stdout line is a JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from tokrec.cli._args import (
    add_template_arg,
    add_torch_args,
    output_file,
    output_folder,
    positive_int,
    same_named,
)
from tokrec.cli._data import add_data_args, add_loading_options, load_from_args


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "classify",
        help="fine-tune a cross-encoder P(like | history, item); evaluate on held-out users; re-rank",
        description=(
            "Fine-tunes the encoder (LoRA by default, --full for all weights) as a cross-encoder on "
            "(user history text, candidate item text) pairs: each sampled event given the events before it "
            "is a positive, sampled never-seen items are negatives. Reports classification_report and "
            "ROC-AUC on users held out of training, and re-ranks a recommendations file with P(like)."
        ),
    )
    add_data_args(p, "training interactions")
    p.add_argument("--test", help="test events (user_id,item_id): held-out users' positives come from here")
    p.add_argument(
        "--rerank", metavar="RECS", help="recommendations CSV (user_id,item_id[,score][,rank]) to re-rank"
    )
    p.add_argument(
        "--output",
        metavar="CSV",
        type=output_file(".csv"),
        help="where to write the re-ranked recommendations (with --rerank)",
    )
    p.add_argument(
        "--top-n", type=positive_int, default=20, help="re-rank each user's top N rows (default 20)"
    )
    p.add_argument(
        "--blend-weight",
        type=_blend_weight,
        default="auto",
        metavar="W",
        help="re-ranking score = (1-w) * z(first stage) + w * z(classifier); default auto: w in 0, 0.1, ..., 1 "
        "chosen on validation (the held-out users' last training events, the first stage refitted without "
        "them; 0 keeps the first stage's order unless the classifier helps)",
    )
    p.add_argument(
        "--first-stage",
        default="tokrec",
        metavar="MODEL",
        help="the registered model that made --rerank's file, refitted (shipped configuration) to choose the "
        "blend weight on validation (default tokrec)",
    )
    mode = p.add_mutually_exclusive_group()
    mode.add_argument(
        "--lora", dest="lora", action="store_true", default=True, help="LoRA fine-tuning (default)"
    )
    mode.add_argument("--full", dest="lora", action="store_false", help="fine-tune every weight")
    p.add_argument(
        "--model",
        "--model-path",
        dest="model",
        help="HF model directory (default: the bundled all-MiniLM-L6-v2); --model-path as in every command",
    )
    add_template_arg(p)
    p.add_argument("--max-pairs", type=int, default=4000, help="training pairs (default 4000)")
    p.add_argument("--negatives", type=int, default=1, help="sampled negatives per positive (default 1)")
    p.add_argument(
        "--negative-sampling",
        choices=("uniform", "popularity", "mixed"),
        default="mixed",
        help="how training negatives are drawn (mixed: half uniform, half popularity-weighted)",
    )
    p.add_argument(
        "--eval-negatives", type=int, default=1, help="negatives per held-out positive (default 1)"
    )
    p.add_argument(
        "--heldout-fraction", type=float, default=0.2, help="users held out of training (default 0.2)"
    )
    p.add_argument(
        "--eval-negative-sampling",
        choices=("uniform", "popularity"),
        default="popularity",
        help="how held-out negatives are drawn (default popularity: the harder test)",
    )
    p.add_argument(
        "--no-behaviour",
        dest="behaviour",
        action="store_false",
        help="text only: no popularity / co-occurrence features beside the text",
    )
    p.add_argument("--max-length", type=int, default=128, help="tokens per pair (default 128)")
    p.add_argument("--history-items", type=int, default=5, help="history items in the text (default 5)")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=None, help="default 3e-4 (LoRA) / 3e-5 (full)")
    p.add_argument("--seed", type=int, default=42)
    add_torch_args(p, ("float32", "bfloat16", "float16"), 2, "torch CPU threads (default 2)")
    p.add_argument(
        "--save", metavar="DIR", type=output_folder, help="save the fine-tuned model (safetensors) here"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_loading_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:

    from tokrec.errors import ConfigError
    from tokrec.models.cross_encoder import CrossEncoderClassifier, heldout_pairs, sample_pairs, split_users

    if (args.rerank is None) != (args.output is None):
        raise ConfigError("--rerank and --output go together")
    save = Path(args.save) if args.save else None
    if save and save.is_dir() and any(save.iterdir()) and not (save / "tokrec_classifier.json").is_file():
        # checked before the training, not after it
        raise ConfigError(f"--save {args.save}: the folder holds other files; refusing to replace it")
    if not 0 < args.heldout_fraction < 1:
        raise ConfigError("--heldout-fraction must be between 0 and 1")
    clf = CrossEncoderClassifier(
        model=args.model,
        behaviour_features=args.behaviour,
        progress=not args.no_progress,
        **same_named(
            args, "lora", "max_length", "history_items", "max_pairs", "negatives", "negative_sampling",
            "epochs", "batch_size", "lr", "seed", "device", "dtype", "threads", "template",
        ),
    )  # fmt: skip
    ds = load_from_args(args, args.items, args.interactions)
    test = _read_test(args.test) if args.test else None
    train_users, held_users = split_users(ds, args.heldout_fraction, args.seed)
    c = clf.config
    common = {"history_items": c.history_items, "seed": c.seed}  # the same for training and held-out pairs
    pairs = sample_pairs(
        ds, train_users, n_pairs=c.max_pairs, negatives=c.negatives, how=c.negative_sampling, **common
    )
    t0 = time.perf_counter()
    clf.fit(ds, pairs, stats_users=train_users)
    fit_s = time.perf_counter() - t0
    ev_pairs = heldout_pairs(
        ds, held_users, negatives=args.eval_negatives, how=args.eval_negative_sampling, test=test, **common
    )
    ev = clf.evaluate(ds, ev_pairs)
    print(
        f"training pairs: {len(pairs)} from {len(train_users)} users ({int(pairs.labels.sum())} positives), "
        f"{c.negative_sampling} negatives, {f'LoRA r={c.lora_r}' if c.lora else 'full fine-tuning'}, {fit_s:.0f}s"
    )
    print(f"held-out users: {len(held_users)}; pairs: {ev['n_pairs']} ({ev['positives']} positives)")
    print(ev["report"])
    print(
        f"ROC-AUC: {ev['roc_auc']:.4f} (popularity alone on the same pairs: {ev['popularity_roc_auc']:.4f}; "
        f"{args.eval_negative_sampling} negatives)"
    )
    result = {
        "roc_auc": round(ev["roc_auc"], 5),
        "popularity_roc_auc": round(ev["popularity_roc_auc"], 5),
        "eval_pairs": ev["n_pairs"],
        "train_pairs": len(pairs),
        "fit_seconds": round(fit_s, 1),
    }
    if args.save:
        clf.save(args.save)
        print(f"saved the classifier to {args.save}")
    if args.rerank:
        recs = _read_recs(args.rerank)
        weight = args.blend_weight
        if weight == "auto":
            choice = _choose_weight(args, clf, ds, held_users)
            print(choice.line())
            weight = choice.weight
            result["validation_ndcg10"] = {f"{w:g}": round(v, 5) for w, v in choice.curve.items()}
        out = clf.rerank(ds, recs, top_n=args.top_n, weight=weight)
        from tokrec.fileio import atomic_write

        atomic_write(Path(args.output), lambda tmp: out.to_csv(tmp, index=False))
        print(
            f"re-ranked (blend weight {weight:g}) the top {args.top_n} of {recs['user_id'].nunique()} users -> {args.output}"
        )
        result["blend_weight"] = weight
        result["reranked_users"] = int(recs["user_id"].nunique())
    print(json.dumps(result))
    sys.stdout.flush()
    return 0


def _blend_weight(text: str) -> float | str:
    """``--blend-weight``: ``auto`` or a number in [0, 1]."""
    if text == "auto":
        return text
    try:
        w = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected auto or a number in [0, 1], not {text!r}") from None
    if not 0.0 <= w <= 1.0:
        raise argparse.ArgumentTypeError(f"expected auto or a number in [0, 1], not {text!r}")
    return w


def _choose_weight(args: argparse.Namespace, clf, ds, held_users):
    """The blend weight chosen on validation (:func:`tokrec.tuning.choose_rerank_weight`): the classifier never
    trained on ``held_users``; ``--first-stage`` is refitted without their last events."""
    from tokrec.models.base import wants_item_vectors
    from tokrec.models.registry import create_model
    from tokrec.tuning import choose_rerank_weight

    first = create_model(args.first_stage, None)
    vectors = None
    if wants_item_vectors(first):
        from tokrec.features import item_vectors_for

        vectors = item_vectors_for(ds)
    users = [str(u) for u in ds.user_vocab.decode(held_users)]
    return choose_rerank_weight(clf, ds, first, users, item_vectors=vectors, top_n=args.top_n)


def _read_test(path: str):
    from tokrec.data.loaders import load_interactions

    return load_interactions(path)


def _read_recs(path: str):
    import pandas as pd

    from tokrec.errors import DataError

    try:
        recs = pd.read_csv(path, dtype={"user_id": str, "item_id": str})
    except (OSError, ValueError) as e:
        raise DataError(f"cannot read recommendations: {e}", file=path) from e
    for col in ("user_id", "item_id"):
        if col not in recs.columns:
            raise DataError("missing column", file=path, column=col)
    return recs
