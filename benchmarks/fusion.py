#!/usr/bin/env python
"""Item-vector fusion (``--item-vectors``): does a second modality help where it carries signal, and does it
cost nothing where it is noise?

    .venv/bin/python benchmarks/fusion.py --part synthetic
    .venv/bin/python benchmarks/fusion.py --part ml100k --shared ../shared

``synthetic``: :func:`tokrec.data.synthetic.make_synthetic_multimodal` (2,000 items, 800 users): behaviour
follows a topic written in the item text *and* a hidden style present only in 32-d "image" vectors. Text
vectors come from the default encoder (bundled all-MiniLM-L6-v2, through the embedding cache) on the item
text, as ``tokrec recommend`` computes them. Leave-last-out, full ranking, NDCG@10 for text only, image only
(the text block's weight set to 0) and fused (image weight learnt on a validation split cut from train, as
``--item-vectors PATH`` does), with ``text-profile`` and the default model ``tokrec``.

``ml100k``: the benchmark's warm split (``ml-100k-splits/warm``), the default model ``tokrec``; text vectors
alone against text fused with 64-d standard-normal random vectors whose weight is learnt on a validation
split cut from train (never the test). Prints both NDCG@10 and their difference.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def _ndcg(model_name: str, split_train, test_users, test, train, vectors, k: int = 10) -> float:
    from tokrec.evaluation.metrics import score_recommendations
    from tokrec.models.registry import create_model

    model = create_model(model_name).fit(split_train, vectors)
    recs = model.recommend_batch(test_users, k=100)
    return float(score_recommendations(recs, test, train, k=k)[f"ndcg@{k}"])


def synthetic(models: list[str]) -> None:
    import tempfile

    from tokrec.data.synthetic import make_synthetic_multimodal
    from tokrec.evaluation.splits import leave_last_out
    from tokrec.features import item_vectors, write_vectors
    from tokrec.fusion import FusionConfig, ItemFusion, VectorSetSpec, fuse_catalog

    ds, img = make_synthetic_multimodal(2000, 800, seed=0)
    image = np.stack(img["vector"].to_numpy())
    print(f"synthetic multimodal: {ds.n_items} items, {ds.n_users} users, {len(ds)} events", flush=True)
    text = item_vectors(ds)
    split = leave_last_out(ds)
    train, test, users = split.train.interactions, split.test.interactions, split.test_users
    only_image = ItemFusion(
        FusionConfig(
            names=["image"], dims=[image.shape[1]], weights=[1.0], text_dim=text.shape[1], text_weight=0.0
        )
    ).fuse(text, [image])
    # the ceiling: the two generating factors themselves (topic one-hot, style one-hot), equally weighted
    topic = ds.items["category"].astype("category").cat.codes.to_numpy()
    style = img["style"].to_numpy()
    oracle = np.hstack([np.eye(topic.max() + 1)[topic], np.eye(style.max() + 1)[style]]).astype(np.float32)
    print("| model | text | image | fused (learnt weight) | both true factors (ceiling) |")
    print("| --- | ---: | ---: | ---: | ---: |")
    with tempfile.TemporaryDirectory() as d:
        path = write_vectors(Path(d) / "image.parquet", ds.item_vocab.ids, image)
        for name in models:
            fused, _, summary = fuse_catalog(
                ds.item_vocab.ids, text, [VectorSetSpec(str(path))], dataset=split.train, model=name
            )
            w = summary["sets"][0]["weight"]
            row = [_ndcg(name, split.train, users, test, train, v) for v in (text, only_image, fused, oracle)]
            print(
                f"| {name} | {row[0]:.4f} | {row[1]:.4f} | {row[2]:.4f} (w={w:g}) | {row[3]:.4f} |",
                flush=True,
            )


def ml100k(shared: Path, model: str) -> None:
    import tempfile

    from tokrec.data.loaders import load_dataset, load_interactions
    from tokrec.features import item_vectors, write_vectors
    from tokrec.fusion import VectorSetSpec, fuse_catalog

    d = shared / "data" / "ml-100k-splits"
    ds = load_dataset(d / "items.csv", d / "warm" / "train.csv")
    test = load_interactions(d / "warm" / "test.csv")
    users = list(dict.fromkeys(test["user_id"]))
    text = item_vectors(ds)
    noise = np.random.default_rng(0).standard_normal((ds.n_items, 64)).astype(np.float32)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        path = write_vectors(Path(tmp) / "random.parquet", ds.item_vocab.ids, noise)
        fused, _, summary = fuse_catalog(
            ds.item_vocab.ids, text, [VectorSetSpec(str(path))], dataset=ds, model=model
        )
    trials = ", ".join(f"{t['weight']:g}: {t['ndcg@10']:.4f}" for t in summary["validation"])
    print(
        f"validation NDCG@10 by weight ({model}): {trials}; chosen {summary['sets'][0]['weight']:g}",
        flush=True,
    )
    base = _ndcg(model, ds, users, test, ds.interactions, text)
    with_noise = _ndcg(model, ds, users, test, ds.interactions, fused)
    print(
        f"| ml-100k warm, {model} | text {base:.4f} | text + random (learnt weight "
        f"{summary['sets'][0]['weight']:g}) {with_noise:.4f} | difference {with_noise - base:+.4f} |"
        f" ({time.perf_counter() - t0:.0f}s)"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--part", choices=("synthetic", "ml100k", "all"), default="all")
    ap.add_argument(
        "--models", default="text-profile,tokrec", help="synthetic part: models (default %(default)s)"
    )
    ap.add_argument("--model", default="tokrec", help="ml100k part: the model (default %(default)s)")
    ap.add_argument("--shared", help="the shared folder (default ../shared or $TOKREC_SHARED)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    if args.part in ("synthetic", "all"):
        synthetic([m.strip() for m in args.models.split(",") if m.strip()])
    if args.part in ("ml100k", "all"):
        shared = Path(args.shared or os.environ.get("TOKREC_SHARED") or REPO.parent / "shared")
        if not (shared / "data" / "ml-100k-splits").is_dir():
            print(f"{shared}/data/ml-100k-splits is absent: ml100k part skipped", file=sys.stderr)
            return 0
        ml100k(shared, args.model)
    return 0


if __name__ == "__main__":
    sys.exit(main())
