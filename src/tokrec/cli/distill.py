"""`tokrec distill`: put a larger encoder's placement of the catalog into the small one (teacher -> student).

Writes an encoder folder that every command takes through ``--model-path`` (and that ``tokrec finetune
--model-path`` can tune on behaviour afterwards). Reads the texts of the items with training events only, less
a validation share (see :mod:`tokrec.encoders.distill`); the last stdout line is a JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import sys

from tokrec.cli._args import add_template_arg, add_torch_args, output_folder, same_named
from tokrec.cli._data import add_data_args


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "distill",
        help="distil a larger encoder's item vectors into the small one; writes an encoder folder",
        description=(
            "Teaches the student encoder (the bundled all-MiniLM-L6-v2 by default) to place the catalog's item "
            "texts as a larger teacher does (a linear head onto the teacher's vectors, dropped after training, "
            "plus the teacher's cosine similarities), on the texts of the items with training events less a "
            "validation share; items without events are read only with --texts catalog. Early stopping on the "
            "validation items (--keep last: every epoch runs, the last is written). "
            "The output folder works as --model-path of every command."
        ),
    )
    add_data_args(p, "training interactions (only which items have events is read)")
    p.add_argument("--teacher", required=True, help="the teacher encoder: a Hugging Face id or folder")
    p.add_argument(
        "--output",
        required=True,
        metavar="DIR",
        type=output_folder,
        help="the distilled encoder folder to write",
    )
    p.add_argument(
        "--model-path", default=None, help="the student's base folder (default: the bundled all-MiniLM-L6-v2)"
    )
    p.add_argument(
        "--epochs", type=int, default=None, help="most epochs (default 15; early stopping may end sooner)"
    )
    p.add_argument(
        "--patience",
        type=int,
        default=None,
        help="epochs without a validation gain before stopping (default 3)",
    )
    p.add_argument(
        "--keep",
        choices=("best", "last"),
        default=None,
        help="the weights written: the validation items' best epoch (default, early stopping), or the last "
        "epoch (every epoch runs; for --texts catalog, where the items asked about are among the texts read)",
    )
    p.add_argument("--batch-size", type=int, default=None, help="item texts per step (default 128)")
    p.add_argument("--lr", type=float, default=None, help="the student's learning rate (default 5e-5)")
    p.add_argument(
        "--relational-weight",
        type=float,
        default=None,
        help="weight of the similarity-matrix term (default 1)",
    )
    p.add_argument(
        "--texts",
        choices=("with-events", "catalog"),
        default=None,
        help="the item texts trained on (never the validation items'): those of items with training events "
        "(default), or the whole catalog's, items without events included (their texts only: for new items "
        "known when distilling)",
    )
    p.add_argument(
        "--max-seconds", type=float, default=None, help="time budget: the running epoch is the last"
    )
    p.add_argument(
        "--val-fraction", type=float, default=None, help="items held out for validation (default 0.2)"
    )
    add_torch_args(p, ("auto", "fp32", "bf16"), None, "torch CPU threads")
    p.add_argument("--seed", type=int, default=None)
    add_template_arg(p)
    p.add_argument("--progress", action="store_true", help="progress bars on stderr")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tokrec.data.loaders import load_dataset
    from tokrec.encoders.distill import distill_encoder, make_distill_config

    given = same_named(
        args, "epochs", "patience", "keep", "batch_size", "lr", "relational_weight", "texts", "max_seconds", "val_fraction", "device",
        "dtype", "threads", "seed", "progress", "template",
    )  # fmt: skip
    cfg = make_distill_config(
        teacher=args.teacher, model=args.model_path, **{k: v for k, v in given.items() if v is not None}
    )
    ds = load_dataset(items=args.items, interactions=args.interactions)
    r = distill_encoder(ds, args.output, cfg)
    print(
        f"validation ({r.info['val_items']} held-out items; trained on {r.info['train_items']}), agreement with "
        f"the teacher: {r.summary()}"
    )
    print(f"wrote {args.output}")
    print(json.dumps(r.to_json()))
    sys.stdout.flush()
    return 0
