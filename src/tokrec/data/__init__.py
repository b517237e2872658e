"""Datasets: interactions, item catalog, optional user table and id vocabularies."""

from tokrec.data.dataset import Dataset, LoadReport, Vocab

__all__ = ["Dataset", "LoadReport", "Vocab"]
