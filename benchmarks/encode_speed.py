"""Encoder speed: sentence-transformers ``encode()`` defaults vs tokrec's encoder, in ONE run, same texts.

Prints texts/s for each, the speed ratio and the mean/min cosine between tokrec's vectors and
sentence-transformers' (fp32) vectors. The embedding cache is off: this measures encoding only.

    .venv/bin/python benchmarks/encode_speed.py                       # ml-100k item texts if present
    .venv/bin/python benchmarks/encode_speed.py --synthetic 2000      # 2000 synthetic ~43-token texts
    .venv/bin/python benchmarks/encode_speed.py --dtype fp32 --repeat 2
    python benchmarks/encode_speed.py --device cuda --synthetic 50000 --batch-size 512 --dtype bf16   # on a GPU
    python benchmarks/encode_speed.py --prefetch [--stand-in-tiny] ...   # the background tokenizer off and on

Timings on a shared 2-core machine are noisy; compare the ratio, and run it more than once.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

ITEMS = Path(__file__).resolve().parents[2] / "shared" / "data" / "ml-100k-splits" / "items.csv"
WORDS = [
    "drama",
    "comedy",
    "thriller",
    "action",
    "romance",
    "documentary",
    "animation",
    "family",
    "crime",
    "mystery",
    "war",
    "western",
    "musical",
    "horror",
    "fantasy",
    "adventure",
    "science",
    "fiction",
    "space",
    "detective",
    "love",
    "city",
    "night",
    "river",
    "summer",
    "winter",
    "story",
    "young",
    "old",
    "man",
    "woman",
    "child",
    "king",
    "queen",
    "island",
    "journey",
    "secret",
    "return",
    "last",
    "first",
    "great",
    "little",
    "dark",
    "light",
]


def synthetic_texts(n: int, seed: int = 0) -> list[str]:
    """``n`` distinct catalog-like texts of about 43 MiniLM tokens each."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        title = " ".join(rng.choice(WORDS, size=rng.integers(2, 6))).title()
        genres = "|".join(rng.choice(WORDS[:16], size=rng.integers(1, 4), replace=False)).title()
        out.append(
            f"title: {title} ({1950 + i % 70}). release_date: 0{1 + i % 9}-Jan-{1950 + i % 70}. genres: {genres}. item {i}."
        )
    return out


