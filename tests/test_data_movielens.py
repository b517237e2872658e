"""MovieLens layouts from tiny hand-written folders, the real 100K, discovery and download."""

from __future__ import annotations

import hashlib
import http.server
import socket
import threading
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from tokrec.data.movielens import (
    ML100K_GENRES,
    detect_layout,
    download_movielens,
    find_movielens_100k,
    load_movielens,
)
from tokrec.errors import DataError


def flags(*on: str) -> str:
    return "|".join("1" if g in on else "0" for g in ML100K_GENRES)


def make_100k(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "u.data").write_text("1\t10\t5\t881250949\n2\t10\t3\t891717742\n1\t11\t4\t881250950\n")
    (folder / "u.item").write_bytes(
        (
            f"10|Mis\xe9rables, Les (1995)|01-Jan-1995||http://x|{flags('Drama', 'Musical')}\n"
            f"11|unknown|||http://y|{flags('unknown')}\n"
        ).encode("latin-1")
    )
    (folder / "u.genre").write_text("".join(f"{g}|{i}\n" for i, g in enumerate(ML100K_GENRES)) + "\n")
    (folder / "u.user").write_text("1|24|M|technician|85711\n2|53|F|other|94043\n")
    return folder


def test_load_100k_layout(tmp_path):
    ds = load_movielens(make_100k(tmp_path / "ml-100k"))
    assert ds.name == "ml-100k"
    assert ds.items.columns.tolist() == ["item_id", "title", "release_date", "genres"]
    assert ds.items["title"].tolist() == ["Misérables, Les (1995)", "unknown"]
    assert ds.items["genres"].tolist() == ["Drama|Musical", "unknown"]
    assert pd.isna(ds.items["release_date"].iloc[1])
    inter = ds.interactions
    assert inter[["user_id", "item_id"]].values.tolist() == [["1", "10"], ["2", "10"], ["1", "11"]]
    assert inter["value"].tolist() == [5.0, 3.0, 4.0]
    assert inter["timestamp"].tolist() == [881250949, 891717742, 881250950]
    assert set(inter["event"]) == {"rating"}
    assert ds.users.columns.tolist() == ["user_id", "age", "gender", "occupation", "zip_code"]
    assert ds.users["occupation"].tolist() == ["technician", "other"]
    assert ds.report.rows_read == {"items": 2, "interactions": 3, "users": 2}


def test_100k_bad_genre_flag_and_bad_timestamp(tmp_path):
    folder = make_100k(tmp_path / "a")
    (folder / "u.item").write_text(f"10|X|01-Jan-1995||u|{flags('Drama').replace('0', '2', 1)}\n")
    with pytest.raises(DataError, match="genre flag") as e:
        load_movielens(folder)
    assert (e.value.file, e.value.row, e.value.column) == (str(folder / "u.item"), 1, "unknown")
    folder = make_100k(tmp_path / "b")
    (folder / "u.data").write_text("1\t10\t5\t881250949\n1\t11\t4\tsoon\n")
    with pytest.raises(DataError, match="cannot parse timestamp 'soon'") as e:
        load_movielens(folder)
    assert (e.value.file, e.value.row, e.value.column) == (str(folder / "u.data"), 2, "timestamp")


def test_short_and_long_lines(tmp_path):
    folder = make_100k(tmp_path / "a")
    (folder / "u.data").write_text("1\t10\t5\t881250949\n1\t11\t4\n")
    with pytest.raises(DataError, match="expected 4 fields, found 3") as e:
        load_movielens(folder)
    assert (e.value.file, e.value.row) == (str(folder / "u.data"), 2)
    (folder / "u.data").write_text("1\t10\t5\t881250949\n1\t11\t4\t881250949\t7\n")
    with pytest.raises(DataError, match="expected 4 fields") as e:
        load_movielens(folder)
    assert (e.value.file, e.value.row) == (str(folder / "u.data"), 2)


def test_100k_unknown_item_in_ratings(tmp_path):
    folder = make_100k(tmp_path / "ml-100k")
    (folder / "u.data").write_text("1\t10\t5\t881250949\n1\t99\t4\t881250950\n")
    with pytest.raises(DataError, match="'99' is not in the item catalog") as e:
        load_movielens(folder)
    assert (e.value.file, e.value.row, e.value.column) == (str(folder / "u.data"), 2, "item_id")


