"""How closely distilled encoders place a split's new items as their teacher does.

For each encoder, the mean correlation of each new item's cosine similarities to the other new items under the
encoder and under the teacher (:func:`tokrec.encoders.distill.agreement`, the figure ``tokrec distill`` prints for
its validation items), over the candidates of a new-item split, and over the whole catalog. Reads no events.

    python benchmarks/distill_agreement.py --splits ../shared/data/ml-100k-splits --teacher mpnet base distilled/
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--splits", required=True, type=Path, help="a splits folder with items.csv and cold/")
    ap.add_argument("--teacher", required=True, help="the teacher encoder (a folder or model id)")
    ap.add_argument("encoders", nargs="+", help="encoder folders; 'base' = the bundled all-MiniLM-L6-v2")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import numpy as np
    import torch

    from tokrec.data import load_dataset
    from tokrec.data.loaders import id_strings, read_table
    from tokrec.encoders.distill import agreement
    from tokrec.features import item_vectors_for

    s = args.splits
    ds = load_dataset(items=s / "items.csv", interactions=s / "cold" / "train.csv")
    cands, _ = read_table(s / "cold" / "candidates.csv")
    rows = ds.item_vocab.encode(id_strings(cands["item_id"]).str.strip(), missing="mask")
    rows = torch.from_numpy(np.asarray(rows)[np.asarray(rows) >= 0])

    def unit(model: str | None) -> torch.Tensor:
        v = np.asarray(item_vectors_for(ds, model=model), dtype=np.float32)
        return torch.nn.functional.normalize(torch.from_numpy(v), dim=-1)

    teacher = unit(args.teacher)
    print(f"{len(rows)} new items of {ds.n_items}; agreement with {args.teacher}")
    for name in args.encoders:
        v = unit(None if name == "base" else name)
        print(
            f"{name}: new items {agreement(v[rows], teacher[rows]):.4f}, all items {agreement(v, teacher):.4f}"
        )


if __name__ == "__main__":
    main()
