"""A model's saved form, derived from the learned state it declares (``Recommender.state``).

A model directory (format ``tokrec-model/2``) holds:

* ``config.json``: ``{"format", "model", "config", "items", "users", "state"}``: the registry name, the
  validated config (hyperparameters only; runtime options are never saved), the vocabularies and, for
  every declared state field, how it was stored;
* ``arrays.safetensors``: every array (the users' histories under ``__seen_*``);
* one sub-directory per part (a field holding a model, or a list of models), itself a complete model
  directory with its own ``config.json`` and arrays (the sentence-transformers layout): every part loads on
  its own, so parts load in any order and can be swapped.

How a field is stored follows from its value: ``None``; a numpy array; a scipy sparse matrix (CSR
``.data/.indices/.indptr`` + its shape); a ``dict`` of int -> array (ragged rows); a ``dict`` of str ->
array (e.g. a network's weights); a list of any of these; a ``Recommender`` (a part); anything else must
be JSON. A model whose state holds another kind of object (a torch network, a LightGBM booster) converts it
in ``_encode_state`` / ``_decode_state``. Nothing is pickled.

Directories of the older format ``tokrec-model/1`` (hand-written array names per model) still load for the
models whose state is arrays, CSR matrices and JSON (every model except ``text-sasrec`` and
``gbdt-ranker``, whose parts and networks that format stored in a call-order-dependent way).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp

from tokrec.data.dataset import Vocab
from tokrec.errors import ConfigError
from tokrec.fileio import atomic_dir

if TYPE_CHECKING:
    from tokrec.models.base import Recommender

FORMAT = "tokrec-model/2"
LEGACY_FORMAT = "tokrec-model/1"


def _key(field: str) -> str:
    return field.rstrip("_")


class _Writer:
    """Collects arrays and parts while encoding a model's state fields."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.arrays: dict[str, np.ndarray] = {}

    def encode(self, key: str, value: Any) -> dict[str, Any]:
        from tokrec.models.base import Recommender

        if value is None:
            return {"kind": "none"}
        if isinstance(value, Recommender):
            save_model(value, self.folder / key)
            return {"kind": "model", "dir": key}
        if isinstance(value, np.ndarray):
            self.arrays[key] = np.ascontiguousarray(value)
            return {"kind": "array"}
        if sp.issparse(value):
            m = sp.csr_matrix(value)
            self.arrays[f"{key}.data"] = np.ascontiguousarray(m.data)
            self.arrays[f"{key}.indices"] = np.ascontiguousarray(m.indices, dtype=np.int64)
            self.arrays[f"{key}.indptr"] = np.ascontiguousarray(m.indptr, dtype=np.int64)
            return {"kind": "csr", "shape": list(m.shape)}
        if isinstance(value, dict) and value and all(isinstance(v, np.ndarray) for v in value.values()):
            if all(isinstance(k, str) for k in value):
                for name, v in value.items():
                    self.arrays[f"{key}.{name}"] = np.ascontiguousarray(v)
                return {"kind": "arrays", "names": list(value)}
            rows = sorted(value)
            empty = np.empty(0, dtype=next(iter(value.values())).dtype)
            self.arrays[f"{key}.rows"] = np.asarray(rows, dtype=np.int64)
            self.arrays[f"{key}.lengths"] = np.array([len(value[r]) for r in rows], dtype=np.int64)
            self.arrays[f"{key}.values"] = np.concatenate([value[r] for r in rows]) if rows else empty
            return {"kind": "ragged"}
        if isinstance(value, list) and value and not _is_json(value):
            return {"kind": "list", "items": [self.encode(f"{key}.{j}", v) for j, v in enumerate(value)]}
        if not _is_json(value):
            raise ConfigError(f"state value of type {type(value).__name__} cannot be saved ({key})")
        return {"kind": "json", "value": value}


