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
        {"policy": "ts", "mode": "hybrid"},
        {"policy": "ts", "mode": "disjoint"},
        {"policy": "ts", "mode": "shared"},
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


def _trained(config: dict, rounds: int = 150, seed: int = 3) -> tuple[BanditPolicy, list[str], np.ndarray]:
    ids, vectors, users, w = _world()
    rng = np.random.default_rng(seed)
    policy = BanditPolicy(dict(config, dim=None, seed=0)).fit_items(ids, vectors)
    probs = np.array([_p_click(v, w) for v in vectors])
    for t in range(rounds):  # uniformly random items: every item's terms and the shared ones move
        j = int(rng.integers(len(ids)))
        policy.update(ids[j], users[t % len(users)], float(rng.random() < probs[j]))
    return policy, ids, users


@pytest.mark.parametrize("mode", ["hybrid", "disjoint", "shared"])
def test_thompson_draws_follow_the_posterior(mode: str) -> None:
    """Each candidate's sampled score has the posterior mean and, scaled by ``alpha**2``, the confidence
    width's square of the LinUCB with the same model (for ``hybrid``, Li et al.'s width with the shared
    coefficients' cross terms): a draw that left out the cross terms, or the item terms, would miss it."""
    ts, ids, users = _trained({"policy": "ts", "mode": mode, "alpha": 0.7})
    ucb, _, _ = _trained({"policy": "linucb", "mode": mode, "alpha": 0.7})
    c, rows = ts._context(users[2]), ts._rows(ids)
    mean, var = ts._mean_and_width(c, rows)
    ref = ucb.scores(users[2], ids)
    np.testing.assert_allclose(mean, ref["mean"], rtol=1e-9, atol=1e-12)  # the same model, the same data
    np.testing.assert_allclose(np.sqrt(var), ref["width"], rtol=1e-9, atol=1e-12)
    draws = np.stack([ts._explore_scores(c, rows, mean, var) for _ in range(4000)])
    se_mean = np.sqrt(0.49 * var / len(draws))
    assert np.all(np.abs(draws.mean(0) - mean) < 5 * se_mean + 1e-12)
    # the sample variance of 4,000 normal draws is within 10% of the truth (4.5 standard errors)
    np.testing.assert_allclose(draws.var(0), 0.49 * var, rtol=0.1)
    # with alpha = 0 a draw is the posterior mean: Thompson sampling ranks as greedy
    zero, _, _ = _trained({"policy": "ts", "mode": mode, "alpha": 0.0})
    np.testing.assert_allclose(zero._explore_scores(c, rows, mean, var), mean, rtol=1e-9, atol=1e-12)


def test_a_format_1_thompson_policy_loads_as_the_shared_model_it_was(tmp_path: Path) -> None:
    import json

    shared, ids, users = _trained({"policy": "ts", "mode": "shared"})
    shared.save(tmp_path / "old")
    meta = json.loads((tmp_path / "old" / "config.json").read_text())
    # format 1 ignored mode for ts and wrote the default ("hybrid") with the shared model's arrays
    meta["format"], meta["config"]["mode"] = "tokrec-bandit/1", "hybrid"
    (tmp_path / "old" / "config.json").write_text(json.dumps(meta))
    loaded = load_policy(tmp_path / "old")
    assert loaded.config.mode == "shared"
    np.testing.assert_allclose(loaded.scores(users[0], ids)["mean"], shared.scores(users[0], ids)["mean"])
    hybrid, _, _ = _trained({"policy": "ts", "mode": "hybrid"})
    hybrid.save(tmp_path / "new")
    again = load_policy(tmp_path / "new")
    assert again.config.mode == "hybrid"
    np.testing.assert_allclose(again.scores(users[0], ids)["width"], hybrid.scores(users[0], ids)["width"])


@pytest.mark.parametrize("mode", ["hybrid", "disjoint", "shared"])
def test_an_extreme_reward_or_context_is_refused_and_leaves_the_state_as_it_was(mode: str) -> None:
    """A reward beyond MAX_ABS_REWARD (1e308 used to overflow b0 and kill exploration for good), a non-finite
    one, and an update that would make the state non-finite are refused with the state untouched; the policy
    then scores, explores and learns exactly as one that never saw them."""
    from tokrec.bandits.policies import MAX_ABS_REWARD

    policy, ids, users = _trained({"policy": "linucb", "mode": mode, "alpha": 1.0}, rounds=40)
    twin, _, _ = _trained({"policy": "linucb", "mode": mode, "alpha": 1.0}, rounds=40)
    before = {k: v.copy() for k, v in policy._arrays().items()}
    for reward in (1e308, -1e308, MAX_ABS_REWARD * 1.5, float("nan"), float("inf")):
        with pytest.raises(DataError, match="reward must be a finite number"):
            policy.update(ids[0], users[0], reward)
    with pytest.raises(DataError, match="context .* is not finite"):
        policy.update(ids[0], np.full_like(users[0], np.nan), 1.0)
    projected = BanditPolicy({"policy": "linucb", "mode": mode, "dim": 2, "reduction": "random"})
    projected.fit_items(ids, _world()[1])
    kept = {k: v.copy() for k, v in projected._arrays().items()}
    with pytest.raises(DataError, match="non-finite"):  # finite, but its projection overflows to NaN
        projected.update(ids[0], 1e308 * np.sign(projected.proj_[:, 0]), 1.0)
    assert projected.n_updates_ == 0
    assert all(np.array_equal(projected._arrays()[k], v) for k, v in kept.items())
    after = policy._arrays()
    assert policy.n_updates_ == twin.n_updates_ == 40
    for k, v in before.items():
        np.testing.assert_array_equal(after[k], v, err_msg=k)
    slate = policy.select(users[2], ids, k=5, explore_share=1.0)
    assert slate == twin.select(users[2], ids, k=5, explore_share=1.0)
    assert any(s.explored for s in slate) and all(np.isfinite(s.score) for s in slate)
    policy.update(ids[1], users[1], -MAX_ABS_REWARD)  # the bound itself is a reward
    assert policy.n_updates_ == 41 and all(np.isfinite(v).all() for v in policy._arrays().values())
