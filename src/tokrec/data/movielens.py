"""MovieLens from a local folder (100K, 1M, latest / 20M / 25M / 32M layouts), and its download.

MovieLens may not be redistributed: tokrec never ships it. :func:`find_movielens_100k` finds a
local copy, :func:`download_movielens` fetches the GroupLens zip, verifies its MD5 and unpacks it
atomically into the data cache (``$TOKREC_DATA_DIR``, else ``~/.cache/tokrec/data``).
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import re
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from tokrec.data.dataset import Dataset, LoadReport
from tokrec.data.loaders import (
    PathLike,
    check_known_items,
    interactions_from_frame,
    items_from_frame,
    load_interactions,
    load_items,
)
from tokrec.errors import DataError

GROUPLENS_URL = "https://files.grouplens.org/datasets/movielens"

#: MD5 of the GroupLens archives whose content never changes (the value GroupLens publishes in
#: ``<name>.zip.md5``). Archives not listed here (``ml-latest-small`` is re-released) are checked
#: against the ``.zip.md5`` file fetched alongside the zip.
KNOWN_MD5 = {
    "ml-100k": "0e33842e24a9c977be4e0107933c0723",
    "ml-1m": "c4d9eecfca2ab87c1945afe126590906",
}
NAMES = ("ml-100k", "ml-1m", "ml-latest-small", "ml-20m", "ml-25m", "ml-32m")

#: u.genre order (used when a 100K folder lacks u.genre)
ML100K_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
    "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller",
    "War", "Western",
)  # fmt: skip
#: ML-1M users.dat occupation codes (from the 1M README)
ML1M_OCCUPATIONS = (
    "other", "academic/educator", "artist", "clerical/admin", "college/grad student",
    "customer service", "doctor/health care", "executive/managerial", "farmer", "homemaker",
    "K-12 student", "lawyer", "programmer", "retired", "sales/marketing", "scientist",
    "self-employed", "technician/engineer", "tradesman/craftsman", "unemployed", "writer",
)  # fmt: skip

__all__ = [
    "data_dir",
    "detect_layout",
    "download_movielens",
    "find_movielens_100k",
    "load_ml100k",
    "load_ml1m",
    "load_ml_latest",
    "load_movielens",
]


# ---------------------------------------------------------------------------------------------
# reading MovieLens' own text formats
# ---------------------------------------------------------------------------------------------
def _read_delimited(path: Path, names: list[str], sep: str, encoding: str) -> tuple[pd.DataFrame, np.ndarray]:
    """A header-less, unquoted text table; every cell as text. ``sep`` may be several characters."""
    if not path.is_file():
        raise DataError("file not found", file=str(path))
    data = path.read_bytes()
    if not data.strip():
        raise DataError("file is empty", file=str(path))
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise DataError(
            f"cannot decode byte 0x{data[e.start]:02x} as {encoding}", file=str(path), row=line
        ) from e
    if len(sep) > 1:
        text = text.replace(sep, "\x1f")
        sep = "\x1f"
    try:
        df = pd.read_csv(
            io.StringIO(text),
            sep=sep,
            header=None,
            names=names,
            dtype=str,
            keep_default_na=False,
            na_values=[""],
            quoting=csv.QUOTE_NONE,
            skip_blank_lines=False,
            index_col=False,
        )
    except pd.errors.ParserError as e:
        m = re.search(r"line (\d+)", str(e))
        raise DataError(
            f"expected {len(names)} fields: {e}", file=str(path), row=int(m.group(1)) if m else None
        ) from e
    rows = np.arange(1, len(df) + 1, dtype=np.int64)
    blank = df.isna().all(axis=1).to_numpy()
    short = df[names[-1]].isna().to_numpy() & ~blank
    if short.any():
        i = int(np.flatnonzero(short)[0])
        found = text.splitlines()[i].count(sep) + 1
        raise DataError(f"expected {len(names)} fields, found {found}", file=str(path), row=int(rows[i]))
    if blank.any():  # trailing blank lines are harmless; keep the line numbers of the others
        df, rows = df[~blank].reset_index(drop=True), rows[~blank]
    return df, rows


def _ml100k_items(folder: Path, report: LoadReport) -> pd.DataFrame:
    genres = list(ML100K_GENRES)
    if (folder / "u.genre").is_file():
        g, _ = _read_delimited(folder / "u.genre", ["name", "code"], "|", "latin-1")
        genres = g.sort_values("code", key=lambda c: c.astype(int))["name"].tolist()
    names = [
        "item_id",
        "title",
        "release_date",
        "video_release_date",
        "imdb_url",
        *[f"g{i}" for i in range(len(genres))],
    ]
    df, rows = _read_delimited(folder / "u.item", names, "|", "latin-1")
    flags = df[names[5:]].fillna("0").to_numpy()
    bad = ~np.isin(flags, ["0", "1"])
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise DataError(
            f"genre flag must be 0 or 1, not {flags[r, c]!r}",
            file=str(folder / "u.item"),
            row=int(rows[r]),
            column=genres[c],
        )
    on = flags == "1"
    joined = pd.Series(on.astype(object) @ np.asarray([g + "|" for g in genres], dtype=object))
    joined = joined.where(on.any(axis=1), "").str.rstrip("|")  # `bool @ str` repeats each name 0 or 1 times
    items = pd.DataFrame({"item_id": df["item_id"], "title": df["title"], "release_date": df["release_date"]})
    items["genres"] = joined.replace("", np.nan).to_numpy()
    return items_from_frame(items, rows, file=str(folder / "u.item"), report=report)


def _ratings(path: Path, sep: str, items: pd.DataFrame, report: LoadReport) -> pd.DataFrame:
    """The ``user_id, item_id, rating, timestamp`` file of 100K / 1M (latin-1), validated, every item
    known to the catalog."""
    df, rows = _read_delimited(path, ["user_id", "item_id", "rating", "timestamp"], sep, "latin-1")
    inter = interactions_from_frame(df, rows, file=str(path), report=report)
    return check_known_items(inter, items, report=report)


#: the columns of MovieLens 100K's ``u.user``, which has no header line
ML100K_USER_COLUMNS = ["user_id", "age", "gender", "occupation", "zip_code"]


def read_ml100k_users(path: PathLike) -> tuple[pd.DataFrame, np.ndarray]:
    """MovieLens 100K's ``u.user`` (pipe-separated, no header, latin-1) as text cells with
    :data:`ML100K_USER_COLUMNS`, and each row's line number."""
    return _read_delimited(Path(path), ML100K_USER_COLUMNS, "|", "latin-1")


