"""Embedding-cache speed: a cold pass (encode + store) vs a warm pass (all hits), in ONE run, same texts.

Prints both times, the ratio, the hit/miss counts, and whether the warm vectors equal the cold ones.

    .venv/bin/python benchmarks/cache_speed.py                  # ml-100k item texts if present
    .venv/bin/python benchmarks/cache_speed.py --synthetic 2000
    .venv/bin/python benchmarks/cache_speed.py --model tiny     # a tiny random BERT: measures the cache itself

The cache lives in a fresh temporary folder, deleted afterwards.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from encode_speed import ITEMS, item_texts, synthetic_texts  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=Path, default=ITEMS)
    ap.add_argument("--synthetic", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--model", default=None, help="model id/folder, or 'tiny' (default: bundled MiniLM)")
    args = ap.parse_args()

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch

    torch.set_num_threads(args.threads)
    from tokrec.cache import CachedEncoder, EmbeddingCache
    from tokrec.encoders import load_encoder

    texts = (
        synthetic_texts(args.synthetic)
        if args.synthetic or not args.items.is_file()
        else item_texts(args.items)
    )
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model
        if model == "tiny":
            from tokrec.encoders.testing import make_tiny_bert

            model = str(make_tiny_bert(Path(tmp) / "tiny"))
        enc = load_encoder(model)
        enc.encode(texts[:16])  # load weights and warm up outside the timed passes
        cache = EmbeddingCache(Path(tmp) / "cache")
        cold_enc = CachedEncoder(enc, cache)
        t0 = time.perf_counter()
        cold = cold_enc.encode(texts)
        cold_s = time.perf_counter() - t0
        warm_enc = CachedEncoder(enc, cache)
        t0 = time.perf_counter()
        warm = warm_enc.encode(texts)
        warm_s = time.perf_counter() - t0
        cache.close()
        size = sum(f.stat().st_size for f in cache.path.parent.glob(cache.path.name + "*"))
    print(f"{len(texts)} texts; encoder {enc.describe()}; threads {args.threads}")
    print(
        f"cold (encode + store): {cold_s:8.3f}s  hits {int(cold_enc.stats['hits'])} misses {int(cold_enc.stats['misses'])}"
    )
    print(
        f"warm (all from cache): {warm_s:8.3f}s  hits {int(warm_enc.stats['hits'])} misses {int(warm_enc.stats['misses'])}"
    )
    print(
        f"speed-up warm / cold: {cold_s / warm_s:.1f}x; identical vectors: {bool(np.array_equal(cold, warm))}; cache file {size / 1e6:.1f} MB"
    )


if __name__ == "__main__":
    main()
