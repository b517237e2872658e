"""Online cold start through the service: new items added with ``POST /items`` score as batch ``recommend`` does.

On the MovieLens 100K cold split: ``tokrec fit`` on ``cold/train.csv`` with a catalog WITHOUT the 336 new
items, then the service (the app ``tokrec serve`` runs, in process) gets them through ``POST /items``
(encoded through the embedding cache, scored through the model's own cold path), and every test user is
asked ``POST /recommend {"user_id", "k": 100, "candidates": the new items}``. The answers are written as a
recommendations file and scored by the shared scorer; batch ``tokrec recommend`` on the same split (the
new items in the catalog at fit time) is run beside it. Last, a made-up new item close in text to the three
Star Wars films is added and its rank for a visitor with those three films is printed.

    python benchmarks/serve_cold.py --shared ../shared
    python benchmarks/serve_cold.py --shared ../shared --tune   # the Star Wars check on a tuned `tokrec fit`

With ``--tune`` the model is fitted as the default ``tokrec fit`` does (tuning step on; it tunes for the next-item
task, since ``fit`` has no new-item candidates), and only the Star Wars check is run: batch ``recommend
--candidates`` would tune for the new-item task, a different configuration, so the two lists are not compared.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--shared", default="../shared", help="the shared folder (data/ml-100k-splits, bench/)")
    p.add_argument(
        "--tune", action="store_true", help="fit as `tokrec fit` does (tuning on); Star Wars check only"
    )
    args = p.parse_args()
    from fastapi.testclient import TestClient

    from tokrec.cli.main import main as tokrec
    from tokrec.serve.app import create_app

    shared = Path(args.shared)
    s = shared / "data" / "ml-100k-splits"
    scorer = shared / "bench" / "score_recs.py"
    items = pd.read_csv(s / "items.csv", dtype={"item_id": str})
    new = pd.read_csv(s / "cold" / "candidates.csv", dtype={"item_id": str})["item_id"].tolist()
    test = pd.read_csv(s / "cold" / "test.csv", dtype={"user_id": str})
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        items[~items["item_id"].isin(new)].to_csv(d / "old_items.csv", index=False)
        t0 = time.perf_counter()
        # --no-tune on both sides: the same configuration online and in batch
        tune = [] if args.tune else ["--no-tune"]
        argv = ["fit", *tune, "--items", str(d / "old_items.csv")]
        argv += ["--interactions", str(s / "cold" / "train.csv")]
        assert tokrec([*argv, "--output", str(d / "model")]) == 0
        print(f"fit without the new items: {time.perf_counter() - t0:.1f}s")
        with TestClient(create_app(d / "model", settings={"api_key": "k", "persist": False})) as c:
            t0 = time.perf_counter()
            rows = items[items["item_id"].isin(new)]
            body = [{k: v for k, v in r.items() if isinstance(v, str) and v} for r in rows.to_dict("records")]
            r = c.post("/items", json={"items": body}, headers={"X-API-Key": "k"})
            assert r.status_code == 200, r.text
            print(f"POST /items: {len(r.json()['added'])} new items in {time.perf_counter() - t0:.2f}s")
            t0 = time.perf_counter()
            out = []
            for u in [] if args.tune else sorted(test["user_id"].unique(), key=int):
                got = c.post(
                    "/recommend",
                    json={"user_id": u, "k": 100, "candidates": new, "explain": False},
                ).json()["items"]
                out += [(u, it["item_id"], it["score"], j) for j, it in enumerate(got, 1)]
            if not args.tune:
                print(
                    f"POST /recommend for {test['user_id'].nunique()} users: {time.perf_counter() - t0:.1f}s"
                )
            # the check: a new item whose text is close to a visitor's three Star Wars films
            wookiee = {
                "item_id": "wookiee",
                "title": "Galactic Wookiee Rebellion: The Lightsaber Saga (1998)",
                "release_date": "01-Jan-1998",
                "genres": "Action|Adventure|Sci-Fi",
            }
            assert c.post("/items", json={"items": [wookiee]}, headers={"X-API-Key": "k"}).status_code == 200
            got = c.post("/recommend", json={"history": ["50", "172", "181"], "k": 1000, "explain": False})
            ranked = [it["item_id"] for it in got.json()["items"]]
            print(
                f"new item 'Galactic Wookiee Rebellion' for a Star Wars history: rank {ranked.index('wookiee') + 1}"
            )
        if args.tune:
            return
        pd.DataFrame(out, columns=["user_id", "item_id", "score", "rank"]).to_csv(
            d / "online.csv", index=False
        )
        argv = ["recommend", *tune, "--items", str(s / "items.csv")]
        argv += ["--interactions", str(s / "cold" / "train.csv")]
        argv += [
            "--candidates",
            str(s / "cold" / "candidates.csv"),
            "--k",
            "100",
            "--output",
            str(d / "batch.csv"),
        ]
        assert tokrec(argv) == 0
        for name in ("online", "batch"):
            cmd = [sys.executable, str(scorer), str(d / f"{name}.csv"), str(s / "cold" / "test.csv")]
            cmd += [str(s / "cold" / "train.csv"), "--candidates", str(s / "cold" / "candidates.csv")]
            res = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
            line = next(x for x in res.splitlines() if x.startswith("ndcg@10"))
            print(f"{name:7s} {line}")


if __name__ == "__main__":
    main()
