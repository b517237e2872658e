"""`tokrec finetune`: teach the text encoder what users do (contrastive, on the interactions).

Writes an encoder folder that every command takes through ``--model-path`` / ``--model``. Prints the
validation curve (a cold-item split cut from the training events; see
:mod:`tokrec.encoders.finetune`); the last stdout line is a JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import sys

from tokrec.cli._args import add_template_arg, add_torch_args, output_folder, same_named
from tokrec.cli._data import add_data_args


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "finetune",
        help="fine-tune the text encoder on the interactions (contrastive); writes an encoder folder",
        description=(
            "Contrastive fine-tuning of the encoder: a user's recent items (the mean of their vectors) "
            "against the next item's text, with in-batch negatives and popularity-drawn hard negatives. "
            "Full fine-tuning by default, or LoRA / AdaLoRA adapters (peft) merged into the weights. bf16 "
            "on CUDA. Early stopping on a cold-item validation split cut from the training events. The "
            "output folder works as --model-path / --model of every command."
        ),
    )
    add_data_args(p, "training interactions (never the test events)")
    p.add_argument(
        "--output", required=True, metavar="DIR", type=output_folder, help="the tuned encoder folder to write"
    )
    p.add_argument(
        "--model-path", default=None, help="base encoder folder (default: the bundled all-MiniLM-L6-v2)"
    )
    p.add_argument(
        "--adapter", choices=("none", "lora", "adalora"), default="none", help="default none: all weights"
    )
    p.add_argument("--lora-r", type=int, default=16)
    p.add_argument("--epochs", type=int, default=6, help="most epochs (early stopping may end sooner)")
    p.add_argument("--patience", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=128, help="events per step (default 128)")
    p.add_argument("--max-steps-per-epoch", type=int, default=None, help="cap for small CPU runs")
    p.add_argument(
        "--max-seconds",
        type=float,
        default=None,
        help="time budget: the epoch running when it is spent is the last",
    )
    p.add_argument("--history-items", type=int, default=5)
    p.add_argument(
        "--query",
        choices=("recent", "any"),
        default="recent",
        help="recent (default): the items just before each event (next-item); any: the user's other items "
        "drawn from their whole history (new items, whose events fall anywhere in a timeline)",
    )
    p.add_argument("--hard-negatives", type=int, default=4, help="per event (default 4)")
    p.add_argument(
        "--popularity-correction",
        action="store_true",
        help="logQ correction: take log(events + 1) off each item's training logit, so frequent items are not "
        "pushed away for filling batches and the vectors keep what makes an item popular",
    )
    p.add_argument("--temperature", type=float, default=0.05)
    p.add_argument("--lr", type=float, default=None, help="default 3e-5 (full) / 3e-4 (adapter)")
    p.add_argument("--val-fraction", type=float, default=0.2, help="items held out for validation")
    p.add_argument(
        "--hold-out-last",
        action="store_true",
        help="leave each user's last event out, as the recommender's tuning step does for its validation: "
        "use it when the encoder is for next-item (warm) recommendations on this log",
    )
    add_torch_args(p, ("auto", "fp32", "bf16"), None, "torch CPU threads")
    p.add_argument("--seed", type=int, default=42)
    add_template_arg(p)
    p.add_argument("--progress", action="store_true", help="progress bars on stderr")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import logging

    from tokrec.data.loaders import load_dataset
    from tokrec.encoders.finetune import finetune_encoder, make_config

    cfg = make_config(
        model=args.model_path,
        **same_named(
            args, "adapter", "lora_r", "epochs", "patience", "batch_size", "max_steps_per_epoch", "max_seconds",
            "history_items", "query", "hard_negatives", "popularity_correction", "temperature", "lr",
            "val_fraction", "hold_out_last", "device", "dtype", "threads", "seed", "progress", "template",
        ),
    )  # fmt: skip
    ds = load_dataset(items=args.items, interactions=args.interactions)
    logging.getLogger("tokrec.encoders.finetune").setLevel(logging.INFO)
    if not logging.getLogger().handlers:
        logging.basicConfig(format="%(message)s", stream=sys.stderr)
    r = finetune_encoder(ds, args.output, cfg)
    print(
        f"validation ({r.info['val_items']} held-out items, {r.info['val_examples']} events): {r.summary()}"
    )
    print(f"wrote {args.output}")
    print(json.dumps(r.to_json()))
    sys.stdout.flush()
    return 0
