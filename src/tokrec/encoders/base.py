"""The encoder protocol every backend implements."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Encoder(Protocol):
    """Turns texts into vectors.

    ``encode`` always returns a C-contiguous ``float32`` array of shape ``(len(texts), dim)``,
    whatever the backend's dtype or device. ``fingerprint`` is a stable string that changes whenever
    anything that changes the output changes (model id and revision, pooling, normalisation, max
    length, dtype, prompt/template); the embedding cache keys on it.
    """

    @property
    def dim(self) -> int: ...

    @property
    def fingerprint(self) -> str: ...

    def encode(self, texts: Sequence[str], *, progress: bool = False) -> np.ndarray: ...

    def count_tokens(self, texts: Sequence[str]) -> list[int]: ...
