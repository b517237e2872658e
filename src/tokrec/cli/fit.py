"""`tokrec fit`: data -> item vectors (through the embedding cache) -> fitted model -> one bundle directory."""

from __future__ import annotations

import argparse
import logging
import sys
import time

from tokrec.cli._args import add_template_arg, output_folder
from tokrec.cli._data import add_data_args, add_loading_options, load_from_args, read_candidates

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "fit",
        help="fit a model and write a servable model directory",
        description=(
            "Loads the catalog and interactions, computes item vectors with the encoder (through the embedding "
            "cache), fits the model and writes ONE directory (model, item vectors, catalog, vocabularies, encoder "
            "spec, item template) that `tokrec serve --model DIR` loads without pickle."
        ),
    )
    add_data_args(p, "interaction log (CSV / Parquet / JSONL)")
    p.add_argument("--model", default=None, help="registry name (default: the registry's DEFAULT_MODEL)")
    p.add_argument("--config", help="JSON file (or inline JSON object) of the model's hyperparameters")
    p.add_argument(
        "--output",
        required=True,
        type=output_folder,
        help="the model directory to write (replaced atomically)",
    )
    p.add_argument(
        "--encoder",
        "--model-path",
        dest="encoder",
        default=None,
        help="encoder model id or folder (default: bundled all-MiniLM-L6-v2)",
    )
    add_template_arg(p)
    p.add_argument(
        "--candidates",
        help="the items the model will be asked to rank (CSV / Parquet with item_id): when most of them have no "
        "events (new items), the tuning step validates on pseudo-new items instead of each user's last event",
    )
    p.add_argument("--no-cache", action="store_true", help="do not use the embedding cache")
    p.add_argument(
        "--ann",
        choices=("auto", "yes", "no"),
        default="auto",
        help="build the ANN (IVF-Flat) index now (auto: >= 20,000 items)",
    )
    p.add_argument("--progress", action="store_true", help="show encoding progress")
    from tokrec.cli._fusion import add_item_vectors_args
    from tokrec.cli.tune import add_tune_args

    add_item_vectors_args(p)
    add_loading_options(p, users=True)
    add_tune_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tokrec.config import read_json_config
    from tokrec.models import registry
    from tokrec.serve.bundle import check_output_dir, fit_bundle

    check_output_dir(args.output)  # before the data is read: a wrong --output fails at once
    t0 = time.perf_counter()
    name = args.model or registry.DEFAULT_MODEL
    model = registry.create_model(name, read_json_config(args.config))  # a bad config fails before loading
    dataset = load_from_args(args, args.items, args.interactions)
    candidates, _ = read_candidates(args, dataset)
    print(
        f"loaded {dataset.n_items} items, {dataset.n_users} users, {len(dataset)} interactions ({dataset.report.summary()})",
        file=sys.stderr,
    )
    from tokrec.cli.tune import tune_vectors_step

    encoder = _check_memory(args, model, dataset)  # before anything is encoded or tuned
    tuned, vectors = tune_vectors_step(
        args, name, dataset, read_json_config(args.config), encoder, candidates=candidates
    )
    if tuned is not None:
        model = registry.create_model(name, tuned.config)
    ann = {"auto": None, "yes": True, "no": False}[args.ann]
    fuse = None
    if args.item_vectors:  # fused item vectors + fusion.json in the bundle (see tokrec.fusion)
        from tokrec.cli._fusion import fuse_from_args

        def fuse(text):
            return fuse_from_args(args, dataset.item_vocab.ids, text, dataset=dataset, model=model.name)

    out = fit_bundle(
        dataset,
        args.output,
        model=model,
        encoder=encoder,
        encoder_model=args.encoder,
        template=args.template,
        cache=None if args.no_cache else "default",
        ann=ann,
        progress=args.progress,
        fuse=fuse,
        tuned=tuned,
        vectors=vectors,
    )
    if tuned is not None:
        from tokrec.tuning import write_tuning

        write_tuning(tuned, out)
    print(f"wrote {out} (model {name}, {dataset.n_items} items) in {time.perf_counter() - t0:.1f}s")
    return 0


def _check_memory(args: argparse.Namespace, model, dataset):
    """The model's memory estimate for this encoder's vector size, with the tuning step's matrices when it
    runs, against the memory available (:func:`tokrec.models.base.check_memory`); returns the encoder it
    loaded to learn that size (None when the model reads no item vectors), for the steps that follow."""
    from tokrec.models.base import check_memory, wants_item_vectors
    from tokrec.tuning import MATRIX_BYTES, tunable

    dim, encoder = 384, None
    if wants_item_vectors(model):
        from tokrec.encoders import load_encoder

        encoder = load_encoder(args.encoder)
        dim = int(encoder.dim)
    tuning = not args.no_tune and tunable(model.name) and not args.config
    check_memory(model, dataset, dim=dim, extra=MATRIX_BYTES if tuning else 0)
    return encoder
