"""Multimodal item vectors: the text vectors ``Z_I`` fused with any number of other item-vector sets
(image embeddings, audio embeddings, ...), each a Parquet file of ``item_id`` + ``vector``.

The fusion is a weighted concatenation of per-modality unit vectors::

    fused_i = [ w_0 * t_i / |t_i| ,  w_1 * v1_i / |v1_i| ,  ... ]

so that the inner product of two fused vectors is ``w_0² cos(text) + w_1² cos(v1) + ...``: every model
that compares item vectors (text-profile, tokrec, the service's vector score) then weighs each modality
by its ``w²``. The weights are given (``--item-vectors PATH:WEIGHT``) or learnt from the interactions: a
weight left out is chosen on a validation split cut from the training events
(:func:`tokrec.evaluation.splits.validation_split`, leave-last-out), by fitting the model with each
weight of :data:`WEIGHT_GRID` (the text's weight stays 1) and keeping the best validation NDCG@10; sets
are searched one after another. The test events are never looked at.

Items missing from a vector set (no row, or a row for an id not in the catalog, which is ignored and
counted) get, by ``missing``:

* ``"map"`` (default): the set's vector predicted from the item's text vector by a ridge regression
  fitted on the items that have both (``[t/|t|, 1] -> v/|v|``, L2-normalised after), so a new item
  without an image still lands near the images of similar texts; with fewer than two items having both,
  zeros;
* ``"zeros"``: a zero block (the item is compared on the other modalities only).

New items (the service's ``add_items``) are fused by :meth:`ItemFusion.fuse` with the same weights and
maps; :meth:`ItemFusion.save` writes ``fusion.json`` (format ``tokrec-fusion/1``: set names, dims,
weights, text weight, missing rule, ridge, where the weights came from) and ``fusion.safetensors`` (one
``map_<k>`` array ``(d_text + 1, d_k)`` per set using ``"map"``) into a model directory, and
:meth:`ItemFusion.load` reads them back without pickle.

Why hand-written: the fusion is a dozen lines of numpy (normalise, scale, concatenate, one ridge solve);
what tokrec adds is the validation-chosen weight and the same treatment online.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, ValidationError

from tokrec.errors import ConfigError, DataError, require_columns

#: the weights tried for a modality whose weight is learnt (the text's weight is 1)
WEIGHT_GRID = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0)
FUSION_FORMAT = "tokrec-fusion/1"
FUSION_JSON = "fusion.json"
FUSION_ARRAYS = "fusion.safetensors"

__all__ = [
    "FusionConfig",
    "ItemFusion",
    "VectorSetSpec",
    "align_vectors",
    "fuse_catalog",
    "learn_weights",
    "parse_item_vectors_arg",
    "read_vector_set",
]


@dataclass(frozen=True)
class VectorSetSpec:
    """One ``--item-vectors PATH[:WEIGHT]``: the Parquet file and its weight (None = learn it)."""

    path: str
    weight: float | None = None

    @property
    def name(self) -> str:
        return Path(self.path).stem


def parse_item_vectors_arg(text: str) -> VectorSetSpec:
    """``PATH`` or ``PATH:WEIGHT`` (a trailing ``:number``; a path may itself contain ``:``)."""
    head, sep, tail = text.rpartition(":")
    if sep and head:
        try:
            weight = float(tail)
        except ValueError:
            return VectorSetSpec(text)
        if not np.isfinite(weight) or weight < 0:
            raise ConfigError(f"--item-vectors {text!r}: the weight must be a finite number >= 0")
        return VectorSetSpec(head, weight)
    return VectorSetSpec(text)


def read_vector_set(path: str | os.PathLike[str]) -> tuple[list[str], np.ndarray]:
    """Reads a Parquet of ``item_id`` + ``vector`` (a list or fixed-size list of floats).

    Returns the ids (str) and a float32 ``(n, d)`` matrix. Errors name the file, the row (1-based record)
    and the column: a missing column, an empty or repeated id, a vector of another length than the first,
    a missing or non-finite value.
    """
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    file = str(path)
    if not Path(file).is_file():
        raise DataError("file not found", file=file)
    try:
        table = pq.read_table(file)
    except Exception as e:  # pyarrow raises many types for a corrupt file
        raise DataError(f"cannot read Parquet: {e}", file=file) from e
    why = f"missing column; an item-vector file needs item_id and vector, found {table.column_names}"
    require_columns(table.column_names, ("item_id", "vector"), why, file=file)
    if table.num_rows == 0:
        raise DataError("no rows", file=file)
    ids_col = table.column("item_id").to_pandas()
    ids = ids_col.map(lambda v: None if v is None else str(v).strip())
    empty = ids.isna().to_numpy() | ids.eq("").to_numpy()
    if empty.any():
        raise DataError("missing item_id", file=file, row=int(np.flatnonzero(empty)[0]) + 1, column="item_id")
    dup = ids.duplicated().to_numpy()
    if dup.any():
        i = int(np.flatnonzero(dup)[0])
        raise DataError(f"duplicate item_id {ids.iloc[i]!r}", file=file, row=i + 1, column="item_id")
    col = table.column("vector").combine_chunks()
    if not (
        pa.types.is_list(col.type)
        or pa.types.is_fixed_size_list(col.type)
        or pa.types.is_large_list(col.type)
    ):
        raise DataError(f"vector must be a list of floats, not {col.type}", file=file, row=1, column="vector")
    lengths = pc.list_value_length(col).to_numpy(zero_copy_only=False)
    lengths = np.where(pd.isna(lengths), -1, lengths).astype(np.int64)
    d = int(lengths[0])
    bad = lengths != d
    if bad.any() or d < 1:
        i = int(np.flatnonzero(bad)[0]) if bad.any() else 0
        raise DataError(
            f"vector has {max(int(lengths[i]), 0)} values, the first row has {d}",
            file=file,
            row=i + 1,
            column="vector",
        )
    flat = col.flatten().to_numpy(zero_copy_only=False).astype(np.float32)
    vectors = flat.reshape(len(ids), d)
    finite = np.isfinite(vectors).all(axis=1)
    if not finite.all():
        i = int(np.flatnonzero(~finite)[0])
        raise DataError("vector has a missing or non-finite value", file=file, row=i + 1, column="vector")
    return ids.tolist(), vectors


def align_vectors(
    item_ids: Sequence[str], ids: Sequence[str], vectors: np.ndarray
) -> tuple[np.ndarray, np.ndarray, int]:
    """Rows of ``vectors`` in ``item_ids`` order: (``(n, d)`` with zeros where absent, present mask, the
    number of ``ids`` not in ``item_ids``, which are ignored)."""
    rows = pd.Index(list(ids)).get_indexer(list(item_ids))
    present = rows >= 0
    out = np.zeros((len(item_ids), vectors.shape[1]), dtype=np.float32)
    out[present] = vectors[rows[present]]
    unknown = int((pd.Index(list(item_ids)).get_indexer(list(ids)) < 0).sum())
    return out, present, unknown


def _unit(x: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.where(n > 0, n, 1.0)).astype(np.float32)


class FusionConfig(BaseModel):
    """What a fitted fusion needs to fuse an item (saved as ``fusion.json``)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    names: list[str]
    dims: list[int]
    weights: list[float]
    text_dim: int
    text_weight: float = 1.0
    missing: Literal["map", "zeros"] = "map"
    ridge: float = 1.0
    learnt: list[bool] = []


