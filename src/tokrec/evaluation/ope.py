"""Off-policy evaluation: a new policy's value estimated from logs another policy collected.

A log holds, for every round ``i``, the action ``a_i`` the logging policy took, the position ``p_i`` it
was shown at (0 when there is one slot), the reward ``r_i`` and the logging policy's propensity
``pi_b(a_i | x_i)``. The evaluation policy is given as ``action_dist`` of shape
``(n_rounds, n_actions, n_positions)``: ``pi_e(a | x_i, p)``. The estimators are the standard ones, written
exactly as Open Bandit Pipeline 0.5.7 defines them so that the two agree to floating-point precision
(``benchmarks/ope_obd.py`` prints both on the Open Bandit Dataset sample):

* IPS: ``mean(w_i r_i)``, ``w_i = min(pi_e(a_i | x_i, p_i) / pi_b(a_i | x_i), clip)``
* SNIPS: ``mean(w_i r_i) / mean(w_i)`` (unclipped weights)
* DM: ``mean(sum_a pi_e(a | x_i, p_i) q(x_i, a, p_i))``
* DR: ``DM + mean(w_i (r_i - q(x_i, a_i, p_i)))``

Each estimate comes with a confidence interval over rounds: a percentile bootstrap of the mean of the
per-round terms (``numpy.random.RandomState(seed).choice``, as ``obp.utils`` draws them, so a seed gives
obp's interval) or a normal interval (mean ± z · sd / sqrt(n)).

Why written here rather than imported: obp 0.5.7 declares Python < 3.11 and pins torch 1.12, scikit-learn
1.1 and pandas 1.5, so it cannot be a dependency of tokrec; the estimators themselves are a few lines each.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import norm

from tokrec.data.bandit_log import BanditLog
from tokrec.errors import ConfigError

ESTIMATORS = ("ips", "snips", "dm", "dr")
__all__ = [
    "ESTIMATORS",
    "BanditLog",
    "Estimate",
    "bootstrap_interval",
    "estimate",
    "estimate_all",
    "fit_reward_model",
    "normal_interval",
]


@dataclass
class Estimate:
    """A policy value estimate with its interval (``level`` two-sided)."""

    estimator: str
    value: float
    ci_low: float
    ci_high: float
    level: float
    round_values: np.ndarray

    def as_dict(self) -> dict[str, Any]:
        return {
            "estimator": self.estimator,
            "value": self.value,
            "ci_low": self.ci_low,
            "ci_high": self.ci_high,
            "level": self.level,
        }


def _check_dist(log: BanditLog, action_dist: np.ndarray) -> np.ndarray:
    d = np.asarray(action_dist, dtype=np.float64)
    if d.ndim == 2:
        d = d[:, :, None]
    if d.ndim != 3 or d.shape[0] != log.n_rounds or d.shape[1] != log.n_actions:
        raise ConfigError(
            f"action_dist must be (n_rounds={log.n_rounds}, n_actions={log.n_actions}, n_positions), got {d.shape}"
        )
    if d.shape[2] <= int(log.position.max()):
        raise ConfigError(f"action_dist has {d.shape[2]} positions, the log uses {log.n_positions}")
    return d


def _weights(log: BanditLog, d: np.ndarray) -> np.ndarray:
    return d[np.arange(log.n_rounds), log.action, log.position] / log.pscore


def _q_terms(log: BanditLog, d: np.ndarray, q_hat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    q = np.asarray(q_hat, dtype=np.float64)
    if q.ndim == 2:
        q = q[:, :, None]
    if q.shape[:2] != d.shape[:2] or q.shape[2] <= int(log.position.max()):
        raise ConfigError(f"q_hat must have the shape of action_dist {d.shape}, got {q.shape}")
    rows = np.arange(log.n_rounds)
    q_pos = q[rows, :, log.position]
    pi_pos = d[rows, :, log.position]
    # np.average (as obp) divides by the weights' sum, which is 1 for a distribution
    direct = np.average(q_pos, weights=pi_pos, axis=1)
    return direct, q[rows, log.action, log.position]


def _round_values(
    estimator: str, log: BanditLog, d: np.ndarray, q_hat: np.ndarray | None, clip: float
) -> np.ndarray:
    """The per-round terms whose mean is the estimate (``(n_rounds,)``; ``Estimate.round_values``)."""
    if estimator == "ips":
        return log.reward * np.minimum(_weights(log, d), clip)
    if estimator == "snips":
        w = _weights(log, d)
        return log.reward * w / w.mean()
    if estimator in ("dm", "dr"):
        if q_hat is None:
            raise ConfigError(f"{estimator} needs q_hat, the reward model's predictions")
        direct, q_taken = _q_terms(log, d, q_hat)
        if estimator == "dm":
            return direct
        return direct + np.minimum(_weights(log, d), clip) * (log.reward - q_taken)
    raise ConfigError(f"unknown estimator {estimator!r}; choose from {', '.join(ESTIMATORS)}")


def bootstrap_interval(
    values: np.ndarray,
    *,
    level: float = 0.95,
    n_boot: int = 10000,
    seed: int = 0,
    strata: np.ndarray | None = None,
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean; the draws are obp's (``RandomState(seed).choice``).

    ``strata`` (one label per value): a stratified bootstrap, each resample drawing every stratum's values
    from that stratum alone (its size kept), for a mean pooled over independent samples such as the logs of
    several campaigns."""
    v = np.asarray(values, dtype=np.float64)
    rng = np.random.RandomState(seed)
    if strata is None:
        means = np.fromiter((rng.choice(v, size=len(v)).mean() for _ in range(n_boot)), float, n_boot)
    else:
        labels = np.asarray(strata)
        if labels.shape != v.shape:
            raise ValueError(f"strata has shape {labels.shape}, values {v.shape}")
        groups = [v[labels == g] for g in np.unique(labels)]
        means = np.fromiter(
            (sum(rng.choice(g, size=len(g)).sum() for g in groups) / len(v) for _ in range(n_boot)),
            float,
            n_boot,
        )
    alpha = 1.0 - level
    return float(np.percentile(means, 100 * alpha / 2)), float(np.percentile(means, 100 * (1 - alpha / 2)))


