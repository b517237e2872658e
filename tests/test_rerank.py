"""Re-rankers and responsibility metrics on tiny inputs with hand-computed answers, and in evaluate."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from tokrec.errors import ConfigError
from tokrec.evaluation.responsibility import (
    category_coverage,
    exposure_gini,
    gini,
    group_accuracy,
    intra_list_diversity,
    miscalibration,
    user_groups,
)
from tokrec.rerank import (
    RerankContext,
    RerankStep,
    calibrate,
    dpp,
    mmr,
    parse_rerank,
    propensity_rerank,
    rerank_frame,
    score_scale,
    tail_quota,
    xquad_long_tail,
)

SCORES = np.array([1.0, 0.9, 0.0])


def test_mmr_exact() -> None:
    vectors = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])  # item 1 duplicates item 0
    assert mmr(SCORES, vectors, 2, 0.0).tolist() == [0, 1]
    # second pick: item 1 = 0.5 * 0.9 - 0.5 * 1 = -0.05 < item 2 = 0.5 * 0 - 0.5 * 0 = 0
    assert mmr(SCORES, vectors, 2, 0.5).tolist() == [0, 2]


def test_calibration_exact() -> None:
    cats = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    p = np.array([0.5, 0.5])
    assert calibrate(SCORES, cats, p, 2, 0.0).tolist() == [0, 1]
    # {0, 1}: KL(p || [0.995, 0.005]) = 1.958 -> 0.19 - 1.762 < {0, 2}: KL 0 -> 0.1
    assert calibrate(SCORES, cats, p, 2, 0.9).tolist() == [0, 2]


def test_xquad_exact() -> None:
    head = np.array([True, True, False])
    assert xquad_long_tail(SCORES, head, 0.5, 2, 0.0).tolist() == [0, 1]
    # after a head item: item 1 = 0.3 * 0.9 = 0.27 < item 2 = 0.7 * 0.5 = 0.35
    assert xquad_long_tail(SCORES, head, 0.5, 2, 0.7).tolist() == [0, 2]


def test_propensity_exact() -> None:
    log_pop = np.array([1.0, 0.0, 0.0])
    assert propensity_rerank(SCORES, log_pop, 3, 0.0).tolist() == [0, 1, 2]
    # 0.5 * [1, .9, 0] + 0.5 * [0, 1, 1] = [.5, .95, .5]: item 1, then the tie in base order
    assert propensity_rerank(SCORES, log_pop, 2, 0.5).tolist() == [1, 0]


def test_tail_quota_exact() -> None:
    scores = np.array([5.0, 4.0, 3.0, 2.0, 1.0, 0.0])
    head = np.array([True, True, False, True, False, False])  # tail: 2, 4, 5
    assert sorted(tail_quota(scores, head, 4, 0.0).tolist()) == [0, 1, 2, 3]  # share 0: the top 4
    assert sorted(tail_quota(scores, head, 4, 0.25).tolist()) == [0, 1, 2, 3]  # 1 tail needed, 1 there (2)
    # ceil(0.5 * 4) = 2 tail: 2 and 4 (the best two tail), then the best two of the rest: 0, 1
    assert sorted(tail_quota(scores, head, 4, 0.5).tolist()) == [0, 1, 2, 4]
    # ceil(0.6 * 4) = 3: every tail item, then item 0
    assert sorted(tail_quota(scores, head, 4, 0.6).tolist()) == [0, 2, 4, 5]
    assert sorted(tail_quota(scores, head, 4, 1.0).tolist()) == [0, 2, 4, 5]  # only 3 tail candidates exist
    assert sorted(tail_quota(scores[:2], head[:2], 4, 1.0).tolist()) == [0, 1]  # no tail, fewer than k


def test_tail_rerank_meets_its_share_and_keeps_the_model_order() -> None:
    rng = np.random.default_rng(0)
    ids = [f"i{j}" for j in range(50)]
    head = np.arange(50) < 10
    ctx = RerankContext(ids, None, None, head)
    for _ in range(20):
        scores = rng.normal(size=50) + 3.0 * head  # the model prefers the head
        for w in (0.1, 0.3, 0.5):
            pos = ctx.rerank_user("u", ids, scores, 10, parse_rerank(f"tail:{w}"))
            assert len(pos) == 10 and (~head[pos]).sum() >= math.ceil(w * 10 - 1e-9)
            assert np.all(np.diff(scores[pos]) <= 0)  # the chosen set in the model's order
            # the best head items fill the slots the quota leaves
            n_head = int(head[pos].sum())
            best_head = np.sort(scores[head])[::-1][:n_head]
            np.testing.assert_allclose(np.sort(scores[pos][head[pos]])[::-1], best_head)


# cos(v0, v1) = 0.8, cos(v1, v2) = 0.6, v0 and v2 orthogonal, v3 orthogonal to all (hand-worked DPP example)
DPP_VECTORS = np.array([[1.0, 0.0, 0.0], [0.8, 0.6, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
DPP_SCORES = np.array([1.0, 0.9, 0.5, 0.0])  # min-max relevance = the scores


def test_dpp_exact() -> None:
    # w = 0.5: a = 0.5, gain = rel + log d^2. Step 1: d^2 = 1 for all -> item 0. Step 2 given v0:
    # d^2 = [-, 0.36, 1, 1]: item 1 0.9 + log 0.36 = -0.12, item 2 0.5, item 3 0 -> item 2. Step 3: v1 lies
    # in span(v0, v2) (d^2 = 0), item 3 -> 0 -> item 3; then only item 1 is left, filled by relevance.
    assert dpp(DPP_SCORES, DPP_VECTORS, 3, 0.5).tolist() == [0, 2, 3]
    assert dpp(DPP_SCORES, DPP_VECTORS, 4, 0.5).tolist() == [0, 2, 3, 1]
    # w = 0.1: a = 4.5, gain = 9 rel + log d^2: item 1 8.1 - 1.02 = 7.08 > item 2 4.5 -> item 1; then
    # v2 lies in span(v0, v1) -> item 3
    assert dpp(DPP_SCORES, DPP_VECTORS, 3, 0.1).tolist() == [0, 1, 3]
    assert dpp(DPP_SCORES, DPP_VECTORS, 3, 0.0).tolist() == [0, 1, 2]
    # w = 1: volume only; all start at d^2 = 1 (tie -> first), then items 2 and 3 tie at d^2 = 1 -> 2
    assert dpp(DPP_SCORES, DPP_VECTORS, 2, 1.0).tolist() == [0, 2]


def test_dpp_on_a_score_scale_exact() -> None:
    # sdpp: rel = (s - max) / scale, w = 0.5 -> gain = rel + log d^2 (a = 0.5, 2a = 1)
    # scale 0.25: rel = [0, -0.4, -2, -4]. Step 2 given v0: item 1 -0.4 + log 0.36 = -1.42 > item 2 -2 > item 3 -4
    # -> item 1; step 3: v2 lies in span(v0, v1) -> item 3
    assert dpp(DPP_SCORES, DPP_VECTORS, 3, 0.5, scale=0.25).tolist() == [0, 1, 3]
    # scale 2: rel = [0, -0.05, -0.25, -0.5]. Step 2: item 1 -1.07 < item 3 -0.5 < item 2 -0.25 -> item 2,
    # step 3: v1 lies in span(v0, v2) -> item 3
    assert dpp(DPP_SCORES, DPP_VECTORS, 3, 0.5, scale=2.0).tolist() == [0, 2, 3]
    # the scores' own range (1) as the scale = min-max relevance = plain dpp
    assert (
        dpp(DPP_SCORES, DPP_VECTORS, 3, 0.5, scale=1.0).tolist()
        == dpp(DPP_SCORES, DPP_VECTORS, 3, 0.5).tolist()
    )
    with pytest.raises(ConfigError):
        dpp(DPP_SCORES, DPP_VECTORS, 3, 0.5, scale=0.0)


def test_sdpp_shares_one_scale_across_users() -> None:
    """The same scores at three magnitudes: dpp (min-max) gives each user the same list; sdpp's scale is the
    median range (1.0), so only the user whose scores span 4 keeps the model's second item."""
    ctx = RerankContext(list("abcd"), DPP_VECTORS, None, np.zeros(4, dtype=bool))
    recs = pd.DataFrame(
        {
            "user_id": np.repeat(["one", "quarter", "four", "flat"], 4),
            "item_id": list("abcd") * 4,
            "score": np.concatenate([DPP_SCORES, 0.25 * DPP_SCORES, 4 * DPP_SCORES, np.full(4, 7.0)]),
        }
    )
    assert score_scale(recs) == 1.0  # ranges 1, 0.25, 4; the flat user (range 0) does not count
    lists = {u: g["item_id"].tolist() for u, g in rerank_frame(recs, ctx, "dpp:0.5", 3).groupby("user_id")}
    assert lists["one"] == lists["quarter"] == lists["four"] == ["a", "c", "d"]
    lists = {u: g["item_id"].tolist() for u, g in rerank_frame(recs, ctx, "sdpp:0.5", 3).groupby("user_id")}
    # one: rel = s - 1, as min-max; quarter: rel = [0, -.025, -.125, -.25] -> item 2 (-0.125) beats item 1
    # (-0.025 - 1.02); four: rel = [0, -0.4, -2, -4] -> item 1 (-1.42) beats item 2 (-2) (test above)
    assert lists["one"] == lists["quarter"] == ["a", "c", "d"]
    assert lists["four"] == ["a", "b", "d"]
    assert lists["flat"] == ["a", "c", "d"]  # all rel 0: volume only
    with pytest.raises(ConfigError):  # rerank_user is not given a scale
        ctx.rerank_user("one", list("abcd"), DPP_SCORES, 3, parse_rerank("sdpp:0.5"))
    with pytest.raises(ConfigError):
        rerank_frame(recs.drop(columns="score"), ctx, "sdpp:0.5", 3)