class ItemFusion:
    """Per-modality L2 normalisation + weights + concatenation, and the maps for missing vectors."""

    def __init__(self, config: FusionConfig | dict[str, Any]) -> None:
        try:
            self.config = FusionConfig.model_validate(
                config.model_dump() if isinstance(config, FusionConfig) else config
            )
        except ValidationError as e:
            raise ConfigError(f"invalid fusion config: {e}") from e
        c = self.config
        if not (len(c.names) == len(c.dims) == len(c.weights)):
            raise ConfigError("fusion config: names, dims and weights differ in length")
        self.maps_: list[np.ndarray | None] = [None] * len(c.names)

    @property
    def dim(self) -> int:
        return self.config.text_dim + sum(self.config.dims)

    def fit(
        self, text: np.ndarray, extras: Sequence[np.ndarray], present: Sequence[np.ndarray]
    ) -> ItemFusion:
        """Learns the text -> modality maps (``missing="map"``) on the items that have both."""
        t1 = np.hstack([_unit(text), np.ones((len(text), 1), dtype=np.float32)]).astype(np.float64)
        for k, (v, p) in enumerate(zip(extras, present, strict=True)):
            if self.config.missing != "map" or int(p.sum()) < 2:
                self.maps_[k] = None
                continue
            a, b = t1[p], _unit(v[p]).astype(np.float64)
            gram = a.T @ a + self.config.ridge * np.eye(a.shape[1])
            self.maps_[k] = np.linalg.solve(gram, a.T @ b).astype(np.float32)
        return self

    def fuse(
        self,
        text: np.ndarray,
        extras: Sequence[np.ndarray | None],
        present: Sequence[np.ndarray | None] | None = None,
    ) -> np.ndarray:
        """Fused vectors ``(n, dim)`` for items with text vectors ``text`` ``(n, d_text)``.

        ``extras[k]`` is the k-th set's vectors for these items ``(n, d_k)`` or None when none of them has
        one; ``present[k]`` marks the rows that have one (default: every row of a given block). Used at fit
        time and, with the same state, for new items.
        """
        c = self.config
        if text.ndim != 2 or text.shape[1] != c.text_dim:
            raise ConfigError(f"text vectors have shape {text.shape}, the fusion expects (n, {c.text_dim})")
        if len(extras) != len(c.names):
            raise ConfigError(f"{len(extras)} vector sets given, the fusion has {len(c.names)}")
        n = len(text)
        t = _unit(text)
        blocks: list[np.ndarray] = [c.text_weight * t]
        t1 = np.hstack([t, np.ones((n, 1), dtype=np.float32)])
        for k, v in enumerate(extras):
            d = c.dims[k]
            p = np.zeros(n, dtype=bool) if v is None else np.ones(n, dtype=bool)
            if present is not None and present[k] is not None:
                p = np.asarray(present[k], dtype=bool)
            block = np.zeros((n, d), dtype=np.float32)
            if v is not None:
                if v.shape != (n, d):
                    raise ConfigError(f"vector set {c.names[k]!r}: shape {v.shape}, expected ({n}, {d})")
                block[p] = _unit(v[p])
            m = self.maps_[k]
            if m is not None and (~p).any():
                block[~p] = _unit(t1[~p] @ m)
            blocks.append(c.weights[k] * block)
        return np.hstack(blocks).astype(np.float32)

    def save(self, directory: str | os.PathLike[str]) -> list[Path]:
        """Writes ``fusion.json`` and ``fusion.safetensors`` into ``directory`` (each atomically)."""
        from safetensors.numpy import save_file

        from tokrec.fileio import atomic_write

        d = Path(directory)
        meta = {"format": FUSION_FORMAT, **self.config.model_dump()}
        arrays = {f"map_{k}": m for k, m in enumerate(self.maps_) if m is not None}
        if not arrays:  # safetensors needs one tensor
            arrays = {"none": np.zeros(1, dtype=np.float32)}
        return [
            atomic_write(d / FUSION_JSON, lambda p: p.write_text(json.dumps(meta, indent=1))),
            atomic_write(d / FUSION_ARRAYS, lambda p: save_file(arrays, str(p))),
        ]

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> ItemFusion:
        from safetensors.numpy import load_file

        d = Path(directory)
        if not (d / FUSION_JSON).is_file():
            raise ConfigError(f"{d}: no {FUSION_JSON}")
        meta = json.loads((d / FUSION_JSON).read_text())
        if meta.pop("format", None) != FUSION_FORMAT:
            raise ConfigError(f"{d / FUSION_JSON}: not {FUSION_FORMAT}")
        fusion = cls(meta)
        arrays = load_file(str(d / FUSION_ARRAYS))
        fusion.maps_ = [arrays.get(f"map_{k}") for k in range(len(fusion.config.names))]
        return fusion


