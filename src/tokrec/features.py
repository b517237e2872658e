"""Language-model features: item vectors Z_I, user vectors Z_U, pair features F_ij = (R_ij, Z_U, Z_I).

Parquet layout (written by :func:`write_vectors`): the id column first (``item_id`` / ``user_id``,
string), then each vector as a ``fixed_size_list<float32>[d]`` column (``vector`` by default), so a
file holds one row per entity and ``pyarrow``/``pandas``/Spark/DuckDB read the vectors without
unpacking wide columns. :func:`read_vectors` turns a column back into a ``(n, d)`` float32 array.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from tokrec.cache import CachedEncoder, EmbeddingCache
from tokrec.data.dataset import Dataset, Vocab
from tokrec.errors import ConfigError, DataError, printable
from tokrec.fileio import atomic_write
from tokrec.text import ItemTemplate, UserTemplate

CacheArg = EmbeddingCache | str | os.PathLike[str] | None


def resolve_encoder(encoder: Any = None, cache: CacheArg = "default") -> Any:
    """The encoder to use, wrapped in a :class:`CachedEncoder` unless ``cache`` is ``None``.

    Args:
        encoder: an Encoder, or ``None`` for :func:`tokrec.encoders.load_encoder` defaults.
        cache: ``"default"`` (``$TOKREC_CACHE_DIR`` or ``~/.cache/tokrec``), a folder/file path, an
            :class:`EmbeddingCache`, or ``None`` for no caching.
    """
    if encoder is None:
        from tokrec.encoders import load_encoder

        encoder = load_encoder()
    if cache is None or isinstance(encoder, CachedEncoder):
        return encoder
    return CachedEncoder(encoder, None if cache == "default" else cache)


def item_texts(items: Dataset | pd.DataFrame, template: ItemTemplate | str | Path | None = None) -> list[str]:
    """T_I: the text of every item, in item-vocab / frame row order."""
    frame = items.items if isinstance(items, Dataset) else items
    return ItemTemplate.from_spec(template).render_many(frame)


def item_vectors(
    dataset_or_items: Dataset | pd.DataFrame,
    *,
    encoder: Any = None,
    cache: CacheArg = "default",
    template: ItemTemplate | str | Path | None = None,
    progress: bool = False,
) -> np.ndarray:
    """Z_I: one vector per item.

    Args:
        dataset_or_items: a Dataset (its catalog, in item-vocab order) or an items frame (row order).
        encoder: an Encoder (default: the bundled MiniLM).
        cache: see :func:`resolve_encoder`.
        template: an :class:`ItemTemplate`, a format string, or a .json/.txt template file.
        progress: show a progress bar on stderr.

    Returns:
        float32 ``(n_items, d)``, row ``i`` for item row ``i``.
    """
    enc = resolve_encoder(encoder, cache)
    return np.asarray(enc.encode(item_texts(dataset_or_items, template), progress=progress), dtype=np.float32)


def item_vectors_for(
    dataset: Dataset,
    *,
    model: str | None = None,
    cache: CacheArg = "default",
    template: ItemTemplate | str | Path | None = None,
    progress: bool = False,
) -> np.ndarray:
    """:func:`item_vectors` with the encoder named by ``model`` (a model id / folder; ``None``: the
    bundled all-MiniLM-L6-v2) and ``template`` (default: every column listed): what the CLI and the
    benchmarks fit on."""
    encoder = None
    if model is not None:
        from tokrec.encoders import load_encoder

        encoder = load_encoder(model)
    return item_vectors(dataset, encoder=encoder, cache=cache, template=template, progress=progress)


def user_texts(
    dataset: Dataset, *, encoder: Any = None, template: UserTemplate | None = None, budget: int | None = None
) -> list[str]:
    """T_U: each user's history as text within the token budget, in user-vocab order.

    Args:
        dataset: interactions + catalog.
        encoder: its tokenizer measures the budget (default budget: its ``max_length``).
        template: a :class:`UserTemplate` (default: ``UserTemplate()``).
        budget: overrides the template's budget.
    """
    tpl = template or UserTemplate()
    if budget is None and template is None and encoder is not None:
        budget = int(getattr(encoder, "max_length", 0) or 0) or None
    if budget is not None:
        tpl = UserTemplate(tpl.item_template, budget=budget, event_labels=tpl.event_labels, prefix=tpl.prefix)
    counter = getattr(encoder, "count_tokens", None)
    return tpl.render_many(dataset, count_tokens=counter)


def user_text_vectors(
    dataset: Dataset,
    *,
    encoder: Any = None,
    cache: CacheArg = "default",
    template: UserTemplate | None = None,
    budget: int | None = None,
    progress: bool = False,
) -> np.ndarray:
    """Z_U from text: the encoded history of each user (most recent events within the budget).

    Returns:
        float32 ``(n_users, d)`` in user-vocab order; all-zero rows for users without events.
    """
    enc = resolve_encoder(encoder, cache)
    texts = user_texts(dataset, encoder=enc, template=template, budget=budget)
    has = np.array([bool(t) for t in texts])
    out = np.zeros((len(texts), enc.dim), dtype=np.float32)
    if has.any():
        out[has] = enc.encode([t for t in texts if t], progress=progress)
    return out


def recency_weights(n: int, half_life: float | None) -> np.ndarray:
    """Weights ``0.5 ** (age / half_life)`` of ``n`` events, oldest first; age 0 = the latest event.

    Args:
        n: number of events.
        half_life: age (in events) at which an event counts half; ``None`` weighs every event 1.

    Returns:
        ``(n,)`` float64.
    """
    if half_life is None or not math.isfinite(half_life):
        return np.ones(n)
    age = np.arange(n - 1, -1, -1, dtype=np.float64)
    return np.power(0.5, age / float(half_life))


def history_weights(seq: np.ndarray, half_life: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One history's row of :func:`user_rows`, dense: its distinct items (sorted) and their weights, a repeated
    item once with the weight of its latest event."""
    w = recency_weights(len(seq), half_life)
    items, latest = np.unique(np.asarray(seq, dtype=np.int64)[::-1], return_index=True)
    return items, w[::-1][latest]


