"""Bad command lines stop early and cleanly: one line, exit 2, nothing already written lost or half replaced.

Each test is a case a first user met (QA pass of 2026-12-02): an output path that cannot be written, infinite numbers
in a config, a failing run over an earlier run's report, options that never apply, ids files in other formats.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from conformance import write_checkerboard_files
from tokrec.cli.main import main


@pytest.fixture()
def files(tmp_path: Path) -> dict[str, Path]:
    return write_checkerboard_files(tmp_path)


def _recommend(files: dict[str, Path], *extra: str) -> list[str]:
    return ["recommend", "--items", str(files["items"]), "--interactions", str(files["train"]), *extra]


def _parse_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """The argparse error of ``argv``: exit 2 at parse time, before anything is read or fitted."""
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    return capsys.readouterr().err


def test_output_paths_that_cannot_be_written_stop_at_parse_time(files, tmp_path, capsys) -> None:
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    rec = _recommend(files, "--model", "popularity", "--no-tune")
    (tmp_path / "old.csv").mkdir()
    assert "is a folder" in _parse_error([*rec, "--output", str(tmp_path / "old.csv")], capsys)
    assert "is a file, not a folder" in _parse_error([*rec, "--output", str(a_file / "recs.csv")], capsys)
    assert ".csv or .parquet" in _parse_error([*rec, "--output", str(tmp_path / "recs.txt")], capsys)
    assert "empty path" in _parse_error([*rec, "--output", ""], capsys)
    fit = ["fit", "--items", str(files["items"]), "--interactions", str(files["train"]), "--no-tune"]
    assert "is a file; give a folder" in _parse_error([*fit, "--output", str(a_file)], capsys)
    ev = [
        "evaluate",
        "--items",
        str(files["items"]),
        "--interactions",
        str(files["train"]),
        "--models",
        "popularity",
    ]
    assert "is a file; give a folder" in _parse_error([*ev, "--output-dir", str(a_file)], capsys)
    assert a_file.read_text() == "x"


def test_a_refused_write_is_one_line_exit_2(files, tmp_path, capsys, monkeypatch) -> None:
    import tokrec.cli.recommend as recommend

    def denied(recs: pd.DataFrame, path: str) -> Path:
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(recommend, "write_recs", denied)
    out = tmp_path / "recs.csv"
    assert main(_recommend(files, "--model", "popularity", "--no-tune", "--output", str(out))) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == f"tokrec recommend: error: {out}: Permission denied"
    assert not any("Traceback" in line for line in err)


def test_recommendations_are_written_in_the_format_the_extension_names(files, tmp_path) -> None:
    base = _recommend(files, "--model", "popularity", "--no-tune", "--k", "3")
    assert main([*base, "--output", str(tmp_path / "r.parquet")]) == 0
    assert main([*base, "--output", str(tmp_path / "r.csv")]) == 0
    as_parquet = pd.read_parquet(tmp_path / "r.parquet")
    as_csv = pd.read_csv(tmp_path / "r.csv", dtype={"user_id": str, "item_id": str})
    assert list(as_parquet.columns) == ["user_id", "item_id", "score", "rank"]
    pd.testing.assert_frame_equal(as_parquet, as_csv, check_dtype=False)


@pytest.mark.parametrize(
    ("model", "config"),
    [("tokrec", '{"w_ease": Infinity}'), ("ease", '{"l2": Infinity}'), ("ease", '{"l2": NaN}')],
)
def test_infinite_numbers_in_a_config_are_refused_and_the_output_kept(
    files, tmp_path, capsys, model, config
) -> None:
    out = tmp_path / "recs.csv"
    out.write_text("SENTINEL\n")
    argv = _recommend(files, "--model", model, "--no-tune", "--config", config, "--output", str(out))
    assert main(argv) == 2
    assert "finite" in capsys.readouterr().err
    assert out.read_text() == "SENTINEL\n"


def _evaluate(files: dict[str, Path], out: Path, *extra: str) -> list[str]:
    return [
        "evaluate",
        "--items",
        str(files["items"]),
        "--interactions",
        str(files["train"]),
        "--no-tune",
        "--k",
        "5",
        "--output-dir",
        str(out),
        *extra,
    ]


def test_a_failing_evaluate_leaves_the_last_report_whole(files, tmp_path, monkeypatch) -> None:
    out = tmp_path / "ev"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert main(_evaluate(files, out, "--models", "popularity,ease")) == 0
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert Path("metrics.json") in before and Path("recs/leave-last-out/ease.csv") in before

    import tokrec.evaluation.report as report

    def broken(*args: object, **kwargs: object) -> Path:
        raise RuntimeError("plot failed")

    monkeypatch.setattr(report, "plot_popularity_bias", broken)  # after the recs and metrics.json are written
    with pytest.raises(RuntimeError, match="plot failed"):
        main(_evaluate(files, out, "--models", "popularity,ease", "--config", '{"ease": {"l2": 1}}'))
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".ev")) == []


def test_evaluate_refuses_options_that_would_never_apply(files, tmp_path, capsys) -> None:
    out = tmp_path / "ev"
    assert main(_evaluate(files, out, "--models", "popularity,ease", "--config", '{"eas": {"l2": 5}}')) == 2
    assert "'eas' not among --models (popularity, ease)" in capsys.readouterr().err
    assert main(_evaluate(files, out, "--models", "ease", "--config", '{"ease": {"l3": 5}}')) == 2
    assert "l3" in capsys.readouterr().err
    assert main(_evaluate(files, out, "--models", "popularity", "--n-recs", "3")) == 2
    assert "--n-recs 3 is below the largest K (5)" in capsys.readouterr().err
    assert not out.exists()  # refused before anything was written


def test_candidates_are_read_by_extension_and_an_empty_file_is_refused(files, tmp_path, capsys) -> None:
    cand = tmp_path / "cand.parquet"
    pd.DataFrame({"item_id": ["n0", "n1", " n2 "]}).to_parquet(cand)
    out = tmp_path / "recs.csv"
    assert (
        main(
            _recommend(
                files, "--model", "popularity", "--no-tune", "--candidates", str(cand), "--output", str(out)
            )
        )
        == 0
    )
    recs = pd.read_csv(out, dtype=str)
    assert set(recs["item_id"]) == {"n0", "n1", "n2"}
    empty = tmp_path / "empty.csv"
    empty.write_text("item_id\n")
    argv = _recommend(
        files, "--model", "popularity", "--no-tune", "--candidates", str(empty), "--output", str(out)
    )
    assert main(argv) == 2
    assert f"{empty}: file has no data rows (only a header)" in capsys.readouterr().err
    unknown = tmp_path / "unknown.csv"
    unknown.write_text("item_id\nzz1\nzz2\n")
    tune = ["tune", "--items", str(files["items"]), "--interactions", str(files["train"]), "--model", "ease"]
    assert main([*tune, "--candidates", str(unknown), "--output-dir", str(tmp_path / "t")]) == 2
    assert "none of the 2 candidate ids is in the catalog" in capsys.readouterr().err


def test_counts_and_budgets_must_be_positive(files, tmp_path, capsys) -> None:
    out = str(tmp_path / "r.csv")
    rec = _recommend(files, "--model", "popularity", "--no-tune", "--output", out)
    assert "positive integer" in _parse_error([*rec, "--threads", "-2"], capsys)
    assert "positive integer" in _parse_error(
        ["tokens", "--items", str(files["items"]), "--item", "i0", "--budget", "0"], capsys
    )
    tune = [
        "tune",
        "--items",
        str(files["items"]),
        "--interactions",
        str(files["train"]),
        "--output-dir",
        out,
    ]
    assert "a number above 0" in _parse_error([*tune, "--budget", "nan"], capsys)
    assert "a number above 0" in _parse_error([*rec, "--tune-budget", "-10"], capsys)


def test_a_config_file_that_is_not_utf8_is_one_line(files, tmp_path, capsys) -> None:
    cfg = tmp_path / "cfg.json"
    cfg.write_bytes(b"\xff\xfe\x00{")
    argv = _recommend(
        files, "--model", "ease", "--no-tune", "--config", str(cfg), "--output", str(tmp_path / "r.csv")
    )
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"{cfg}: cannot read as UTF-8 text" in err and "Traceback" not in err


def test_evaluate_reads_its_test_file_with_the_loading_options(files, tmp_path, capsys) -> None:
    test = tmp_path / "test.csv"
    pd.DataFrame(
        {"user_id": ["u0", "u1"], "item_id": ["i0", "not-an-item"], "timestamp": [10**9, 10**9]}
    ).to_csv(test, index=False)
    argv = _evaluate(files, tmp_path / "ev", "--models", "popularity", "--test", str(test))
    assert main(argv) == 2
    assert "--unknown-items drop" in capsys.readouterr().err
    assert main([*argv, "--unknown-items", "drop"]) == 0
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert metrics["protocols"]["given"]["split"]["test_events"] == 1  # the unknown item's event dropped


def test_fit_with_new_candidate_items_tunes_on_pseudo_new_items(files, tmp_path, capsys) -> None:
    cand = tmp_path / "new.csv"
    pd.DataFrame({"item_id": ["n0", "n1", "n2", "n3"]}).to_csv(cand, index=False)  # no events: new items
    fit = ["fit", "--items", str(files["items"]), "--interactions", str(files["train"]), "--model", "ease"]
    assert main([*fit, "--tune-budget", "5", "--output", str(tmp_path / "warm")]) == 0
    assert "; leave-last-out, 40 users" in capsys.readouterr().err
    assert (
        main([*fit, "--tune-budget", "5", "--candidates", str(cand), "--output", str(tmp_path / "cold")]) == 0
    )
    assert "; cold-item, " in capsys.readouterr().err


def test_a_log_too_small_to_validate_on_says_how_to_go_on(files, tmp_path, capsys) -> None:
    one = tmp_path / "one.csv"
    one.write_text("user_id,item_id,timestamp\nu0,i0,100\nu1,i1,100\n")  # one event per user
    argv = ["recommend", "--items", str(files["items"]), "--interactions", str(one), "--model", "ease"]
    assert main([*argv, "--output", str(tmp_path / "r.csv")]) == 2
    assert "--no-tune fits the shipped configuration" in capsys.readouterr().err
    assert main([*argv, "--no-tune", "--output", str(tmp_path / "r.csv")]) == 0


def test_evaluate_users_file_with_a_repeated_user_is_named(files, tmp_path, capsys) -> None:
    users = tmp_path / "users.csv"
    users.write_text("user_id,gender\nu0,F\nu1,M\nu0,M\n")
    argv = _evaluate(files, tmp_path / "ev", "--models", "popularity", "--users", str(users))
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"{users}, row 4, column 'user_id': duplicate user id 'u0' (first at row 2" in err


def test_training_commands_refuse_bad_settings_and_folders_before_training(files, tmp_path, capsys) -> None:
    data = ["--items", str(files["items"]), "--interactions", str(files["train"])]
    assert main(["finetune", *data, "--output", str(tmp_path / "ft"), "--epochs", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "tokrec finetune: error: finetune: invalid config: epochs: Input should be greater than or equal to 1 (got 0)"
    ]
    notmodel = tmp_path / "notmodel"
    notmodel.mkdir()
    (notmodel / "a.txt").write_text("x")
    classify = ["classify", *data, "--test", str(files["train"])]
    assert main([*classify, "--model", str(notmodel)]) == 2
    assert f"{notmodel}: not a Hugging Face model folder (no config.json)" in capsys.readouterr().err
    assert main([*classify, "--save", str(notmodel)]) == 2  # a folder of other files: refused before training
    assert "the folder holds other files" in capsys.readouterr().err
    assert (notmodel / "a.txt").read_text() == "x"
    assert "positive integer" in _parse_error([*classify, "--top-n", "0"], capsys)


def test_ray_options_without_the_ray_engine_are_refused(files, tmp_path, capsys) -> None:
    argv = _recommend(files, "--model", "popularity", "--no-tune", "--output", str(tmp_path / "r.csv"))
    assert main([*argv, "--num-workers", "2"]) == 2
    assert "--num-workers only apply with --engine ray" in capsys.readouterr().err


def test_a_fitted_model_directory_given_as_the_encoder_is_named(files, tmp_path, capsys) -> None:
    bundle = tmp_path / "model"
    bundle.mkdir()
    (bundle / "bundle.json").write_text("{}")
    argv = _recommend(files, "--no-tune", "--model-path", str(bundle), "--output", str(tmp_path / "r.csv"))
    assert main(argv) == 2
    assert f"{bundle} is a model directory written by `tokrec fit`" in capsys.readouterr().err
