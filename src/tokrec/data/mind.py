"""MIND (Microsoft News Dataset): ``news.tsv`` + ``behaviors.tsv`` -> :class:`Dataset` with impressions.

The layout, as MIND's documentation gives it (https://msnews.github.io, "MIND: A Large-scale Dataset for
News Recommendation"), tab-separated, no header:

* ``news.tsv``: News ID, Category, SubCategory, Title, Abstract, URL, Title Entities, Abstract Entities.
  The entity columns are JSON lists of objects with a ``Label`` (the Wikidata name), ``Type``,
  ``WikidataId``, ``Confidence``, ``OccurrenceOffsets`` and ``SurfaceForms``; they may be empty.
* ``behaviors.tsv``: Impression ID, User ID, Time (``11/15/2019 8:55:22 AM``), History (the news the
  user clicked before, oldest first, space-separated; may be empty), Impressions (the news shown,
  space-separated, each ``N1234-1`` when clicked or ``N1234-0`` when not).

What tokrec makes of it:

* the catalog: ``item_id`` (News ID), ``title``, ``category``, ``subcategory``, ``abstract``,
  ``entities`` (the distinct entity labels of title and abstract, ``", "``-joined); the URL is left out
  (it is not text a reader sees). News ids repeated across the files given (MIND's train and dev
  ``news.tsv`` overlap) keep their first row and are counted in the report.
* ``interactions``: every click, event ``"click"``, value 1: the History clicks (MIND gives their order
  but not their times: they are placed one second apart, ending one second before the user's first
  impression in the file; column ``source = "history"``) and the impressions' clicks
  (``source = "impression"``, at the impression's time). A history item listed again for the same user
  is kept once.
* ``impressions``: every shown item with its 0/1 label (see :class:`~tokrec.data.dataset.Dataset`), so
  non-clicks are kept as negatives for the models and metrics that use them
  (:func:`tokrec.evaluation.impressions.evaluate_impressions`) without ever being read as positives.

MIND's test split has no labels; tokrec reads the train and dev splits (a label-less impression is an
error naming the row).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from tokrec.data._formats import read_delimited
from tokrec.data.dataset import Dataset, LoadReport
from tokrec.data.loaders import check_unique, first_error
from tokrec.errors import ConfigError, DataError

NEWS_COLUMNS = (
    "news_id",
    "category",
    "subcategory",
    "title",
    "abstract",
    "url",
    "title_entities",
    "abstract_entities",
)
BEHAVIOR_COLUMNS = ("impression_id", "user_id", "time", "history", "impressions")
TIME_FORMAT = "%m/%d/%Y %I:%M:%S %p"

__all__ = ["load_mind", "load_mind_news", "read_mind_behaviors", "looks_like_news", "looks_like_behaviors"]


def looks_like_news(line: str) -> bool:
    """True when a first line has MIND news.tsv's shape (8 tab fields, an ``N<digits>`` id)."""
    f = line.split("\t")
    return len(f) == 8 and f[0][:1] == "N" and f[0][1:].isdigit()


def looks_like_behaviors(line: str) -> bool:
    """True when a first line has MIND behaviors.tsv's shape (5 tab fields, ``N..-0/1`` impressions)."""
    f = line.split("\t")
    if len(f) != 5 or not f[0].strip().isdigit():
        return False
    tok = f[4].split()
    return bool(tok) and tok[0][:1] == "N"


def _entity_labels(cells: pd.Series, rows: np.ndarray, file: str, column: str) -> list[list[str]]:
    out: list[list[str]] = []
    for i, cell in enumerate(cells.tolist()):
        s = cell.strip()
        if not s:
            out.append([])
            continue
        try:
            ents = json.loads(s)
        except json.JSONDecodeError as e:
            raise DataError(
                f"not a JSON list of entities: {e.msg}", file=file, row=int(rows[i]), column=column
            ) from e
        if not isinstance(ents, list) or not all(isinstance(x, dict) for x in ents):
            raise DataError(
                "expected a JSON list of entity objects", file=file, row=int(rows[i]), column=column
            )
        out.append([str(x["Label"]) for x in ents if x.get("Label")])
    return out