def test_dpp_greedy_is_log_det_greedy() -> None:
    """Each step adds the item maximising log det L_Y of L = diag(q) S diag(q), q = exp(a rel)."""
    rng = np.random.default_rng(3)
    v = rng.normal(size=(9, 5))
    scores = rng.normal(size=9)
    w = 0.4
    a = (1 - w) / (2 * w)
    rel = (scores - scores.min()) / (scores.max() - scores.min())
    u = v / np.linalg.norm(v, axis=1, keepdims=True)
    q = np.exp(a * rel)
    kernel = q[:, None] * (u @ u.T) * q[None, :]
    chosen: list[int] = []
    for _ in range(5):
        dets = {
            i: np.linalg.slogdet(kernel[np.ix_(chosen + [i], chosen + [i])])[1]
            for i in range(9)
            if i not in chosen
        }
        chosen.append(max(dets, key=dets.__getitem__))
    assert dpp(scores, v, 5, w).tolist() == chosen


def test_set_rerankers_keep_base_order_and_pool() -> None:
    cats = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])  # a, b: x; c, d: y
    ctx = RerankContext(
        list("abcd"), DPP_VECTORS, cats, np.zeros(4, dtype=bool), {"u": np.array([0.25, 0.75])}
    )
    scores = np.array([3.0, 2.0, 1.0, 0.0])
    # w = 1, KL only. Alone: x 3.11 nats, y 0.94 -> c first; then {c, x} q = [.5, .5] KL 0.13 < {c, d} -> a
    assert calibrate(scores, cats, ctx.user_category["u"], 2, 1.0).tolist() == [2, 0]
    steps = parse_rerank("calibration:1.0")
    assert ctx.rerank_user("u", list("abcd"), scores, 2, steps).tolist() == [0, 2]  # the set, in score order
    # @2: only a and b (the 2 best by score) are considered -> both x
    assert ctx.rerank_user("u", list("abcd"), scores, 2, parse_rerank("calibration:1.0@2")).tolist() == [0, 1]
    # dpp: greedy [0, 2, 3] (test_dpp_exact), returned in score order; @3 drops item 3 -> [0, 2, 1] -> sorted
    assert ctx.rerank_user("u", list("abcd"), DPP_SCORES, 3, parse_rerank("dpp:0.5")).tolist() == [0, 2, 3]
    assert ctx.rerank_user("u", list("abcd"), DPP_SCORES, 3, parse_rerank("dpp:0.5@3")).tolist() == [0, 1, 2]


