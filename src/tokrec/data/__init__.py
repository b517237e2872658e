"""Datasets: interactions, item catalog, optional user table and id vocabularies."""

from tokrec.data.dataset import Dataset, LoadReport, Vocab
from tokrec.data.loaders import (
    interactions_from_frame,
    items_from_frame,
    load_dataset,
    load_interactions,
    load_items,
    load_users,
)
from tokrec.data.movielens import download_movielens, find_movielens_100k, load_movielens
from tokrec.data.synthetic import make_synthetic, write_synthetic

__all__ = [
    "Dataset",
    "LoadReport",
    "Vocab",
    "download_movielens",
    "find_movielens_100k",
    "interactions_from_frame",
    "items_from_frame",
    "load_dataset",
    "load_interactions",
    "load_items",
    "load_movielens",
    "load_users",
    "make_synthetic",
    "write_synthetic",
]
