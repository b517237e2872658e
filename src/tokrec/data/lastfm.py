"""Music logs: HetRec 2011 Last.fm (play counts + tags) and listening-event logs (user, track, time).

HetRec 2011 Last.fm 2K (https://grouplens.org/datasets/hetrec-2011/, its ``readme.txt``): tab-separated
files, each with a header line:

* ``artists.dat``: ``id, name, url, pictureURL``
* ``tags.dat``: ``tagID, tagValue``
* ``user_artists.dat``: ``userID, artistID, weight`` (the user's play count of the artist)
* ``user_taggedartists.dat``: ``userID, artistID, tagID, day, month, year``

tokrec reads them as: catalog ``item_id`` (artist id), ``name``, ``tags`` (the artist's ten most applied
tags, most applied first; the URLs are left out); ``interactions`` one ``"play"`` event per
(user, artist) with ``value`` = the play count (the file has no times: ``timestamp`` is the row order);
``users`` ``user_id`` and ``tags`` (the ten tags the user applied most). The tag files are optional
(looked for next to ``user_artists.dat``). The HetRec files are not all UTF-8 (some tag values are
Latin-1): a file that does not decode as UTF-8 is read as Latin-1 and the report says so.

Listening-event logs (:func:`load_listening_events`): one row per play. The Last.fm 1K layout
(``userid-timestamp-artid-artname-traid-traname.tsv``: tab-separated, no header, ``userid, timestamp
(ISO-8601), artist MBID, artist name, track MBID, track name``) is recognised; any other table needs a
header with ``user_id`` (or ``user``), ``item_id`` (or ``track_id``, ``track``), ``timestamp`` and
optionally ``track_name`` / ``artist_name`` columns. The catalog comes from the log itself (each track's
first row): ``item_id``, ``track_name``, ``artist_name``. A track without an id (Last.fm 1K leaves many
MBIDs empty) is identified as ``artist name - track name``. Last.fm 1K's user file, ``userid-profile.tsv``
next to the log (a header line ``#id, gender, age, country, registered``; empty cells where a user gave
nothing), becomes the user table: ``user_id, gender, age, country, registered``, the attributes the recommended
model ranks a new user's peers by.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from tokrec.data._formats import read_delimited, read_text
from tokrec.data.dataset import Dataset, LoadReport
from tokrec.data.loaders import check_unique, first_error, interactions_from_frame, read_table
from tokrec.errors import DataError, require_columns

ARTISTS_HEADER = ("id", "name", "url", "pictureURL")
TAGS_HEADER = ("tagID", "tagValue")
USER_ARTISTS_HEADER = ("userID", "artistID", "weight")
USER_TAGGED_HEADER = ("userID", "artistID", "tagID", "day", "month", "year")
LASTFM_1K_COLUMNS = ("user_id", "timestamp", "artist_mbid", "artist_name", "track_mbid", "track_name")
TOP_TAGS = 10

__all__ = ["load_lastfm", "load_lastfm_artists", "load_listening_events", "looks_like_lastfm_1k"]


def looks_like_lastfm_1k(line: str) -> bool:
    """True when a first line has Last.fm 1K's shape (6 tab fields, the first ``user_...``)."""
    f = line.split("\t")
    return len(f) == 6 and f[0].startswith("user_")


def _read(path: Path, header: tuple[str, ...], report: LoadReport) -> tuple[pd.DataFrame, np.ndarray]:
    try:
        text = read_text(path, "utf-8")
    except DataError as e:
        if "cannot decode" not in e.reason:
            raise
        text = read_text(path, "latin-1")
        report.notes.append(f"{path.name} is not UTF-8: read as Latin-1")
    return read_delimited(path, header, header=header, text=text)