def test_a_chain_chooses_with_its_first_step_and_orders_with_the_next() -> None:
    cats = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    ctx = RerankContext(
        list("abcd"), DPP_VECTORS, cats, np.zeros(4, dtype=bool), {"u": np.array([0.25, 0.75])}
    )
    scores = np.array([3.0, 2.0, 1.0, 0.0])
    # calibration:1 chooses {a, c} (above); propensity at weight 1 orders by -log popularity alone: c (0.1)
    # before a (0.9)
    ctx.log_popularity = np.array([0.9, 0.5, 0.1, 0.0])
    chain = parse_rerank("calibration:1.0+propensity:1.0")
    assert ctx.rerank_user("u", list("abcd"), scores, 2, chain).tolist() == [2, 0]
    for late in ("mmr:0.3+calibration:0.5", "propensity:0.2+tail:0.3", "mmr:0.2+dpp:0.5"):
        with pytest.raises(ConfigError, match="can only be the first step"):
            parse_rerank(late)


def test_parse_rerank() -> None:
    steps = parse_rerank("calibration:0.5+mmr:0.25")
    assert [(s.name, s.weight) for s in steps] == [("calibration", 0.5), ("mmr", 0.25)]
    assert parse_rerank(None) == []
    assert parse_rerank("dpp:0.65@50") == [RerankStep("dpp", 0.65, 50)]
    with pytest.raises(ConfigError, match="chain re-rankers with \\+"):
        parse_rerank("calibration:0.7@50,sdpp:0.5")  # read as the pool "50,sdpp:0.5" before
    for bad in ("diverse:0.3", "mmr", "mmr:2", "dpp:0.5@", "dpp:0.5@0", "dpp:0.5@x"):
        with pytest.raises(ConfigError):
            parse_rerank(bad)


