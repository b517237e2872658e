"""text-sasrec: conformance, a learnable next-item rule, new items from text alone, persistence, seeds."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conformance import RecommenderConformance
from tokrec.data.dataset import Dataset
from tokrec.errors import ConfigError
from tokrec.models.registry import create_model, load_model
from tokrec.models.sequential import TextSASRec

pytest.importorskip("torch")

TINY = {
    "hidden": 16,
    "n_blocks": 1,
    "n_heads": 2,
    "inner": 32,
    "max_len": 10,
    "batch_size": 32,
    "threads": 1,
    "device": "cpu",
    # the default moving average (decay 0.99 a step) spans dozens of these tiny epochs, and the tiny
    # nets learn the planted rules below more slowly with a gap embedding: the mechanisms are tested
    # without them, each of the two by its own test (and test_cli_recommend runs the defaults)
    "ema_decay": 0.0,
    "time_gaps": False,
    "refit_seeds": 1,  # the seed ensemble (2 by default) has its own tests
}


class TestTextSASRecConformance(RecommenderConformance):
    @staticmethod
    def make_model(**config):
        return TextSASRec(
            {**TINY, "epochs": 40, "patience": 40, "lr": 5e-3, "dropout": 0.0, "refit": "none", **config}
        )


def cycle_data(
    n_items: int = 30, n_users: int = 120, length: int = 12, seed: int = 0
) -> tuple[Dataset, np.ndarray]:
    """Each user walks a fixed cycle ``i -> perm[i]`` from a random start: the next item is a
    deterministic function of the previous one. Item vectors are random (no text signal)."""
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n_items)
    rows = []
    for u in range(n_users):
        i = int(rng.integers(n_items))
        for t in range(length):
            rows.append((f"u{u}", f"i{i}", t))
            i = int(perm[i])
    inter = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])
    items = pd.DataFrame({"item_id": [f"i{i}" for i in range(n_items)]})
    vecs = rng.normal(size=(n_items, 12)).astype(np.float32)
    return Dataset(inter, items), vecs


@pytest.fixture(scope="module")
def cycle_model() -> tuple[TextSASRec, Dataset, np.ndarray]:
    ds, vecs = cycle_data()
    model = TextSASRec(
        {
            **TINY,
            "epochs": 60,
            "patience": 60,
            "lr": 5e-3,
            "dropout": 0.0,
            "id_dropout": 0.0,
            "refit": "none",
            "seed": 3,
        }
    )
    return model.fit(ds, vecs), ds, vecs


def test_learns_a_deterministic_next_item_rule(cycle_model) -> None:
    model, ds, _ = cycle_model
    assert next_item_hit_rate(model, ds) > 0.5  # chance is 1/30


def test_learns_the_rule_with_earlier_items_out_of_the_softmax(tmp_path) -> None:
    ds, vecs = cycle_data()
    config = {**TINY, "epochs": 60, "patience": 60, "lr": 5e-3, "dropout": 0.0, "id_dropout": 0.0}
    model = TextSASRec({**config, "refit": "none", "seed": 3, "mask_history": True}).fit(ds, vecs)
    # the ranking the mask is for leaves the history out (seen items' scores were never trained down)
    assert next_item_hit_rate(model, ds, exclude_seen=True) > 0.5
    loaded = load_model(model.save(tmp_path / "masked"))
    assert loaded.config.mask_history is True


def next_item_hit_rate(model: TextSASRec, ds: Dataset, exclude_seen: bool = False) -> float:
    """Share of 50 random walks of 1-5 steps on the cycle whose top item is the cycle's next one (with
    ``exclude_seen``, among the walks whose next item is not in the walk: short cycles come back)."""
    perm = {}
    for s in ds.sequences():
        for a, b in zip(s[:-1], s[1:], strict=True):
            perm[int(a)] = int(b)
    hits = walks = 0
    rng = np.random.default_rng(1)
    for _ in range(50):
        start = int(rng.integers(ds.n_items))
        hist = [start]
        for _ in range(int(rng.integers(1, 5))):
            hist.append(perm[hist[-1]])
        if exclude_seen and perm[hist[-1]] in hist:
            continue
        walks += 1
        top = model.recommend(history=ds.item_vocab.decode(hist), k=1, exclude_seen=exclude_seen)[0][0]
        hits += top == ds.item_vocab.decode([perm[hist[-1]]])[0]
    assert walks >= 25
    return hits / walks


def test_validation_history_and_chosen_epoch(cycle_model) -> None:
    model, _, _ = cycle_model
    assert len(model.history_) == 60 and 1 <= model.best_epoch_ <= 60
    best = max(h["val_ndcg10"] for h in model.history_)
    assert model.history_[model.best_epoch_ - 1]["val_ndcg10"] == best
    assert best > 0.5


def test_add_items_scores_new_items_from_text(tmp_path) -> None:
    """Two item groups with distinct text vectors; users stay in their group. New items added after
    training (no events, no retraining) must be ranked by the group their text belongs to."""
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(2, 12)) * 3
    n = 24
    group = np.arange(n) % 2
    vecs = (centres[group] + rng.normal(size=(n, 12)) * 0.3).astype(np.float32)
    rows = []
    for u in range(80):
        g = u % 2
        for t, i in enumerate(rng.permutation(np.flatnonzero(group == g))[:8]):
            rows.append((f"u{u}", f"i{i}", t))
    ds = Dataset(
        pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"]),
        pd.DataFrame({"item_id": [f"i{i}" for i in range(n)]}),
    )
    model = TextSASRec(
        {**TINY, "epochs": 25, "patience": 25, "lr": 5e-3, "id_dropout": 0.5, "refit": "none"}
    ).fit(ds, vecs)
    new_vecs = (centres[[0, 1, 0, 1]] + rng.normal(size=(4, 12)) * 0.3).astype(np.float32)
    before = model.n_items
    model.add_items(["new0", "new1", "new2", "new3"], new_vecs)
    assert model.n_items == before + 4 and len(ds.item_vocab) == before  # the dataset's vocab is untouched
    s = model.score(["u0", "u1"], ["new0", "new1", "new2", "new3"])  # u0 in group 0, u1 in group 1
    assert min(s[0, [0, 2]]) > max(s[0, [1, 3]]) and min(s[1, [1, 3]]) > max(s[1, [0, 2]])
    recs = [i for i, _ in model.recommend("u1", k=2, candidates=["new0", "new1", "new2", "new3"])]
    assert set(recs) == {"new1", "new3"}
    loaded = load_model(model.save(tmp_path / "m"))
    np.testing.assert_allclose(loaded.score(["u0"], ["new0", "new1"]), s[:1, :2], rtol=1e-5, atol=1e-6)
    with pytest.raises(ConfigError):
        model.add_items(["x"], np.zeros((1, 5), np.float32))


def test_seed_reproducibility_and_save_load(tmp_path) -> None:
    ds, vecs = cycle_data(n_users=40, length=8)
    cfg = {**TINY, "epochs": 4, "patience": 4}
    a = TextSASRec({**cfg, "seed": 7}).fit(ds, vecs)
    b = TextSASRec({**cfg, "seed": 7}).fit(ds, vecs)
    c = TextSASRec({**cfg, "seed": 8}).fit(ds, vecs)
    sa, sb, sc = a.score(["u0", "u5"]), b.score(["u0", "u5"]), c.score(["u0", "u5"])
    np.testing.assert_array_equal(sa, sb)
    assert not np.allclose(sa, sc)
    loaded = load_model(a.save(tmp_path / "m"))
    np.testing.assert_allclose(loaded.score(["u0", "u5"]), sa, rtol=1e-5, atol=1e-6)
    assert loaded.best_epoch_ == a.best_epoch_ and loaded.history_ == a.history_


def test_config_checks() -> None:
    with pytest.raises(ConfigError):
        create_model("text-sasrec", {"hidden": 10, "n_heads": 3}).fit(*cycle_data(n_users=5))
    with pytest.raises(ConfigError):
        create_model("text-sasrec", {"dtype": "int8"})
    with pytest.raises(ConfigError):
        TextSASRec(TINY).fit(cycle_data(n_users=5)[0])  # needs item vectors


def test_refit_modes_train_on_the_full_sequences() -> None:
    ds, vecs = cycle_data(n_users=30, length=8)
    scores = {}
    for mode in ("none", "continue", "scratch"):
        m = TextSASRec({**TINY, "epochs": 3, "patience": 3, "refit": mode, "continue_epochs": 1}).fit(
            ds, vecs
        )
        assert len(m.history_) == 3
        scores[mode] = m.score(["u0", "u1"])
        assert np.isfinite(scores[mode]).all()
    assert not np.allclose(scores["none"], scores["continue"])
    assert not np.allclose(scores["none"], scores["scratch"])


def test_whole_history_scoring_is_a_recency_weighted_mixture_of_next_item_distributions() -> None:
    """``score_half_life``: log of a weighted mean of the softmax after every position, computed here by
    hand from the network's hidden states; a tiny half-life gives back the last position's ranking; a
    history longer than ``max_len`` is cut into windows from the end (as in training)."""
    import torch

    from tokrec.models._sasrec_impl import left_pad, score_histories

    ds, vecs = cycle_data(n_users=30, length=8)
    model = TextSASRec({**TINY, "epochs": 2, "patience": 2, "refit": "none"}).fit(ds, vecs)
    net, table = model.net_, model._table()
    kw = {"batch_size": 4, "device": torch.device("cpu"), "dtype": "float32"}
    rng = np.random.default_rng(0)
    hists = [rng.integers(0, ds.n_items, size=n) for n in (1, 4, 10, 23)]  # max_len is 10
    half_life = 3.0
    got = score_histories(net, table, hists, half_life=half_life, **kw)
    with torch.no_grad():
        for h, row in zip(hists, got, strict=True):
            want = np.zeros(ds.n_items)
            w = 0.5 ** (np.arange(len(h) - 1, -1, -1) / half_life)
            w /= w.sum()
            for end in range(len(h), 0, -10):  # windows of max_len from the end
                start = max(0, end - 10)
                seq = torch.from_numpy(left_pad([h[start:end]], 10, -1))
                hid = net.encode(seq, table)[0, 10 - (end - start) :]
                probs = torch.softmax(hid @ table.T * net.logit_scale, -1).numpy()
                want += (w[start:end, None] * probs).sum(0)
            np.testing.assert_allclose(row, np.log(want), rtol=1e-4, atol=1e-5)
    last = score_histories(net, table, hists, **kw)
    sharp = score_histories(net, table, hists, half_life=1e-6, **kw)
    log_softmax = (
        last
        - np.log(np.exp(last - last.max(1, keepdims=True)).sum(1, keepdims=True))
        - last.max(1, keepdims=True)
    )
    np.testing.assert_allclose(sharp, log_softmax, rtol=1e-4, atol=1e-4)
    assert (score_histories(net, table, [np.empty(0, np.int64)], half_life=2.0, **kw) == 0).all()
    # a copy with another scoring option scores through the mixture; the fitted model is unchanged
    fitted_config = model.config
    model = model.with_scoring(score_half_life=half_life)
    assert fitted_config.score_half_life is None and model.config.score_half_life == half_life
    u = ds.user_vocab.get("u3")
    np.testing.assert_allclose(
        model.score(["u3"])[0],
        score_histories(net, table, [model.seen_[u]], half_life=half_life, **kw)[0],
        rtol=1e-5,
    )


@pytest.mark.parametrize(
    "new_rows", [{"new_items": "adaptor"}, {"new_items": "content-map", "new_item_lambda": 0.1}]
)
def test_catalog_attributes_place_new_items_whose_text_says_nothing(tmp_path, new_rows) -> None:
    """Users stay within one category; item text vectors are pure noise, so only the ``category``
    attribute tells the groups apart. New items (no events) must be ranked by their category, whether
    their rows come from the adaptor or from the content map (here 24 trained items for 15 features:
    a light ridge)."""
    rng = np.random.default_rng(0)
    n = 24
    group = np.arange(n) % 2
    vecs = rng.normal(size=(n + 4, 12)).astype(np.float32)
    rows = []
    for u in range(80):
        for t, i in enumerate(rng.permutation(np.flatnonzero(group == u % 2))[:8]):
            rows.append((f"u{u}", f"i{i}", t))
    names = [f"i{i}" for i in range(n)] + ["new0", "new1", "new2", "new3"]
    items = pd.DataFrame(
        {"item_id": names, "category": [["drama", "comedy"][g] for g in group] + ["drama", "comedy"] * 2}
    )
    ds = Dataset(pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"]), items)
    cfg = {
        **TINY,
        "epochs": 25,
        "patience": 25,
        "lr": 5e-3,
        "id_dropout": 0.5,
        "refit": "none",
        "attr_weight": 1.0,
        **new_rows,
    }
    model = TextSASRec(cfg).fit(ds, vecs)
    assert model.item_attrs_ is not None and model.item_attrs_.shape == (n + 4, 2)
    new = ["new0", "new1", "new2", "new3"]  # drama, comedy, drama, comedy
    s = model.score(["u0", "u1"], new)  # u0 watches drama (group 0), u1 comedy
    assert min(s[0, [0, 2]]) > max(s[0, [1, 3]]) and min(s[1, [1, 3]]) > max(s[1, [0, 2]])
    if new_rows["new_items"] == "content-map":
        # the new items' rows are the ridge fit (content features -> rows) of the trained items' rows
        import torch

        from tokrec.models.signals import ridge

        with torch.no_grad():
            z = torch.from_numpy(model._normalise(model.item_vectors_))
            raw = model.net_.table(z, torch.from_numpy(model.id_index_)).numpy().astype(np.float64)
        f, trained = model.content_features(), model.id_index_ > 0
        assert f.shape == (n + 4, 12 + 2 + 1) and trained.sum() == n
        table = model._table(0).numpy()
        np.testing.assert_array_equal(table[trained], raw[trained].astype(np.float32))
        w = ridge(f[trained], raw[trained], 0.1)
        np.testing.assert_allclose(table[~trained], f[~trained] @ w, rtol=1e-4, atol=1e-5)
    loaded = load_model(model.save(tmp_path / "m"))
    np.testing.assert_allclose(loaded.score(["u0", "u1"], new), s, rtol=1e-5, atol=1e-6)
    text_only = TextSASRec({**cfg, "attributes": False}).fit(ds, vecs)
    assert text_only.item_attrs_ is None
    # add_items takes attribute rows in the fitted layout, and checks their shape
    model.add_items(["new4"], vecs[:1], item_attributes=np.array([[0.0, 1.0]]))  # columns: comedy, drama
    assert model.score(["u0"], ["new4"]).shape == (1, 1)
    assert model.content_attrs_ is not None
    np.testing.assert_array_equal(model.content_attrs_[model.item_vocab_.get("new4")], [0.0, 1.0])
    n_before = model.n_items
    with pytest.raises(ConfigError):
        model.add_items(["new5"], vecs[:1], item_attributes=np.ones((1, 3)))
    assert model.n_items == n_before and len(model.id_index_) == n_before  # a refused call changes nothing
    known = model.item_attrs_[model.item_vocab_.get("i0")].copy()
    model.add_items(["i0", "new6"], vecs[:2])  # new text, no attributes given
    assert np.array_equal(model.item_attrs_[model.item_vocab_.get("i0")], known) and known.any()
    assert not model.item_attrs_[model.item_vocab_.get("new6")].any()


def test_training_windows_and_future_window_targets() -> None:
    from tokrec.models._sasrec_impl import pick_targets, training_windows

    s = np.array([10, 11, 12, 13, 14])
    inputs, targets = training_windows([s, np.array([7])], max_len=3, target_window=2)
    # inputs s[:-1] = 10 11 12 13 cut from the end into windows of 3: [11 12 13] and [10]
    np.testing.assert_array_equal(inputs, [[11, 12, 13], [-1, -1, 10]])
    np.testing.assert_array_equal(
        targets,
        [[[12, 13], [13, 14], [14, -100]], [[-100, -100], [-100, -100], [11, 12]]],
    )
    _, next_only = training_windows([s], max_len=3)
    np.testing.assert_array_equal(next_only[:, :, 0], [[12, 13, 14], [-100, -100, 11]])
    rng = np.random.default_rng(0)
    draws = np.stack([pick_targets(targets, rng) for _ in range(200)])
    assert set(draws[:, 0, 0]) == {12, 13} and set(draws[:, 0, 1]) == {13, 14}
    assert set(draws[:, 0, 2]) == {14} and set(draws[:, 1, 0]) == {-100}


def test_shifted_windows_train_every_event_once_with_a_whole_window_for_the_newest() -> None:
    from tokrec.models._sasrec_impl import gap_windows, training_windows

    s = np.arange(10, 18)  # inputs 10..16 (7), targets 11..17
    inputs, targets = training_windows([s], max_len=3, shifts=np.array([2]))
    # shift 2: the newest two inputs (15, 16) keep a whole window [14 15 16] (only its last two positions
    # trained); the rest is cut from 15 back: [12 13 14], [-1 10 11]... then the oldest input alone
    np.testing.assert_array_equal(inputs, [[14, 15, 16], [12, 13, 14], [-1, 10, 11]])
    np.testing.assert_array_equal(targets[:, :, 0], [[-100, 16, 17], [13, 14, 15], [-100, 11, 12]])
    trained = targets[:, :, 0][targets[:, :, 0] != -100]
    np.testing.assert_array_equal(np.sort(trained), s[1:])  # each event a target exactly once
    # shift 0 is the windows from the end; short histories are never shifted
    np.testing.assert_array_equal(
        training_windows([s], 3, shifts=np.array([0]))[0], training_windows([s], 3)[0]
    )
    np.testing.assert_array_equal(training_windows([s[:3]], 3, shifts=np.array([2]))[0], [[-1, 10, 11]])
    # side inputs are cut into the same windows
    g = gap_windows([s * 100], 3, shifts=np.array([2]))
    np.testing.assert_array_equal(g, inputs * 100 * (inputs >= 0))


def test_shuffle_ties_permutes_only_events_of_equal_time() -> None:
    from tokrec.models._sasrec_impl import shuffle_ties

    s = np.array([1, 2, 3, 4, 5, 6])
    t = np.array([10, 20, 20, 20, 30, 30])
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(100):
        (out,) = shuffle_ties([s], [t], rng)
        assert out[0] == 1 and set(out[1:4]) == {2, 3, 4} and set(out[4:]) == {5, 6}
        seen.add(tuple(out))
    assert len(seen) == 12  # 3! orders of the first tie times 2! of the second, all drawn
    untied = np.array([7, 8, 9])
    assert shuffle_ties([untied], [np.array([1, 2, 3])], rng)[0] is untied


def test_epoch_resampling_changes_the_training_windows_but_not_the_defaults() -> None:
    """tie_order='shuffle' and window_offset='random' re-cut the windows every epoch (the fitted network
    differs from the default's); the defaults keep one fixed set of windows."""
    ds, vecs = cycle_data(n_users=20, length=8)
    inter = ds.interactions[["user_id", "item_id", "timestamp"]].copy()
    inter["timestamp"] //= 2  # events in same-time pairs
    ds = Dataset(inter, ds.items)
    base = {**TINY, "epochs": 2, "patience": 2, "refit": "none", "refit_seeds": 1, "max_len": 4, "seed": 3}
    ref = TextSASRec(base).fit(ds, vecs).score(["u0", "u1"])
    again = TextSASRec(base).fit(ds, vecs).score(["u0", "u1"])
    np.testing.assert_array_equal(ref, again)
    for extra in ({"window_offset": "random"}, {"tie_order": "shuffle"}):
        other = TextSASRec({**base, **extra}).fit(ds, vecs).score(["u0", "u1"])
        assert np.isfinite(other).all()
        assert not np.allclose(other, ref), extra


def test_a_seed_ensemble_averages_its_members_and_round_trips(tmp_path) -> None:
    """refit_seeds=2: one validation run, two networks refitted from scratch with seeds s and s+1; the
    scores are the mean of what each member scores alone, and save/load keeps both members."""
    ds, vecs = cycle_data(n_users=30, length=8)
    cfg = {**TINY, "epochs": 3, "patience": 3, "refit": "scratch", "seed": 5}
    ens = TextSASRec({**cfg, "refit_seeds": 2}).fit(ds, vecs)
    assert len(ens.extra_nets_) == 1 and len(ens.history_) == 3
    one = TextSASRec({**cfg, "refit_seeds": 1}).fit(
        ds, vecs
    )  # the first member is exactly the single-seed model
    users = ["u0", "u7"]
    s0 = one.score(users)
    member1 = TextSASRec(cfg).fit(ds, vecs)
    member1.net_ = ens.extra_nets_[0]
    member1._table_cache = {}
    np.testing.assert_allclose(ens.score(users), (s0 + member1.score(users)) / 2, rtol=1e-5, atol=1e-6)
    assert not np.allclose(s0, member1.score(users))
    # with two torch threads the members train side by side, in two Python threads: the same networks
    again = TextSASRec({**cfg, "refit_seeds": 2, "threads": 2}).fit(ds, vecs)
    np.testing.assert_allclose(again.score(users), ens.score(users), rtol=1e-5, atol=1e-6)
    loaded = load_model(ens.save(tmp_path / "ens"))
    assert len(loaded.extra_nets_) == 1
    np.testing.assert_allclose(loaded.score(users), ens.score(users), rtol=1e-5, atol=1e-6)


def test_an_ensemble_of_best_checkpoints_is_each_seeds_own_validation_run() -> None:
    """refit=none, refit_seeds=2: the second member is what a refit=none fit with seed s+1 keeps (its own
    validation run and best checkpoint), so ``--choose refit_seeds=1,2`` compares like with like."""
    ds, vecs = cycle_data(n_users=30, length=8)
    cfg = {**TINY, "epochs": 4, "patience": 4, "refit": "none", "seed": 5}
    ens = TextSASRec({**cfg, "refit_seeds": 2}).fit(ds, vecs)
    first = TextSASRec({**cfg, "refit_seeds": 1}).fit(ds, vecs)
    second = TextSASRec({**cfg, "seed": 6, "refit_seeds": 1}).fit(ds, vecs)
    assert len(ens.extra_nets_) == 1 and ens.best_epoch_ == first.best_epoch_
    assert [h["val_ndcg10"] for h in ens.history_] == [h["val_ndcg10"] for h in first.history_]
    users = ["u0", "u3", "u7"]
    s1, s2 = first.score(users), second.score(users)
    assert not np.allclose(s1, s2)
    np.testing.assert_allclose(ens.score(users), (s1 + s2) / 2, rtol=1e-5, atol=1e-6)


def test_gap_buckets_and_gap_windows_follow_the_training_windows() -> None:
    from tokrec.models._sasrec_impl import N_GAP_BUCKETS, gap_buckets, gap_windows, training_windows

    # first event unknown (0); same second 1; 1 s -> 2 + log2(1) = 2; 1024 s -> 12; a decade -> capped
    t = np.array([100, 100, 101, 1125, 1125 + 10 * 365 * 86400])
    np.testing.assert_array_equal(gap_buckets(t), [0, 1, 2, 12, N_GAP_BUCKETS - 1])
    assert gap_buckets(np.array([5])).tolist() == [0] and gap_buckets(np.array([], np.int64)).size == 0
    seqs = [np.array([10, 11, 12, 13, 14]), np.array([7])]
    gaps = [np.array([0, 1, 2, 3, 4]), np.array([0])]
    inputs, _ = training_windows(seqs, max_len=3)
    g = gap_windows(gaps, max_len=3)
    # the same windows as the item inputs [11 12 13] and [10], padding 0 (= unknown)
    np.testing.assert_array_equal(g, [[1, 2, 3], [0, 0, 0]])
    assert g.shape == inputs.shape


def session_data(n_users: int = 150, n_pool: int = 12, seed: int = 0) -> tuple[Dataset, np.ndarray]:
    """Only the time gap says what comes next: at step k a random pool item arrives either in the same
    second as the previous event or a day later, and is followed (same second) by the marker item
    ``Ak`` after a day's gap and ``Bk`` after none. Without the gaps, Ak and Bk are a coin toss."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        t = 0
        for k in range(6):
            long_gap = bool(rng.random() < 0.5)
            t += 86400 if long_gap else 0
            rows.append((f"u{u}", f"p{int(rng.integers(n_pool))}", t))
            rows.append((f"u{u}", f"A{k}" if long_gap else f"B{k}", t))
    inter = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])
    ids = [f"p{i}" for i in range(n_pool)] + [f"{m}{k}" for m in "AB" for k in range(6)]
    vecs = rng.normal(size=(len(ids), 12)).astype(np.float32)
    return Dataset(inter, pd.DataFrame({"item_id": ids})), vecs


def test_time_gaps_let_the_model_use_session_boundaries(tmp_path) -> None:
    ds, vecs = session_data()
    cfg = {**TINY, "epochs": 60, "patience": 60, "lr": 5e-3, "dropout": 0.0, "refit": "none", "seed": 1}
    model = TextSASRec({**cfg, "time_gaps": True, "gap_dropout": 0.0}).fit(ds, vecs)
    row = model.item_vocab_.get
    rng = np.random.default_rng(7)
    right = 0
    for _ in range(40):
        # a fresh history: steps 0 and 1 complete, then step 2's pool item after a long or no gap
        hist = [row(f"p{int(rng.integers(12))}"), row("B0"), row(f"p{int(rng.integers(12))}"), row("A1")]
        times = [0, 0, 86400, 86400]
        long_gap = bool(rng.random() < 0.5)
        hist.append(row(f"p{int(rng.integers(12))}"))
        times.append(times[-1] + (86400 if long_gap else 0))
        s = model._score_history(np.array(hist), np.array(times))
        right += int((s[row("A2")] > s[row("B2")]) == long_gap)
    assert right >= 36  # without gaps this is a coin toss (about 20 of 40)
    # without timestamps the gaps are "unknown": scores still come, from the items alone
    assert np.isfinite(model._score_history(np.array(hist))).all()
    # the known users' gaps are kept by save / load (scores identical)
    loaded = load_model(model.save(tmp_path / "tg"))
    np.testing.assert_allclose(loaded.score(["u0", "u5"]), model.score(["u0", "u5"]), rtol=1e-5, atol=1e-6)
    assert set(loaded.seen_times_) == set(model.seen_times_)
    with pytest.raises(ConfigError, match="timestamps"):
        model._score_history(np.array(hist), np.array(times[:-1]))


def test_ema_of_the_weights_is_the_decayed_average_of_the_iterates(tmp_path) -> None:
    import torch
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    from tokrec.models._sasrec_impl import NextItemLoss, training_windows
    from tokrec.training import train_epoch

    ds, vecs = cycle_data(n_users=12, length=6)
    model = TextSASRec({**TINY, "ema_decay": 0.5})
    model.item_vectors_ = vecs
    model._fit_text_norm(vecs)
    net = model._build_net(vecs.shape[1], 0)
    snaps: list[list[torch.Tensor]] = []

    class Recording(torch.optim.SGD):
        def step(self, closure=None):  # type: ignore[override]
            out = super().step(closure)
            snaps.append([p.detach().clone() for p in net.parameters()])
            return out

    ema = AveragedModel(net, multi_avg_fn=get_ema_multi_avg_fn(0.5), use_buffers=True)
    inputs, targets = training_windows(ds.sequences(), max_len=10)
    z = torch.from_numpy(model._normalise(vecs))
    ids = torch.zeros(len(vecs), dtype=torch.long)
    loss = NextItemLoss(
        net, z, ids, inputs, targets, batch_size=4, id_dropout=0.0, rng=np.random.default_rng(0),
        device=torch.device("cpu"), dtype="float32",
    )  # fmt: skip
    train_epoch(net, Recording(net.parameters(), lr=0.5), loss.batches(), loss, averaged=ema)
    assert len(snaps) == 3  # 12 windows in batches of 4
    expected = snaps[0]  # the first update copies the weights, then e = 0.5 e + 0.5 w
    for snap in snaps[1:]:
        expected = [0.5 * e + 0.5 * w for e, w in zip(expected, snap, strict=True)]
    for got, want in zip(ema.module.parameters(), expected, strict=True):
        torch.testing.assert_close(got, want)
    assert not torch.allclose(next(iter(ema.module.parameters())), snaps[-1][0])
    # the fitted model keeps (and saves) the averaged network
    fitted = TextSASRec({**TINY, "epochs": 3, "patience": 3, "ema_decay": 0.9, "seed": 2}).fit(ds, vecs)
    loaded = load_model(fitted.save(tmp_path / "ema"))
    np.testing.assert_allclose(loaded.score(["u0", "u3"]), fitted.score(["u0", "u3"]), rtol=1e-5, atol=1e-6)


DAY = 86400
BASE = 10_000 * DAY  # 1997-05-19
N_REL = 60  # releases r0..r59, rk out on day 5k


def release_data(n_users: int = 150, seed: int = 0) -> tuple[Dataset, np.ndarray]:
    """Only the item's age says what comes next: ten old filler items f*, and releases rk out on day
    5k. Each user is active once, at a random time t: five same-second pairs of a random filler and a
    release out in the 30 days before t (different ones). All releases have the same vector (their
    text says nothing), so without IDs only the age bias tells them apart: a guess hits one of the six
    new releases one time in ten."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        t = int(rng.integers(30 * DAY, N_REL * 5 * DAY))
        new = [k for k in range(N_REL) if 0 <= t - 5 * DAY * k < 30 * DAY]
        for j, k in enumerate(rng.permutation(new)[:5]):
            rows.append((f"u{u}", f"f{int(rng.integers(10))}", BASE + t + j))
            rows.append((f"u{u}", f"r{int(k)}", BASE + t + j))
    inter = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])
    dates = ["1990-01-01"] * 10 + [
        str(pd.Timestamp(BASE + 5 * DAY * k, unit="s").date()) for k in range(N_REL)
    ]
    ids = [f"f{i}" for i in range(10)] + [f"r{k}" for k in range(N_REL)]
    vecs = rng.normal(size=(len(ids), 12)).astype(np.float32)
    vecs[10:] = vecs[10]
    return Dataset(inter, pd.DataFrame({"item_id": ids, "release_date": dates})), vecs


