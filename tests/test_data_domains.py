"""Loaders of public formats (MIND, HetRec Last.fm, listening logs, Amazon 2014/2018), with fixtures
written here in each format's documented layout."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from tokrec.data import load_dataset, load_items
from tokrec.data.amazon import load_amazon
from tokrec.data.domains import detect
from tokrec.data.lastfm import load_lastfm, load_listening_events
from tokrec.data.mind import load_mind
from tokrec.errors import DataError

ENT = json.dumps(
    [
        {
            "Label": "Miami Dolphins",
            "Type": "O",
            "WikidataId": "Q223522",
            "Confidence": 1.0,
            "OccurrenceOffsets": [0],
            "SurfaceForms": ["Dolphins"],
        }
    ]
)


def write_mind(d: Path, behaviors: str | None = None) -> tuple[Path, Path]:
    d.mkdir(parents=True, exist_ok=True)
    news = d / "news.tsv"
    news.write_text(
        f'N1\tsports\tfootball_nfl\tDolphins win "again"\tMiami beat the Jets.\thttps://assets.msn.com/a.html\t{ENT}\t[]\n'
        "N2\tnews\tnewsus\tStorm hits coast\t\thttps://assets.msn.com/b.html\t[]\t[]\n"
        "N3\tlifestyle\tlifestyleroyals\tThe royal wedding\tA look back.\thttps://assets.msn.com/c.html\t\t\n"
        "N4\tsports\tbaseball\tSeries opens\tGame one tonight.\thttps://assets.msn.com/d.html\t[]\t[]\n",
        encoding="utf-8",
    )
    beh = d / "behaviors.tsv"
    beh.write_text(
        behaviors
        or (
            "1\tU1\t11/11/2019 9:05:58 AM\tN1 N2\tN3-1 N2-0 N4-0\n"
            "2\tU2\t11/12/2019 10:00:00 PM\t\tN1-0 N3-1 N2-0\n"
            "3\tU1\t11/13/2019 1:00:00 AM\tN1 N2\tN4-1 N3-0\n"
        ),
        encoding="utf-8",
    )
    return news, beh


def test_mind_reads_news_clicks_history_and_non_clicks(tmp_path):
    news, beh = write_mind(tmp_path)
    ds = load_dataset(news, beh)  # recognised from the first lines
    assert list(ds.items.columns) == ["item_id", "title", "category", "subcategory", "abstract", "entities"]
    assert ds.items.loc[0, "title"] == 'Dolphins win "again"'
    assert ds.items.loc[0, "entities"] == "Miami Dolphins"
    assert np.isnan(ds.items.loc[1, "abstract"])
    inter = ds.interactions
    assert inter[["user_id", "item_id", "source"]].values.tolist() == [
        ["U1", "N1", "history"],
        ["U1", "N2", "history"],
        ["U1", "N3", "impression"],
        ["U2", "N3", "impression"],
        ["U1", "N4", "impression"],
    ]
    assert (inter["event"] == "click").all()
    # history clicks sit one second apart, just before the user's first impression (9:05:58 AM UTC)
    assert inter["timestamp"].tolist()[:3] == [1573463156, 1573463157, 1573463158]
    imp = ds.impressions
    assert len(imp) == 8 and int(imp["label"].sum()) == 3
    assert imp[imp["impression_id"] == "1"][["item_id", "label", "position"]].values.tolist() == [
        ["N3", 1, 0],
        ["N2", 0, 1],
        ["N4", 0, 2],
    ]


@pytest.mark.parametrize(
    "line,row,column",
    [
        ("1\tU1\t13/45/2019 9:05:58 AM\tN1\tN3-1\n", 1, "time"),
        (
            "1\tU1\t11/11/2019 9:05:58 AM\tN1\tN3-1 N2-0\n2\tU2\t11/11/2019 9:05:58 AM\t\tN3-1 N2\n",
            2,
            "impressions",
        ),
        ("1\tU1\t11/11/2019 9:05:58 AM\tN1\tN3-1 N2-7\n", 1, "impressions"),
        ("1\tU1\t11/11/2019 9:05:58 AM\tN1 N9\tN3-1\n", 1, "history"),
        ("1\tU1\t11/11/2019 9:05:58 AM\tN3-1\n", 1, "impressions"),
    ],
)
def test_mind_bad_behaviors_rows_name_file_row_column(tmp_path, line, row, column):
    news, beh = write_mind(tmp_path, behaviors=line)
    with pytest.raises(DataError) as e:
        load_mind(news, beh)
    assert (e.value.file, e.value.row, e.value.column) == (str(beh), row, column)


def test_mind_bad_entities_name_the_row(tmp_path):
    news, beh = write_mind(tmp_path)
    lines = news.read_text().splitlines()
    lines[1] = lines[1].replace("\t[]\t[]", "\t[{oops\t[]")
    news.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError) as e:
        load_mind(news, beh)
    assert (e.value.row, e.value.column) == (2, "title_entities")


def write_lastfm(d: Path) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    (d / "artists.dat").write_text(
        "id\tname\turl\tpictureURL\n"
        "1\tMALICE MIZER\thttp://www.last.fm/music/MALICE+MIZER\thttp://userserve-ak.last.fm/serve/252/10808.jpg\n"
        "2\tDiary of Dreams\thttp://www.last.fm/music/Diary+of+Dreams\thttp://userserve-ak.last.fm/serve/252/3052066.jpg\n"
        "3\tCarpathian Forest\thttp://www.last.fm/music/Carpathian+Forest\t\n"
    )
    (d / "user_artists.dat").write_text(
        "userID\tartistID\tweight\n2\t1\t13883\n2\t2\t11690\n3\t3\t228\n3\t1\t5\n"
    )
    (d / "tags.dat").write_bytes(
        "tagID\ttagValue\n1\tmetal\n2\tj-rock\n3\tdark\n4\tgoth\xe9\n".encode("latin-1")
    )
    (d / "user_taggedartists.dat").write_text(
        "userID\tartistID\ttagID\tday\tmonth\tyear\n"
        "2\t1\t2\t1\t4\t2009\n3\t1\t2\t1\t4\t2009\n2\t1\t3\t1\t4\t2009\n2\t2\t3\t1\t4\t2009\n3\t3\t1\t1\t4\t2009\n3\t2\t4\t1\t4\t2009\n"
    )
    return d


def test_lastfm_play_counts_and_tags(tmp_path):
    d = write_lastfm(tmp_path)
    ds = load_dataset(d / "artists.dat", d / "user_artists.dat")
    assert ds.interactions[["user_id", "item_id", "event", "value"]].values.tolist() == [
        ["2", "1", "play", 13883.0],
        ["2", "2", "play", 11690.0],
        ["3", "3", "play", 228.0],
        ["3", "1", "play", 5.0],
    ]
    assert ds.items["tags"].tolist() == ["j-rock, dark", "dark, gothé", "metal"]
    assert "url" not in ds.items.columns
    users = ds.users.set_index("user_id")["tags"].to_dict()
    assert users == {"2": "dark, j-rock", "3": "j-rock, metal, gothé"}  # user 2 tagged "dark" twice
    assert any("Latin-1" in n for n in ds.report.notes)
    assert load_items(d / "artists.dat")["tags"].tolist() == ["j-rock, dark", "dark, gothé", "metal"]


def test_lastfm_bad_rows(tmp_path):
    d = write_lastfm(tmp_path)
    (d / "user_artists.dat").write_text("userID\tartistID\tweight\n2\t1\t13883\n2\t2\tlots\n")
    with pytest.raises(DataError) as e:
        load_lastfm(d / "user_artists.dat")
    assert (e.value.row, e.value.column) == (3, "weight")
    (d / "user_artists.dat").write_text("userID\tartistID\tweight\n2\t1\t13883\n2\t9\t1\n")
    with pytest.raises(DataError) as e:
        load_lastfm(d / "user_artists.dat")
    assert (e.value.row, e.value.column) == (3, "artistID")
    (d / "user_artists.dat").write_text("userID\tartistID\tweight\n2\t1\n")
    with pytest.raises(DataError) as e:
        load_lastfm(d / "user_artists.dat")
    assert (e.value.row, e.value.column) == (2, "weight")


def test_listening_log_lastfm_1k_and_generic(tmp_path):
    p = tmp_path / "userid-timestamp-artid-artname-traid-traname.tsv"
    p.write_text(
        "user_000001\t2009-05-04T23:08:57Z\tf1b1cf71-bd35-4e99-8624-24a6e15f133a\tDeep Dish\t\tFuck Me Im Famous\n"
        "user_000001\t2009-05-04T13:54:10Z\ta7f7df4a-77d8-4f12-8acd-5c60c93f4de8\t坂本龍一\tb6d55e6c\tComposition 0919\n"
        "user_000002\t2009-05-05T10:00:00Z\ta7f7df4a-77d8-4f12-8acd-5c60c93f4de8\t坂本龍一\tb6d55e6c\tComposition 0919\n"
    )
    assert detect(p, p) == "listening"
    ds = load_dataset(p, p)
    assert ds.items["item_id"].tolist() == ["Deep Dish - Fuck Me Im Famous", "b6d55e6c"]
    assert ds.items["artist_name"].tolist() == ["Deep Dish", "坂本龍一"]
    assert ds.interactions["timestamp"].tolist() == [1241478537, 1241445250, 1241517600]
    assert ds.sequences()[0].tolist() == [1, 0]  # time order
    assert ds.users is None  # no profile file beside the log
    # Last.fm 1K's profile file next to the log: the user table (a user without plays is a new user)
    prof = tmp_path / "userid-profile.tsv"
    prof.write_text(
        "#id\tgender\tage\tcountry\tregistered\n"
        "user_000001\tm\t\tJapan\tAug 13, 2006\n"
        "user_000002\tf\t25\tPeru\tFeb 24, 2006\n"
        "user_000003\t\t31\tUnited States\tOct 30, 2005\n"
    )
    ds = load_dataset(p, p)
    assert ds.users is not None and ds.users.columns.tolist() == [
        "user_id",
        "gender",
        "age",
        "country",
        "registered",
    ]
    assert ds.users["country"].tolist() == ["Japan", "Peru", "United States"] and ds.users[
        "age"
    ].isna().tolist() == [
        True,
        False,
        False,
    ]
    assert ds.n_users == 3 and len(ds.sequences()[2]) == 0  # user_000003: described, no plays
    assert "users: userid-profile.tsv (3 users)" in ds.report.notes
    prof.write_text(
        "#id\tgender\tage\tcountry\tregistered\nuser_000001\tm\t\tJapan\t\nuser_000001\tf\t\t\t\n"
    )
    with pytest.raises(DataError) as e:
        load_dataset(p, p)
    assert (e.value.row, e.value.column) == (3, "#id") and "userid-profile.tsv" in str(e.value)
    prof.unlink()
    g = tmp_path / "plays.csv"
    g.write_text("user,track_id,timestamp,track_name\nu1,t1,2020-01-01,Song A\nu1,t2,2020-01-02,Song B\n")
    ds = load_dataset(g, g)
    assert ds.items[["item_id", "track_name"]].values.tolist() == [["t1", "Song A"], ["t2", "Song B"]]
    p.write_text("user_000001\tnot-a-time-at-all\ta\tb\tc\td\n")
    with pytest.raises(DataError) as e:
        load_listening_events(p)
    assert (e.value.row, e.value.column) == (1, "timestamp")


META_2014 = [
    "{'asin': 'B001', 'title': 'Rose Lip Balm', 'price': 3.17, 'imUrl': 'http://ecx.images-amazon.com/1.jpg', "
    "'related': {'also_bought': ['B002'], 'also_viewed': ['B003']}, 'salesRank': {'Beauty': 211836}, "
    "'brand': 'Coxlita', 'categories': [['Beauty', 'Skin Care', 'Lips']], 'description': \"Soft lips, it's true.\"}",
    "{'asin': 'B002', 'title': 'Night Cream', 'categories': [['Beauty', 'Skin Care'], ['Beauty', 'Face']]}",
]
REVIEWS = [
    {"reviewerID": "A2SUAM1J3GNN3B", "asin": "B001", "reviewerName": "J. McDonald", "helpful": [2, 3],
     "reviewText": "Great.", "overall": 5.0, "summary": "Heavenly", "unixReviewTime": 1252800000, "reviewTime": "09 13, 2009"},
    {"reviewerID": "A2SUAM1J3GNN3B", "asin": "B002", "overall": 3.0, "unixReviewTime": 1252900000},
    {"reviewerID": "AXYZ", "asin": "B999", "overall": 4.0, "unixReviewTime": 1252900000},
]  # fmt: skip


def test_amazon_2014_literal_metadata(tmp_path):
    meta = tmp_path / "meta_Beauty.json.gz"
    meta.write_bytes(gzip.compress(("\n".join(META_2014) + "\n").encode()))
    rev = tmp_path / "reviews_Beauty_5.json.gz"
    rev.write_bytes(gzip.compress("".join(json.dumps(r) + "\n" for r in REVIEWS).encode()))
    ds = load_dataset(meta, rev)
    assert ds.items.loc[0, ["title", "brand", "category", "price"]].tolist() == [
        "Rose Lip Balm", "Coxlita", "Beauty > Skin Care > Lips", 3.17,
    ]  # fmt: skip
    assert ds.items.loc[1, "category"] == "Beauty > Skin Care | Beauty > Face"
    assert ds.items.loc[0, "description"] == "Soft lips, it's true."
    assert ds.interactions[["user_id", "item_id", "value", "timestamp"]].values.tolist() == [
        ["A2SUAM1J3GNN3B", "B001", 5.0, 1252800000],
        ["A2SUAM1J3GNN3B", "B002", 3.0, 1252900000],
    ]
    assert ds.report.filtered == {"interactions with unknown items": 1}


def test_amazon_2018_json_metadata_and_errors(tmp_path):
    meta = tmp_path / "meta_All_Beauty.json"
    recs = [
        {"category": ["All Beauty", "Hair"], "description": ["Gentle.", "<b>Daily</b> use."], "title": "Shampoo",
         "also_buy": ["B00X"], "brand": "Acme", "price": "$9.99", "asin": "B00A", "imageURL": ["http://i/1.jpg"],
         "feature": [], "main_cat": "All Beauty"},
        {"asin": "B00B", "title": "Comb", "price": "", "description": [], "category": []},
    ]  # fmt: skip
    meta.write_text("".join(json.dumps(r) + "\n" for r in recs))
    rev = tmp_path / "All_Beauty.json"
    rev.write_text(
        json.dumps({"overall": 5.0, "verified": True, "reviewTime": "09 1, 2016", "reviewerID": "A3C",
                    "asin": "B00A", "style": {"Size:": "7.0 oz"}, "reviewerName": "S", "reviewText": "ok",
                    "summary": "Five Stars", "unixReviewTime": 1472688000}) + "\n"
        + json.dumps({"overall": 4.0, "reviewerID": "A3C", "asin": "B00B", "unixReviewTime": 1472689000}) + "\n"
    )  # fmt: skip
    ds = load_amazon(rev, meta)
    assert ds.items.loc[0, ["category", "description", "price"]].tolist() == [
        "All Beauty > Hair", "Gentle. Daily  use.", 9.99,
    ]  # fmt: skip
    assert np.isnan(ds.items.loc[1, "price"])
    assert len(ds) == 2
    from tokrec.data.amazon import read_amazon_meta

    assert read_amazon_meta(meta)["also_buy"].tolist() == [["B00X"], []]
    rev.write_text(
        rev.read_text() + '{"overall": "five", "reviewerID": "A", "asin": "B00A", "unixReviewTime": 1}\n'
    )
    with pytest.raises(DataError) as e:
        load_amazon(rev, meta)
    assert (e.value.file, e.value.row, e.value.column) == (str(rev), 3, "overall")
    rev.write_text('{"overall": 5.0, "reviewerID": "A", "asin": "B00A"}\n')
    with pytest.raises(DataError) as e:
        load_amazon(rev, meta)
    assert (e.value.row, e.value.column) == (1, "unixReviewTime")
    meta.write_text(meta.read_text() + "{'asin': 'B00C', 'title': \n")
    with pytest.raises(DataError) as e:
        load_amazon(rev, meta)
    assert (e.value.file, e.value.row) == (str(meta), 3)


def test_generic_files_are_not_taken_for_a_public_format(tmp_path):
    items = tmp_path / "news.tsv"
    items.write_text("item_id\ttitle\nN1\tHello\n")
    inter = tmp_path / "behaviors.tsv"
    inter.write_text("user_id\titem_id\nu1\tN1\n")
    assert detect(items, inter) is None
    ds = load_dataset(items, inter)
    assert ds.impressions is None and len(ds) == 1


def test_evaluate_cli_runs_mind_impression_protocol(tmp_path, capsys):
    from tokrec.cli.main import main

    news, beh = write_mind(tmp_path / "train")
    dev = tmp_path / "dev" / "behaviors.tsv"
    dev.parent.mkdir()
    dev.write_text(
        "10\tU1\t11/15/2019 9:05:58 AM\tN1 N2\tN4-1 N3-0 N1-0\n11\tU3\t11/15/2019 10:00:00 AM\tN3\tN1-1 N2-0\n"
    )
    argv = ["evaluate", "--items", str(news), "--interactions", str(beh), "--test", str(dev)]
    assert main([*argv, "--models", "popularity", "--output-dir", str(tmp_path / "ev")]) == 0
    got = json.loads((tmp_path / "ev" / "impressions.json").read_text())["models"]["popularity"]
    # training clicks per news: N3 by U1, U2 and (dev history) U3; N1, N2, N4 by one user each.
    # impression 10: the clicked N4 loses to N3 and ties N1 -> AUC 0.25; impression 11: N1 ties N2 -> 0.5
    assert got["auc"] == pytest.approx(0.375)
    assert got["impressions"] == 2 and got["unknown_user_impressions"] == 0
    dev.write_text("10\tU1\t11/15/2019 9:05:58 AM\tN1\tN7-1 N3-0\n")
    assert main([*argv, "--models", "popularity", "--output-dir", str(tmp_path / "ev")]) == 2
    assert "row 1, column 'impressions'" in capsys.readouterr().err


def test_jsonl_catalog_with_an_asin_field_stays_generic(tmp_path):
    items = tmp_path / "items.jsonl"
    items.write_text('{"item_id": "B1", "asin": "B1", "title": "Lip balm"}\n')
    assert load_items(items).columns.tolist() == ["item_id", "asin", "title"]
