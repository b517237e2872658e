"""Tiny, random-weight language models saved to a folder, for tests (no downloads, a few MB, fast).

from tokrec.encoders.testing import make_tiny_bert
path = make_tiny_bert(tmp_path / "bert")        # a BERT with hidden size 32, 2 layers
enc = load_encoder(str(path), dtype="fp32")
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Iterable
from pathlib import Path

WORDS = [
    "the",
    "a",
    "of",
    "and",
    "to",
    "in",
    "is",
    "it",
    "for",
    "on",
    "with",
    "as",
    "at",
    "by",
    "an",
    "be",
    "this",
    "that",
    "from",
    "or",
    "movie",
    "film",
    "story",
    "love",
    "war",
    "space",
    "comedy",
    "drama",
    "action",
    "thriller",
    "horror",
    "romance",
    "animation",
    "children",
    "documentary",
    "musical",
    "western",
    "crime",
    "mystery",
    "toy",
    "heat",
    "fargo",
    "star",
    "wars",
    "title",
    "genres",
    "release",
    "date",
    "rated",
    "bought",
    "clicked",
    "viewed",
    "user",
    "item",
]


def _vocab(extra: Iterable[str] = ()) -> list[str]:
    chars = list("abcdefghijklmnopqrstuvwxyz0123456789") + list(".,:;!?()'|-_/&")
    words = list(dict.fromkeys([*WORDS, *extra]))
    return ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words, *chars, *("##" + c for c in chars[:36])]


def make_tiny_bert(
    path: str | Path,
    *,
    hidden: int = 32,
    layers: int = 2,
    seed: int = 0,
    sentence_transformers: bool = False,
    tokenizer: str | Path | None = None,
) -> Path:
    """Saves a random BERT (config + safetensors + WordPiece tokenizer) to ``path``.

    Args:
        path: the folder to create.
        hidden: hidden size (= the vector size).
        layers: transformer layers.
        seed: torch seed for the weights.
        sentence_transformers: also write ``1_Pooling/config.json`` (CLS pooling) and
            ``sentence_bert_config.json`` (max_seq_length 16), as a sentence-transformers folder does.
        tokenizer: a model folder whose tokenizer to copy instead of the tiny one (its vocabulary sizes the
            embeddings): a cheap model that tokenizes like a real one.

    Returns:
        The folder.
    """
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast  # type: ignore[attr-defined]

    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    if tokenizer is not None:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(str(tokenizer))
        n_vocab = len(tok)
    else:
        vocab = _vocab()
        n_vocab = len(vocab)
        (out / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
        if "vocab" in inspect.signature(BertTokenizerFast.__init__).parameters:  # transformers >= 5
            tok = BertTokenizerFast(vocab={w: i for i, w in enumerate(vocab)}, do_lower_case=True)
        else:  # pragma: no cover - transformers 4.x
            tok = BertTokenizerFast(vocab_file=str(out / "vocab.txt"), do_lower_case=True)
    tok.save_pretrained(out)
    torch.manual_seed(seed)
    cfg = BertConfig(
        vocab_size=n_vocab,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=2 * hidden,
        max_position_embeddings=128,
    )
    BertModel(cfg).eval().save_pretrained(out)
    if sentence_transformers:
        (out / "1_Pooling").mkdir(exist_ok=True)
        pooling = {
            "word_embedding_dimension": hidden,
            "pooling_mode_cls_token": True,
            "pooling_mode_mean_tokens": False,
        }
        (out / "1_Pooling" / "config.json").write_text(json.dumps(pooling))
        (out / "sentence_bert_config.json").write_text('{"max_seq_length": 16, "do_lower_case": false}')
    return out


def make_tiny_gpt2(path: str | Path, *, hidden: int = 32, layers: int = 2, seed: int = 0) -> Path:
    """Saves a random GPT-2 (decoder-only) with a word-level tokenizer and no pad token to ``path``."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import GPT2Config, GPT2Model, PreTrainedTokenizerFast

    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    words = ["<|endoftext|>", "<unk>", *dict.fromkeys(WORDS + list(".,:;!?()'|-"))]
    tk = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=tk, eos_token="<|endoftext|>", bos_token="<|endoftext|>", unk_token="<unk>"
    )
    tok.save_pretrained(out)
    torch.manual_seed(seed)
    cfg = GPT2Config(vocab_size=len(words), n_embd=hidden, n_layer=layers, n_head=2, n_positions=128)
    GPT2Model(cfg).eval().save_pretrained(out)
    return out
