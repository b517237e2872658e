"""HFEncoder: pooling modes against manual computations, padding sides, fingerprints, dtype, MiniLM vs ST."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tokrec.encoders import Encoder, load_encoder, pool
from tokrec.encoders.testing import make_tiny_bert, make_tiny_gpt2
from tokrec.errors import ConfigError

TEXTS = [
    "toy story",
    "the love story of a war movie in space with a long title and more words",
    "heat",
    "toy story",  # duplicate
    "fargo: a crime thriller (1996).",
]


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    return make_tiny_bert(tmp_path_factory.mktemp("bert") / "m")


@pytest.fixture(scope="module")
def gpt2_dir(tmp_path_factory):
    return make_tiny_gpt2(tmp_path_factory.mktemp("gpt2") / "m")


def _manual(path, texts, mode, *, max_length=256):
    """Each text alone (no padding at all) through the raw transformers model, pooled by hand."""
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path).eval()
    out = []
    with torch.no_grad():
        for t in texts:
            enc = tok(t, return_tensors="pt", truncation=True, max_length=max_length)
            h = model(**enc).last_hidden_state[0]
            out.append({"mean": h.mean(0), "cls": h[0], "last": h[-1]}[mode].numpy())
    return np.stack(out)


@pytest.mark.parametrize("mode", ["mean", "cls"])
def test_bert_pooling_matches_manual(bert_dir, mode):
    enc = load_encoder(str(bert_dir), pooling=mode, normalize=False, dtype="fp32", batch_size=2)
    got = enc.encode(TEXTS)
    assert got.dtype == np.float32 and got.flags.c_contiguous and got.shape == (5, 32)
    np.testing.assert_allclose(got, _manual(bert_dir, TEXTS, mode), atol=1e-5)
    assert enc.stats["unique"] == 4  # the duplicate was encoded once
    np.testing.assert_array_equal(got[0], got[3])


def test_normalize_gives_unit_rows(bert_dir):
    enc = load_encoder(str(bert_dir), dtype="fp32")
    got = enc.encode(TEXTS)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    raw = load_encoder(str(bert_dir), dtype="fp32", normalize=False).encode(TEXTS)
    np.testing.assert_allclose(got, raw / np.linalg.norm(raw, axis=1, keepdims=True), atol=1e-5)


def test_input_order_restored_across_length_sorted_batches(bert_dir):
    enc = load_encoder(str(bert_dir), dtype="fp32", batch_size=1)
    one_by_one = np.stack([enc.encode([t])[0] for t in TEXTS])
    batched = load_encoder(str(bert_dir), dtype="fp32", batch_size=3).encode(TEXTS)
    np.testing.assert_allclose(batched, one_by_one, atol=1e-5)


@pytest.mark.parametrize("side", ["right", "left"])
def test_windows_tokenized_in_the_background_keep_every_row(gpt2_dir, monkeypatch, side):
    """Several windows (the next one tokenized by a background thread while the model runs, as on a GPU) and
    several flushes of the device-held vectors: every row matches the text encoded alone, in input order."""
    import tokrec.encoders.hf as hf

    monkeypatch.setattr(hf, "_FLUSH_ROWS", 3)
    words = ["toy", "story", "heat", "love", "war", "space", "crime", "night"]
    texts = [" ".join(words[(i * 5 + j * 3) % 8] for j in range(1 + i % 4 + i // 4)) for i in range(21)]
    texts += texts[:5]  # duplicates are encoded once and copied back
    enc = load_encoder(str(gpt2_dir), normalize=False, dtype="fp32", batch_size=2)
    enc.tokenizer_.padding_side = side
    assert not enc.prefetch and enc.window == 65_536  # on a CPU: large windows, no tokenizer thread
    enc.window, enc.prefetch = 4, True  # as on a GPU, in windows of 8 texts here (4 batches of 2)
    got = enc.encode(texts)
    assert enc.stats["unique"] == 21 and got.shape == (26, 32)
    assert enc.stats["tokens"] == sum(enc.count_tokens(texts[:21]))
    np.testing.assert_allclose(got, _manual(gpt2_dir, texts, "last"), atol=1e-5)


@pytest.mark.parametrize("side", ["right", "left"])
def test_gpt2_last_token_pooling_under_both_padding_sides(gpt2_dir, side):
    enc = load_encoder(str(gpt2_dir), normalize=False, dtype="fp32", batch_size=8)
    assert enc.decoder_only and enc.pooling == "last"  # the default for a decoder-only model
    enc.tokenizer_.padding_side = side
    texts = ["toy story", "the love story of a war movie in space", "heat"]
    got = enc.encode(texts)
    np.testing.assert_allclose(got, _manual(gpt2_dir, texts, "last"), atol=1e-5)


def test_pool_function_on_a_known_tensor():
    hidden = torch.arange(2 * 3 * 2, dtype=torch.float32).reshape(2, 3, 2)
    right = torch.tensor([[1, 1, 0], [1, 1, 1]])
    left = torch.tensor([[0, 1, 1], [1, 1, 1]])
    np.testing.assert_allclose(pool(hidden, right, "mean").numpy(), [[1.0, 2.0], [8.0, 9.0]])
    np.testing.assert_allclose(pool(hidden, right, "last").numpy(), [[2.0, 3.0], [10.0, 11.0]])
    np.testing.assert_allclose(pool(hidden, left, "last").numpy(), [[4.0, 5.0], [10.0, 11.0]])
    np.testing.assert_allclose(pool(hidden, left, "cls").numpy(), [[2.0, 3.0], [6.0, 7.0]])


def test_sentence_transformers_folder_settings_are_read(tmp_path):
    path = make_tiny_bert(tmp_path / "st", sentence_transformers=True)
    enc = load_encoder(str(path))
    assert enc.pooling == "cls" and enc.max_length == 16
    assert load_encoder(str(path), max_length=32).max_length == 32


def test_truncation_tokens_and_counts(bert_dir):
    enc = load_encoder(str(bert_dir), max_length=8, dtype="fp32")
    long = "the love story of a war movie in space with a long title"
    tokens, ids = enc.tokenize(long)
    assert len(ids) == 8 and tokens[0] == "[CLS]" and tokens[-1] == "[SEP]" and tokens[1:3] == ["the", "love"]
    # not truncated: 12 in-vocabulary words + "long" as l ##o ##n ##g + [CLS] + [SEP]
    assert enc.count_tokens([long, "heat"]) == [18, 3]


def test_fingerprint_names_every_option(bert_dir, tmp_path):
    base = load_encoder(str(bert_dir), dtype="fp32")
    assert isinstance(base, Encoder)
    same = load_encoder(str(bert_dir), dtype="fp32")
    assert base.fingerprint == same.fingerprint
    variants = [
        load_encoder(str(bert_dir), dtype="bf16"),
        load_encoder(str(bert_dir), dtype="fp32", pooling="cls"),
        load_encoder(str(bert_dir), dtype="fp32", normalize=False),
        load_encoder(str(bert_dir), dtype="fp32", max_length=64),
        load_encoder(str(bert_dir), dtype="fp32", prompt="query: "),
        load_encoder(str(make_tiny_bert(tmp_path / "other", seed=1)), dtype="fp32"),  # other weights
    ]
    fps = {base.fingerprint, *(v.fingerprint for v in variants)}
    assert len(fps) == 1 + len(variants)


def test_fingerprint_ignores_the_finetune_record(tmp_path):
    """tokrec_finetune.json describes a folder (settings, curve, held-out items) without changing its output:
    rewriting it keeps the fingerprint, and the vectors cached for the weights, valid."""
    folder = make_tiny_bert(tmp_path / "m", seed=2)
    before = load_encoder(str(folder), dtype="fp32").fingerprint
    (folder / "tokrec_finetune.json").write_text('{"val_items": ["i1"]}')
    assert load_encoder(str(folder), dtype="fp32").fingerprint == before
    (folder / "config.json").write_text((folder / "config.json").read_text().replace("}", ', "x": 1}', 1))
    assert load_encoder(str(folder), dtype="fp32").fingerprint != before  # a config file still counts


def test_bf16_stays_close_to_fp32(bert_dir):
    a = load_encoder(str(bert_dir), dtype="fp32").encode(TEXTS)
    b = load_encoder(str(bert_dir), dtype="bf16").encode(TEXTS)
    assert b.dtype == np.float32
    assert (a * b).sum(1).min() > 0.99


def test_bad_options_and_paths(bert_dir, tmp_path):
    with pytest.raises(ConfigError, match="pooling"):
        load_encoder(str(bert_dir), pooling="max")
    with pytest.raises(ConfigError, match="dtype"):
        load_encoder(str(bert_dir), dtype="int4")
    with pytest.raises(ConfigError, match="not found"):
        load_encoder(str(tmp_path / "nope" / "model"))


def test_empty_input(bert_dir):
    out = load_encoder(str(bert_dir)).encode([])
    assert out.shape == (0, 32) and out.dtype == np.float32


def test_default_minilm_matches_sentence_transformers():
    from sentence_transformers import SentenceTransformer

    from tokrec.encoders import default_model_path

    texts = [
        "title: Toy Story (1995). genres: Animation|Children's|Comedy.",
        "a thriller set in Fargo",
        "Heat",
    ]
    enc = load_encoder(dtype="fp32")
    assert enc.dim == 384 and enc.pooling == "mean" and enc.max_length == 256
    ours = enc.encode(texts)
    ref = SentenceTransformer(default_model_path(), device="cpu").encode(texts, normalize_embeddings=True)
    cos = (ours * ref).sum(1)
    assert ours.shape == (3, 384) and cos.min() > 0.999


def test_batch_size_and_windows_follow_the_device(bert_dir, monkeypatch):
    """Unless given, a CPU encodes 64 texts a pass in one large window; a GPU 512 a pass, tokenizing the next
    window of 4,096 in the background (the device is faked: the model is never loaded here)."""
    from tokrec.encoders.hf import HFEncoder

    cpu = load_encoder(str(bert_dir), dtype="fp32")
    assert (cpu.batch_size, cpu.prefetch, cpu.window) == (64, False, 65_536)
    assert load_encoder(str(bert_dir), dtype="fp32", batch_size=7).batch_size == 7
    monkeypatch.setattr(HFEncoder, "_resolve_device", staticmethod(lambda device: "cuda"))
    gpu = load_encoder(str(bert_dir), dtype="fp32")
    assert (gpu.batch_size, gpu.prefetch, gpu.window) == (512, True, 4096)
    with pytest.raises(ConfigError, match="batch_size"):
        load_encoder(str(bert_dir), batch_size=0)


def test_progress_advances_batch_by_batch(bert_dir):
    """One large window on a CPU: the bar still moves after every batch, not once at the end."""

    class Bar:
        def __init__(self) -> None:
            self.steps: list[int] = []

        def update(self, n: int) -> None:
            self.steps.append(n)

    enc = load_encoder(str(bert_dir), dtype="fp32", batch_size=2)
    bar = Bar()
    rows = [r for r, _ in enc.encode_windows(TEXTS[:3] + TEXTS[4:], progress=bar)]
    assert bar.steps == [2, 2] and len(rows) == 1 and sorted(rows[0]) == [0, 1, 2, 3]
