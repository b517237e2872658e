"""The model bundle: one directory holding everything ``tokrec serve`` needs, loadable without pickle.

Layout (``tokrec fit ... --output MODEL_DIR`` writes it, atomically: a temporary directory renamed
into place)::

    MODEL_DIR/
      bundle.json                  format "tokrec-bundle/1", model name, encoder spec, item template,
                                   sizes, the catalog's attribute columns, creation time
      model/                       the recommender, as ``Recommender.save`` writes it
                                   (config.json + arrays.safetensors)
      item_vectors.safetensors     "vectors": float32 (n_items, d), row i = item-vocab row i
      items.parquet                the catalog (item_id + attribute columns), item-vocab order
      vocab.json                   {"items": [...], "users": [...]} external ids in row order
      ann.faiss                    optional IVF-Flat index over the vectors (faiss's own format, no pickle)
      state.sqlite                 created by ``tokrec serve``: events and items added online

The encoder spec records what :func:`tokrec.encoders.load_encoder` needs to rebuild the encoder
(``model`` and ``options``) plus its ``fingerprint``, ``dim`` and whatever the encoder reports about
itself (pooling, max length); the server refuses to encode new items with an encoder whose fingerprint
differs, because its vectors would not be comparable with the stored ones.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tokrec.data.dataset import Dataset, Vocab
from tokrec.encoders.spec import EncoderSpec
from tokrec.errors import ConfigError
from tokrec.fileio import atomic_dir

log = logging.getLogger(__name__)

BUNDLE_FORMAT = "tokrec-bundle/1"


@dataclass
class BundleInfo:
    """What a bundle is, without its arrays: what a running service keeps once its engine holds the model
    (so the model it loaded is not kept alive after the engine's copy grew by items added online).

    Attributes:
        path: the bundle directory.
        encoder: the encoder spec.
        template: the item template's JSON spec (``TemplateSpec`` fields).
        meta: the whole of bundle.json.
    """

    path: Path
    encoder: EncoderSpec
    template: dict[str, Any]
    meta: dict[str, Any]

    def make_template(self) -> Any:
        """The item template the vectors were made with (a ``tokrec.text.ItemTemplate``)."""
        from tokrec.text import ItemTemplate, TemplateSpec

        return ItemTemplate.from_spec(TemplateSpec.model_validate(self.template))

    def make_encoder(self) -> Any:
        """Rebuilds the encoder; raises ConfigError if its fingerprint differs from the bundle's."""
        enc = self.encoder.build()
        if str(enc.fingerprint) != self.encoder.fingerprint:
            raise ConfigError(
                f"{self.path}: the encoder rebuilt from the bundle has fingerprint {enc.fingerprint!r}, "
                f"the bundle's vectors were made with {self.encoder.fingerprint!r}"
            )
        return enc


@dataclass
class Bundle(BundleInfo):
    """A loaded model bundle: :class:`BundleInfo` and

    Attributes:
        model: the fitted recommender (its item vocab = the first ``n_items`` catalog rows).
        item_vectors: float32 ``(n_items, d)``, item-vocab order.
        items: the catalog frame, ``item_id`` + attributes, item-vocab order.
    """

    model: Any
    item_vectors: np.ndarray
    items: pd.DataFrame

    def info(self) -> BundleInfo:
        return BundleInfo(self.path, self.encoder, self.template, self.meta)

    @property
    def n_items(self) -> int:
        return len(self.items)


def template_spec(template: Any, items: pd.DataFrame) -> dict[str, Any]:
    """The JSON spec of ``template`` with its field list pinned to the catalog's columns.

    A default template lists "every column"; pinning the list keeps items added later (which may
    carry fewer or more attributes) rendered exactly like the catalog was.
    """
    spec = template.to_spec().model_dump(mode="json")
    if spec.get("format") is None and spec.get("fields") is None:
        id_col = spec.get("id_column", "item_id")
        spec["fields"] = [str(c) for c in items.columns if c != id_col]
    return spec


def pinned_template(template: Any, items: pd.DataFrame) -> tuple[Any, dict[str, Any]]:
    """``(ItemTemplate, its JSON spec)`` for ``template`` (an ``ItemTemplate``, a spec or file, None for the
    default) with its field list pinned to ``items``' columns (:func:`template_spec`): what a bundle
    renders its catalog with, and so what every step of ``tokrec fit`` encodes."""
    from tokrec.text import ItemTemplate, TemplateSpec

    spec = template_spec(ItemTemplate.from_spec(template), items)
    return ItemTemplate.from_spec(TemplateSpec.model_validate(spec)), spec


def save_bundle(
    path: str | Path,
    *,
    model: Any,
    item_vectors: np.ndarray,
    items: pd.DataFrame,
    encoder: EncoderSpec,
    template: dict[str, Any],
    ann_index: Callable[[Path], None] | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Writes a bundle directory atomically (temporary directory, then rename).

    Args:
        path: the bundle directory to create or replace.
        model: a fitted ``Recommender``; its item vocab must equal ``items.item_id`` in order.
        item_vectors: float32 ``(n_items, d)`` aligned with ``items``.
        items: the catalog frame.
        encoder: the encoder spec.
        template: the template's JSON spec (see :func:`template_spec`).
        ann_index: optional callback writing ``ann.faiss`` into the directory it is given.
        extra: more JSON to record in bundle.json under ``"extra"``.

    Raises:
        ConfigError: the pieces do not line up.
    """
    from safetensors.numpy import save_file

    path = Path(path)
    items = items.reset_index(drop=True)
    ids = items["item_id"].astype(str).tolist()
    if model.item_vocab_ is None or model.item_vocab_.to_list() != ids:
        raise ConfigError("the model's item vocabulary differs from the catalog's item order")
    vectors = np.ascontiguousarray(item_vectors, dtype=np.float32)
    if vectors.ndim != 2 or len(vectors) != len(items) or vectors.shape[1] != encoder.dim:
        raise ConfigError(f"item vectors have shape {vectors.shape}, expected ({len(items)}, {encoder.dim})")
    with atomic_dir(path, replaceable=_is_bundle) as tmp:
        model.save(tmp / "model")
        save_file({"vectors": vectors}, str(tmp / "item_vectors.safetensors"))
        _catalog_for_parquet(items).to_parquet(tmp / "items.parquet", index=False)
        vocab = {"items": ids, "users": model.user_vocab_.to_list()}
        (tmp / "vocab.json").write_text(json.dumps(vocab))
        if ann_index is not None:
            ann_index(tmp)
        meta = {
            "format": BUNDLE_FORMAT,
            "model": model.name,
            "n_items": len(items),
            "n_users": len(model.user_vocab_),
            "dim": encoder.dim,
            "encoder": encoder.to_json(),
            "template": template,
            "columns": [str(c) for c in items.columns],
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "extra": extra or {},
        }
        (tmp / "bundle.json").write_text(json.dumps(meta, indent=1))
    return path


def _catalog_for_parquet(items: pd.DataFrame) -> pd.DataFrame:
    """Object columns with mixed types become strings so that Parquet accepts them."""
    out = items.copy()
    out["item_id"] = out["item_id"].astype(str)
    for c in out.columns:
        if out[c].dtype == object:
            out[c] = out[c].map(lambda v: v if v is None or isinstance(v, str) or pd.isna(v) else str(v))
    return out


def check_output_dir(path: str | Path) -> Path:
    """Checks, before any work, that ``path`` can become a model directory: absent, empty, or an earlier
    bundle (which is replaced); never a file or another directory with content.

    Raises:
        ConfigError: naming the path and what is in the way.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"--output {path}: is a file; give a directory for the model (it is created)")
    if path.is_dir() and not (path / "bundle.json").exists() and any(path.iterdir()):
        raise ConfigError(
            f"--output {path}: exists, is not a tokrec model directory and is not empty; refusing to replace it"
        )
    parent = path.parent if path.parent != Path("") else Path(".")
    probe = parent
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise ConfigError(f"--output {path}: cannot write in {probe}")
    return path


def _is_bundle(path: Path) -> bool:
    """Whether an existing ``path`` may be replaced by a bundle: it is one, or it is empty."""
    return (path / "bundle.json").exists() or not any(path.iterdir())


def load_bundle(path: str | Path) -> Bundle:
    """Loads a bundle directory (no pickle anywhere).

    Raises:
        ConfigError: not a bundle, an unknown format, or pieces that do not line up.
    """
    from safetensors.numpy import load_file

    from tokrec.models.registry import load_model

    path = Path(path)
    meta_file = path / "bundle.json"
    if not meta_file.is_file():
        raise ConfigError(
            f"{path}: not a tokrec model directory (no bundle.json); make one with `tokrec fit`"
        )
    try:
        meta = json.loads(meta_file.read_text())
    except json.JSONDecodeError as e:
        raise ConfigError(f"{meta_file}: invalid JSON: {e}") from e
    if meta.get("format") != BUNDLE_FORMAT:
        raise ConfigError(f"{meta_file}: unknown format {meta.get('format')!r} (expected {BUNDLE_FORMAT})")
    model = load_model(path / "model")
    vectors = load_file(str(path / "item_vectors.safetensors"))["vectors"].astype(np.float32, copy=False)
    items = pd.read_parquet(path / "items.parquet")
    items["item_id"] = items["item_id"].astype(str)
    vocab = json.loads((path / "vocab.json").read_text())
    if vocab["items"] != items["item_id"].tolist() or model.item_vocab_.to_list() != vocab["items"]:
        raise ConfigError(f"{path}: items.parquet, vocab.json and the model disagree on the item order")
    if vectors.shape != (len(items), int(meta["dim"])):
        raise ConfigError(
            f"{path}: item vectors have shape {vectors.shape}, expected ({len(items)}, {meta['dim']})"
        )
    return Bundle(
        path=path,
        encoder=EncoderSpec.from_json(meta["encoder"]),
        template=meta["template"],
        meta=meta,
        model=model,
        item_vectors=_shared_vectors(model, np.ascontiguousarray(vectors)),
        items=items,
    )


def _shared_vectors(model: Any, vectors: np.ndarray) -> np.ndarray:
    """The model's own array of the item vectors where it holds the same ones (``tokrec`` keeps the encoder's
    unit-length vectors, equal up to rounding), else ``vectors``: the service then reads one copy instead of
    two (1.5 GB at a million 384-d items). Compared block by block, so the check allocates no third copy."""
    own = getattr(model, "vectors_", None)
    if not isinstance(own, np.ndarray) or own.shape != vectors.shape or own.dtype != np.float32:
        return vectors
    for s in range(0, len(vectors), 65_536):
        if not np.allclose(own[s : s + 65_536], vectors[s : s + 65_536], rtol=0.0, atol=1e-6):
            return vectors
    return own


def fit_bundle(
    dataset: Dataset,
    output: str | Path,
    *,
    model: str | Any | None = None,
    encoder: Any | None = None,
    encoder_model: str | None = None,
    encoder_options: dict[str, Any] | None = None,
    template: Any | None = None,
    cache: Any = "default",
    ann: bool | None = None,
    progress: bool = False,
    fuse: Callable[[np.ndarray], tuple[np.ndarray, Any]] | None = None,
    tuned: Any | None = None,
    vectors: np.ndarray | None = None,
) -> Path:
    """Computes item vectors, fits a model and writes the bundle.

    Args:
        dataset: the training data.
        output: the bundle directory.
        model: a registry name (default ``registry.DEFAULT_MODEL``) or an unfitted ``Recommender``.
        encoder: an encoder to use (default: ``load_encoder(encoder_model, **encoder_options)``).
        encoder_model: how to load the encoder (recorded in the bundle so the server can rebuild it).
        encoder_options: keyword options for ``load_encoder`` (recorded too).
        template: an ``ItemTemplate`` (default template when None).
        cache: the embedding cache (``"default"``, None, or an ``EmbeddingCache``).
        ann: build the ANN index now (default: when the catalog is large, see ``index.ANN_THRESHOLD``).
        progress: show encoding progress.
        fuse: fuses the text vectors with other item-vector sets (``tokrec fit --item-vectors``): returns
            ``(fused vectors, ItemFusion)``; the model is fitted on the fused vectors and the fusion state
            (``fusion.json`` / ``.safetensors``) is written into the bundle, where the service reads it.
        tuned: the :class:`~tokrec.tuning.TuneResult` that chose ``model``'s config on ``dataset`` (with these
            text vectors): the model is fitted through :func:`tokrec.tuning.fit_tuned`, which reuses a blend
            part the tuner trained instead of training it again. Not with ``fuse``: the model is then
            fitted on other vectors than the tuner's, from scratch.
        vectors: the catalog's text vectors (item-vocab order) already computed with ``encoder`` and
            ``template`` (``tokrec fit``'s tuning step computes them first): not computed again (at a million
            items, reading them back from the cache took a minute; without a cache, encoding them again about
            30 minutes).

    Returns:
        The bundle directory.
    """
    from tokrec.features import item_vectors as compute_item_vectors  # type: ignore[attr-defined]
    from tokrec.models import registry
    from tokrec.models.base import check_memory
    from tokrec.serve.index import ANN_THRESHOLD, build_index, write_ann

    check_output_dir(output)  # before anything is encoded or fitted
    rec = (
        registry.create_model(model or registry.DEFAULT_MODEL)
        if model is None or isinstance(model, str)
        else model
    )
    if encoder is None:
        from tokrec.encoders import load_encoder  # type: ignore[attr-defined]

        encoder = load_encoder(encoder_model, **(encoder_options or {}))
    check_memory(rec, dataset, dim=int(getattr(encoder, "dim", 384)))  # loaded, nothing encoded yet
    tmpl, spec = pinned_template(template, dataset.items)
    if vectors is None:
        t0 = time.perf_counter()
        vectors = compute_item_vectors(
            dataset, encoder=encoder, cache=cache, template=tmpl, progress=progress
        )
        log.info("item vectors %s in %.1fs", vectors.shape, time.perf_counter() - t0)
    else:
        dim = getattr(encoder, "dim", None)
        if vectors.shape != (dataset.n_items, vectors.shape[1] if dim is None else int(dim)):
            raise ConfigError(
                f"fit_bundle: vectors of shape {vectors.shape} given for {dataset.n_items} items and an "
                f"encoder of {dim} dimensions"
            )
    fusion = None
    if fuse is not None:
        vectors, fusion = fuse(vectors)
    t0 = time.perf_counter()
    if tuned is not None and fusion is None:
        from tokrec.tuning import fit_tuned

        rec = fit_tuned(tuned, dataset, vectors)
    else:
        rec.fit(dataset, vectors)
    log.info("fitted %s in %.1fs", rec.name, time.perf_counter() - t0)
    build = len(vectors) >= ANN_THRESHOLD if ann is None else ann
    enc_spec = EncoderSpec.of(encoder, model=encoder_model, options=encoder_options)
    extra: dict[str, Any] | None = None
    if fusion is not None:  # the bundle's vectors are the fused ones; the encoder's own size is kept in info
        info = {**enc_spec.info, "text_dim": enc_spec.dim}
        enc_spec = EncoderSpec(enc_spec.model, enc_spec.options, enc_spec.fingerprint, fusion.dim, info)
        extra = {"fusion": {"file": "fusion.json", **fusion.config.model_dump()}}

    def extra_files(directory: Path) -> None:
        if fusion is not None:
            fusion.save(directory)
        if build:
            write_ann(build_index(vectors), directory)

    return save_bundle(
        output,
        model=rec,
        item_vectors=vectors,
        items=dataset.items,
        encoder=enc_spec,
        template=spec,
        ann_index=extra_files if build or fusion is not None else None,
        extra=extra,
    )


def vocab_of(bundle: Bundle) -> Vocab:
    """The bundle's item vocabulary (catalog order)."""
    return Vocab.from_list(bundle.items["item_id"].tolist())
