"""Behaviour-tuned encoders: contrastive fine-tuning of the text encoder on what users did.

The query is a user's recent items: the normalised mean of the vectors of the ``history_items`` items
before an event (the same shape as the ``profile`` signal of the default model); the positive is the
text of the event's item. With ``query="any"`` the query is ``history_items`` of the user's OTHER items
drawn at random from their whole history, before or after the event (drawn again every epoch): what the
cold-item task asks, where a new item's events fall anywhere in a user's timeline and the model knows
the user's whole history, not the moment of the event. Every other item whose text is encoded in the step is a negative: the other
examples' positives and histories (in-batch) and ``hard_negatives`` items per example drawn in
proportion to training popularity among items the user never interacted with (popular items the user
passed over). Items the user did interact with are masked out of their own softmax, so they are never
pushed away. Loss: InfoNCE (cross-entropy over cosine / ``temperature``).

Why a loop of its own instead of sentence-transformers' trainer: the catalog is small next to the
events (ml-100k: 1,682 items, 80,000 events), so each step encodes every DISTINCT item text of the
batch once and builds all queries from those vectors; a pair-wise trainer (MultipleNegativesRanking-
Loss) would encode each history and positive text again for every event, several times the compute, and
it needs the ``datasets`` package. The epochs, schedule, clipping and early stopping are tokrec's one
trainer's (:class:`tokrec.training.Trainer`). The rest is transformers and peft: ``AutoModel`` for the weights,
LoRA / AdaLoRA adapters from ``peft`` (merged into the weights before saving), ``save_pretrained`` with
safetensors.

Validation (early stopping): a cold-item split cut from the training events with
:func:`tokrec.evaluation.splits.cold_item_split`. Its held-out items are never a positive in training;
each of their events is a validation query (the user's recent training items before it), ranked
against all held-out items, so the stopping rule measures what new items need: text vectors that land
where users who will like them already are. The epoch with the lowest validation loss is kept.

The output folder is a sentence-transformers folder like the base (config, safetensors weights,
tokenizer, pooling settings copied from the base) plus ``tokrec_finetune.json`` (settings and the
validation curve); every command takes it through ``--model-path`` / ``--model``, and its fingerprint
differs from the base's because the fingerprint hashes the weight files.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Self

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from tokrec.data.dataset import Dataset
from tokrec.encoders import FINETUNE_FILE
from tokrec.errors import ConfigError, DataError

log = logging.getLogger(__name__)

_ST_FILES = ("modules.json", "sentence_bert_config.json", "config_sentence_transformers.json")


class EncoderRunConfig(BaseModel):
    """The settings every offline encoder training run shares (:class:`FinetuneConfig`,
    :class:`tokrec.encoders.distill.DistillConfig`); unknown keys are rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    max_seconds: float | None = Field(
        None, gt=0, description="training time budget: the epoch running when it is spent is the last"
    )
    val_fraction: float = Field(0.2, gt=0, lt=1, description="items held out for validation")
    max_length: int | None = Field(None, ge=4, description="tokens per item text (default: the encoder's)")
    template: str | None = Field(
        None,
        description="the item template the texts are rendered with (a format string or a .json/.txt file, as "
        "--template everywhere; default: every column listed): the one the encoder will be used with",
    )
    device: Literal["auto", "cpu", "cuda"] = "auto"
    dtype: Literal["auto", "fp32", "bf16"] = Field(
        "auto", description="auto: bf16 autocast on CUDA, fp32 on CPU"
    )
    threads: int | None = Field(None, ge=1, description="torch CPU threads")
    seed: int = 42
    progress: bool = False

    @classmethod
    def build(cls, what: str, config: BaseModel | dict[str, Any] | None = None, **kwargs: Any) -> Self:
        """A validated config from a config, a dict and/or keyword overrides (``what`` names the step in errors).

        Raises:
            ConfigError: unknown keys or bad values.
        """
        from tokrec.config import validate_config

        base = config.model_dump() if isinstance(config, cls) else dict(config or {})
        return validate_config(cls, {**base, **kwargs}, what=what)