def load_ml100k(folder: PathLike) -> Dataset:
    """MovieLens 100K: ``u.data`` ratings, ``u.item`` movies, ``u.user`` users (when present).

    Items: ``item_id, title, release_date, genres`` (genres joined with ``|`` in u.genre order),
    the same text columns as the benchmark's ``items.csv``. Users: ``user_id, age, gender,
    occupation, zip_code``. Interactions: event ``rating``, value 1-5, epoch-second timestamps.
    """
    folder = Path(folder)
    report = LoadReport()
    items = _ml100k_items(folder, report)
    inter = _ratings(folder / "u.data", "\t", items, report)
    users = None
    if (folder / "u.user").is_file():
        users, _ = read_ml100k_users(folder / "u.user")
        report.rows_read["users"] = len(users)
    inter.attrs.clear()
    return Dataset(inter, items, users, name="ml-100k", report=report)


def load_ml1m(folder: PathLike) -> Dataset:
    """MovieLens 1M: ``ratings.dat``, ``movies.dat``, ``users.dat`` (``::``-separated, latin-1).

    Items: ``item_id, title, genres``. Users: ``user_id, gender, age`` (the 1M age-group code),
    ``occupation`` (the name for its code), ``zip_code``.
    """
    folder = Path(folder)
    report = LoadReport()
    mdf, mrows = _read_delimited(folder / "movies.dat", ["item_id", "title", "genres"], "::", "latin-1")
    items = items_from_frame(mdf, mrows, file=str(folder / "movies.dat"), report=report)
    inter = _ratings(folder / "ratings.dat", "::", items, report)
    users = None
    if (folder / "users.dat").is_file():
        users, urows = _read_delimited(
            folder / "users.dat", ["user_id", "gender", "age", "occupation", "zip_code"], "::", "latin-1"
        )
        code = pd.to_numeric(users["occupation"], errors="coerce")
        bad = ~code.isin(range(len(ML1M_OCCUPATIONS))).to_numpy()
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise DataError(
                f"unknown occupation code {users['occupation'].iloc[i]!r}",
                file=str(folder / "users.dat"),
                row=int(urows[i]),
                column="occupation",
            )
        users["occupation"] = np.asarray(ML1M_OCCUPATIONS, dtype=object)[code.to_numpy(dtype=np.int64)]
        report.rows_read["users"] = len(users)
    inter.attrs.clear()
    return Dataset(inter, items, users, name="ml-1m", report=report)


