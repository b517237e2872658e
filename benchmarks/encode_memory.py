"""Resident memory of one process while it encodes more and more texts with the default encoder.

Encodes ``--chunks`` chunks of 1,024 synthetic texts (random words, 3-120 of them, so the batches take many
widths, as a real catalog's do) with all-MiniLM-L6-v2 (``tokrec.encoders.load_encoder``, no cache) and prints the
process's resident memory after each chunk. The vectors are not kept: memory that grows is the encoder's.

    python benchmarks/encode_memory.py --chunks 8
    ONEDNN_PRIMITIVE_CACHE_CAPACITY=0 python benchmarks/encode_memory.py --chunks 8   # oneDNN's kernel cache off
    MALLOC_ARENA_MAX=1 python benchmarks/encode_memory.py --chunks 8                  # one malloc arena
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np


def rss_gb() -> float:
    with open(f"/proc/{os.getpid()}/status") as f:
        return int(f.read().split("VmRSS:")[1].split()[0]) / 2**20


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--chunks", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    from tokrec.encoders import load_encoder

    enc = load_encoder(None)
    print(f"encoder loaded: resident {rss_gb():.2f} GB")
    rng = np.random.default_rng(a.seed)
    words = ["alpha", "beta", "gamma", "delta", "garden", "wheelbarrow", "swimsuit", "quick", "dry", "pool"]
    t0 = time.perf_counter()
    for step in range(a.chunks):
        texts = [" ".join(rng.choice(words, rng.integers(3, 120))) for _ in range(1024)]
        enc.encode(texts)
        print(
            f"{(step + 1) * 1024:>7,d} texts: resident {rss_gb():.2f} GB ({time.perf_counter() - t0:.0f} s)",
            flush=True,
        )


if __name__ == "__main__":
    main()
