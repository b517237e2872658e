"""Cross-encoder buy/not-buy classifier on a tiny BERT built from a config (no downloads)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tokrec.data.dataset import Dataset
from tokrec.errors import ConfigError
from tokrec.models.cross_encoder import CrossEncoderClassifier, heldout_pairs, sample_pairs, split_users

transformers = pytest.importorskip("transformers")
pytest.importorskip("peft")

N_PER_GROUP = 10


def two_taste_data(n_users: int = 60, seed: int = 0, tastes: int = 1) -> Dataset:
    """Two genres; each user consumed every item of one genre (``tastes=1``: always Alpha), in a
    random order. Sampled negatives (items the user never had) are then always of the other genre:
    separable from the texts."""
    rng = np.random.default_rng(seed)
    ids = [f"a{i}" for i in range(N_PER_GROUP)] + [f"b{i}" for i in range(N_PER_GROUP)]
    items = pd.DataFrame(
        {
            "item_id": ids,
            "title": [f"{'Alpha' if i[0] == 'a' else 'Beta'} film {i[1:]}" for i in ids],
            "genres": ["Alpha" if i[0] == "a" else "Beta" for i in ids],
        }
    )
    rows = []
    for u in range(n_users):
        prefix = "a" if u % tastes == 0 else "b"
        for t, k in enumerate(rng.permutation(N_PER_GROUP)):
            rows.append((f"u{u}", f"{prefix}{k}", t))
    return Dataset(pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"]), items)


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory) -> Path:
    """A 2-layer, 32-wide BERT with a word-level vocabulary of the synthetic texts."""
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    d = tmp_path_factory.mktemp("tiny-bert")
    words: set[str] = set()
    for t in CrossEncoderClassifier().item_texts(two_taste_data(n_users=2)):
        words.update(re.findall(r"\w+|[^\w\s]", t.lower()))
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *sorted(words)]
    (d / "vocab.txt").write_text("\n".join(vocab) + "\n")
    BertTokenizerFast(vocab={w: i for i, w in enumerate(vocab)}).save_pretrained(str(d))
    cfg = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=256,
        num_labels=2,
    )
    import torch

    torch.manual_seed(0)
    BertForSequenceClassification(cfg).save_pretrained(str(d), safe_serialization=True)
    return d


def test_pairs_sampling() -> None:
    ds = two_taste_data()
    train_u, held_u = split_users(ds, 0.25, seed=0)
    assert len(set(train_u) & set(held_u)) == 0 and len(train_u) + len(held_u) == 60
    p = sample_pairs(ds, train_u, n_pairs=90, negatives=2, how="uniform", history_items=3, seed=0)
    assert len(p) == 90 and p.labels.sum() == 30
    seqs = ds.sequences()
    for u, h, i, y in zip(p.users, p.histories, p.items, p.labels, strict=True):
        assert set(p.users) <= set(train_u.tolist())
        assert 1 <= len(h) <= 3
        assert (i in seqs[u]) == bool(y)  # positives are the user's events, negatives never are
    e = heldout_pairs(ds, held_u, negatives=1, how="popularity", history_items=3, seed=0)
    assert set(e.users) <= set(held_u.tolist()) and e.labels.sum() == len(held_u)


@pytest.mark.slow
@pytest.mark.parametrize("lora", [False, True])
def test_learns_a_separable_task_and_reranks(tiny_bert: Path, tmp_path: Path, lora: bool) -> None:
    ds = two_taste_data()
    train_u, held_u = split_users(ds, 0.3, seed=0)
    cfg = {
        "model": str(tiny_bert),
        "lora": lora,
        "target_modules": ["query", "value"],
        "epochs": 4,
        "batch_size": 16,
        "lr": 3e-3,
        "max_length": 64,
        "history_items": 3,
        "threads": 1,
        "progress": False,
        "device": "cpu",
    }
    train = sample_pairs(ds, train_u, n_pairs=400, negatives=1, how="uniform", history_items=3, seed=0)
    clf = CrossEncoderClassifier(cfg).fit(ds, train)
    ev = clf.evaluate(ds, heldout_pairs(ds, held_u, negatives=3, how="uniform", history_items=3, seed=0))
    assert ev["roc_auc"] > 0.9, ev
    assert "buy" in ev["report"] and "precision" in ev["report"]
    # re-rank a list where the other genre comes first: the user's genre must move to the top
    u = ds.user_vocab.decode([held_u[0]])[0]
    mine = "a"
    other = "b" if mine == "a" else "a"
    recs = pd.DataFrame(
        {
            "user_id": u,
            "item_id": [f"{other}0", f"{other}1", f"{mine}0", f"{mine}1", f"{other}2"],
            "rank": [1, 2, 3, 4, 5],
        }
    )
    out = clf.rerank(ds, recs, top_n=4, weight=1.0)
    assert set(out["item_id"][:2]) == {f"{mine}0", f"{mine}1"} and out["item_id"].iloc[4] == f"{other}2"
    assert out["rank"].tolist() == [1, 2, 3, 4, 5]
    path = clf.save(tmp_path / "clf")
    assert list(path.rglob("*.safetensors")) and not list(path.rglob("*.bin"))
    again = CrossEncoderClassifier.load(path)
    pairs = heldout_pairs(ds, held_u[:3], negatives=1, how="uniform", history_items=3, seed=1)
    np.testing.assert_allclose(
        again.predict_proba(ds, pairs), clf.predict_proba(ds, pairs), rtol=1e-4, atol=1e-5
    )


def test_the_template_writes_the_pairs_texts() -> None:
    from tokrec.features import item_texts

    ds = two_taste_data(n_users=2)
    clf = CrossEncoderClassifier(template="{title}")
    assert clf.item_texts(ds) == item_texts(ds, "{title}") != CrossEncoderClassifier().item_texts(ds)


def test_config_rejects_unknown_keys() -> None:
    with pytest.raises(ConfigError):
        CrossEncoderClassifier({"no_such_option": 1})
    with pytest.raises(ConfigError):
        CrossEncoderClassifier(negative_sampling="hard")


@pytest.mark.slow
def test_cli_classify_end_to_end(tiny_bert: Path, tmp_path: Path, capsys) -> None:
    from tokrec.cli.main import main

    ds = two_taste_data()
    ds.items.to_csv(tmp_path / "items.csv", index=False)
    ds.interactions[["user_id", "item_id", "timestamp"]].to_csv(tmp_path / "train.csv", index=False)
    recs = pd.DataFrame({"user_id": ["u0"] * 3, "item_id": ["b0", "b1", "a0"], "rank": [1, 2, 3]})
    recs.to_csv(tmp_path / "recs.csv", index=False)
    argv = [
        "classify",
        "--items",
        str(tmp_path / "items.csv"),
        "--interactions",
        str(tmp_path / "train.csv"),
        "--model",
        str(tiny_bert),
    ]
    argv += [
        "--full",
        "--max-pairs",
        "400",
        "--epochs",
        "4",
        "--lr",
        "3e-3",
        "--max-length",
        "64",
        "--threads",
        "1",
        "--no-progress",
        "--device",
        "cpu",
    ]
    argv += [
        "--negative-sampling",
        "uniform",
        "--rerank",
        str(tmp_path / "recs.csv"),
        "--output",
        str(tmp_path / "out.csv"),
        "--top-n",
        "3",
        "--blend-weight",
        "1",
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "ROC-AUC" in out and "precision" in out
    assert json.loads(out.strip().splitlines()[-1])["roc_auc"] > 0.9
    assert pd.read_csv(tmp_path / "out.csv")["item_id"].iloc[0] == "a0"
    assert main(argv[:-8] + ["--rerank", str(tmp_path / "recs.csv")]) == 2  # --rerank needs --output
    # the default weight is chosen on validation: popularity (every user had every Alpha item) ranks each held-out
    # user's last event first, so the first stage alone is perfect and keeps its order (ties go to weight 0)
    assert main(argv[:-2] + ["--first-stage", "popularity"]) == 0
    out = capsys.readouterr().out
    result = json.loads(out.strip().splitlines()[-1])
    assert "blend weight 0 chosen on validation" in out and result["blend_weight"] == 0.0
    assert result["validation_ndcg10"]["0"] == 1.0 and len(result["validation_ndcg10"]) == 11
    assert pd.read_csv(tmp_path / "out.csv")["item_id"].tolist() == ["b0", "b1", "a0"]
    with pytest.raises(SystemExit) as bad:  # a weight outside [0, 1]: argparse's usage error
        main(argv[:-1] + ["1.5"])
    assert bad.value.code == 2 and "expected auto or a number in [0, 1]" in capsys.readouterr().err


def test_behaviour_features_keep_a_users_own_events_out() -> None:
    from tokrec.models.cross_encoder import Behaviour, Pairs

    items = pd.DataFrame({"item_id": ["x", "y", "z"], "title": ["x", "y", "z"]})
    rows = [("u0", "x", 0), ("u0", "y", 1), ("u1", "x", 0), ("u1", "y", 1), ("u2", "x", 0), ("u2", "z", 1)]
    ds = Dataset(pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"]), items)
    users = ds.user_vocab.encode(["u0", "u1"], missing="mask")
    b = Behaviour.fit(ds, users)
    x, y, z = ds.item_vocab.encode(["x", "y", "z"], missing="mask")
    assert b.pop.tolist() == [2.0, 2.0, 0.0] and b.cooc[x, y] == 2.0
    u0, u2 = ds.user_vocab.encode(["u0", "u2"], missing="mask")
    hist = [np.array([x])] * 3
    pairs = Pairs(np.array([u0, u2, u2]), hist, np.array([y, y, z]), np.zeros(3, np.int64))
    f = b.features(ds, pairs)
    # u0 was counted: their own (x, y) is taken out, leaving u1's; u2 was not counted: nothing taken out
    assert f[0, 0] == pytest.approx(np.log1p(1.0)) and f[0, 1] == pytest.approx(np.log1p(1.0))
    assert f[1, 0] == pytest.approx(np.log1p(2.0)) and f[1, 1] == pytest.approx(np.log1p(2.0))
    assert f[2, 0] == 0.0 and f[2, 1] == 0.0 and f[2, 2] == 0.0


def test_rerank_blends_first_stage_and_classifier() -> None:
    ds = two_taste_data(n_users=4)
    clf = CrossEncoderClassifier()
    logits = {"b0": 3.0, "b1": 2.0, "a0": 0.0, "a1": 1.0}  # the classifier's order: b0 b1 a1 a0
    clf.predict_logit = lambda dataset, pairs, **kw: np.array(  # type: ignore[method-assign]
        [logits[i] for i in dataset.item_vocab.decode(pairs.items)], dtype=np.float32
    )
    recs = pd.DataFrame({"user_id": "u0", "item_id": ["a0", "a1", "b0", "b1", "a2"], "rank": [1, 2, 3, 4, 5]})
    order = lambda w: clf.rerank(ds, recs, top_n=4, weight=w)["item_id"].tolist()  # noqa: E731
    assert order(0.0) == ["a0", "a1", "b0", "b1", "a2"]  # the first stage's order
    assert order(1.0) == ["b0", "b1", "a1", "a0", "a2"]  # the classifier's, the tail untouched
    # w=0.5: z(-rank) = (1.34, .45, -.45, -1.34) and z(logit) = (-1.34, -.45, 1.34, .45) for a0 a1 b0 b1:
    # blend (0, 0, .45, -.45) (a0 and a1 tie up to rounding)
    mid = order(0.5)
    assert mid[0] == "b0" and set(mid[1:3]) == {"a0", "a1"} and mid[3:] == ["b1", "a2"]
    with pytest.raises(ConfigError):
        clf.rerank(ds, recs, weight=1.5)


def zipf_data(n_users: int = 40, n_items: int = 20, events: int = 6, seed: int = 0) -> Dataset:
    """Users with ``events`` distinct items each, drawn with Zipf-like popularity, in time order."""
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, n_items + 1)
    rows = []
    for u in range(n_users):
        for t, i in enumerate(rng.choice(n_items, size=events, replace=False, p=p / p.sum())):
            rows.append((f"u{u}", f"i{i}", t))
    items = pd.DataFrame(
        {"item_id": [f"i{i}" for i in range(n_items)], "title": [f"t{i}" for i in range(n_items)]}
    )
    return Dataset(pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"]), items)


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_the_blend_weight_is_chosen_on_each_users_last_event(sign: float) -> None:
    """An oracle classifier (a high logit for exactly each user's last event) earns a positive weight and a
    perfect validation NDCG; the same classifier reversed is given weight 0 (the first stage alone)."""
    from tokrec.models.registry import create_model
    from tokrec.tuning import choose_rerank_weight

    ds = zipf_data()
    last = ds.interactions.sort_values("timestamp").groupby("user_id")["item_id"].last().to_dict()
    clf = CrossEncoderClassifier()
    seen_users = []

    def logit(dataset, pairs, **kw):
        users = dataset.user_vocab.decode(pairs.users)
        seen_users.extend(users)
        hit = [last[u] == i for u, i in zip(users, dataset.item_vocab.decode(pairs.items), strict=True)]
        return sign * 5.0 * np.asarray(hit, dtype=np.float32)

    clf.predict_logit = logit  # type: ignore[method-assign]
    held = [f"u{u}" for u in range(0, 40, 2)]
    choice = choose_rerank_weight(clf, ds, create_model("popularity", None), held, top_n=20)
    assert choice.users == 20 and set(seen_users) == set(held)
    assert sorted(choice.curve) == [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
    assert choice.curve[0.0] < 0.9  # popularity alone misses most last events
    if sign > 0:
        assert choice.weight > 0 and choice.curve[choice.weight] == pytest.approx(1.0)
        assert choice.curve[1.0] == pytest.approx(1.0)
    else:
        assert choice.weight == 0.0 and max(choice.curve.values()) == choice.curve[0.0]
        assert choice.curve[1.0] < choice.curve[0.0]
    assert "chosen on validation" in choice.line()