class FinetuneConfig(EncoderRunConfig):
    """Settings of :func:`finetune_encoder` (unknown keys are rejected)."""

    model: str | None = Field(None, description="base encoder folder (default: the bundled all-MiniLM-L6-v2)")
    adapter: Literal["none", "lora", "adalora"] = Field("none", description="none = full fine-tuning")
    lora_r: int = Field(16, ge=1)
    lora_alpha: int = Field(32, ge=1)
    target_modules: list[str] = Field(
        default_factory=lambda: ["query", "key", "value", "intermediate.dense", "output.dense"],
        description="adapter targets (BERT names; the pooler, unused by pooling, is left out)",
    )
    history_items: int = Field(5, ge=1, description="items that make the query")
    query: Literal["recent", "any"] = Field(
        "recent",
        description="recent: the items just before the event (next-item); any: the user's other items drawn "
        "at random from their whole history, each epoch (new items, whose events fall anywhere in a timeline)",
    )
    hard_negatives: int = Field(4, ge=0, description="popularity-drawn unseen items per example")
    popularity_correction: bool = Field(
        False,
        description="logQ correction (Yi et al., RecSys 2019): log(training events + 1) of each item is taken off "
        "its training logit, so items are not pushed away for being frequent in batches; the vectors keep "
        "what makes an item popular",
    )
    temperature: float = Field(0.05, gt=0)
    batch_size: int = Field(128, ge=2, description="events per step")
    lr: float | None = Field(None, gt=0, description="default 3e-5 full, 3e-4 with an adapter")
    weight_decay: float = Field(0.01, ge=0)
    warmup: float = Field(0.1, ge=0, lt=1, description="share of the steps with a rising learning rate")
    epochs: int = Field(6, ge=1, description="most epochs; early stopping may end sooner")
    patience: int = Field(2, ge=1, description="epochs without a better validation loss before stopping")
    max_steps_per_epoch: int | None = Field(None, ge=1, description="cap for small (CPU) runs")
    hold_out_last: bool = Field(
        False,
        description="leave each user's last event out (as the tuner's leave-last-out validation does), so that "
        "tuning the recommender on this log later scores the encoder on events it never saw",
    )
    max_val_events: int = Field(4000, ge=1)


@dataclass
class EncoderRunResult:
    """What an offline encoder training run (:func:`finetune_encoder`, :func:`tokrec.encoders.distill.distill_encoder`)
    did: the folder, the validation curve of its loss and of its own metric (``metric`` names it: ``recall@10``,
    ``agreement``), the chosen epoch, timings."""

    path: Path
    metric: str
    val_loss: list[float]
    val_metric: list[float]
    train_loss: list[float]
    best_epoch: int
    base_val_loss: float
    base_val_metric: float
    seconds: float
    steps: int
    device: str
    info: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_fit(
        cls,
        fit: Any,
        path: Path,
        metric: str,
        key: str,
        started: float,
        device: Any,
        info: dict[str, Any],
        keep: str = "best",
    ) -> EncoderRunResult:
        """From :meth:`tokrec.training.Trainer.fit`'s result, whose validation dicts hold ``val_loss`` and ``key``
        (``keep="last"``: the last epoch's weights were kept, not the best one's)."""
        assert fit.initial is not None
        return cls(
            path=path,
            metric=metric,
            val_loss=[h["val_loss"] for h in fit.history],
            val_metric=[h[key] for h in fit.history],
            train_loss=[h["loss"] for h in fit.history],
            best_epoch=fit.epochs_run if keep == "last" else fit.best_epoch,
            base_val_loss=fit.initial["val_loss"],
            base_val_metric=fit.initial[key],
            seconds=time.perf_counter() - started,
            steps=fit.steps,
            device=str(device),
            info=info,
        )

    @property
    def best_metric(self) -> float:
        """The validation metric of the kept weights (the frozen encoder's when no epoch beat it)."""
        return self.val_metric[self.best_epoch - 1] if self.best_epoch else self.base_val_metric

    @property
    def kept_loss(self) -> float:
        """The validation loss of the kept weights."""
        return self.val_loss[self.best_epoch - 1] if self.best_epoch else self.base_val_loss

    def summary(self) -> str:
        """One line for the commands: the validation loss and metric before and after, the epochs, the time."""
        return (
            f"loss {self.base_val_loss:.4f} -> {self.kept_loss:.4f}, "
            f"{self.metric} {self.base_val_metric:.4f} -> {self.best_metric:.4f} (epoch {self.best_epoch} of "
            f"{len(self.val_loss)}); {self.steps} steps on {self.device} in {self.seconds:.1f}s"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "best_epoch": self.best_epoch,
            "base_val_loss": round(self.base_val_loss, 5),
            f"base_val_{self.metric}": round(self.base_val_metric, 5),
            "val_loss": [round(x, 5) for x in self.val_loss],
            f"val_{self.metric}": [round(x, 5) for x in self.val_metric],
            "train_loss": [round(x, 5) for x in self.train_loss],
            "seconds": round(self.seconds, 1),
            "steps": self.steps,
            "device": self.device,
            **self.info,
        }


