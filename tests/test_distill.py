"""`tokrec distill`: a tiny teacher BERT's item vectors distilled into a tiny student BERT, both built here."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tokrec.data.dataset import Dataset
from tokrec.errors import ConfigError

pytest.importorskip("transformers")

WORDS = ["alpha", "beta", "gamma"]


def catalog(n_items: int = 60, with_events: int = 50) -> Dataset:
    """``n_items`` titles of three words; each of the first ``with_events`` items has events, the rest none."""
    items = pd.DataFrame(
        {
            "item_id": [f"i{i}" for i in range(n_items)],
            "title": [f"{WORDS[i % 3]} film {WORDS[(i // 3) % 3]} {i}" for i in range(n_items)],
        }
    )
    rows = [(f"u{u}", f"i{(5 * u + j) % with_events}", j) for u in range(30) for j in range(10)]
    return Dataset(pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"]), items)


@pytest.fixture(scope="module")
def pair(tmp_path_factory) -> tuple[Path, Path]:
    """(student, teacher): random BERTs of widths 32 and 48."""
    from tokrec.encoders.testing import make_tiny_bert

    d = tmp_path_factory.mktemp("distill")
    return make_tiny_bert(d / "student", hidden=32, seed=0), make_tiny_bert(d / "teacher", hidden=48, seed=1)


@pytest.fixture
def trained_rows(monkeypatch) -> set[int]:
    """The item rows the distillation's loss is computed on (``EncoderTrainer.embed`` in training mode), recorded."""
    from tokrec.encoders.finetune import EncoderTrainer

    rows: set[int] = set()
    embed = EncoderTrainer.embed

    def recording(self, batch):
        if self.model.training:
            rows.update(int(r) for r in batch)
        return embed(self, batch)

    monkeypatch.setattr(EncoderTrainer, "embed", recording)
    return rows


SMALL = {"batch_size": 8, "epochs": 6, "lr": 2e-3, "head_lr": 1e-2, "device": "cpu", "threads": 1}


def test_distillation_brings_held_out_items_closer_to_the_teacher(pair, tmp_path: Path, trained_rows) -> None:
    from tokrec.encoders import finetuned_without, load_encoder
    from tokrec.encoders.distill import agreement, distill_encoder
    from tokrec.evaluation.splits import cold_item_split

    student, teacher = pair
    ds = catalog()
    trained = trained_rows
    r = distill_encoder(ds, tmp_path / "out", teacher=str(teacher), model=str(student), **SMALL)
    held = cold_item_split(ds, fraction=0.2, seed=42).candidates
    no_events = {ds.item_vocab.encode([f"i{i}"], missing="mask")[0] for i in range(50, 60)}
    # trained on the items with events less the validation items: never on new items or validation items
    assert trained == set(range(ds.n_items)) - no_events - set(ds.item_vocab.encode(held, missing="mask"))
    assert r.info == {"train_items": 40, "val_items": 10, "kept": "best"}
    assert r.best_epoch >= 1 and min(r.val_loss) < r.base_val_loss, r.to_json()
    assert max(r.val_metric) > r.base_val_metric
    # the folder: a loadable encoder of the student's width, recording its validation items and its teacher
    meta = json.loads((tmp_path / "out" / "tokrec_finetune.json").read_text())
    assert meta["teacher"] == str(teacher) and finetuned_without(tmp_path / "out") == held
    out, base, t = load_encoder(str(tmp_path / "out")), load_encoder(str(student)), load_encoder(str(teacher))
    assert out.fingerprint != base.fingerprint
    from tokrec.features import item_texts

    texts = item_texts(ds)  # what both were trained and scored on, one per item row
    v_out, v_base, v_t = out.encode(texts), base.encode(texts), t.encode(texts)
    assert v_out.shape == (60, 32)
    # the saved weights are the best epoch's: the validation items' agreement, recomputed from the folder
    import torch

    rows = ds.item_vocab.encode(held, missing="mask")
    as_t = lambda v: torch.from_numpy(np.ascontiguousarray(v[rows]))  # noqa: E731
    best = r.val_metric[r.best_epoch - 1]
    assert r.best_metric == best and r.metric == "agreement"
    assert agreement(as_t(v_out), as_t(v_t)) == pytest.approx(best, abs=1e-3)
    assert agreement(as_t(v_base), as_t(v_t)) == pytest.approx(r.base_val_metric, abs=1e-3) != best


def test_catalog_texts_add_the_items_without_events_never_the_validation_items(
    pair, tmp_path: Path, trained_rows
) -> None:
    from tokrec.encoders.distill import distill_encoder
    from tokrec.evaluation.splits import cold_item_split

    student, teacher = pair
    ds = catalog()
    trained = trained_rows
    r = distill_encoder(
        ds,
        tmp_path / "out",
        teacher=str(teacher),
        model=str(student),
        texts="catalog",
        **dict(SMALL, epochs=2),
    )
    held = set(ds.item_vocab.encode(cold_item_split(ds, fraction=0.2, seed=42).candidates, missing="mask"))
    assert trained == set(range(ds.n_items)) - held  # the 10 items without events too
    assert r.info == {"train_items": 50, "val_items": 10, "kept": "best", "train_items_without_events": 10}


