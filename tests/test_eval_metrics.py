"""Metrics: known values computed by hand, and agreement with the benchmark's score_recs.py."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tokrec.errors import DataError
from tokrec.evaluation.metrics import (
    bootstrap_ci,
    clean_recommendations,
    ndcg_from_scores,
    ndcg_per_user_from_scores,
    paired_difference,
    popularity_deciles,
    score_recommendations,
    tied_share,
)

L2, L3, L4 = math.log2(2), math.log2(3), math.log2(4)


def _frames() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """u1 saw a,b; u2 saw c; u4 saw a (not tested). Test: u1 -> c,d; u2 -> a; u3 -> b (no recs)."""
    train = pd.DataFrame({"user_id": ["u1", "u1", "u2", "u4"], "item_id": ["a", "b", "c", "a"]})
    test = pd.DataFrame({"user_id": ["u1", "u1", "u2", "u3"], "item_id": ["c", "d", "a", "b"]})
    # u1: a is seen, the second c is a duplicate -> clean list c, e, d
    # u2: c is seen -> clean list b, a ; rows deliberately out of rank order
    recs = pd.DataFrame(
        {
            "user_id": ["u1"] * 5 + ["u2"] * 3,
            "item_id": ["a", "c", "e", "d", "c", "c", "a", "b"],
            "score": [9, 8, 7, 6, 5, 3, 2, 1],
            "rank": [1, 2, 3, 4, 5, 3, 2, 1],
        }
    )
    return recs, test, train


def test_known_values_at_2_and_3() -> None:
    recs, test, train = _frames()
    m = score_recommendations(recs, test, train, k=[2, 3], catalog=list("abcde"))
    # u1@2: c hit at rank 1, e miss; 2 relevant. u2@2: b miss, a hit at rank 2; 1 relevant. u3: no recs.
    ndcg_u1 = (1 / L2) / (1 / L2 + 1 / L3)
    ndcg_u2 = (1 / L3) / (1 / L2)
    assert m["users"] == 3
    assert m["ndcg@2"] == pytest.approx((ndcg_u1 + ndcg_u2) / 3)
    assert m["recall@2"] == pytest.approx((1 / 2 + 1) / 3)
    assert m["hr@2"] == pytest.approx(2 / 3)
    assert m["mrr@2"] == pytest.approx((1 + 1 / 2) / 3)
    assert m["map@2"] == pytest.approx((1 / 2 + 1 / 2) / 3)
    # @3: u1 c, e, d -> hits at ranks 1 and 3; u2 unchanged (2 clean recs only)
    ndcg3_u1 = (1 / L2 + 1 / L4) / (1 / L2 + 1 / L3)
    assert m["ndcg@3"] == pytest.approx((ndcg3_u1 + ndcg_u2) / 3)
    assert m["recall@3"] == pytest.approx((1 + 1) / 3)
    assert m["map@3"] == pytest.approx(((1 + 2 / 3) / 2 + 1 / 2) / 3)
    assert m["users_without_recs"] == 1
    assert m["seen_items_filtered"] == 2
    assert m["duplicates_filtered"] == 1
    assert m["outside_candidates_filtered"] == 0


def test_beyond_accuracy_known_values() -> None:
    recs, test, train = _frames()
    m = score_recommendations(recs, test, train, k=2, catalog=list("abcde"))
    # top-2 recommended: u1 c, e ; u2 b, a. Train popularity (distinct users): a 2, b 1, c 1, d 0, e 0; 3 users.
    assert m["coverage@2"] == pytest.approx(4 / 5)
    assert m["novelty@2"] == pytest.approx((3 * -math.log2(1 / 3) - math.log2(2 / 3)) / 4)
    assert m["arp@2"] == pytest.approx((1 / 3 + 0 + 1 / 3 + 2 / 3) / 4)
    # short head = ceil(20% of 5) = 1 item: a. Long tail: c, e, b
    assert m["long_tail@2"] == pytest.approx(3 / 4)


def test_pairs_are_told_apart_by_both_ids_and_read_as_strings() -> None:
    # ("1", "23") and ("12", "3") share their joined characters; int ids and their strings are the same id
    train = pd.DataFrame({"user_id": ["1", "12"], "item_id": ["23", "9"]})
    test = pd.DataFrame({"user_id": [1, 12], "item_id": [3, 23]})
    recs = pd.DataFrame(
        {"user_id": [12, 12, 12, 1, 1], "item_id": [3, 23, 3, 23, 3], "rank": [1, 2, 3, 1, 2]}
    )
    clean, counts = clean_recommendations(recs, train)
    assert clean[["user_id", "item_id", "pos"]].values.tolist() == [
        ["1", "3", 0],
        ["12", "3", 0],
        ["12", "23", 1],
    ]
    assert counts == {"seen_items_filtered": 1, "outside_candidates_filtered": 0, "duplicates_filtered": 1}
    m = score_recommendations(recs, test, train, k=1)
    assert m["hr@1"] == 0.5  # user 1 finds 3 first; user 12's 3 is not its 23


def test_candidates_drop_and_count_outside_items() -> None:
    recs, test, train = _frames()
    m = score_recommendations(recs, test, train, k=2, candidates=["b", "c", "d", "e"])
    # u2's a is now outside the candidates: u2's clean list is b only (miss); u1 unchanged.
    ndcg_u1 = (1 / L2) / (1 / L2 + 1 / L3)
    assert m["outside_candidates_filtered"] == 1  # u2's a; u1's a is counted as seen first
    assert m["ndcg@2"] == pytest.approx(ndcg_u1 / 3)
    assert m["coverage@2"] == pytest.approx(3 / 4)  # c, e, b of 4 candidates


def test_row_order_without_rank_column() -> None:
    recs, test, train = _frames()
    no_rank = recs.drop(columns=["rank", "score"])
    m = score_recommendations(no_rank, test, train, k=1)
    # u1: first clean row is c (hit); u2 rows read in file order: c (seen), a (hit)
    assert m["hr@1"] == pytest.approx(2 / 3)
    clean, counts = clean_recommendations(no_rank, train)
    assert clean[clean.user_id == "u2"]["item_id"].tolist() == ["a", "b"]
    assert counts == {"seen_items_filtered": 2, "outside_candidates_filtered": 0, "duplicates_filtered": 1}


def test_equal_ranks_are_broken_by_item_id() -> None:
    train = pd.DataFrame({"user_id": ["u"], "item_id": ["z"]})
    test = pd.DataFrame({"user_id": ["u"], "item_id": ["b"]})
    recs = pd.DataFrame({"user_id": ["u", "u"], "item_id": ["b", "a"], "rank": [1, 1]})
    assert score_recommendations(recs, test, train, k=1)["hr@1"] == 0.0
    assert score_recommendations(recs, test, train, k=2)["mrr@2"] == pytest.approx(0.5)


def test_popularity_deciles_known_values() -> None:
    # item i<j> was had by j + 1 users: i9 is the most popular (decile 0), i0 the least (decile 9)
    train = pd.DataFrame(
        [(f"u{u}", f"i{j}") for j in range(10) for u in range(j + 1)], columns=["user_id", "item_id"]
    )
    recs = pd.DataFrame({"user_id": ["u0"] * 4, "item_id": ["i9", "i8", "i0", "i5"], "pos": [0, 1, 2, 3]})
    shares = popularity_deciles(recs, train, [f"i{j}" for j in range(10)], k=3)
    assert shares == pytest.approx([1 / 3, 1 / 3, 0, 0, 0, 0, 0, 0, 0, 1 / 3])


def test_tied_share_flags_top_k_decided_by_tie_break() -> None:
    recs = pd.DataFrame(
        {
            "user_id": ["a"] * 3 + ["b"] * 3 + ["c"],
            "item_id": ["1", "2", "3"] * 2 + ["1"],
            "score": [3.0, 1.0, 1.0, 3.0, 2.0, 1.0, 5.0],
            "rank": [1, 2, 3, 1, 2, 3, 1],
        }
    )
    clean, _ = clean_recommendations(recs, pd.DataFrame({"user_id": [], "item_id": []}))
    # k=2: a's 2nd and 3rd scores tie (1 == 1), b's do not, c has too few recs
    assert tied_share(clean, 2) == pytest.approx(1 / 3)
    assert tied_share(clean, 1) == 0.0
    assert math.isnan(tied_share(clean.drop(columns=["score"]), 2))


def test_per_user_scores_average_to_the_figures() -> None:
    recs, test, train = _frames()
    m = score_recommendations(recs, test, train, k=2, per_user=True)
    per = m.pop("per_user")
    assert per["user_id"].tolist() == ["u1", "u2", "u3"]
    assert per["ndcg@2"].tolist() == pytest.approx([(1 / L2) / (1 / L2 + 1 / L3), (1 / L3) / (1 / L2), 0.0])
    assert m == score_recommendations(recs, test, train, k=2)  # the figures are the same with or without
    for col in ("ndcg@2", "recall@2", "hr@2", "mrr@2", "map@2"):
        assert per[col].mean() == pytest.approx(m[col])


def test_bootstrap_ci_brackets_the_mean_and_is_deterministic() -> None:
    values = np.r_[np.ones(30), np.zeros(70)]
    lo, hi = bootstrap_ci(values, seed=1)
    assert lo < 0.3 < hi and (lo, hi) == bootstrap_ci(values, seed=1)
    # binomial standard error sqrt(.3 * .7 / 100) = 0.046: the 95% interval is about +-0.09 wide
    assert 0.15 < hi - lo < 0.22
    assert bootstrap_ci(np.full(10, 0.5)) == (0.5, 0.5)


def test_paired_difference_counts_each_user_once_with_both_figures() -> None:
    a = np.array([1.0, 0.5, 0.0, 0.2, 0.2])
    b = np.array([0.0, 0.5, 0.5, 0.2, 0.0])
    c = paired_difference(a, b, seed=3)
    assert c["users"] == 5 and c["diff"] == pytest.approx(0.14) and (c["higher"], c["lower"]) == (2, 1)
    assert c["ci_low"] < 0.14 < c["ci_high"]
    # a constant gap is resolved exactly, however spread the figures themselves are
    x = np.linspace(0, 1, 50)
    same = paired_difference(x + 0.01, x)
    assert (
        same["ci_low"] == pytest.approx(0.01) and same["ci_high"] == pytest.approx(0.01) and same["resolved"]
    )
    assert not paired_difference(x, x)["resolved"]  # no difference: the interval is [0, 0]
    lo, hi = bootstrap_ci(x + 0.01)  # the model's own interval is wide: the overlap test would not resolve it
    assert hi - lo > 0.1
    with pytest.raises(ValueError, match="figures against"):
        paired_difference(a, b[:4])


def test_ndcg_per_user_from_scores_are_the_terms_of_the_mean() -> None:
    import scipy.sparse as sp

    scores = np.array([[0.9, 0.8, 0.1, 0.0], [0.1, 0.2, 0.3, 0.4], [0.6, 0.4, 0.3, 0.1]], dtype=np.float32)
    rel = sp.csr_matrix(np.array([[0, 1, 0, 0], [0, 0, 0, 0], [1, 0, 0, 1]]))  # user 1 has nothing held out
    seen = sp.csr_matrix(np.array([[1, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]))
    each = ndcg_per_user_from_scores(scores, rel, seen, k=2)
    # user 0: item 1 first once item 0 (seen) is dropped; user 2: items 0 and 1 listed, item 0 a hit at
    # rank 1, item 3 (relevant) not in the top 2
    assert each.tolist() == pytest.approx([1.0, (1 / L2) / (1 / L2 + 1 / L3)])
    assert ndcg_from_scores(scores, rel, seen, k=2) == pytest.approx(each.mean())


def test_bad_input_is_a_clear_error() -> None:
    recs, test, train = _frames()
    with pytest.raises(DataError, match="item_id"):
        score_recommendations(recs.drop(columns=["item_id"]), test, train)
    with pytest.raises(DataError, match="k must be"):
        score_recommendations(recs, test, train, k=0)
    with pytest.raises(DataError, match="no events"):
        score_recommendations(recs, test.iloc[:0], train)


def _run_score_recs(script: Path, recs: Path, test: Path, train: Path, k: int, cands: Path | None) -> dict:
    cmd = [sys.executable, str(script), str(recs), str(test), str(train), "--k", str(k)]
    if cands is not None:
        cmd += ["--candidates", str(cands)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def _assert_agree(ours: dict, ref: dict) -> None:
    for key, value in ref.items():
        if isinstance(value, float):
            assert round(ours[key], 5) == pytest.approx(value, abs=1e-12), key
        else:
            assert ours[key] == value, key


@pytest.mark.parametrize("k", [1, 2, 3, 10])
@pytest.mark.parametrize("with_candidates", [False, True])
def test_agrees_with_score_recs_on_hand_made_files(
    shared: Path, tmp_path: Path, k: int, with_candidates: bool
) -> None:
    script = shared / "bench" / "score_recs.py"
    if not script.exists():
        pytest.skip(f"{script} is absent")
    recs, test, train = _frames()
    paths = {}
    for name, df in (("recs", recs), ("test", test), ("train", train)):
        paths[name] = tmp_path / f"{name}.csv"
        df.to_csv(paths[name], index=False)
    cands = None
    if with_candidates:
        cands = tmp_path / "cands.csv"
        pd.DataFrame({"item_id": ["b", "c", "d", "e"]}).to_csv(cands, index=False)
    ref = _run_score_recs(script, paths["recs"], paths["test"], paths["train"], k, cands)
    ours = score_recommendations(
        recs, test, train, k=k, candidates=None if cands is None else ["b", "c", "d", "e"]
    )
    _assert_agree(ours, ref)


@pytest.mark.realdata
@pytest.mark.slow
@pytest.mark.parametrize("protocol", ["warm", "cold"])
def test_agrees_with_score_recs_on_benchmark_split(
    ml100k_splits: Path, shared: Path, tmp_path: Path, protocol: str
) -> None:
    """Random top-100 lists (with seen items, outside-candidate items and duplicates) on the real split."""
    script = shared / "bench" / "score_recs.py"
    train_p, test_p = ml100k_splits / protocol / "train.csv", ml100k_splits / protocol / "test.csv"
    train, test = pd.read_csv(train_p), pd.read_csv(test_p)
    cand_p = ml100k_splits / "cold" / "candidates.csv" if protocol == "cold" else None
    cands = pd.read_csv(cand_p)["item_id"].tolist() if cand_p else None
    rng = np.random.default_rng(0)
    pool = train["item_id"].value_counts().index.to_numpy()[:150]
    if cands is not None:
        pool = np.concatenate([rng.permutation(cands)[:60], pool[:60]])
    users = test["user_id"].unique()[:-5]  # the last 5 test users get no recommendations
    rows = [(u, i, r) for u in users for r, i in enumerate(rng.choice(pool, 100), 1)]
    recs = pd.DataFrame(rows, columns=["user_id", "item_id", "rank"])
    recs.to_csv(tmp_path / "recs.csv", index=False)
    for k in (10, 20):
        ref = _run_score_recs(script, tmp_path / "recs.csv", test_p, train_p, k, cand_p)
        _assert_agree(score_recommendations(recs, test, train, k=k, candidates=cands), ref)
        assert ref["users_without_recs"] == 5 and ref["duplicates_filtered"] > 0


def test_the_tie_order_is_computed_once_per_catalog_and_cannot_be_changed() -> None:
    from tokrec.models.base import tie_order, top_k_rows

    order = tie_order(1000)
    assert tie_order(1000) is order and not order.flags.writeable  # shared by every query: read-only
    assert sorted(order.tolist()) == list(range(1000))  # a rank per row
    with pytest.raises(ValueError):
        order[0] = 1
    scores = np.zeros(1000, dtype=np.float32)  # every score tied: the order decides, best rank first
    np.testing.assert_array_equal(top_k_rows(scores, 5), np.argsort(order)[:5])


def test_top_k_rows_is_the_ranking_rule_on_sparse_and_tied_scores() -> None:
    # the rule by definition: finite scores only, best first, exact ties by the catalog's tie order; scores as a
    # retrieved query leaves them (a few finite rows among many -inf) and as a whole-catalog query does
    from tokrec.models.base import tie_order, top_k_rows

    rng = np.random.default_rng(3)
    for case in range(400):
        n = int(rng.integers(1, 400))
        scores = rng.integers(0, 6, n).astype(np.float32)  # few values: many ties
        scores[rng.random(n) < (0.95 if case % 2 else 0.1)] = -np.inf
        allowed = rng.random(n) < 0.8
        drop = rng.choice(n, min(n, 5), replace=False)
        k = int(rng.integers(0, 30))
        s = np.where(allowed, scores, -np.inf)
        s[drop] = -np.inf
        ok = np.flatnonzero(np.isfinite(s))
        want = ok[np.lexsort((tie_order(n)[ok], -s[ok]))][:k]
        np.testing.assert_array_equal(top_k_rows(scores, k, allowed=allowed, drop=[drop]), want)


def test_score_matrix_figures_equal_the_scorer_on_the_lists_the_model_would_write() -> None:
    # heavily tied scores and several relevant items a user: a matrix metric that let ties share a position
    # (the old rule: count the strictly higher scores) put several hits at position 0 and could pass NDCG 1
    import scipy.sparse as sp

    from tokrec.evaluation.metrics import ndcg_from_scores, score_matrix_metrics
    from tokrec.models.base import top_k_rows

    rng = np.random.default_rng(0)
    n_users, n_items, k = 60, 40, 10
    scores = rng.integers(0, 3, (n_users, n_items)).astype(np.float64)
    scores[rng.random(scores.shape) < 0.05] = -np.inf
    rel = (rng.random((n_users, n_items)) < 0.25).astype(float)
    seen = ((rng.random((n_users, n_items)) < 0.1) & (rel == 0)).astype(float)
    rel_m, seen_m = sp.csr_matrix(rel), sp.csr_matrix(seen)
    lists = [top_k_rows(scores[u], k, drop=[np.flatnonzero(seen[u])]) for u in range(n_users)]
    recs = pd.DataFrame(
        [(str(u), str(i), r + 1) for u in range(n_users) for r, i in enumerate(lists[u])],
        columns=["user_id", "item_id", "rank"],
    )
    test, train = (
        pd.DataFrame({"user_id": np.nonzero(m)[0].astype(str), "item_id": np.nonzero(m)[1].astype(str)})
        for m in (rel, seen)
    )
    want = score_recommendations(recs, test, train, k=k)
    got = score_matrix_metrics(scores, rel_m, exclude=seen_m, k=k)
    for name in ("ndcg", "hr", "recall"):
        assert got[f"{name}@{k}"] == pytest.approx(want[f"{name}@{k}"], abs=1e-12)
    assert ndcg_from_scores(scores, rel_m, seen_m, k=k) == pytest.approx(want[f"ndcg@{k}"], abs=1e-12)
    assert 0 < want[f"ndcg@{k}"] < 1
    # one shared row (new users) ranks the same as the row repeated for everyone
    assert ndcg_from_scores(scores[:1], rel_m, k=k) == pytest.approx(
        ndcg_from_scores(np.repeat(scores[:1], n_users, axis=0), rel_m, k=k), abs=1e-12
    )
    # every score tied: the catalog's tie order decides, not each hit's own luck
    flat = np.zeros((n_users, n_items))
    assert score_matrix_metrics(flat, rel_m, k=k)["ndcg@10"] < 0.5


def test_the_clean_frame_returned_is_the_one_scored() -> None:
    recs, test, train = _frames()
    m = score_recommendations(recs, test, train, k=3, with_clean=True, candidates=list("abcd"))
    expected, _ = clean_recommendations(recs, train, users=["u1", "u2", "u3"], candidates=list("abcd"))
    pd.testing.assert_frame_equal(m.pop("clean"), expected)
    assert "clean" not in score_recommendations(recs, test, train, k=3)