@pytest.fixture
def context() -> RerankContext:
    items = pd.DataFrame({"item_id": ["a", "b", "c", "d"], "genres": ["x", "x", "y", "x|y"]})
    train = pd.DataFrame({"user_id": ["u", "u", "v", "v", "w"], "item_id": ["a", "c", "a", "b", "a"]})
    vectors = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    return RerankContext.from_train(train, items, vectors=vectors)


def test_context_and_metrics(context: RerankContext) -> None:
    assert context.category_names == ["x", "y"]
    np.testing.assert_allclose(context.categories[3], [0.5, 0.5])
    assert context.in_head.tolist() == [True, False, False, False]  # ceil(0.2 * 4) = 1 item: a
    np.testing.assert_allclose(context.user_category["u"], [0.5, 0.5])
    assert context.user_head_share == {"u": 0.5, "v": 0.5, "w": 1.0}
    # training users per item: a 3, b 1, c 1, d 0
    np.testing.assert_allclose(context.log_popularity, np.log1p([3, 1, 1, 0]) / np.log1p(3))
    clean = pd.DataFrame(
        {"user_id": ["u", "u", "v", "v"], "item_id": ["a", "b", "c", "d"], "pos": [0, 1, 0, 1]}
    )
    # u: a, b identical (distance 0); v: c, d at cos = 1/sqrt(2)
    assert intra_list_diversity(clean, context, 2) == pytest.approx((0.0 + 1 - 1 / math.sqrt(2)) / 2)
    # u covers {x}, v covers {x, y}
    assert category_coverage(clean, context, 2) == pytest.approx((0.5 + 1.0) / 2)
    # u: p = [.5, .5], q = [1, 0]; v: p = [1, 0], q = [.25, .75]
    kl_u = 0.5 * math.log(0.5 / 0.995) + 0.5 * math.log(0.5 / 0.005)
    kl_v = math.log(1 / (0.99 * 0.25 + 0.01))
    assert miscalibration(clean, context, 2) == pytest.approx((kl_u + kl_v) / 2)
    assert gini(np.array([0.0, 0.0, 4.0])) == pytest.approx(2 / 3)
    assert gini(np.ones(5)) == 0.0
    assert exposure_gini(clean, ["a", "b", "c", "d"], 2) == 0.0


def test_list_metrics_with_uneven_lists(context: RerankContext) -> None:
    # u: three items (pairs a-b 0, a-d and b-d 1 - 1/sqrt(2)); v: one item (no pair: skipped); w: two; x: no
    # training events (no category mix: skipped by miscalibration); rows interleaved, an item off the catalog
    clean = pd.DataFrame(
        {
            "user_id": ["u", "v", "u", "w", "x", "u", "w", "x", "u"],
            "item_id": ["a", "c", "b", "c", "a", "d", "zz", "c", "c"],
            "pos": [0, 0, 1, 0, 0, 2, 1, 1, 3],
        }
    )
    far = 1 - 1 / math.sqrt(2)
    # top 3 of u: a, b, d; w: c (zz is not in the catalog); x: a, c (orthogonal)
    assert intra_list_diversity(clean, context, 3) == pytest.approx(((0 + far + far) / 3 + 1.0) / 2)
    # u: p = [.5, .5], top 3 a, b, d -> q = [2.5, .5] / 3; v and w: p = [1, 0], q = [0, 1]; x skipped
    q_u = np.array([2.5, 0.5]) / 3
    kl_u = sum(0.5 * math.log(0.5 / (0.99 * q + 0.005)) for q in q_u)
    kl_vw = math.log(1 / 0.01)
    assert miscalibration(clean, context, 3) == pytest.approx((kl_u + 2 * kl_vw) / 3)


def test_rerank_frame(context: RerankContext) -> None:
    recs = pd.DataFrame(
        {"user_id": ["v"] * 3, "item_id": ["a", "b", "d"], "score": [3.0, 2.0, 1.0], "rank": [1, 2, 3]}
    )
    out = rerank_frame(recs, context, "mmr:0.9", 2)
    assert out["item_id"].tolist() == ["a", "d"] and out["rank"].tolist() == [1, 2]
    assert out["score"].tolist() == [3.0, 1.0]
    # dpp:0.5: a first (relevance 1); b duplicates a (no volume), d at d^2 = 0.5 -> d
    assert rerank_frame(recs, context, "dpp:0.5", 2)["item_id"].tolist() == ["a", "d"]
    pop = rerank_frame(recs, context, "popularity:1.0", 2)  # v's head share 0.5: one head, one tail item
    assert pop["item_id"].tolist() == ["a", "b"]
    assert rerank_frame(recs, context, "", 2) is recs