def load_mind_news(
    paths: str | Path | Sequence[str | Path], *, encoding: str = "utf-8", report: LoadReport | None = None
) -> pd.DataFrame:
    """The catalog from one or more ``news.tsv`` files (see the module docstring for the columns)."""
    report = report if report is not None else LoadReport()
    files = [paths] if isinstance(paths, str | Path) else list(paths)
    if not files:
        raise ConfigError("load_mind_news needs at least one news.tsv")
    frames = []
    for path in files:
        file = str(path)
        df, rows = read_delimited(path, NEWS_COLUMNS, encoding=encoding)
        ids = df["news_id"].str.strip()
        empty = ids.eq("").to_numpy()
        if empty.any():
            raise DataError("missing News ID", file=file, row=int(rows[first_error(empty)]), column="news_id")
        check_unique(ids, rows, "News ID", file=file, column="news_id")
        title_e = _entity_labels(df["title_entities"], rows, file, "title_entities")
        abs_e = _entity_labels(df["abstract_entities"], rows, file, "abstract_entities")
        entities = [", ".join(dict.fromkeys(a + b)) for a, b in zip(title_e, abs_e, strict=True)]
        frame = pd.DataFrame(
            {
                "item_id": ids,
                "title": df["title"].str.strip(),
                "category": df["category"].str.strip(),
                "subcategory": df["subcategory"].str.strip(),
                "abstract": df["abstract"].str.strip(),
                "entities": entities,
            }
        )
        frames.append(frame.replace("", np.nan))
        report.rows_read[f"news ({Path(file).parent.name or file})"] = len(frame)
    items = pd.concat(frames, ignore_index=True)
    dup = items["item_id"].duplicated().to_numpy()
    report.count("news ids repeated across news files (first kept)", int(dup.sum()))
    return items[~dup].reset_index(drop=True)


