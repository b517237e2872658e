"""Does the item template (how ``T_I`` is written) move new-item accuracy? Through the public command.

    PYTHONPATH=src python benchmarks/item_templates.py [--shared ../shared] [--datasets ml-100k beauty]

For each dataset and template, ``tokrec evaluate --no-tune --template T`` (the shipped weights, so that only the
text changes) on the cold-item task:

* validation: ``--interactions cold/train.csv --protocol cold-item --seed s`` (20% of the training file's items
  made new; seeds 0..4 on MovieLens, 0..1 on Amazon Beauty), never the test events — what a user would choose on;
* test: ``--interactions cold/train.csv --test cold/test.csv --candidates cold/candidates.csv``, read once per
  template, to see whether validation's ranking of the templates holds.

Prints one Markdown row per template: validation NDCG@10 (mean, each seed) and test NDCG@10.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

from common import shared_dir
from tokrec.cli.main import main as tokrec

TEMPLATES = {
    "ml-100k": {
        "default (every column, name: value.)": None,
        "{title}": "{title}",
        "{title}. Genres: {genres}.": "{title}. Genres: {genres}.",
        "The movie {title}, genres {genres}.": "The movie {title}, genres {genres}.",
    },
    "beauty": {
        "default (every column, name: value.)": None,
        "{title_words}": "{title_words}",
        "{title_words} ({attributes})": "{title_words} ({attributes})",
    },
}
FOLDERS = {"ml-100k": "ml-100k-splits", "beauty": "amazon-beauty-splits"}
SEEDS = {"ml-100k": 5, "beauty": 2}


def ndcg(args: list[str], template: str | None, out: Path) -> float:
    extra = [] if template is None else ["--template", template]
    rc = tokrec(
        ["evaluate", *args, "--models", "tokrec", "--no-tune", "--k", "10", *extra, "--output-dir", str(out)]
    )
    if rc != 0:
        sys.exit(f"tokrec evaluate failed ({rc})")
    protocols = json.loads((out / "metrics.json").read_text())["protocols"]
    (p,) = protocols.values()
    return float(p["models"]["tokrec"]["metrics"]["ndcg@10"])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", help="the shared folder (default: ../shared or $TOKREC_SHARED)")
    ap.add_argument("--datasets", nargs="+", default=list(TEMPLATES), choices=list(TEMPLATES))
    args = ap.parse_args(argv)
    shared = shared_dir(args.shared)
    for name in args.datasets:
        d = shared / "data" / FOLDERS[name]
        data = ["--items", str(d / "items.csv"), "--interactions", str(d / "cold" / "train.csv")]
        test = ["--test", str(d / "cold" / "test.csv"), "--candidates", str(d / "cold" / "candidates.csv")]
        print(f"\n{name}, cold items (`tokrec evaluate --no-tune`)\n")
        print("| template | validation NDCG@10, mean (each seed) | test NDCG@10 |\n| --- | --- | ---: |")
        for label, template in TEMPLATES[name].items():
            with tempfile.TemporaryDirectory() as tmp:
                val = [
                    ndcg(data + ["--protocol", "cold-item", "--seed", str(s)], template, Path(tmp) / f"v{s}")
                    for s in range(SEEDS[name])
                ]
                te = ndcg(data + test, template, Path(tmp) / "t")
            seeds = " ".join(f"{v:.4f}" for v in val)
            print(f"| `{label}` | {np.mean(val):.4f} ({seeds}) | {te:.4f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
