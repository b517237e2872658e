"""Typed configs: the one way to build one from data, and the one way to read a JSON ``--config``.

Every config in tokrec is a pydantic model with ``extra="forbid"``; it is built only through
:func:`validate_config` (``Cfg.model_validate(data)``), never with ``model_copy(update=...)``, which would
skip validation. An override is applied as ``validate_config(Cfg, {**cfg.model_dump(), **overrides})``.
A failure is a :class:`~tokrec.errors.ConfigError` of one line that names each bad field.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from tokrec.errors import ConfigError

C = TypeVar("C", bound=BaseModel)


def describe_validation_error(error: ValidationError) -> str:
    """One line per pydantic error, joined by ``; ``: ``field: message (got value)``."""
    parts = []
    for err in error.errors():
        field = ".".join(str(x) for x in err["loc"])
        msg = "unknown option" if err["type"] == "extra_forbidden" else err["msg"]
        got = err.get("input")
        shown = f" (got {got!r})" if field and not isinstance(got, dict) and len(repr(got)) <= 60 else ""
        parts.append(f"{field}: {msg}{shown}" if field else msg)
    return "; ".join(parts)


def validate_config(cls: type[C], data: dict[str, Any] | BaseModel | None, *, what: str) -> C:
    """``cls.model_validate(data)``; a failure raises ConfigError ``"{what}: field: reason"``."""
    if isinstance(data, BaseModel):
        data = data.model_dump()
    try:
        return cls.model_validate(data or {})
    except ValidationError as e:
        raise ConfigError(f"{what}: invalid config: {describe_validation_error(e)}") from None


def with_overrides(config: C, overrides: dict[str, Any], *, what: str) -> C:
    """A new, validated ``config`` with ``overrides`` applied (the original is unchanged)."""
    return validate_config(type(config), {**config.model_dump(), **overrides}, what=what)


def parse_key_values(pairs: list[str] | tuple[str, ...], *, option: str = "--set") -> dict[str, Any]:
    """``["lr=0.005", "refit=none"]`` -> ``{"lr": 0.005, "refit": "none"}``: each ``key=value``, the value read as
    JSON where it is JSON and kept as text otherwise (for scripts' ``--set`` overrides, validated by the config)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"{option}: expected key=value, got {pair!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def read_json_config(text: str | None, *, option: str = "--config") -> dict[str, Any]:
    """The JSON object of a command-line option given inline (``{...}``) or as a path to a JSON file.

    Anything else (no such file, invalid JSON, not an object) is a one-line ConfigError naming the option
    or the file.
    """
    if not text:
        return {}
    source = option
    if not text.lstrip().startswith("{"):
        path = Path(text)
        if not path.is_file():
            raise ConfigError(f"{option}: {text!r} is neither a JSON object nor an existing file")
        try:
            source, text = str(path), path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"{path}: cannot read as UTF-8 text ({e})") from None
    try:
        cfg = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{source}: invalid JSON: {e}") from None
    if not isinstance(cfg, dict):
        raise ConfigError(f"{source}: expected a JSON object")
    return cfg


__all__ = ["describe_validation_error", "read_json_config", "validate_config", "with_overrides"]
