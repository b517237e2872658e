"""``--item-vectors PATH[:WEIGHT]`` (repeatable), shared by `embed`, `features`, `recommend` and `fit`.

See :mod:`tokrec.fusion` for what the fusion does and how a weight left out is learnt.
"""

from __future__ import annotations

import argparse
import sys
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


def check_no_learning(args: argparse.Namespace, command: str) -> None:
    """Commands without interactions cannot learn a weight."""
    from tokrec.fusion import parse_item_vectors_arg

    for a in getattr(args, "item_vectors", None) or []:
        if parse_item_vectors_arg(a).weight is None:
            raise ConfigError(
                f"tokrec {command} has no interactions to learn a weight from: give --item-vectors {a}:WEIGHT"
            )
