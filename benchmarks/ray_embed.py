"""Ray embedding vs the single-machine path, in ONE run, on the same texts.

Scaling mode (default): the first ``--n`` items of a catalog are embedded by the single-machine path
(``load_items`` -> ``item_vectors``, end to end, model load included) and then by
``embed_items_ray`` on a local Ray cluster with 1 and 2 encoder workers (end to end: Ray Data plan,
actor start, model load per actor, Parquet shards). It prints texts/s for each, their ratios to the
single-machine path, and the min cosine between each Ray output and the single-machine vectors.

Full mode (``--full N``): embeds a synthetic catalog of N items once on Ray (``make_synthetic``
written to a temporary CSV, never into the repository) and compares ``--sample`` random rows with
the single-machine encoder.

    .venv/bin/python benchmarks/ray_embed.py                      # ml-100k items.csv if present
    .venv/bin/python benchmarks/ray_embed.py --n 1000 --workers 1,2
    .venv/bin/python benchmarks/ray_embed.py --full 200000 --sample 500

The embedding cache is off in scaling mode (this measures encoding). Timings on a shared 2-core
machine are noisy: quote the ratios, and run it with nothing else busy.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ITEMS = Path(__file__).resolve().parents[2] / "shared" / "data" / "ml-100k-splits" / "items.csv"


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def _catalog(args: argparse.Namespace, tmp: Path) -> Path:
    """A CSV of the first n items (ml-100k when present, else synthetic)."""
    from tokrec.data.loaders import load_items

    if args.items or ITEMS.is_file():
        items = load_items(args.items or ITEMS).head(args.n)
    else:
        from tokrec.data.synthetic import make_synthetic

        items = make_synthetic(n_items=args.n, n_users=0, seed=0).items
    path = tmp / "items.csv"
    items.to_csv(path, index=False)
    return path


def _start_ray(num_cpus: int) -> float:
    import logging

    import ray

    t0 = time.perf_counter()
    ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    return time.perf_counter() - t0


def scaling(args: argparse.Namespace) -> dict:
    import torch

    from tokrec.data.loaders import load_items
    from tokrec.distributed import read_vectors
    from tokrec.distributed.ray_embed import embed_items_ray
    from tokrec.encoders import load_encoder
    from tokrec.features import item_vectors, write_vectors

    threads = os.cpu_count() or 1
    torch.set_num_threads(threads)
    workers = [int(w) for w in args.workers.split(",")]
    with tempfile.TemporaryDirectory(prefix="tokrec-ray-bench-") as d:
        tmp = Path(d)
        src = _catalog(args, tmp)
        t0 = time.perf_counter()
        items = load_items(src)
        enc = load_encoder(batch_size=args.batch_size)
        ref = item_vectors(items, encoder=enc, cache=None)
        write_vectors(tmp / "local.parquet", items["item_id"].tolist(), ref)
        local_s = time.perf_counter() - t0
        n = len(items)
        rows = [
            {
                "how": f"single machine ({threads} torch threads)",
                "seconds": local_s,
                "texts_per_s": n / local_s,
            }
        ]
        init_s = _start_ray(max(workers) + 1)
        for w in workers:
            out = tmp / f"ray-{w}.parquet"
            t1 = time.perf_counter()
            s = embed_items_ray(src, out, cache_dir=False, batch_size=args.batch_size, num_workers=w)
            wall = time.perf_counter() - t1
            ids, vecs = read_vectors(out)
            assert ids == items["item_id"].tolist()
            rows.append(
                {
                    "how": f"ray, {w} worker(s) x {max(1, threads // w)} threads",
                    "seconds": wall,
                    "texts_per_s": n / wall,
                    "encode_stage_texts_per_s": s["texts_per_s"],
                    "worker_texts_per_s": s["worker_texts_per_s"],
                    "min_cosine": float(_cosines(vecs, ref).min()),
                    "shards": s["shards"],
                }
            )
    base = rows[0]["texts_per_s"]
    print(
        f"{n} texts, batch size {args.batch_size}, {threads} CPUs; local Ray cluster start {init_s:.1f}s (not counted)"
    )
    print(f"{'how':40} {'seconds':>8} {'texts/s':>8} {'vs local':>9} {'min cos':>9}")
    for r in rows:
        cos = f"{r['min_cosine']:.6f}" if "min_cosine" in r else "-"
        print(
            f"{r['how']:40} {r['seconds']:8.1f} {r['texts_per_s']:8.1f} {r['texts_per_s'] / base:8.2f}x {cos:>9}"
        )
    for r in rows[1:]:
        print(
            f"  {r['how']}: encode stage {r['encode_stage_texts_per_s']:.1f} texts/s over {r['shards']} shards; "
            f"inside shards (no start-up) {r['worker_texts_per_s']:.1f} texts/s per worker"
        )
    if len(rows) > 2:
        print(f"2 workers / 1 worker: {rows[2]['texts_per_s'] / rows[1]['texts_per_s']:.2f}x")
    return {"n": n, "cluster_start_s": init_s, "rows": rows}


def full(args: argparse.Namespace) -> dict:
    from tokrec.data.synthetic import make_synthetic
    from tokrec.distributed import read_vectors
    from tokrec.distributed.ray_embed import embed_items_ray
    from tokrec.encoders import load_encoder
    from tokrec.text import ItemTemplate

    with tempfile.TemporaryDirectory(prefix="tokrec-ray-full-") as d:
        tmp = Path(d)
        # a kept workdir makes an interrupted run resumable
        work = Path(args.workdir) if args.workdir else tmp
        work.mkdir(parents=True, exist_ok=True)
        src = work / f"synthetic-{args.full}.csv"
        if not src.is_file():
            make_synthetic(n_items=args.full, n_users=0, seed=0).items.to_csv(src, index=False)
        out = work / "vectors"
        cache = work / "cache"
        init_s = _start_ray((args.num_workers or max(1, (os.cpu_count() or 1) // 2)) + 1)
        t0 = time.perf_counter()
        s = embed_items_ray(
            src, out, cache_dir=cache, batch_size=args.batch_size, num_workers=args.num_workers
        )
        wall = time.perf_counter() - t0
        ids, vecs = read_vectors(out)
        from tokrec.data.loaders import load_items

        frame = load_items(src)
        assert sorted(ids) == sorted(frame["item_id"].tolist()) and len(ids) == len(set(ids)) == len(frame)
        rng = np.random.default_rng(0)
        pick = rng.choice(len(frame), size=min(args.sample, len(frame)), replace=False)
        sample = frame.iloc[np.sort(pick)].reset_index(drop=True)
        ref = load_encoder(batch_size=args.batch_size).encode(ItemTemplate().render_many(sample))
        pos = {i: k for k, i in enumerate(ids)}
        got = vecs[[pos[i] for i in sample["item_id"]]]
        cos = _cosines(got, ref)
    print(
        f"{len(ids)} synthetic items on Ray: {wall:.1f}s end to end ({len(ids) / wall:.1f} texts/s), cluster start {init_s:.1f}s"
    )
    print(f"summary: {json.dumps({k: v for k, v in s.items() if k != 'output'}, default=str)}")
    print(
        f"{len(pick)} random rows vs the single-machine encoder: min cosine {cos.min():.6f}, mean {cos.mean():.6f}"
    )
    return {"summary": s, "wall_s": wall, "min_cosine": float(cos.min())}


def check_partial(args: argparse.Namespace) -> dict:
    """Samples rows of the shards an interrupted full run finished and compares them with the single machine."""
    import pyarrow.parquet as pq

    from tokrec.data.loaders import load_items
    from tokrec.distributed import shards as sh
    from tokrec.encoders import load_encoder
    from tokrec.text import ItemTemplate

    work = Path(args.workdir)
    folder = work / "vectors"
    files = sorted(folder.glob("part-*.parquet"))
    infos = [sh.ShardInfo(f.name, pq.read_metadata(f).num_rows, "") for f in files]
    ids, vecs = sh.read_shards(folder, infos)
    assert len(ids) == len(set(ids)), "duplicate ids across finished shards"
    frame = load_items(work / f"synthetic-{args.full}.csv").set_index("item_id", drop=False)
    rng = np.random.default_rng(0)
    pick = np.sort(rng.choice(len(ids), size=min(args.sample, len(ids)), replace=False))
    sample = frame.loc[[ids[i] for i in pick]].reset_index(drop=True)
    ref = load_encoder(batch_size=args.batch_size).encode(ItemTemplate().render_many(sample))
    cos = _cosines(vecs[pick], ref)
    print(f"finished shards: {len(files)} holding {len(ids)} of {len(frame)} rows, no duplicates")
    print(
        f"{len(pick)} random finished rows vs the single-machine encoder: min cosine {cos.min():.6f}, mean {cos.mean():.6f}"
    )
    return {"shards": len(files), "rows": len(ids), "min_cosine": float(cos.min())}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--items", default=None, help="catalog CSV/Parquet/JSONL (default: ml-100k items.csv if present)"
    )
    p.add_argument("--n", type=int, default=1000, help="items to embed in scaling mode (default 1000)")
    p.add_argument("--workers", default="1,2", help="worker counts to try (default 1,2)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--full", type=int, default=0, help="full mode: embed this many synthetic items once")
    p.add_argument(
        "--sample", type=int, default=500, help="full mode: rows compared with the single-machine encoder"
    )
    p.add_argument("--num-workers", type=int, default=None, help="full mode: Ray workers")
    p.add_argument(
        "--workdir",
        default=None,
        help="full mode: keep catalog, cache and output here, so a re-run resumes (default: a temp dir)",
    )
    p.add_argument(
        "--check-partial",
        action="store_true",
        help="full mode: no run; compare sampled rows of the shards in --workdir with the single machine",
    )
    p.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = p.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if args.check_partial:
        result = check_partial(args)
    else:
        result = full(args) if args.full else scaling(args)
        import ray

        ray.shutdown()
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
