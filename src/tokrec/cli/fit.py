"""`tokrec fit`: data -> item vectors (through the embedding cache) -> fitted model -> one bundle directory."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

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
    p.add_argument("--items", required=True, help="item catalog (CSV / Parquet / JSONL)")
    p.add_argument("--interactions", required=True, help="interaction log (CSV / Parquet / JSONL)")
    p.add_argument("--model", default=None, help="registry name (default: the registry's DEFAULT_MODEL)")
    p.add_argument("--config", help="JSON file (or inline JSON object) of the model's hyperparameters")
    p.add_argument("--output", required=True, help="the model directory to write (replaced atomically)")
    p.add_argument(
        "--encoder", default=None, help="encoder model id or folder (default: bundled all-MiniLM-L6-v2)"
    )
    p.add_argument("--template", default=None, help="item template: a format string or a .txt/.json file")
    p.add_argument("--no-cache", action="store_true", help="do not use the embedding cache")
    p.add_argument(
        "--ann",
        choices=("auto", "yes", "no"),
        default="auto",
        help="build the ANN (IVF-Flat) index now (auto: >= 20,000 items)",
    )
    p.add_argument("--progress", action="store_true", help="show encoding progress")
    from tokrec.cli.tune import add_tune_args

    add_tune_args(p)
    p.set_defaults(func=run)


def _model_config(text: str | None) -> dict[str, Any]:
    from tokrec.errors import ConfigError

    if not text:
        return {}
    raw = text if text.lstrip().startswith("{") else None
    if raw is None:
        path = Path(text)
        if not path.is_file():
            raise ConfigError(f"--config: no such file: {text}")
        raw = path.read_text()
    try:
        cfg = json.loads(raw)
    except json.JSONDecodeError as e:
        raise ConfigError(f"--config: invalid JSON: {e}") from e
    if not isinstance(cfg, dict):
        raise ConfigError("--config must hold a JSON object")
    return cfg


def run(args: argparse.Namespace) -> int:
    from tokrec.data.loaders import load_dataset
    from tokrec.models import registry
    from tokrec.serve.bundle import fit_bundle

    t0 = time.perf_counter()
    dataset = load_dataset(items=args.items, interactions=args.interactions)
    print(
        f"loaded {dataset.n_items} items, {dataset.n_users} users, {len(dataset)} interactions ({dataset.report.summary()})",
        file=sys.stderr,
    )
    name = args.model or registry.DEFAULT_MODEL
    model = registry.create_model(name, _model_config(args.config))
    from tokrec.cli.tune import tune_vectors_step

    tuned = tune_vectors_step(args, name, dataset, _model_config(args.config))
    if tuned is not None:
        model = registry.create_model(name, tuned.config)
    ann = {"auto": None, "yes": True, "no": False}[args.ann]
    out = fit_bundle(
        dataset,
        args.output,
        model=model,
        encoder_model=args.encoder,
        template=args.template,
        cache=None if args.no_cache else "default",
        ann=ann,
        progress=args.progress,
    )
    if tuned is not None:
        from tokrec.tuning import write_tuning

        write_tuning(tuned, out)
    print(f"wrote {out} (model {name}, {dataset.n_items} items) in {time.perf_counter() - t0:.1f}s")
    return 0