def learn_weights(
    dataset: Any,
    text: np.ndarray,
    extras: Sequence[np.ndarray],
    present: Sequence[np.ndarray],
    weights: Sequence[float | None],
    *,
    model: str = "text-profile",
    config: dict[str, Any] | None = None,
    missing: Literal["map", "zeros"] = "map",
    grid: Sequence[float] = WEIGHT_GRID,
    k: int = 10,
) -> tuple[list[float], list[dict[str, Any]]]:
    """Chooses the weights left as None on a validation split cut from ``dataset`` (leave-last-out).

    Returns the weights and one record per fit tried (``set``, ``weight``, ``ndcg@k``).
    """
    from tokrec.evaluation.metrics import score_recommendations
    from tokrec.evaluation.splits import validation_split
    from tokrec.models.registry import create_model

    split = validation_split(dataset)
    current = [0.0 if w is None else float(w) for w in weights]
    names = [f"set{i}" for i in range(len(extras))]
    trials: list[dict[str, Any]] = []
    for i, w in enumerate(weights):
        if w is not None:
            continue
        best = (-1.0, 0.0)
        for cand in grid:
            trial = list(current)
            trial[i] = float(cand)
            fusion = ItemFusion(
                FusionConfig(
                    names=names,
                    dims=[v.shape[1] for v in extras],
                    weights=trial,
                    text_dim=text.shape[1],
                    missing=missing,
                )
            ).fit(text, extras, present)
            vectors = fusion.fuse(text, list(extras), list(present))
            rec = create_model(model, dict(config or {})).fit(split.train, vectors)
            recs = rec.recommend_batch(split.test_users, k=k)
            ndcg = float(
                score_recommendations(recs, split.test.interactions, split.train.interactions, k=k)[
                    f"ndcg@{k}"
                ]
            )
            trials.append({"set": i, "weight": float(cand), f"ndcg@{k}": ndcg})
            if ndcg > best[0] + 1e-12:
                best = (ndcg, float(cand))
        current[i] = best[1]
    return current, trials


