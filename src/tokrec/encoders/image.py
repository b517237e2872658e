"""CLIP image vectors for items (``tokrec embed --image-column COL --image-model PATH``).

Uses transformers' ``CLIPModel`` (``get_image_features``) and the folder's image processor, loaded from a
local folder only (``local_files_only``: no download): a Hugging Face CLIP folder (``config.json``,
weights, ``preprocessor_config.json``) or a sentence-transformers CLIP folder (``clip-ViT-B-32`` and the
like keep the Hugging Face model in ``0_CLIPModel/``, which is used). open-clip-torch is not used: it is
not a dependency, and sentence-transformers' CLIP folders are Hugging Face CLIP models, which transformers
(already a dependency) reads.

Images come from a catalog column of local paths or ``file://`` / ``http(s)://`` URLs (URLs need network
access). Vectors are float32, L2-normalised. The result is an item-vector set for ``--item-vectors``.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tokrec.errors import ConfigError, DataError


def _clip_folder(path: str | os.PathLike[str]) -> Path:
    p = Path(path)
    if (p / "0_CLIPModel" / "config.json").is_file():
        return p / "0_CLIPModel"
    if (p / "config.json").is_file():
        return p
    raise ConfigError(f"{p}: not a CLIP model folder (no config.json or 0_CLIPModel/config.json)")


class ClipImageEncoder:
    """Image paths or URLs -> CLIP image vectors (float32, unit length).

    Args:
        model: a local CLIP folder (Hugging Face or sentence-transformers layout).
        batch_size: images per forward pass.
    """

    def __init__(self, model: str | os.PathLike[str], *, batch_size: int = 32) -> None:
        import warnings

        import torch
        from transformers import AutoImageProcessor, CLIPModel

        folder = _clip_folder(model)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                self.model = CLIPModel.from_pretrained(str(folder), local_files_only=True).eval()
                self.processor: Any = AutoImageProcessor.from_pretrained(str(folder), local_files_only=True)
            except (OSError, ValueError) as e:
                raise ConfigError(f"{folder}: cannot load a CLIP model: {e}") from e
        self.batch_size = int(batch_size)
        self.dim = int(self.model.config.projection_dim)
        self._torch = torch

    @staticmethod
    def _open(ref: str, *, file: str | None, row: int | None, column: str | None) -> Any:
        from PIL import Image

        try:
            if ref.startswith(("http://", "https://")):
                import urllib.request

                with urllib.request.urlopen(ref, timeout=20) as r:  # noqa: S310 (http/https only)
                    return Image.open(io.BytesIO(r.read())).convert("RGB")
            path = ref[len("file://") :] if ref.startswith("file://") else ref
            with Image.open(path) as im:
                return im.convert("RGB")
        except Exception as e:  # PIL and urllib raise many types
            raise DataError(f"cannot read image {ref!r}: {e}", file=file, row=row, column=column) from e

    def encode(
        self,
        refs: Sequence[str],
        *,
        file: str | None = None,
        rows: Sequence[int] | None = None,
        column: str | None = None,
    ) -> np.ndarray:
        """``(len(refs), dim)`` float32 vectors; an unreadable image raises naming its row and column."""
        out = np.zeros((len(refs), self.dim), dtype=np.float32)
        for start in range(0, len(refs), self.batch_size):
            chunk = refs[start : start + self.batch_size]
            images = [
                self._open(
                    str(r), file=file, row=None if rows is None else int(rows[start + j]), column=column
                )
                for j, r in enumerate(chunk)
            ]
            inputs = self.processor(images=images, return_tensors="pt")
            with self._torch.inference_mode():
                feats = self.model.get_image_features(pixel_values=inputs["pixel_values"])
            if not isinstance(feats, self._torch.Tensor):  # some versions return a model output
                feats = getattr(feats, "image_embeds", None) or feats.pooler_output
            v = feats.float().numpy()
            out[start : start + len(chunk)] = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
        return out


def make_tiny_clip(path: str | os.PathLike[str], *, seed: int = 0) -> Path:
    """Saves a random, tiny CLIP (32x32 images, 8-d projection) with its image processor, for tests."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    torch.manual_seed(seed)
    cfg = CLIPConfig(
        text_config={"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
                     "vocab_size": 64, "max_position_embeddings": 16, "bos_token_id": 0, "eos_token_id": 1,
                     "pad_token_id": 1},
        vision_config={"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
                       "image_size": 32, "patch_size": 8},
        projection_dim=8,
    )  # fmt: skip
    p = Path(path)
    CLIPModel(cfg).save_pretrained(str(p))
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(
        str(p)
    )
    return p