def user_rows(seqs: Sequence[np.ndarray], n_items: int, half_life: float | None = None) -> sp.csr_matrix:
    """Recency-weighted user rows: ``(len(seqs), n_items)`` CSR; a repeated item keeps its largest weight
    (that of its latest event)."""
    rows, cols, vals = [], [], []
    for r, s in enumerate(seqs):
        if len(s) == 0:
            continue
        rows.append(np.full(len(s), r, dtype=np.int64))
        cols.append(np.asarray(s, dtype=np.int64))
        vals.append(recency_weights(len(s), half_life))
    if not rows:
        return sp.csr_matrix((len(seqs), n_items))
    m = sp.coo_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(len(seqs), n_items)
    )
    # max over duplicates: sort so that the largest weight comes last, then keep the last per cell
    r_, c_, v_ = m.row, m.col, m.data
    order = np.lexsort((v_, c_, r_))
    r_, c_, v_ = r_[order], c_[order], v_[order]
    last = np.ones(len(r_), dtype=bool)
    last[:-1] = (r_[1:] != r_[:-1]) | (c_[1:] != c_[:-1])
    return sp.csr_matrix((v_[last], (r_[last], c_[last])), shape=(len(seqs), n_items))


def user_profiles(
    histories: Sequence[np.ndarray],
    item_vecs: np.ndarray,
    *,
    n_last: int | None = None,
    half_life: float | None = None,
) -> np.ndarray:
    """Z_U from items, THE user profile: every model, the features command and the service use it.

    The profile of a history (item rows, oldest first) is the unit-length weighted sum of the item
    vectors of its last ``n_last`` events, an event ``a`` steps before the latest weighing ``0.5 ** (a /
    half_life)``; an item that occurs more than once counts once, with the weight of its latest event.

    Args:
        histories: item rows per user, oldest first.
        item_vecs: ``(n_items, d)``, item-vocab order (models pass unit-length rows).
        n_last: only the most recent events count (None: all).
        half_life: in events (None: every event weighs 1).

    Returns:
        float32 ``(len(histories), d)``; all-zero rows for empty histories.

    Raises:
        ConfigError: ``n_last`` < 1, ``half_life`` NaN or <= 0, ``item_vecs`` not 2-D, a history row outside
            ``item_vecs``, or NaN / inf in the vectors the histories use.
    """
    if n_last is not None and (
        isinstance(n_last, bool) or not isinstance(n_last, int | np.integer) or n_last < 1
    ):
        raise ConfigError(
            f"n_last must be a whole number >= 1 (or None: every event), got {printable(repr(n_last))}"
        )
    _check_half_life(half_life)
    if not isinstance(item_vecs, np.ndarray):
        item_vecs = np.asarray(item_vecs)
    if item_vecs.ndim != 2:
        raise ConfigError(f"item_vecs must be 2-D (n_items, d), got shape {item_vecs.shape}")
    recent = [np.asarray(h if n_last is None else h[-n_last:], dtype=np.int64) for h in histories]
    if len(recent) == 1:
        # one query (the service's case): the history's row without building sparse matrices; the same
        # products, summed in the same order (item by item, sorted), as the sparse product below
        items, w = history_weights(recent[0], half_life)
        if len(items) and (items[0] < 0 or items[-1] >= len(item_vecs)):  # sorted: the ends are the extremes
            _bad_rows(items, len(item_vecs))
        x = np.add.reduce(w[:, None] * np.asarray(item_vecs[items], dtype=np.float64), axis=0, keepdims=True)
    else:
        flat = np.concatenate(recent) if recent else np.empty(0, dtype=np.int64)
        if len(flat) and (flat.min() < 0 or flat.max() >= len(item_vecs)):
            _bad_rows(flat, len(item_vecs))
        rows = user_rows(recent, len(item_vecs), half_life)
        # only the items in the histories, in float64 (the same sums, in the same order, as over the whole
        # catalog: a query never copies the whole item matrix)
        cols = np.unique(rows.indices)
        x = np.asarray(rows[:, cols] @ np.asarray(item_vecs[cols], dtype=np.float64))
    if not np.isfinite(x).all():  # the sums are finite exactly when every vector they read is
        raise ConfigError("item_vecs: the vectors of the histories' items contain NaN or inf")
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.where(n > 0, n, 1.0)).astype(np.float32)


