"""``tokrec`` on large catalogs: candidates retrieved per signal, then the exact blend over them with
whole-catalog statistics (tokrec.models.retrieval). Forced on a small catalog (``retrieval_min_items=1``)
so that the full computation is there to compare with."""

from __future__ import annotations

import numpy as np
import pytest

from tokrec.data.synthetic import make_synthetic
from tokrec.models import create_model, load_model


@pytest.fixture(scope="module")
def data():
    ds = make_synthetic(n_items=900, n_users=400, seed=3)
    rng = np.random.default_rng(0)
    topics = rng.normal(size=(30, 24)).astype(np.float32)
    vecs = topics[rng.integers(0, 30, ds.n_items)] + 0.5 * rng.normal(size=(ds.n_items, 24)).astype(
        np.float32
    )
    return ds, vecs


def _pair(ds, vecs, **cfg):
    full = create_model("tokrec", {"retrieval_min_items": 10**9, **cfg}).fit(ds, vecs)
    return full, full.with_scoring(retrieval_min_items=1)


def test_closed_form_statistics_give_the_full_computations_scores(data):
    # every statistic but prop's spread and the cold calibration has a closed form: without those two the
    # retrieved candidates' scores are the full computation's, to float rounding
    ds, vecs = data
    full, ret = _pair(ds, vecs, w_prop=0.0, cold_calibration=False)
    assert ret.uses_retrieval() and not full.uses_retrieval()
    users = list(ds.user_vocab)[:60]
    a, b = full.score(users), ret.score(users)
    got = np.isfinite(b)
    assert got.sum(axis=1).min() > 0 and got.sum(axis=1).max() < ds.n_items  # a subset, not everything
    np.testing.assert_allclose(b[got], a[got], atol=2e-4)
    ra, rb = full.recommend_batch(users, k=10), ret.recommend_batch(users, k=10)
    assert (ra["item_id"].to_numpy() == rb["item_id"].to_numpy()).mean() > 0.97


def test_the_default_blend_ranks_as_the_full_computation(data):
    ds, vecs = data
    full, ret = _pair(ds, vecs)
    users = list(ds.user_vocab)[:80]
    a, b = full.score(users), ret.score(users)
    got = np.isfinite(b)
    assert np.abs(b[got] - a[got]).mean() < 0.05  # scores on the blend's scale (z-sums, spread ~10)
    ra, rb = full.recommend_batch(users, k=10), ret.recommend_batch(users, k=10)
    overlap = np.mean(
        [len(set(ra.item_id[ra.user_id == u]) & set(rb.item_id[rb.user_id == u])) / 10 for u in users]
    )
    assert overlap > 0.95


def test_given_candidates_are_scored_exactly_and_nothing_else(data):
    ds, vecs = data
    full, ret = _pair(ds, vecs, w_prop=0.0, cold_calibration=False)
    cands = list(ds.item_vocab)[100:160]
    user = list(ds.user_vocab)[5]
    got = ret.recommend(user, k=20, candidates=cands)
    want = full.recommend(user, k=20, candidates=cands)
    assert [i for i, _ in got] == [i for i, _ in want]
    np.testing.assert_allclose([s for _, s in got], [s for _, s in want], atol=2e-4)
    s = ret.score([user], cands)  # score() with item ids asks for exactly those
    assert np.isfinite(s).all()


def test_an_item_added_online_is_retrieved_and_scored_as_in_the_full_computation(data):
    ds, vecs = data
    full, ret = _pair(ds, vecs, w_prop=0.0, cold_calibration=False)
    ret.catalog_index()  # built before the item arrives: the new row is in the index's exact tail
    user = list(ds.user_vocab)[7]
    hist = ret.seen_[ret.user_vocab_.get(user)]
    new_vec = vecs[hist[-3:]].mean(axis=0, keepdims=True)  # close to the user's recent items
    for m in (full, ret):
        m.add_items(["brand-new"], new_vec)
    assert ret.catalog_index().n == ds.n_items + 1
    row, new = ret.user_vocab_.get(user), ds.n_items
    a, b = full.score_rows(row), ret.score_rows(row)
    assert np.isfinite(b[new])  # retrieved: among the profile's best, searched exactly in the index's tail
    assert b[new] == pytest.approx(a[new], abs=2e-4)