def test_load_1m_layout(tmp_path):
    f = tmp_path / "ml-1m"
    f.mkdir()
    (f / "ratings.dat").write_text("1::1193::5::978300760\n1::661::3::978302109\n2::1193::4::978298413\n")
    (f / "movies.dat").write_bytes(
        "1193::One Flew Over the Cuckoo's Nest (1975)::Drama\n661::James and the Giant Peach (1996)::"
        "Animation|Children's|Musical\n".encode("latin-1")
    )
    (f / "users.dat").write_text("1::F::1::10::48067\n2::M::56::16::70072\n")
    ds = load_movielens(f)
    assert ds.name == "ml-1m"
    assert ds.items["item_id"].tolist() == ["1193", "661"]
    assert ds.items["genres"].tolist() == ["Drama", "Animation|Children's|Musical"]
    assert ds.interactions["item_id"].tolist() == ["1193", "661", "1193"]
    assert ds.interactions["value"].tolist() == [5.0, 3.0, 4.0]
    assert ds.interactions["timestamp"].tolist() == [978300760, 978302109, 978298413]
    assert ds.users["occupation"].tolist() == ["K-12 student", "self-employed"]
    assert ds.users["age"].tolist() == ["1", "56"]


def test_load_latest_small_layout_with_tags(tmp_path):
    f = tmp_path / "ml-latest-small"
    f.mkdir()
    (f / "ratings.csv").write_text("userId,movieId,rating,timestamp\n1,1,4.0,964982703\n1,3,4.5,964981247\n")
    (f / "movies.csv").write_text(
        'movieId,title,genres\n1,Toy Story (1995),Adventure|Animation\n3,"Grumpier Old Men, The (1995)",Comedy\n'
    )
    (f / "tags.csv").write_text("userId,movieId,tag,timestamp\n2,1,pixar,1\n3,1,fun,2\n4,1,pixar,3\n")
    ds = load_movielens(f)
    assert ds.name == "ml-latest-small"
    assert ds.items["title"].tolist() == ["Toy Story (1995)", "Grumpier Old Men, The (1995)"]
    assert ds.items["tags"].iloc[0] == "pixar|fun" and pd.isna(ds.items["tags"].iloc[1])
    assert ds.interactions["value"].tolist() == [4.0, 4.5]
    assert ds.interactions["user_id"].tolist() == ["1", "1"]


def test_not_a_movielens_folder(tmp_path):
    with pytest.raises(DataError, match="not a MovieLens folder"):
        load_movielens(tmp_path)
    assert detect_layout(tmp_path) is None
    with pytest.raises(DataError, match="not a MovieLens name"):
        load_movielens(tmp_path / "nope")


def test_find_100k_resolution_order(tmp_path, monkeypatch):
    monkeypatch.delenv("TOKREC_ML100K", raising=False)
    monkeypatch.setenv("TOKREC_DATA_DIR", str(tmp_path / "cache"))
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    assert find_movielens_100k() is None
    shared = make_100k(tmp_path / "shared" / "data" / "ml-100k")
    assert find_movielens_100k() == shared  # ../shared/data/ml-100k
    cached = make_100k(tmp_path / "cache" / "ml-100k")
    assert find_movielens_100k() == cached  # the download cache wins over ../shared
    env = make_100k(tmp_path / "env")
    monkeypatch.setenv("TOKREC_ML100K", str(env))
    assert find_movielens_100k() == env
    explicit = make_100k(tmp_path / "x" / "ml-100k")
    assert find_movielens_100k(tmp_path / "x") == explicit  # a parent of ml-100k/ is fine
    with pytest.raises(DataError, match="holds no MovieLens 100K"):
        find_movielens_100k(tmp_path / "shared")
    monkeypatch.setenv("TOKREC_ML100K", str(tmp_path / "missing"))
    with pytest.raises(DataError, match="TOKREC_ML100K="):
        find_movielens_100k()