def _is_json(value: Any) -> bool:
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, (list, tuple)):
        return all(_is_json(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_json(v) for k, v in value.items())
    return False


def _decode(folder: Path, key: str, spec: dict[str, Any], arrays: dict[str, np.ndarray]) -> Any:
    kind = spec["kind"]
    if kind == "none":
        return None
    if kind == "json":
        return spec["value"]
    if kind == "array":
        return arrays[key]
    if kind == "csr":
        shape = tuple(spec["shape"])
        return sp.csr_matrix(
            (arrays[f"{key}.data"], arrays[f"{key}.indices"], arrays[f"{key}.indptr"]), shape=shape
        )
    if kind == "arrays":
        return {name: arrays[f"{key}.{name}"] for name in spec["names"]}
    if kind == "ragged":
        rows, lengths, values = arrays[f"{key}.rows"], arrays[f"{key}.lengths"], arrays[f"{key}.values"]
        bounds = np.concatenate([[0], np.cumsum(lengths)])
        return {int(r): values[bounds[j] : bounds[j + 1]] for j, r in enumerate(rows)}
    if kind == "list":
        return [_decode(folder, f"{key}.{j}", s, arrays) for j, s in enumerate(spec["items"])]
    if kind == "model":
        return load_model(folder / spec["dir"])
    raise ConfigError(f"{folder / 'config.json'}: unknown state kind {kind!r} ({key})")


def _write(model: Recommender, folder: Path) -> None:
    from safetensors.numpy import save_file

    assert model.user_vocab_ is not None and model.item_vocab_ is not None
    writer = _Writer(folder)
    state = {f: writer.encode(_key(f), model._encode_state(f, getattr(model, f))) for f in model.state}
    seen_users = np.array(sorted(model.seen_), dtype=np.int64)
    writer.arrays["__seen_users"] = seen_users
    writer.arrays["__seen_lengths"] = np.array([len(model.seen_[u]) for u in seen_users], dtype=np.int64)
    writer.arrays["__seen_items"] = (
        np.concatenate([model.seen_[u] for u in seen_users]).astype(np.int64)
        if len(seen_users)
        else np.empty(0, np.int64)
    )
    save_file(writer.arrays, str(folder / "arrays.safetensors"))
    meta = {
        "format": FORMAT,
        "model": model.name,
        "config": model.config.model_dump(mode="json"),
        "items": model.item_vocab_.to_list(),
        "users": model.user_vocab_.to_list(),
        "state": state,
    }
    (folder / "config.json").write_text(json.dumps(meta))


def save_model(model: Recommender, path: str | os.PathLike[str]) -> Path:
    """Writes ``model`` (fitted) to the directory ``path``, atomically: a temporary directory renamed
    into place (an existing model directory is replaced; any other existing folder is refused)."""
    model._check_fitted()
    path = Path(path)
    with atomic_dir(path, replaceable=lambda p: (p / "config.json").is_file() or not any(p.iterdir())) as tmp:
        _write(model, tmp)
    return path


def load_model(path: str | os.PathLike[str]) -> Recommender:
    """Loads a directory written by :func:`save_model` (or the older format 1; see the module docstring)."""
    from safetensors.numpy import load_file

    from tokrec.models.registry import model_class

    path = Path(path)
    cfg = path / "config.json"
    if not cfg.is_file():
        raise ConfigError(f"{path}: not a tokrec model directory (no config.json)")
    try:
        meta = json.loads(cfg.read_text())
    except json.JSONDecodeError as e:
        raise ConfigError(f"{cfg}: invalid JSON: {e}") from None
    fmt = meta.get("format")
    if fmt not in (FORMAT, LEGACY_FORMAT):
        raise ConfigError(f"{cfg}: unknown format {fmt!r}")
    arrays = dict(load_file(str(path / "arrays.safetensors")))
    cls = model_class(meta["model"])
    # runtime options saved in a format-1 config are dropped: they describe the machine that fitted it
    config = {k: v for k, v in meta["config"].items() if k not in cls.Runtime.model_fields}
    model = cls(config)
    model.item_vocab_ = Vocab.from_list(meta["items"])
    model.user_vocab_ = Vocab.from_list(meta["users"])
    users = arrays.pop("__seen_users")
    lengths = arrays.pop("__seen_lengths")
    items = arrays.pop("__seen_items")
    bounds = np.concatenate([[0], np.cumsum(lengths)])
    model.seen_ = {int(u): items[bounds[j] : bounds[j + 1]] for j, u in enumerate(users)}
    specs = meta["state"] if fmt == FORMAT else _legacy_specs(cls, meta, arrays, cfg)
    for field in model.state:
        if field not in specs and field not in cls.optional_state:
            raise ConfigError(f"{cfg}: the saved state has no {field!r}")
        spec = specs.get(field, {"kind": "none"})
        value = _decode(path, _key(field), spec, arrays)
        setattr(model, field, model._decode_state(field, value))
    model._reset_caches()
    return model


def _legacy_specs(
    cls: type[Recommender], meta: dict[str, Any], arrays: dict[str, np.ndarray], cfg: Path
) -> dict[str, Any]:
    """Reads a format-1 directory, whose array names were each state field's name without its ``_``."""
    if cls.name in ("text-sasrec", "gbdt-ranker"):
        raise ConfigError(f"{cfg}: saved by an older tokrec (format 1) that this version cannot read; refit")
    old = meta.get("state", {})
    specs: dict[str, Any] = {}
    for field in cls.state:
        key = _key(field)
        if key in arrays:
            specs[field] = {"kind": "array"}
        elif f"{key}.indptr" in arrays:
            n = len(arrays[f"{key}.indptr"]) - 1
            specs[field] = {"kind": "csr", "shape": [n, n]}  # format 1 stored only square matrices
        elif key in old:
            specs[field] = {"kind": "json", "value": old[key]}
        else:  # a field the older format did not have: the model fills it in _reset_caches
            specs[field] = {"kind": "none"}
    return specs


__all__ = ["FORMAT", "load_model", "save_model"]
