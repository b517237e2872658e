"""Recommenders. Every model implements :class:`tokrec.models.base.Recommender`."""

from tokrec.models.base import Recommender
from tokrec.models.registry import available_models, create_model, load_model

__all__ = ["Recommender", "available_models", "create_model", "load_model"]