def test_rerank_frame_interleaved_users_no_rank_and_missing_scores(context: RerankContext) -> None:
    # rows of two users interleaved, no rank column (list order = row order), a NaN and an unknown item
    recs = pd.DataFrame(
        {
            "user_id": ["v", "u", "v", "u", "v", "u"],
            "item_id": ["b", "d", "a", "zz", "d", "b"],
            "score": [2.0, 5.0, 3.0, 1.0, np.nan, 4.0],
        }
    )
    out = rerank_frame(recs, context, "propensity:0.0", 3)
    # users in order of first appearance; propensity at 0 sorts by score; the NaN scores as the user's lowest
    # (v: b 2, a 3, d -> 2, ties in list order); zz is unknown to the catalog and dropped
    assert out["user_id"].tolist() == ["v"] * 3 + ["u"] * 2
    assert out["item_id"].tolist() == ["a", "b", "d", "d", "b"]
    assert out["rank"].tolist() == [1, 2, 3, 1, 2]
    assert np.isnan(out["score"].iloc[2]) and out["score"].iloc[0] == 3.0  # the base scores are kept
    empty = rerank_frame(recs[recs["item_id"] == "zz"], context, "mmr:0.5", 3)
    assert empty.empty and list(empty.columns) == ["user_id", "item_id", "score", "rank"]


def test_user_groups_and_group_accuracy() -> None:
    train = pd.DataFrame({"user_id": ["1"] * 1 + ["2"] * 2 + ["3"] * 3, "item_id": list("abcdef")})
    users = pd.DataFrame(
        {"user_id": [1, 2, 3], "age": [17, 30, 60], "gender": ["F", "M", "F"], "occupation": ["a", "b", "a"]}
    )
    g = user_groups(train, users)
    assert g.set_index("user_id")["activity"].to_dict() == {"1": "light", "2": "medium", "3": "heavy"}
    assert g.set_index("user_id")["age"].to_dict() == {"1": "under 18", "2": "25-34", "3": "56+"}
    per_user = pd.DataFrame({"user_id": ["1", "2", "3"], "ndcg@10": [1.0, 0.0, 0.5]})
    rows = {(r["grouping"], r["group"]): r for r in group_accuracy(per_user, g, "ndcg@10", n_boot=50)}
    assert rows[("gender", "F")]["ndcg@10"] == pytest.approx(0.75) and rows[("gender", "F")]["users"] == 2
    assert rows[("gender", "M")]["ci_low"] == rows[("gender", "M")]["ci_high"] == 0.0
    # a new user (cold-user protocol: no training events) keeps the attributes the users file gives
    users4 = pd.concat(
        [users, pd.DataFrame({"user_id": [4], "age": [40], "gender": ["M"], "occupation": ["c"]})]
    )
    g4 = user_groups(train, users4).set_index("user_id")
    assert g4.loc["4", ["activity", "gender", "age", "occupation"]].tolist() == ["none", "M", "35-44", "c"]
    assert g4.loc["1", "activity"] == "light"


def test_evaluate_split_reports_responsibility_and_reranks() -> None:
    from tokrec.data.dataset import Dataset
    from tokrec.evaluation.protocol import evaluate_split
    from tokrec.evaluation.splits import leave_last_out

    rng = np.random.default_rng(0)
    genres = ["p", "q", "r", "s"]
    items = pd.DataFrame(
        {"item_id": [str(i) for i in range(40)], "genres": [genres[i % 4] for i in range(40)]}
    )
    rows = [(str(u), str(int(rng.integers(40))), t) for u in range(30) for t in range(8)]
    inter = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"]).drop_duplicates(
        ["user_id", "item_id"]
    )
    ds = Dataset(
        inter, items, pd.DataFrame({"user_id": [str(u) for u in range(30)], "gender": ["F", "M"] * 15})
    )
    vectors = np.eye(4)[np.arange(40) % 4] + 0.01 * rng.normal(size=(40, 4))
    split = leave_last_out(ds)
    base = evaluate_split(split, ["popularity"], ks=[5], item_vectors=vectors, users=ds.users)
    div = evaluate_split(
        split, ["popularity"], ks=[5], item_vectors=vectors, users=ds.users, rerank="mmr:0.8"
    )
    m0, m1 = base.runs[0].metrics, div.runs[0].metrics
    for key in ("ild@5", "category_coverage@5", "miscalibration@5", "gini@5"):
        assert np.isfinite(m0[key])
    assert m1["ild@5"] > m0["ild@5"]
    assert div.runs[0].rerank == "mmr:0.8"
    sd = evaluate_split(split, ["popularity"], ks=[5], item_vectors=vectors, rerank="sdpp:0.9")
    assert sd.runs[0].metrics["ild@5"] > m0["ild@5"] and sd.runs[0].rerank == "sdpp:0.9"
    assert {g["grouping"] for g in base.runs[0].groups} == {"activity", "gender"}
    # with several cut-offs the re-ranked list is the main one's (10): a set re-ranker's top 10 is not the top 10
    # of its list of 20, so the quota must hold at 10; below, the model's order continues
    quota = evaluate_split(split, ["popularity"], ks=[10, 20], item_vectors=vectors, rerank="tail:0.6")
    base10 = evaluate_split(split, ["popularity"], ks=[10, 20], item_vectors=vectors)
    run = quota.runs[0]
    assert run.metrics["long_tail@10"] >= 0.6 > base10.runs[0].metrics["long_tail@10"]
    recs0 = base.runs[0].recs.assign(user_id=lambda f: f["user_id"].astype(str))
    for user, g in run.recs.groupby("user_id"):
        assert g["rank"].tolist() == list(range(1, len(g) + 1))
        base_order = recs0[recs0["user_id"] == str(user)].sort_values("rank")["item_id"].astype(str).tolist()
        top = set(g.sort_values("rank")["item_id"].head(10))
        assert g.sort_values("rank")["item_id"].iloc[10:].tolist() == [i for i in base_order if i not in top]


