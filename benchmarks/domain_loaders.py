#!/usr/bin/env python
"""Throughput of the public-format loaders (MIND, HetRec Last.fm, Last.fm 1K listening log, Amazon 2014 and
2018) on large synthetic files written in each format's layout, against tokrec's generic CSV loader
(``load_dataset`` on an items.csv + interactions.csv of the same number of interaction rows) in the same run.

    .venv/bin/python benchmarks/domain_loaders.py [--rows 300000] [--repeat 3]

Prints, per format, the rows of its interaction file (for MIND the shown items), the median seconds of ``load_dataset`` (auto-detected,
as the CLI calls it), the rows per second and the ratio to the generic CSV loader's time per row. Absolute
times on a shared machine are noise; read the ratios.
"""

from __future__ import annotations

import argparse
import gzip
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from tokrec.data.loaders import load_dataset


def median_time(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def write_files(d: Path, rows: int, rng: np.random.Generator) -> dict[str, tuple[Path, Path, int]]:
    """Each format's (items, interactions, interaction rows), about ``rows`` interaction rows each."""
    n_items, n_users = max(rows // 20, 100), max(rows // 30, 50)
    out: dict[str, tuple[Path, Path, int]] = {}
    item = rng.integers(0, n_items, rows)
    user = rng.integers(0, n_users, rows)
    ts = 1_500_000_000 + np.sort(rng.integers(0, 10**7, rows))

    # generic CSV (the reference)
    pd.DataFrame(
        {"item_id": np.arange(n_items), "title": [f"Item number {i}" for i in range(n_items)]}
    ).to_csv(d / "items.csv", index=False)
    pd.DataFrame({"user_id": user, "item_id": item, "rating": 4, "timestamp": ts}).to_csv(
        d / "interactions.csv", index=False
    )
    out["generic CSV"] = (d / "items.csv", d / "interactions.csv", rows)

    # MIND: one impression per 5 shown items, 1 clicked; history of 10 news
    mind = d / "mind"
    mind.mkdir()
    ent = json.dumps([{"Label": "Entity", "Type": "O", "WikidataId": "Q1", "Confidence": 1.0,
                       "OccurrenceOffsets": [0], "SurfaceForms": ["E"]}])  # fmt: skip
    with open(mind / "news.tsv", "w") as f:
        for i in range(n_items):
            f.write(
                f"N{i}\tnews\tnewsus\tHeadline {i}\tAn abstract about {i}.\thttps://a/{i}.html\t{ent}\t[]\n"
            )
    n_imp = rows // 5
    with open(mind / "behaviors.tsv", "w") as f:
        for k in range(n_imp):
            shown = item[k * 5 : k * 5 + 5]
            hist = " ".join(f"N{x}" for x in item[(k * 7) % rows : (k * 7) % rows + 10])
            imp = " ".join(f"N{x}-{int(j == 0)}" for j, x in enumerate(shown))
            f.write(f"{k + 1}\tU{user[k] % n_users}\t11/{11 + k % 5}/2019 9:05:58 AM\t{hist}\t{imp}\n")
    out["MIND (rows = shown items: 5 per impression, + 10 history clicks)"] = (
        mind / "news.tsv",
        mind / "behaviors.tsv",
        n_imp * 5,
    )

    # HetRec Last.fm
    fm = d / "lastfm"
    fm.mkdir()
    with open(fm / "artists.dat", "w") as f:
        f.write("id\tname\turl\tpictureURL\n")
        for i in range(n_items):
            f.write(f"{i}\tArtist {i}\thttp://www.last.fm/music/a{i}\thttp://img/{i}.jpg\n")
    pairs = pd.DataFrame({"u": user, "i": item}).drop_duplicates()
    with open(fm / "user_artists.dat", "w") as f:
        f.write("userID\tartistID\tweight\n")
        for u, i, w in zip(pairs["u"], pairs["i"], rng.integers(1, 5000, len(pairs)), strict=True):
            f.write(f"{u}\t{i}\t{w}\n")
    with open(fm / "tags.dat", "w") as f:
        f.write("tagID\ttagValue\n" + "".join(f"{t}\ttag{t}\n" for t in range(200)))
    with open(fm / "user_taggedartists.dat", "w") as f:
        f.write("userID\tartistID\ttagID\tday\tmonth\tyear\n")
        for u, i, t in zip(
            user[: rows // 4], item[: rows // 4], rng.integers(0, 200, rows // 4), strict=True
        ):
            f.write(f"{u}\t{i}\t{t}\t1\t4\t2009\n")
    out["HetRec Last.fm (user_artists.dat + tags)"] = (
        fm / "artists.dat",
        fm / "user_artists.dat",
        len(pairs),
    )

    # Last.fm 1K listening log (catalog from the log)
    lk = d / "userid-timestamp-artid-artname-traid-traname.tsv"
    stamp = pd.to_datetime(ts, unit="s").strftime("%Y-%m-%dT%H:%M:%SZ")
    with open(lk, "w") as f:
        for u, s, i in zip(user, stamp, item, strict=True):
            f.write(f"user_{u:06d}\t{s}\tart-{i % 97}\tArtist {i % 97}\ttrk-{i}\tTrack {i}\n")
    out["Last.fm 1K listening log"] = (lk, lk, rows)

    # Amazon 2014 (literal metadata, gzipped) and 2018 (JSON metadata)
    for year in (2014, 2018):
        a = d / f"amazon{year}"
        a.mkdir()
        with gzip.open(a / "meta_Beauty.json.gz", "wt") as f:
            for i in range(n_items):
                if year == 2014:
                    rec = {"asin": f"B{i:09d}", "title": f"Product {i}", "price": 9.99, "brand": "Acme",
                           "categories": [["Beauty", "Skin Care"]], "related": {"also_bought": [f"B{i + 1:09d}"]},
                           "imUrl": "http://x/1.jpg", "description": "Nice and soft."}  # fmt: skip
                    f.write(repr(rec) + "\n")
                else:
                    rec = {"asin": f"B{i:09d}", "title": f"Product {i}", "price": "$9.99", "brand": "Acme",
                           "category": ["Beauty", "Skin Care"], "also_buy": [f"B{i + 1:09d}"],
                           "description": ["Nice and soft."], "imageURL": ["http://x/1.jpg"]}  # fmt: skip
                    f.write(json.dumps(rec) + "\n")
        with gzip.open(a / "reviews_Beauty.json.gz", "wt") as f:
            for u, i, t in zip(user, item, ts, strict=True):
                f.write(
                    json.dumps({"reviewerID": f"A{u}", "asin": f"B{i:09d}", "reviewerName": "R", "helpful": [0, 0],
                                "reviewText": "Works well for me.", "overall": 4.0, "summary": "Good",
                                "unixReviewTime": int(t), "reviewTime": "09 13, 2009"}) + "\n"
                )  # fmt: skip
        label = f"Amazon {year} ({'literal' if year == 2014 else 'JSON'} metadata, gzipped)"
        out[label] = (a / "meta_Beauty.json.gz", a / "reviews_Beauty.json.gz", rows)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--rows", type=int, default=300_000, help="interaction rows per file (default %(default)s)"
    )
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        files = write_files(Path(tmp), args.rows, rng)
        print("| format | interaction rows | median s | rows/s | time per row vs generic CSV |")
        print("| --- | ---: | ---: | ---: | ---: |")
        ref = None
        for label, (items, inter, n) in files.items():
            ds = load_dataset(items, inter)  # warm-up + check it loads
            sec = median_time(lambda items=items, inter=inter: load_dataset(items, inter), args.repeat)
            per_row = sec / n
            ref = per_row if ref is None else ref
            print(f"| {label} | {n:,} | {sec:.2f} | {n / sec:,.0f} | {per_row / ref:.1f}x |", flush=True)
            assert len(ds) > 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