def item_texts(path: Path) -> list[str]:
    import pandas as pd

    from tokrec.text import ItemTemplate

    return ItemTemplate().render_many(pd.read_csv(path, dtype=str, keep_default_na=False))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=Path, default=ITEMS, help="items CSV (default: ml-100k splits)")
    ap.add_argument("--synthetic", type=int, default=0, help="use N synthetic texts instead")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--dtype", default="auto", help="tokrec dtype (auto, fp32, bf16)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=1, help="timed repetitions of each (alternating)")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="both encoders run here")
    ap.add_argument("--model", default=None, help="encoder folder (default: the bundled all-MiniLM-L6-v2)")
    ap.add_argument(
        "--prefetch",
        action="store_true",
        help="instead: tokrec's encoder with the background tokenizer off and on (windows of 4,096), same device",
    )
    ap.add_argument(
        "--stand-in-tiny",
        action="store_true",
        help="with --prefetch: a 1-layer, 32-wide BERT with MiniLM's tokenizer (random weights) instead of the model, "
        "so that the model is cheap next to tokenizing, as MiniLM is on a GPU (a stand-in: says nothing of speed)",
    )
    args = ap.parse_args()

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    # TOKENIZERS_PARALLELISM is left as the caller's environment has it: unset, the tokenizers library splits a
    # batch over every core, which is what a user's process does (both encoders share the tokenizer)
    import torch

    torch.set_num_threads(args.threads)
    if args.prefetch:
        prefetch_check(args)
        return
    from sentence_transformers import SentenceTransformer

    from tokrec.encoders import default_model_path, load_encoder

    texts = (
        synthetic_texts(args.synthetic)
        if args.synthetic or not args.items.is_file()
        else item_texts(args.items)
    )
    path = args.model or default_model_path()
    st = SentenceTransformer(path, device=args.device)
    enc = load_encoder(path, dtype=args.dtype, batch_size=args.batch_size, device=args.device)
    tokens = enc.count_tokens(texts)
    print(
        f"{len(texts)} texts, mean {np.mean(tokens):.1f} tokens; device {args.device}; threads {args.threads}; "
        f"tokrec: {enc.describe()}; sentence-transformers: {next(st.parameters()).dtype}"
    )
    warm = texts[:2048]
    st.encode(warm)
    enc.encode(warm)

    def sync() -> None:
        if args.device == "cuda":
            torch.cuda.synchronize()

    st_times, tk_times = [], []
    ref = mine = None
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        ref = st.encode(texts)
        sync()
        st_times.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        mine = enc.encode(texts)
        sync()
        tk_times.append(time.perf_counter() - t0)
    assert ref is not None and mine is not None
    ref = ref / np.linalg.norm(ref, axis=1, keepdims=True)
    cos = (ref * mine).sum(1)
    st_rate = len(texts) / min(st_times)
    tk_rate = len(texts) / min(tk_times)
    print(
        f"sentence-transformers encode() defaults: {st_rate:7.1f} texts/s  (runs: {', '.join(f'{t:.2f}s' for t in st_times)})"
    )
    print(
        f"tokrec HFEncoder ({enc.dtype}, sorted batches): {tk_rate:7.1f} texts/s  (runs: {', '.join(f'{t:.2f}s' for t in tk_times)})"
    )
    print(f"speed ratio tokrec / sentence-transformers: {tk_rate / st_rate:.2f}x")
    t0 = time.perf_counter()
    enc.tokenizer_(texts, truncation=True, max_length=enc.max_length, verbose=False)
    tok_s = time.perf_counter() - t0
    print(
        f"tokenizing alone (one call, no model): {tok_s:.2f}s = {len(texts) / tok_s:7.1f} texts/s "
        f"(TOKENIZERS_PARALLELISM={os.environ.get('TOKENIZERS_PARALLELISM', 'unset: parallel')}, {os.cpu_count()} "
        "cpus): the floor of an encoder whose "
        "model time is hidden behind it"
    )
    print(f"cosine to sentence-transformers: mean {cos.mean():.6f}, min {cos.min():.6f}")


def prefetch_check(args: argparse.Namespace) -> None:
    """Times tokrec's encoder on the same texts with the next window tokenized in the background off and on."""
    import shutil
    import tempfile

    from tokrec.encoders import default_model_path, load_encoder
    from tokrec.encoders.hf import WINDOW_TEXTS
    from tokrec.encoders.testing import make_tiny_bert

    path = args.model or default_model_path()
    tiny = tempfile.mkdtemp(prefix="tiny-bert.") if args.stand_in_tiny else None
    if tiny is not None:
        path = str(make_tiny_bert(tiny, hidden=32, layers=1, tokenizer=path))
    texts = synthetic_texts(args.synthetic or 20000)
    times: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(max(args.repeat, 2)):
        for prefetch in (False, True):
            enc = load_encoder(path, dtype=args.dtype, batch_size=args.batch_size, device=args.device)
            enc.prefetch, enc.window = prefetch, WINDOW_TEXTS
            enc.encode(texts[:1024])
            t0 = time.perf_counter()
            enc.encode(texts)
            times[prefetch].append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    enc.tokenizer_(texts, truncation=True, max_length=enc.max_length, verbose=False)
    tok_s = time.perf_counter() - t0
    print(f"{len(texts)} texts; {enc.describe()}; threads {args.threads}")
    for prefetch in (False, True):
        runs = ", ".join(f"{t:.2f}s" for t in times[prefetch])
        print(
            f"background tokenizer {'on ' if prefetch else 'off'}: median {np.median(times[prefetch]):.2f}s "
            f"(runs: {runs})"
        )
    print(
        f"tokenizing alone (one call): {tok_s:.2f}s; off/on ratio of the medians "
        f"{np.median(times[False]) / np.median(times[True]):.2f}x"
    )
    if tiny is not None:
        shutil.rmtree(tiny, ignore_errors=True)


if __name__ == "__main__":
    main()