def _check_half_life(half_life: float | None) -> None:
    """ConfigError unless ``half_life`` is None or a number > 0 (inf: every event weighs 1, like None)."""
    if half_life is None:
        return
    if isinstance(half_life, bool) or not isinstance(half_life, int | float | np.integer | np.floating):
        raise ConfigError(f"half_life must be a number > 0 or None, got {printable(repr(half_life))}")
    if not half_life > 0:  # also refuses NaN
        raise ConfigError(f"half_life must be > 0 (or None: every event weighs 1), got {half_life}")


def _bad_rows(rows: np.ndarray, n: int) -> None:
    bad = rows[(rows < 0) | (rows >= n)]
    raise ConfigError(
        f"history item row {int(bad[0])} is outside item_vecs (rows 0..{n - 1}; {len(bad)} such rows)"
    )


def user_aggregate_vectors(
    dataset: Dataset, item_vecs: np.ndarray, *, half_life: float | None = None
) -> np.ndarray:
    """Z_U from items for every user of ``dataset``: :func:`user_profiles` of their histories.

    Args:
        dataset: interactions (their time order decides the weights).
        item_vecs: ``(n_items, d)`` in item-vocab order.
        half_life: in events: the event ``a`` steps before the user's latest weighs ``0.5 ** (a /
            half_life)``; ``None`` weighs all events equally.

    Returns:
        float32 ``(n_users, d)`` in user-vocab order; all-zero rows for users without events.
    """
    _check_half_life(half_life)
    item_vecs = _matrix(item_vecs, "item_vecs")
    if item_vecs.shape[0] != dataset.n_items:
        raise DataError(f"item_vecs has {item_vecs.shape[0]} rows for {dataset.n_items} items")
    if not _all_finite(item_vecs):
        raise ConfigError("item_vecs contain NaN or inf")
    return np.ascontiguousarray(user_profiles(dataset.sequences(), item_vecs, half_life=half_life))


