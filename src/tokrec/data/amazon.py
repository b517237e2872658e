"""Amazon product reviews, 2014 (McAuley et al.) and 2018 (Ni et al.), with their product metadata.

The layouts, as their pages give them (jmcauley.ucsd.edu/data/amazon/ and nijianmo.github.io/amazon/),
one record per line, optionally gzipped:

* reviews (2014 ``reviews_<Category>[_5].json.gz`` and 2018 ``<Category>[_5].json.gz``): JSON objects with
  ``reviewerID``, ``asin``, ``overall`` (1-5), ``unixReviewTime`` (epoch seconds), ``reviewTime``,
  ``reviewText``, ``summary``, ... (2018 adds ``verified``, ``vote``, ``style``, ``image``);
* metadata, 2014 (``meta_<Category>.json.gz``): *Python literals*, not JSON (single quotes; the page
  suggests ``eval``; tokrec uses ``ast.literal_eval``, which evaluates literals only): ``asin``,
  ``title``, ``price`` (a number), ``imUrl``, ``related`` (``also_bought``, ``also_viewed``,
  ``bought_together``), ``salesRank``, ``brand``, ``categories`` (a list of category paths);
* metadata, 2018 (``meta_<Category>.json.gz``): strict JSON: ``asin``, ``title``, ``brand``, ``category``
  (one path, a list), ``description`` (a list of paragraphs), ``price`` (text such as ``"$9.99"``),
  ``also_buy``, ``also_view``, ``feature``, ``main_cat``, ``imageURL``, ...

Each line may be either form (the version is not asked for): a line that is not JSON is read as a
Python literal, in both files.

What tokrec makes of it: interactions ``user_id`` = ``reviewerID``, ``item_id`` = ``asin``,
``timestamp`` = ``unixReviewTime``, event ``"rating"``, ``value`` = ``overall``; the catalog ``item_id``,
``title``, ``brand``, ``category`` (the path joined by ``" > "``; 2014's several paths joined by
``" | "``), ``description`` (paragraphs joined), ``price`` (float; NaN when absent or not a price).
Also-bought lists are not item text; :func:`read_amazon_meta` returns them (``also_buy``: 2014
``related.also_bought`` or 2018 ``also_buy``) with the image URLs (``image_url``). Reviews of products
absent from the metadata are common in these dumps: by default they are dropped and counted in the
report (``unknown_items="error"`` raises instead, naming the row).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from tokrec.data._formats import read_records
from tokrec.data.dataset import Dataset, LoadReport
from tokrec.data.loaders import check_known_items, check_unique, first_error, interactions_from_frame
from tokrec.errors import ConfigError, DataError

REVIEW_FIELDS = ("reviewerID", "asin", "overall", "unixReviewTime")
META_FIELDS = (
    "asin",
    "title",
    "brand",
    "price",
    "categories",
    "category",
    "description",
    "related",
    "also_buy",
    "imUrl",
    "imageURL",
)
_PRICE = re.compile(r"\d[\d,]*(?:\.\d+)?")
_TAG = re.compile(r"<[^>]+>")

__all__ = ["load_amazon", "read_amazon_meta", "read_amazon_reviews", "looks_like_meta", "looks_like_reviews"]


def looks_like_meta(line: str) -> bool:
    """True when a first line looks like an Amazon metadata record (2014 literal or 2018 JSON)."""
    s = line.lstrip()
    generic = "'item_id'" in s or '"item_id"' in s  # a tokrec-style JSONL catalog that happens to hold asin
    return s.startswith("{") and ("'asin'" in s or '"asin"' in s) and "reviewerID" not in s and not generic


def looks_like_reviews(line: str) -> bool:
    """True when a first line looks like an Amazon review record."""
    s = line.lstrip()
    generic = '"item_id"' in s or '"user_id"' in s
    return s.startswith("{") and "reviewerID" in s and "asin" in s and not generic


def _text(v: Any) -> str:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return ""
    if isinstance(v, list):
        return " ".join(_text(x) for x in v if _text(x))
    return _TAG.sub(" ", str(v)).strip()


def _price(v: Any) -> float:
    if isinstance(v, int | float) and not isinstance(v, bool):
        return float(v)
    if isinstance(v, str):
        m = _PRICE.search(v)  # "$9.99", "$9.99 - $20.00" (the low end), "" (none)
        if m:
            return float(m.group(0).replace(",", ""))
    return float("nan")


def _category(rec: dict[str, Any]) -> str:
    if "categories" in rec:  # 2014: a list of paths
        paths = rec["categories"] or []
        return " | ".join(" > ".join(map(str, p)) for p in paths if isinstance(p, list) and p)
    cat = rec.get("category") or []
    return " > ".join(map(str, cat)) if isinstance(cat, list) else str(cat)


def read_amazon_meta(path: str | Path, *, report: LoadReport | None = None) -> pd.DataFrame:
    """The metadata file as a frame: ``item_id, title, brand, category, description, price`` (the catalog
    columns) plus ``also_buy`` (list of asins) and ``image_url`` (first image URL or NaN).

    Raises:
        DataError: a line that is neither JSON nor a Python literal, a record without ``asin`` or with a
            repeated one (naming the row and column).
    """
    file = str(path)
    recs, rows = read_records(path, META_FIELDS, literal=True)
    asin = [str(r.get("asin", "")).strip() for r in recs]
    empty = np.asarray([not a for a in asin])
    if empty.any():
        raise DataError("missing asin", file=file, row=int(rows[first_error(empty)]), column="asin")
    check_unique(pd.Series(asin, dtype=object), rows, "asin", file=file, column="asin")
    also, image = [], []
    for r in recs:
        related = r.get("related")
        rel: dict[str, Any] = related if isinstance(related, dict) else {}
        also.append(list(r.get("also_buy") or rel.get("also_bought") or []))
        img = r.get("imUrl") or r.get("imageURL") or None
        image.append((img[0] if img else None) if isinstance(img, list) else img)
    frame = pd.DataFrame(
        {
            "item_id": asin,
            "title": [_text(r.get("title")) for r in recs],
            "brand": [_text(r.get("brand")) for r in recs],
            "category": [_category(r) for r in recs],
            "description": [_text(r.get("description")) for r in recs],
            "price": np.asarray([_price(r.get("price")) for r in recs], dtype=np.float64),
        }
    ).replace("", np.nan)
    frame["also_buy"] = also
    frame["image_url"] = image
    if report is not None:
        report.rows_read["metadata"] = len(frame)
    return frame


def read_amazon_reviews(path: str | Path, *, report: LoadReport | None = None) -> pd.DataFrame:
    """The reviews file as a validated interaction frame (see the module docstring)."""
    file = str(path)
    recs, rows = read_records(path, REVIEW_FIELDS, literal=True)
    for field in REVIEW_FIELDS:
        missing = np.asarray([field not in r for r in recs])
        if missing.any():
            raise DataError(f"missing {field}", file=file, row=int(rows[first_error(missing)]), column=field)
    df = pd.DataFrame(recs, columns=list(REVIEW_FIELDS))
    df["event"] = "rating"
    return interactions_from_frame(
        df,
        rows,
        file=file,
        columns={"user": "reviewerID", "item": "asin", "timestamp": "unixReviewTime", "value": "overall"},
        report=report,
    )


def load_amazon(
    reviews: str | Path,
    meta: str | Path,
    *,
    name: str | None = None,
    unknown_items: Literal["error", "drop"] = "drop",
) -> Dataset:
    """Loads an Amazon reviews file and its metadata (2014 or 2018) into a :class:`Dataset`.

    Args:
        reviews: the reviews JSON lines (``.json`` or ``.json.gz``).
        meta: the metadata file (``meta_<Category>.json[.gz]``).
        name: dataset label (default: the reviews file name without suffixes).
        unknown_items: reviews of products not in the metadata: ``"drop"`` (default; counted) or ``"error"``.
    """
    if unknown_items not in ("error", "drop"):
        raise ConfigError(f"unknown_items must be 'error' or 'drop', not {unknown_items!r}")
    report = LoadReport()
    items = read_amazon_meta(meta, report=report)
    inter = read_amazon_reviews(reviews, report=report)
    inter = check_known_items(inter, items, unknown_items=unknown_items, report=report, file=str(reviews))
    inter.attrs.clear()
    catalog = items.drop(columns=["also_buy", "image_url"])
    label = name or Path(reviews).name.split(".")[0]
    return Dataset(inter, catalog, None, name=label, report=report)
