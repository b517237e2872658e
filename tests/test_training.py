"""tokrec.training.Trainer: schedule values, early stopping and restored weights, checkpoints, budgets."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from tokrec.errors import ConfigError  # noqa: E402
from tokrec.training import (  # noqa: E402
    Trainer,
    TrainerConfig,
    load_checkpoint,
    lr_factor,
    resolve_device,
    resolve_dtype,
)

X = torch.from_numpy(np.random.default_rng(0).normal(size=(32, 3)).astype(np.float32))
Y = X @ torch.tensor([1.0, -2.0, 0.5]) + 0.3


def regression(**config: object) -> tuple[Trainer, object, object]:
    """A linear model fitted to a fixed linear target in 4 batches of 8 per epoch."""
    torch.manual_seed(0)
    net = torch.nn.Linear(3, 1)
    cfg = TrainerConfig.model_validate({"epochs": 10, "lr": 0.05, **config})
    trainer = Trainer(net, cfg, total_steps=4 * cfg.epochs)

    def batches(epoch: int) -> list[np.ndarray]:
        return list(np.arange(32).reshape(4, 8))

    def loss(idx: np.ndarray) -> tuple[object, int]:
        return torch.nn.functional.mse_loss(net(X[idx]).squeeze(-1), Y[idx]), len(idx)

    return trainer, batches, loss


def weights(module: object) -> dict[str, np.ndarray]:
    return {k: v.detach().clone().numpy() for k, v in module.state_dict().items()}  # type: ignore[attr-defined]


def scripted(curve: list[float]):
    """A validation function returning the next value of ``curve`` at each call."""
    values = iter(curve)
    return lambda module: {"score": next(values)}


def test_linear_and_cosine_schedules_with_warm_up() -> None:
    lin = TrainerConfig.model_validate({"epochs": 1, "lr": 1.0, "lr_schedule": "linear", "warmup_ratio": 0.1})
    # total 20 steps: warm-up int(0.1 * 20) = 2 steps ((s + 1) / 2), then 1 - s / 20
    got = [lr_factor(s, lin, 20) for s in (0, 1, 2, 10, 19)]
    assert got == pytest.approx([0.5 * 1.0, 1.0 * 0.95, 0.9, 0.5, 0.05], abs=1e-12)
    floor = lin.model_validate({**lin.model_dump(), "min_lr_ratio": 0.2})
    assert lr_factor(19, floor, 20) == pytest.approx(0.2) and lr_factor(10, floor, 20) == pytest.approx(0.5)
    cos = TrainerConfig.model_validate({"epochs": 1, "lr": 1.0, "lr_schedule": "cosine", "warmup_steps": 0})
    assert [lr_factor(s, cos, 20) for s in (0, 5, 10, 20)] == pytest.approx(
        [1.0, 0.5 * (1 + math.cos(math.pi / 4)), 0.5, 0.0], abs=1e-12
    )
    const = TrainerConfig.model_validate({"epochs": 1, "lr": 1.0})
    assert lr_factor(7, const, None) == 1.0


def test_the_optimizer_steps_with_the_scheduled_learning_rate() -> None:
    trainer, batches, loss = regression(epochs=2, lr_schedule="linear", warmup_ratio=0.25)
    used: list[float] = []

    def recording(idx: np.ndarray) -> object:
        used.append(trainer.optimizer.param_groups[0]["lr"])  # the rate this step will use
        return loss(idx)

    trainer.fit(batches, recording)
    # 8 steps, warm-up 2: 0.05 * [0.5, 1 - 1/8, 1 - 2/8, ...]
    want = [0.05 * min(1.0, (s + 1) / 2) * (1 - s / 8) for s in range(8)]
    assert used == pytest.approx(want, rel=1e-12)
    with pytest.raises(ConfigError, match="total_steps"):
        Trainer(
            torch.nn.Linear(1, 1),
            TrainerConfig.model_validate({"epochs": 1, "lr": 1.0, "lr_schedule": "linear"}),
        )


def test_patience_stops_at_the_right_epoch_and_the_best_weights_come_back() -> None:
    trainer, batches, loss = regression(monitor="score", mode="max", patience=3)
    snaps: list[dict[str, np.ndarray]] = []
    result = trainer.fit(
        batches,
        loss,
        scripted([0.1, 0.3, 0.2, 0.25, 0.29, 0.9]),
        on_epoch=lambda rec: snaps.append(weights(trainer.module)),
    )
    # best 0.3 at epoch 2; epochs 3, 4, 5 bring no gain: stop after epoch 5 (0.9 is never seen)
    assert (result.best_epoch, result.epochs_run, result.stopped) == (2, 5, "patience")
    assert result.best_metric == pytest.approx(0.3) and result.steps == 20
    assert [h["epoch"] for h in result.history] == [1, 2, 3, 4, 5]
    assert [h["score"] for h in result.history] == [0.1, 0.3, 0.2, 0.25, 0.29]
    assert result.history[0]["loss"] > result.history[4]["loss"]  # it did train
    now = weights(trainer.module)
    for k, v in snaps[1].items():  # the weights at the end of epoch 2, not of epoch 5
        np.testing.assert_array_equal(now[k], v)
    assert not np.array_equal(snaps[1]["weight"], snaps[4]["weight"])
    assert trainer.trained is trainer.module


def test_min_delta_and_a_minimised_metric_with_a_validated_start() -> None:
    trainer, batches, loss = regression(
        monitor="val_loss", mode="min", min_delta=0.01, patience=2, validate_first=True
    )
    curve = iter([1.0, 0.95, 0.945, 0.96, 0.5])
    result = trainer.fit(batches, loss, lambda m: {"val_loss": next(curve), "recall": 0.0})
    # the start 1.0; epoch 1: 0.95 (a gain); epoch 2: 0.945 (less than min_delta better: no gain);
    # epoch 3: worse, two epochs without a gain: stop (0.5 is never seen)
    assert result.initial == {"val_loss": 1.0, "recall": 0.0}
    assert (result.best_epoch, result.epochs_run, result.stopped) == (1, 3, "patience")
    assert result.best_metric == pytest.approx(0.95)
    # a start that no epoch beats is the best epoch, 0
    t2, b2, l2 = regression(monitor="score", mode="min", patience=2, validate_first=True)
    r2 = t2.fit(b2, l2, scripted([0.5, 0.6, 0.7, 0.1]))
    assert (r2.best_epoch, r2.epochs_run, r2.best_metric) == (0, 2, 0.5)


def test_no_restore_keeps_the_last_weights_and_a_float_validation_is_the_monitor() -> None:
    trainer, batches, loss = regression(monitor="score", patience=10, restore_best=False, epochs=3)
    result = trainer.fit(batches, loss, scripted([0.5, 0.1, 0.2]))
    assert result.best_epoch == 1 and result.epochs_run == 3 and result.stopped == "epochs"
    last = weights(trainer.module)
    again, batches2, loss2 = regression(epochs=3)
    again.fit(batches2, loss2)  # the same training without validation: the same last weights
    for k, v in weights(again.module).items():
        np.testing.assert_array_equal(last[k], v)
    floats = iter([0.2, 0.1])
    t3, b3, l3 = regression(monitor="score", patience=1, epochs=5)
    r3 = t3.fit(b3, l3, lambda m: next(floats))
    assert (r3.best_epoch, r3.epochs_run, r3.history[1]["score"]) == (1, 2, 0.1)


def test_checkpoints_are_written_atomically_and_reload(tmp_path: Path, monkeypatch) -> None:
    ckpt = tmp_path / "ckpt"
    trainer, batches, loss = regression(monitor="score", patience=5, epochs=4, checkpoint_dir=str(ckpt))
    snaps: list[dict[str, np.ndarray]] = []
    trainer.fit(
        batches,
        loss,
        scripted([0.1, 0.4, 0.2, 0.3]),
        on_epoch=lambda r: snaps.append(weights(trainer.module)),
    )
    assert sorted(p.name for p in ckpt.iterdir()) == [
        "best.safetensors",
        "last.safetensors",
        "trainer_state.json",
    ]
    best, state = load_checkpoint(ckpt)
    last, _ = load_checkpoint(ckpt, "last")
    assert state["epoch"] == 4 and state["best_epoch"] == 2 and state["best_metric"] == pytest.approx(0.4)
    assert [h["score"] for h in state["history"]] == [0.1, 0.4, 0.2, 0.3]
    for k in snaps[1]:
        np.testing.assert_array_equal(best[k].numpy(), snaps[1][k])  # epoch 2's weights
        np.testing.assert_array_equal(last[k].numpy(), snaps[3][k])  # epoch 4's
        np.testing.assert_array_equal(trainer.module.state_dict()[k].numpy(), snaps[1][k])  # restored
    fresh = torch.nn.Linear(3, 1)
    fresh.load_state_dict(best)
    np.testing.assert_array_equal(fresh.weight.detach().numpy(), snaps[1]["weight"])
    # a write that fails half-way leaves the previous checkpoint whole and no temporary file behind
    before = (ckpt / "last.safetensors").read_bytes()

    def broken(self: Path, data: bytes) -> int:
        Path.write_text(self, "partial")
        raise OSError("disk full")

    t2, b2, l2 = regression(monitor="score", patience=5, epochs=2, checkpoint_dir=str(ckpt))
    monkeypatch.setattr(Path, "write_bytes", broken)
    with pytest.raises(OSError, match="disk full"):
        t2.fit(b2, l2, scripted([0.9, 0.9]))
    monkeypatch.undo()
    assert (ckpt / "last.safetensors").read_bytes() == before
    assert sorted(p.name for p in ckpt.iterdir()) == [
        "best.safetensors",
        "last.safetensors",
        "trainer_state.json",
    ]
    assert json.loads((ckpt / "trainer_state.json").read_text())["epoch"] == 4
    with pytest.raises(ConfigError, match="no best.safetensors"):
        load_checkpoint(tmp_path)


def test_time_budget_skipped_batches_weighted_loss_and_clipping() -> None:
    trainer, batches, loss = regression(monitor="score", max_seconds=1.0)
    result = trainer.fit(batches, loss, scripted([0.1, 0.2]), started=time.perf_counter() - 100)
    # the budget was spent before the first step: epoch 1 runs no step, is validated, and is the last
    assert (result.epochs_run, result.steps, result.stopped, result.best_epoch) == (1, 0, "time", 1)
    net = torch.nn.Linear(1, 1)
    plan = {0: (1.0, 1), 1: None, 2: (4.0, 3)}

    def fixed(b: int) -> object:
        if plan[b] is None:
            return None
        value, weight = plan[b]
        return (net.weight.sum() * 0 + value, weight)

    t2 = Trainer(net, TrainerConfig.model_validate({"epochs": 2, "lr": 0.1}))
    r2 = t2.fit(lambda epoch: [0, 1, 2], fixed)
    assert r2.steps == 4 and r2.mean_loss == (1.0 + 12.0) * 2 / 8 and r2.history[0]["loss"] == 13.0 / 4
    t3, b3, l3 = regression(max_grad_norm=0.01, epochs=1)
    norms: list[float] = []
    t3.fit(
        b3,
        l3,
        on_step=lambda s: norms.append(
            float(torch.linalg.vector_norm(torch.cat([p.grad.ravel() for p in t3.module.parameters()])))
        ),
    )
    assert len(norms) == 4 and max(norms) <= 0.01 + 1e-6


def test_device_and_dtype_rules() -> None:
    cpu = torch.device("cpu")
    assert [resolve_dtype(d, cpu) for d in ("auto", "fp32", "bf16", "float16", "float32")] == [
        "float32", "float32", "bfloat16", "bfloat16", "float32",
    ]  # fmt: skip
    assert resolve_dtype("auto", torch.device("cuda")) == "bfloat16"
    assert resolve_dtype("float16", torch.device("cuda")) == "float16"
    with pytest.raises(ConfigError, match="dtype"):
        resolve_dtype("int8", cpu)
    assert resolve_device("cpu") == cpu
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="my-model: device 'cuda'"):
            resolve_device("cuda", what="my-model")
        assert resolve_device("auto") == cpu


def test_when_no_epoch_beats_the_start_the_start_is_kept() -> None:
    """validate_first + restore_best: the start is epoch 0; an encoder that training made worse by its own
    validation is written back as it was (tokrec finetune / distill report epoch 0 then)."""
    trainer, batches, loss = regression(
        monitor="score", mode="max", patience=2, epochs=3, validate_first=True
    )
    start = weights(trainer.module)
    result = trainer.fit(batches, loss, scripted([0.9, 0.5, 0.4, 0.3]))
    assert result.best_epoch == 0 and result.epochs_run == 2  # stopped by patience after two worse epochs
    after = weights(trainer.module)
    assert all(np.array_equal(start[k], after[k]) for k in start)
    # the same run without the start as a mark keeps the best trained epoch (1), which differs from the start
    trainer, batches, loss = regression(monitor="score", mode="max", patience=2, epochs=3)
    start = weights(trainer.module)
    result = trainer.fit(batches, loss, scripted([0.5, 0.4, 0.3]))
    assert result.best_epoch == 1
    assert not all(np.array_equal(start[k], v) for k, v in weights(trainer.module).items())