def _files(tmp_path) -> tuple[str, str, str]:
    rng = np.random.default_rng(1)
    genres = ["p", "q", "r", "s"]
    items = pd.DataFrame({"item_id": [str(i) for i in range(30)], "title": [f"film {i}" for i in range(30)]})
    items["genres"] = [genres[i % 4] for i in range(30)]
    # item i is picked with weight 1 / (i + 1): a long tail
    w = 1.0 / np.arange(1, 31)
    rows = [(str(u), str(int(rng.choice(30, p=w / w.sum()))), t) for u in range(24) for t in range(10)]
    inter = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"]).drop_duplicates(
        ["user_id", "item_id"]
    )
    paths = (tmp_path / "items.csv", tmp_path / "events.csv", tmp_path / "users.csv")
    items.to_csv(paths[0], index=False)
    inter.to_csv(paths[1], index=False)
    pd.DataFrame({"user_id": range(24), "gender": ["F", "M"] * 12, "age": [20, 40, 60] * 8}).to_csv(
        paths[2], index=False
    )
    return tuple(str(p) for p in paths)  # type: ignore[return-value]


def test_tradeoff_curves_follow_each_reranker() -> None:
    from tokrec.data.dataset import Dataset
    from tokrec.evaluation.protocol import evaluate_split
    from tokrec.evaluation.splits import leave_last_out

    rng = np.random.default_rng(3)
    items = pd.DataFrame(
        {"item_id": [str(i) for i in range(100)], "genres": [["p", "q"][i % 2] for i in range(100)]}
    )
    # items 0-19 (the short head: 20% of the catalog) take most events and a user has at most 8 of them, so
    # popularity's top 10 holds head items only
    pick = lambda: str(int(rng.integers(20)) if rng.random() < 0.8 else 20 + int(rng.integers(80)))  # noqa: E731
    inter = pd.DataFrame(
        [(str(u), pick(), t) for u in range(60) for t in range(8)],
        columns=["user_id", "item_id", "timestamp"],
    ).drop_duplicates(["user_id", "item_id"])
    vectors = np.eye(4)[np.arange(100) % 4] + 0.05 * rng.normal(size=(100, 4))
    split = leave_last_out(Dataset(inter, items))
    res = evaluate_split(split, ["popularity"], ks=[10], item_vectors=vectors, tradeoffs=("tail", "mmr"))
    run = res.runs[0]
    tail = [r for r in run.tradeoffs if r["control"] == "tail"]
    mmr_rows = [r for r in run.tradeoffs if r["control"] == "mmr"]
    assert [r["weight"] for r in tail] == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9])
    # weight 0: the model's own list, the same for every re-ranker
    assert tail[0]["ndcg"] == pytest.approx(run.metrics["ndcg@10"])
    assert {k: v for k, v in tail[0].items() if k not in ("control", "goal")} == {
        k: v for k, v in mmr_rows[0].items() if k not in ("control", "goal")
    }
    # the NDCG change against the model's own list, user by user: its mean is the difference of the figures
    assert tail[0]["ndcg_diff"] == 0.0 and tail[0]["ndcg_diff_low"] == tail[0]["ndcg_diff_high"] == 0.0
    for r in tail + mmr_rows:
        assert r["ndcg_diff"] == pytest.approx(r["ndcg"] - tail[0]["ndcg"], abs=1e-12)
        assert r["ndcg_diff_low"] <= r["ndcg_diff"] <= r["ndcg_diff_high"]
    # the quota holds at every weight (every user has more than 9 tail candidates here)
    for r in tail:
        assert r["long_tail"] >= r["weight"] - 1e-9
    assert tail[0]["long_tail"] == 0.0 and mmr_rows[-1]["ild"] > mmr_rows[0]["ild"]
    # auto: the weight chosen on a validation split of the training part, then measured on the test events
    auto = evaluate_split(
        split, ["popularity"], ks=[10], item_vectors=vectors, rerank="tail:auto", rerank_loss=0.99
    )
    assert auto.runs[0].rerank == "tail:0.9" and auto.runs[0].rerank_asked == "tail:auto"
    assert auto.runs[0].metrics["long_tail@10"] == pytest.approx(tail[-1]["long_tail"])
    assert auto.runs[0].metrics["ndcg@10"] == pytest.approx(tail[-1]["ndcg"])
    # the evidence of the choice travels with the run (metrics.json, the report): the validation figures
    line = auto.runs[0].rerank_validation
    assert line is not None and line.startswith("rerank tail:auto -> tail:0.9, chosen on validation")
    assert "long_tail" in line


