"""Generic loaders: formats, column mapping, timestamps and every validation error."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tokrec.data.dataset import ids_in
from tokrec.data.loaders import (
    detect_format,
    load_dataset,
    load_interactions,
    load_items,
    load_users,
    parse_timestamps,
)
from tokrec.errors import ConfigError, DataError

ITEMS = "item_id,title,genres\n007,Spy Story,Action\n1,Toy Story,Animation|Comedy\n2,Heat,\n"
INTER = "user_id,item_id,rating,timestamp\n10,007,5,100\n10,1,3,200\n11,2,4,150\n"


def write(tmp_path: Path, name: str, text: str | bytes) -> Path:
    p = tmp_path / name
    if isinstance(text, bytes):
        p.write_bytes(text)
    else:
        p.write_text(text, encoding="utf-8")
    return p


def assert_where(err: DataError, file: Path, row: int | None, column: str | None) -> None:
    assert err.file == str(file)
    assert err.row == row
    assert err.column == column
    msg = str(err)
    assert str(file) in msg
    if row is not None:
        assert f"row {row}" in msg
    if column is not None:
        assert f"column '{column}'" in msg


# ---- happy paths ------------------------------------------------------------------------------
def test_ids_in_answers_as_isin_for_every_container() -> None:
    values = pd.Series(["a", "b", None, "c", "a", "007"], dtype="str")
    expect = [True, False, False, True, True, True]
    for allowed in (
        ["a", "c", "007"],
        {"a", "c", "007"},
        np.array(["a", "c", "007"]),
        pd.Index(["a", "c", "007"]),
    ):
        assert ids_in(values, allowed).tolist() == expect
        assert ids_in(values, allowed).tolist() == values.isin(list(allowed)).tolist()
    assert ids_in(["7", "8"], iter(["8"])).tolist() == [False, True]  # any iterable, read once
    assert ids_in(pd.Series(["7"]), [7]).tolist() == [False]  # ids compare as given: "7" is not 7
    assert ids_in([], ["a"]).dtype == bool and ids_in(values, []).tolist() == [False] * 6


def test_csv_dataset_keeps_ids_as_written(tmp_path):
    ds = load_dataset(items=write(tmp_path, "items.csv", ITEMS), interactions=write(tmp_path, "i.csv", INTER))
    assert ds.items["item_id"].tolist() == ["007", "1", "2"]
    assert ds.items["title"].tolist() == ["Spy Story", "Toy Story", "Heat"]
    assert pd.isna(ds.items["genres"].iloc[2])  # empty cell -> missing
    inter = ds.interactions
    assert inter["user_id"].tolist() == ["10", "10", "11"]
    assert inter["item_id"].tolist() == ["007", "1", "2"]
    assert inter["value"].tolist() == [5.0, 3.0, 4.0]
    assert inter["event"].tolist() == ["rating"] * 3
    assert inter["timestamp"].tolist() == [100, 200, 150]
    assert inter["timestamp"].dtype == np.int64
    assert ds.n_users == 2 and ds.n_items == 3
    assert ds.name == "i"
    assert ds.report.rows_read == {"items": 3, "interactions": 3}
    assert ds.report.summary() == "items: 3 rows; interactions: 3 rows; filtered: none"


def test_interactions_without_optional_columns(tmp_path):
    df = load_interactions(write(tmp_path, "i.csv", "user_id,item_id,extra\na,x,foo\nb,y,bar\n"))
    assert df.columns.tolist() == ["user_id", "item_id", "timestamp", "event", "value", "extra"]
    assert df["timestamp"].tolist() == [0, 1]
    assert df["event"].tolist() == ["interaction", "interaction"]
    assert df["value"].tolist() == [1.0, 1.0]
    assert df["extra"].tolist() == ["foo", "bar"]


def test_column_mapping(tmp_path):
    p = write(tmp_path, "log.csv", "uid,movie,ts,action,stars\nu1,m1,5,click,\nu1,m2,6,rating,4.5\n")
    df = load_interactions(
        p, columns={"user": "uid", "item": "movie", "timestamp": "ts", "event": "action", "value": "stars"}
    )
    assert df[["user_id", "item_id", "timestamp", "event"]].values.tolist() == [
        ["u1", "m1", 5, "click"],
        ["u1", "m2", 6, "rating"],
    ]
    assert df["value"].tolist() == [1.0, 4.5]  # no value on a click -> 1.0
    assert "uid" not in df.columns and "stars" not in df.columns


def test_column_mapping_unknown_key_and_missing_source(tmp_path):
    p = write(tmp_path, "log.csv", "uid,movie\nu1,m1\n")
    with pytest.raises(ConfigError, match="unknown key 'person'"):
        load_interactions(p, columns={"person": "uid", "item": "movie"})
    with pytest.raises(DataError) as e:
        load_interactions(p, columns={"user": "uid", "item": "film"})
    assert_where(e.value, p, 1, "film")


def test_iso_and_epoch_timestamps(tmp_path):
    p = write(
        tmp_path,
        "i.csv",
        "user_id,item_id,timestamp\n"
        "a,x,2020-01-01T00:00:00Z\n"
        "a,y,2020-01-01\n"
        "a,z,1577836801\n"
        "a,w,2020-01-01T01:00:00+01:00\n"
        "a,v,2020-01-01 00:00:10\n"
        "a,u,1995-01-01\n",
    )
    df = load_interactions(p)
    assert df["timestamp"].tolist() == [1577836800, 1577836800, 1577836801, 1577836800, 1577836810, 788918400]
    # only epoch seconds and ISO-8601: MovieLens' "01-Jan-1995" (a release date, not a timestamp) is named
    bad = write(tmp_path, "j.csv", "user_id,item_id,timestamp\na,x,1\na,u,01-Jan-1995\n")
    with pytest.raises(DataError, match="cannot parse timestamp '01-Jan-1995'") as e:
        load_interactions(bad)
    assert_where(e.value, bad, 3, "timestamp")


def test_parse_timestamps_floors_fractional_epoch():
    s = pd.Series(["10.9", "11"])
    assert parse_timestamps(s, np.array([2, 3]), file="f", column="t").tolist() == [10, 11]


@pytest.mark.parametrize("fmt", ["parquet", "jsonl", "tsv"])
def test_other_formats_match_csv(tmp_path, fmt):
    ref = load_dataset(
        items=write(tmp_path, "items.csv", ITEMS), interactions=write(tmp_path, "i.csv", INTER)
    )
    items = pd.DataFrame({"item_id": ["007", "1", "2"], "title": ["Spy Story", "Toy Story", "Heat"]})
    inter = pd.DataFrame(
        {
            "user_id": [10, 10, 11],
            "item_id": ["007", "1", "2"],
            "rating": [5, 3, 4],
            "timestamp": [100, 200, 150],
        }
    )
    if fmt == "parquet":
        items.to_parquet(tmp_path / "items.parquet")
        inter.to_parquet(tmp_path / "i.parquet")
    elif fmt == "jsonl":
        items.to_json(tmp_path / "items.jsonl", orient="records", lines=True)
        inter.to_json(tmp_path / "i.jsonl", orient="records", lines=True)
    else:
        items.to_csv(tmp_path / "items.tsv", sep="\t", index=False)
        inter.to_csv(tmp_path / "i.tsv", sep="\t", index=False)
    ds = load_dataset(items=tmp_path / f"items.{fmt}", interactions=tmp_path / f"i.{fmt}")
    pd.testing.assert_frame_equal(ds.interactions, ref.interactions)
    assert ds.items["item_id"].tolist() == ["007", "1", "2"]


def test_float_ids_from_parquet_lose_the_decimal(tmp_path):
    pd.DataFrame({"item_id": [1.0, 2.0, np.nan], "title": ["a", "b", "c"]}).to_parquet(
        tmp_path / "items.parquet"
    )
    with pytest.raises(DataError) as e:
        load_items(tmp_path / "items.parquet")
    assert_where(e.value, tmp_path / "items.parquet", 3, "item_id")
    pd.DataFrame({"item_id": [1.0, 2.0], "title": ["a", "b"]}).to_parquet(tmp_path / "ok.parquet")
    assert load_items(tmp_path / "ok.parquet")["item_id"].tolist() == ["1", "2"]


def test_format_override_and_detection(tmp_path):
    p = write(tmp_path, "items.txt", ITEMS)
    with pytest.raises(DataError, match="cannot tell the format"):
        load_items(p)
    assert load_items(p, format="csv")["item_id"].tolist() == ["007", "1", "2"]
    assert detect_format("x.jsonl.gz") == "jsonl"
    with pytest.raises(ConfigError):
        detect_format("x.csv", "xlsx")


def test_items_id_column_is_renamed(tmp_path):
    p = write(tmp_path, "items.csv", "sku,name\nA1,shoe\nA2,sock\n")
    df = load_items(p, id_column="sku")
    assert df.columns.tolist() == ["item_id", "name"]
    assert df["item_id"].tolist() == ["A1", "A2"]


# ---- validation errors name file / row / column --------------------------------------------
def test_missing_required_column(tmp_path):
    p = write(tmp_path, "i.csv", "user_id,movie\n1,2\n")
    with pytest.raises(DataError, match="missing required column") as e:
        load_interactions(p)
    assert_where(e.value, p, 1, "item_id")
    p2 = write(tmp_path, "items.csv", "id,title\n1,a\n")
    with pytest.raises(DataError) as e2:
        load_items(p2)
    assert_where(e2.value, p2, 1, "item_id")


def test_duplicate_item_ids(tmp_path):
    p = write(tmp_path, "items.csv", "item_id,title\n1,a\n2,b\n1,c\n")
    with pytest.raises(DataError, match=r"duplicate item id '1' \(first at row 2") as e:
        load_items(p)
    assert_where(e.value, p, 4, "item_id")


def test_unknown_items_error_and_drop(tmp_path):
    items = write(tmp_path, "items.csv", ITEMS)
    inter = write(tmp_path, "i.csv", INTER + "12,999,4,300\n12,1,4,310\n13,998,1,5\n")
    with pytest.raises(DataError, match="'999' is not in the item catalog") as e:
        load_dataset(items=items, interactions=inter)
    assert_where(e.value, inter, 5, "item_id")
    assert "2 interactions reference unknown items" in str(e.value)
    ds = load_dataset(items=items, interactions=inter, unknown_items="drop")
    assert len(ds) == 4
    assert ds.report.filtered == {"interactions with unknown items": 2}
    assert "interactions with unknown items=2" in ds.report.summary()
    assert ds.report.rows_read["interactions"] == 6


def test_unparsable_timestamp(tmp_path):
    p = write(tmp_path, "i.csv", "user_id,item_id,timestamp\na,x,100\na,y,yesterday\n")
    with pytest.raises(DataError, match="cannot parse timestamp 'yesterday'") as e:
        load_interactions(p)
    assert_where(e.value, p, 3, "timestamp")


def test_empty_timestamp_cell(tmp_path):
    p = write(tmp_path, "i.csv", "user_id,item_id,timestamp\na,x,100\na,y,\n")
    with pytest.raises(DataError, match="missing timestamp") as e:
        load_interactions(p)
    assert_where(e.value, p, 3, "timestamp")


def test_non_numeric_rating(tmp_path):
    p = write(tmp_path, "i.csv", "user_id,item_id,rating\na,x,4\na,y,4\na,z,five\n")
    with pytest.raises(DataError, match="not a number: 'five'") as e:
        load_interactions(p)
    assert_where(e.value, p, 4, "rating")


def test_missing_rating_without_event_column(tmp_path):
    p = write(tmp_path, "i.csv", "user_id,item_id,rating\na,x,4\na,y,\n")
    with pytest.raises(DataError, match="missing rating") as e:
        load_interactions(p)
    assert_where(e.value, p, 3, "rating")


def test_zero_byte_and_header_only_files(tmp_path):
    p = write(tmp_path, "i.csv", b"")
    with pytest.raises(DataError, match="0 bytes") as e:
        load_interactions(p)
    assert_where(e.value, p, None, None)
    p2 = write(tmp_path, "items.csv", "item_id,title\n")
    with pytest.raises(DataError, match="no data rows \\(only a header\\)") as e2:
        load_items(p2)
    assert e2.value.file == str(p2)
    p3 = write(tmp_path, "i.jsonl", "\n\n")
    with pytest.raises(DataError, match="no records"):
        load_interactions(p3)


def test_bad_utf8_names_row_and_column_and_encoding_option(tmp_path):
    raw = "item_id,title\n1,Heat\n2,Mis\xe9rables\n".encode("latin-1")
    p = write(tmp_path, "items.csv", raw)
    with pytest.raises(DataError, match="cannot decode byte 0xe9 as utf-8") as e:
        load_items(p)
    assert_where(e.value, p, 3, "title")
    assert load_items(p, encoding="latin-1")["title"].tolist() == ["Heat", "Misérables"]


def test_bad_utf8_in_jsonl(tmp_path):
    raw = b'{"item_id": 1, "title": "a"}\n{"item_id": 2, "title": "Mis\xe9rables"}\n'
    p = write(tmp_path, "items.jsonl", raw)
    with pytest.raises(DataError) as e:
        load_items(p)
    assert_where(e.value, p, 2, None)


def test_missing_ids_error_or_drop_counted(tmp_path):
    items = write(tmp_path, "items.csv", ITEMS)
    inter = write(tmp_path, "i.csv", INTER + ",1,4,300\n12, ,4,300\n")
    with pytest.raises(DataError, match="missing id") as e:
        load_dataset(items=items, interactions=inter)
    assert_where(e.value, inter, 5, "user_id")
    with pytest.raises(ConfigError, match="empty_ids"):
        load_dataset(items=items, interactions=inter, empty_ids="skip")  # type: ignore[arg-type]
    ds = load_dataset(items=items, interactions=inter, empty_ids="drop")
    assert len(ds) == 3
    assert ds.report.filtered == {
        "interaction rows with empty user_id": 1,
        "interaction rows with empty item_id": 1,
    }
    assert "interaction rows with empty user_id=1" in ds.report.summary()


def test_duplicate_interactions_drop_counted(tmp_path):
    items = write(tmp_path, "items.csv", ITEMS)
    inter = write(tmp_path, "i.csv", INTER + "10,007,5,100\n10,007,5,100\n")
    ds = load_dataset(items=items, interactions=inter)
    assert len(ds) == 5  # kept by default
    ds = load_dataset(items=items, interactions=inter, duplicates="drop")
    assert len(ds) == 3
    assert ds.report.filtered == {"duplicate interaction rows": 2}


def test_rows_count_lines_with_quoted_newlines_and_blank_lines(tmp_path):
    text = 'user_id,item_id,note,timestamp\na,x,"two\nlines",1\n\nb,y,ok,bad\n'
    p = write(tmp_path, "i.csv", text)
    with pytest.raises(DataError) as e:
        load_interactions(p)
    assert_where(e.value, p, 5, "timestamp")


def test_ragged_csv_row(tmp_path):
    p = write(tmp_path, "i.csv", "user_id,item_id\na,x\nb,y,z,w\n")
    with pytest.raises(DataError, match="malformed CSV") as e:
        load_interactions(p)
    assert e.value.row == 3 and e.value.file == str(p)


def test_invalid_jsonl_line(tmp_path):
    p = write(tmp_path, "i.jsonl", '{"user_id": 1, "item_id": 2}\n\n{"user_id": 1, "item_id": \n')
    with pytest.raises(DataError, match="invalid JSON") as e:
        load_interactions(p)
    assert_where(e.value, p, 3, None)


def test_jsonl_numeric_ids_are_strings(tmp_path):
    p = tmp_path / "i.jsonl"
    p.write_text(
        "\n".join(json.dumps(r) for r in [{"user_id": 1, "item_id": 10.0}, {"user_id": "u", "item_id": 3}])
    )
    df = load_interactions(p)
    assert df["user_id"].tolist() == ["1", "u"]
    assert df["item_id"].tolist() == ["10", "3"]


def test_non_finite_values_are_errors(tmp_path):
    p = write(tmp_path, "i.csv", "user_id,item_id,rating,timestamp\na,x,4,10\na,y,nan,11\n")
    with pytest.raises(DataError, match="not a number: 'nan'") as e:
        load_interactions(p)
    assert_where(e.value, p, 3, "rating")
    p = write(tmp_path, "j.csv", "user_id,item_id,rating,timestamp\na,x,4,10\na,y,inf,11\n")
    with pytest.raises(DataError, match="not a finite number") as e:
        load_interactions(p)
    assert_where(e.value, p, 3, "rating")
    p = write(tmp_path, "k.csv", "user_id,item_id,timestamp\na,x,10\na,y,inf\n")
    with pytest.raises(DataError, match="cannot parse timestamp 'inf'") as e:
        load_interactions(p)
    assert_where(e.value, p, 3, "timestamp")


def test_parquet_datetime_and_jsonl_iso_timestamps(tmp_path):
    ts = pd.to_datetime(["2020-01-01 00:00:00", "2020-01-02 00:00:00"])
    pd.DataFrame({"user_id": ["a", "b"], "item_id": ["x", "y"], "timestamp": ts}).to_parquet(
        tmp_path / "i.parquet"
    )
    assert load_interactions(tmp_path / "i.parquet")["timestamp"].tolist() == [1577836800, 1577923200]
    p = tmp_path / "i.jsonl"
    p.write_text('{"user_id": "a", "item_id": "x", "timestamp": "2020-01-01T00:00:00Z"}\n')
    assert load_interactions(p)["timestamp"].tolist() == [1577836800]


def test_users_table(tmp_path):
    users = write(tmp_path, "users.csv", "user_id,age\n10,30\n11,40\n12,50\n")
    ds = load_dataset(
        items=write(tmp_path, "items.csv", ITEMS), interactions=write(tmp_path, "i.csv", INTER), users=users
    )
    assert ds.users["user_id"].tolist() == ["10", "11", "12"]
    assert ds.n_users == 3  # a user with no interactions still gets a row
    assert ds.report.rows_read["users"] == 3
    few = write(tmp_path, "few.csv", "user_id,age\n10,30\n")
    ds = load_dataset(items=tmp_path / "items.csv", interactions=tmp_path / "i.csv", users=few)
    assert ds.report.summary().endswith("filtered: none; 1 interaction users are not in the user table")
    dup = write(tmp_path, "dup.csv", "user_id,age\n10,30\n10,40\n")
    with pytest.raises(
        DataError, match=r"duplicate user id '10' \(first at row 2; 1 duplicate rows in all\)"
    ) as e:
        load_dataset(items=tmp_path / "items.csv", interactions=tmp_path / "i.csv", users=dup)
    assert_where(e.value, dup, 3, "user_id")
    # the user table follows the item table's rules (one function): a second 'user_id' column is named
    both = write(tmp_path, "both.csv", "uid,user_id\n10,x\n")
    with pytest.raises(DataError, match="both the id column and another 'user_id' column exist"):
        load_users(both, id_column="uid")


def test_compressed_files(tmp_path):
    import gzip

    (tmp_path / "i.csv.gz").write_bytes(gzip.compress(INTER.encode()))
    assert load_interactions(tmp_path / "i.csv.gz")["item_id"].tolist() == ["007", "1", "2"]
    (tmp_path / "bad.csv.gz").write_bytes(gzip.compress((INTER + "\n12,1,4,soon\n").encode()))
    with pytest.raises(DataError) as e:
        load_interactions(tmp_path / "bad.csv.gz")
    assert_where(e.value, tmp_path / "bad.csv.gz", 6, "timestamp")  # the blank line 5 is counted
    (tmp_path / "i.jsonl.gz").write_bytes(gzip.compress(b'{"user_id": 1, "item_id": 2}\n'))
    assert load_interactions(tmp_path / "i.jsonl.gz")["item_id"].tolist() == ["2"]


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        load_items(tmp_path / "nope.csv")


def test_warm_train_split_loads(ml100k_splits):
    ds = load_dataset(items=ml100k_splits / "items.csv", interactions=ml100k_splits / "warm" / "train.csv")
    assert ds.n_items == 1682 and ds.n_users == 943 and len(ds) == 99057
    assert ds.items.columns.tolist() == ["item_id", "title", "release_date", "genres"]
    assert ds.items.loc[0, "title"] == "Toy Story (1995)"
    assert ds.report.filtered == {}


def test_vocab_appended_shares_storage_and_never_changes_the_original():
    from tokrec.data.dataset import Vocab

    base = Vocab(["a", "b", "c"])
    grown, rows = base.appended(["d", "b", "e"])
    assert rows.tolist() == [3, 1, 4] and grown.to_list() == ["a", "b", "c", "d", "e"]
    assert len(base) == 3 and base.get("d") == -1 and "e" not in base and list(base) == ["a", "b", "c"]
    assert base.encode(["d"], missing="mask").tolist() == [-1]
    with pytest.raises(KeyError, match="'e'"):
        base.encode(["e"])
    assert grown._ids is base._ids  # one storage: the million ids of a catalog are not copied per add
    again, rows2 = grown.appended(["f"])
    assert rows2.tolist() == [5] and again._ids is base._ids and len(grown) == 5
    # the original, no longer the last to grow the storage, takes its own copy before it grows
    assert base.add("x") == 3 and base.to_list() == ["a", "b", "c", "x"]
    assert base._ids is not again._ids and again.get("x") == -1 and again.get("d") == 3
    # the same after a vocabulary was grown from it: each sees its own row 4
    other, _ = base.appended(["y"])
    assert base.add("z") == 4 and other.to_list() == ["a", "b", "c", "x", "y"]
    assert base.to_list() == ["a", "b", "c", "x", "z"] and other.get("z") == -1 and base.get("y") == -1
    assert other.add("w") == 5 and base.get("w") == -1