def read_mind_behaviors(
    path: str | Path, *, encoding: str = "utf-8", report: LoadReport | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Reads ``behaviors.tsv`` into (clicks, impressions).

    Returns:
        ``clicks``: ``user_id, item_id, timestamp, event ("click"), value (1.0), source ("history" or
        "impression"), impression_id`` (empty for history clicks), with ``attrs["rows"]`` (line of each
        click) and ``attrs["columns"]`` (``history``/``impressions``, where each came from);
        ``impressions``: ``impression_id, user_id, timestamp, item_id, label, position`` with
        ``attrs["rows"]``.

    Raises:
        DataError: bad time, empty user, a malformed or label-less impression token (row, column).
    """
    file = str(path)
    report = report if report is not None else LoadReport()
    df, rows = read_delimited(path, BEHAVIOR_COLUMNS, encoding=encoding)
    for col in ("impression_id", "user_id"):
        empty = df[col].str.strip().eq("").to_numpy()
        if empty.any():
            raise DataError(f"missing {col}", file=file, row=int(rows[first_error(empty)]), column=col)
    times = pd.to_datetime(df["time"].str.strip(), format=TIME_FORMAT, errors="coerce", utc=True)
    bad = times.isna().to_numpy()
    if bad.any():
        i = first_error(bad)
        raise DataError(
            f"cannot parse time {df['time'].iloc[i]!r} (MIND writes 11/15/2019 8:55:22 AM)",
            file=file,
            row=int(rows[i]),
            column="time",
        )
    epoch = pd.Timestamp("1970-01-01", tz="UTC")
    ts = ((times - epoch) // pd.Timedelta(seconds=1)).to_numpy(dtype=np.int64)
    users = df["user_id"].str.strip().to_numpy()
    imp_ids = df["impression_id"].str.strip().to_numpy()

    # impressions: one token per shown item
    tok = df["impressions"].str.split()
    n_tok = tok.str.len().fillna(0).to_numpy().astype(np.int64)
    if (n_tok == 0).any():
        i = first_error(n_tok == 0)
        raise DataError(
            "an impression without shown items", file=file, row=int(rows[i]), column="impressions"
        )
    rec = np.repeat(np.arange(len(df)), n_tok)
    flat = pd.Series(np.concatenate(tok.to_numpy()), dtype=object)
    parts = flat.str.rpartition("-")
    label_txt = parts[2].to_numpy()
    ok = (parts[1] == "-").to_numpy() & np.isin(label_txt, ("0", "1")) & parts[0].ne("").to_numpy()
    if not ok.all():
        j = first_error(~ok)
        why = (
            "has no click label (MIND's test split has none; tokrec reads train and dev)"
            if "-" not in flat.iloc[j]
            else "is not NEWSID-0 or NEWSID-1"
        )
        raise DataError(
            f"impression item {flat.iloc[j]!r} {why}", file=file, row=int(rows[rec[j]]), column="impressions"
        )
    pos = np.arange(len(flat)) - np.repeat(np.cumsum(n_tok) - n_tok, n_tok)
    impressions = pd.DataFrame(
        {
            "impression_id": imp_ids[rec],
            "user_id": users[rec],
            "timestamp": ts[rec],
            "item_id": parts[0].to_numpy(),
            "label": label_txt.astype(np.int8),
            "position": pos.astype(np.int64),
        }
    )
    impressions.attrs["rows"] = rows[rec]

    # history clicks: the earliest row of each user first, each (user, item) once, one second apart
    order = np.lexsort((np.arange(len(df)), ts, users))
    h = df["history"].iloc[order].str.split()
    n_h = h.str.len().fillna(0).to_numpy().astype(np.int64)
    h_rec = np.repeat(order, n_h)
    h_items = np.concatenate(h.to_numpy()) if n_h.sum() else np.zeros(0, dtype=object)
    hist = pd.DataFrame({"user_id": users[h_rec], "item_id": h_items.astype(object), "rec": h_rec})
    hist = hist[~hist.duplicated(["user_id", "item_id"])].reset_index(drop=True)
    first_ts = pd.Series(ts[order], index=users[order]).groupby(level=0).min()
    k = hist.groupby("user_id", sort=False).cumcount().to_numpy()
    n_u = hist.groupby("user_id", sort=False)["item_id"].transform("size").to_numpy()
    hist_ts = first_ts.reindex(hist["user_id"]).to_numpy() - (n_u - k)
    clicked = impressions["label"].to_numpy() == 1
    clicks = pd.concat(
        [
            pd.DataFrame(
                {
                    "user_id": hist["user_id"],
                    "item_id": hist["item_id"],
                    "timestamp": hist_ts.astype(np.int64),
                    "source": "history",
                    "impression_id": "",
                }
            ),
            pd.DataFrame(
                {
                    "user_id": impressions["user_id"].to_numpy()[clicked],
                    "item_id": impressions["item_id"].to_numpy()[clicked],
                    "timestamp": impressions["timestamp"].to_numpy()[clicked],
                    "source": "impression",
                    "impression_id": impressions["impression_id"].to_numpy()[clicked],
                }
            ),
        ],
        ignore_index=True,
    )
    clicks.insert(3, "event", "click")
    clicks.insert(4, "value", 1.0)
    clicks.attrs["rows"] = np.concatenate([rows[hist["rec"].to_numpy()], rows[rec[clicked]]])
    clicks.attrs["columns"] = np.asarray(["history"] * len(hist) + ["impressions"] * int(clicked.sum()))
    report.rows_read[f"behaviors ({Path(file).parent.name or file})"] = len(df)
    report.notes.append(
        f"{int(clicked.sum())} impression clicks, {len(hist)} history clicks, "
        f"{int((~clicked).sum())} non-clicks kept as impressions"
    )
    return clicks, impressions


def _check_known(
    frame: pd.DataFrame,
    items: pd.DataFrame,
    file: str,
    unknown_items: str,
    report: LoadReport,
    what: str,
    columns: np.ndarray | str,
) -> pd.DataFrame:
    unknown = pd.Index(items["item_id"]).get_indexer(frame["item_id"]) < 0
    if not unknown.any():
        return frame
    if unknown_items == "drop":
        report.count(f"{what} with news not in news.tsv", int(unknown.sum()))
        out = frame[~unknown].reset_index(drop=True)
        out.attrs.update({k: np.asarray(v)[~unknown] for k, v in frame.attrs.items()})
        return out
    i = first_error(unknown)
    col = columns if isinstance(columns, str) else str(columns[i])
    raise DataError(
        f"news {frame['item_id'].iloc[i]!r} is not in the news file ({int(unknown.sum())} {what} reference "
        "unknown news); pass unknown_items='drop' to drop and count them",
        file=file,
        row=int(frame.attrs["rows"][i]),
        column=col,
    )


def load_mind(
    news: str | Path | Sequence[str | Path],
    behaviors: str | Path,
    *,
    name: str | None = None,
    unknown_items: Literal["error", "drop"] = "error",
    encoding: str = "utf-8",
) -> Dataset:
    """Loads MIND's ``news.tsv`` (one or several) and a ``behaviors.tsv`` into a :class:`Dataset`.

    Args:
        news: the news file(s); give train's and dev's together to cover both splits' news.
        behaviors: the behaviors file.
        name: dataset label (default ``mind-<folder of behaviors>``).
        unknown_items: clicks or shown items whose news is not in ``news``: ``"error"`` or ``"drop"``.
        encoding: text encoding.

    Returns:
        The dataset with ``impressions`` set (see the module docstring).
    """
    if unknown_items not in ("error", "drop"):
        raise ConfigError(f"unknown_items must be 'error' or 'drop', not {unknown_items!r}")
    report = LoadReport()
    items = load_mind_news(news, encoding=encoding, report=report)
    clicks, impressions = read_mind_behaviors(behaviors, encoding=encoding, report=report)
    file = str(behaviors)
    clicks = _check_known(clicks, items, file, unknown_items, report, "clicks", clicks.attrs["columns"])
    impressions = _check_known(impressions, items, file, unknown_items, report, "shown items", "impressions")
    clicks.attrs.clear()
    impressions.attrs.clear()
    label = name or f"mind-{Path(behaviors).resolve().parent.name}"
    return Dataset(clicks, items, None, name=label, report=report, impressions=impressions)