def load_ml_latest(folder: PathLike, *, name: str | None = None) -> Dataset:
    """MovieLens latest-small (and 20M / 25M / 32M): ``ratings.csv`` and ``movies.csv`` (UTF-8).

    Items: ``item_id, title, genres`` plus ``tags`` (each movie's distinct tags from ``tags.csv``,
    in first-use order, joined with ``|``) when ``tags.csv`` is present.
    """
    folder = Path(folder)
    report = LoadReport()
    items = load_items(folder / "movies.csv", id_column="movieId", report=report)
    if (folder / "tags.csv").is_file():
        tags = pd.read_csv(folder / "tags.csv", dtype=str, keep_default_na=False, usecols=["movieId", "tag"])
        tags["tag"] = tags["tag"].str.strip()
        tags = tags[tags["tag"] != ""].drop_duplicates(["movieId", "tag"])
        joined = tags.groupby("movieId", sort=False)["tag"].agg("|".join)
        items["tags"] = items["item_id"].map(joined)
    inter = load_interactions(
        folder / "ratings.csv",
        columns={"user": "userId", "item": "movieId", "value": "rating"},
        report=report,
    )
    inter = check_known_items(inter, items, report=report)
    inter.attrs.clear()
    return Dataset(inter, items, None, name=name or folder.name, report=report)


# ---------------------------------------------------------------------------------------------
# finding a local copy
# ---------------------------------------------------------------------------------------------
def detect_layout(folder: PathLike) -> str | None:
    """``"ml-100k"``, ``"ml-1m"``, ``"ml-latest"`` or None, from the files in ``folder``."""
    f = Path(folder)
    if (f / "u.data").is_file() and (f / "u.item").is_file():
        return "ml-100k"
    if (f / "ratings.dat").is_file() and (f / "movies.dat").is_file():
        return "ml-1m"
    if (f / "ratings.csv").is_file() and (f / "movies.csv").is_file():
        return "ml-latest"
    return None


