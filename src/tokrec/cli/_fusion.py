"""``--item-vectors PATH[:WEIGHT]`` (repeatable), shared by `embed`, `features`, `recommend` and `fit`.

See :mod:`tokrec.fusion` for what the fusion does and how a weight left out is learnt.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

from tokrec.errors import ConfigError


def add_item_vectors_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("other item vectors (images, audio, ...)")
    g.add_argument(
        "--item-vectors",
        action="append",
        default=None,
        metavar="PATH[:WEIGHT]",
        help="a Parquet of item_id + vector fused with the text vectors (repeatable); without :WEIGHT the "
        "weight is chosen on a validation split cut from the interactions",
    )
    g.add_argument(
        "--missing-vectors",
        choices=("map", "zeros"),
        default="map",
        help="items absent from a vector set: predicted from their text vector (map, default) or zeros",
    )


def fuse_from_args(
    args: argparse.Namespace,
    item_ids: list[str],
    text: np.ndarray,
    *,
    dataset: Any = None,
    model: str = "text-profile",
    config: dict[str, Any] | None = None,
) -> tuple[np.ndarray, Any]:
    """The text vectors fused with ``--item-vectors`` (unchanged without it) and the fusion (or None)."""
    from tokrec.fusion import fuse_catalog, parse_item_vectors_arg

    if not getattr(args, "item_vectors", None):
        return text, None
    specs = [parse_item_vectors_arg(a) for a in args.item_vectors]
    fused, fusion, summary = fuse_catalog(
        item_ids, text, specs, dataset=dataset, model=model, config=config, missing=args.missing_vectors
    )
    for s in summary["sets"]:
        how = f"learnt on validation with {model}" if s["learnt"] else "given"
        print(
            f"item vectors {s['name']}: dim {s['dim']}, {s['present']}/{len(item_ids)} items, "
            f"{s['ignored_ids']} ids not in the catalog ignored; weight {s['weight']:g} ({how})",
            file=sys.stderr,
        )
    return fused, fusion


def fit_fused_bundle(args: argparse.Namespace, dataset: Any, model: Any) -> Path:
    """`tokrec fit --item-vectors`: the bundle with fused item vectors, plus fusion.json/.safetensors.

    The steps of :func:`tokrec.serve.bundle.fit_bundle` with the fusion between encoding and fitting; the
    fusion state is written into the bundle directory before it is renamed into place.
    """
    from tokrec.encoders import load_encoder
    from tokrec.features import item_vectors
    from tokrec.serve.bundle import EncoderSpec, save_bundle, template_spec
    from tokrec.serve.index import ANN_THRESHOLD, build_ann, write_ann
    from tokrec.text import ItemTemplate, TemplateSpec

    encoder = load_encoder(args.encoder)
    spec = template_spec(ItemTemplate.from_spec(args.template), dataset.items)
    tmpl = ItemTemplate.from_spec(TemplateSpec.model_validate(spec))
    text = item_vectors(
        dataset,
        encoder=encoder,
        cache=None if args.no_cache else "default",
        template=tmpl,
        progress=args.progress,
    )
    fused, fusion = fuse_from_args(args, dataset.item_vocab.ids, text, dataset=dataset, model=model.name)
    model.fit(dataset, fused)
    enc = EncoderSpec.of(encoder, model=args.encoder)
    enc = EncoderSpec(enc.model, enc.options, enc.fingerprint, fusion.dim, {**enc.info, "text_dim": enc.dim})
    build = len(fused) >= ANN_THRESHOLD if args.ann == "auto" else args.ann == "yes"

    def extra_files(directory: Path) -> None:
        fusion.save(directory)
        if build:
            write_ann(build_ann(fused), directory)

    extra = {"fusion": {"file": "fusion.json", **fusion.config.model_dump()}}
    return save_bundle(
        args.output,
        model=model,
        item_vectors=fused,
        items=dataset.items,
        encoder=enc,
        template=spec,
        ann_index=extra_files,
        extra=extra,
    )


def check_no_learning(args: argparse.Namespace, command: str) -> None:
    """Commands without interactions cannot learn a weight."""
    from tokrec.fusion import parse_item_vectors_arg

    for a in getattr(args, "item_vectors", None) or []:
        if parse_item_vectors_arg(a).weight is None:
            raise ConfigError(
                f"tokrec {command} has no interactions to learn a weight from: give --item-vectors {a}:WEIGHT"
            )
