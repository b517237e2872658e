"""Off-policy estimators on a log small enough to compute by hand, and agreement with obp where installed."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tokrec.errors import ConfigError, DataError
from tokrec.evaluation.ope import (
    BanditLog,
    bootstrap_interval,
    estimate,
    estimate_all,
    fit_reward_model,
    normal_interval,
)

# 4 rounds, 2 actions, 1 position; the evaluation policy always takes action 0
LOG = BanditLog(
    action=np.array([0, 1, 0, 1]),
    reward=np.array([1.0, 0.0, 0.0, 1.0]),
    pscore=np.array([0.5, 0.5, 0.25, 0.5]),
    position=np.zeros(4, dtype=int),
    n_actions=2,
)
ALWAYS_0 = np.tile([1.0, 0.0], (4, 1))
Q_HAT = np.tile([0.4, 0.2], (4, 1))


def test_estimators_by_hand() -> None:
    # weights w = pi_e / pi_b = [2, 0, 4, 0]
    est = estimate_all(LOG, ALWAYS_0, q_hat=Q_HAT, n_boot=50)
    assert est["ips"].value == pytest.approx((2 * 1 + 0 + 4 * 0 + 0) / 4)  # 0.5
    assert est["snips"].value == pytest.approx(0.5 / 1.5)  # mean(w r) / mean(w)
    assert est["dm"].value == pytest.approx(0.4)
    # DR = DM + mean(w (r - q(a))) = 0.4 + (2 * 0.6 + 4 * -0.4) / 4
    assert est["dr"].value == pytest.approx(0.3)
    clipped = estimate("dr", LOG, ALWAYS_0, q_hat=Q_HAT, clip=3.0, n_boot=50)
    assert clipped.value == pytest.approx(0.4 + (2 * 0.6 + 3 * -0.4) / 4)


def test_intervals() -> None:
    e = estimate("ips", LOG, ALWAYS_0, interval="normal")
    v = np.array([2.0, 0.0, 0.0, 0.0])
    half = 1.959963984540054 * v.std(ddof=1) / 2
    assert (e.ci_low, e.ci_high) == pytest.approx((0.5 - half, 0.5 + half))
    assert normal_interval(v) == pytest.approx((0.5 - half, 0.5 + half))
    b = estimate("ips", LOG, ALWAYS_0, n_boot=400, seed=1)
    assert 0.0 <= b.ci_low < 0.5 < b.ci_high <= 2.0
    assert estimate("ips", LOG, ALWAYS_0, n_boot=400, seed=1).ci_low == b.ci_low  # seeded


def test_stratified_bootstrap_resamples_within_strata() -> None:
    # each stratum is constant: resampling within strata can only return the same values, so the pooled mean
    # never moves (1/3 * 0 + 2/3 * 1); a plain bootstrap over the pooled values moves it
    values = np.array([0.0, 0.0, 1.0, 1.0, 1.0, 1.0])
    strata = np.array([0, 0, 1, 1, 1, 1])
    assert bootstrap_interval(values, strata=strata, n_boot=200) == pytest.approx((2 / 3, 2 / 3))
    lo, hi = bootstrap_interval(values, n_boot=200)
    assert lo < 2 / 3 < hi
    # strata that vary: the interval holds the pooled mean and stays inside the values' range
    rng = np.random.default_rng(0)
    v = np.concatenate([rng.normal(0, 1, 300), rng.normal(5, 1, 100)])
    s = np.repeat([0, 1], [300, 100])
    lo, hi = bootstrap_interval(v, strata=s, n_boot=500)
    assert lo < v.mean() < hi and hi - lo < 0.5
    with pytest.raises(ValueError, match="strata"):
        bootstrap_interval(v, strata=s[:10])


def test_bad_input() -> None:
    with pytest.raises(ConfigError, match="q_hat"):
        estimate("dr", LOG, ALWAYS_0)
    with pytest.raises(ConfigError, match="unknown estimator"):
        estimate("magic", LOG, ALWAYS_0)
    with pytest.raises(ConfigError, match="action_dist"):
        estimate("ips", LOG, np.ones((3, 2)))
    with pytest.raises(DataError, match="propensity"):
        BanditLog(np.array([0]), np.array([1.0]), np.array([0.0]), np.array([0]), 2)


def test_reward_model_learns_action_effect() -> None:
    rng = np.random.default_rng(0)
    n = 2000
    action = rng.integers(0, 2, n)
    reward = (rng.random(n) < np.where(action == 1, 0.6, 0.1)).astype(float)
    log = BanditLog(
        action, reward, np.full(n, 0.5), np.zeros(n, dtype=int), 2, context=rng.normal(size=(n, 2))
    )
    q = fit_reward_model(log, n_folds=2)
    assert q.shape == (n, 2, 1)
    assert q[:, 1, 0].mean() == pytest.approx(0.6, abs=0.05)
    assert q[:, 0, 0].mean() == pytest.approx(0.1, abs=0.05)


def test_agrees_with_obp_on_open_bandit_sample() -> None:
    pytest.importorskip(
        "obp", reason="obp is not installed (pip install --no-deps --ignore-requires-python obp==0.5.7)"
    )
    from obp.ope import DoublyRobust, InverseProbabilityWeighting, SelfNormalizedInverseProbabilityWeighting

    from tokrec.data.open_bandit import load_open_bandit, obp_sample_folder

    folder = obp_sample_folder()
    if folder is None:
        pytest.skip("the obp package has no dataset/obd sample")
    log, _ = load_open_bandit(folder, policy="bts", campaign="all")
    rng = np.random.default_rng(0)
    dist = rng.dirichlet(np.ones(log.n_actions), size=(log.n_rounds, log.n_positions)).transpose(0, 2, 1)
    q = rng.random(dist.shape) * 0.01
    ours = estimate_all(log, dist, q_hat=q, n_boot=200, seed=3)
    kw = dict(
        reward=log.reward, action=log.action, position=log.position, pscore=log.pscore, action_dist=dist
    )
    for name, ref in (
        ("ips", InverseProbabilityWeighting()),
        ("snips", SelfNormalizedInverseProbabilityWeighting()),
        ("dr", DoublyRobust()),
    ):
        args = dict(kw, estimated_rewards_by_reg_model=q)
        assert math.isclose(ours[name].value, ref.estimate_policy_value(**args), abs_tol=1e-6)
        ci = list(ref.estimate_interval(**args, n_bootstrap_samples=200, random_state=3).values())
        assert ours[name].ci_low == pytest.approx(ci[1], abs=1e-6)
        assert ours[name].ci_high == pytest.approx(ci[2], abs=1e-6)
