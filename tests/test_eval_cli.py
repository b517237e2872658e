"""`tokrec evaluate` end to end on small synthetic data, with two toy models registered for the test."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import pytest

from tokrec.cli.main import main
from tokrec.data.dataset import Dataset
from tokrec.evaluation.metrics import score_recommendations
from tokrec.evaluation.protocol import evaluate_split
from tokrec.evaluation.responsibility import RESPONSIBILITY_METRICS
from tokrec.evaluation.splits import leave_last_out
from tokrec.models import registry
from tokrec.models.base import Recommender

GENRES = ["western", "space", "cooking", "horror"]


class ToyPop(Recommender):
    """Scores every item by its number of training events."""

    name = "toy-pop"

    def _fit(self, dataset: Dataset, item_vectors: np.ndarray | None) -> None:
        self.counts_ = np.bincount(dataset.item_idx, minlength=dataset.n_items).astype(np.float32)

    def _score_users(self, user_rows: np.ndarray) -> np.ndarray:
        return np.tile(self.counts_, (len(user_rows), 1))


class ToyVec(Recommender):
    """Cosine of each item's vector to the mean vector of the user's items (scores new items too)."""

    name = "toy-vec"
    needs_item_vectors: ClassVar[bool] = True
    scores_new_items: ClassVar[bool] = True

    def _fit(self, dataset: Dataset, item_vectors: np.ndarray | None) -> None:
        assert item_vectors is not None
        self.vectors_ = item_vectors
        self.profiles_ = np.zeros((dataset.n_users, item_vectors.shape[1]), dtype=np.float32)
        np.add.at(self.profiles_, dataset.user_idx, item_vectors[dataset.item_idx])

    def _score_users(self, user_rows: np.ndarray) -> np.ndarray:
        return (self.profiles_[user_rows] @ self.vectors_.T).astype(np.float32)


@pytest.fixture
def toys(monkeypatch: pytest.MonkeyPatch) -> None:
    module = types.ModuleType("tokrec_eval_test_toys")
    module.ToyPop = ToyPop  # type: ignore[attr-defined]
    module.ToyVec = ToyVec  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, module.__name__, module)
    monkeypatch.setitem(registry._MODELS, "toy-pop", f"{module.__name__}:ToyPop")
    monkeypatch.setitem(registry._MODELS, "toy-vec", f"{module.__name__}:ToyVec")
    # item vectors = one-hot genre: no language model needed for the test
    monkeypatch.setattr(
        "tokrec.cli.evaluate._vector_source", lambda args, ds: lambda: _genre_vectors(ds.items)
    )


def _genre_vectors(items: pd.DataFrame) -> np.ndarray:
    return np.stack([np.eye(len(GENRES), dtype=np.float32)[GENRES.index(g)] for g in items["genre"]])


def _synthetic(tmp_path: Path, n_users: int = 30, n_items: int = 40, seed: int = 0) -> tuple[Path, Path]:
    """Each user likes one genre and mostly picks items of it."""
    rng = np.random.default_rng(seed)
    items = pd.DataFrame(
        {
            "item_id": [str(100 + i) for i in range(n_items)],
            "title": [f"{GENRES[i % 4]} film {i}" for i in range(n_items)],
            "genre": [GENRES[i % 4] for i in range(n_items)],
        }
    )
    rows = []
    for u in range(n_users):
        g = u % 4
        pool = [i for i in range(n_items) if i % 4 == g]
        picks = rng.choice(pool, 6, replace=False).tolist() + rng.choice(n_items, 2, replace=False).tolist()
        picks = rng.permutation(picks).tolist()
        rows += [(f"u{u}", str(100 + i), 1000 * u + t) for t, i in enumerate(dict.fromkeys(picks))]
    events = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])
    ip, ep = tmp_path / "items.csv", tmp_path / "events.csv"
    items.to_csv(ip, index=False)
    events.to_csv(ep, index=False)
    return ip, ep


def _table_rows(report: str, heading: str) -> dict[str, dict[str, str]]:
    """The first table after ``heading``: model -> column -> cell."""
    lines = report[report.index(heading) :].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| model"))
    head = [c.strip() for c in lines[start].strip("|").split("|")]
    out = {}
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        out[cells[0]] = dict(zip(head, cells, strict=True))
    return out


def test_evaluate_writes_report_json_plots_and_recs(
    toys: None, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    ip, ep = _synthetic(tmp_path)
    out = tmp_path / "report"
    args = ["evaluate", "--items", str(ip), "--interactions", str(ep), "--models", "toy-pop,toy-vec"]
    args += ["--protocol", "leave-last-out,cold-item", "--k", "1,5,10", "--output-dir", str(out)]
    assert main(args) == 0
    for name in ("report.md", "metrics.json", "ndcg_at_k.png", "protocols.png", "popularity_bias.png"):
        assert (out / name).stat().st_size > 0, name
    assert (out / "ndcg_at_k.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads((out / "metrics.json").read_text())
    report = (out / "report.md").read_text()
    assert data["k"] == [1, 5, 10] and data["main_k"] == 10
    for protocol in ("leave-last-out", "cold-item"):
        p = data["protocols"][protocol]
        assert p["ranking"] == ["full"]
        table = _table_rows(report, f"## {protocol} (full ranking)")
        for model in ("toy-pop", "toy-vec"):
            m = p["models"][model]
            assert m["error"] is None and m["ranking"] == "full" and m["sampled_metrics"] is None
            row = table[model]
            for col, key in (("NDCG@10", "ndcg@10"), ("Recall@10", "recall@10"), ("MAP@10", "map@10")):
                assert row[col] == f"{m['metrics'][key]:.4f}"
            assert row["Coverage@10"] == f"{m['metrics']['coverage@10']:.4f}"
            assert row["fit s"] == f"{m['fit_seconds']:.2f}"
            assert row["tune s"] == "—" and m["tune_seconds"] is None  # toy models have nothing to tune
            # the JSON figures are those of the written recommendations file
            recs = pd.read_csv(out / m["recs_file"], dtype={"user_id": str, "item_id": str})
            assert len(recs) > 0
    # cold-item: toy-pop cannot rank new items (all zero counts), toy-vec can from the genre vectors
    cold = data["protocols"]["cold-item"]["models"]
    assert cold["toy-vec"]["metrics"]["ndcg@10"] > cold["toy-pop"]["metrics"]["ndcg@10"]
    assert data["protocols"]["cold-item"]["split"]["candidates"] == 8  # floor(0.2 * 40)
    assert "report:" in capsys.readouterr().out


def test_json_equals_the_official_definitions_on_the_written_files(toys: None, tmp_path: Path) -> None:
    ip, ep = _synthetic(tmp_path)
    out = tmp_path / "r"
    assert (
        main(
            [
                "evaluate",
                "--items",
                str(ip),
                "--interactions",
                str(ep),
                "--models",
                "toy-vec",
                "--k",
                "5",
                "--output-dir",
                str(out),
            ]
        )
        == 0
    )
    data = json.loads((out / "metrics.json").read_text())
    m = data["protocols"]["leave-last-out"]["models"]["toy-vec"]
    events = pd.read_csv(ep, dtype={"user_id": str, "item_id": str})
    ds = Dataset(events, pd.read_csv(ip, dtype=str))
    split = leave_last_out(ds)
    recs = pd.read_csv(out / m["recs_file"], dtype={"user_id": str, "item_id": str})
    again = score_recommendations(
        recs, split.test.interactions, split.train.interactions, k=5, catalog=ds.item_vocab.ids
    )
    extra = {k: v for k, v in m["metrics"].items() if k.startswith("tied@") or "_ci_" in k}
    responsible = {k for k in m["metrics"] if k.split("@")[0] in RESPONSIBILITY_METRICS}
    assert again == pytest.approx({k: v for k, v in m["metrics"].items() if k not in {*extra, *responsible}})
    assert set(extra) == {"tied@5", "ndcg@5_ci_low", "ndcg@5_ci_high"}
    assert extra["ndcg@5_ci_low"] < m["metrics"]["ndcg@5"] < extra["ndcg@5_ci_high"]
    assert again["hr@5"] > 0.3  # the genre signal is real: well above 5 / 33 at random


def test_given_split_with_candidates_and_html(toys: None, tmp_path: Path) -> None:
    ip, ep = _synthetic(tmp_path)
    events = pd.read_csv(ep, dtype=str)
    test = events.groupby("user_id").tail(1)
    train_p, test_p, cand_p = tmp_path / "train.csv", tmp_path / "test.csv", tmp_path / "cands.csv"
    events.drop(test.index).to_csv(train_p, index=False)
    test.to_csv(test_p, index=False)
    pd.DataFrame({"item_id": test["item_id"].unique()}).to_csv(cand_p, index=False)
    out = tmp_path / "g"
    args = ["evaluate", "--items", str(ip), "--interactions", str(train_p), "--test", str(test_p)]
    args += ["--candidates", str(cand_p), "--models", "toy-pop", "--format", "html", "--output-dir", str(out)]
    assert main(args) == 0
    data = json.loads((out / "metrics.json").read_text())
    g = data["protocols"]["given"]
    assert g["split"]["candidates"] == test["item_id"].nunique()
    assert g["models"]["toy-pop"]["metrics"]["outside_candidates_filtered"] == 0
    html = (out / "report.html").read_text()
    assert html.startswith("<!doctype html>") and "<table>" in html and "ndcg_at_k.png" in html
    assert not (out / "protocols.png").exists()  # one protocol: no comparison plot


def test_sampled_negatives_are_labelled_everywhere(toys: None, tmp_path: Path) -> None:
    ip, ep = _synthetic(tmp_path)
    out = tmp_path / "s"
    args = ["evaluate", "--items", str(ip), "--interactions", str(ep), "--models", "toy-vec"]
    assert main(args + ["--k", "5", "--sampled-negatives", "5", "--output-dir", str(out)]) == 0
    data = json.loads((out / "metrics.json").read_text())
    p = data["protocols"]["leave-last-out"]
    assert p["ranking"] == ["full", "sampled-5"]
    m = p["models"]["toy-vec"]
    assert m["sampled_metrics"]["ranking"] == "sampled-5" and m["ranking"] == "full"
    # 1 relevant item against 5 negatives: HR@5 can only be higher than against the full catalog
    assert m["sampled_metrics"]["hr@5"] >= m["metrics"]["hr@5"]
    report = (out / "report.md").read_text()
    assert "SAMPLED (sampled-5): not comparable with full ranking" in report
    assert "NDCG@5 [sampled-5]" in report


def test_sampling_the_whole_pool_equals_full_ranking(toys: None, tmp_path: Path) -> None:
    ip, ep = _synthetic(tmp_path)
    ds = Dataset(pd.read_csv(ep, dtype=str), pd.read_csv(ip, dtype=str))
    result = evaluate_split(
        leave_last_out(ds),
        ["toy-vec"],
        ks=[3, 10],
        item_vectors=_genre_vectors(ds.items),
        sampled_negatives=10_000,
    )
    run = result.runs[0]
    assert run.sampled_metrics is not None
    for key in ("ndcg@3", "ndcg@10", "recall@10", "mrr@10", "map@10"):
        assert run.sampled_metrics[key] == pytest.approx(run.metrics[key])


def test_the_responsibility_inputs_are_built_once_per_split_and_not_timed_as_the_models(
    toys: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time

    import tokrec.evaluation.protocol as protocol

    ip, ep = _synthetic(tmp_path)
    ds = Dataset(pd.read_csv(ep, dtype=str), pd.read_csv(ip, dtype=str))
    real, calls = protocol._responsibility_context, []

    def slow(split, vectors):
        calls.append(split)
        time.sleep(0.5)  # the evaluation's cost, e.g. the first encoding of the catalog
        return real(split, vectors)

    monkeypatch.setattr(protocol, "_responsibility_context", slow)
    split = leave_last_out(ds)
    result = evaluate_split(split, ["toy-pop", "toy-vec"], item_vectors=_genre_vectors(ds.items))
    assert calls == [split]
    assert all(run.recommend_seconds < 0.5 for run in result.runs), [r.recommend_seconds for r in result.runs]
    assert all(run.metrics["ild@10"] > 0 for run in result.runs)  # the shared context measured both


def test_each_model_is_compared_with_the_reference_user_by_user(
    toys: None, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """The report and metrics.json give each model's NDCG@10 minus the reference's over the same test users,
    with a paired interval; the figures are those of the per-user NDCG of the written lists."""
    from tokrec.evaluation.metrics import paired_difference, score_recommendations

    ip, ep = _synthetic(tmp_path, n_users=60)
    out = tmp_path / "r"
    args = ["evaluate", "--items", str(ip), "--interactions", str(ep), "--models", "toy-pop,toy-vec"]
    assert main(args + ["--k", "10", "--output-dir", str(out), "--reference", "toy-vec"]) == 0
    data = json.loads((out / "metrics.json").read_text())
    paired = data["protocols"]["leave-last-out"]["paired"]
    assert paired["reference"] == "toy-vec" and list(paired["models"]) == ["toy-pop"]
    got = paired["models"]["toy-pop"]
    # recomputed from the written recommendation files and the split's test events
    events = pd.read_csv(ep, dtype={"user_id": str, "item_id": str}).sort_values(["user_id", "timestamp"])
    test = events.groupby("user_id").tail(1)
    train = events.drop(test.index)
    per = {}
    for m in ("toy-pop", "toy-vec"):
        recs = pd.read_csv(out / data["protocols"]["leave-last-out"]["models"][m]["recs_file"], dtype=str)
        each = score_recommendations(recs, test, train, k=10, per_user=True)["per_user"]
        per[m] = each.set_index("user_id")["ndcg@10"]
    users = sorted(per["toy-vec"].index)  # users in id order
    want = paired_difference(per["toy-pop"][users].to_numpy(), per["toy-vec"][users].to_numpy())
    assert got["diff"] == pytest.approx(want["diff"]) and got["users"] == 60
    assert got["diff"] == pytest.approx(
        data["protocols"]["leave-last-out"]["models"]["toy-pop"]["metrics"]["ndcg@10"]
        - data["protocols"]["leave-last-out"]["models"]["toy-vec"]["metrics"]["ndcg@10"]
    )
    assert (got["ci_low"], got["ci_high"]) == pytest.approx((want["ci_low"], want["ci_high"]))
    row = _table_rows((out / "report.md").read_text(), "each model against toy-vec")["toy-pop"]
    assert row["minus toy-vec"] == f"{got['diff']:+.4f}"
    assert row["resolved"] == ("yes" if got["ci_low"] > 0 or got["ci_high"] < 0 else "no")
    assert "each model minus toy-vec" in capsys.readouterr().out
    # without --reference: the first model (tokrec when it is evaluated); a reference not evaluated: an error
    assert main(args + ["--k", "10", "--output-dir", str(tmp_path / "d")]) == 0
    assert (
        json.loads((tmp_path / "d" / "metrics.json").read_text())["protocols"]["leave-last-out"]["paired"][
            "reference"
        ]
        == "toy-pop"
    )
    assert main(args + ["--output-dir", str(tmp_path / "e"), "--reference", "ease"]) == 2
    assert "--reference ease: not among --models" in capsys.readouterr().err


def test_errors_are_one_line_and_exit_2(toys: None, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    ip, ep = _synthetic(tmp_path)
    base = ["evaluate", "--items", str(ip), "--interactions", str(ep), "--output-dir", str(tmp_path / "e")]
    assert main(base + ["--models", "nope"]) == 2
    assert "unknown model 'nope'" in capsys.readouterr().err
    assert main(base + ["--models", "toy-pop", "--k", "ten"]) == 2
    assert "--k" in capsys.readouterr().err
    assert main(base + ["--models", "toy-pop", "--test", str(ep), "--protocol", "cold-item"]) == 2
    assert "not both" in capsys.readouterr().err
    assert main(base + ["--models", "toy-pop", "--protocol", "shuffle"]) == 2
    assert "unknown protocol" in capsys.readouterr().err
    bad = tmp_path / "bad_test.csv"
    pd.DataFrame({"user_id": ["u1"], "item_id": ["999"]}).to_csv(bad, index=False)
    assert main(base + ["--models", "toy-pop", "--test", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert "bad_test.csv" in err and "item_id" in err and len(err.splitlines()) == 1


def test_validation_flag_never_scores_test_events(toys: None, tmp_path: Path) -> None:
    ip, ep = _synthetic(tmp_path)
    out = tmp_path / "v"
    args = ["evaluate", "--items", str(ip), "--interactions", str(ep), "--models", "toy-pop", "--validation"]
    assert main(args + ["--k", "5", "--output-dir", str(out)]) == 0
    split = json.loads((out / "metrics.json").read_text())["protocols"]["leave-last-out"]["split"]
    assert split["params"]["validation"] is True
    assert (
        split["train_events"] + split["test_events"] == len(pd.read_csv(ep)) - 30
    )  # 30 test events held back


def test_evaluate_registry_models_on_make_synthetic(tmp_path: Path) -> None:
    """Integration with engineer "data"'s generator and engineer "recs"'s models (no language model)."""
    pytest.importorskip("tokrec.data.synthetic")
    from tokrec.data.synthetic import write_synthetic

    paths = write_synthetic(tmp_path / "data", n_items=80, n_users=50, seed=1)
    out = tmp_path / "o"
    args = ["evaluate", "--items", str(paths["items"]), "--interactions", str(paths["interactions"])]
    args += ["--models", "popularity,ease", "--protocol", "leave-last-out,cold-user", "--k", "10"]
    assert main(args + ["--history", "2", "--output-dir", str(out)]) == 0
    data = json.loads((out / "metrics.json").read_text())
    llo = data["protocols"]["leave-last-out"]
    assert llo["split"]["test_users"] == 50
    for protocol, p in data["protocols"].items():
        for model, m in p["models"].items():
            assert m["error"] is None, (protocol, model)
            assert m["metrics"]["users"] == p["split"]["test_users"]
            assert m["metrics"]["seen_items_filtered"] == 0  # recommend_batch excludes training items
            assert 0.0 <= m["metrics"]["ndcg@10"] <= m["metrics"]["hr@10"] <= 1.0
    # popularity recommends each user's most popular unseen items, which maximises the mean popularity (ARP)
    # of a top-10 (the generator drops repeat events, so event counts are distinct-user counts)
    assert llo["models"]["popularity"]["metrics"]["arp@10"] >= llo["models"]["ease"]["metrics"]["arp@10"]


def test_model_configs_from_a_json_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    pytest.importorskip("tokrec.models.ease")
    ip, ep = _synthetic(tmp_path)
    base = ["evaluate", "--items", str(ip), "--interactions", str(ep), "--models", "ease", "--k", "5"]
    good, bad = tmp_path / "good.json", tmp_path / "bad.json"
    good.write_text(json.dumps({"ease": {"l2": 7.5}}))
    bad.write_text(json.dumps({"ease": {"lambda": 7.5}}))
    assert main(base + ["--config", str(good), "--output-dir", str(tmp_path / "g")]) == 0
    data = json.loads((tmp_path / "g" / "metrics.json").read_text())
    assert data["protocols"]["leave-last-out"]["models"]["ease"]["config"]["l2"] == 7.5
    capsys.readouterr()
    assert main(base + ["--config", str(bad), "--output-dir", str(tmp_path / "b")]) == 2
    assert "lambda" in capsys.readouterr().err
