"""Encoders for testing the distributed path: fast, deterministic, and able to die on cue.

They live in the package (not under ``tests/``) because Ray workers import them by module name.
Each one is a small frozen dataclass whose call returns an :class:`~tokrec.encoders.base.Encoder`;
``embed_items_ray(model=...)`` accepts such a factory as well as a model name.
"""

from __future__ import annotations

import hashlib
import os
import signal
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np


class HashEncoder:
    """A deterministic stand-in for a language model: a unit vector seeded by the text's hash.

    Args:
        dim: the vector size.
        salt: changes every vector (and the fingerprint), as a different model would.
    """

    def __init__(self, dim: int = 16, salt: str = "") -> None:
        self._dim = dim
        self._salt = salt
        self.calls = 0

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def fingerprint(self) -> str:
        return f"tokrec-test-hash-encoder/dim={self._dim}/salt={self._salt}"

    def encode(self, texts: Sequence[str], *, progress: bool = False) -> np.ndarray:
        """Returns ``(len(texts), dim)`` float32 unit vectors."""
        self.calls += 1
        out = np.empty((len(texts), self._dim), dtype=np.float32)
        for i, t in enumerate(texts):
            seed = int.from_bytes(hashlib.sha256((self._salt + "\0" + t).encode()).digest()[:8], "little")
            v = np.random.default_rng(seed).standard_normal(self._dim)
            out[i] = v / np.linalg.norm(v)
        return out

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return [len(t.split()) for t in texts]


@dataclass(frozen=True)
class HashEncoderFactory:
    """Builds a :class:`HashEncoder` inside each worker."""

    dim: int = 16
    salt: str = ""

    def __call__(self) -> HashEncoder:
        return HashEncoder(self.dim, self.salt)


class _DyingEncoder(HashEncoder):
    def __init__(self, dim: int, marker: Path, after_calls: int, how: str) -> None:
        super().__init__(dim)
        self._marker = marker
        self._after = after_calls
        self._how = how

    def encode(self, texts: Sequence[str], *, progress: bool = False) -> np.ndarray:
        if self.calls >= self._after:
            try:
                fd = os.open(self._marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                fd = -1  # someone already died once: behave
            if fd >= 0:
                os.write(fd, str(os.getpid()).encode())
                os.close(fd)
                if self._how == "kill":
                    os.kill(os.getpid(), signal.SIGKILL)
                raise RuntimeError("injected failure (tokrec test)")
        return super().encode(texts, progress=progress)


@dataclass(frozen=True)
class DieOnceFactory:
    """An encoder that fails once, the first time any worker passes ``after_calls`` encode calls.

    Args:
        marker: a file created atomically when the failure fires (it holds the pid); while it
            exists no worker fails again.
        after_calls: encode calls a worker makes before it fails.
        how: ``"kill"`` sends SIGKILL to the worker's own process (Ray restarts the actor and
            retries its task); ``"raise"`` raises an error (Ray fails the run, as a crash would).
        dim: vector size (vectors equal :class:`HashEncoder`'s).
    """

    marker: str
    after_calls: int = 1
    how: str = "kill"
    dim: int = 16

    def __call__(self) -> HashEncoder:
        return _DyingEncoder(self.dim, Path(self.marker), self.after_calls, self.how)
