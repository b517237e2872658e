"""Does MiniLM learn which new items will be popular if it is fine-tuned to predict popularity? (issue 16, a route tried)

New items on MovieLens are ranked mostly by how popular they will be (``cold_headroom.py``: an oracle of the test
counts scores 0.448; a popularity prior of Spearman 0.70 would lift the default model to about 0.40), and the
frozen MiniLM predicts it poorly from a title (Spearman 0.34 from the text vectors alone). This script fine-tunes the
encoder itself to regress an item's log(1 + training events) — the whole MiniLM plus a linear head, on the texts of
the items with training events less the 20% that ``tokrec finetune`` with the same seed holds out (so the default
command's tuner validates on items the encoder never read a count of) — and reports, per epoch:

- Spearman between a ridge prediction from the item vectors (fitted on the training items) and the held-out items'
  training counts (``val``) and the new items' test-event counts (``new``; read for the report only);
- the same for the head's own prediction;
- top-20 NDCG of the popularity ranking (gain = the count), since NDCG@10 of a recommender rewards finding the few
  most popular new items, not the order of the rest.

It writes the last epoch's encoder as a folder that every command takes (``--model-path``), with the held-out items
recorded, so the default command can then be run on it:

    python benchmarks/popularity_encoder.py --splits ../shared/data/ml-100k-splits --epochs 3 --output pop-enc
    tokrec recommend --items $S/items.csv --interactions $S/cold/train.csv --candidates $S/cold/candidates.csv \\
        --model-path pop-enc --k 100 --output c.csv

Test events are read only for the printed ``new`` columns, never for a choice (the epoch count is an argument).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from tokrec.data.loaders import load_dataset
from tokrec.encoders.finetune import EncoderRunResult, EncoderTrainer, make_config, save_encoder_folder
from tokrec.evaluation.splits import cold_item_split
from tokrec.training import seed_all, torch_threads

SHARED = Path(__file__).resolve().parents[2] / "shared"


def top_ndcg(pred: np.ndarray, gain: np.ndarray, n: int = 20) -> float:
    """NDCG@n of ranking the items by ``pred`` with gain ``gain``."""
    disc = 1.0 / np.log2(np.arange(2, n + 2))
    got = gain[np.argsort(-pred, kind="stable")[:n]]
    ideal = np.sort(gain)[::-1][:n]
    return float((got * disc[: len(got)]).sum() / (ideal * disc[: len(ideal)]).sum())


def ridge_predict(v: np.ndarray, train: np.ndarray, y: np.ndarray, lam: float = 10.0) -> np.ndarray:
    x = np.hstack([v, np.ones((len(v), 1))])
    a = x[train].T @ x[train] + lam * np.eye(x.shape[1])
    return x @ np.linalg.solve(a, x[train].T @ y[train])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--splits", type=Path, default=SHARED / "data" / "ml-100k-splits")
    ap.add_argument("--setting", default="cold")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--lr", type=float, default=5e-5)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument(
        "--seed", type=int, default=42, help="as tokrec finetune's --seed: the same held-out items"
    )
    ap.add_argument("--output", type=Path, default=None, help="write the last epoch's encoder folder here")
    ap.add_argument("--threads", type=int, default=None)
    a = ap.parse_args()
    import torch

    d = a.splits
    ds = load_dataset(items=d / "items.csv", interactions=d / a.setting / "train.csv")
    test = pd.read_csv(d / a.setting / "test.csv", dtype={"user_id": str, "item_id": str})
    cfg = make_config(lr=a.lr, dtype="bf16", seed=a.seed, threads=a.threads)
    with torch_threads(cfg.threads):
        rng = seed_all(cfg.seed)
        split = cold_item_split(ds, fraction=cfg.val_fraction, seed=cfg.seed)
        n = ds.n_items
        held = np.zeros(n, dtype=bool)
        held[ds.item_vocab.encode(split.candidates or [], missing="mask")] = True
        counts = np.bincount(ds.item_idx, minlength=n).astype(np.float64)
        y = np.log1p(counts)
        train = (counts > 0) & ~held
        test_counts = np.zeros(n)
        rows = ds.item_vocab.encode(test["item_id"].tolist(), missing="mask")
        np.add.at(test_counts, rows[rows >= 0], 1.0)
        new = (test_counts > 0) & (counts == 0)
        print(f"{train.sum()} training items, {held.sum()} held out, {new.sum()} new items with test events")

        tr = EncoderTrainer(cfg, ds, total_steps=0)
        head = torch.nn.Linear(tr.model.config.hidden_size, 1).to(tr.device)
        with torch.no_grad():
            head.bias.fill_(float(y[train].mean()))
        params = list(tr.model.parameters()) + list(head.parameters())
        opt = torch.optim.AdamW(params, lr=a.lr, weight_decay=cfg.weight_decay)
        target = torch.tensor(y, dtype=torch.float32, device=tr.device)
        scale = 10.0  # unit vectors: a larger input keeps the head's weights at a normal size

        def report(tag: str) -> None:
            v = tr.embed_all(n)
            with torch.no_grad():
                h = head(v * scale).squeeze(-1).float().cpu().numpy()
            r = ridge_predict(v.cpu().numpy().astype(np.float64), train, y)
            cells = []
            for name, p in (("ridge", r), ("head", h)):
                cells.append(
                    f"{name}: Spearman val {spearmanr(p[held], y[held]).statistic:.3f} "
                    f"new {spearmanr(p[new], test_counts[new]).statistic:.3f}, top-20 NDCG val "
                    f"{top_ndcg(p[held], counts[held]):.3f} new {top_ndcg(p[new], test_counts[new]):.3f}"
                )
            print(f"{tag}: " + " | ".join(cells), flush=True)

        report("frozen (head untrained)")
        rows_train = np.flatnonzero(train)
        t0 = time.perf_counter()
        losses = []
        for epoch in range(1, a.epochs + 1):
            tr.model.train()
            total = 0.0
            order = rng.permutation(rows_train)
            for b in range(0, len(order), a.batch_size):
                batch = order[b : b + a.batch_size]
                pred = head(tr.embed(batch) * scale).squeeze(-1)
                loss = torch.nn.functional.mse_loss(pred.float(), target[torch.from_numpy(batch)])
                opt.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                opt.step()
                total += loss.item() * len(batch)
            losses.append(total / len(order))
            report(f"epoch {epoch} (train MSE {losses[-1]:.3f}, {time.perf_counter() - t0:.0f} s)")
        if a.output is not None:
            info = {
                "objective": "popularity regression (benchmarks/popularity_encoder.py)",
                "epochs": a.epochs,
            }
            result = EncoderRunResult(
                a.output,
                "mse",
                [],
                [],
                losses,
                a.epochs,
                0.0,
                0.0,
                time.perf_counter() - t0,
                0,
                str(tr.device),
                info,
            )
            save_encoder_folder(tr, cfg, result.to_json(), split.candidates or [])
            print(f"wrote {a.output}")


if __name__ == "__main__":
    main()