def test_item_age_bias_recommends_what_was_new_at_the_time(tmp_path) -> None:
    ds, vecs = release_data()
    cfg = {**TINY, "epochs": 40, "patience": 40, "lr": 1e-2, "dropout": 0.0, "refit": "none", "seed": 1}
    model = TextSASRec({**cfg, "item_age": True, "attributes": False, "id_embeddings": False}).fit(ds, vecs)
    releases = np.array([model.item_vocab_.get(f"r{k}") for k in range(N_REL)])
    rng = np.random.default_rng(5)
    right = 0
    for _ in range(30):
        t = int(rng.integers(30 * DAY, N_REL * 5 * DAY))
        s = model._score_history(np.array([model.item_vocab_.get("f3")]), np.array([BASE + t]))
        top = int(np.argmax(s[releases]))  # release k is new at t when 0 <= t - 5k days < 30 days
        right += int(0 <= t - 5 * DAY * top < 30 * DAY)
    assert right >= 27  # a guess gets about 3 of 30
    # the learnt bias favours ages of 0-30 days over older ones
    from tokrec.models.signals import AGE_EDGES_DAYS

    bias = model.net_.age_bias.detach().numpy()
    assert bias[int(np.digitize(15.0, AGE_EDGES_DAYS))] > bias[int(np.digitize(100.0, AGE_EDGES_DAYS))] + 1.0
    # release dates and users' times survive save / load; add_items takes a new item's release date
    loaded = load_model(model.save(tmp_path / "age"))
    np.testing.assert_allclose(loaded.score(["u0"]), model.score(["u0"]), rtol=1e-5, atol=1e-6)
    out = BASE + (N_REL * 5 + 40) * DAY
    loaded.add_items(["new"], vecs[:1], item_release=np.array([out]))
    s = loaded._score_history(np.array([loaded.item_vocab_.get("f3")]), np.array([out + 10 * DAY]))
    assert s[loaded.item_vocab_.get("new")] > s[releases].max()


