"""Evaluation: train/test splits, top-K metrics, multi-model protocols and reports."""

from tokrec.evaluation.metrics import clean_recommendations, popularity_deciles, score_recommendations
from tokrec.evaluation.splits import (
    PROTOCOLS,
    Split,
    cold_item_split,
    cold_user_split,
    given_split,
    leave_last_out,
    make_split,
    temporal_split,
    validation_split,
)

__all__ = [
    "PROTOCOLS",
    "Split",
    "clean_recommendations",
    "cold_item_split",
    "cold_user_split",
    "given_split",
    "leave_last_out",
    "make_split",
    "popularity_deciles",
    "score_recommendations",
    "temporal_split",
    "validation_split",
]
