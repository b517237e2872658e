"""``EncoderSpec``: the one description of an encoder, as ``load_encoder`` arguments.

A spec names the model and the options to rebuild an encoder with (``build``), and, once an encoder was
made from it, the ``fingerprint`` and ``dim`` of the vectors it gave, plus whatever it reported about
itself (``info``, for people). The model bundle records one (``tokrec.serve.bundle``: the server refuses
an encoder whose fingerprint differs); the Ray jobs take one to build the encoder in each worker, and its
``repr`` is stable (options sorted), so an interrupted run with the same spec resumes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class EncoderSpec:
    """How to rebuild an encoder.

    Attributes:
        model: the ``model`` argument of ``load_encoder`` (None: the bundled all-MiniLM-L6-v2).
        options: keyword options of ``load_encoder`` (pooling, dtype, max_length, ...), sorted by name;
            ``batch_size`` is dropped: it is how a run encodes, not which vectors it makes.
        fingerprint: the encoder's fingerprint when vectors were made with it ("": none made yet).
        dim: the vector dimension ``d`` (0: not known yet).
        info: anything else the encoder reported (pooling, max length, model path), for people.
    """

    model: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    fingerprint: str = ""
    dim: int = 0
    info: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        opts = {k: v for k, v in sorted(dict(self.options).items()) if k != "batch_size"}
        object.__setattr__(self, "options", opts)
        object.__setattr__(self, "info", dict(self.info))

    def build(self, batch_size: int | None = None) -> Any:
        """The encoder (``load_encoder(model, **options)``, with ``batch_size`` when given)."""
        from tokrec.encoders import load_encoder  # type: ignore[attr-defined]

        extra: dict[str, Any] = {} if batch_size is None else {"batch_size": batch_size}
        return load_encoder(self.model, **extra, **self.options)

    def __call__(self, batch_size: int | None = None) -> Any:
        """``build(batch_size)``: a spec is also a zero-argument encoder factory."""
        return self.build(batch_size)

    def to_json(self) -> dict[str, Any]:
        """The fields by name (``model``, ``options``, ``fingerprint``, ``dim``, ``info``), copied."""
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> EncoderSpec:
        return cls(
            d.get("model"),
            dict(d.get("options") or {}),
            str(d.get("fingerprint") or ""),
            int(d.get("dim") or 0),
            dict(d.get("info") or {}),
        )

    @classmethod
    def of(
        cls, encoder: Any, *, model: str | None = None, options: dict[str, Any] | None = None
    ) -> EncoderSpec:
        """Describes a live encoder (``model``/``options``: how it was loaded).

        For a :class:`tokrec.encoders.HFEncoder` given without ``options``, the options are read off the
        encoder (pooling, normalize, max_length, resolved dtype, prompt, revision) and the bundled
        default model is recorded as ``None``, so that the same encoder is rebuilt.
        """
        info: dict[str, Any] = {"class": f"{type(encoder).__module__}:{type(encoder).__qualname__}"}
        if options is None and hasattr(encoder, "model_id") and hasattr(encoder, "pooling"):
            options = {
                k: getattr(encoder, k)
                for k in ("pooling", "normalize", "max_length", "dtype", "prompt", "revision")
            }
            if model is None:
                from tokrec.encoders import default_model_path

                model = None if str(encoder.model_id) == str(default_model_path()) else str(encoder.model_id)
        for attr in ("model_id", "pooling", "max_length", "normalize", "dtype", "device"):
            v = getattr(encoder, attr, None)
            if isinstance(v, str | int | float | bool) or v is None:
                if v is not None:
                    info[attr] = v
            else:
                info[attr] = str(v)
        return cls(model, dict(options or {}), str(encoder.fingerprint), int(encoder.dim), info)


__all__ = ["EncoderSpec"]