def test_a_saved_model_retrieves_the_same_after_loading(data, tmp_path):
    ds, vecs = data
    _, ret = _pair(ds, vecs)
    users = list(ds.user_vocab)[:20]
    ret.save(tmp_path / "m")
    back = load_model(tmp_path / "m")
    assert back.uses_retrieval()
    np.testing.assert_array_equal(back.score(users), ret.score(users))


def test_replacing_a_sampled_items_content_refreshes_the_indexs_copies(data):
    # the index keeps the sampled rows' features and neighbour lists contiguous; a replaced row must not
    # leave a stale copy behind (the sampled statistics would then describe the old catalog)
    ds, vecs = data
    _, ret = _pair(ds, vecs)
    before = ret.catalog_index()
    row = int(before.sample[3])
    ret.add_items([ret.item_vocab_.ids[row]], -vecs[row : row + 1])
    after = ret.catalog_index()
    assert after is not before and after.n == before.n
    np.testing.assert_array_equal(after.sample_features, ret.features_[after.sample])
    assert not np.array_equal(after.sample_features[3], before.sample_features[3])
    assert (after.sample_nb != ret.neighbours_[after.sample]).nnz == 0


@pytest.mark.parametrize("retrieval", [False, True])
def test_cold_offset_shifts_items_without_events_and_nothing_else(data, retrieval):
    ds, vecs = data
    full, ret = _pair(ds, vecs)
    base = ret if retrieval else full
    rng = np.random.default_rng(5)
    base.add_items(["n1", "n2", "n3"], vecs[rng.choice(ds.n_items, 3)] + 0.1)
    boosted = base.with_scoring(cold_offset=7.5)
    assert boosted.uses_retrieval() == retrieval
    new = np.arange(ds.n_items, ds.n_items + 3)
    row = base.user_vocab_.get(list(ds.user_vocab)[9])
    cands = np.concatenate([np.arange(0, ds.n_items, 7), new])  # known and new items, all scored
    a = base.score_rows(row, candidates=cands)
    b = boosted.score_rows(row, candidates=cands)
    np.testing.assert_allclose(b[new] - a[new], 7.5, atol=1e-4)
    known = cands[cands < ds.n_items]
    with_events, without = known[base.warm_[known]], known[~base.warm_[known]]
    assert len(with_events) and len(without)  # the catalog has items without events too: shifted alike
    np.testing.assert_array_equal(b[with_events], a[with_events])
    np.testing.assert_allclose(b[without] - a[without], 7.5, atol=1e-4)
    assert list(np.argsort(-a[new])) == list(np.argsort(-b[new]))