def test_parse_auto_and_resolve_it_on_validation() -> None:
    from tokrec.data.dataset import Dataset
    from tokrec.models.registry import create_model
    from tokrec.tuning import choose_rerank

    (step,) = parse_rerank("tail:auto@50")
    assert step.auto and step.pool == 50 and step.spec() == "tail:auto@50"
    assert RerankStep("dpp", 0.65, 50).spec() == "dpp:0.65@50"
    with pytest.raises(ConfigError):
        parse_rerank("tail:auto+mmr:0.2")
    with pytest.raises(ConfigError, match="auto weight is chosen"):
        parse_rerank("tail:auto", auto=False)  # serve: a chosen weight only
    assert parse_rerank("tail:0.3", auto=False) == [RerankStep("tail", 0.3)]
    ctx = RerankContext(["a", "b"], None, None, np.array([True, False]))
    with pytest.raises(ConfigError):
        ctx.rerank_user("u", ["a", "b"], np.array([1.0, 0.0]), 1, [step])

    rng = np.random.default_rng(4)
    items = pd.DataFrame({"item_id": [str(i) for i in range(100)]})
    pick = lambda: str(int(rng.integers(20)) if rng.random() < 0.8 else 20 + int(rng.integers(80)))  # noqa: E731
    inter = pd.DataFrame(
        [(str(u), pick(), t) for u in range(60) for t in range(8)],
        columns=["user_id", "item_id", "timestamp"],
    ).drop_duplicates(["user_id", "item_id"])
    ds = Dataset(inter, items)
    fit = lambda d: create_model("popularity", {}).fit(d, None)  # noqa: E731
    assert choose_rerank("tail:0.3", fit, ds, None) is None  # nothing to choose
    for loss in (0.0, 0.2, 0.5, 0.99):
        choice = choose_rerank("tail:auto", fit, ds, None, k=10, loss=loss)
        assert choice is not None and choice.asked == "tail:auto" and choice.users == 60
        rows = {r["weight"]: r for r in choice.curve}
        allowed = [w for w, r in rows.items() if r["ndcg"] >= (1 - loss) * rows[0.0]["ndcg"]]
        chosen = parse_rerank(choice.spec)[0].weight
        # the largest long-tail share the budget allows (the quota rises with the weight here)
        assert chosen in allowed and rows[chosen]["long_tail"] == max(rows[w]["long_tail"] for w in allowed)
        assert "chosen on validation" in choice.line()
    assert choose_rerank("tail:auto", fit, ds, None, k=10, loss=0.99).spec == "tail:0.9"
    with pytest.raises(ConfigError):
        choose_rerank("tail:auto", fit, ds, None, loss=1.0)