@dataclass
class _Examples:
    users: np.ndarray  # user row per example
    hist: np.ndarray  # (n, history_items) item rows, -1 = none
    pos: np.ndarray  # item row per example


def make_config(config: FinetuneConfig | dict[str, Any] | None = None, **kwargs: Any) -> FinetuneConfig:
    """A validated :class:`FinetuneConfig` from a config, a dict and/or keyword overrides."""
    return FinetuneConfig.build("finetune", config, **kwargs)


def _examples(
    seqs: list[np.ndarray],
    k: int,
    keep: np.ndarray,
    target: np.ndarray,
    rng: np.random.Generator | None = None,
) -> _Examples:
    """One example per event whose item is in ``target``, its history among ``keep`` items: the last
    ``k`` earlier events, or with ``rng`` (``query="any"``) ``k`` of the user's other events drawn at
    random, before or after it. Events with no such event are skipped."""
    users, hists, pos = [], [], []
    for u, s in enumerate(seqs):
        s = np.asarray(s)
        kept = keep[s]
        kept_at = np.flatnonzero(kept)
        for t in range(0 if rng is not None else 1, len(s)):
            if not target[s[t]]:
                continue
            if rng is None:
                before = s[:t][kept[:t]][-k:]
            else:
                others = kept_at[kept_at != t]
                before = s[rng.choice(others, size=min(k, len(others)), replace=False)]
            if len(before) == 0:
                continue
            row = np.full(k, -1, dtype=np.int64)
            row[: len(before)] = before
            users.append(u)
            hists.append(row)
            pos.append(int(s[t]))
    if not pos:
        return _Examples(np.empty(0, np.int64), np.empty((0, k), np.int64), np.empty(0, np.int64))
    return _Examples(np.array(users, dtype=np.int64), np.stack(hists), np.array(pos, dtype=np.int64))


