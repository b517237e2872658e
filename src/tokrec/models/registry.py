"""Model names -> classes, imported lazily so that `tokrec --help` stays fast."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from tokrec.errors import ConfigError

# name -> "module:Class". Each model module defines one Recommender subclass with this ``name``.
_MODELS: dict[str, str] = {
    "popularity": "tokrec.models.popularity:Popularity",
    "itemknn": "tokrec.models.itemknn:ItemKNN",
    "ease": "tokrec.models.ease:EASE",
    "als": "tokrec.models.implicit_mf:ALS",
    "bpr": "tokrec.models.implicit_mf:BPR",
    "text-profile": "tokrec.models.text_profile:TextProfile",
    "hybrid-map": "tokrec.models.hybrid:HybridMap",
    "fij-scorer": "tokrec.models.fij_scorer:FijScorer",
    "tokrec": "tokrec.models.recommended:TokrecHybrid",
    "text-sasrec": "tokrec.models.sequential:TextSASRec",
    "gbdt-ranker": "tokrec.models.gbdt_ranker:GBDTRanker",
}

#: the model `tokrec recommend` uses when none is named
DEFAULT_MODEL = "tokrec"


def available_models() -> list[str]:
    return sorted(_MODELS)


def model_class(name: str) -> type[Any]:
    if not isinstance(name, str):
        raise ConfigError(
            f"a model name is a string (one of {', '.join(available_models())}), not {type(name).__name__}"
        )
    try:
        target = _MODELS[name]
    except KeyError:
        raise ConfigError(f"unknown model {name!r}; available: {', '.join(available_models())}") from None
    module, cls = target.split(":")
    return getattr(importlib.import_module(module), cls)


def create_model(name: str, config: dict[str, Any] | None = None) -> Any:
    """A new model ``name`` with ``config`` (a dict of its settings; None: the defaults). An unknown name,
    a config that is not a dict, or an invalid setting raises ConfigError."""
    return model_class(name)(config)


def load_model(path: str | Path) -> Any:
    """Loads a model directory written by ``Recommender.save`` (no pickle)."""
    from tokrec.models.saved import load_model as load

    return load(path)
