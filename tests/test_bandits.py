"""Bandit policies: learning a planted linear reward, slates with exploration slots, new items, save/load."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tokrec.bandits import BanditPolicy, PolicyConfig, load_policy
from tokrec.errors import ConfigError, DataError


def _world(seed: int = 0) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(40, 6))
    return [f"i{j}" for j in range(40)], vectors, rng.normal(size=(5, 6)), rng.normal(size=6)


def _p_click(v: np.ndarray, w: np.ndarray) -> float:
    return float(1.0 / (1.0 + np.exp(-3.0 * (v @ w) / np.linalg.norm(v))))


@pytest.mark.parametrize(
    "config",
    [
        {"policy": "linucb", "mode": "hybrid"},
        {"policy": "linucb", "mode": "disjoint"},
        {"policy": "linucb", "mode": "shared"},
        {"policy": "ts"},
    ],
)
def test_learns_planted_reward(config: dict) -> None:
    ids, vectors, users, w = _world()
    rng = np.random.default_rng(1)
    policy = BanditPolicy(dict(config, dim=None, seed=0)).fit_items(ids, vectors)
    probs = np.array([_p_click(v, w) for v in vectors])
    got = []
    for t in range(1200):
        user = users[t % len(users)]
        (choice,) = policy.select(user, ids, k=1)
        j = ids.index(choice.item_id)
        policy.update(choice.item_id, user, float(rng.random() < probs[j]))
        got.append(probs[j])
    # the catalog's mean click probability is ~0.5; the learnt policy ends close to the best item's
    assert np.mean(got[-300:]) > 0.9 > probs.mean() + 0.3
    assert np.mean(got[-300:]) > np.mean(got[:100])


def test_slate_exploration_slots_and_flags() -> None:
    ids, vectors, users, _ = _world()
    policy = BanditPolicy({"policy": "linucb", "mode": "shared", "alpha": 5.0, "dim": None}).fit_items(
        ids, vectors
    )
    base = np.arange(len(ids), dtype=float)[::-1]  # a recommender preferring i0, i1, ...
    greedy = policy.select(users[0], ids, k=4, explore_share=0.0, base_scores=base)
    assert [s.item_id for s in greedy] == ["i0", "i1", "i2", "i3"]
    assert not any(s.explored for s in greedy)
    mixed = policy.select(users[0], ids, k=4, explore_share=0.5, base_scores=base)
    assert [s.item_id for s in mixed[:2]] == ["i0", "i1"]
    assert len({s.item_id for s in mixed}) == 4
    # the two exploration slots go to the widest UCB outside i0, i1; flagged unless in the greedy top 4
    assert [s.explored for s in mixed[2:]] == [s.item_id not in {"i2", "i3"} for s in mixed[2:]]
    eg = BanditPolicy({"policy": "egreedy", "epsilon": 0.0, "dim": None}).fit_items(ids, vectors)
    assert [s.item_id for s in eg.select(users[0], ids, k=3, explore_share=1.0, base_scores=base)] == [
        "i0",
        "i1",
        "i2",
    ]
    with pytest.raises(ConfigError):
        policy.select(users[0], ids, k=2, explore_share=1.5)
    with pytest.raises(DataError, match="unknown"):
        policy.select(users[0], ["nope"], k=1)


def test_new_item_starts_from_its_text() -> None:
    ids, vectors, users, _ = _world()
    policy = BanditPolicy(
        {"policy": "linucb", "mode": "disjoint", "dim": None, "prior_scale": 0.1}
    ).fit_items(ids, vectors)
    policy.add_items(["new"], users[0][None, :])  # a new item whose text vector equals the user's
    mean = policy.scores(users[0], ["new"])["mean"]
    assert mean[0] == pytest.approx(0.1)  # prior_scale * cos(user, item) = 0.1 * 1


def test_save_load_round_trip(tmp_path: Path) -> None:
    ids, vectors, users, w = _world()
    rng = np.random.default_rng(2)
    for config in (
        {"policy": "linucb", "mode": "hybrid", "dim": 4},
        {"policy": "ts", "dim": 4, "reduction": "random"},
    ):
        policy = BanditPolicy(config).fit_items(ids, vectors)
        for t in range(50):
            item = ids[int(rng.integers(len(ids)))]
            policy.update(item, users[t % 5], float(rng.random() < 0.5))
        policy.save(tmp_path / config["policy"])
        assert sorted(p.name for p in (tmp_path / config["policy"]).iterdir()) == [
            "config.json",
            "state.safetensors",
        ]
        loaded = load_policy(tmp_path / config["policy"])
        assert loaded.config == PolicyConfig.model_validate(config)
        a, b = policy.scores(users[1], ids), loaded.scores(users[1], ids)
        np.testing.assert_allclose(a["mean"], b["mean"], rtol=1e-12)
        np.testing.assert_allclose(a["width"], b["width"], rtol=1e-12)
    with pytest.raises(DataError, match="not found"):
        load_policy(tmp_path / "missing")
    with pytest.raises(Exception, match="extra"):
        PolicyConfig.model_validate({"policy": "ts", "unknown": 1})
