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


def _decode(folder: Path, key: str, spec: Any, arrays: dict[str, np.ndarray]) -> Any:
    """The value of state ``key`` from its ``spec`` (config.json) and the arrays; a spec of the wrong shape,
    a missing array or arrays that disagree raise ConfigError naming the file and the key."""
    cfg = folder / "config.json"

    def bad(why: str) -> ConfigError:
        return ConfigError(f"{cfg}: state {key!r}: {why}")

    def array(name: str, ndim: int | None = None, integer: bool = False) -> np.ndarray:
        if name not in arrays:
            raise ConfigError(f"{folder / 'arrays.safetensors'}: no array {name!r} (state {key!r})")
        a = arrays[name]
        if ndim is not None and a.ndim != ndim:
            raise bad(f"array {name!r} should be {ndim}-D, has shape {a.shape}")
        if integer and a.dtype.kind not in "iu":
            raise bad(f"array {name!r} should hold integers, has dtype {a.dtype}")
        return a

    def field(name: str, types: type | tuple[type, ...]) -> Any:
        if name not in spec or not isinstance(spec[name], types):
            raise bad(f"{name!r} missing or of the wrong type")
        return spec[name]

    if not isinstance(spec, dict) or not isinstance(spec.get("kind"), str):
        raise bad("expected an object with a 'kind'")
    kind = spec["kind"]
    if kind == "none":
        return None
    if kind == "json":
        if "value" not in spec:
            raise bad("no 'value'")
        return spec["value"]
    if kind == "array":
        return array(key)
    if kind == "csr":
        shape = field("shape", list)
        if len(shape) != 2 or not all(
            isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape
        ):
            raise bad(f"'shape' should be two sizes, got {shape!r}")
        data, indices = array(f"{key}.data", 1), array(f"{key}.indices", 1, integer=True)
        indptr = array(f"{key}.indptr", 1, integer=True)
        if (
            len(indptr) != shape[0] + 1
            or len(data) != len(indices)
            or (len(indptr) and indptr[-1] != len(data))
        ):
            raise bad(f"CSR arrays do not fit shape {shape} ({len(indptr)} indptr, {len(data)} values)")
        if (len(indptr) and indptr[0] != 0) or (np.diff(indptr) < 0).any():
            raise bad("CSR indptr is not a non-decreasing count from 0")
        if len(indices) and (indices.min() < 0 or indices.max() >= shape[1]):
            raise bad(f"CSR column index out of range for shape {shape}")
        return sp.csr_matrix((data, indices, indptr), shape=tuple(shape))
    if kind == "arrays":
        names = field("names", list)
        if not all(isinstance(n, str) for n in names):
            raise bad("'names' should be a list of strings")
        return {name: array(f"{key}.{name}") for name in names}
    if kind == "ragged":
        rows, lengths = array(f"{key}.rows", 1, integer=True), array(f"{key}.lengths", 1, integer=True)
        values = array(f"{key}.values")
        if len(rows) != len(lengths) or (lengths < 0).any() or int(lengths.sum()) != len(values):
            raise bad(f"{len(rows)} rows, {len(lengths)} lengths and {len(values)} values do not agree")
        bounds = np.concatenate([[0], np.cumsum(lengths)])
        return {int(r): values[bounds[j] : bounds[j + 1]] for j, r in enumerate(rows)}
    if kind == "list":
        return [_decode(folder, f"{key}.{j}", s, arrays) for j, s in enumerate(field("items", list))]
    if kind == "model":
        sub = field("dir", str)
        if Path(sub).name != sub or sub in ("", ".", ".."):
            raise bad(f"'dir' should be a folder name inside the model directory, got {sub!r}")
        return load_model(folder / sub)
    raise ConfigError(f"{cfg}: unknown state kind {kind!r} ({key})")


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
    """Loads a directory written by :func:`save_model` (or the older format 1; see the module docstring).

    Raises:
        ConfigError: naming the file, when the directory is not a model directory, config.json is not
            valid JSON of the expected shape, arrays.safetensors is missing or unreadable, or the
            vocabularies and the arrays do not agree.
    """
    from tokrec.models.registry import model_class

    path = Path(path)
    cfg = path / "config.json"
    if not cfg.is_file():
        raise ConfigError(f"{path}: not a tokrec model directory (no config.json)")
    try:
        meta = json.loads(cfg.read_text())
    except json.JSONDecodeError as e:
        raise ConfigError(f"{cfg}: invalid JSON: {e}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{cfg}: cannot read: {e}") from None
    if not isinstance(meta, dict):
        raise ConfigError(f"{cfg}: expected a JSON object, got {type(meta).__name__}")
    fmt = meta.get("format")
    if fmt not in (FORMAT, LEGACY_FORMAT):
        raise ConfigError(f"{cfg}: unknown format {fmt!r}")
    for key, kind in (("model", str), ("config", dict), ("items", list), ("users", list), ("state", dict)):
        if key == "state" and fmt == LEGACY_FORMAT and key not in meta:
            continue
        if not isinstance(meta.get(key), kind):
            got = type(meta[key]).__name__ if key in meta else "nothing"
            raise ConfigError(f"{cfg}: {key!r} should be a JSON {_JSON_TYPE[kind]}, got {got}")
    for key in ("items", "users"):
        if not all(isinstance(i, str) for i in meta[key]):
            raise ConfigError(f"{cfg}: {key!r} should be a list of id strings")
    arrays = _read_arrays(path / "arrays.safetensors")
    try:
        cls = model_class(meta["model"])
        # runtime options saved in a format-1 config are dropped: they describe the machine that fitted it
        config = {k: v for k, v in meta["config"].items() if k not in cls.Runtime.model_fields}
        model = cls(config)
    except ConfigError as e:
        raise ConfigError(f"{cfg}: {e}") from None
    item_vocab, user_vocab = _vocab(meta, "items", cfg), _vocab(meta, "users", cfg)
    model.item_vocab_, model.user_vocab_ = item_vocab, user_vocab
    model.seen_ = _read_seen(arrays, len(user_vocab), len(item_vocab), path)
    specs = meta["state"] if fmt == FORMAT else _legacy_specs(cls, meta, arrays, cfg)
    for field in model.state:
        if field not in specs and field not in cls.optional_state:
            raise ConfigError(f"{cfg}: the saved state has no {field!r}")
        spec = specs.get(field, {"kind": "none"})
        value = _decode(path, _key(field), spec, arrays)
        setattr(model, field, model._decode_state(field, value))
    model._reset_caches()
    return model


