"""`tokrec finetune`: contrastive fine-tuning of a tiny BERT built in the test on planted behaviour."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tokrec.data.dataset import Dataset
from tokrec.errors import ConfigError

pytest.importorskip("transformers")

WORDS = ["alpha", "beta"]


def planted(n_users: int = 40, n_items: int = 40, seed: int = 0) -> Dataset:
    """Two tastes told apart by one word of the title: each user consumes items of one word only."""
    rng = np.random.default_rng(seed)
    items = pd.DataFrame(
        {
            "item_id": [f"i{i}" for i in range(n_items)],
            "title": [f"{WORDS[i % 2]} film {i}" for i in range(n_items)],
        }
    )
    rows = []
    for u in range(n_users):
        mine = [i for i in range(n_items) if i % 2 == u % 2]
        for t, i in enumerate(rng.choice(mine, 10, replace=False)):
            rows.append((f"u{u}", f"i{i}", t))
    return Dataset(pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"]), items)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    from tokrec.encoders.testing import make_tiny_bert

    return make_tiny_bert(tmp_path_factory.mktemp("ft") / "bert")


@pytest.fixture(scope="module")
def tiny_st(tmp_path_factory) -> Path:
    from tokrec.encoders.testing import make_tiny_bert

    return make_tiny_bert(tmp_path_factory.mktemp("ft") / "st", sentence_transformers=True)


SMALL = {
    "batch_size": 16,
    "epochs": 2,
    "patience": 2,
    "lr": 2e-3,
    "hard_negatives": 2,
    "device": "cpu",
    "threads": 1,
}


def test_finetune_lowers_validation_loss_and_writes_a_loadable_encoder(tiny: Path, tmp_path: Path) -> None:
    from tokrec.encoders import load_encoder
    from tokrec.encoders.finetune import finetune_encoder

    ds = planted()
    r = finetune_encoder(ds, tmp_path / "tuned", model=str(tiny), **SMALL)
    assert r.best_epoch >= 1 and min(r.val_loss) < r.base_val_loss - 0.05, r.to_json()
    out = tmp_path / "tuned"
    assert (out / "model.safetensors").is_file() and not list(out.glob("*.bin"))
    meta = json.loads((out / "tokrec_finetune.json").read_text())
    assert meta["result"]["best_epoch"] == r.best_epoch and meta["config"]["batch_size"] == 16
    base, tuned = load_encoder(str(tiny)), load_encoder(str(out))
    assert tuned.fingerprint != base.fingerprint
    assert (tuned.pooling, tuned.max_length) == (base.pooling, base.max_length)
    # the tuned vectors put same-taste items closer together than the base vectors do
    texts = [f"{WORDS[i % 2]} film {i}" for i in range(40)]

    def margin(enc) -> float:
        v = enc.encode(texts)
        sim = v @ v.T
        same = np.equal.outer(np.arange(40) % 2, np.arange(40) % 2) & ~np.eye(40, dtype=bool)
        return float(sim[same].mean() - sim[~np.equal.outer(np.arange(40) % 2, np.arange(40) % 2)].mean())

    assert margin(tuned) > margin(base) + 0.05


@pytest.mark.parametrize("adapter", ["lora", "adalora"])
def test_finetune_adapters_are_merged(tiny: Path, tmp_path: Path, adapter: str) -> None:
    pytest.importorskip("peft")
    from safetensors.numpy import load_file

    from tokrec.encoders.finetune import finetune_encoder

    small = {**SMALL, "epochs": 1}
    r = finetune_encoder(planted(), tmp_path / "lora", model=str(tiny), adapter=adapter, lora_r=4, **small)
    weights = load_file(str(tmp_path / "lora" / "model.safetensors"))
    assert not any("lora" in k for k in weights)  # merged into the plain weights
    assert min(r.val_loss) < r.base_val_loss


def test_cli_finetune_and_bad_input(tiny_st: Path, tmp_path: Path, capsys) -> None:
    from tokrec.cli.main import main
    from tokrec.encoders import load_encoder

    ds = planted()
    ds.items.to_csv(tmp_path / "items.csv", index=False)
    ds.interactions[["user_id", "item_id", "timestamp"]].to_csv(tmp_path / "train.csv", index=False)
    argv = ["finetune", "--items", str(tmp_path / "items.csv"), "--interactions", str(tmp_path / "train.csv")]
    argv += ["--model-path", str(tiny_st), "--output", str(tmp_path / "enc"), "--device", "cpu"]
    argv += ["--epochs", "1", "--batch-size", "16", "--max-steps-per-epoch", "2"]
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["steps"] == 2 and out["val_items"] == 8
    # a sentence-transformers base: its pooling and length settings travel with the tuned folder
    assert (tmp_path / "enc" / "sentence_bert_config.json").is_file()
    base, tuned = load_encoder(str(tiny_st)), load_encoder(str(tmp_path / "enc"))
    assert (tuned.pooling, tuned.max_length) == (base.pooling, base.max_length) == ("cls", 16)
    assert tuned.fingerprint != base.fingerprint
    assert main([*argv[:-6], "--epochs", "1", "--batch-size", "100000"]) == 2  # too few events: DataError
    with pytest.raises(ConfigError):
        from tokrec.encoders.finetune import make_config

        make_config(no_such_option=1)


def test_query_histories_recent_and_any() -> None:
    from tokrec.encoders.finetune import _examples

    seqs = [np.array([0, 1, 2, 3, 4, 5]), np.array([6, 7])]
    keep = np.ones(8, dtype=bool)
    keep[3] = False  # a held-out item: never in a history
    target = np.ones(8, dtype=bool)
    target[3] = False
    recent = _examples(seqs, 2, keep, target)
    # next-item: the last 2 kept items before each event; the first event of a user has none
    assert recent.pos.tolist() == [1, 2, 4, 5, 7]
    assert recent.hist.tolist() == [[0, -1], [0, 1], [1, 2], [2, 4], [6, -1]]
    rng = np.random.default_rng(0)
    drawn = [_examples(seqs, 2, keep, target, rng) for _ in range(20)]
    # any: every target event, the first included, with items drawn from before AND after it
    assert drawn[0].pos.tolist() == [0, 1, 2, 4, 5, 6, 7]
    for ex in drawn:
        for u, h, p in zip(ex.users, ex.hist, ex.pos, strict=True):
            h = h[h >= 0]
            mine = set(seqs[u].tolist()) - {3, int(p)}
            assert len(h) == min(2, len(mine)) and set(h.tolist()) <= mine and len(set(h.tolist())) == len(h)
    later = {int(x) for ex in drawn for x in ex.hist[0] if x >= 0}  # item 0's histories
    assert later == {1, 2, 4, 5}  # after the event, never the held-out 3


def test_finetune_with_queries_from_the_whole_history(tiny: Path, tmp_path: Path) -> None:
    from tokrec.encoders.finetune import finetune_encoder

    r = finetune_encoder(planted(), tmp_path / "any", model=str(tiny), query="any", **SMALL)
    assert r.steps == 2 * (r.info["train_examples"] // 16)  # epoch 2 ran on freshly drawn histories
    assert min(r.val_loss) < r.base_val_loss - 0.05, r.to_json()
    meta = json.loads((tmp_path / "any" / "tokrec_finetune.json").read_text())
    assert meta["config"]["query"] == "any"


def test_popularity_correction_takes_log_q_off_each_candidate_logit() -> None:
    """The logQ correction: the batch loss equals InfoNCE over cosine / temperature less log(events + 1) of
    each candidate, computed here by hand with numpy on fixed vectors."""
    import scipy.sparse as sp
    import torch

    from tokrec.encoders.finetune import EncoderTrainer, FinetuneConfig, _Examples, _step_loss

    rng = np.random.default_rng(0)
    table = rng.normal(size=(6, 4)).astype(np.float32)
    table /= np.linalg.norm(table, axis=1, keepdims=True)

    class Fixed:  # the trainer's interface, with fixed item vectors instead of a model
        device = "cpu"
        queries = staticmethod(EncoderTrainer.queries)

        def embed(self, rows: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(table[rows])

    ex = _Examples(np.array([0, 1]), np.array([[1, 2], [3, -1]]), np.array([0, 4]))
    seen = sp.csr_matrix(np.array([[1, 1, 1, 0, 0, 0], [0, 0, 0, 1, 1, 0]], dtype=bool))
    cfg = FinetuneConfig(hard_negatives=0, temperature=0.1)
    counts = np.array([50.0, 3.0, 0.0, 7.0, 1.0, 9.0])
    log_q = np.log1p(counts)

    def by_hand(correct: bool) -> float:
        uniq = np.array([0, 1, 2, 3, 4])  # the batch's distinct items
        losses = []
        for hist, pos, own in ((ex.hist[0], 0, {1, 2}), (ex.hist[1], 4, {3})):
            q = table[hist[hist >= 0]].mean(0)
            q /= np.linalg.norm(q)
            logits = table[uniq] @ q / 0.1 - (log_q[uniq] if correct else 0.0)
            logits[[j for j in range(5) if uniq[j] in own]] = -np.inf
            losses.append(np.log(np.exp(logits).sum()) - logits[pos])
        return float(np.mean(losses))

    plain = float(_step_loss(Fixed(), ex, np.array([0, 1]), seen, None, cfg))
    corrected = float(_step_loss(Fixed(), ex, np.array([0, 1]), seen, None, cfg, log_q))
    assert plain == pytest.approx(by_hand(False), rel=1e-5)
    assert corrected == pytest.approx(by_hand(True), rel=1e-5)
    assert corrected != pytest.approx(plain, rel=1e-3)


def test_finetuned_folder_records_the_items_it_held_out(tiny: Path, tmp_path: Path) -> None:
    """`val_items` in tokrec_finetune.json are the items of the fine-tuning's own validation split (never a
    positive in training), read back by `finetuned_without`."""
    from tokrec.encoders import finetuned_without
    from tokrec.encoders.finetune import finetune_encoder
    from tokrec.evaluation.splits import cold_item_split

    ds = planted()
    finetune_encoder(ds, tmp_path / "t", model=str(tiny), **{**SMALL, "epochs": 1})
    expected = cold_item_split(ds, fraction=0.2, seed=42).candidates
    assert finetuned_without(tmp_path / "t") == expected and len(expected) == 8
    assert finetuned_without(tiny) is None


def test_hold_out_last_trains_without_each_users_last_event(tiny: Path, tmp_path: Path, monkeypatch) -> None:
    """--hold-out-last: the fine-tuning sees exactly the events the tuner's leave-last-out validation trains
    on (each user's last event left out), so that tuning on this log later is blind to the encoder."""
    import tokrec.evaluation.splits as splits
    from tokrec.encoders.finetune import finetune_encoder

    seen: list[Dataset] = []
    real = splits.cold_item_split

    def spy(dataset: Dataset, **kw):
        seen.append(dataset)
        return real(dataset, **kw)

    monkeypatch.setattr(splits, "cold_item_split", spy)
    ds = planted()
    finetune_encoder(ds, tmp_path / "t", model=str(tiny), hold_out_last=True, **{**SMALL, "epochs": 1})
    got = seen[0].interactions[["user_id", "item_id"]].reset_index(drop=True)
    want = splits.leave_last_out(ds).train.interactions[["user_id", "item_id"]].reset_index(drop=True)
    pd.testing.assert_frame_equal(got, want)
    assert len(got) == len(ds.interactions) - 40  # 40 users, one last event each
    last = ds.interactions.sort_values("timestamp").groupby("user_id").tail(1)
    assert not set(zip(last["user_id"], last["item_id"], strict=True)) & set(
        zip(got["user_id"], got["item_id"], strict=True)
    )
    meta = json.loads((tmp_path / "t" / "tokrec_finetune.json").read_text())
    assert meta["config"]["hold_out_last"] is True


def test_finetune_reads_the_items_through_the_template(tiny: Path, tmp_path: Path) -> None:
    """--template: the catalog texts the encoder is trained on are rendered as the commands that use it will
    render them; the folder records the template."""
    from transformers import AutoTokenizer

    from tokrec.encoders.finetune import EncoderTrainer, finetune_encoder, make_config
    from tokrec.features import item_texts

    ds = planted()
    cfg = make_config(model=str(tiny), template="an item: {title}", **SMALL)
    tr = EncoderTrainer(cfg, ds, total_steps=1)
    texts = item_texts(ds, "an item: {title}")
    assert texts[0] == "an item: alpha film 0" != item_texts(ds)[0]
    assert (
        tr.ids
        == AutoTokenizer.from_pretrained(str(tiny))(texts, truncation=True, max_length=tr.max_length)[
            "input_ids"
        ]
    )
    finetune_encoder(
        ds, tmp_path / "t", model=str(tiny), template="an item: {title}", **{**SMALL, "epochs": 1}
    )
    meta = json.loads((tmp_path / "t" / "tokrec_finetune.json").read_text())
    assert meta["config"]["template"] == "an item: {title}"