def test_keep_last_runs_every_epoch_and_writes_the_last_one(pair, tmp_path: Path) -> None:
    import torch

    from tokrec.encoders import load_encoder
    from tokrec.encoders.distill import agreement, distill_encoder
    from tokrec.evaluation.splits import cold_item_split
    from tokrec.features import item_texts

    student, teacher = pair
    ds = catalog()
    # a large learning rate: the first epoch's validation loss is worse than the start's, which stops a
    # patience-1 run (keep="best") there with the start's weights; the later epochs would have been better
    loud = dict(SMALL, epochs=4, lr=0.01, patience=1)
    best = distill_encoder(ds, tmp_path / "best", teacher=str(teacher), model=str(student), **loud)
    last = distill_encoder(
        ds, tmp_path / "last", teacher=str(teacher), model=str(student), texts="catalog", keep="last", **loud
    )
    assert len(best.val_loss) == 1 and best.best_epoch == 0
    assert len(last.val_loss) == 4 and last.best_epoch == 4 and last.info["kept"] == "last"
    assert last.kept_loss == last.val_loss[-1] and last.best_metric == last.val_metric[-1]
    # the folder holds the last epoch's weights: the validation agreement recomputed from it is the last epoch's
    held = cold_item_split(ds, fraction=0.2, seed=42).candidates
    rows = ds.item_vocab.encode(held, missing="mask")
    texts = item_texts(ds)
    v_out = load_encoder(str(tmp_path / "last")).encode(texts)[rows]
    v_t = load_encoder(str(teacher)).encode(texts)[rows]
    got = agreement(
        torch.from_numpy(np.ascontiguousarray(v_out)), torch.from_numpy(np.ascontiguousarray(v_t))
    )
    assert got == pytest.approx(last.val_metric[-1], abs=1e-3)
    assert min(abs(got - m) for m in last.val_metric[:-1]) > 1e-3  # and not another epoch's


def test_distill_loss_is_zero_when_the_student_is_the_teacher() -> None:
    import torch

    from tokrec.encoders.distill import distill_loss, make_distill_config

    v = torch.nn.functional.normalize(torch.randn(6, 4), dim=-1)
    head = torch.nn.Linear(4, 4, bias=False)
    with torch.no_grad():
        head.weight.copy_(torch.eye(4))
    cfg = make_distill_config(teacher="t")
    assert float(distill_loss(v, v, head, cfg).detach()) == pytest.approx(0.0, abs=1e-6)
    # a student with the teacher's similarities but another basis: only the head term is left, and the
    # relational term alone is zero
    q, _ = torch.linalg.qr(torch.randn(4, 4))
    rotated = v @ q
    rel = make_distill_config(teacher="t", relational_weight=1.0)
    assert float(((rotated @ rotated.T - v @ v.T) ** 2).mean()) == pytest.approx(0.0, abs=1e-6)
    assert float(distill_loss(rotated, v, head, rel).detach()) > 0.0
    with torch.no_grad():
        head.weight.copy_(q)  # head(x) = x q^T maps the rotated student back onto the teacher
    assert float(distill_loss(rotated, v, head, rel).detach()) == pytest.approx(0.0, abs=1e-6)


def test_cli_distill_and_bad_input(pair, tmp_path: Path, capsys) -> None:
    from tokrec.cli.main import main

    student, teacher = pair
    ds = catalog()
    ds.items.to_csv(tmp_path / "items.csv", index=False)
    ds.interactions[["user_id", "item_id", "timestamp"]].to_csv(tmp_path / "train.csv", index=False)
    argv = ["distill", "--items", str(tmp_path / "items.csv"), "--interactions", str(tmp_path / "train.csv")]
    argv += ["--teacher", str(teacher), "--model-path", str(student), "--output", str(tmp_path / "enc")]
    argv += ["--device", "cpu", "--epochs", "1", "--batch-size", "8"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    result = json.loads(out.strip().splitlines()[-1])
    assert result["steps"] == 5 and result["val_items"] == 10 and "agreement with the teacher" in out
    assert result["kept"] == "best"
    assert main([*argv[:-4], "--epochs", "2", "--batch-size", "8", "--keep", "last", "--patience", "1"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["kept"] == "last" and result["best_epoch"] == 2 and len(result["val_loss"]) == 2
    assert main([*argv[:-2], "--batch-size", "1000"]) == 2  # fewer items with events than a batch: DataError
    assert "too few items with events" in capsys.readouterr().err
    with pytest.raises(ConfigError):
        from tokrec.encoders.distill import make_distill_config

        make_distill_config(teacher="t", no_such_option=1)
