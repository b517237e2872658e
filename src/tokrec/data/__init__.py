"""Datasets: interactions, item catalog, optional user table and id vocabularies."""

from tokrec.data.dataset import Dataset, LoadReport, Vocab
from tokrec.data.loaders import load_dataset, load_interactions, load_items, load_users

__all__ = ["Dataset", "LoadReport", "Vocab", "load_dataset", "load_interactions", "load_items", "load_users"]
