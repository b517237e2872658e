"""Which public format a file is in, from its first line, and the loader that reads it.

:func:`tokrec.data.loaders.load_dataset` and :func:`~tokrec.data.loaders.load_items` (and so every CLI
command that takes ``--items`` / ``--interactions``) ask :func:`detect` first; files in none of these
layouts go on to the generic CSV / Parquet / JSON Lines loaders. Detection reads only the first line:

==================  ===============================================  ====================================
format              ``--items``                                      ``--interactions``
==================  ===============================================  ====================================
``mind``            ``news.tsv`` (8 tab fields, ``N<digits>`` ids)   ``behaviors.tsv`` (5 tab fields)
``lastfm``          ``artists.dat`` (header ``id name url ...``)     ``user_artists.dat`` (``userID
                                                                     artistID weight``)
``amazon``          ``meta_*.json[.gz]`` (records with ``asin``)     reviews ``*.json[.gz]``
                                                                     (``reviewerID``, ``asin``)
``listening``       the log itself (the same path as interactions)   a listening log: Last.fm 1K or a
                                                                     table with user, track, timestamp
==================  ===============================================  ====================================
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from tokrec.data._formats import first_line
from tokrec.data.dataset import Dataset

PathLike = str | os.PathLike[str]

__all__ = ["detect", "detect_file", "load_domain_dataset", "load_domain_items", "FORMATS"]

FORMATS = ("mind", "lastfm", "amazon", "listening")

#: file kind -> (format, role)
_KINDS = {
    "mind-news": ("mind", "items"),
    "mind-behaviors": ("mind", "interactions"),
    "lastfm-artists": ("lastfm", "items"),
    "lastfm-user-artists": ("lastfm", "interactions"),
    "amazon-meta": ("amazon", "items"),
    "amazon-reviews": ("amazon", "interactions"),
    "lastfm-1k": ("listening", "interactions"),
}


def detect_file(path: PathLike) -> str | None:
    """The kind of a file (a key of ``_KINDS``) from its first line, or None for anything else."""
    from tokrec.data.amazon import looks_like_meta, looks_like_reviews
    from tokrec.data.lastfm import looks_like_lastfm_1k
    from tokrec.data.mind import looks_like_behaviors, looks_like_news

    if not Path(path).is_file():
        return None
    line = first_line(Path(path))
    if not line:
        return None
    head = [h.strip().lower() for h in line.split("\t")]
    if head[:2] == ["id", "name"] and "pictureurl" in head:
        return "lastfm-artists"
    if head == ["userid", "artistid", "weight"]:
        return "lastfm-user-artists"
    if looks_like_news(line):
        return "mind-news"
    if looks_like_behaviors(line):
        return "mind-behaviors"
    if looks_like_lastfm_1k(line):
        return "lastfm-1k"
    if looks_like_reviews(line):
        return "amazon-reviews"
    if looks_like_meta(line):
        return "amazon-meta"
    return None


def detect(items: PathLike, interactions: PathLike) -> str | None:
    """The public format of an (items, interactions) pair, or None when it is a generic table pair.

    The same path twice is a listening log whose catalog is read from it (when it is one).
    """
    inter_kind = detect_file(interactions)
    if Path(items).resolve() == Path(interactions).resolve():
        if inter_kind == "lastfm-1k" or (inter_kind is None and _is_listening_table(interactions)):
            return "listening"
        return None
    item_kind = detect_file(items)
    if item_kind is None or inter_kind is None:
        return None
    fmt_i, fmt_x = _KINDS[item_kind][0], _KINDS[inter_kind][0]
    return fmt_i if fmt_i == fmt_x else None


def _is_listening_table(path: PathLike) -> bool:
    from tokrec.data.loaders import read_table

    try:
        df, _ = read_table(path)
    except Exception:
        return False
    cols = set(map(str, df.columns))
    return bool({"user_id", "user"} & cols) and bool({"track_id", "track"} & cols) and "timestamp" in cols


def load_domain_dataset(
    fmt: str, items: PathLike, interactions: PathLike, name: str | None = None
) -> Dataset:
    """Reads a pair in one of :data:`FORMATS` with its own loader."""
    if fmt == "mind":
        from tokrec.data.mind import load_mind

        return load_mind(Path(items), Path(interactions), name=name)
    if fmt == "lastfm":
        from tokrec.data.lastfm import load_lastfm

        return load_lastfm(Path(interactions), Path(items), name=name)
    if fmt == "amazon":
        from tokrec.data.amazon import load_amazon

        return load_amazon(Path(interactions), Path(items), name=name)
    if fmt == "listening":
        from tokrec.data.lastfm import load_listening_events

        return load_listening_events(Path(interactions), name=name)
    from tokrec.errors import ConfigError

    raise ConfigError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")


def load_domain_items(path: PathLike) -> pd.DataFrame | None:
    """The catalog of an items file in one of the public formats, or None when it is in none."""
    kind = detect_file(path)
    if kind is None or _KINDS[kind][1] != "items":
        return None
    if kind == "mind-news":
        from tokrec.data.mind import load_mind_news

        return load_mind_news(Path(path))
    if kind == "amazon-meta":
        from tokrec.data.amazon import read_amazon_meta

        return read_amazon_meta(Path(path)).drop(columns=["also_buy", "image_url"])
    from tokrec.data.lastfm import load_lastfm_artists

    return load_lastfm_artists(Path(path))
