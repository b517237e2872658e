"""A user table (``Dataset.users``, ``--user-attributes``) in ``tokrec``: a new user it describes is ranked by the
events of the users with the closest attributes (the ``peers`` signal of the new-user blend), weighed by the
tuner on users held out whole; a user it does not describe keeps the popularity blend."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from tokrec.data.dataset import Dataset
from tokrec.evaluation.metrics import score_recommendations
from tokrec.evaluation.splits import cold_user_split
from tokrec.models import create_model, load_model
from tokrec.models.signals import user_attribute_features

N_ITEMS, N_USERS = 120, 240


def _log(seed: int = 0) -> tuple[Dataset, np.ndarray]:
    """Two kinds of users by the table's ``segment``: 'a' users (more of them, with more events) take items 0-59,
    'b' users items 60-119, each by a popularity skew inside its half, so popularity ranks the 'a' half first
    for everyone. ``age`` leans with the segment ('a' 18-40, 'b' 35-69) and is read from text cells;
    ``zip_code`` is an id (too many values to be a feature)."""
    rng = np.random.default_rng(seed)
    seg = np.where(rng.random(N_USERS) < 0.6, "a", "b")
    rows = []
    for u in range(N_USERS):
        lo = 0 if seg[u] == "a" else 60
        p = 1.0 / np.arange(1, 61) ** 0.8
        n = 16 if seg[u] == "a" else 5
        for j, i in enumerate(rng.choice(60, size=n, replace=False, p=p / p.sum())):
            rows.append((f"u{u}", f"i{lo + i}", 1_600_000_000 + 3600 * (u + j)))
    inter = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])
    items = pd.DataFrame(
        {"item_id": [f"i{i}" for i in range(N_ITEMS)], "title": [f"item {i}" for i in range(N_ITEMS)]}
    )
    users = pd.DataFrame(
        {
            "user_id": [f"u{u}" for u in range(N_USERS)],
            "age": np.where(seg == "a", rng.integers(18, 41, N_USERS), rng.integers(35, 70, N_USERS)).astype(
                str
            ),
            "segment": seg,
            "zip_code": [f"{10000 + u}" for u in range(N_USERS)],
        }
    )
    vecs = rng.normal(size=(N_ITEMS, 8)).astype(np.float32)
    return Dataset(inter, items, users), vecs


@pytest.fixture(scope="module")
def data():
    return _log()


def test_user_features_read_numbers_one_hot_categories_and_skip_ids() -> None:
    from tokrec.models.signals import user_attribute_rows

    users = pd.DataFrame(
        {
            "user_id": ["x", "y", "z"],
            "age": ["20", "40", "60"],
            "gender": ["F", "M", "F"],
            "zip": ["1", "2", "A3"],
        }
    )
    f, layout = user_attribute_features(users, ["z", "x", "w"])  # vocabulary order; w is not in the table
    # age standardised (mean 40), gender one-hot F, M, then the table's constant column; zip left out
    sd = np.std([20.0, 40.0, 60.0])
    np.testing.assert_allclose(f[0], [20 / sd, 1, 0, 1], rtol=1e-6)
    np.testing.assert_allclose(f[1], [-20 / sd, 1, 0, 1], rtol=1e-6)
    np.testing.assert_array_equal(f[2], [0, 0, 0, 0])
    # the layout places a user described later the same way (a number given as a number, an unknown category)
    later = user_attribute_rows(
        layout, pd.DataFrame([{"age": 60, "gender": "F"}, {"gender": "X", "zip": "9"}])
    )
    np.testing.assert_allclose(later, [[20 / sd, 1, 0, 1], [0, 0, 0, 1]], rtol=1e-6)


def test_a_described_new_user_gets_their_peers_items_and_others_keep_popularity(data) -> None:
    ds, vecs = data
    split = cold_user_split(ds, fraction=0.2, seed=0)
    plain = create_model("tokrec", {"retrieval_min_items": 10**9}).fit(split.train, vecs)
    peers = create_model(
        "tokrec", {"retrieval_min_items": 10**9, "new_user_w_peers": 4.0, "peer_neighbours": 20}
    ).fit(split.train, vecs)
    seg = ds.users.set_index("user_id")["segment"]
    new_b = [u for u in sorted(set(split.test.interactions["user_id"])) if seg[u] == "b"]
    assert len(new_b) >= 10
    # popularity alone ranks the 'a' half first for a 'b' user; their peers put the 'b' half first
    top_plain = plain.recommend_batch(new_b, k=10)["item_id"].str[1:].astype(int)
    top_peers = peers.recommend_batch(new_b, k=10)["item_id"].str[1:].astype(int)
    assert (top_plain < 60).mean() > 0.9 and (top_peers >= 60).mean() > 0.9
    test = split.test.interactions
    ndcg = {
        name: score_recommendations(
            m.recommend_batch(sorted(set(test["user_id"])), k=10), test, split.train.interactions
        )["ndcg@10"]
        for name, m in (("plain", plain), ("peers", peers))
    }
    assert ndcg["peers"] > 1.5 * ndcg["plain"]
    # a visitor (no user row, no attributes) and a user of the fit the table does not describe: popularity
    empty = np.empty(0, dtype=np.int64)
    np.testing.assert_array_equal(peers.score_rows(-1, empty), plain.score_rows(-1, empty))
    row = peers.user_vocab_.get(new_b[0])
    assert not np.allclose(peers.score_rows(row), plain.score_rows(row))
    # the retrieval path ranks a described new user as the whole-catalog path does
    np.testing.assert_allclose(
        peers.with_scoring(retrieval_min_items=1).score_rows(row), peers.score_rows(row), atol=1e-6
    )
    # the peers alone: a described user ranked by them, a visitor (no description) by popularity
    only = create_model(
        "tokrec",
        {"retrieval_min_items": 10**9, "new_user_w_time": 0, "new_user_w_peers": 1, "peer_neighbours": 20},
    ).fit(split.train, vecs)
    np.testing.assert_array_equal(only.score_rows(-1, empty), plain.score_rows(-1, empty))
    share = only.peer_scores(np.array([row]))[0]
    top = only.recommend_batch([new_b[0]], k=5)["item_id"].tolist()
    assert sorted(share[only.item_vocab_.encode(top)], reverse=True) == sorted(share, reverse=True)[:5]
    # the peers' items are those of the closest users with events, never the user's own (they have none)
    p = peers.peer_scores(np.array([row]), neighbours=5)[0]
    assert p.max() <= 1.0 and p[:60].sum() == 0 and p.sum() > 0


def test_a_saved_model_keeps_its_user_table(data, tmp_path) -> None:
    ds, vecs = data
    split = cold_user_split(ds, fraction=0.2, seed=0)
    m = create_model("tokrec", {"new_user_w_peers": 1.0, "peer_neighbours": 20}).fit(split.train, vecs)
    m.save(tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    rows = loaded.user_vocab_.encode(sorted(set(split.test.interactions["user_id"]))[:5])
    np.testing.assert_array_equal(loaded.user_attr_, m.user_attr_)
    assert loaded.user_layout_.to_json() == m.user_layout_.to_json() and m.user_layout_.width > 0
    visitor = {"segment": "b", "age": "50"}
    np.testing.assert_allclose(
        loaded.attribute_peer_scores(visitor), m.attribute_peer_scores(visitor), atol=1e-7
    )
    np.testing.assert_allclose(loaded._score_users(rows), m._score_users(rows), atol=1e-6)


def test_the_tuner_weighs_the_peers_on_users_held_out_whole(data) -> None:
    pytest.importorskip("optuna", reason="the tuner needs optuna (tokrec[recs])")
    from tokrec.models.recommended import TokrecConfig
    from tokrec.tuning import new_user_config, tune_new_users

    ds, vecs = data
    report = tune_new_users(ds, vecs, TokrecConfig().model_dump(), seed=0)
    assert report is not None and report["weights"]["peers"] > 0
    assert report["ndcg"] > report["alone"]["popularity"] + 0.05
    assert report["ndcg"] >= max(v for v in report["alone"].values() if v is not None) - 1e-12
    # against popularity on the same held-out users, with its paired interval (printed in the table's line)
    vs = report["vs_popularity"]
    assert vs["diff"] == pytest.approx(report["ndcg"] - report["alone"]["popularity"], abs=1e-9)
    assert vs["ci_low"] > 0 and vs["users"] == report["users_scored"]
    from tokrec.tuning import _new_users_line

    assert f"against popularity {vs['diff']:+.4f}, 95% interval" in _new_users_line(report)
    # its figure is the public scorer's on the chosen blend's lists for the same held-out users
    split = cold_user_split(ds, fraction=0.2, seed=0)
    m = create_model("tokrec", {**TokrecConfig().model_dump(), **new_user_config(report)}).fit(
        split.train, vecs
    )
    users = sorted(set(split.test.interactions["user_id"]))
    got = score_recommendations(
        m.recommend_batch(users, k=10), split.test.interactions, split.train.interactions
    )
    assert got["ndcg@10"] == pytest.approx(report["ndcg"], abs=1e-9)
    # a configuration given with peers is scored as its own lists score (its "shipped" figure)
    given = {**TokrecConfig().model_dump(), "new_user_w_peers": 1.0, "peer_neighbours": 20}
    again = tune_new_users(ds, vecs, given, seed=0)
    assert again is not None
    m = create_model("tokrec", given).fit(split.train, vecs)
    got = score_recommendations(
        m.recommend_batch(users, k=10), split.test.interactions, split.train.interactions
    )
    assert got["ndcg@10"] == pytest.approx(again["shipped"], abs=1e-9)
    # without a user table the step is the one it was: no peers line, no peers weight
    bare = Dataset(ds.interactions, ds.items)
    plain = tune_new_users(bare, vecs, TokrecConfig().model_dump(), seed=0)
    assert plain is not None and "peers" not in plain["alone"] and plain["weights"]["peers"] == 0


def _write(tmp_path, ds: Dataset) -> dict[str, str]:
    paths = {name: str(tmp_path / f"{name}.csv") for name in ("items", "events", "users")}
    ds.items.to_csv(paths["items"], index=False)
    ds.interactions.to_csv(paths["events"], index=False)
    ds.users.to_csv(paths["users"], index=False)
    return paths


def test_recommend_ranks_the_tables_new_users_by_their_peers(data, tmp_path, capsys) -> None:
    from tokrec.cli.main import main
    from tokrec.encoders.testing import make_tiny_bert

    ds, _ = data
    seg = ds.users.set_index("user_id")["segment"]
    new = [u for u in ds.users["user_id"] if seg[u] == "b"][:6]
    log = Dataset(ds.interactions[~ds.interactions["user_id"].isin(new)], ds.items, ds.users)
    paths = _write(tmp_path, log)
    enc = make_tiny_bert(tmp_path / "bert")
    cfg = json.dumps({"new_user_w_peers": 4.0, "peer_neighbours": 30})
    cmd = [
        "recommend",
        "--items",
        paths["items"],
        "--interactions",
        paths["events"],
        "--model-path",
        str(enc),
    ]
    cmd += ["--cache", str(tmp_path / "cache"), "--no-tune", "--config", cfg, "--k", "10"]
    out = tmp_path / "recs.csv"
    assert main([*cmd, "--user-attributes", paths["users"], "--output", str(out)]) == 0
    recs = pd.read_csv(out, dtype={"user_id": str, "item_id": str})
    assert set(new) <= set(recs["user_id"])  # the table's users without events are ranked by default
    picked = recs[recs["user_id"].isin(new)]["item_id"].str[1:].astype(int)
    assert (picked >= 60).mean() >= 0.8  # popularity (weight 1) still places a few 'a' items
    # a table without user_id is a clear error naming the file and column; nothing is written
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"id": ["u1"], "age": [30]}).to_csv(bad, index=False)
    out2 = tmp_path / "recs2.csv"
    assert main([*cmd, "--user-attributes", str(bad), "--output", str(out2)]) == 2
    err = capsys.readouterr().err
    assert "bad.csv" in err and "user_id" in err and not out2.exists()


def test_the_service_ranks_a_new_visitor_by_the_attributes_they_give(data) -> None:
    from pydantic import ValidationError

    from tokrec.serve.engine import Engine, EngineOptions
    from tokrec.serve.index import VectorIndex
    from tokrec.serve.schemas import RecommendRequest as Q
    from tokrec.serve.store import MemoryStore

    ds, vecs = data
    m = create_model("tokrec", {"new_user_w_peers": 4.0, "peer_neighbours": 20}).fit(ds, vecs)
    engine = Engine(m, ds.items, vecs, MemoryStore(), EngineOptions(), index=VectorIndex(vecs, ann=False))

    def top(**query) -> list[int]:
        return [int(it.item_id[1:]) for it in engine.recommend(Q(k=10, explain=False, **query)).items]

    visitor = top(history=[])
    assert sum(i < 60 for i in visitor) >= 9  # popularity: the 'a' half
    b = top(history=[], attributes={"segment": "b", "age": 50})
    assert sum(i >= 60 for i in b) >= 8  # their peers: the 'b' half
    assert sum(i < 60 for i in top(history=[], attributes={"segment": "a", "age": 25})) >= 9
    # attributes the table never had change nothing; a user with events, or one the table describes, keeps theirs
    assert top(history=[], attributes={"planet": "mars"}) == visitor
    assert top(history=["i70"], attributes={"segment": "a"}) == top(history=["i70"])
    assert top(user_id="u1", attributes={"segment": "b" if ds.users.segment[1] == "a" else "a"}) == top(
        user_id="u1"
    )
    # the explanation says how many of the peers had each item; a plain visitor's list has none
    answer = engine.recommend(Q(k=3, history=[], attributes={"segment": "b", "age": 50}))
    share = m.attribute_peer_scores({"segment": "b", "age": 50})
    for it in answer.items:
        (reason,) = [b for b in it.because if b["kind"] == "peers"]
        assert reason["count"] == round(float(share[m.item_vocab_.get(it.item_id)]) * 20) > 0
        assert reason["label"] == f"had by {reason['count']} of the 20 users most like you"
    assert not any(
        b["kind"] == "peers" for it in engine.recommend(Q(k=3, history=[])).items for b in it.because
    )
    with pytest.raises(ValidationError):
        Q(history=[], attributes={"segment": {"nested": 1}})
    with pytest.raises(ValidationError):
        Q(history=[], attributes={"segment": "x" * 201})