def test_load_by_name_uses_discovery(tmp_path, monkeypatch):
    monkeypatch.setenv("TOKREC_ML100K", str(make_100k(tmp_path / "m")))
    assert len(load_movielens("ml-100k")) == 3
    monkeypatch.setenv("TOKREC_DATA_DIR", str(tmp_path / "empty"))
    with pytest.raises(DataError, match="ml-1m not found locally"):
        load_movielens("ml-1m")


# ---- download ---------------------------------------------------------------------------------
def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the block ends


def test_download_offline_is_a_clear_error(tmp_path):
    url = f"http://127.0.0.1:{closed_port()}"
    with pytest.raises(DataError, match="looks offline.*TOKREC_ML100K") as e:
        download_movielens("ml-100k", tmp_path, base_url=url, timeout=5)
    assert "/ml-100k.zip" in str(e.value)
    assert list(tmp_path.iterdir()) == []  # nothing half-written


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "www"
    root.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **k):
            super().__init__(*a, directory=str(root), **k)

        def log_message(self, *a):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def zip_folder(src: Path, zip_path: Path, arcname: str) -> str:
    with zipfile.ZipFile(zip_path, "w") as z:
        for f in sorted(src.iterdir()):
            z.write(f, f"{arcname}/{f.name}")
    return hashlib.md5(zip_path.read_bytes()).hexdigest()


def test_download_verifies_builtin_md5(tmp_path, server):
    root, url = server
    digest = zip_folder(make_100k(tmp_path / "src"), root / "ml-100k.zip", "ml-100k")
    dest = tmp_path / "data"
    with pytest.raises(DataError, match="MD5 mismatch.*expected 0e33842e24a9c977be4e0107933c0723"):
        download_movielens("ml-100k", dest, base_url=url)
    assert list(dest.iterdir()) == []  # the temporary folder is gone, no ml-100k/
    got = download_movielens("ml-100k", dest, base_url=url, md5=digest)
    assert got == dest / "ml-100k"
    assert len(load_movielens(got)) == 3
    assert sorted(p.name for p in dest.iterdir()) == ["ml-100k"]


def test_download_uses_md5_sidecar(tmp_path, server):
    root, url = server
    src = tmp_path / "src"
    src.mkdir()
    (src / "ratings.csv").write_text("userId,movieId,rating,timestamp\n1,1,4.0,964982703\n")
    (src / "movies.csv").write_text("movieId,title,genres\n1,Toy Story (1995),Animation\n")
    digest = zip_folder(src, root / "ml-latest-small.zip", "ml-latest-small")
    (root / "ml-latest-small.zip.md5").write_text(f"MD5 (ml-latest-small.zip) = {'0' * 32}\n")
    with pytest.raises(DataError, match="MD5 mismatch"):
        download_movielens("ml-latest-small", tmp_path / "d", base_url=url)
    (root / "ml-latest-small.zip.md5").write_text(f"MD5 (ml-latest-small.zip) = {digest}\n")
    got = download_movielens("ml-latest-small", tmp_path / "d", base_url=url)
    assert load_movielens(got).items["title"].tolist() == ["Toy Story (1995)"]


def test_download_http_404(tmp_path, server):
    _, url = server
    with pytest.raises(DataError, match="HTTP 404"):
        download_movielens("ml-1m", tmp_path / "d", base_url=url)


# ---- the real MovieLens 100K ------------------------------------------------------------------
@pytest.mark.realdata
def test_real_ml100k(shared):
    folder = shared / "data" / "ml-100k"
    ds = load_movielens(folder)
    assert (ds.n_users, ds.n_items, len(ds)) == (943, 1682, 100000)
    assert ds.users is not None and len(ds.users) == 943
    assert ds.interactions["value"].value_counts().sort_index().tolist() == [6110, 11370, 27145, 34174, 21201]
    assert ds.interactions["timestamp"].min() == 874724710
    items_csv = shared / "data" / "ml-100k-splits" / "items.csv"
    if items_csv.is_file():  # the benchmark's item text columns
        ref = pd.read_csv(items_csv, dtype=str)
        pd.testing.assert_frame_equal(ds.items.astype(object), ref.astype(object))
    assert find_movielens_100k(folder) == folder
