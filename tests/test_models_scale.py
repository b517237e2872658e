"""The recommended model at scale: bounded EASE, sparse time statistics, memory checked before encoding,
output directories checked before any work."""

from __future__ import annotations

import numpy as np
import pytest

from tokrec.cli.main import main
from tokrec.data.synthetic import make_synthetic, write_synthetic
from tokrec.errors import ConfigError
from tokrec.models import create_model, load_model
from tokrec.models.base import check_memory


@pytest.fixture(scope="module")
def synthetic():
    ds = make_synthetic(n_items=150, n_users=80, seed=5)
    rng = np.random.default_rng(0)
    vecs = rng.normal(size=(ds.n_items, 16)).astype(np.float32)
    return ds, vecs


def test_ease_over_the_most_popular_items_only(synthetic, tmp_path):
    ds, vecs = synthetic
    full = create_model("tokrec").fit(ds, vecs)
    capped = create_model("tokrec", {"ease_max_items": 40}).fit(ds, vecs)
    pop = np.bincount(ds.item_idx, minlength=ds.n_items)
    assert capped.ease_.shape == (40, 40) and full.ease_.shape == (150, 150)
    assert set(capped.ease_items_) == set(np.argsort(-pop, kind="stable")[:40])
    users = list(ds.user_vocab)[:10]
    s = capped.score(users)
    assert np.isfinite(s).all() and s.shape == (10, 150)
    # the time statistics are sparse: one entry per (item, day) with events, never items x days dense
    assert capped.time_counts_.nnz <= len(ds) and capped.time_counts_.sum() == len(ds)
    capped.save(tmp_path / "m")
    np.testing.assert_array_equal(load_model(tmp_path / "m").score(users), s)


def test_memory_is_checked_before_anything_is_encoded(synthetic, tmp_path, monkeypatch):
    ds, _ = synthetic
    model = create_model("tokrec")
    need = model.memory_estimate(ds)
    assert need > 16 * 150**2
    with pytest.raises(ConfigError, match=r"GiB.*ease_max_items"):
        check_memory(model, ds, limit=need - 1)
    check_memory(model, ds, limit=need)  # enough: no error

    class NeverEncode:
        dim, fingerprint = 16, "never"

        def encode(self, texts, **kw):
            raise AssertionError("encoded before the memory check")

    import tokrec.models.base as base
    from tokrec.serve.bundle import fit_bundle

    monkeypatch.setattr(base, "available_memory", lambda: 1024)
    with pytest.raises(ConfigError, match="needs about"):
        fit_bundle(ds, tmp_path / "model", encoder=NeverEncode(), cache=None)
    assert not (tmp_path / "model").exists()


def test_fit_checks_its_output_before_any_work(tmp_path, capsys):
    files = write_synthetic(tmp_path / "data", n_items=30, n_users=20, seed=1)
    (tmp_path / "existing.csv").write_text("a,b\n")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "keep.txt").write_text("mine")
    argv = ["fit", "--items", str(files["items"]), "--interactions", str(files["interactions"])]
    with pytest.raises(SystemExit) as e:  # a file: refused when the arguments are parsed
        main([*argv, "--output", str(tmp_path / "existing.csv")])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "existing.csv is a file; give a folder" in err[-1]
    assert main([*argv, "--output", str(tmp_path / "notes")]) == 2  # a folder that is not a model's
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a tokrec model directory" in err[0] and "notes" in err[0]
    assert (tmp_path / "notes" / "keep.txt").read_text() == "mine"


def test_cold_calibration_places_new_items_without_reordering_them(synthetic):
    """Items without events get the collaborative part that the user's items with events have at the same
    content strength: new items move up in one list with the rest, in the same order among themselves."""
    ds, vecs = synthetic
    pop = np.bincount(ds.item_idx, minlength=ds.n_items)
    inter = ds.interactions[~ds.interactions["item_id"].isin(ds.items["item_id"][:30])]
    from tokrec.data.dataset import Dataset

    part = Dataset(inter, ds.items)
    cold = part.items["item_id"][:30].tolist()
    assert pop[:30].sum() > 0 and np.bincount(part.item_idx, minlength=ds.n_items)[:30].sum() == 0
    plain = create_model("tokrec", {"cold_calibration": False}).fit(part, vecs)
    calib = create_model("tokrec").fit(part, vecs)
    users = [u for u in part.user_vocab][:30]
    moved = 0
    for u in users:
        a = [i for i, _ in plain.recommend(u, k=30, candidates=cold)]
        b = [i for i, _ in calib.recommend(u, k=30, candidates=cold)]
        assert a == b  # a ranking of new items only is unchanged
        full_a = [i for i, _ in plain.recommend(u, k=150)]
        full_b = [i for i, _ in calib.recommend(u, k=150)]
        moved += sum(full_b.index(i) < full_a.index(i) for i in cold)
    assert moved > 0.6 * len(users) * len(cold)