def test_max_seconds_ends_the_validation_run_when_spent() -> None:
    ds, vecs = cycle_data(n_users=30, length=8)
    base = {**TINY, "epochs": 4, "patience": 4, "refit": "none"}
    assert len(TextSASRec(base).fit(ds, vecs).history_) == 4
    # a budget spent before the first step: one (empty) epoch, validated, then the fit stops
    short = TextSASRec({**base, "max_seconds": 1e-9}).fit(ds, vecs)
    assert len(short.history_) == 1 and short.best_epoch_ == 1
    with pytest.raises(ConfigError):
        TextSASRec({**base, "max_seconds": 0})


def test_with_histories_scores_from_the_whole_history_without_retraining() -> None:
    """A network fitted with each user's last event held out scores, through with_histories, from the
    whole history (that event as the last input), exactly as scoring that history directly; the fitted
    model keeps its own histories."""
    from tokrec.evaluation.splits import leave_last_out

    ds, vecs = cycle_data(n_users=40, length=9)
    held = leave_last_out(ds).train
    model = TextSASRec({**TINY, "epochs": 3, "patience": 3, "refit": "none", "time_gaps": True}).fit(
        held, vecs
    )
    before = model.score(["u0", "u1"])
    full = model.with_histories(ds)
    assert full.net_ is model.net_ and full.seen_ is not model.seen_
    seqs, times = ds.sequences(), ds.timestamp_sequences()
    for j, u in enumerate(["u0", "u1"]):
        row = ds.user_vocab.encode([u])[0]
        assert len(full.seen_[row]) == len(model.seen_[row]) + 1
        np.testing.assert_allclose(
            full.score([u])[0], model._score_history(seqs[row], times[row]), rtol=1e-5, atol=1e-5
        )
        assert not np.allclose(full.score([u])[0], before[j])
    np.testing.assert_array_equal(model.score(["u0", "u1"]), before)
    other, _ = cycle_data(n_items=31, n_users=40, length=9)
    with pytest.raises(ConfigError, match="catalog"):
        model.with_histories(other)


