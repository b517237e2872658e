"""Loader input the QA pass found accepted silently or crashing (D6, D7, D16, D17): each is now one
DataError naming file / row / column, and the valid forms next to them keep their exact values."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tokrec.data.loaders import id_strings, load_interactions, load_items, load_users, parse_timestamps
from tokrec.errors import DataError


def write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def where(err: DataError) -> tuple[str | None, int | None, str | None]:
    return err.file, err.row, err.column


def one_line(err: DataError) -> str:
    msg = str(err)
    assert "\n" not in msg
    return msg


# ---- D7: timestamps are epoch seconds or ISO-8601, nothing else -------------------------------
@pytest.mark.parametrize(
    "bad",
    [
        "May",
        "3rd",
        "now",
        "today",
        "12/11/1997",
        "01-Jan-1995",
        "2020-13-01",
        "NaN",
        "2020-01-01 UTC",
        "T10:00",
    ],
)
def test_timestamps_in_other_forms_are_named_not_guessed(tmp_path, bad):
    p = write(tmp_path, "i.csv", f"user_id,item_id,timestamp\na,x,100\nb,y,{bad}\nc,z,May\n")
    with pytest.raises(DataError) as e:
        load_interactions(p)
    assert where(e.value) == (str(p), 3, "timestamp")
    assert one_line(e.value).endswith(
        f"row 3, column 'timestamp': cannot parse timestamp {bad!r} "
        "(expected epoch seconds or an ISO-8601 date/time such as 2020-01-31T10:00:00Z)"
    )


def test_iso_8601_forms_and_offsets_keep_their_values(tmp_path):
    p = write(
        tmp_path,
        "i.csv",
        "user_id,item_id,timestamp\n"
        "a,1,2020-01-01 10:00:00\n"  # naive: UTC
        "a,2,2020-01-01T10:00:00+05:00\n"
        "a,3,2020-01-01 10:00:00+05:00\n"
        "a,4,2020-01-01T10:00Z\n"
        "a,5,2020-01\n"
        "a,6,2020-01-01T00:00:00.999Z\n"  # floored to the second
        "a,7, 2020-01-02 \n"
        "a,8,-874965478\n"  # before 1970 is fine
        "a,9,9223372036\n",  # the last second datetime64[ns] holds
    )
    assert load_interactions(p)["timestamp"].tolist() == [
        1577872800,
        1577854800,
        1577854800,
        1577872800,
        1577836800,
        1577836800,
        1577923200,
        -874965478,
        9223372036,
    ]


@pytest.mark.parametrize(
    ("value", "ms_hint"),
    [("1e30", False), ("874965478000", True), ("-1e12", True), ("9223372037", True), ("9999-01-01", False)],
)
def test_out_of_range_timestamps_are_errors_without_warnings(tmp_path, value, ms_hint):
    p = write(tmp_path, "i.csv", f"user_id,item_id,timestamp\na,x,874965478\na,y,{value}\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the old int64 cast leaked "invalid value encountered in cast"
        with pytest.raises(DataError) as e:
            load_interactions(p)
    assert where(e.value) == (str(p), 3, "timestamp")
    msg = one_line(e.value)
    assert f"timestamp {value!r} is out of range: epoch seconds must lie in 1677-09-21 .. 2262-04-11" in msg
    assert ("looks like epoch milliseconds: give seconds (divide by 1000)" in msg) is ms_hint


def test_milliseconds_from_jsonl_numbers_are_named(tmp_path):
    p = write(tmp_path, "i.jsonl", '{"user_id": 1, "item_id": 2, "timestamp": 874965478000}\n')
    with pytest.raises(DataError, match="timestamp 874965478000 is out of range.*milliseconds") as e:
        load_interactions(p)
    assert where(e.value) == (str(p), 1, "timestamp")


def test_boolean_timestamps_are_errors(tmp_path):
    p = tmp_path / "i.jsonl"
    recs = [
        {"user_id": 1, "item_id": 2, "timestamp": 874965478},
        {"user_id": 1, "item_id": 3, "timestamp": True},
    ]
    p.write_text("\n".join(json.dumps(r) for r in recs) + "\n")
    with pytest.raises(DataError, match=r"a boolean is not a timestamp: True \(expected epoch") as e:
        load_interactions(p)
    assert where(e.value) == (str(p), 2, "timestamp")
    pq = tmp_path / "i.parquet"
    pd.DataFrame({"user_id": ["a", "b"], "item_id": ["x", "y"], "timestamp": [False, True]}).to_parquet(pq)
    with pytest.raises(DataError, match="a boolean is not a timestamp: False") as e:
        load_interactions(pq)
    assert where(e.value) == (str(pq), 1, "timestamp")


def test_parse_timestamps_names_the_first_bad_row_of_any_kind():
    s = pd.Series(["100", "2020-01-01", "1e30", "May"], dtype=object)
    with pytest.raises(DataError, match="'1e30' is out of range") as e:
        parse_timestamps(s, np.array([2, 3, 4, 5]), file="f", column="t")
    assert where(e.value) == ("f", 4, "t")
    ok = pd.Series([10.9, 11, -0.5])
    assert parse_timestamps(ok, np.array([2, 3, 4]), file="f", column="t").tolist() == [10, 11, -1]


def test_boolean_ratings_are_errors(tmp_path):
    p = write(
        tmp_path,
        "i.jsonl",
        '{"user_id": 1, "item_id": 2, "rating": 4}\n{"user_id": 1, "item_id": 3, "rating": true}\n',
    )
    with pytest.raises(DataError) as e:
        load_interactions(p)
    assert where(e.value) == (str(p), 2, "rating")
    assert str(e.value).endswith("a boolean is not a number: True")
    pq = tmp_path / "i.parquet"
    pd.DataFrame({"user_id": ["a"], "item_id": ["x"], "rating": [True]}).to_parquet(pq)
    with pytest.raises(DataError) as e:
        load_interactions(pq)
    assert str(e.value) == f"{pq}, row 1, column 'rating': a boolean is not a number: True"


# ---- D6: a JSON Lines record must be an object ---------------------------------------------
@pytest.mark.parametrize(
    ("line", "kind"),
    [
        ("[1,2,3,4]", "an array"),
        ("[]", "an array"),
        ('[["user_id", 9]]', "an array"),  # pandas read this one as a record {"user_id": 9}
        ("5", "a number"),
        ("null", "null"),
        ("true", "a boolean"),
        ('"s"', "a string"),
    ],
)
def test_jsonl_line_that_is_not_an_object(tmp_path, line, kind):
    p = write(
        tmp_path, "i.jsonl", '{"user_id": 1, "item_id": 2}\n\n' + line + '\n{"user_id": 1, "item_id": 3}\n'
    )
    with pytest.raises(DataError) as e:
        load_interactions(p)
    assert str(e.value) == f"{p}, row 3: a JSON Lines record must be an object, not {kind}"


def test_jsonl_of_arrays_only_and_bad_json_after_an_array(tmp_path):
    p = write(tmp_path, "i.jsonl", "[1, 2]\n[3, 4]\n")
    with pytest.raises(DataError, match="must be an object, not an array") as e:
        load_interactions(p)
    assert where(e.value) == (str(p), 1, None)
    q = write(tmp_path, "j.jsonl", '{"user_id": 1, "item_id": 2}\n{"user_id": 1,\n[1]\n')
    with pytest.raises(DataError, match="invalid JSON") as e:
        load_interactions(q)
    assert where(e.value) == (str(q), 2, None)


# ---- D16: ids of the wrong type, and the header row per format --------------------------------
def test_parquet_ids_that_are_lists_bytes_structs_or_booleans(tmp_path):
    cases = {
        "list": ([[1], [2]], "a list value such as array([1]) (column dtype object)"),
        "bytes": ([b"168", b"2"], "a bytes value such as b'168' (column dtype object)"),
        "struct": ([{"a": 1}, {"a": 2}], "a dict/struct value such as {'a': 1} (column dtype object)"),
        "bool": ([True, False], "a boolean value such as True (column dtype bool)"),
    }
    for name, (ids, said) in cases.items():
        p = tmp_path / f"{name}.parquet"
        pd.DataFrame({"user_id": ids, "item_id": ["x", "y"]}).to_parquet(p)
        with pytest.raises(DataError) as e:
            load_interactions(p)
        assert str(e.value) == f"{p}, row 1, column 'user_id': an id must be text or an integer, not {said}"
    items = tmp_path / "items.parquet"
    pd.DataFrame({"item_id": ["a", "b"], "title": ["t", "u"]}).to_parquet(items)
    assert load_items(items)["item_id"].tolist() == ["a", "b"]
    users = tmp_path / "users.parquet"
    pd.DataFrame({"user_id": [True, False]}).to_parquet(users)
    with pytest.raises(DataError, match="not a boolean value") as e:
        load_users(users)
    assert where(e.value) == (str(users), 1, "user_id")


def test_jsonl_list_id_names_its_line(tmp_path):
    p = write(tmp_path, "i.jsonl", '{"user_id": 1, "item_id": 2}\n\n{"user_id": [1], "item_id": 3}\n')
    with pytest.raises(DataError, match=r"not a list value such as \[1\] \(column dtype object\)") as e:
        load_interactions(p)
    assert where(e.value) == (str(p), 3, "user_id")


def test_id_strings_keeps_good_ids_and_names_the_column_of_bad_ones():
    s = pd.Series([1, "007", 2.0, None, "u"], dtype=object, name="uid")
    out = id_strings(s)
    assert out.iloc[:3].tolist() == ["1", "007", "2"] and pd.isna(out.iloc[3]) and out.iloc[4] == "u"
    with pytest.raises(DataError) as e:
        id_strings(pd.Series(["a", b"b"], name="uid"))
    assert where(e.value) == (None, None, "uid")
    with pytest.raises(DataError) as e:
        id_strings(pd.Series(["a", ["b"]], name="uid"), file="f.jsonl", rows=np.array([4, 7]))
    assert where(e.value) == ("f.jsonl", 7, "uid")


def test_missing_column_names_the_header_row_only_where_there_is_one(tmp_path):
    frame = pd.DataFrame({"uid": ["a"], "item_id": ["x"]})
    csv = tmp_path / "i.csv"
    frame.to_csv(csv, index=False)
    pq = tmp_path / "i.parquet"
    frame.to_parquet(pq)
    js = tmp_path / "i.jsonl"
    frame.to_json(js, orient="records", lines=True)
    expected = {csv: 1, pq: None, js: None}
    for path, row in expected.items():
        with pytest.raises(DataError, match="missing required column") as e:
            load_interactions(path)
        assert where(e.value) == (str(path), row, "user_id")
        with pytest.raises(DataError, match="is not in the file") as e:
            load_interactions(path, columns={"user": "uid", "timestamp": "when"})
        assert where(e.value) == (str(path), row, "when")
        with pytest.raises(DataError, match="missing required column") as e:
            load_items(path, id_column="sku")
        assert where(e.value) == (str(path), row, "sku")
    # Parquet records are numbered from 1: the first record's error is row 1, not the header
    pd.DataFrame({"user_id": ["a"], "item_id": ["x"], "timestamp": ["May"]}).to_parquet(pq)
    with pytest.raises(DataError) as e:
        load_interactions(pq)
    assert where(e.value) == (str(pq), 1, "timestamp")


# ---- D17: CSV parser errors name the line a person sees ------------------------------------
def test_unclosed_quote_names_its_line(tmp_path):
    p = write(tmp_path, "i.csv", 'user_id,item_id\na,x\nb,y\nc,"z\nd,w\n')
    with pytest.raises(DataError) as e:
        load_interactions(p)
    assert str(e.value) == f"{p}, row 4: malformed CSV: a quote opened on this row is never closed"
    # a quoted field spanning lines and a blank line before it: pandas counts records, not lines
    q = write(tmp_path, "j.csv", 'user_id,item_id,note\na,x,"two\nlines"\n\nb,y,ok\nc,"z\nd,w\n')
    with pytest.raises(DataError, match="a quote opened on this row is never closed") as e:
        load_interactions(q)
    assert where(e.value) == (str(q), 6, None)


def test_ragged_row_after_a_multiline_field_names_its_line(tmp_path):
    p = write(tmp_path, "i.csv", 'user_id,item_id\n"a\n\nb",x\nc,y,z\n')
    with pytest.raises(DataError) as e:
        load_interactions(p)
    assert str(e.value) == f"{p}, row 5: malformed CSV: expected 2 fields (as in the header), saw 3"


def test_a_split_part_is_named_by_its_folders(tmp_path) -> None:
    from tokrec.data.loaders import load_dataset

    folder = tmp_path / "beauty-splits" / "warm"
    folder.mkdir(parents=True)
    (tmp_path / "items.csv").write_text("item_id,title\n1,a\n2,b\n")
    (folder / "train.csv").write_text("user_id,item_id\nu,1\nu,2\n")
    (tmp_path / "clicks.csv").write_text("user_id,item_id\nu,1\n")
    assert load_dataset(tmp_path / "items.csv", folder / "train.csv").name == "beauty-splits/warm/train"
    assert load_dataset(tmp_path / "items.csv", tmp_path / "clicks.csv").name == "clicks"