def test_large_ease_is_solved_in_float32_in_place_to_the_same_weights(monkeypatch):
    import scipy.sparse as sp

    from tokrec.models import signals as sig

    x = sp.random(400, 300, density=0.05, random_state=3, format="csr")
    x.data[:] = 1.0
    exact = sig.ease_weights(x, 50.0)
    monkeypatch.setattr(sig, "EASE_FLOAT64_MAX", 100)  # 300 items: the float32 Cholesky path
    approx = sig.ease_weights(x, 50.0)
    assert approx.dtype == np.float32 and approx.flags["C_CONTIGUOUS"]
    assert np.all(np.diag(approx) == 0)
    np.testing.assert_allclose(approx, exact, atol=2e-6 * np.abs(exact).max())


def test_age_rates_count_pairs_by_binary_search_as_the_definition_does():
    import scipy.sparse as sp

    from tokrec.models import signals as sig

    rng = np.random.default_rng(1)
    x = sp.random(60, 80, density=0.1, random_state=4, format="csr")
    x.data[:] = 1.0
    t = rng.integers(8e8, 9e8, 60)
    rel = rng.uniform(6e8, 9.2e8, 80)
    rel[::9] = np.nan
    items = np.flatnonzero(np.asarray(x.sum(axis=0)).ravel() > 0)
    got = sig.age_log_rates(x, t, rel, items)
    # the definition, one (user, item) pair at a time
    known = items[np.isfinite(rel[items])]
    nb = len(sig.AGE_EDGES_DAYS) + 1
    events, pairs = np.zeros(nb), np.zeros(nb)
    dense = x.toarray()
    for u in range(60):
        for i in known:
            b = np.digitize((t[u] - rel[i]) / 86400.0, sig.AGE_EDGES_DAYS)
            pairs[b] += 1
            events[b] += dense[u, i]
    overall = (events.sum() + 1) / (pairs.sum() + 1)
    want = np.log(np.append((events + 50 * overall) / (pairs + 50), overall))
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_text_neighbours_of_a_large_pool_come_from_an_ann_index_with_the_exact_answer():
    from tokrec.models import signals as sig

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(60, 16)).astype(np.float32)
    z = sig.l2_rows(np.repeat(centres, 50, axis=0) * 2 + rng.normal(size=(3000, 16)).astype(np.float32))
    pool = np.flatnonzero(rng.random(3000) < 0.7)
    exact = sig.neighbours_among(z, z, pool, 10, np.arange(3000))
    ann = sig.neighbours_among(
        z, z, pool, 10, np.arange(3000), exact_max=100, exact_pairs=0
    )  # the faiss path
    assert ann.shape == exact.shape and np.all(np.diff(ann.indptr) <= 10)
    assert ann.diagonal().max() == 0  # never an item's own row
    assert set(ann.indices) <= set(pool)
    overlap = [
        len(
            set(ann.indices[ann.indptr[r] : ann.indptr[r + 1]])
            & set(exact.indices[exact.indptr[r] : exact.indptr[r + 1]])
        )
        for r in range(3000)
    ]
    assert np.mean(overlap) / 10 > 0.95
    # a few queries over a large pool (an online add) are answered exactly, the pool read in place
    few = sig.neighbours_among(z[:5], z, pool, 10, np.arange(5), exact_max=100)
    np.testing.assert_array_equal(few.indptr, exact[:5].indptr)
    np.testing.assert_array_equal(few.indices, exact[:5].indices)
    np.testing.assert_allclose(few.data, exact[:5].data, rtol=1e-6)


