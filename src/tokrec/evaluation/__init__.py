"""Evaluation: train/test splits, top-K metrics, multi-model protocols and reports."""

from tokrec.evaluation.metrics import (
    bootstrap_ci,
    clean_recommendations,
    paired_difference,
    popularity_deciles,
    score_recommendations,
    tied_share,
)
from tokrec.evaluation.protocol import ModelRun, ProtocolResult, evaluate_split, run_model
from tokrec.evaluation.report import write_report
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
    "ModelRun",
    "ProtocolResult",
    "Split",
    "bootstrap_ci",
    "clean_recommendations",
    "evaluate_split",
    "paired_difference",
    "run_model",
    "tied_share",
    "write_report",
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