def fuse_catalog(
    item_ids: Sequence[str],
    text: np.ndarray,
    specs: Sequence[VectorSetSpec],
    *,
    dataset: Any = None,
    model: str = "text-profile",
    config: dict[str, Any] | None = None,
    missing: Literal["map", "zeros"] = "map",
) -> tuple[np.ndarray, ItemFusion, dict[str, Any]]:
    """Reads the vector sets, learns the weights left out (needs ``dataset``), fits and applies the fusion.

    Returns the fused catalog vectors, the fusion (save it next to the model) and a summary for people:
    per set its name, dim, items present, ids ignored, weight and whether it was learnt.
    """
    if not specs:
        raise ConfigError("no item-vector sets given")
    extras: list[np.ndarray] = []
    present: list[np.ndarray] = []
    summary: dict[str, Any] = {"sets": []}
    for s in specs:
        ids, vectors = read_vector_set(s.path)
        aligned, p, unknown = align_vectors(item_ids, ids, vectors)
        extras.append(aligned)
        present.append(p)
        summary["sets"].append(
            {
                "name": s.name,
                "path": s.path,
                "dim": int(vectors.shape[1]),
                "present": int(p.sum()),
                "ignored_ids": unknown,
            }
        )
    weights: list[float | None] = [s.weight for s in specs]
    if any(w is None for w in weights):
        if dataset is None:
            raise ConfigError(
                "a weight can only be learnt where there are interactions; give --item-vectors PATH:WEIGHT here"
            )
        chosen, trials = learn_weights(
            dataset, text, extras, present, weights, model=model, config=config, missing=missing
        )
        summary["validation"] = trials
    else:
        chosen = [float(w) for w in weights if w is not None]
    for rec, w, s in zip(summary["sets"], chosen, specs, strict=True):
        rec["weight"], rec["learnt"] = w, s.weight is None
    fusion = ItemFusion(
        FusionConfig(
            names=[s.name for s in specs],
            dims=[v.shape[1] for v in extras],
            weights=chosen,
            text_dim=int(text.shape[1]),
            missing=missing,
            learnt=[s.weight is None for s in specs],
        )
    ).fit(text, extras, present)
    return fusion.fuse(text, extras, present), fusion, summary