def test_the_ivf_join_is_exact_when_it_scans_every_cell_and_never_returns_a_query_itself():
    """Below 40 x 32 pool rows every cell is scanned (at most n // 39 cells, 32 per query): the join's
    answer is then the exact top k, scores included, for a self-join and for other queries alike."""
    from tokrec import ann

    rng = np.random.default_rng(3)
    x = rng.normal(size=(1200, 24)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    assert ann.join_nprobe(min(ann.join_cells(1200), 1200 // 39)) == 1200 // 39  # every cell
    scores, found = ann.ivf_join(x, 7)
    sims = x @ x.T
    np.fill_diagonal(sims, -np.inf)
    want = np.argsort(-sims, axis=1, kind="stable")[:, :7]
    np.testing.assert_array_equal(found, want)
    np.testing.assert_allclose(scores, np.take_along_axis(sims, want, axis=1), rtol=1e-5, atol=1e-6)
    # other queries; query 0 may not get pool row 5, query 1 has no own row
    q = rng.normal(size=(40, 24)).astype(np.float32)
    own = np.full(40, -1)
    own[0] = 5
    scores, found = ann.ivf_join(x, 3, q, own)
    qs = q @ x.T
    qs[0, 5] = -np.inf
    np.testing.assert_array_equal(found, np.argsort(-qs, axis=1, kind="stable")[:, :3])
    # a pool smaller than k: every row, then -1 / -inf
    scores, found = ann.ivf_join(x[:4], 6)
    assert found.shape == (4, 4) and np.all(found[:, -1] == -1) and np.all(np.isneginf(scores[:, -1]))
    assert all(set(found[r, :3]) == set(range(4)) - {r} for r in range(4))


def test_the_neighbour_search_index_scans_a_fixed_number_of_cells_of_4_sqrt_n():
    """Every item is a query of the text-neighbour search: with 4 sqrt(n) cells and 32 scanned per query,
    a query reads 8 sqrt(n) vectors (O(n^1.5) in all), where sqrt(n) cells with 1/16 of them scanned read
    n / 16 (O(n^2))."""
    from tokrec import ann

    assert ann.join_cells(1_000_000) == 4000 and ann.join_nprobe(4000) == 32
    assert ann.join_cells(10) == 16 and ann.join_nprobe(16) == 16
    for n in (200_000, 1_000_000, 10_000_000):
        scanned = ann.join_nprobe(ann.join_cells(n)) * n / ann.join_cells(n)
        assert abs(scanned - 8 * np.sqrt(n)) / (8 * np.sqrt(n)) < 0.01
    rng = np.random.default_rng(0)
    z = rng.normal(size=(4000, 8)).astype(np.float32)
    index = ann.build_ann(z, "ivf", nlist=ann.join_cells(4000))
    assert index.nlist == min(ann.join_cells(4000), 4000 // 39) == 102  # faiss's 39 training rows per cell


def test_an_sq8_index_pads_an_odd_dimension_and_finds_the_exact_neighbours():
    """8-bit codes are scanned with SIMD only at a multiple of 16 dimensions: the index stores zero-padded
    vectors, pads queries and added rows, and its candidates hold the exact top 10."""
    from tokrec import ann

    rng = np.random.default_rng(4)
    centres = rng.normal(size=(30, 37)).astype(np.float32)
    x = centres[rng.integers(30, size=3000)] + 0.6 * rng.normal(size=(3000, 37)).astype(np.float32)
    idx = ann.build_ann(x, "ivf", codec="sq8")
    flat = ann.build_ann(x, "ivf")
    assert idx.d == ann.stored_dim(37, "sq8") == 48 and flat.d == 37 and idx.ntotal == 3000
    q = x[:50] + 0.1
    _, found = ann.search(idx, q, 50, nprobe=idx.nlist)  # every cell: only the codes' rounding differs
    exact = np.argsort(-(q @ x.T), axis=1, kind="stable")[:, :10]
    recall = np.mean([len(set(found[j]) & set(exact[j])) / 10 for j in range(50)])
    assert recall == 1.0
    ann.add(idx, -x[:1])  # added rows are padded too
    assert idx.ntotal == 3001 and ann.search(idx, -x[:1], 1, nprobe=idx.nlist)[1][0, 0] == 3000
