"""The one training loop of tokrec's torch models: text-sasrec, the cross-encoder classifier and encoder
fine-tuning all train through :class:`Trainer`.

The trainer owns what the three had each written for themselves: the epoch / step loop, the optimizer
(Adam or AdamW, parameter groups allowed) and its learning-rate schedule (warm-up, then constant, linear
or cosine decay to a floor), gradient clipping, an exponential moving average of the weights, early
stopping on a validation metric (``monitor`` / ``mode`` / ``patience`` / ``min_delta``) with the best
epoch's weights restored, a time budget, optional checkpoints (written atomically with
:mod:`tokrec.fileio`), the device and dtype rules (:func:`resolve_device`, :func:`resolve_dtype`,
:func:`autocast`, a gradient scaler for fp16 on CUDA), seeding (:func:`seed_all`), torch's CPU thread
count (:func:`torch_threads`), a progress bar and per-epoch logging / callback, and a small record of
what happened (:class:`TrainResult`). A model supplies only its module, its batches (``batches(epoch)``),
the loss of one batch, and, for early stopping, a validation function returning metrics.

Where autocast wraps is the model's: each applies :func:`autocast` around its network's forward pass and
computes its loss in fp32 (wrapping a whole loss function would move some of their matrix products into
bf16 and change their numbers).

Why hand-written: transformers' ``Trainer`` expects a Hugging Face model that takes dict batches and
returns its loss, plus ``datasets`` / ``accelerate``; PyTorch Lightning is a large dependency with its own
loop, logger folders and callbacks. The three models have different batch shapes (text-sasrec: windows of
item rows scored against the whole catalog, a variable number of steps per epoch, validated by NDCG on
the averaged weights; the cross-encoder: tokenised (history, candidate) pairs and two parameter groups;
fine-tuning: each step encodes the batch's distinct item texts, with a time budget and a validation of the
base encoder before training). This loop is small, runs on a CPU with one thread, and keeps each model's
numbers exactly what its own loop gave. The option names follow transformers / Lightning:
``warmup_ratio`` / ``warmup_steps``, ``lr_schedule`` (``"linear"``, ``"cosine"``, ``"constant"``),
``max_grad_norm``, ``monitor`` / ``mode`` / ``patience`` / ``min_delta`` (Lightning's ``EarlyStopping``),
``restore_best`` (Keras' ``restore_best_weights``, transformers' ``load_best_model_at_end``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from tokrec.errors import ConfigError

log = logging.getLogger(__name__)

#: a batch's loss: the loss tensor, or ``(loss, weight)`` (the weight of the batch in the mean loss, e.g.
#: its size); None skips the batch (no step)
BatchLoss = Any


class TrainerConfig(BaseModel):
    """How :class:`Trainer` trains (the model's own config decides these values)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    epochs: int = Field(ge=0, description="most epochs (early stopping may end sooner)")
    optimizer: Literal["adam", "adamw"] = "adamw"
    lr: float = Field(gt=0)
    weight_decay: float = Field(0.0, ge=0)
    lr_schedule: Literal["constant", "linear", "cosine"] = Field(
        "constant",
        description="after the warm-up: constant, or a linear / cosine decay over the total steps to min_lr_ratio",
    )
    warmup_ratio: float = Field(0.0, ge=0, lt=1, description="share of the total steps with a rising LR")
    warmup_steps: int | None = Field(None, ge=0, description="warm-up steps (wins over warmup_ratio)")
    min_lr_ratio: float = Field(0.0, ge=0, le=1, description="the decay's floor, as a share of the LR")
    max_grad_norm: float | None = Field(None, gt=0, description="clip the gradients' total norm to this")
    ema_decay: float = Field(
        0.0, ge=0, lt=1, description="0 = off; else validate and end with a moving average of the weights"
    )
    monitor: str | None = Field(None, description="the validation metric early stopping watches")
    mode: Literal["min", "max"] = "max"
    patience: int | None = Field(None, ge=1, description="epochs without a gain before stopping")
    min_delta: float = Field(0.0, ge=0, description="a gain smaller than this is no gain")
    restore_best: bool = Field(True, description="end with the best epoch's weights (with validation)")
    validate_first: bool = Field(
        False,
        description="validate before training: the start is epoch 0, the mark to beat (with restore_best, "
        "kept when no epoch beats it)",
    )
    max_seconds: float | None = Field(
        None, gt=0, description="time budget from `started`: the epoch running when it is spent is the last"
    )
    checkpoint_dir: str | None = Field(
        None, description="write last.safetensors / best.safetensors + trainer_state.json here each epoch"
    )
    progress: bool = False
    desc: str = "training"


@dataclass
class TrainResult:
    """What a :meth:`Trainer.fit` did."""

    epochs_run: int
    #: the epoch whose weights the validation liked best (0 = the start, with ``validate_first``)
    best_epoch: int
    best_metric: float | None
    #: one entry per epoch: ``{"epoch", "loss", **validation metrics}``
    history: list[dict[str, Any]]
    #: the validation metrics before training (``validate_first``), else None
    initial: Mapping[str, Any] | None
    #: optimizer steps taken in this fit
    steps: int
    #: why it stopped: "epochs", "patience" or "time"
    stopped: str
    #: the weighted mean loss over every step of the fit
    mean_loss: float
    seconds: float
    info: dict[str, Any] = field(default_factory=dict)


# ---- device, dtype, threads, seeds --------------------------------------------------------------
def resolve_device(want: str, what: str = "training") -> Any:
    """``"auto"`` (CUDA when torch sees it, else CPU), ``"cpu"`` or ``"cuda"`` as a ``torch.device``;
    ConfigError for ``"cuda"`` without CUDA."""
    import torch

    if want == "cuda" or (want == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise ConfigError(f"{what}: device 'cuda' asked for but CUDA is not available")
        return torch.device("cuda")
    return torch.device("cpu")


def resolve_dtype(want: str, device: Any) -> str:
    """The compute dtype, ``"float32"``, ``"bfloat16"`` or ``"float16"``, for an option spelt either way
    (``"fp32"``, ``"bf16"``, ``"auto"`` = bf16 on CUDA, fp32 elsewhere); fp16 on a CPU becomes bf16
    (fp16 autocast is a GPU feature)."""
    names = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
    dtype = names.get(want, want)
    if dtype == "auto":
        dtype = "bfloat16" if device.type == "cuda" else "float32"
    if dtype not in ("float32", "bfloat16", "float16"):
        raise ConfigError(f"unknown dtype {want!r} (float32, bfloat16, float16, auto)")
    if dtype == "float16" and device.type == "cpu":
        return "bfloat16"
    return dtype


def autocast(device: Any, dtype: str) -> contextlib.AbstractContextManager[object]:
    """Mixed precision context: bf16/fp16 autocast where asked, a no-op for float32."""
    import torch

    if dtype == "float32":
        return contextlib.nullcontext()
    torch_dtype = torch.bfloat16 if dtype == "bfloat16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=torch_dtype)


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """torch's CPU thread count set to ``n`` (None: left as is) inside, restored after."""
    import torch

    old = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def seed_all(seed: int) -> np.random.Generator:
    """Seeds torch's global generator (the weights' initialisation, dropout without a generator of its
    own) and returns a numpy generator with the same seed (shuffling, sampling)."""
    import torch

    torch.manual_seed(seed)
    return np.random.default_rng(seed)


def progress(it: Any, enabled: bool, desc: str, total: int | None = None) -> Any:
    """``it`` wrapped in a tqdm bar when ``enabled``."""
    if not enabled:
        return it
    from tqdm.auto import tqdm

    return tqdm(it, desc=desc, total=total)


# ---- optimizer and schedule ---------------------------------------------------------------------
def lr_factor(step: int, config: TrainerConfig, total_steps: int | None) -> float:
    """The learning-rate multiplier at optimizer step ``step`` (0-based): ``min(1, (step + 1) / warm)``
    times the decay ``max(min_lr_ratio, d)`` with ``d = 1 - step / total`` (linear) or
    ``(1 + cos(pi * step / total)) / 2`` (cosine), or 1 (constant)."""
    if config.lr_schedule == "constant" and not (config.warmup_steps or config.warmup_ratio):
        return 1.0
    total = max(1, total_steps or 0)
    if config.warmup_steps is not None:
        warm = max(1, config.warmup_steps)
    else:
        warm = max(1, int(config.warmup_ratio * total))
    rise = min(1.0, (step + 1) / warm)
    if config.lr_schedule == "linear":
        return rise * max(config.min_lr_ratio, 1 - step / total)
    if config.lr_schedule == "cosine":
        return rise * max(config.min_lr_ratio, 0.5 * (1.0 + math.cos(math.pi * min(step, total) / total)))
    return rise


# ---- one epoch ----------------------------------------------------------------------------------
@dataclass
class EpochStats:
    """One epoch: its weighted mean loss, optimizer steps, and whether the time budget ran out."""

    loss: float
    steps: int
    out_of_time: bool


@dataclass
class RunningLoss:
    """The weighted loss sum and weight of every step so far (a whole fit's, across epochs)."""

    total: float = 0.0
    weight: float = 0

    @property
    def mean(self) -> float:
        return self.total / max(self.weight, 1)


def train_epoch(
    module: Any,
    optimizer: Any,
    batches: Iterable[Any],
    loss: Callable[[Any], BatchLoss],
    *,
    scaler: Any = None,
    scheduler: Any = None,
    max_grad_norm: float | None = None,
    averaged: Any = None,
    on_step: Callable[[int], None] | None = None,
    first_step: int = 0,
    out_of_time: Callable[[], bool] | None = None,
    bar: Any = None,
    running: RunningLoss | None = None,
) -> EpochStats:
    """One pass over ``batches``: for each, ``loss(batch)``, backward (through ``scaler`` for fp16),
    optional clipping, the optimizer and ``scheduler`` steps, the moving average ``averaged`` and
    ``on_step(step)``. Returns the weighted mean loss of the batches that stepped; ``running`` (if given)
    adds each step's loss as well."""
    import torch

    module.train()
    params = [p for group in optimizer.param_groups for p in group["params"]]
    total, count, steps = 0.0, 0, 0
    timed_out = False
    for batch in batches:
        if out_of_time is not None and out_of_time():
            timed_out = True
            break
        out = loss(batch)
        if out is None:
            continue
        value, weight = out if isinstance(out, tuple) else (out, 1)
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(value).backward()
            if max_grad_norm is not None:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
            scaler.step(optimizer)
            scaler.update()
        else:
            value.backward()
            if max_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
            optimizer.step()
        if scheduler is not None:
            scheduler.step()
        if averaged is not None:
            averaged.update_parameters(module)
        if on_step is not None:
            on_step(first_step + steps)
        weighted = float(value.detach()) * weight
        total += weighted
        count += weight
        if running is not None:
            running.total += weighted
            running.weight += weight
        steps += 1
        if bar is not None:
            bar.update(1)
    return EpochStats(total / max(count, 1), steps, timed_out)


# ---- the trainer --------------------------------------------------------------------------------
class Trainer:
    """Trains ``module`` (see the module docstring).

    Args:
        module: the ``torch.nn.Module`` whose parameters are trained (several: a ``ModuleList``).
        config: a :class:`TrainerConfig`.
        device: where the module and its batches live (:func:`resolve_device`).
        dtype: the compute dtype (:func:`resolve_dtype`); a gradient scaler is made for fp16 on CUDA.
        params: parameters or parameter groups (dicts with their own ``lr``); default: the module's
            parameters that require gradients.
        total_steps: optimizer steps of the whole training (needed by a warm-up or a decay).
        scaler: True / False to force the fp16 gradient scaler on or off (None: as ``dtype`` says).
    """

    def __init__(
        self,
        module: Any,
        config: TrainerConfig,
        *,
        device: Any = None,
        dtype: str = "float32",
        params: Iterable[Any] | None = None,
        total_steps: int | None = None,
        scaler: bool | None = None,
    ) -> None:
        import torch

        self.module = module
        self.config = config
        self.device = device if device is not None else torch.device("cpu")
        self.dtype = dtype
        self.total_steps = total_steps
        groups = list(params) if params is not None else [p for p in module.parameters() if p.requires_grad]
        make = torch.optim.Adam if config.optimizer == "adam" else torch.optim.AdamW
        self.optimizer = make(groups, lr=config.lr, weight_decay=config.weight_decay)
        self.scheduler: Any = None
        if config.lr_schedule != "constant" or config.warmup_ratio or config.warmup_steps:
            if (config.lr_schedule != "constant" or config.warmup_steps is None) and not total_steps:
                raise ConfigError(f"{config.desc}: a decay or a warm-up ratio needs total_steps")
            self.scheduler = torch.optim.lr_scheduler.LambdaLR(
                self.optimizer, lambda s: lr_factor(s, config, total_steps)
            )
        fp16 = dtype == "float16" and self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda") if (fp16 if scaler is None else scaler) else None
        #: the moving average of the last fit (None without ``ema_decay``)
        self.averaged: Any = None
        #: the weights the last fit ended with: the module (best epoch restored) or the moving average
        self.trained: Any = module
        self.step = 0

    def evaluated_module(self) -> Any:
        """The module validation sees: the moving average when there is one, else the module."""
        return self.module if self.averaged is None else self.averaged.module

    def fit(
        self,
        batches: Callable[[int], Iterable[Any]],
        loss: Callable[[Any], BatchLoss],
        validate: Callable[[Any], Mapping[str, Any] | float] | None = None,
        *,
        epochs: int | None = None,
        on_step: Callable[[int], None] | None = None,
        on_epoch: Callable[[dict[str, Any]], None] | None = None,
        started: float | None = None,
    ) -> TrainResult:
        """Trains for ``epochs`` (default ``config.epochs``) epochs of ``batches(epoch)`` (1-based).

        ``loss(batch)`` gives the batch's loss (see :data:`BatchLoss`). ``validate(module)`` (the module
        or its moving average) gives metrics after each epoch (a float is ``{monitor: value}``); the
        best epoch by ``config.monitor`` is kept and, after ``patience`` epochs without a gain of more
        than ``min_delta``, training stops. ``on_step(step)`` runs after each optimizer step (its index
        over the trainer's life), ``on_epoch(record)`` after each epoch. ``started``: the
        ``time.perf_counter()`` the time budget counts from (default: now).
        """
        import torch

        c = self.config
        n_epochs = c.epochs if epochs is None else epochs
        start = time.perf_counter() if started is None else started
        if validate is not None and c.monitor is None:
            raise ConfigError(f"{c.desc}: a validation function needs config.monitor")
        monitor = c.monitor or ""
        better = (lambda a, b: a < b - c.min_delta) if c.mode == "min" else (lambda a, b: a > b + c.min_delta)
        self.averaged = None
        if c.ema_decay:
            from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

            self.averaged = AveragedModel(
                self.module, multi_avg_fn=get_ema_multi_avg_fn(c.ema_decay), use_buffers=True
            )
        keep_best = validate is not None and (c.restore_best or c.checkpoint_dir is not None)
        best: float | None = None
        best_epoch, best_state = 0, None
        initial = None
        if validate is not None and c.validate_first:
            initial = self._metrics(validate(self.evaluated_module()), monitor)
            best = initial[monitor]
            if c.restore_best:  # the start is epoch 0: when no epoch beats it, the start is what is kept
                best_state = _cpu_state(self.evaluated_module())
            log.info("%s before training: %s", c.desc, _describe(initial))
        history: list[dict[str, Any]] = []
        stopped = "epochs"
        running, steps = RunningLoss(), 0
        known = self.total_steps is not None and self.scheduler is not None
        bar = progress(None, c.progress, c.desc, total=self.total_steps) if known else None
        epochs_iter = range(1, n_epochs + 1)
        if not known:
            epochs_iter = progress(epochs_iter, c.progress, c.desc)
        budget = c.max_seconds

        def spent() -> bool:
            return bool(budget) and time.perf_counter() - start > budget  # type: ignore[operator]

        try:
            for epoch in epochs_iter:
                stats = train_epoch(
                    self.module,
                    self.optimizer,
                    batches(epoch),
                    loss,
                    scaler=self.scaler,
                    scheduler=self.scheduler,
                    max_grad_norm=c.max_grad_norm,
                    averaged=self.averaged,
                    on_step=on_step,
                    first_step=self.step,
                    out_of_time=spent if budget else None,
                    bar=bar,
                    running=running,
                )
                self.step += stats.steps
                steps += stats.steps
                record: dict[str, Any] = {"epoch": epoch, "loss": stats.loss}
                improved = False
                if validate is not None:
                    metrics = self._metrics(validate(self.evaluated_module()), monitor)
                    record.update(metrics)
                    if best is None or better(metrics[monitor], best):
                        best, best_epoch, improved = metrics[monitor], epoch, True
                        if keep_best:
                            best_state = _cpu_state(self.evaluated_module())
                history.append(record)
                log.info("%s epoch %d: %s", c.desc, epoch, _describe(record))
                if c.checkpoint_dir is not None:
                    self._checkpoint(Path(c.checkpoint_dir), improved, epoch, best_epoch, best, history)
                if on_epoch is not None:
                    on_epoch(record)
                if (
                    validate is not None
                    and not improved
                    and c.patience is not None
                    and epoch - best_epoch >= c.patience
                ):
                    stopped = "patience"
                    break
                if stats.out_of_time:
                    log.info("%s: time budget of %.0fs spent in epoch %d: stopping", c.desc, budget, epoch)
                    stopped = "time"
                    break
        finally:
            if bar is not None:
                bar.close()
        self.trained = self.evaluated_module()
        if best_state is not None and c.restore_best:
            with torch.no_grad():
                self.module.load_state_dict(best_state)
            self.trained = self.module
        return TrainResult(
            epochs_run=len(history),
            best_epoch=best_epoch,
            best_metric=None if best is None else float(best),
            history=history,
            initial=initial,
            steps=steps,
            stopped=stopped,
            mean_loss=running.mean,
            seconds=time.perf_counter() - start,
        )

    @staticmethod
    def _metrics(out: Mapping[str, Any] | float, monitor: str) -> dict[str, Any]:
        metrics = dict(out) if isinstance(out, Mapping) else {monitor: out}
        if monitor not in metrics:
            raise ConfigError(f"validation gave no {monitor!r} (it gave {sorted(metrics)})")
        return metrics

    def _checkpoint(
        self,
        folder: Path,
        improved: bool,
        epoch: int,
        best_epoch: int,
        best: float | None,
        history: list[dict[str, Any]],
    ) -> None:
        """``last.safetensors`` (and ``best.safetensors`` when the epoch improved) with the weights
        validation saw, and ``trainer_state.json``, each written atomically."""
        from safetensors.torch import save

        from tokrec.fileio import atomic_write, write_text_atomic

        data = save(_cpu_state(self.evaluated_module()))
        atomic_write(folder / "last.safetensors", lambda p: p.write_bytes(data))
        if improved:
            atomic_write(folder / "best.safetensors", lambda p: p.write_bytes(data))
        state = {
            "epoch": epoch,
            "step": self.step,
            "best_epoch": best_epoch,
            "best_metric": None if best is None else float(best),
            "history": history,
        }
        write_text_atomic(folder / "trainer_state.json", json.dumps(state, indent=1, default=float))


def load_checkpoint(
    folder: str | Path, which: Literal["best", "last"] = "best"
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The weights (a ``state_dict`` of CPU tensors) and the trainer state a :class:`Trainer` wrote to
    ``folder`` (``config.checkpoint_dir``). Weights and record only: enough to keep or inspect an
    epoch's network, not to resume its optimizer."""
    from safetensors.torch import load_file

    folder = Path(folder)
    path = folder / f"{which}.safetensors"
    if not path.is_file():
        raise ConfigError(f"{folder}: no {which}.safetensors checkpoint")
    return load_file(str(path)), json.loads((folder / "trainer_state.json").read_text())


def _cpu_state(module: Any) -> dict[str, Any]:
    """A copy of ``module``'s state on the CPU (contiguous, sharing no storage)."""
    return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in module.state_dict().items()}


def _describe(record: Mapping[str, Any]) -> str:
    return ", ".join(f"{k} {v:.4f}" for k, v in record.items() if k != "epoch" and isinstance(v, float))