class EncoderTrainer:
    """The encoder being trained by an offline run (``tokrec finetune``, ``tokrec distill``, a benchmark's own
    objective): the model (with its adapter), the tokenised catalog, and the embedding of item rows with or
    without gradients; :func:`save_encoder_folder` writes it as an encoder folder every command takes."""

    def __init__(self, cfg: FinetuneConfig, dataset: Dataset, total_steps: int) -> None:
        import torch
        from transformers import AutoModel

        from tokrec.encoders import load_encoder
        from tokrec.features import item_texts
        from tokrec.training import resolve_device, resolve_dtype

        self.cfg = cfg
        self.base = cfg.model or _default_path()
        enc = load_encoder(self.base, device="cpu", dtype="fp32")
        self.pooling = enc.pooling
        self.max_length = int(cfg.max_length or enc.max_length)
        self.tokenizer = enc.tokenizer_
        self.device = resolve_device(cfg.device, what="finetune")
        self.dtype = resolve_dtype(cfg.dtype, self.device)
        texts = item_texts(dataset, cfg.template)
        self.ids = self.tokenizer(texts, truncation=True, max_length=self.max_length, verbose=False)[
            "input_ids"
        ]
        self.pad = int(self.tokenizer.pad_token_id or 0)
        model = AutoModel.from_pretrained(self.base, dtype=torch.float32)
        if cfg.adapter != "none":
            model = _with_adapter(model, cfg, total_steps)
        self.model = model.to(self.device)

    def embed(self, rows: np.ndarray) -> Any:
        """Normalised vectors of item ``rows`` (a tensor with grad when the model is in train mode)."""
        import torch

        from tokrec.encoders import pool
        from tokrec.training import autocast

        ids = [self.ids[int(r)] for r in rows]
        width = max(len(x) for x in ids)
        input_ids = np.full((len(ids), width), self.pad, dtype=np.int64)
        mask = np.zeros((len(ids), width), dtype=np.int64)
        for r, x in enumerate(ids):
            input_ids[r, : len(x)] = x
            mask[r, : len(x)] = 1
        t_ids = torch.from_numpy(input_ids).to(self.device, non_blocking=True)
        t_mask = torch.from_numpy(mask).to(self.device, non_blocking=True)
        with autocast(self.device, self.dtype):
            hidden = self.model(input_ids=t_ids, attention_mask=t_mask).last_hidden_state
        return torch.nn.functional.normalize(pool(hidden.float(), t_mask, self.pooling), dim=-1)

    def embed_all(self, n_items: int, batch: int = 256) -> Any:
        """Unit vectors of every item row, in row order (eval mode, no gradients)."""
        return self.embed_rows(np.arange(n_items), batch)

    def embed_rows(self, rows: np.ndarray, batch: int = 256) -> Any:
        """Unit vectors of item ``rows``, in that order: embedded shortest text first (less padding), in eval
        mode and without gradients."""
        import torch

        rows = np.asarray(rows)
        order = np.argsort([len(self.ids[int(r)]) for r in rows], kind="stable")
        parts = []
        was = self.model.training
        self.model.eval()
        with torch.no_grad():
            for s in range(0, len(rows), batch):
                parts.append(self.embed(rows[order[s : s + batch]]))
        self.model.train(was)
        out = torch.empty((len(rows), parts[0].shape[1]), device=self.device)
        out[torch.from_numpy(order).to(self.device)] = torch.cat(parts)
        return out

    @staticmethod
    def queries(vecs: Any, hist_local: Any) -> Any:
        """Normalised mean of the history vectors (``hist_local``: local rows, -1 = padding)."""
        import torch

        valid = (hist_local >= 0).float().unsqueeze(-1)
        h = vecs[hist_local.clamp(min=0)] * valid
        return torch.nn.functional.normalize(h.sum(1) / valid.sum(1).clamp(min=1), dim=-1)


def _default_path() -> str:
    from tokrec.encoders import default_model_path

    return default_model_path()