def test_earlier_items_and_the_seen_mask_of_each_trained_position() -> None:
    import torch

    from tokrec.models._sasrec_impl import earlier_items, seen_mask, training_windows

    s = np.array([10, 11, 12, 13, 14])  # inputs 10 11 12 13 -> windows [11 12 13] and [-1 -1 10]
    inputs, targets = training_windows([s, np.array([7])], max_len=3)
    before = earlier_items([s, np.array([7])], max_len=3)
    assert [b.tolist() for b in before] == [[10], []]  # the second window starts the history
    columns = torch.full((20,), -1, dtype=torch.int64)
    columns[10:15] = torch.arange(5)  # softmax columns 0..4 = items 10..14
    has = torch.from_numpy(targets[:, :, 0] != -100)
    mask = seen_mask(torch.from_numpy(inputs), before, columns, 5, has).int()
    # trained positions in order: (window 0: after 11, 12, 13) and (window 1: after 10)
    np.testing.assert_array_equal(
        mask.numpy(), [[1, 1, 0, 0, 0], [1, 1, 1, 0, 0], [1, 1, 1, 1, 0], [1, 0, 0, 0, 0]]
    )


def test_mask_history_leaves_the_users_earlier_items_out_of_the_softmax() -> None:
    import torch

    from tokrec.models._sasrec_impl import NextItemLoss, earlier_items, training_windows

    ds, vecs = cycle_data(n_users=6, length=8)
    model = TextSASRec(TINY)
    model.item_vectors_ = vecs
    model._fit_text_norm(vecs)
    net = model._build_net(vecs.shape[1], 0).eval()
    seqs = ds.sequences()
    inputs, targets = training_windows(seqs, max_len=4)
    z = torch.from_numpy(model._normalise(vecs))
    ids = torch.zeros(len(vecs), dtype=torch.long)
    common = {"batch_size": 64, "id_dropout": 0.0, "device": torch.device("cpu"), "dtype": "float32"}
    rows = np.arange(len(inputs))
    plain = NextItemLoss(net, z, ids, inputs, targets, rng=np.random.default_rng(0), **common)(rows)
    masked = NextItemLoss(
        net, z, ids, inputs, targets, rng=np.random.default_rng(0), earlier=earlier_items(seqs, 4), **common
    )(rows)
    assert plain is not None and masked is not None
    # by hand: each trained position's cross-entropy over the items its user has not had yet
    with torch.no_grad():
        table = net.table(z, ids)
        logits = (net.encode(torch.from_numpy(inputs), table) @ table.T * net.logit_scale).numpy()
    terms = []
    for w, (inp, tgt) in enumerate(zip(inputs, targets[:, :, 0], strict=True)):
        for pos in np.flatnonzero(tgt != -100):
            had = set(earlier_items(seqs, 4)[w].tolist()) | set(inp[: pos + 1][inp[: pos + 1] >= 0].tolist())
            keep = [i for i in range(len(vecs)) if i not in had or i == tgt[pos]]  # a repeat stays
            row = logits[w, pos, keep]
            terms.append(np.log(np.exp(row - row.max()).sum()) + row.max() - logits[w, pos, tgt[pos]])
    assert masked[0].item() == pytest.approx(float(np.mean(terms)), rel=1e-5)
    assert masked[0].item() < plain[0].item()  # fewer competitors: the target's share can only grow
