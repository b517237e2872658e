"""Item LM vectors for text models: ``tokrec.features.item_vectors`` where it exists, else a direct
encode with the same default text and encoder (no cache)."""

from __future__ import annotations

from typing import Any

import numpy as np

from tokrec.data.dataset import Dataset


def _default_texts(dataset: Dataset) -> list[str]:
    try:
        from tokrec.text import ItemTemplate

        return list(ItemTemplate().render_many(dataset.items))
    except ImportError:  # pragma: no cover - the text module is part of the package
        cols = dataset.item_text_columns()
        return [
            " ".join(f"{c}: {row[c]}." for c in cols if str(row[c]) not in ("", "nan"))
            for _, row in dataset.items.iterrows()
        ]


def item_vectors_for(
    dataset: Dataset, *, model: str | None = None, cache: Any = "default", progress: bool = False
) -> np.ndarray:
    """``(n_items, d)`` float32 item vectors aligned with ``dataset.item_vocab``.

    Args:
        dataset: the catalog to encode (``dataset.items``).
        model: an encoder model id / folder (``None``: the bundled all-MiniLM-L6-v2).
        cache: ``"default"`` (``$TOKREC_CACHE_DIR`` or ``~/.cache/tokrec``), a directory, or ``None``.
        progress: show a progress bar.
    """
    try:
        from tokrec.features import item_vectors
    except ImportError:
        pass
    else:
        encoder = None
        if model is not None:
            from tokrec.encoders import load_encoder

            encoder = load_encoder(model)
        return np.asarray(
            item_vectors(dataset, encoder=encoder, cache=cache, progress=progress), dtype=np.float32
        )
    from tokrec.encoders import load_encoder

    enc = load_encoder(model)
    return np.asarray(enc.encode(_default_texts(dataset), progress=progress), dtype=np.float32)
