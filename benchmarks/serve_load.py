"""Load test of `tokrec serve`: p50/p99 latency and requests/s of POST /recommend, and ANN recall.

Builds (or reuses) a bundle over a synthetic catalog (``tokrec.data.synthetic.make_synthetic``; item
vectors from the default MiniLM through the embedding cache, so a second run encodes nothing), starts
``tokrec serve`` on 127.0.0.1 in a subprocess, and drives ``POST /recommend`` with a bounded
concurrent load generator (asyncio + httpx, at most ``--concurrency`` requests in flight, at most
``--requests`` requests and ``--duration`` seconds). Requests are visitor histories (5-20 items of a
synthetic user's events) and known user ids, 4:1.

The model is the default, recommended ``tokrec`` (``--model`` for another); every request is scored by
the model's own scoring path over the whole catalog, exactly as batch ``recommend`` ranks. Also reports
the top-10 recall of the ANN index behind ``GET /items/{id}/similar`` against exact search.

Examples::

    python benchmarks/serve_load.py --items 10000 --concurrency 1   # the issue's setting: sequential requests
    python benchmarks/serve_load.py --items 10000 --concurrency 2   # two in flight, client on the same 2 cores
    python benchmarks/serve_load.py --items 100000 --encoder hashing   # no LM: a quick stand-in encoder

Everything runs on this machine; the load generator shares the CPU with the server, and timings on a
busy machine are noisy: the script prints the machine's load average next to the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


class HashingEncoder:
    """A stand-in encoder without a language model (``--encoder hashing``): signed hashed bag of words."""

    def __init__(self, dim: int = 384) -> None:
        self._dim = dim

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def fingerprint(self) -> str:
        return f"bench-hashing-{self._dim}"

    def encode(self, texts, *, progress: bool = False) -> np.ndarray:
        out = np.zeros((len(texts), self._dim), dtype=np.float32)
        for j, t in enumerate(texts):
            for w in re.findall(r"[a-z]+", t.lower()):
                h = zlib.crc32(w.encode())
                out[j, h % self._dim] += 1.0 if (h >> 16) & 1 else -1.0
        n = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.where(n == 0, 1.0, n)

    def count_tokens(self, texts) -> list[int]:
        return [len(t.split()) for t in texts]


def build_bundle(args: argparse.Namespace, path: Path):
    from tokrec.data.synthetic import make_synthetic
    from tokrec.serve.bundle import fit_bundle

    ds = make_synthetic(n_items=args.items, n_users=args.users, seed=args.seed)
    if path.exists() and not args.rebuild:
        print(f"reusing {path}", flush=True)
        return ds
    t0 = time.perf_counter()
    encoder = HashingEncoder() if args.encoder == "hashing" else None
    fit_bundle(ds, path, model=args.model, encoder=encoder, progress=True)
    print(f"built {path} in {time.perf_counter() - t0:.0f}s", flush=True)
    return ds


def make_requests(ds, n: int, k: int, seed: int) -> list[bytes]:
    rng = np.random.default_rng(seed)
    seqs = [s for s in ds.sequences() if len(s) >= 5]
    users = [u for u, s in zip(ds.user_vocab, ds.sequences(), strict=True) if len(s)]
    ids = np.asarray(ds.item_vocab.ids, dtype=object)
    out = []
    for _ in range(n):
        if rng.random() < 0.8:
            s = seqs[rng.integers(len(seqs))]
            length = int(rng.integers(5, 21))
            body = {"history": ids[s[-length:]].tolist(), "k": k}
        else:
            body = {"user_id": users[rng.integers(len(users))], "k": k}
        out.append(json.dumps(body).encode())
    return out


async def drive(
    url: str, bodies: list[bytes], concurrency: int, duration: float, client: str = "raw"
) -> tuple[list[float], int, float]:
    """At most ``concurrency`` requests in flight, each connection kept alive; (latencies, errors, elapsed).

    ``client="raw"`` (default): HTTP/1.1 over asyncio streams, one connection a worker: the load generator's
    own CPU per request is small (about a fifth of httpx's), so that on a 2-core machine the server gets the
    CPU a separate load-generating machine would leave it, as ``wrk`` or ``oha`` would. ``"httpx"``: the
    httpx client, as a Python user of the service would call it."""
    if client == "raw":
        return await _drive_raw(url, bodies, concurrency, duration)
    import httpx

    latencies: list[float] = []
    errors = 0
    queue = iter(bodies)
    deadline = time.perf_counter() + duration
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as http:

        async def worker() -> None:
            nonlocal errors
            for body in queue:
                if time.perf_counter() > deadline:
                    return
                t0 = time.perf_counter()
                r = await http.post("/recommend", content=body, headers={"content-type": "application/json"})
                latencies.append(time.perf_counter() - t0)
                if r.status_code != 200:
                    errors += 1

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - t0
    return latencies, errors, elapsed


async def _drive_raw(
    url: str, bodies: list[bytes], concurrency: int, duration: float
) -> tuple[list[float], int, float]:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    latencies: list[float] = []
    errors = 0
    queue = iter(bodies)
    deadline = time.perf_counter() + duration

    async def worker() -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection(host, port)
        try:
            for body in queue:
                if time.perf_counter() > deadline:
                    return
                head = (
                    f"POST /recommend HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(body)}\r\n\r\n"
                ).encode()
                t0 = time.perf_counter()
                writer.write(head + body)
                status_line = await reader.readline()
                length = 0
                while (line := await reader.readline()) not in (b"\r\n", b""):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                await reader.readexactly(length)
                latencies.append(time.perf_counter() - t0)
                if status_line.split()[1:2] != [b"200"]:
                    errors += 1
        finally:
            writer.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, errors, time.perf_counter() - t0


def start_server(bundle: Path, port: int, args: argparse.Namespace) -> subprocess.Popen:
    cmd = [
        sys.executable,
        "-m",
        "tokrec.cli.main",
        "serve",
        "--model",
        str(bundle),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-persist",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _memory_gb(pid: int) -> tuple[float, float]:
    """``(resident now, peak resident)`` of a process in GB (Linux /proc: VmRSS, VmHWM; NaN elsewhere)."""
    try:
        fields = dict(
            line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line
        )
        return tuple(int(fields[k].split()[0]) / 2**20 for k in ("VmRSS", "VmHWM"))  # type: ignore[return-value]
    except (OSError, KeyError, ValueError):
        return float("nan"), float("nan")


def add_items_online(url: str, n: int) -> list[float]:
    """POSTs ``n`` new items to ``/items`` one at a time (the service encodes their text, adds them to the model
    through its cold path and swaps the model in); returns each request's seconds."""
    import httpx

    out = []
    for j in range(n):
        item = {"item_id": f"online-{j}", "title": f"Online Item {j}", "description": "added while serving"}
        t0 = time.perf_counter()
        r = httpx.post(url + "/items", json={"items": [item]}, timeout=600)
        out.append(time.perf_counter() - t0)
        r.raise_for_status()
    return out


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (Linux /proc; NaN elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return float("nan")


def wait_ready(url: str, proc: subprocess.Popen, timeout: float = 600) -> dict:
    """The server's /health once it answers and its background encoder preload has ended (so the preload's
    CPU time does not fall into the measured requests)."""
    import httpx

    deadline = time.monotonic() + timeout
    while True:
        try:
            health = httpx.get(url + "/health", timeout=2).json()
            if health.get("encoder") != "loading" or time.monotonic() > deadline:
                return health
            time.sleep(0.2)
        except httpx.HTTPError:
            if proc.poll() is not None:
                raise SystemExit(f"server exited: {proc.stderr.read() if proc.stderr else ''}") from None
            if time.monotonic() > deadline:
                raise SystemExit("server did not start in time") from None
            time.sleep(0.5)


def recall(
    bundle_path: Path, ds, n_queries: int, seed: int, kind: str, candidates: int = 256
) -> dict[str, float]:
    """Top-10 recall of the ANN index (``GET /items/{id}/similar`` and explanations) vs exact search.

    The ANN index's ``candidates`` nearest entries re-scored exactly, top 10, vs the exact top 10 over the
    whole catalog, for the mean vector of a synthetic user's recent items. "Strict" counts ids;
    "tie-aware" counts an ANN item as right when its exact score reaches the exact 10th score (synthetic
    text has many exact ties).
    """
    from tokrec.serve.bundle import load_bundle
    from tokrec.serve.index import ANN_FILE, VectorIndex

    b = load_bundle(bundle_path)
    exact_idx = VectorIndex(b.item_vectors, ann=False)
    t0 = time.perf_counter()
    ann_idx = VectorIndex(b.item_vectors, ann=True, ann_path=bundle_path / ANN_FILE, kind=kind)  # type: ignore[arg-type]
    print(f"{kind} index ready in {time.perf_counter() - t0:.0f}s", flush=True)
    rng = np.random.default_rng(seed + 1)
    seqs = [s for s in ds.sequences() if len(s) >= 5]
    strict = tie = total = 0
    for _ in range(n_queries):
        s = seqs[rng.integers(len(seqs))][-int(rng.integers(5, 21)) :]
        u = b.item_vectors[s].mean(axis=0)
        if not np.linalg.norm(u) > 0:
            continue
        u = (u / np.linalg.norm(u)).astype(np.float32)
        ex_rows, ex_scores = exact_idx.search(u, 10)
        ann_rows = ann_idx.search(u, candidates)[0][:10]
        strict += len(set(ex_rows.tolist()) & set(ann_rows.tolist()))
        tie += int((exact_idx.exact_scores(u, ann_rows) >= ex_scores[-1] - 1e-6).sum())
        total += 10
    return {"strict": strict / total, "tie_aware": tie / total, "queries": total // 10}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--items", type=int, default=100_000)
    p.add_argument("--users", type=int, default=2000)
    p.add_argument(
        "--model", default="tokrec", help="registry model (default: tokrec, the recommended model users fit)"
    )
    p.add_argument("--encoder", choices=("minilm", "hashing"), default="minilm")
    p.add_argument("--requests", type=int, default=3000, help="measured requests (after --warmup)")
    p.add_argument("--warmup", type=int, default=200)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--duration", type=float, default=90.0, help="seconds at most for the measured phase")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--recall-queries", type=int, default=300)
    p.add_argument(
        "--add-items",
        type=int,
        default=0,
        help="after the measured phase, POST this many new items to /items one by one (time and memory)",
    )
    p.add_argument(
        "--workdir",
        default=None,
        help="where bundles are kept (default $TOKREC_CACHE_DIR or ~/.cache/tokrec)/serve_load",
    )
    p.add_argument("--rebuild", action="store_true")
    p.add_argument(
        "--bundle",
        default=None,
        help="serve this model directory instead (e.g. benchmarks/scale.py's WORKDIR/model-N, written by "
        "`tokrec fit` on make_synthetic(--items, --users, --seed)'s data; requests come from the same data)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--port", type=int, default=0, help="0: a free port")
    p.add_argument("--ann-kind", choices=("ivf", "hnsw"), default="ivf")
    p.add_argument(
        "--client",
        choices=("raw", "httpx"),
        default="raw",
        help="load generator: raw HTTP/1.1 keep-alive over asyncio (light, like wrk) or httpx",
    )
    return p.parse_args()


def load_test(args: argparse.Namespace, bundle: Path, ds) -> dict:
    """Starts the server, warms it up, measures; returns latencies, errors, elapsed, CPU seconds, load."""
    import socket

    import httpx

    port = args.port
    if port == 0:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    t0 = time.perf_counter()
    proc = start_server(bundle, port, args)
    try:
        health = wait_ready(url, proc)
        print(
            f"server ready in {time.perf_counter() - t0:.1f}s: {health['n_items']} items, {health['retrieval']} retrieval, model {health['model']}"
        )
        bodies = make_requests(ds, args.warmup + args.requests, args.k, args.seed)
        asyncio.run(drive(url, bodies[: args.warmup], args.concurrency, args.duration, args.client))
        out: dict = {"load0": os.getloadavg()[0]}
        cpu_server0, cpu_client0 = _cpu_seconds(proc.pid), time.process_time()
        out["lat"], out["errors"], out["elapsed"] = asyncio.run(
            drive(url, bodies[args.warmup :], args.concurrency, args.duration, args.client)
        )
        out["cpu_server"], out["cpu_client"] = (
            _cpu_seconds(proc.pid) - cpu_server0,
            time.process_time() - cpu_client0,
        )
        out["load1"] = os.getloadavg()[0]
        out["server"] = (
            httpx.get(url + "/metrics?format=json", timeout=10)
            .json()["latency_seconds"]
            .get("/recommend", {})
        )
        out["rss"] = _memory_gb(proc.pid)
        if args.add_items:
            out["add_s"] = add_items_online(url, args.add_items)
            out["rss_added"] = _memory_gb(proc.pid)
        return out
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)


def report(args: argparse.Namespace, r: dict) -> None:
    lat = r["lat"]
    lat_ms = np.asarray(lat) * 1000
    rps = len(lat) / r["elapsed"]
    p50, p90, p99 = (float(np.percentile(lat_ms, q)) for q in (50, 90, 99))
    server = r["server"]
    print(
        f"\nPOST /recommend, {args.items} items, k={args.k}, concurrency {args.concurrency}, {len(lat)} requests in {r['elapsed']:.1f}s, {r['errors']} errors"
    )
    print(f"  client latency  p50 {p50:.1f} ms   p90 {p90:.1f} ms   p99 {p99:.1f} ms")
    print(
        f"  server latency  p50 {server.get('p50', float('nan')) * 1000:.1f} ms   p99 {server.get('p99', float('nan')) * 1000:.1f} ms (in-app, over the last 10k requests incl. warm-up)"
    )
    print(f"  throughput      {rps:.0f} req/s")
    print(
        f"  load average    {r['load0']:.1f} -> {r['load1']:.1f} on {os.cpu_count()} CPUs (other processes share the machine)"
    )
    srv_ms, cli_ms = r["cpu_server"] / len(lat) * 1000, r["cpu_client"] / len(lat) * 1000
    print(
        f"  CPU time        server {srv_ms:.2f} ms/request, load generator {cli_ms:.2f} ms/request -> capacity of one "
        f"server process on one free core {1000 / srv_ms:.0f} req/s; both on two free cores about {2000 / (srv_ms + cli_ms):.0f} req/s"
    )
    print(
        f"  targets         p99 <= 20 ms: {'met' if p99 <= 20 else 'NOT met'}; >= 300 req/s: {'met' if rps >= 300 else 'NOT met'}"
    )
    rss, peak = r["rss"]
    print(f"  server memory   resident {rss:.2f} GB after the measured phase, peak {peak:.2f} GB")
    if "add_s" in r:
        add_ms = np.asarray(r["add_s"]) * 1000
        rss, peak = r["rss_added"]
        print(
            f"  POST /items     {len(add_ms)} single new items: median {np.median(add_ms):.0f} ms, first "
            f"{add_ms[0]:.0f} ms, max {add_ms.max():.0f} ms (#{int(add_ms.argmax()) + 1}); then resident "
            f"{rss:.2f} GB, peak {peak:.2f} GB"
        )


def main() -> None:
    from tokrec.cache import default_cache_dir

    args = parse_args()
    work = Path(args.workdir) if args.workdir else default_cache_dir() / "serve_load"
    if args.bundle:
        from tokrec.data.synthetic import make_synthetic

        bundle = Path(args.bundle)
        ds = make_synthetic(n_items=args.items, n_users=args.users, seed=args.seed)
    else:
        bundle = work / f"bundle-{args.items}-{args.users}-{args.encoder}-{args.model}-s{args.seed}"
        ds = build_bundle(args, bundle)
    if args.requests:
        report(args, load_test(args, bundle, ds))
    if args.recall_queries:
        t0 = time.perf_counter()
        r = recall(bundle, ds, args.recall_queries, args.seed, args.ann_kind)
        print(
            f"\nsimilar-items ANN ({args.ann_kind}, 256 candidates re-scored exactly) vs exact search, {r['queries']} queries, "
            f"{time.perf_counter() - t0:.0f}s:\n"
            f"  index  top-10 recall {r['tie_aware']:.4f} tie-aware, {r['strict']:.4f} strict (ids)\n"
            f"  target >= 0.95: {'met' if r['tie_aware'] >= 0.95 else 'NOT met'}"
        )


if __name__ == "__main__":
    main()