def test_cli_evaluate_and_recommend_with_rerank(tmp_path, monkeypatch) -> None:
    import json

    from tokrec.cli.main import main

    items, events, users = _files(tmp_path)
    monkeypatch.setattr(
        "tokrec.cli.evaluate._vector_source",
        lambda args, ds: lambda: np.eye(4)[np.arange(ds.n_items) % 4] + 0.1,
    )
    out = tmp_path / "ev"
    argv = ["evaluate", "--items", items, "--interactions", events, "--models", "popularity", "--k", "5"]
    assert main([*argv, "--output-dir", str(out / "base"), "--users", users]) == 0
    assert main([*argv, "--output-dir", str(out / "pop"), "--rerank", "popularity:0.9"]) == 0
    base = json.loads((out / "base" / "metrics.json").read_text())["protocols"]["leave-last-out"]["models"][
        "popularity"
    ]
    pop = json.loads((out / "pop" / "metrics.json").read_text())["protocols"]["leave-last-out"]["models"][
        "popularity"
    ]
    assert pop["rerank"] == "popularity:0.9" and base["rerank"] is None
    assert pop["metrics"]["long_tail@5"] > base["metrics"]["long_tail@5"]
    assert {g["grouping"] for g in base["groups"]} == {"activity", "gender", "age"}
    # the models' user table (--user-attributes) groups the accuracy the same way when --users is not given
    assert main([*argv, "--output-dir", str(out / "attr"), "--user-attributes", users]) == 0
    attr = json.loads((out / "attr" / "metrics.json").read_text())["protocols"]["leave-last-out"]["models"]
    assert attr["popularity"]["groups"] == base["groups"]
    report = (out / "base" / "report.md").read_text()
    assert "accuracy per user group" in report and "ILD@5" in report
    recs_path = tmp_path / "recs.csv"
    rargv = ["recommend", "--items", items, "--interactions", events, "--model", "popularity", "--k", "3"]
    assert main([*rargv, "--output", str(recs_path), "--rerank", "popularity:1.0"]) == 0
    recs = pd.read_csv(recs_path, dtype=str)
    assert recs.groupby("user_id").size().max() == 3
    assert main([*rargv, "--output", str(recs_path), "--rerank", "fair:0.2"]) == 2
    auto_path = tmp_path / "auto.csv"
    assert main([*rargv, "--output", str(auto_path), "--rerank", "tail:auto", "--rerank-loss", "0.5"]) == 0
    assert pd.read_csv(auto_path, dtype=str).groupby("user_id").size().max() == 3
    cand = tmp_path / "cand.csv"
    pd.DataFrame({"item_id": ["1", "2", "3", "4"]}).to_csv(cand, index=False)
    assert main([*rargv, "--output", str(auto_path), "--rerank", "tail:auto", "--candidates", str(cand)]) == 2
    # trade-off curves on the user's own data: a table and a plot in the report, the rows in metrics.json
    curves = out / "curves"
    assert main([*argv, "--output-dir", str(curves), "--tradeoffs", "tail,mmr", "--rerank", "mmr:0.5"]) == 0
    model = json.loads((curves / "metrics.json").read_text())["protocols"]["leave-last-out"]["models"][
        "popularity"
    ]
    rows = model["tradeoffs"]
    assert [(r["control"], r["weight"]) for r in rows[:2]] == [("tail", 0.0), ("tail", 0.1)] and len(
        rows
    ) == 20
    # weight 0 is the model's own list, before --rerank
    assert rows[0]["ndcg"] == pytest.approx(base["metrics"]["ndcg@5"]) and rows[0]["goal"] == "long_tail"
    assert (curves / "tradeoffs.png").stat().st_size > 0
    assert "what each re-ranker trades" in (curves / "report.md").read_text()
    assert main([*argv, "--output-dir", str(curves), "--tradeoffs", "tail,shuffle"]) == 2
    assert main([*argv, "--output-dir", str(curves), "--protocol", "cold-item", "--rerank", "tail:auto"]) == 2
    # calibration without a category column stops before any fit, naming the file
    bare = tmp_path / "bare.csv"
    pd.read_csv(items).drop(columns=["genres"]).to_csv(bare, index=False)
    bare_argv = ["evaluate", "--items", str(bare), "--interactions", events, "--models", "popularity"]
    assert main([*bare_argv, "--output-dir", str(curves), "--tradeoffs", "calibration"]) == 2
    assert main([*bare_argv, "--output-dir", str(curves), "--rerank", "calibration:0.5"]) == 2


def test_cli_recommend_sdpp_scale_does_not_depend_on_the_requested_users(tmp_path, monkeypatch) -> None:
    """``recommend --users`` takes sdpp's unit from the first training users (as serve does), so a user's list
    is the same whether asked alone or with everyone (the test data has fewer than SCALE_USERS users)."""
    from tokrec.cli.main import main

    items, events, _ = _files(tmp_path)
    vecs = np.random.default_rng(5).normal(size=(30, 6)) + 0.3  # the same vectors in every run
    monkeypatch.setattr("tokrec.features.item_vectors_for", lambda ds, **kw: vecs[: ds.n_items])
    argv = ["recommend", "--items", items, "--interactions", events, "--model", "ease", "--k", "4"]
    lists = {}
    for spec in ("sdpp:0.7", "dpp:0.7"):
        out = tmp_path / f"{spec}.csv"
        assert main([*argv, "--output", str(out), "--rerank", spec]) == 0
        lists[spec] = pd.read_csv(out, dtype=str).groupby("user_id")["item_id"].apply(list).to_dict()
    # users whose list the shared unit changes: asked alone, a unit from their own range would give dpp's list
    changed = [u for u, ls in lists["sdpp:0.7"].items() if ls != lists["dpp:0.7"][u]]
    assert changed
    for user in changed[:3]:
        out = tmp_path / f"one-{user}.csv"
        assert main([*argv, "--output", str(out), "--rerank", "sdpp:0.7", "--users", user]) == 0
        assert pd.read_csv(out, dtype=str)["item_id"].tolist() == lists["sdpp:0.7"][user]
