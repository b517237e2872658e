"""A larger encoder's knowledge in the small one: distillation of a teacher's item vectors into the encoder.

A larger sentence encoder (all-mpnet-base-v2, 768-d, about five times MiniLM's compute) can place new items better
from their text alone (MovieLens 100K new items: 0.378 against MiniLM's 0.314 NDCG@10 through the default command;
not everywhere: on Amazon Beauty 0.084 against 0.097). :func:`distill_encoder` teaches the student (the bundled
all-MiniLM-L6-v2 by default) to place the catalog's item texts as the teacher does, so that the student keeps its
own cost at encoding and serving time. It inherits the teacher's placement, worse as well as better (Beauty:
0.086 distilled), so compare the two encoders through the tuner's validation first (BENCHMARKS.md).

- **what it reads**: the texts of the items with training events, less a validation share of them (the same
  cold-item split :func:`tokrec.encoders.finetune.finetune_encoder` cuts with the same seed and fraction, so a
  behaviour fine-tuning run on the distilled folder holds out the same items). By default (``texts="with-events"``)
  items without events — the new items a recommender will be asked about — are never trained on: what the
  student learns must carry over to them. ``texts="catalog"`` trains on every catalog text except the validation
  items', the items without events included: for a catalog whose new items are known when distilling (a
  retailer's whole product list, most of it without events yet), the student then places those very items as the
  teacher does. Their texts only: no event of theirs exists to read. Items added after the run are placed as the
  default's are, and the validation items stay unseen, so the tuner's validation on them is the conservative
  case. No event is read in either mode, only which items have one. (The teacher encodes the whole catalog once,
  into the embedding cache.)
- **the loss**, per batch of item texts: ``1 - cos(W s_i, t_i)`` (the student vector ``s_i`` mapped by a linear
  head ``W`` onto the teacher's ``t_i``; ``W`` starts from the ridge solution on the frozen student's vectors,
  is trained with it and is not saved) plus ``relational_weight`` times the mean squared difference between the
  batch's student and teacher cosine-similarity matrices (the geometry the recommender's text signals read:
  neighbours, profiles). The head lets the student take in what the teacher's 768 dimensions hold; the
  relational term keeps the student's own space shaped like the teacher's.
- **early stopping** on the validation items' texts with the same loss; ``val_agreement`` is the mean Pearson
  correlation between each validation item's row of cosine similarities to the other validation items under
  the student and under the teacher (1 = the same neighbourhoods). With ``keep="last"`` every epoch runs and
  the last is written: for ``texts="catalog"``, where the items a recommender will be asked about are among the
  texts trained on, so that fitting them closely is the point and the held-out items (which measure what carries
  over to texts never read) would stop the run early. The validation figures are still measured and reported.

Why a loop of its own rather than sentence-transformers' ``MSELoss`` distillation: that loss needs the
teacher and the student to share a dimension (or a projection the student keeps), and its trainer needs the
``datasets`` package; here the head is dropped after training, the step reuses the behaviour fine-tuning's
tokenised catalog and batching (:class:`tokrec.encoders.finetune.EncoderTrainer`) and tokrec's one trainer
(:class:`tokrec.training.Trainer`).

The output folder has the same layout as a behaviour-tuned one (``tokrec_finetune.json`` with ``teacher`` and
``val_items``), so every command takes it through ``--model-path`` and ``tokrec finetune --model-path`` can
fine-tune it on behaviour afterwards.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from tokrec.data.dataset import Dataset
from tokrec.encoders.finetune import (
    EncoderRunConfig,
    EncoderRunResult,
    EncoderTrainer,
    _trainer_config,
    make_config,
    save_encoder_folder,
)
from tokrec.errors import DataError


class DistillConfig(EncoderRunConfig):
    """Settings of :func:`distill_encoder` (unknown keys are rejected)."""

    teacher: str = Field(
        description="the teacher encoder: a Hugging Face id or folder (its vectors are cached)"
    )
    model: str | None = Field(
        None, description="the student's base folder (default: the bundled all-MiniLM-L6-v2)"
    )
    relational_weight: float = Field(1.0, ge=0, description="weight of the similarity-matrix term")
    texts: Literal["with-events", "catalog"] = Field(
        "with-events",
        description="the texts trained on, the validation items' never: the items with training events, or every "
        "catalog item (items without events included: their texts, no events)",
    )
    ridge: float = Field(1.0, gt=0, description="L2 of the head's starting ridge solution")
    batch_size: int = Field(128, ge=8, description="item texts per step")
    lr: float = Field(5e-5, gt=0, description="the student's learning rate")
    head_lr: float = Field(1e-3, gt=0, description="the head's learning rate")
    weight_decay: float = Field(0.0, ge=0)
    warmup: float = Field(0.0, ge=0, lt=1, description="share of the steps with a rising learning rate")
    epochs: int = Field(15, ge=1, description="most epochs; early stopping may end sooner")
    patience: int = Field(3, ge=1)
    keep: Literal["best", "last"] = Field(
        "best",
        description="the weights written: the validation items' best epoch (early stopping), or the last of "
        "`epochs` (no early stopping: a student trained to the end on the texts it will be asked about, with "
        "texts='catalog'; the validation figures are still measured and reported)",
    )


def make_distill_config(config: DistillConfig | dict[str, Any] | None = None, **kwargs: Any) -> DistillConfig:
    """A validated :class:`DistillConfig` from a config, a dict and/or keyword overrides."""
    return DistillConfig.build("distill", config, **kwargs)


def distill_encoder(
    dataset: Dataset,
    output: str | os.PathLike[str],
    config: DistillConfig | dict[str, Any] | None = None,
    **kwargs: Any,
) -> EncoderRunResult:
    """Distils the teacher's vectors of ``dataset``'s item texts into the student and writes its folder.

    Args:
        dataset: the catalog and the training interactions (only which items have events is read).
        output: the folder to write (replaced atomically if it exists).
        config: a :class:`DistillConfig` or dict; ``kwargs`` override single settings.

    Raises:
        DataError: too few items with events for a training batch and a validation set.
        ConfigError: bad settings, a teacher that cannot be loaded, or CUDA asked for where there is none.
    """
    import torch

    from tokrec.evaluation.splits import cold_item_split
    from tokrec.features import item_vectors_for
    from tokrec.training import Trainer, seed_all, torch_threads

    cfg = make_distill_config(config, **kwargs)
    t_start = time.perf_counter()
    with torch_threads(cfg.threads):
        rng = seed_all(cfg.seed)
        split = cold_item_split(dataset, fraction=cfg.val_fraction, seed=cfg.seed)
        held = np.zeros(dataset.n_items, dtype=bool)
        held[dataset.item_vocab.encode(split.candidates or [], missing="mask")] = True
        with_events = np.zeros(dataset.n_items, dtype=bool)
        with_events[dataset.item_idx] = True
        readable = with_events if cfg.texts == "with-events" else np.ones(dataset.n_items, dtype=bool)
        train_rows, val_rows = np.flatnonzero(readable & ~held), np.flatnonzero(held)
        if len(train_rows) < cfg.batch_size or len(val_rows) < 2:
            raise DataError(
                f"distill: too few items with events ({len(train_rows)} to train on, {len(val_rows)} to "
                f"validate on, for batch size {cfg.batch_size})"
            )
        teacher = torch.from_numpy(
            np.asarray(item_vectors_for(dataset, model=cfg.teacher, template=cfg.template), dtype=np.float32)
        )
        teacher = torch.nn.functional.normalize(teacher, dim=-1)
        per_epoch = len(train_rows) // cfg.batch_size
        total = per_epoch * cfg.epochs
        tr = EncoderTrainer(
            make_config(model=cfg.model, max_length=cfg.max_length, device=cfg.device, dtype=cfg.dtype),
            dataset,
            total,
        )
        teacher = teacher.to(tr.device)
        head = _ridge_head(tr.embed_rows(train_rows), teacher[train_rows], cfg.ridge)
        head = head.to(tr.device)
        module = torch.nn.ModuleDict({"student": tr.model, "head": head})
        trainer_config = _trainer_config(cfg, "distill", cfg.lr, min_delta=1e-5, keep_last=cfg.keep == "last")
        groups = [
            {"params": [p for p in tr.model.parameters() if p.requires_grad], "lr": cfg.lr},
            {"params": list(head.parameters()), "lr": cfg.head_lr},
        ]
        trainer = Trainer(module, trainer_config, device=tr.device, params=groups, total_steps=total)

        def batches(epoch: int) -> Iterator[np.ndarray]:
            order = rng.permutation(train_rows)
            for b in range(per_epoch):
                yield order[b * cfg.batch_size : (b + 1) * cfg.batch_size]

        def step(rows: np.ndarray) -> Any:
            return distill_loss(tr.embed(rows), teacher[torch.from_numpy(rows).to(tr.device)], head, cfg)

        def validate(_: Any) -> dict[str, float]:
            s = tr.embed_rows(val_rows)
            t = teacher[torch.from_numpy(val_rows).to(tr.device)]
            with torch.no_grad():
                loss = float(distill_loss(s, t, head, cfg))
            return {"val_loss": loss, "val_agreement": agreement(s, t)}

        fit = trainer.fit(batches, step, validate, started=t_start)
        info: dict[str, Any] = {
            "train_items": int(len(train_rows)),
            "val_items": int(len(val_rows)),
            "kept": cfg.keep,
        }
        if cfg.texts == "catalog":
            info["train_items_without_events"] = int((~with_events[train_rows]).sum())
        result = EncoderRunResult.from_fit(
            fit, Path(output), "agreement", "val_agreement", t_start, tr.device, info, keep=cfg.keep
        )
        save_encoder_folder(tr, cfg, result.to_json(), split.candidates or [], extra={"teacher": cfg.teacher})
        return result


def _ridge_head(student: Any, teacher: Any, ridge: float) -> Any:
    """A bias-free linear map from student to teacher vectors, the ridge solution on the given rows."""
    import torch

    s = student.detach().double()
    w = torch.linalg.solve(
        s.T @ s + ridge * torch.eye(s.shape[1], dtype=s.dtype, device=s.device), s.T @ teacher.double()
    )
    head = torch.nn.Linear(s.shape[1], teacher.shape[1], bias=False)
    with torch.no_grad():
        head.weight.copy_(w.T.float())
    return head


def distill_loss(student: Any, teacher: Any, head: Any, cfg: DistillConfig) -> Any:
    """``mean(1 - cos(head(s), t)) + relational_weight * mean((S S^T - T T^T)^2)`` over a batch of unit vectors."""
    import torch

    mapped = torch.nn.functional.normalize(head(student), dim=-1)
    loss = (1.0 - (mapped * teacher).sum(-1)).mean()
    if cfg.relational_weight:
        loss = loss + cfg.relational_weight * ((student @ student.T - teacher @ teacher.T) ** 2).mean()
    return loss


def agreement(student: Any, teacher: Any) -> float:
    """Mean Pearson correlation between each row of the student's and the teacher's cosine similarities (the
    diagonal left out): 1 when every item has the same neighbourhood under both."""
    import torch

    with torch.no_grad():
        off = ~torch.eye(len(student), dtype=torch.bool, device=student.device)
        a = (student @ student.T)[off].view(len(student), -1).float()
        b = (teacher @ teacher.T)[off].view(len(student), -1).float()
        a, b = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
        corr = (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1)).clamp(min=1e-12)
    return float(corr.mean())


__all__ = [
    "DistillConfig",
    "agreement",
    "distill_encoder",
    "distill_loss",
    "make_distill_config",
]