def normal_interval(values: np.ndarray, *, level: float = 0.95) -> tuple[float, float]:
    """Mean ± z · standard error."""
    v = np.asarray(values, dtype=np.float64)
    half = float(norm.ppf(0.5 + level / 2) * v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else float("nan")
    m = float(v.mean())
    return m - half, m + half


def estimate(
    estimator: str,
    log: BanditLog,
    action_dist: np.ndarray,
    *,
    q_hat: np.ndarray | None = None,
    clip: float = np.inf,
    interval: str = "bootstrap",
    level: float = 0.95,
    n_boot: int = 10000,
    seed: int = 0,
) -> Estimate:
    """One estimator's value of the policy ``action_dist`` on ``log``, with a ``level`` interval.

    Args:
        estimator: ``ips``, ``snips``, ``dm`` or ``dr``.
        log: the logged feedback.
        action_dist: ``(n_rounds, n_actions[, n_positions])`` evaluation-policy probabilities.
        q_hat: ``(n_rounds, n_actions[, n_positions])`` reward-model predictions (DM, DR).
        clip: cap on importance weights (IPS, DR); infinite = none, as obp's default.
        interval: ``bootstrap`` (obp's draws) or ``normal``.
    """
    v = _round_values(estimator, log, _check_dist(log, action_dist), q_hat, clip)
    if interval == "bootstrap":
        lo, hi = bootstrap_interval(v, level=level, n_boot=n_boot, seed=seed)
    elif interval == "normal":
        lo, hi = normal_interval(v, level=level)
    else:
        raise ConfigError(f"interval must be 'bootstrap' or 'normal', not {interval!r}")
    return Estimate(estimator, float(v.mean()), lo, hi, level, v)


def estimate_all(
    log: BanditLog,
    action_dist: np.ndarray,
    *,
    q_hat: np.ndarray | None = None,
    **kwargs: Any,
) -> dict[str, Estimate]:
    """IPS, SNIPS and, when ``q_hat`` is given, DM and DR."""
    names = ESTIMATORS if q_hat is not None else ("ips", "snips")
    return {n: estimate(n, log, action_dist, q_hat=q_hat, **kwargs) for n in names}


def fit_reward_model(
    log: BanditLog,
    action_features: np.ndarray | None = None,
    *,
    n_folds: int = 2,
    seed: int = 0,
    make_model: Callable[[], Any] | None = None,
) -> np.ndarray:
    """``q_hat (n_rounds, n_actions, n_positions)``: cross-fitted predictions of a reward classifier.

    Features of a (round, action, position): the round's ``context``, the action's one-hot (or its
    ``action_features`` row) and the position's one-hot. Each fold's rows are predicted by a model fitted
    on the other folds (``n_folds=1``: in-sample). The model is scikit-learn's logistic regression unless
    ``make_model`` builds another classifier with ``predict_proba``.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import KFold

    n, a, p = log.n_rounds, log.n_actions, log.n_positions
    ctx = np.zeros((n, 0)) if log.context is None else np.asarray(log.context, dtype=np.float64)
    af = np.eye(a) if action_features is None else np.asarray(action_features, dtype=np.float64)
    if len(af) != a:
        raise ConfigError(f"action_features has {len(af)} rows, the log has {a} actions")
    pos_eye = np.eye(p)

    def features(rows: np.ndarray, actions: np.ndarray, positions: np.ndarray) -> np.ndarray:
        return np.hstack([ctx[rows], af[actions], pos_eye[positions]])

    def build() -> Any:
        return make_model() if make_model else LogisticRegression(C=1.0, max_iter=1000)

    q = np.zeros((n, a, p))
    folds = (
        [(np.arange(n), np.arange(n))]
        if n_folds == 1
        else list(KFold(n_splits=n_folds, shuffle=True, random_state=seed).split(np.arange(n)))
    )
    for train, test in folds:
        y = log.reward[train]
        if len(np.unique(y)) < 2:
            q[test] = float(y.mean())
            continue
        model = build().fit(features(train, log.action[train], log.position[train]), y)
        for pos in range(p):
            for act in range(a):
                rows = np.asarray(test)
                x = features(rows, np.full(len(rows), act), np.full(len(rows), pos))
                q[rows, act, pos] = model.predict_proba(x)[:, 1]
    return q
