"""Language-model encoders: text -> float32 vectors, with a fingerprint naming everything that changes them."""

from tokrec.encoders.base import Encoder

__all__ = ["Encoder"]