@dataclass
class PairFeatures:
    """F_ij for ``n`` (user, item) pairs.

    Attributes:
        user_id: ``n`` external user ids.
        item_id: ``n`` external item ids.
        score: R_ij, the cosine of Z_U and Z_I, ``(n,)`` float32.
        user_vectors: Z_U rows, ``(n, d_u)``.
        item_vectors: Z_I rows, ``(n, d_i)``.
    """

    user_id: list[str]
    item_id: list[str]
    score: np.ndarray
    user_vectors: np.ndarray
    item_vectors: np.ndarray

    def matrix(self) -> np.ndarray:
        """``[R_ij, Z_U, Z_I]`` as one float32 array ``(n, 1 + d_u + d_i)`` for a downstream model."""
        return np.hstack([self.score[:, None], self.user_vectors, self.item_vectors]).astype(np.float32)


def _matrix(z: Any, name: str) -> np.ndarray:
    """``z`` as a 2-D numeric array (no copy for an array), else ConfigError naming ``name``."""
    try:
        arr = z if isinstance(z, np.ndarray) else np.asarray(z)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{name} is not an array of numbers: {printable(e)}") from None
    if arr.ndim != 2:
        raise ConfigError(f"{name} must be 2-D (rows, d), got shape {arr.shape}")
    if arr.dtype.kind not in "fiu":
        raise ConfigError(f"{name} must hold numbers, got dtype {arr.dtype}")
    return arr


def _all_finite(z: np.ndarray, block: int = 1 << 16) -> bool:
    """Whether every entry is finite, in row blocks (no full-size temporary mask)."""
    return all(bool(np.isfinite(z[i : i + block]).all()) for i in range(0, len(z), block))


def _rows(
    ids: Sequence[object], index: Vocab | Sequence[str] | None, what: str, z: np.ndarray, name: str
) -> np.ndarray:
    """Rows of ``z`` (``name``: Z_U or Z_I) for ``ids``: through ``index``, which must have one entry per row
    of ``z``, else row numbers in ``0..len(z)-1``."""
    if isinstance(ids, str | bytes):
        raise ConfigError(f"{what}_ids must be a list of ids, not a string ({printable(repr(ids))})")
    if index is None:
        try:
            raw = np.asarray(ids)
            rows = raw.astype(np.int64)
        except (TypeError, ValueError):
            raise ConfigError(
                f"{what}_ids must be row numbers of {name} when no {what}_index is given"
            ) from None
        if raw.dtype.kind == "f" and not (rows == raw).all():
            raise ConfigError(f"{what}_ids must be whole row numbers of {name} when no {what}_index is given")
        bad = (rows < 0) | (rows >= len(z))
        if bad.any():
            raise ConfigError(
                f"{what} row {int(rows[bad][0])} is outside {name} (rows 0..{len(z) - 1}; {int(bad.sum())} such rows)"
            )
        return rows
    vocab = index if isinstance(index, Vocab) else Vocab(index)
    if not isinstance(index, Vocab) and len(vocab) != len(index):
        raise ConfigError(
            f"{what}_index has duplicate ids: its entries must name the rows of {name} one to one"
        )
    if len(vocab) != len(z):
        raise ConfigError(
            f"{name} has {len(z)} rows but {what}_index has {len(vocab)} {what}s: one row per {what} of the index"
            + (" (are Z_U and Z_I swapped?)" if len(z) else "")
        )
    rows = vocab.encode(ids, missing="mask")
    if (rows < 0).any():
        bad_ids = [ids[i] for i in np.flatnonzero(rows < 0)[:3]]
        raise DataError(f"{int((rows < 0).sum())} unknown {what} ids (first: {bad_ids})", column=f"{what}_id")
    return rows