def _with_adapter(model: Any, cfg: FinetuneConfig, total_steps: int) -> Any:
    from peft import AdaLoraConfig, LoraConfig, get_peft_model

    if cfg.adapter == "lora":
        pc: Any = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, target_modules=list(cfg.target_modules))
    else:
        pc = AdaLoraConfig(
            init_r=cfg.lora_r,
            target_r=max(1, cfg.lora_r // 2),
            lora_alpha=cfg.lora_alpha,
            target_modules=list(cfg.target_modules),
            total_step=max(total_steps, 2),
        )
    try:
        return get_peft_model(model, pc)
    except ValueError as e:
        raise ConfigError(f"finetune: adapter: {e}") from e


def _popularity_sampler(counts: np.ndarray, allowed: np.ndarray, rng: np.random.Generator) -> Any:
    """``draw(n, users, seen_mat)``: ``(len(users), n)`` items drawn in proportion to popularity + 1
    among ``allowed`` items each user never interacted with (-1 where too few were found)."""
    p = (counts + 1.0) * allowed
    p = p / p.sum()

    def draw(n: int, users: np.ndarray, seen_mat: Any) -> np.ndarray:
        cand = rng.choice(len(p), size=(len(users), 4 * n), p=p)
        bad = np.take_along_axis(seen_mat[users].toarray(), cand, axis=1)
        out = np.full((len(users), n), -1, dtype=np.int64)
        for b in range(len(users)):
            ok = cand[b][~bad[b]][:n]
            out[b, : len(ok)] = ok
        return out

    return draw


def finetune_encoder(
    dataset: Dataset,
    output: str | os.PathLike[str],
    config: FinetuneConfig | dict[str, Any] | None = None,
    **kwargs: Any,
) -> EncoderRunResult:
    """Fine-tunes the encoder on ``dataset``'s events and writes the tuned encoder folder to ``output``.

    Args:
        dataset: items (with text columns) and training interactions; test events must not be in it.
        output: the folder to write (replaced atomically if it exists).
        config: a :class:`FinetuneConfig` or dict; ``kwargs`` override single settings.

    Returns:
        An :class:`EncoderRunResult` (metric ``recall@10``).

    Raises:
        DataError: too few events to make training and validation examples.
        ConfigError: bad settings, or CUDA asked for where there is none.
    """
    from tokrec.evaluation.splits import cold_item_split, leave_last_out
    from tokrec.training import Trainer, seed_all, torch_threads

    cfg = make_config(config, **kwargs)
    t_start = time.perf_counter()
    with torch_threads(cfg.threads):
        rng = seed_all(cfg.seed)
        if cfg.hold_out_last:  # the same cut as tokrec.tuning.make_validation's
            dataset = leave_last_out(dataset).train
        split = cold_item_split(dataset, fraction=cfg.val_fraction, seed=cfg.seed)
        held = np.zeros(dataset.n_items, dtype=bool)
        held[dataset.item_vocab.encode(split.candidates or [], missing="mask")] = True
        seqs = dataset.sequences()
        k = cfg.history_items
        drawn = cfg.query == "any"
        train_ex = _examples(seqs, k, ~held, ~held, rng if drawn else None)
        val_ex = _examples(seqs, k, ~held, held, rng if drawn else None)
        if len(train_ex.pos) < cfg.batch_size or len(val_ex.pos) == 0:
            raise DataError(
                f"finetune: too few events ({len(train_ex.pos)} training, {len(val_ex.pos)} validation examples "
                f"for batch size {cfg.batch_size})"
            )
        if len(val_ex.pos) > cfg.max_val_events:
            keep = np.sort(rng.choice(len(val_ex.pos), cfg.max_val_events, replace=False))
            val_ex = _Examples(val_ex.users[keep], val_ex.hist[keep], val_ex.pos[keep])
        seen = [set(map(int, s)) for s in seqs]
        seen_mat = _seen_matrix(seqs, dataset.n_items)
        counts = np.bincount(dataset.item_idx, minlength=dataset.n_items).astype(np.float64)
        draw = _popularity_sampler(counts, (~held).astype(np.float64), rng)
        log_q = np.log1p(counts) if cfg.popularity_correction else None

        per_epoch = len(train_ex.pos) // cfg.batch_size
        if cfg.max_steps_per_epoch:
            per_epoch = min(per_epoch, cfg.max_steps_per_epoch)
        total = per_epoch * cfg.epochs
        tr = EncoderTrainer(cfg, dataset, total)
        model = tr.model
        trainer_config = _trainer_config(
            cfg, "finetune", cfg.lr or (3e-4 if cfg.adapter != "none" else 3e-5), min_delta=1e-4
        )
        trainer = Trainer(model, trainer_config, device=tr.device, total_steps=total)
        held_rows = np.flatnonzero(held)

        def batches(epoch: int) -> Iterator[np.ndarray]:
            if drawn and epoch > 1:  # fresh random histories each epoch (same events, same order of rows)
                train_ex.hist[:] = _examples(seqs, k, ~held, ~held, rng).hist
            order = rng.permutation(len(train_ex.pos))[: per_epoch * cfg.batch_size]
            for b in range(per_epoch):
                yield order[b * cfg.batch_size : (b + 1) * cfg.batch_size]

        def validate(_: Any) -> dict[str, float]:
            vecs = tr.embed_all(dataset.n_items)
            loss, recall = _val_loss(vecs, val_ex, held_rows, seen, cfg.temperature)
            return {"val_loss": loss, "val_recall10": recall}

        def allocate(step: int) -> None:  # AdaLoRA re-allocates its ranks after each step
            model.base_model.update_and_allocate(step)

        fit = trainer.fit(
            batches,
            lambda idx: _step_loss(tr, train_ex, idx, seen_mat, draw, cfg, log_q),
            validate,
            on_step=allocate if cfg.adapter == "adalora" else None,
            started=t_start,
        )
        result = EncoderRunResult.from_fit(
            fit,
            Path(output),
            "recall@10",
            "val_recall10",
            t_start,
            tr.device,
            {
                "train_examples": int(len(train_ex.pos)),
                "val_examples": int(len(val_ex.pos)),
                "val_items": int(held.sum()),
            },
        )
        save_encoder_folder(tr, cfg, result.to_json(), split.candidates or [], adapter=cfg.adapter)
        return result


def _seen_matrix(seqs: list[np.ndarray], n_items: int) -> Any:
    import scipy.sparse as sp

    rows = np.repeat(np.arange(len(seqs)), [len(s) for s in seqs])
    cols = np.concatenate(seqs) if seqs else np.empty(0, np.int64)
    return sp.csr_matrix((np.ones(len(cols), dtype=bool), (rows, cols)), shape=(len(seqs), n_items))


def _step_loss(
    tr: EncoderTrainer,
    ex: _Examples,
    idx: np.ndarray,
    seen_mat: Any,
    draw: Any,
    cfg: FinetuneConfig,
    log_q: np.ndarray | None = None,
) -> Any:
    """InfoNCE of one batch: every distinct item of the batch encoded once (see the module docstring);
    with ``log_q`` (per item), each candidate's logit less its ``log_q`` (the logQ correction)."""
    import torch

    users, hist, pos = ex.users[idx], ex.hist[idx], ex.pos[idx]
    parts = [pos, hist[hist >= 0]]
    if cfg.hard_negatives:
        negs = draw(cfg.hard_negatives, users, seen_mat)
        parts.append(negs[negs >= 0])
    uniq = np.unique(np.concatenate(parts))
    vecs = tr.embed(uniq)
    h_local = np.where(hist >= 0, np.searchsorted(uniq, hist), -1)
    q = tr.queries(vecs, torch.from_numpy(h_local).to(tr.device))
    logits = (q @ vecs.T) / cfg.temperature
    if log_q is not None:
        logits = logits - torch.from_numpy(log_q[uniq].astype(np.float32)).to(tr.device)
    mask = seen_mat[users][:, uniq].toarray().astype(bool)  # the user's own items, except the positive
    target = np.searchsorted(uniq, pos)
    mask[np.arange(len(idx)), target] = False
    logits = logits.masked_fill(torch.from_numpy(mask).to(tr.device), float("-inf"))
    return torch.nn.functional.cross_entropy(logits, torch.from_numpy(target).to(tr.device))


def _val_loss(
    vecs: Any, ex: _Examples, held_rows: np.ndarray, seen: list[set[int]], temperature: float
) -> tuple[float, float]:
    """Validation InfoNCE and recall@10 of each held-out event among all held-out items (the user's
    other items masked), as in the cold-item protocol."""
    import torch

    pos_local = {int(r): i for i, r in enumerate(held_rows)}
    cand = vecs[torch.from_numpy(held_rows).to(vecs.device)]
    total, hits, n = 0.0, 0, 0
    for s in range(0, len(ex.pos), 512):
        hist = torch.from_numpy(ex.hist[s : s + 512]).to(vecs.device)
        q = EncoderTrainer.queries(vecs, hist)
        logits = (q @ cand.T) / temperature
        mask = np.zeros(tuple(logits.shape), dtype=bool)
        target = np.array([pos_local[int(p)] for p in ex.pos[s : s + 512]], dtype=np.int64)
        for b, u in enumerate(ex.users[s : s + 512]):
            for r in seen[int(u)]:
                j = pos_local.get(r)
                if j is not None and j != target[b]:
                    mask[b, j] = True
        logits = logits.masked_fill(torch.from_numpy(mask).to(vecs.device), float("-inf"))
        t = torch.from_numpy(target).to(vecs.device)
        total += float(torch.nn.functional.cross_entropy(logits, t, reduction="sum"))
        rank = (logits > logits.gather(1, t[:, None])).sum(1)
        hits += int((rank < 10).sum())
        n += len(target)
    return total / n, hits / n


def _trainer_config(cfg: Any, desc: str, lr: float, min_delta: float, keep_last: bool = False) -> Any:
    """The trainer settings of an encoder training run (``cfg``: a :class:`FinetuneConfig` or a
    :class:`tokrec.encoders.distill.DistillConfig`): AdamW, linear warm-up and decay to 5% of ``lr``, gradients
    clipped at 1, early stopping on the validation loss, which is also measured before the first step (with
    ``keep_last``: every epoch runs and the last is kept, the validation loss still measured)."""
    from tokrec.training import TrainerConfig

    return TrainerConfig.model_validate(
        {
            "epochs": cfg.epochs,
            "optimizer": "adamw",
            "lr": lr,
            "weight_decay": cfg.weight_decay,
            "lr_schedule": "linear",
            "warmup_ratio": cfg.warmup,
            "min_lr_ratio": 0.05,
            "max_grad_norm": 1.0,
            "monitor": "val_loss",
            "mode": "min",
            "min_delta": min_delta,
            "patience": None if keep_last else cfg.patience,
            "restore_best": not keep_last,
            "validate_first": True,
            "max_seconds": cfg.max_seconds,
            "progress": cfg.progress,
            "desc": desc,
        }
    )


def save_encoder_folder(
    tr: EncoderTrainer,
    cfg: BaseModel,
    result: dict[str, Any],
    val_items: list[str],
    *,
    adapter: str = "none",
    extra: dict[str, Any] | None = None,
) -> None:
    """Writes the tuned folder (``result["path"]``) atomically: merged weights (safetensors), tokenizer, the base's
    sentence-transformers settings, and ``tokrec_finetune.json`` (``cfg``, ``result``, ``extra``, and
    ``val_items``, the items held out of training: :func:`tokrec.encoders.finetuned_without`)."""
    model = tr.model
    if adapter != "none":
        model = model.merge_and_unload()
    model = model.to("cpu").eval()
    from tokrec.fileio import atomic_dir

    path = Path(result["path"])
    with atomic_dir(path, replaceable=lambda p: (p / FINETUNE_FILE).is_file() or not any(p.iterdir())) as tmp:
        model.save_pretrained(str(tmp), safe_serialization=True)
        tr.tokenizer.save_pretrained(str(tmp))
        base = Path(tr.base)
        if base.is_dir():
            for name in _ST_FILES:
                if (base / name).is_file():
                    shutil.copy2(base / name, tmp / name)
            for sub in base.iterdir():
                if sub.is_dir() and sub.name[:1].isdigit() and sub.name.endswith("Pooling"):
                    shutil.copytree(sub, tmp / sub.name)
        meta = {
            "format": "tokrec-finetuned-encoder/1",
            "base": str(tr.base),
            "config": cfg.model_dump(mode="json"),
            "result": {k: v for k, v in result.items() if k != "path"},
            **(extra or {}),
            "val_items": [str(i) for i in val_items],
        }
        (tmp / FINETUNE_FILE).write_text(json.dumps(meta, indent=1))
