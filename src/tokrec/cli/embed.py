"""`tokrec embed`: item catalog -> Parquet of item vectors (``item_id``, ``vector``), through the cache.

Also home of the encoder options shared by `tokrec features` and `tokrec tokens`.
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from pathlib import Path
from typing import Any

from tokrec.cli._args import (
    add_ray_args,
    add_template_arg,
    check_ray_args,
    output_file,
    positive_int,
    same_named,
)
from tokrec.cli._data import add_loading_options
from tokrec.errors import ConfigError


def add_encoder_args(p: argparse.ArgumentParser, *, cache: bool = True) -> None:
    """Adds --model, --template, --batch-size, --dtype, --device, --max-length (and --cache/--no-cache)."""
    g = p.add_argument_group("encoder")
    g.add_argument(
        "--model",
        "--model-path",
        dest="model",
        default=None,
        help="HF model id or local folder (default: bundled all-MiniLM-L6-v2)",
    )
    add_template_arg(g)
    g.add_argument(
        "--pooling",
        default="auto",
        choices=["auto", "mean", "cls", "last"],
        help="pooling (default: the model's own)",
    )
    g.add_argument(
        "--batch-size",
        type=positive_int,
        default=None,
        help="texts per forward pass (default 64 on a CPU, 512 on a GPU)",
    )
    g.add_argument(
        "--dtype",
        default="auto",
        choices=["auto", "fp32", "bf16", "fp16"],
        help="compute dtype (default auto: bf16 where the CPU has it)",
    )
    g.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    g.add_argument(
        "--max-length",
        type=positive_int,
        default=None,
        help="tokens per text (default: the model's, else 256)",
    )
    g.add_argument("--prompt", default="", help="text put before every input (part of the cache key)")
    g.add_argument(
        "--threads", type=positive_int, default=None, help="torch CPU threads (default: torch's choice)"
    )
    if cache:
        g.add_argument(
            "--cache",
            default=None,
            help="embedding-cache folder (default: $TOKREC_CACHE_DIR or ~/.cache/tokrec)",
        )
        g.add_argument("--no-cache", action="store_true", help="do not read or write the embedding cache")


def encoder_from_args(args: argparse.Namespace) -> Any:
    """The encoder the options describe, wrapped in the cache unless --no-cache."""
    from tokrec.encoders import load_encoder

    if args.batch_size is not None and args.batch_size < 1:
        raise ConfigError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.max_length is not None and args.max_length < 2:
        raise ConfigError(f"--max-length must be >= 2, got {args.max_length}")
    if getattr(args, "threads", None):
        import torch

        torch.set_num_threads(int(args.threads))
    enc = load_encoder(
        args.model, **same_named(args, "pooling", "batch_size", "dtype", "device", "max_length", "prompt")
    )
    if getattr(args, "no_cache", False):
        return enc
    from tokrec.cache import CachedEncoder

    return CachedEncoder(enc, args.cache)


def summary_line(
    what: str,
    *,
    rows: int,
    texts: list[str],
    enc: Any,
    encode_s: float,
    elapsed: float,
    out: Path | str,
    stats: dict[str, Any] | None = None,
) -> str:
    """The closing line: rows, tokens, texts/s, cache hits/misses (``stats``, else the encoder's own: a Ray job's
    workers count theirs), encoding-stage and total time."""
    tokens = (
        sum(min(n, int(getattr(enc, "max_length", n) or n)) for n in enc.count_tokens(texts)) if texts else 0
    )
    stats = stats if stats is not None else getattr(enc, "stats", {})
    cache = (
        f"cache hits {int(stats['hits'])} misses {int(stats['misses'])}" if "hits" in stats else "cache off"
    )
    rate = len(texts) / encode_s if encode_s > 0 else float("inf")
    return (
        f"{what}: {rows} rows -> {out}; {tokens} tokens; encoding stage {encode_s:.3f}s "
        f"({rate:.1f} texts/s); {cache}; elapsed {elapsed:.1f}s"
    )


def load_items_frame(path: str, args: argparse.Namespace | None = None) -> Any:
    """The catalog via tokrec.data.loaders (CSV / Parquet / JSONL, validated), with the command's ``--encoding``
    and ``--empty-ids`` where it has them."""
    from tokrec.data.loaders import load_items

    if not Path(path).exists():
        raise ConfigError(f"items file not found: {path}")
    return load_items(
        path, encoding=getattr(args, "encoding", "utf-8"), empty_ids=getattr(args, "empty_ids", "error")
    )


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "embed",
        help="embed an item catalog into a Parquet file of item vectors",
        description=(
            "Renders every item with the template, encodes it with the language model (through the "
            "embedding cache) and writes OUTPUT.parquet with columns item_id (string) and vector "
            "(fixed_size_list<float32>), one row per item in catalog order. The file is written atomically."
        ),
    )
    p.add_argument(
        "--items", required=True, help="item catalog (CSV / Parquet / JSONL) with an item_id column"
    )
    p.add_argument(
        "--output",
        required=True,
        type=output_file(folder_ok=True),
        help="output Parquet file (--engine ray: or a folder of shards)",
    )
    add_encoder_args(p)
    add_loading_options(p, events=False)
    add_ray_args(p, "encode here (default) or on a Ray cluster", "Ray encoder workers")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    from tokrec.cli._fusion import add_item_vectors_args

    add_item_vectors_args(p)
    p.add_argument(
        "--image-column",
        default=None,
        help="embed the images named in this column (paths or URLs) with --image-model instead of the text; "
        "the output is an item-vector set for --item-vectors (rows without an image are left out)",
    )
    p.add_argument(
        "--image-model", default=None, help="a local CLIP folder (Hugging Face or sentence-transformers)"
    )
    p.set_defaults(func=run)


def ray_model_spec(args: argparse.Namespace) -> Any:
    """The encoder for Ray workers: the model name, or a zero-argument builder when options differ."""
    model: Any = args.model
    custom = {"pooling": "auto", "dtype": "auto", "device": "auto", "max_length": None, "prompt": ""}
    if any(getattr(args, k) != v for k, v in custom.items()):
        # encoder options beyond the model travel as a zero-argument builder, run in each worker
        from tokrec.encoders import load_encoder

        opts = {k: getattr(args, k) for k in custom}
        model = functools.partial(load_encoder, args.model, batch_size=args.batch_size, **opts)
    return model


def _run_ray(args: argparse.Namespace) -> int:
    from tokrec.distributed import require_ray
    from tokrec.distributed.ray_embed import embed_items_ray

    require_ray()
    model = ray_model_spec(args)
    t0 = time.perf_counter()
    result = embed_items_ray(
        args.items,
        args.output,
        model=model,
        cache_dir=False if args.no_cache else args.cache,  # ray_embed: False = no cache, None = default
        template=args.template,
        batch_size=args.batch_size or 64,
        ray_address=args.ray_address,
        num_workers=args.num_workers,
    )
    extra = "; ".join(f"{k} {v}" for k, v in (result or {}).items())
    print(f"embed (ray): -> {args.output}; {extra}; elapsed {time.perf_counter() - t0:.1f}s", file=sys.stderr)
    return 0


def _run_images(args: argparse.Namespace) -> int:
    """--image-column: CLIP image vectors of the catalog's images -> item_id + vector Parquet."""
    from tokrec.data.loaders import read_table
    from tokrec.encoders.image import ClipImageEncoder
    from tokrec.errors import DataError
    from tokrec.features import write_vectors

    if not (args.image_column and args.image_model):
        raise ConfigError("--image-column and --image-model go together")
    if args.item_vectors:
        raise ConfigError(
            "--image-column writes an item-vector set; fuse it in another command with --item-vectors"
        )
    t0 = time.perf_counter()
    items = load_items_frame(args.items, args)
    if args.image_column not in items.columns:
        raise DataError("missing image column", file=args.items, row=1, column=args.image_column)
    _, rows = read_table(args.items)
    refs = items[args.image_column]
    has = refs.notna().to_numpy() & refs.astype(str).str.strip().ne("").to_numpy()
    enc = ClipImageEncoder(args.image_model, batch_size=args.batch_size or 32)
    vectors = enc.encode(
        refs[has].astype(str).str.strip().tolist(), file=args.items, rows=rows[has], column=args.image_column
    )
    out = write_vectors(args.output, items.loc[has, "item_id"].tolist(), vectors, id_column="item_id")
    print(
        f"embed images: {int(has.sum())} of {len(items)} items have an image -> {out}; dim {enc.dim}; "
        f"elapsed {time.perf_counter() - t0:.1f}s",
        file=sys.stderr,
    )
    return 0


def run(args: argparse.Namespace) -> int:
    from tokrec.cli._fusion import check_no_learning, fuse_from_args

    check_no_learning(args, "embed")
    check_ray_args(args)
    if args.image_column or args.image_model:
        return _run_images(args)
    if args.engine == "ray":
        if args.item_vectors:
            raise ConfigError("--item-vectors is not supported with --engine ray")
        return _run_ray(args)
    from tokrec.features import item_texts, write_vectors

    t0 = time.perf_counter()
    items = load_items_frame(args.items, args)
    texts = item_texts(items, args.template)
    enc = encoder_from_args(args)
    t1 = time.perf_counter()
    vectors = enc.encode(texts, progress=not args.no_progress)
    encode_s = time.perf_counter() - t1
    vectors, _ = fuse_from_args(args, items["item_id"].tolist(), vectors)
    out = write_vectors(args.output, items["item_id"].tolist(), vectors, id_column="item_id")
    line = summary_line(
        "embed",
        rows=len(items),
        texts=texts,
        enc=enc,
        encode_s=encode_s,
        elapsed=time.perf_counter() - t0,
        out=out,
    )
    print(f"{line}; dim {vectors.shape[1]}; model {enc.describe()}", file=sys.stderr)
    return 0