def pair_features(
    user_ids: Sequence[object],
    item_ids: Sequence[object],
    Z_U: np.ndarray,
    Z_I: np.ndarray,
    *,
    user_index: Vocab | Sequence[str] | None = None,
    item_index: Vocab | Sequence[str] | None = None,
) -> PairFeatures:
    """F_ij = (R_ij, Z_U, Z_I) for pairs.

    Args:
        user_ids, item_ids: ``n`` ids each (external ids when an index is given, else row numbers).
        Z_U: ``(n_users, d)``; Z_I: ``(n_items, d)`` (same d for the cosine).
        user_index, item_index: the vocabularies (or id lists) that give the rows of Z_U / Z_I.

    Returns:
        A :class:`PairFeatures`; R_ij is 0 where either vector is zero.

    Raises:
        ConfigError: Z_U / Z_I not 2-D numbers, an index without one entry per row of its matrix (or with
            duplicate ids), ids given as one string, or row numbers outside the matrix.
        DataError: unknown ids, id lists of different lengths, or different vector dims.
    """
    if len(user_ids) != len(item_ids):
        raise DataError(f"{len(user_ids)} user ids but {len(item_ids)} item ids")
    z_u, z_i = _matrix(Z_U, "Z_U"), _matrix(Z_I, "Z_I")
    u = _rows(user_ids, user_index, "user", z_u, "Z_U")
    i = _rows(item_ids, item_index, "item", z_i, "Z_I")
    zu = np.asarray(z_u[u], dtype=np.float32)
    zi = np.asarray(z_i[i], dtype=np.float32)
    if zu.shape[1] != zi.shape[1]:
        raise DataError(f"Z_U has dim {zu.shape[1]} but Z_I has dim {zi.shape[1]}: no cosine")
    nu = np.linalg.norm(zu, axis=1)
    ni = np.linalg.norm(zi, axis=1)
    denom = nu * ni
    score = np.where(denom > 0, (zu * zi).sum(1) / np.maximum(denom, 1e-12), 0.0).astype(np.float32)
    return PairFeatures([str(x) for x in user_ids], [str(x) for x in item_ids], score, zu, zi)


# ---- Parquet -------------------------------------------------------------------------------------
def vector_array(vectors: np.ndarray) -> Any:
    """A ``fixed_size_list<float32>[d]`` pyarrow array from ``(n, d)``."""
    import pyarrow as pa

    v = np.ascontiguousarray(vectors, dtype=np.float32)
    return pa.FixedSizeListArray.from_arrays(pa.array(v.reshape(-1)), int(v.shape[1]))


def write_vectors(
    path: str | os.PathLike[str],
    ids: Sequence[object],
    vectors: np.ndarray | Mapping[str, np.ndarray],
    *,
    id_column: str = "item_id",
    extra: Mapping[str, Sequence[object] | np.ndarray] | None = None,
) -> Path:
    """Writes ids + vectors to Parquet atomically (temp file in the same folder, then rename).

    Args:
        path: the output file.
        ids: ``n`` ids (written as strings, first column).
        vectors: ``(n, d)`` (column ``vector``) or a mapping column name -> ``(n, d_k)``.
        id_column: the id column's name.
        extra: more plain columns, each of length ``n``.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    cols: dict[str, Any] = {id_column: pa.array([str(x) for x in ids], type=pa.string())}
    named = {"vector": vectors} if isinstance(vectors, np.ndarray) else dict(vectors)
    for name, arr in (extra or {}).items():
        cols[name] = pa.array(arr) if isinstance(arr, np.ndarray) else pa.array(list(arr))
    for name, mat in named.items():
        if len(mat) != len(ids):
            raise DataError(f"column {name!r} has {len(mat)} rows for {len(ids)} ids")
        cols[name] = vector_array(mat)
    table = pa.table(cols)
    return atomic_write(path, lambda tmp: pq.write_table(table, tmp))


def read_vectors(path: str | os.PathLike[str], *, column: str = "vector") -> tuple[list[str], np.ndarray]:
    """Reads a file written by :func:`write_vectors`.

    Returns:
        (ids from the first column, float32 ``(n, d)`` from ``column``).
    """
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    if column not in table.column_names:
        raise DataError(f"no column {column!r} (columns: {table.column_names})", file=str(path))
    ids = [str(x) for x in table.column(0).to_pylist()]
    col = table.column(column).combine_chunks()
    d = col.type.list_size
    flat = col.values.to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    return ids, np.ascontiguousarray(flat.reshape(len(ids), d))
