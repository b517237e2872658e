"""`tokrec embed`, `tokrec features`, `tokrec tokens` end to end with a tiny model (and the real data when present)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from tokrec.cli.main import main
from tokrec.features import read_vectors


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from tokrec.encoders.testing import make_tiny_bert

    return str(make_tiny_bert(tmp_path_factory.mktemp("bert") / "m"))


@pytest.fixture()
def files(tmp_path):
    items = tmp_path / "items.csv"
    pd.DataFrame(
        {
            "item_id": ["7", "3", "5"],
            "title": ["Toy Story (1995)", "Heat (1995)", "Fargo (1996)"],
            "genres": ["Animation|Comedy", "Action|Crime", ""],
        }
    ).to_csv(items, index=False)
    events = tmp_path / "events.csv"
    pd.DataFrame(
        {
            "user_id": ["u1", "u1", "u2"],
            "item_id": ["7", "3", "5"],
            "timestamp": [1, 2, 3],
            "rating": [5, 3, 4],
        }
    ).to_csv(events, index=False)
    pairs = tmp_path / "pairs.csv"
    pd.DataFrame({"user_id": ["u1", "u2"], "item_id": ["5", "7"], "label": [1, 0]}).to_csv(pairs, index=False)
    return items, events, pairs


def test_embed_writes_vectors_and_reuses_the_cache(tiny, files, tmp_path, capsys):
    items, _, _ = files
    out = tmp_path / "v.parquet"
    args = [
        "embed",
        "--items",
        str(items),
        "--output",
        str(out),
        "--cache",
        str(tmp_path / "c"),
        "--model",
        tiny,
    ]
    assert main(args) == 0
    first = capsys.readouterr().err
    assert "3 rows" in first and "cache hits 0 misses 3" in first and "encoding stage" in first
    ids, z = read_vectors(out)
    assert ids == ["7", "3", "5"] and z.shape == (3, 32)
    assert pq.read_table(out).column_names == ["item_id", "vector"]
    assert main(args) == 0
    assert "cache hits 3 misses 0" in capsys.readouterr().err
    np.testing.assert_array_equal(read_vectors(out)[1], z)
    # another template gives other texts, so other vectors (and cache misses)
    assert main([*args, "--template", "{title}"]) == 0
    assert "misses 3" in capsys.readouterr().err
    assert not np.allclose(read_vectors(out)[1], z)


def test_embed_errors_are_one_line_exit_2(tiny, files, tmp_path, capsys):
    items, _, _ = files
    base = [
        "embed",
        "--items",
        str(items),
        "--output",
        str(tmp_path / "v.parquet"),
        "--model",
        tiny,
        "--no-cache",
    ]
    assert main([*base, "--template", "{title} {year}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "year" in err[0]
    assert (
        main(["embed", "--items", str(tmp_path / "none.csv"), "--output", str(tmp_path / "v.parquet")]) == 2
    )
    assert "not found" in capsys.readouterr().err
    assert not (tmp_path / "v.parquet").exists()


def test_features_writes_items_users_pairs(tiny, files, tmp_path, capsys):
    items, events, pairs = files
    out = tmp_path / "feat"
    args = ["features", "--items", str(items), "--interactions", str(events), "--output-dir", str(out)]
    assert (
        main(
            [
                *args,
                "--pairs",
                str(pairs),
                "--model",
                tiny,
                "--cache",
                str(tmp_path / "c"),
                "--half-life",
                "1",
            ]
        )
        == 0
    )
    assert "features:" in capsys.readouterr().err
    ids, z_i = read_vectors(out / "items.parquet")
    assert ids == ["7", "3", "5"]
    users = pq.read_table(out / "users.parquet")
    assert users.column_names == ["user_id", "n_events", "text_vector", "agg_vector"]
    assert users.column("user_id").to_pylist() == ["u1", "u2"] and users.column("n_events").to_pylist() == [
        2,
        1,
    ]
    _, agg = read_vectors(out / "users.parquet", column="agg_vector")
    np.testing.assert_allclose(agg[1], z_i[2], atol=1e-6)  # one event: the item's own (unit) vector
    assert str(pq.read_table(out / "pairs.parquet").schema.field("score").type) == "float"
    p = pq.read_table(out / "pairs.parquet").to_pandas()
    assert list(p.columns[:4]) == ["user_id", "item_id", "score", "label"]
    _, z_u = read_vectors(out / "users.parquet", column="text_vector")
    np.testing.assert_allclose(p["score"].iloc[0], float(z_u[0] @ z_i[2]), atol=1e-5)


def test_tokens_for_an_item_and_a_user(tiny, files, capsys):
    items, events, _ = files
    assert main(["tokens", "--items", str(items), "--item", "3", "--model", tiny]) == 0
    out = capsys.readouterr().out
    assert "item 3: title: Heat (1995). genres: Action|Crime." in out
    assert "[CLS](2)" in out and "heat(" in out and "count: " in out
    assert (
        main(
            [
                "tokens",
                "--items",
                str(items),
                "--interactions",
                str(events),
                "--user",
                "u1",
                "--model",
                tiny,
                "--budget",
                "16",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    # 13 tokens for the last event, 24 for both: only the most recent fits 16
    assert "user u1: rated 3: Heat (1995)." in out and "Toy Story" not in out and "count: 13 tokens" in out
    assert main(["tokens", "--items", str(items), "--item", "999", "--model", tiny]) == 2


@pytest.mark.slow
@pytest.mark.realdata
def test_embed_movielens_with_the_default_model(ml100k_splits, tmp_path, capsys):
    items = ml100k_splits / "items.csv"
    sub = tmp_path / "items.csv"
    pd.read_csv(items, dtype=str).head(40).to_csv(sub, index=False)
    out = tmp_path / "v.parquet"
    assert main(["embed", "--items", str(sub), "--output", str(out), "--cache", str(tmp_path / "c")]) == 0
    ids, z = read_vectors(out)
    assert ids[:3] == ["1", "2", "3"] and z.shape == (40, 384)
    np.testing.assert_allclose(np.linalg.norm(z, axis=1), 1.0, atol=1e-4)


def test_engine_ray_passes_the_options_through(files, tmp_path, monkeypatch, capsys):
    import functools

    import tokrec.distributed.ray_embed as ray_embed

    seen = {}

    def fake(items_path, output, **kw):
        seen.update(kw, items_path=items_path, output=output)
        return {"rows": 3}

    monkeypatch.setattr(ray_embed, "embed_items_ray", fake)
    items, _, _ = files
    base = ["embed", "--items", str(items), "--output", str(tmp_path / "v.parquet"), "--engine", "ray"]
    assert (
        main([*base, "--ray-address", "auto", "--cache", str(tmp_path / "c"), "--template", "{title}"]) == 0
    )
    assert seen["ray_address"] == "auto" and seen["model"] is None and seen["template"] == "{title}"
    assert seen["cache_dir"] == str(tmp_path / "c") and "rows 3" in capsys.readouterr().err
    assert main([*base, "--dtype", "fp32", "--max-length", "32"]) == 0
    builder = seen["model"]
    assert (
        isinstance(builder, functools.partial)
        and builder.keywords["dtype"] == "fp32"
        and builder.keywords["max_length"] == 32
    )


def test_features_pairs_naming_an_unknown_user_stop_with_the_row_and_keep_the_last_run(
    tiny, files, tmp_path, capsys
):
    items, events, pairs = files
    out = tmp_path / "feat"
    base = ["features", "--items", str(items), "--interactions", str(events), "--output-dir", str(out)]
    base += ["--model", tiny, "--cache", str(tmp_path / "c")]
    assert main([*base, "--pairs", str(pairs)]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    bad = tmp_path / "bad_pairs.csv"
    bad.write_text("user_id,item_id,label\n u1 ,5,1\nu2,7.0,0\nnosuchuser,3,1\n")
    assert main([*base, "--pairs", str(bad), "--template", "{title}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert (
        err
        == f"tokrec features: error: {bad}, row 4, column 'user_id': user 'nosuchuser' is not in the data (1 unknown in all)"
    )
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # items/users/pairs still one run's
    good = tmp_path / "spaced_pairs.csv"
    good.write_text("user_id,item_id,label\n u1 ,5,1\nu2,7,0\n")  # ids stripped as the loaders strip them
    assert main([*base, "--pairs", str(good)]) == 0
    assert pq.read_table(out / "pairs.parquet").column("user_id").to_pylist() == ["u1", "u2"]
