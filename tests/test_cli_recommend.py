"""`tokrec recommend`: the exact command form outside scripts use, on small files."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from conformance import PROBE_ITEM, PROBE_USER, write_checkerboard_files
from tokrec.cli.main import main


@pytest.fixture()
def files(tmp_path: Path) -> dict[str, Path]:
    return write_checkerboard_files(tmp_path)


def _run(files: dict[str, Path], *extra: str) -> pd.DataFrame:
    out = files["dir"] / "recs.csv"
    rc = main(
        [
            "recommend",
            "--items",
            str(files["items"]),
            "--interactions",
            str(files["train"]),
            *extra,
            "--output",
            str(out),
        ]
    )
    assert rc == 0
    return pd.read_csv(out, dtype={"user_id": str, "item_id": str})


def test_exact_form_columns_ranks_seen_excluded(files, capsys) -> None:
    recs = _run(files, "--model", "ease", "--config", '{"l2": 10}', "--k", "100")
    assert list(recs.columns) == ["user_id", "item_id", "score", "rank"]
    assert recs["user_id"].nunique() == 40
    train = pd.read_csv(files["train"], dtype=str)
    seen = set(zip(train["user_id"], train["item_id"], strict=True))
    assert not any((u, i) in seen for u, i in zip(recs["user_id"], recs["item_id"], strict=True))
    n_seen = train.groupby("user_id").size()
    for uid, g in recs.groupby("user_id"):
        assert g["rank"].tolist() == list(range(1, len(g) + 1))
        assert g["score"].is_monotonic_decreasing
        assert len(g) == 24 - n_seen[uid]  # every unseen catalog item, k=100 > catalog
    top = recs[(recs["user_id"] == PROBE_USER) & (recs["rank"] == 1)]["item_id"].item()
    assert top == PROBE_ITEM
    err = capsys.readouterr().err
    assert "model ease" in err and "40 users" in err and "fit" in err and "recommend" in err
    assert not [p for p in files["dir"].iterdir() if p.name.startswith(".recs.csv")]  # no temp file left


def test_candidates_restrict_ranking(files) -> None:
    recs = _run(files, "--model", "itemknn", "--candidates", str(files["candidates"]), "--k", "100")
    assert set(recs["item_id"]) <= {"n0", "n1", "n2", "n3", PROBE_ITEM}
    assert PROBE_ITEM in set(recs.loc[recs["user_id"] == PROBE_USER, "item_id"])
    # the other users already have i7 (or are in the other group and have not) -- never a seen item
    u0 = recs[recs["user_id"] == "u0"]
    assert PROBE_ITEM not in set(u0["item_id"])


def test_default_model_with_a_tiny_encoder(files, capsys, tmp_path: Path) -> None:
    from tokrec.encoders.testing import make_tiny_bert

    enc = make_tiny_bert(tmp_path / "bert")
    cache = tmp_path / "cache"
    recs = _run(
        files,
        "--model-path",
        str(enc),
        "--cache",
        str(cache),
        "--k",
        "3",
        "--candidates",
        str(files["candidates"]),
    )
    err = capsys.readouterr().err
    assert "model tokrec" in err and "embed" in err
    assert recs["user_id"].nunique() == 40 and (recs.groupby("user_id").size() == 3).all()
    assert set(recs["item_id"]) <= {"n0", "n1", "n2", "n3", PROBE_ITEM}
    assert any(cache.iterdir())  # the item vectors went through the embedding cache


@pytest.mark.slow
def test_default_model_is_the_recommended_one(files, capsys) -> None:
    """With the bundled MiniLM: new items of the user's half of the catalog come first."""
    recs = _run(files, "--candidates", str(files["candidates"]), "--k", "2", "--users", "u0,u30,nobody")
    err = capsys.readouterr().err
    assert "model tokrec" in err and "embed" in err
    assert set(recs["user_id"]) == {"u0", "u30"}
    # new items n0, n2 are in u0's half of the catalog, n1, n3 in u30's
    assert set(recs.loc[recs["user_id"] == "u0", "item_id"]) == {"n0", "n2"}
    assert set(recs.loc[recs["user_id"] == "u30", "item_id"]) == {"n1", "n3"}