def data_dir() -> Path:
    """The download cache: ``$TOKREC_DATA_DIR``, else ``~/.cache/tokrec/data``."""
    env = os.environ.get("TOKREC_DATA_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "tokrec" / "data"


def _ml100k_in(folder: Path) -> Path | None:
    for cand in (folder, folder / "ml-100k"):
        if detect_layout(cand) == "ml-100k":
            return cand
    return None


def find_movielens_100k(path: PathLike | None = None) -> Path | None:
    """Finds a local MovieLens 100K folder (one holding ``u.data`` and ``u.item``).

    Looks, in order, at: ``path``; ``$TOKREC_ML100K``; the download cache
    (``$TOKREC_DATA_DIR/ml-100k``, else ``~/.cache/tokrec/data/ml-100k``); and
    ``../shared/data/ml-100k`` relative to the working directory. A folder whose ``ml-100k``
    sub-folder is the data counts too.

    Returns:
        The folder, or None when no candidate holds the data.

    Raises:
        DataError: ``path`` or ``$TOKREC_ML100K`` was given but holds no MovieLens 100K (an
            explicit choice is never silently skipped).
    """
    explicit = [("path", path), ("TOKREC_ML100K", os.environ.get("TOKREC_ML100K") or None)]
    for label, value in explicit:
        if value is None:
            continue
        found = _ml100k_in(Path(value).expanduser())
        if found is None:
            raise DataError(f"{label}={value} holds no MovieLens 100K (u.data and u.item)", file=str(value))
        return found
    for cand in (data_dir() / "ml-100k", Path.cwd().parent / "shared" / "data" / "ml-100k"):
        found = _ml100k_in(cand)
        if found is not None:
            return found
    return None


def load_movielens(path_or_name: PathLike = "ml-100k", *, download: bool = False) -> Dataset:
    """Loads MovieLens from a folder (layout auto-detected) or by name from local copies.

    Args:
        path_or_name: a folder holding a MovieLens release, or a name (``ml-100k``, ``ml-1m``,
            ``ml-latest-small``, ...) looked up with :func:`find_movielens_100k` (100K) or in the
            download cache.
        download: fetch the named release with :func:`download_movielens` when no local copy exists.

    Raises:
        DataError: nothing found (the message says where it looked and how to point at a copy).
    """
    p = Path(path_or_name).expanduser()
    if not p.is_dir():
        name = str(path_or_name)
        if name in ("100k", "1m", "latest-small", "20m", "25m", "32m"):
            name = f"ml-{name}"
        if name not in NAMES:
            raise DataError(f"no such folder, and not a MovieLens name ({', '.join(NAMES)})", file=name)
        found = (
            find_movielens_100k()
            if name == "ml-100k"
            else (data_dir() / name if (data_dir() / name).is_dir() else None)
        )
        if found is None:
            if not download:
                raise DataError(
                    f"{name} not found locally (looked in $TOKREC_ML100K, {data_dir()}, ../shared/data); "
                    f"pass its folder, or call download_movielens({name!r}) / load_movielens({name!r}, download=True)"
                )
            found = download_movielens(name)
        p = found
    layout = detect_layout(p)
    if layout is None and detect_layout(p / p.name) is not None:
        p = p / p.name  # a folder holding the unpacked archive folder
        layout = detect_layout(p)
    if layout == "ml-100k":
        return load_ml100k(p)
    if layout == "ml-1m":
        return load_ml1m(p)
    if layout == "ml-latest":
        return load_ml_latest(p)
    raise DataError(
        "not a MovieLens folder: expected u.data + u.item (100K), ratings.dat + movies.dat (1M) "
        "or ratings.csv + movies.csv (latest)",
        file=str(p),
    )


# ---------------------------------------------------------------------------------------------
# download
# ---------------------------------------------------------------------------------------------
def _fetch(url: str, out, timeout: float) -> None:
    """Streams ``url`` into the binary file ``out``; network failures become DataError."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:  # noqa: S310 (http(s) URL we build)
            shutil.copyfileobj(r, out, length=1 << 20)
    except urllib.error.HTTPError as e:
        raise DataError(f"download failed: HTTP {e.code} for {url}") from e
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise DataError(
            f"cannot download {url} ({reason}): this machine looks offline. Download the zip elsewhere, "
            "unzip it, and pass its folder (load_movielens('/path/to/ml-100k')) or set "
            "TOKREC_ML100K=/path/to/ml-100k"
        ) from e


def _md5_of(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _expected_md5(name: str, url: str, md5: str | None, timeout: float) -> str:
    if md5 is not None:
        return md5.lower()
    if name in KNOWN_MD5:
        return KNOWN_MD5[name]
    buf = io.BytesIO()
    _fetch(url + ".md5", buf, timeout)
    m = re.search(rb"\b([0-9a-fA-F]{32})\b", buf.getvalue())
    if m is None:
        raise DataError(f"no MD5 in {url}.md5; cannot verify the download")
    return m.group(1).decode().lower()


def _safe_extract(zip_path: Path, into: Path) -> None:
    with zipfile.ZipFile(zip_path) as z:
        for member in z.namelist():
            target = (into / member).resolve()
            if not target.is_relative_to(into.resolve()):
                raise DataError(f"archive member escapes the target folder: {member!r}", file=str(zip_path))
        z.extractall(into)


def download_movielens(
    name: str = "ml-100k",
    dest: PathLike | None = None,
    *,
    base_url: str = GROUPLENS_URL,
    md5: str | None = None,
    timeout: float = 60.0,
    force: bool = False,
) -> Path:
    """Downloads a GroupLens MovieLens zip, verifies its MD5 and unpacks it atomically.

    The MD5 comes from ``md5=``, else :data:`KNOWN_MD5`, else the ``<name>.zip.md5`` file
    GroupLens publishes next to the zip. The archive is unpacked into a temporary folder beside
    the target and renamed into place, so a crash never leaves a half-written ``dest/name``.

    Args:
        name: ``ml-100k``, ``ml-1m``, ``ml-latest-small``, ``ml-20m``, ``ml-25m`` or ``ml-32m``.
        dest: parent folder (default :func:`data_dir`); the data lands in ``dest/name``.
        base_url: where the zips live.
        md5: expected MD5 of the zip (overrides the built-in value).
        timeout: seconds per network operation.
        force: download again even if ``dest/name`` exists.

    Returns:
        The unpacked folder ``dest/name``.

    Raises:
        DataError: offline / HTTP error (saying how to use a local copy), checksum mismatch, bad zip.
    """
    if name not in NAMES:
        raise DataError(f"unknown MovieLens release {name!r}; use one of {', '.join(NAMES)}")
    parent = Path(dest).expanduser() if dest is not None else data_dir()
    target = parent / name
    if target.is_dir() and detect_layout(target) is not None and not force:
        return target
    parent.mkdir(parents=True, exist_ok=True)
    url = f"{base_url.rstrip('/')}/{name}.zip"
    work = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=parent))
    try:
        zip_path = work / f"{name}.zip"
        with open(zip_path, "wb") as out:
            _fetch(url, out, timeout)
        expected = _expected_md5(name, url, md5, timeout)
        got = _md5_of(zip_path)
        if got != expected:
            raise DataError(
                f"MD5 mismatch for {url}: got {got}, expected {expected}; the download is corrupt or changed"
            )
        unpacked = work / "unpacked"
        try:
            _safe_extract(zip_path, unpacked)
        except zipfile.BadZipFile as e:
            raise DataError(f"not a zip file: {e}", file=url) from e
        src = unpacked / name if (unpacked / name).is_dir() else unpacked
        if detect_layout(src) is None:
            raise DataError(f"the archive holds no MovieLens layout (looked in {name}/)", file=url)
        old = work / "old"
        if target.exists():
            os.replace(target, old)
        os.replace(src, target)
        return target
    finally:
        shutil.rmtree(work, ignore_errors=True)
