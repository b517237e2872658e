"""The tuner (tokrec.tuning): it never reads test events, keeps its guarantee, reproduces its choice for a
seed, and switches off what the data cannot support. Tiny synthetic data, random item vectors."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("optuna", reason="the tuner needs optuna (tokrec[recs])")

from tokrec.cli.tune import tune_split  # noqa: E402
from tokrec.data.synthetic import make_synthetic  # noqa: E402
from tokrec.errors import ConfigError  # noqa: E402
from tokrec.evaluation.splits import given_split, leave_last_out  # noqa: E402
from tokrec.models.recommended import SIGNALS, TokrecConfig, TokrecHybrid  # noqa: E402
from tokrec.models.registry import load_model  # noqa: E402
from tokrec.tuning import make_validation, new_user_config, tune_baseline, tune_tokrec  # noqa: E402

#: a short grid (two values per hyperparameter) keeps these tests fast; the search is the same
GRID = {
    "ease": [("ease_lambda", [100.0, 1000.0]), ("ease_half_life", [2.0, 1e9])],
    "trans": [("trans_last", [1, 20])],
    "map": [("map_lambda", [1.0, 30.0])],
    "profile": [("profile_half_life", [2.0, 1e9])],
}
FAST = {"weight_trials": 30, "budget_s": 600.0, "grid": GRID}


@pytest.fixture(scope="module")
def data():
    ds = make_synthetic(n_items=120, n_users=80, events_per_user=(6, 14), seed=3)
    vecs = np.random.default_rng(0).normal(size=(ds.n_items, 16)).astype(np.float32)
    return ds, vecs


def test_validation_is_cut_from_train_only(data):
    ds, _ = data
    split = leave_last_out(ds)
    val = make_validation(split.train)
    train_keys = set(
        zip(split.train.interactions["user_id"], split.train.interactions["item_id"], strict=True)
    )
    held = val.split.test.interactions
    assert len(held) > 0
    assert set(zip(held["user_id"], held["item_id"], strict=True)) <= train_keys
    test_keys = set(zip(split.test.interactions["user_id"], split.test.interactions["item_id"], strict=True))
    vt = val.split.train.interactions
    assert not test_keys & set(zip(vt["user_id"], vt["item_id"], strict=True))


def _args(**kw):
    return argparse.Namespace(no_tune=False, tune_budget=600.0, tune_seed=0, **kw)


def test_tuning_never_reads_test_events(data, monkeypatch):
    """Two splits with the same training events and very different test events (one planted with items
    that occur only in test, as every user's next event) must get the same choices."""
    import tokrec.tuning as tuning

    monkeypatch.setattr(tuning, "tune_tokrec", _fast(tuning.tune_tokrec, weight_trials=20, grid=GRID))
    monkeypatch.setattr(tuning, "tune_baseline", _fast(tuning.tune_baseline, max_trials=4))
    ds, vecs = data
    split = leave_last_out(ds)
    test_items = set(split.test.interactions["item_id"])
    train_items = set(split.train.interactions["item_id"])
    planted_items = sorted(set(ds.item_vocab.ids) - train_items) or sorted(test_items)
    real = given_split(split.train, split.test.interactions, source="a")
    planted = split.test.interactions.copy()
    planted["item_id"] = [planted_items[i % len(planted_items)] for i in range(len(planted))]
    fake = given_split(split.train, planted, source="b")
    models = ["tokrec", "ease"]
    a, ra = tune_split(_args(), real, models, {}, lambda: vecs)
    b, rb = tune_split(_args(), fake, models, {}, lambda: vecs)
    assert a == b
    assert [r.val_ndcg for r in ra] == [r.val_ndcg for r in rb]
    # and what validation held out are training events, never the planted test events
    val = make_validation(real.train)
    held = set(
        zip(val.split.test.interactions["user_id"], val.split.test.interactions["item_id"], strict=True)
    )
    assert not held & set(zip(planted["user_id"], planted["item_id"], strict=True)) - set(
        zip(split.train.interactions["user_id"], split.train.interactions["item_id"], strict=True)
    )


def _fast(fn, **fast):
    def wrapped(*a, **kw):
        return fn(*a, **{**kw, **fast})

    return wrapped


@pytest.fixture(scope="module")
def tuned(data):
    ds, vecs = data
    return tune_tokrec(ds, vecs, seed=1, **FAST)


def test_blend_never_below_best_single_signal_and_config_is_valid(tuned):
    r = tuned
    alone = [s.alone_ndcg for s in r.signals if s.available]
    assert alone and r.val_ndcg >= max(alone) - 1e-9
    cfg = TokrecConfig.model_validate(r.config)
    assert any(getattr(cfg, f"w_{s}") > 0 for s in SIGNALS)
    # the blend the result reports is what the chosen weights score on the validation split
    assert set(r.ablation) >= {"without LM signals", "without order signals"}
    assert "ease" in r.table()


def test_each_ablation_is_compared_with_the_blend_user_by_user(tuned):
    """What the language-model (and the order) signals add on the user's own validation split, with a paired
    interval: the mean difference is the blend's figure minus the ablation's, over the same users."""
    r = tuned
    for label, v in r.ablation.items():
        c = r.ablation_paired[label]
        assert c["diff"] == pytest.approx(r.val_ndcg - v, abs=1e-6)
        assert c["ci_low"] <= c["diff"] <= c["ci_high"] and c["users"] == r.validation["users_scored"]
        assert f"{v:.4f} (the blend {c['diff']:+.4f} over it, 95% interval {c['ci_low']:+.4f}" in r.table()
    saved = json.loads(json.dumps(r.to_json()))
    assert saved["ablation_paired"].keys() == r.ablation.keys()


def test_an_ablation_that_leaves_nothing_weighted_scores_zero_for_every_user(data, monkeypatch):
    import tokrec.tuning as tuning

    ds, vecs = data
    monkeypatch.setattr(  # validation gives map alone weight: without the LM signals nothing is left
        tuning, "_search_weights", lambda mats, *a, **k: ({s: float(s == "map") for s in mats}, 1.0, 1)
    )
    r = tuning.tune_tokrec(ds, vecs, cold=True, **FAST)
    c = r.ablation_paired["without LM signals"]
    map_alone = next(x.alone_ndcg for x in r.signals if x.signal == "map")  # the blend is map alone
    assert r.ablation["without LM signals"] == 0.0 and c["diff"] == pytest.approx(map_alone)
    assert c["lower"] == 0 and c["higher"] > 0


def test_guarantee_holds_when_the_blend_loses(data, monkeypatch):
    """If the weight search returned something worse than the best signal alone, the single signal wins."""
    import tokrec.tuning as tuning

    ds, vecs = data
    monkeypatch.setattr(tuning, "_search_weights", lambda mats, *a, **k: ({s: 1.0 for s in mats}, -1.0, 1))
    r = tuning.tune_tokrec(ds, vecs, **FAST)
    best = max((s for s in r.signals if s.available), key=lambda s: s.alone_ndcg)
    assert r.choice == f"single signal {best.signal}"
    assert r.val_ndcg == pytest.approx(best.alone_ndcg)
    assert [s.signal for s in r.signals if s.weight > 0] == [best.signal]


def test_same_seed_same_choice(data, tuned):
    ds, vecs = data
    a = tuned
    b = tune_tokrec(ds, vecs, seed=1, **FAST)
    assert a.config == b.config and a.val_ndcg == b.val_ndcg
    c = tune_baseline("ease-recency", ds, seed=1, max_trials=6)
    d = tune_baseline("ease-recency", ds, seed=1, max_trials=6)
    assert c.config == d.config and c.val_ndcg == d.val_ndcg
    assert c.trials == 6


def test_what_the_data_cannot_support_is_switched_off(data):
    """Equal timestamps and a catalog without text: the age and language-model signals are off (the
    time signal degrades to popularity, which validation may keep)."""
    ds, vecs = data
    inter = ds.interactions.copy()
    inter["timestamp"] = 0
    items = ds.items[["item_id"]].copy()
    from tokrec.data.dataset import Dataset

    flat = Dataset(interactions=inter, items=items)
    r = tune_tokrec(flat, np.ones((flat.n_items, 4), dtype=np.float32), **FAST)
    off = {s.signal for s in r.signals if not s.available}
    assert {"age", "map", "prop", "prior", "profile"} <= off
    assert all(r.config[f"w_{s}"] == 0 for s in off)
    assert any("no item text" in n for n in r.data["notes"])


def test_fitted_with_switched_off_signals_saves_loads_and_refuses_missing_signals(data, tmp_path):
    ds, vecs = data
    cfg = {f"w_{s}": 0.0 for s in SIGNALS} | {"w_ease": 1.0, "w_profile": 0.5}
    m = TokrecHybrid(cfg).fit(ds, vecs)
    assert (
        m.trans_.nnz == 0 and m.neighbours_.nnz == 0
    )  # not computed (content features always are: the cold path)
    m.save(tmp_path / "m")
    back = load_model(tmp_path / "m")
    users = list(ds.user_vocab.ids[:5])
    np.testing.assert_allclose(back.score(users), m.score(users), rtol=1e-6)
    with pytest.raises(ConfigError, match="not fitted"):
        m.signals([np.array([0])], np.array([0]), ("trans",))
    with pytest.raises(ConfigError, match="fit a new model"):
        m.with_scoring(ease_lambda=5.0)
    other = m.with_scoring(ease_half_life=1.0)
    assert other.ease_ is m.ease_ and other.config.ease_half_life == 1.0


def test_tune_command_writes_choice(tmp_path, data, monkeypatch):
    from tokrec.cli.main import main

    ds, _ = data
    ds.items.to_csv(tmp_path / "items.csv", index=False)
    ds.interactions[["user_id", "item_id", "timestamp"]].to_csv(tmp_path / "train.csv", index=False)
    rc = main(
        [
            "tune",
            "--items",
            str(tmp_path / "items.csv"),
            "--interactions",
            str(tmp_path / "train.csv"),
            "--model",
            "ease",
            "--budget",
            "5",
            "--output-dir",
            str(tmp_path / "out"),
        ]
    )
    assert rc == 0
    saved = json.loads((tmp_path / "out" / "tuning.json").read_text())
    assert saved["model"] == "ease" and saved["config"]["l2"] > 0
    cfg = json.loads((tmp_path / "out" / "config.json").read_text())
    assert cfg == saved["config"]
    assert pd.notna(saved["val_ndcg"])


def test_a_registered_model_joins_the_blend_and_round_trips(data, tmp_path):
    """Composition: tokrec + the registered itemknn model as a part; the part's z-scores add to the blend."""
    from tokrec.models import signals as sig
    from tokrec.models.registry import create_model

    ds, vecs = data
    # the fresh slot (on by default) moves single new items after the sum: off, to test the sum itself
    only_ease = {f"w_{s}": 0.0 for s in SIGNALS} | {"w_ease": 1.0, "fresh_slot": 0}
    m = TokrecHybrid(
        {**only_ease, "parts": [{"model": "itemknn", "config": {"neighbours": 20}, "weight": 0.5}]}
    )
    m.fit(ds, vecs)
    users = list(ds.user_vocab.ids[:6])
    plain = TokrecHybrid(only_ease).fit(ds, vecs).score(users)
    knn = create_model("itemknn", {"neighbours": 20}).fit(ds).score(users)
    np.testing.assert_allclose(m.score(users), plain + 0.5 * sig.znorm_rows(knn), rtol=1e-5, atol=1e-5)
    m.save(tmp_path / "m")
    np.testing.assert_allclose(load_model(tmp_path / "m").score(users), m.score(users), rtol=1e-6)
    with pytest.raises(ConfigError, match="registered"):
        TokrecHybrid({"parts": [{"model": "tokrec"}]})


def test_a_blend_of_a_registered_part_alone_ranks_as_that_model(data):
    """The tuner may give every signal weight 0 and a part weight 1 (text-sasrec alone won validation on
    ml-100k): the blend is then the part's z-scores, and a visitor's history is scored too."""
    from tokrec.models import signals as sig
    from tokrec.models.registry import create_model

    ds, vecs = data
    cfg = {f"w_{s}": 0.0 for s in SIGNALS} | {"parts": [{"model": "itemknn", "config": {"neighbours": 20}}]}
    m = TokrecHybrid(cfg | {"fresh_slot": 0}).fit(ds, vecs)  # the slot (tokrec's own) would move new items
    users = list(ds.user_vocab.ids[:6])
    knn = create_model("itemknn", {"neighbours": 20}).fit(ds)
    np.testing.assert_allclose(m.score(users), sig.znorm_rows(knn.score(users)), rtol=1e-5, atol=1e-5)
    history = list(ds.item_vocab.ids[:3])
    assert [i for i, _ in m.recommend(history=history, k=5)] == [
        i for i, _ in knn.recommend(history=history, k=5)
    ]


def test_the_tuner_weighs_parts_like_signals(data):
    ds, vecs = data
    r = tune_tokrec(ds, vecs, parts=("popularity",), **FAST)
    part = [s for s in r.signals if s.signal == "0:popularity"]
    assert part and part[0].available and part[0].alone_ndcg is not None
    assert r.val_ndcg >= part[0].alone_ndcg - 1e-9
    chosen = [p["model"] for p in r.config["parts"]]
    assert chosen == (["popularity"] if part[0].weight > 0 else [])


def test_evaluate_tunes_baselines_on_one_validation_split_and_reports_it(tmp_path):
    from tokrec.cli.main import main
    from tokrec.data.synthetic import write_synthetic

    paths = write_synthetic(tmp_path / "data", n_items=80, n_users=50, seed=1)
    out = tmp_path / "o"
    args = ["evaluate", "--items", str(paths["items"]), "--interactions", str(paths["interactions"])]
    args += [
        "--models",
        "popularity,ease,itemknn",
        "--k",
        "10",
        "--tune-budget",
        "1",
        "--output-dir",
        str(out),
    ]
    assert main(args) == 0
    tuned = json.loads((out / "tuning.json").read_text())["leave-last-out"]
    assert [r["model"] for r in tuned] == ["ease", "itemknn"]  # popularity has nothing to tune
    assert len({json.dumps(r["validation"], sort_keys=True) for r in tuned}) == 1  # the same split
    report = (out / "report.md").read_text()
    assert "## Tuning" in report and "itemknn: validation NDCG@10" in report
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["protocols"]["leave-last-out"]["models"]["ease"]["error"] is None
    # the tuning's time is reported beside the final fit's, from the same TuneResult
    models = metrics["protocols"]["leave-last-out"]["models"]
    seconds = [models[m]["tune_seconds"] for m in ("ease", "itemknn")]
    assert seconds == pytest.approx([r["seconds"] for r in tuned], abs=0.05)  # tuning.json keeps 0.1 s
    assert models["popularity"]["tune_seconds"] is None
    row = next(line for line in report.splitlines() if line.startswith("| ease |")).split(" | ")
    head = next(line for line in report.splitlines() if line.startswith("| model |")).split(" | ")
    assert row[head.index("tune s")] == f"{seconds[0]:.2f}"
    assert main(args[:-4] + ["--no-tune", "--output-dir", str(tmp_path / "n")]) == 0
    assert not (tmp_path / "n" / "tuning.json").exists()


SASREC_TINY = {"hidden": 16, "n_blocks": 1, "n_heads": 2, "inner": 32, "max_len": 10, "epochs": 3}


def _tiny_sasrec_part(monkeypatch, weigh) -> None:
    """text-sasrec as a blend part at toy size, and a weight search that gives each signal or part
    ``weigh(name)`` (parts are named "i:model")."""
    import tokrec.tuning as tuning

    monkeypatch.setitem(
        tuning.TIME_BOUNDED_PARTS, "text-sasrec", {**tuning.TIME_BOUNDED_PARTS["text-sasrec"], **SASREC_TINY}
    )
    monkeypatch.setattr(
        tuning, "_search_weights", lambda mats, *a, **k: ({s: weigh(s) for s in mats}, 1.0, 1)
    )


def test_the_ablation_leaves_a_sequential_text_part_out_of_both_groups(data, monkeypatch):
    """text-sasrec reads the order of events and text vectors: "without order signals" and "without LM
    signals" drop it with the signals of each group (it used to stay in both)."""
    import tokrec.tuning as tuning

    ds, vecs = data
    # validation gives the part and EASE weight 1 each, every other signal 0
    _tiny_sasrec_part(monkeypatch, lambda s: float(":" in s or s == "ease"))
    r = tuning.tune_tokrec(ds, vecs, parts=("text-sasrec",), **{**FAST, "budget_s": 100.0})
    ease_alone = next(s.alone_ndcg for s in r.signals if s.signal == "ease")
    assert r.ablation["without order signals"] == pytest.approx(ease_alone)
    assert r.ablation["without LM signals"] == pytest.approx(ease_alone)


def test_a_time_bounded_part_is_reused_with_whole_histories_not_retrained(data, monkeypatch):
    """text-sasrec as a part: trained once, on the validation split's training events, within its share
    of the budget; fit_tuned reuses that network on the whole log (each user's held-out event as input)
    instead of training it again, and fits it anew for any other log."""
    import tokrec.tuning as tuning

    ds, vecs = data
    # validation gives the part weight 1 (whatever it scores on this small log)
    _tiny_sasrec_part(monkeypatch, lambda s: float(":" in s))
    r = tuning.tune_tokrec(ds, vecs, parts=("text-sasrec",), **{**FAST, "budget_s": 100.0})
    (part,) = r.config["parts"]
    assert part["model"] == "text-sasrec" and part["config"]["max_seconds"] == 70.0  # PART_SHARE of 100 s
    assert part["config"]["refit"] == "none" and part["config"]["refit_seeds"] == 1
    (trained,) = r.fitted_parts
    assert trained.user_vocab_ is not None and len(trained.seen_) == ds.n_users
    assert sum(map(len, trained.seen_.values())) == len(r.fitted_on) - r.validation["held_out_events"]
    json.dumps(r.to_json())  # the fitted models are not part of tuning.json
    assert "fitted_parts" not in r.to_json()

    model = tuning.fit_tuned(r, ds, vecs)
    reused = model.parts_[0]
    assert reused.net_ is trained.net_  # not trained again
    assert sum(map(len, reused.seen_.values())) == len(ds)  # scores from the whole histories
    users = list(ds.user_vocab.ids[:5])
    np.testing.assert_allclose(  # the blend's sum, without the fresh slot's move of a new item
        model.with_scoring(fresh_slot=0).score(users),
        sig_z(trained.with_histories(ds).score(users)),
        rtol=1e-5,
        atol=1e-5,
    )
    # another log object (even with the same events): the part is fitted on it
    other = tuning.fit_tuned(r, ds.__class__(ds.interactions, ds.items), vecs)
    assert other.parts_[0].net_ is not trained.net_


def test_on_new_items_a_time_bounded_part_trains_for_that_task(data, monkeypatch):
    """On a new-item task text-sasrec joins with the options chosen for new items ("what fits anywhere in
    the history": trained on one of the next 10 events, scored by the uniform mixture over prefixes, no ID
    dropout) on top of its time-bounded ones; on a next-item task without them. Validation weighs it on the
    pseudo-new items, and the chosen model is fitted anew on the whole log (the validation network never
    saw the pseudo-new items' events), where it scores the real new items."""
    import tokrec.tuning as tuning

    ds, vecs = data
    _tiny_sasrec_part(monkeypatch, lambda s: float(":" in s))
    new_item = {"target_window": 10, "score_half_life": 1e9, "id_dropout": 0.0}
    cold = tuning.tune_tokrec(ds, vecs, cold=True, parts=("text-sasrec",), **{**FAST, "budget_s": 100.0})
    (part,) = cold.config["parts"]
    assert {k: part["config"][k] for k in new_item} == new_item
    assert part["config"]["refit"] == "none" and part["config"]["max_seconds"] == 70.0
    assert part["weight"] == 1.0
    warm = tuning.tune_tokrec(ds, vecs, parts=("text-sasrec",), **{**FAST, "budget_s": 100.0})
    assert not set(new_item) & set(warm.config["parts"][0]["config"])

    model = tuning.fit_tuned(cold, ds, vecs)
    assert model.parts_[0].net_ is not cold.fitted_parts[0].net_  # fitted anew on the whole log
    assert model.parts_[0].config.score_half_life == 1e9
    assert sum(map(len, model.parts_[0].seen_.values())) == len(ds)


def test_a_sequential_part_leaves_earlier_items_out_of_its_softmax_unless_users_repeat(data, monkeypatch):
    """On a log where no user has an item twice the ranking leaves each user's items out, and so does the
    part's training softmax (mask_history); where users come back to items, it stays off."""
    import tokrec.tuning as tuning

    ds, vecs = data
    _tiny_sasrec_part(monkeypatch, lambda s: float(":" in s))
    assert not tuning.has_repeats(ds)
    once = tuning.tune_tokrec(ds, vecs, parts=("text-sasrec",), **{**FAST, "budget_s": 100.0})
    assert once.config["parts"][0]["config"]["mask_history"] is True
    inter = ds.interactions[["user_id", "item_id", "timestamp"]]
    again = inter.iloc[[0]].assign(timestamp=inter["timestamp"].max() + 1)  # user 0 comes back to an item
    repeats = ds.__class__(pd.concat([inter, again], ignore_index=True), ds.items)
    assert tuning.has_repeats(repeats)
    r = tuning.tune_tokrec(repeats, vecs, parts=("text-sasrec",), **{**FAST, "budget_s": 100.0})
    assert "mask_history" not in r.config["parts"][0]["config"]


def test_a_budget_that_pays_for_it_gives_the_sequential_part_two_networks(data, monkeypatch):
    """With at least ENSEMBLE_PART_SECONDS for it, text-sasrec joins as a two-network ensemble (each
    network its own validation run) and fit_tuned reuses both; on less, and on new-item tasks, one."""
    import tokrec.tuning as tuning

    ds, vecs = data
    _tiny_sasrec_part(monkeypatch, lambda s: float(":" in s))
    budget = tuning.ENSEMBLE_PART_SECONDS / tuning.PART_SHARE + 1.0
    r = tuning.tune_tokrec(ds, vecs, parts=("text-sasrec",), **{**FAST, "budget_s": budget})
    (part,) = r.config["parts"]
    assert (
        part["config"]["refit_seeds"] == 2 and part["config"]["max_seconds"] >= tuning.ENSEMBLE_PART_SECONDS
    )
    (trained,) = r.fitted_parts
    assert len(trained.extra_nets_) == 1 and trained.extra_nets_[0] is not trained.net_
    reused = tuning.fit_tuned(r, ds, vecs).parts_[0]
    assert reused.net_ is trained.net_ and reused.extra_nets_[0] is trained.extra_nets_[0]
    cold = tuning.tune_tokrec(ds, vecs, cold=True, parts=("text-sasrec",), **{**FAST, "budget_s": budget})
    assert cold.config["parts"][0]["config"]["refit_seeds"] == 1


def sig_z(scores):
    from tokrec.models import signals as sig

    return sig.znorm_rows(scores)


def test_fit_with_parts_checks_what_it_is_given(data):
    from tokrec.models.registry import create_model

    ds, vecs = data
    cfg = {f"w_{s}": 0.0 for s in SIGNALS} | {"w_ease": 1.0, "parts": [{"model": "itemknn", "weight": 0.5}]}
    knn = create_model("itemknn").fit(ds)
    m = TokrecHybrid(cfg).fit_with_parts(ds, vecs, [knn])
    assert m.parts_[0] is knn
    with pytest.raises(ConfigError, match="weighted parts"):
        TokrecHybrid(cfg).fit_with_parts(ds, vecs, [])
    with pytest.raises(ConfigError, match="does not fit"):
        TokrecHybrid(cfg).fit_with_parts(ds, vecs, [create_model("popularity").fit(ds)])


def test_text_sasrec_joins_by_default_only_where_it_is_cheap(data, monkeypatch):
    import tokrec.tuning as tuning
    from tokrec.cli.tune import _parts
    from tokrec.tuning import auto_parts

    ds, _ = data
    warm = make_validation(ds)
    assert auto_parts(warm, 120.0) == ["text-sasrec"]  # the default budget
    assert auto_parts(warm, 100.0) == []  # too little for it
    assert auto_parts(make_validation(ds, cold=True), 600.0) == []  # new items: not a next-item task
    # a log whose epoch is larger than AUTO_MAX_WORK (events x items): not by default
    monkeypatch.setattr(tuning, "AUTO_MAX_WORK", len(warm.train) * warm.train.n_items - 1)
    assert auto_parts(warm, 600.0) == []
    assert _parts(argparse.Namespace(blend_parts="auto")) == "auto"
    assert _parts(argparse.Namespace(blend_parts="none")) == []
    assert _parts(argparse.Namespace(blend_parts="text-sasrec, als")) == ["text-sasrec", "als"]


@pytest.mark.parametrize("part", ["itemknn", "text-sasrec"])
def test_items_added_to_a_blend_reach_its_parts_and_leave_the_fitted_model_alone(data, part):
    """The service adds items online to a copy of the model: the copy's parts score them (text-sasrec
    through its own cold path; a part without one ranks them last), the model it was copied from is unchanged."""
    import copy

    ds, vecs = data
    cfg = {"neighbours": 20} if part == "itemknn" else SASREC_TINY
    m = TokrecHybrid({"parts": [{"model": part, "config": cfg, "weight": 1.0}]}).fit(ds, vecs)
    users = list(ds.user_vocab.ids[:4])
    before = m.score(users)
    new = copy.copy(m)
    new.add_items(["brand-new"], vecs[:1] + 0.1)
    after = new.score(users)
    assert after.shape == (4, ds.n_items + 1) and np.isfinite(after).all()
    assert len(m.parts_[0].item_vocab_) == ds.n_items
    np.testing.assert_array_equal(m.score(users), before)
    visitor = new.recommend(history=["brand-new", ds.item_vocab.ids[0]], k=3)
    assert len(visitor) == 3
    if part == "text-sasrec":  # through its own cold path
        assert len(new.parts_[0].item_vocab_) == ds.n_items + 1
    else:  # no cold path: the part keeps its catalog; the new item gets its lowest score
        assert new.parts_[0] is m.parts_[0]
        np.testing.assert_array_equal(new.parts_[0].score(users), m.parts_[0].score(users))


# ---- the budget: every costly step checks the time left first (an injected clock, no real timing) ----
class FakeClock:
    """Seconds that pass only when the test says so (``advance``), never by themselves."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


def _costly_ease(monkeypatch, clock, seconds):
    """Every EASE fit takes ``seconds`` on ``clock``; returns the list of the lambdas fitted."""
    from tokrec.models import signals as sig

    fitted = []
    real = sig.ease_weights

    def slow(x, lam):
        fitted.append(lam)
        clock.advance(seconds)
        return real(x, lam)

    monkeypatch.setattr(sig, "ease_weights", slow)
    return fitted


def test_a_budget_that_allows_nothing_keeps_the_shipped_defaults_and_says_so(data, monkeypatch):
    ds, vecs = data

    def no_fit(*a, **k):
        raise AssertionError("nothing may be fitted on a budget of 0")

    monkeypatch.setattr(TokrecHybrid, "fit", no_fit)
    r = tune_tokrec(ds, vecs, **{**FAST, "budget_s": 0.0})
    assert r.choice == "defaults" and r.config == TokrecConfig().model_dump()
    assert r.budget_hit and "the budget allows no step" in r.table()
    b = tune_baseline("ease", ds, budget_s=0.0)
    from tokrec.models.registry import model_class

    assert b.choice == "defaults" and b.trials == 0
    assert b.config == model_class("ease").Config.model_validate({}).model_dump()
    assert "the budget allows no trial" in b.table()


def test_the_search_skips_what_the_time_left_cannot_pay_for(data, monkeypatch):
    """EASE fits cost 40 s, nothing else costs anything: a 100 s budget pays for the default fit and one
    other lambda; the other lambdas are skipped and listed, and the cheap steps all run."""
    ds, vecs = data
    clock = FakeClock()
    fitted = _costly_ease(monkeypatch, clock, 40.0)
    grid = {**GRID, "ease": [("ease_lambda", [100.0, 300.0, 3000.0])], "prop": [("prop_neighbours", [5, 20])]}
    r = tune_tokrec(ds, vecs, **{**FAST, "grid": grid, "budget_s": 100.0}, clock=clock)
    assert fitted == [1000.0, 100.0]  # the default, then the first value the time left paid for
    assert clock() == 80.0 and r.seconds == 80.0 and r.overrun is None
    assert r.skipped[:2] == ["ease ease_lambda=300", "ease ease_lambda=3000"]
    assert "skipped (budget): ease ease_lambda=300, 3000" in r.table()
    assert r.trials == 30  # the weight trials cost nothing here: all of them ran
    # one EASE fit serves ease and prop: prop's neighbour counts refit no EASE, and prop is scored with the
    # lambda ease chose
    prop = next(s for s in r.signals if s.signal == "prop")
    assert prop.available and prop.params["prop_neighbours"] in (5, 20, 50)
    alone = [s.alone_ndcg for s in r.signals if s.available]
    assert r.val_ndcg >= max(alone) - 1e-9  # the guarantee still holds


def test_a_part_trains_after_the_signals_within_what_they_leave(data, monkeypatch):
    """Every signal is scored once before a part trains (the blend's guarantee needs them; a part is an
    extra), and a time-bounded part gets its share of the budget only as far as the time left beside the
    weight search's share allows; with too little left it is not fitted, and the table says so."""
    import tokrec.tuning as tuning

    ds, vecs = data
    _tiny_sasrec_part(monkeypatch, lambda s: float(":" in s or s == "ease"))
    grid = {s: [] for s in GRID}  # no coordinate search: only the first fit of EASE costs time
    clock = FakeClock()
    _costly_ease(monkeypatch, clock, 40.0)
    r = tuning.tune_tokrec(
        ds, vecs, parts=("text-sasrec",), **{**FAST, "grid": grid, "budget_s": 100.0}, clock=clock
    )
    (part,) = r.config["parts"]
    # 100 s - 40 s of signals - 25 s kept for the weights (WEIGHT_SHARE): 35 s, below its 70 s share
    assert part["config"]["max_seconds"] == pytest.approx(35.0, abs=0.5)
    assert all(s.available for s in r.signals if s.signal in ("ease", "map", "profile"))

    clock = FakeClock()
    _costly_ease(monkeypatch, clock, 72.0)
    r = tuning.tune_tokrec(
        ds, vecs, parts=("text-sasrec",), **{**FAST, "grid": grid, "budget_s": 100.0}, clock=clock
    )
    assert not r.config["parts"] and "the blend part text-sasrec (no time left for it)" in r.skipped
    assert "the blend part text-sasrec (no time left for it)" in r.table()
    assert r.choice != "defaults"  # the signals were all scored: the blend is tuned without the part


def test_a_step_that_outlasts_the_budget_is_the_only_overrun_and_is_reported(data, monkeypatch):
    """The first EASE fit takes longer than the whole budget: it is the one step that overruns; nothing
    starts after it, and without every signal scored once the shipped defaults are kept."""
    ds, vecs = data
    clock = FakeClock()
    fitted = _costly_ease(monkeypatch, clock, 150.0)
    r = tune_tokrec(ds, vecs, **{**FAST, "budget_s": 100.0}, clock=clock)
    assert fitted == [1000.0] and clock() == 150.0
    # the shipped configuration, with the new-user blend chosen first (one cheap fit, before the budget ran out)
    assert r.choice == "defaults" and r.new_users
    assert r.config == {**TokrecConfig().model_dump(), **new_user_config(r.new_users)}
    assert r.overrun == "ease with its defaults"
    table = r.table()
    assert "over by 50s in one step: ease with its defaults" in table
    assert "before every signal was scored once" in table


def test_weight_trials_stop_when_the_time_left_cannot_pay_for_one(data, monkeypatch):
    import tokrec.tuning as tuning

    ds, vecs = data
    clock = FakeClock()
    real = tuning._stacked_ndcg

    def one_second(*a):
        clock.advance(1.0)
        return real(*a)

    monkeypatch.setattr(tuning, "_stacked_ndcg", one_second)
    r = tuning.tune_tokrec(ds, vecs, **{**FAST, "weight_trials": 200, "budget_s": 40.0}, clock=clock)
    assert 10 <= r.trials < 200
    assert r.seconds <= 40.0 + 1.0  # at most one trial past the budget
    assert f"{200 - r.trials} of 200 weight trials" in r.skipped
    alone = [s.alone_ndcg for s in r.signals if s.available]
    assert r.val_ndcg >= max(alone) - 1e-9


def test_baseline_trials_stop_when_the_mean_trial_no_longer_fits(data, monkeypatch):
    ds, _ = data
    clock = FakeClock()
    fitted = _costly_ease(monkeypatch, clock, 10.0)
    r = tune_baseline("ease", ds, budget_s=35.0, max_trials=10, clock=clock)
    assert len(fitted) == r.trials == 3 and clock() == 30.0  # a fourth would end at 40
    assert r.budget_hit and r.skipped == ["7 of 10 trials"]


def test_the_weight_search_samples_users_on_a_large_catalog_and_scores_the_choice_on_all(data, monkeypatch):
    import tokrec.tuning as tuning

    ds, vecs = data
    monkeypatch.setattr(tuning, "WEIGHT_CELLS", 10 * ds.n_items)
    monkeypatch.setattr(tuning, "MIN_USERS", 10)
    seen = []
    real = tuning._search_weights

    def spy(mats, val, *a, **k):
        seen.append(len(val.users))
        return real(mats, val, *a, **k)

    monkeypatch.setattr(tuning, "_search_weights", spy)
    r = tuning.tune_tokrec(ds, vecs, **FAST)
    assert seen == [10] and r.validation["weight_search_users"] == 10
    assert r.validation["users_scored"] > 10 and "(10 for the weights)" in r.table()
    # the reported figure is the chosen blend on every validation user, as the signals alone are
    val = make_validation(ds)
    model = TokrecHybrid(r.config).fit(val.train, vecs)
    from tokrec.models import signals as sig

    seqs = val.train.sequences()
    active = tuple(s for s in SIGNALS if r.config[f"w_{s}"] > 0)
    raw = model.signals([seqs[int(u)] for u in val.users], model.user_time_[val.users], active)
    blend = sum(np.float32(r.config[f"w_{s}"]) * sig.znorm_rows(raw[s]) for s in active)
    assert val.ndcg(blend) == pytest.approx(r.val_ndcg, abs=1e-6)


def test_refitted_fits_only_the_changed_pieces_and_equals_a_fresh_fit(data):
    ds, vecs = data
    m = TokrecHybrid({}).fit(ds, vecs)
    assert m.refit_pieces(TokrecConfig(ease_lambda=100.0)) == {"ease"}
    assert m.refit_pieces(TokrecConfig(prop_neighbours=10)) == {"neighbours"}
    assert m.refit_pieces(TokrecConfig(ease_half_life=1.0, w_ease=2.0)) == set()
    r = m.refitted(ds, vecs, ease_lambda=100.0, prop_neighbours=10)
    fresh = TokrecHybrid({"ease_lambda": 100.0, "prop_neighbours": 10}).fit(ds, vecs)
    users = list(ds.user_vocab.ids[:6])
    np.testing.assert_allclose(r.score(users), fresh.score(users), rtol=1e-5, atol=1e-6)
    assert r.trans_ is m.trans_ and r.features_ is m.features_  # shared, not refitted
    assert r.ease_ is not m.ease_ and m.config.ease_lambda == 1000.0  # the original is unchanged
    np.testing.assert_array_equal(m.score(users), TokrecHybrid({}).fit(ds, vecs).score(users))
    with pytest.raises(ConfigError, match="not the ones"):
        m.refitted(ds, vecs[:-1], ease_lambda=100.0)


def test_fit_and_evaluate_reuse_the_part_the_tuner_trained(tmp_path, monkeypatch):
    """`tokrec fit` and `tokrec evaluate` fit the tuned blend through fit_tuned, as `recommend` does: the
    text-sasrec part trained within the tuning budget is reused, not trained a second time."""
    from tokrec.cli.main import main
    from tokrec.data.synthetic import write_synthetic
    from tokrec.encoders.testing import make_tiny_bert
    from tokrec.models.sequential import TextSASRec
    from tokrec.serve.bundle import load_bundle

    _tiny_sasrec_part(monkeypatch, lambda s: float(":" in s))  # validation gives the part weight 1
    trained = []
    real = TextSASRec._fit

    def counted(self, dataset, item_vectors):
        trained.append(len(dataset))
        return real(self, dataset, item_vectors)

    monkeypatch.setattr(TextSASRec, "_fit", counted)
    monkeypatch.setenv("TOKREC_CACHE_DIR", str(tmp_path / "cache"))
    files = write_synthetic(tmp_path / "data", n_items=60, n_users=40, seed=2)
    tiny = str(make_tiny_bert(tmp_path / "bert"))
    data = ["--items", str(files["items"]), "--interactions", str(files["interactions"])]
    tune = ["--blend-parts", "text-sasrec", "--tune-budget", "100"]
    assert main(["fit", *data, *tune, "--encoder", tiny, "--output", str(tmp_path / "m")]) == 0
    assert len(trained) == 1  # in the tuning step only
    (part,) = load_bundle(tmp_path / "m").model.parts_
    assert part.name == "text-sasrec"
    trained.clear()
    out = tmp_path / "e"
    argv = [
        "evaluate",
        *data,
        *tune,
        "--encoder",
        tiny,
        "--models",
        "tokrec",
        "--k",
        "10",
        "--output-dir",
        str(out),
    ]
    assert main(argv) == 0
    assert len(trained) == 1  # the split's tuning step only
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["protocols"]["leave-last-out"]["models"]["tokrec"]["error"] is None


def test_fit_encodes_the_catalog_once_and_fits_on_the_tuning_steps_vectors(tmp_path, monkeypatch):
    """`tokrec fit` with tuning on encodes the catalog in its tuning step and fits the bundle on those same
    vectors: without a cache each text is encoded once (it was twice), and the bundle's vectors are those a
    fit without tuning computes itself."""
    from tokrec.cli.main import main
    from tokrec.data.synthetic import write_synthetic
    from tokrec.encoders.hf import HFEncoder
    from tokrec.encoders.testing import make_tiny_bert
    from tokrec.serve.bundle import load_bundle

    encoded: list[str] = []
    real = HFEncoder.encode

    def counted(self, texts, **kw):
        encoded.extend(texts)
        return real(self, texts, **kw)

    monkeypatch.setattr(HFEncoder, "encode", counted)
    files = write_synthetic(tmp_path / "data", n_items=50, n_users=30, seed=4)
    tiny = str(make_tiny_bert(tmp_path / "bert"))
    data = ["--items", str(files["items"]), "--interactions", str(files["interactions"]), "--encoder", tiny]
    assert main(["fit", *data, "--no-cache", "--tune-budget", "5", "--output", str(tmp_path / "tuned")]) == 0
    assert len(encoded) == 50 and len(set(encoded)) == 50  # each item's text once
    encoded.clear()
    assert main(["fit", *data, "--no-cache", "--no-tune", "--output", str(tmp_path / "plain")]) == 0
    assert len(encoded) == 50
    tuned, plain = load_bundle(tmp_path / "tuned"), load_bundle(tmp_path / "plain")
    np.testing.assert_array_equal(tuned.item_vectors, plain.item_vectors)
    assert tuned.template == plain.template


def test_on_new_items_the_collaborative_signals_are_not_scored_but_prop_keeps_its_ease(data):
    ds, vecs = data
    r = tune_tokrec(ds, vecs, cold=True, **FAST)
    by = {s.signal: s for s in r.signals}
    assert not any(by[s].available for s in ("ease", "trans", "time"))
    assert all(r.config[f"w_{s}"] == 0 for s in ("ease", "trans", "time"))
    assert any("candidates have no events" in n for n in r.data["notes"])
    assert by["prop"].available and by["map"].available  # prop carries EASE's scores: EASE was fitted
    assert r.val_ndcg >= max(s.alone_ndcg for s in r.signals if s.available) - 1e-9


def _costly_prop(monkeypatch, clock, seconds: float) -> None:
    """Scoring the prop signal advances the fake clock by ``seconds``."""
    real = TokrecHybrid.signals

    def slow_prop(self, seqs, times, which=SIGNALS):
        if "prop" in which:
            clock.advance(seconds)
        return real(self, seqs, times, which)

    monkeypatch.setattr(TokrecHybrid, "signals", slow_prop)


def test_a_new_ease_lambda_is_tried_only_if_prop_can_be_rescored_after_it(data, monkeypatch):
    """prop reads EASE: a lambda that wins must be followed by prop's rescoring, so a lambda is tried only
    when the time left pays for both (else prop would be left out of the blend)."""
    ds, vecs = data
    clock = FakeClock()
    _costly_ease(monkeypatch, clock, 40.0)
    _costly_prop(monkeypatch, clock, 15.0)
    grid = {"ease": [("ease_lambda", [100.0])]}
    r = tune_tokrec(ds, vecs, **{**FAST, "grid": grid, "budget_s": 100.0}, clock=clock)
    assert clock() == 55.0  # EASE, then prop scored once; 40 + 15 more would not fit in the 45 s left
    assert r.skipped[0] == "ease ease_lambda=100"
    assert next(s for s in r.signals if s.signal == "prop").available


def test_prop_is_rescored_as_soon_as_a_new_ease_lambda_wins(data, monkeypatch):
    """The time a lambda's trial kept for prop's rescoring is spent on it at once, not after the searches
    of the signals between ease and prop (map's refit here), which would leave prop out."""
    from tokrec.models import signals as sig

    ds, vecs = data
    clock = FakeClock()
    _costly_ease(monkeypatch, clock, 40.0)
    ridge = sig.content_ridge
    monkeypatch.setattr(sig, "content_ridge", lambda *a, **k: (clock.advance(30.0), ridge(*a, **k))[1])
    _costly_prop(monkeypatch, clock, 15.0)
    grid = {"ease": [("ease_lambda", [100.0])], "map": [("map_lambda", [1.0])]}
    r = tune_tokrec(ds, vecs, **{**FAST, "grid": grid, "budget_s": 195.0}, clock=clock)
    assert r.config["ease_lambda"] == 100.0  # the lambda won on this data (what the test is about)
    prop = next(s for s in r.signals if s.signal == "prop")
    assert prop.available and not any("left out" in x for x in r.skipped)
    # the new-user blend's ridge 30; ridge 30, EASE 40, prop 15; lambda 40 + prop 15 = 170; map's ridge (30)
    # no longer fits
    assert clock() == 170.0 and "map map_lambda=1" in r.skipped


def test_new_item_validation_holds_out_the_items_the_encoder_was_fine_tuned_without(data, tmp_path):
    """A folder written by `tokrec finetune` records the items it held out; a new-item validation (tuner,
    `tokrec tune --candidates`) holds out exactly those that have events, so the tuned encoder is blind to
    them; a plain folder, or ids of which none has events, leaves the seeded 20% draw."""
    from tokrec.cli.tune import held_out_by_encoder
    from tokrec.encoders import FINETUNE_FILE

    ds, _ = data
    with_events = sorted(set(ds.interactions["item_id"]))
    given = with_events[:7] + ["not-an-item"]
    folder = tmp_path / "tuned"
    folder.mkdir()
    (folder / FINETUNE_FILE).write_text(
        json.dumps({"format": "tokrec-finetuned-encoder/1", "val_items": given})
    )
    assert held_out_by_encoder(argparse.Namespace(model_path=str(folder))) == given
    assert (
        held_out_by_encoder(argparse.Namespace(encoder=str(tmp_path))) is None
    )  # no such file: a plain folder
    assert held_out_by_encoder(argparse.Namespace(model_path=None)) is None  # the bundled default

    val = make_validation(ds, cold=True, cold_items=given)
    assert sorted(val.split.candidates) == with_events[:7]
    held = set(val.split.test.interactions["item_id"])
    assert held == set(with_events[:7])
    assert not held & set(val.split.train.interactions["item_id"])
    assert val.summary()["protocol"] == "cold-item on the 7 items the encoder was fine-tuned without"

    drawn = make_validation(ds, cold=True, cold_items=["not-an-item"])  # nothing to hold out: the draw
    assert drawn.summary()["protocol"] == "cold-item"
    assert sorted(drawn.split.candidates) == sorted(make_validation(ds, cold=True).split.candidates)
    assert make_validation(ds, cold=False, cold_items=given).split.protocol == "leave-last-out"

    (folder / FINETUNE_FILE).write_text(json.dumps({"val_items": "i1"}))
    with pytest.raises(ConfigError, match="val_items"):
        held_out_by_encoder(argparse.Namespace(model_path=str(folder)))