def test_bad_inputs_exit_2_with_one_line(files, capsys, tmp_path: Path) -> None:
    base = [
        "recommend",
        "--items",
        str(files["items"]),
        "--interactions",
        str(files["train"]),
        "--output",
        str(tmp_path / "r.csv"),
    ]
    assert main([*base, "--model", "ease", "--config", '{"lambda": 3}']) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("tokrec recommend: error:") and "lambda" in err
    bad = tmp_path / "bad.csv"
    bad.write_text("id\n1\n")
    assert main([*base, "--model", "ease", "--candidates", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert str(bad) in err and "item_id" in err and "\n" not in err
    assert main([*base, "--model", "no-such-model"]) == 2
    assert "unknown model" in capsys.readouterr().err
    assert not (tmp_path / "r.csv").exists()


@pytest.mark.parametrize("model", ["text-sasrec", "gbdt-ranker"])
def test_deep_models_get_item_vectors_from_the_cli(model, files, capsys, tmp_path: Path) -> None:
    """`--model text-sasrec` (with the README's whole-history config) and `--model gbdt-ranker` are
    given the item vectors (the "embed" stage runs) and rank only the candidates."""
    pytest.importorskip("torch")
    if model == "gbdt-ranker":
        pytest.importorskip("lightgbm")
    from tokrec.encoders.testing import make_tiny_bert

    config = {
        "text-sasrec": {
            "hidden": 16,
            "n_blocks": 1,
            "inner": 32,
            "max_len": 10,
            "epochs": 3,
            "patience": 3,
            "threads": 1,
            "target_window": 3,
            "score_half_life": 1e9,
        },
        "gbdt-ranker": {"n_candidates": 10, "n_estimators": 20},
    }[model]
    recs = _run(
        files,
        "--model",
        model,
        "--config",
        json.dumps(config),
        "--model-path",
        str(make_tiny_bert(tmp_path / "bert")),
        "--cache",
        "none",
        "--k",
        "3",
        "--candidates",
        str(files["candidates"]),
    )
    err = capsys.readouterr().err
    assert f"model {model}" in err and "embed" in err
    assert recs["user_id"].nunique() == 40 and (recs.groupby("user_id").size() == 3).all()
    assert set(recs["item_id"]) <= {"n0", "n1", "n2", "n3", PROBE_ITEM}


def test_the_loaders_hints_are_flags_the_command_takes(tmp_path, capsys):
    from tokrec.cli.main import main

    (tmp_path / "items.csv").write_bytes("item_id,title\na,Caf\xe9\nb,B\n".encode("latin-1"))
    (tmp_path / "inter.csv").write_text("user_id,item_id\nu,a\nu,zzz\nv,b\n")
    argv = [
        "recommend",
        "--items",
        str(tmp_path / "items.csv"),
        "--interactions",
        str(tmp_path / "inter.csv"),
    ]
    argv += ["--model", "popularity", "--k", "2", "--output", str(tmp_path / "recs.csv")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "--encoding latin-1" in err and "items.csv" in err
    assert main([*argv, "--encoding", "latin-1"]) == 2
    err = capsys.readouterr().err
    assert "--unknown-items drop" in err and "inter.csv" in err
    assert main([*argv, "--encoding", "latin-1", "--unknown-items", "drop"]) == 0
    assert (tmp_path / "recs.csv").read_text().count("\n") == 3  # header + u: b, v: a


def test_a_binary_file_is_named_and_never_echoed(tmp_path, capsys):
    from tokrec.cli.main import main

    (tmp_path / "items.csv").write_text("item_id,title\na,A\n")
    (tmp_path / "inter.csv").write_bytes(b"\x7fELF\x02\x01\x00\x00\x1b[31m\xf0\x9f" * 20)
    argv = [
        "recommend",
        "--items",
        str(tmp_path / "items.csv"),
        "--interactions",
        str(tmp_path / "inter.csv"),
    ]
    assert main([*argv, "--model", "popularity", "--output", str(tmp_path / "r.csv")]) == 2
    err = capsys.readouterr().err
    assert "inter.csv" in err and "binary" in err and "\x1b" not in err and "ELF" not in err


def test_template_reaches_the_item_vectors(files) -> None:
    # rendered from the genres alone, items of the same genres have one text, so one vector and one score
    genres = pd.read_csv(files["items"], dtype=str).set_index("item_id")["genres"]
    for template, tied in (("{genres}", True), ("{title}", False)):
        recs = _run(files, "--model", "text-profile", "--k", "100", "--template", template, "--cache", "none")
        recs = recs.assign(g=recs["item_id"].map(genres), score=recs["score"].round(5))  # bf16 batches: 1e-7
        per_genres = recs.groupby(["user_id", "g"])["score"].nunique()
        assert (per_genres == 1).all() == tied, template
