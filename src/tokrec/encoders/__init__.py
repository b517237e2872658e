"""Language-model encoders: text -> float32 vectors, with a fingerprint naming everything that changes them."""

from __future__ import annotations

import json
import os
from pathlib import Path

from typing_extensions import Unpack

from tokrec.encoders.base import Encoder
from tokrec.encoders.hf import (
    FINETUNE_FILE,
    EncoderOptions,
    HFEncoder,
    cpu_has_bf16,
    default_model_path,
    pool,
)
from tokrec.errors import ConfigError


def load_encoder(model: str | None = None, **options: Unpack[EncoderOptions]) -> HFEncoder:
    """Loads a text encoder.

    Args:
        model: a Hugging Face model id or a local folder; ``None`` is the bundled all-MiniLM-L6-v2
            (dim 384, works offline).
        pooling: ``"auto"`` (a sentence-transformers folder's own setting, else last-token for
            decoder-only models and mean otherwise), ``"mean"``, ``"cls"`` or ``"last"``.
        normalize: L2-normalise the vectors.
        max_length: tokens per text including special tokens (default: the sentence-transformers
            ``max_seq_length`` where there is one, else 256; capped at the model's positions).
        batch_size: texts per forward pass (texts are sorted by length first; default 64 on a CPU, 512
            on a GPU).
        dtype: ``"auto"`` (bf16 autocast on CPUs with AVX512-BF16/AMX, fp32 on other CPUs, bf16/fp16
            on CUDA), ``"fp32"``, ``"bf16"`` or ``"fp16"``.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        revision: a hub revision (branch, tag or commit).
        prompt: text put before every input (e.g. ``"query: "``); part of the fingerprint.

    Returns:
        An :class:`HFEncoder` (the model weights load on the first ``encode``).

    Raises:
        ConfigError: the model cannot be found or an option is invalid.
    """
    return HFEncoder(model or default_model_path(), **options)


def finetuned_without(model: str | os.PathLike[str] | None) -> list[str] | None:
    """The item ids an encoder folder written by ``tokrec finetune`` was fine-tuned without: the items of its
    validation split, never a positive in training. A tuner that validates on new items holds out these, so
    that the tuned encoder is blind to its validation items as it will be to real new ones.

    Returns:
        The ids, or ``None`` for any other model (a hub id, a plain folder, the bundled default) and for
        folders written before the ids were recorded.
    """
    if model is None or not (Path(model) / FINETUNE_FILE).is_file():
        return None
    try:
        meta = json.loads((Path(model) / FINETUNE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ConfigError(f"{Path(model) / FINETUNE_FILE}: unreadable ({e})") from e
    items = meta.get("val_items") if isinstance(meta, dict) else None
    if items is None:
        return None
    if not isinstance(items, list):
        raise ConfigError(f"{Path(model) / FINETUNE_FILE}: field val_items: expected a list of item ids")
    return [str(i) for i in items]


__all__ = [
    "FINETUNE_FILE",
    "Encoder",
    "EncoderOptions",
    "HFEncoder",
    "cpu_has_bf16",
    "default_model_path",
    "finetuned_without",
    "load_encoder",
    "pool",
]