def test_each_signal_a_query_reads_is_the_full_computations_at_every_item(data):
    # what one query reads per row (EASE rows from one product, transitions from the CSR arrays, the time
    # kernel from the values kept per bin or from a product, the map from history_map_weights, the profile's
    # one-history path, prop, age, prior) is the whole-catalog signal's value there, for every item
    from tokrec.models.recommended import SIGNALS
    from tokrec.models.retrieval import TIME_VALUES_BYTES, CatalogIndex

    ds, vecs = data
    full, ret = _pair(ds, vecs)
    active = set(ret._active())
    assert active == set(SIGNALS)  # the defaults weigh all eight
    kept = ret.catalog_index()
    kept.warm_time(ret)
    assert all(entry[3] is not None for entry in kept.time_cache.values())  # 900 items: every bin kept
    computed = CatalogIndex.build(ret)
    computed.time_bytes = TIME_VALUES_BYTES  # no room: each query computes its rows' values
    every = np.arange(ret.n_items)
    no_sample = np.zeros(len(kept.sample), dtype=bool)
    rows = [ret.user_vocab_.get(u) for u in list(ds.user_vocab)[:25]]
    queries = [(ret.seen_[r], int(ret.user_time_[r])) for r in rows]
    queries.append((np.array([5, 17, 5, 300, 17, 42]), int(ret.user_time_.max())))  # repeats: latest weight
    for seq, t in queries:
        want = full.signals([seq], np.array([t]))
        for idx in (kept, computed):
            q = idx._query(ret, seq, t, active)
            assert (q.time[3] is not None) == (idx is kept)
            names, raw = idx._signals(ret, q, every, len(every), no_sample, active, t)
            assert sorted(names) == sorted(SIGNALS)
            for name, got in zip(names, raw, strict=True):
                np.testing.assert_allclose(got, want[name][0], rtol=1e-5, atol=1e-5, err_msg=name)
            for name in sorted(active - {"prop"}):  # the closed forms: the whole catalog's mean and sd
                mean, sd = idx._stats(q, name, raw[names.index(name)], np.ones(len(every)), t, ret)
                ref = want[name][0].astype(np.float64)
                assert (mean, sd) == pytest.approx((ref.mean(), ref.std()), rel=1e-4, abs=1e-6), name


def test_the_content_map_of_one_history_is_map_weights_row(data):
    # the retrieval path's map weights (history_map_weights: no sparse row built) are map_weights' to the bit
    import scipy.sparse as sp

    ds, vecs = data
    _, ret = _pair(ds, vecs)
    rng = np.random.default_rng(2)
    nf = ret.n_fitted
    assert not ret.warm_.all()  # items without events take no part in the map: both must leave them out
    for size in (0, 1, 7, 40):
        items = np.unique(rng.integers(0, nf, size))
        row = sp.csr_matrix((np.ones(len(items), np.float32), items, [0, len(items)]), shape=(1, nf))
        np.testing.assert_array_equal(ret.history_map_weights(items), ret.map_weights(row)[0])


@pytest.mark.parametrize("retrieval", [False, True])
def test_the_fresh_slot_shows_a_new_item_close_to_the_users_recent_items_at_once(data, retrieval):
    ds, vecs = data
    full, ret = _pair(ds, vecs)
    model = ret if retrieval else full
    if retrieval:
        model.catalog_index()  # built before the items arrive: they are in its exactly searched tail
    user = list(ds.user_vocab)[11]
    hist = model.seen_[model.user_vocab_.get(user)]
    close = vecs[hist[-2:]].mean(axis=0, keepdims=True)  # the text of the user's two latest items
    far = -vecs[hist[-2:]].mean(axis=0, keepdims=True)
    model.add_items(["close", "far"], np.vstack([close, far]))
    off = model.with_scoring(fresh_slot=0)
    ranked_off = [i for i, _ in off.recommend(user, k=model.n_items)]
    assert ranked_off.index("close") >= 10  # the blend alone does not show it: the slot has work to do
    for r in (10, 3):
        top = [i for i, _ in model.with_scoring(fresh_slot=r).recommend(user, k=r)]
        assert top[-1] == "close" and "far" not in top  # above every known item but the r - 1 best
        assert top[:-1] == [i for i in ranked_off if i != "close"][: r - 1]  # the rest in the blend's order
    # a visitor with the same recent items gets it too (the history path)
    visitor = [i for i, _ in model.recommend(history=list(model.item_vocab_.decode(hist[-2:])), k=10)]
    assert "close" in visitor
    # a list of new items only (the cold-item task) is left in the blend's order
    new_only = [i for i in ds.item_vocab if not model.warm_[model.item_vocab_.get(i)]] + ["close", "far"]
    assert [i for i, _ in model.recommend(user, k=20, candidates=new_only)] == [
        i for i, _ in off.recommend(user, k=20, candidates=new_only)
    ]