def _ints(df: pd.DataFrame, rows: np.ndarray, col: str, file: str) -> np.ndarray:
    num = pd.to_numeric(df[col], errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(num) | (num != np.round(num))
    if bad.any():
        i = first_error(bad)
        raise DataError(
            f"expected an integer, found {df[col].iloc[i]!r}", file=file, row=int(rows[i]), column=col
        )
    return num.astype(np.int64)


def _top_tags(owner: pd.Series, tag: pd.Series) -> pd.Series:
    """The TOP_TAGS most frequent tags per owner, ``", "``-joined (ties: the tag seen first)."""
    counts = pd.DataFrame({"owner": owner.to_numpy(), "tag": tag.to_numpy()})
    counts["first"] = np.arange(len(counts))
    g = counts.groupby(["owner", "tag"], sort=False).agg(n=("first", "size"), first=("first", "min"))
    g = g.reset_index().sort_values(["owner", "n", "first"], ascending=[True, False, True], kind="stable")
    g = g.groupby("owner", sort=False).head(TOP_TAGS)
    return g.groupby("owner", sort=False)["tag"].agg(", ".join)


def _artists(art: Path, report: LoadReport) -> pd.DataFrame:
    a, a_rows = _read(art, ARTISTS_HEADER, report)
    ids = a["id"].str.strip()
    _ints(a, a_rows, "id", str(art))
    check_unique(ids, a_rows, "artist id", file=str(art), column="id")
    report.rows_read["artists"] = len(ids)
    return pd.DataFrame({"item_id": ids, "name": a["name"].str.strip()})


def _tagged(ut: Path, tg: Path, report: LoadReport) -> pd.DataFrame | None:
    """``user, artist, tag`` (the tag's text where tags.dat is there) of user_taggedartists.dat, if any."""
    if not ut.is_file():
        return None
    t, t_rows = _read(ut, USER_TAGGED_HEADER, report)
    for c in ("userID", "artistID", "tagID"):
        _ints(t, t_rows, c, str(ut))
    tid = t["tagID"].str.strip()
    label = tid
    if tg.is_file():
        tt, tt_rows = _read(tg, TAGS_HEADER, report)
        _ints(tt, tt_rows, "tagID", str(tg))
        names = pd.Series(tt["tagValue"].str.strip().to_numpy(), index=tt["tagID"].str.strip().to_numpy())
        label = tid.map(names)
        missing = label.isna().to_numpy()
        if missing.any():
            i = first_error(missing)
            raise DataError(
                f"tag {tid.iloc[i]!r} is not in {tg.name}", file=str(ut), row=int(t_rows[i]), column="tagID"
            )
    report.rows_read["user_taggedartists"] = len(t)
    return pd.DataFrame({"user": t["userID"].str.strip(), "artist": t["artistID"].str.strip(), "tag": label})


def load_lastfm_artists(artists: str | Path, *, report: LoadReport | None = None) -> pd.DataFrame:
    """The catalog of ``artists.dat``: ``item_id, name`` and, when ``user_taggedartists.dat`` (and
    ``tags.dat``) lie next to it, ``tags``."""
    art = Path(artists)
    report = report if report is not None else LoadReport()
    items = _artists(art, report)
    tagged = _tagged(art.parent / "user_taggedartists.dat", art.parent / "tags.dat", report)
    if tagged is not None:
        items["tags"] = items["item_id"].map(_top_tags(tagged["artist"], tagged["tag"]))
    return items


def load_lastfm(
    user_artists: str | Path,
    artists: str | Path | None = None,
    *,
    tags: str | Path | None = None,
    user_tags: str | Path | None = None,
    name: str | None = None,
) -> Dataset:
    """Loads HetRec 2011 Last.fm into a :class:`Dataset` (play counts as ``value``, tags as text).

    Args:
        user_artists: ``user_artists.dat`` (or the folder holding the files).
        artists: ``artists.dat`` (default: next to ``user_artists.dat``).
        tags: ``tags.dat`` (default: next to it, when present).
        user_tags: ``user_taggedartists.dat`` (default: next to it, when present).
        name: dataset label (default ``lastfm``).
    """
    ua = Path(user_artists)
    folder = ua if ua.is_dir() else ua.parent
    if ua.is_dir():
        ua = folder / "user_artists.dat"
    art = Path(artists) if artists is not None else folder / "artists.dat"
    tg = Path(tags) if tags is not None else folder / "tags.dat"
    ut = Path(user_tags) if user_tags is not None else folder / "user_taggedartists.dat"
    report = LoadReport()

    items = _artists(art, report)
    p, p_rows = _read(ua, USER_ARTISTS_HEADER, report)
    _ints(p, p_rows, "userID", str(ua))
    _ints(p, p_rows, "artistID", str(ua))
    weight = _ints(p, p_rows, "weight", str(ua))
    if (weight < 0).any():
        i = first_error(weight < 0)
        raise DataError("negative play count", file=str(ua), row=int(p_rows[i]), column="weight")
    inter = pd.DataFrame(
        {
            "user_id": p["userID"].str.strip(),
            "item_id": p["artistID"].str.strip(),
            "event": "play",
            "value": weight.astype(np.float64),
        }
    )
    unknown = pd.Index(items["item_id"]).get_indexer(inter["item_id"]) < 0
    if unknown.any():
        i = first_error(unknown)
        raise DataError(
            f"artist {inter['item_id'].iloc[i]!r} is not in {art.name}",
            file=str(ua),
            row=int(p_rows[i]),
            column="artistID",
        )
    report.rows_read["user_artists"] = len(inter)

    users = None
    tagged = _tagged(ut, tg, report)
    if tagged is not None:
        by_artist = _top_tags(tagged["artist"], tagged["tag"])
        items["tags"] = items["item_id"].map(by_artist)
        by_user = _top_tags(tagged["user"], tagged["tag"])
        users = pd.DataFrame({"user_id": by_user.index.astype(str), "tags": by_user.to_numpy()})
    return Dataset(inter, items, users, name=name or "lastfm", report=report)


def load_listening_events(path: str | Path, *, name: str | None = None) -> Dataset:
    """A listening-event log (one row per play) into a :class:`Dataset` whose catalog comes from the log.

    See the module docstring for the layouts read. Every play is a ``"play"`` event with value 1 (repeat
    plays stay separate events).
    """
    file = str(path)
    report = LoadReport()
    from tokrec.data._formats import first_line

    one_k = looks_like_lastfm_1k(first_line(path))
    if one_k:
        df, rows = read_delimited(path, LASTFM_1K_COLUMNS)
        df = df.apply(lambda s: s.str.strip())
        track = df["track_mbid"].where(df["track_mbid"].ne(""), df["artist_name"] + " - " + df["track_name"])
        df.insert(0, "item_id", track)
        df = df.replace("", np.nan)
        report.notes.append("Last.fm 1K layout")
    else:
        df, rows = read_table(path)
        alias = {"track_id": "item_id", "track": "item_id", "artist": "artist_name", "user": "user_id"}
        df = df.rename(columns={k: v for k, v in alias.items() if k in df.columns and v not in df.columns})
    text_cols = [c for c in ("track_name", "artist_name") if c in df.columns]
    why = f"a listening log needs user_id, item_id (or track_id) and timestamp; found {', '.join(map(str, df.columns))}"
    require_columns(df.columns, ("user_id", "item_id", "timestamp"), why, file=file)
    inter = interactions_from_frame(
        df[["user_id", "item_id", "timestamp"]].assign(event="play"), rows, file=file, report=report
    )
    items = pd.DataFrame({"item_id": inter["item_id"].to_numpy()})
    for c in text_cols:
        items[c] = df[c].to_numpy()
    items = items.drop_duplicates("item_id").reset_index(drop=True)
    report.rows_read["items (from the log)"] = len(items)
    users = _lastfm_1k_profiles(Path(file).parent / LASTFM_1K_PROFILE, report) if one_k else None
    inter.attrs.clear()
    return Dataset(inter, items, users, name=name or Path(file).stem, report=report)


#: Last.fm 1K's user file, next to its listening log
LASTFM_1K_PROFILE = "userid-profile.tsv"
LASTFM_1K_PROFILE_COLUMNS = ("#id", "gender", "age", "country", "registered")


def _lastfm_1k_profiles(path: Path, report: LoadReport) -> pd.DataFrame | None:
    """``userid-profile.tsv`` as a user table (None where the file is absent); errors name its row and column."""
    if not path.is_file():
        return None
    df, rows = read_table(path, format="tsv")
    require_columns(
        df.columns,
        LASTFM_1K_PROFILE_COLUMNS,
        f"a Last.fm 1K profile file has the header {', '.join(LASTFM_1K_PROFILE_COLUMNS)}",
        file=str(path),
    )
    df = df[list(LASTFM_1K_PROFILE_COLUMNS)].rename(columns={"#id": "user_id"})
    df = df.apply(lambda s: s.str.strip()).replace("", np.nan)
    empty = df["user_id"].isna().to_numpy()
    if empty.any():
        raise DataError("empty user id", file=str(path), row=int(rows[first_error(empty)]), column="#id")
    check_unique(df["user_id"], rows, "user id", file=str(path), column="#id")
    report.rows_read["users"] = len(df)
    report.notes.append(f"users: {LASTFM_1K_PROFILE} ({len(df)} users)")
    return df.reset_index(drop=True)