_JSON_TYPE = {str: "string", dict: "object", list: "array"}


def _vocab(meta: dict[str, Any], key: str, cfg: Path) -> Vocab:
    ids = meta[key]
    vocab = Vocab(ids)
    if len(vocab) != len(ids):
        seen: set[str] = set()
        dup = None
        for dup in ids:
            if dup in seen:
                break
            seen.add(dup)
        raise ConfigError(f"{cfg}: {key!r} has duplicate ids (first: {dup!r})")
    return vocab


def _read_arrays(file: Path) -> dict[str, np.ndarray]:
    """The arrays of ``file``; a missing, truncated or corrupt file raises ConfigError naming it."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    if not file.is_file():
        raise ConfigError(f"{file}: missing (a model directory holds config.json and arrays.safetensors)")
    try:
        return dict(load_file(str(file)))
    except (SafetensorError, OSError, ValueError) as e:
        raise ConfigError(f"{file}: unreadable (truncated or corrupt?): {e}") from None


def _read_seen(
    arrays: dict[str, np.ndarray], n_users: int, n_items: int, path: Path
) -> dict[int, np.ndarray]:
    """The users' histories (``__seen_*``), checked against the vocabularies: every user row below
    ``n_users`` (the ``users`` list of config.json), every item row below ``n_items`` (``items``)."""
    file = path / "arrays.safetensors"
    parts = []
    for name in ("__seen_users", "__seen_lengths", "__seen_items"):
        a = arrays.pop(name, None)
        if a is None:
            raise ConfigError(f"{file}: no array {name!r}")
        if a.ndim != 1 or a.dtype.kind not in "iu":
            raise ConfigError(
                f"{file}: {name!r} should be 1-D integers, has shape {a.shape}, dtype {a.dtype}"
            )
        parts.append(a)
    users, lengths, items = parts
    if len(users) != len(lengths) or (lengths < 0).any() or int(lengths.sum()) != len(items):
        raise ConfigError(
            f"{file}: the histories do not agree ({len(users)} users, {len(lengths)} lengths, {len(items)} items)"
        )
    if len(users) and (users.min() < 0 or users.max() >= n_users):
        raise ConfigError(
            f"{path / 'config.json'}: 'users' lists {n_users} users but the saved histories reach user row "
            f"{int(users.max())}: the file and the arrays do not belong together"
        )
    if len(items) and (items.min() < 0 or items.max() >= n_items):
        raise ConfigError(
            f"{path / 'config.json'}: 'items' lists {n_items} items but the saved histories reach item row "
            f"{int(items.max())}: the file and the arrays do not belong together"
        )
    bounds = np.concatenate([[0], np.cumsum(lengths)])
    return {int(u): items[bounds[j] : bounds[j + 1]] for j, u in enumerate(users)}


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
