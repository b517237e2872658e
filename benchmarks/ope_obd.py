"""Off-policy evaluation on the Open Bandit Dataset sample: tokrec's estimators against obp's, and the CTR
of tokrec's bandit policies against the uniform-random logging policy.

    PYTHONPATH=src python benchmarks/ope_obd.py [--obd FOLDER] [--json OUT.json]

Data: the small OBD sample inside the ``obp`` sdist (``obp/dataset/obd``, 10,000 ZOZOTOWN rounds per logging
policy, campaign "all": 80 items, 3 positions). obp 0.5.7 declares Python < 3.11; it installs with
``pip install --no-deps --ignore-requires-python obp==0.5.7`` plus ``seaborn`` and its estimators run next to
our pins (its dataset loader does not under pandas 3, so the rounds are read by
``tokrec.data.open_bandit.load_open_bandit``, the same preprocessing). Without obp the script still runs
on ``--obd`` and prints tokrec's figures only.

Policies (2-fold cross-fitting over rounds in time order: each half is scored by a policy trained on the
other half by replaying its logged rounds — the logging policy is uniform, so replay updates are unbiased):
linear Thompson sampling and LinUCB (hybrid) over ``[user one-hot] x [item attributes]`` (outer-product
arm features; both reduced to 8 dimensions by PCA). TS is evaluated as it would run: each round it draws
coefficients from its posterior and shows the 3 best items by the draw, so its ``action_dist`` is the share
of 200 draws placing each item at each position (posterior frozen after training). LinUCB is evaluated
greedy (its 3 best items by estimated CTR, exploration off), a deterministic policy whose IPS rests on
the ~1/80 of rounds where the log happens to agree with it. On the Bernoulli-TS log only the agreement
with obp is checked (TS is trained by replay there too, which is biased under non-uniform logging). Their CTR is estimated by IPS, SNIPS, DM and DR; the logging policy's CTR is the mean click
of the log (on-policy). Intervals: percentile bootstrap over rounds (10,000 resamples, seed 0, obp's draws).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from tokrec.bandits import BanditPolicy
from tokrec.data.open_bandit import load_open_bandit, obp_sample_folder
from tokrec.evaluation.ope import BanditLog, bootstrap_interval, estimate_all, fit_reward_model

LEN_LIST = 3


def policy_action_dist(
    log: BanditLog, items: np.ndarray, config: dict, seed: int = 0, draws: int = 0
) -> np.ndarray:
    """``(n, n_actions, 3)``: each round's slate (1 at the slate's item per position), cross-fitted.

    ``draws > 0`` (Thompson sampling): the share of ``draws`` posterior samples that put each item at each
    position, i.e. the sampling policy's own distribution (its posterior frozen at the end of training).
    """
    n = log.n_rounds
    assert log.context is not None
    halves = [np.arange(n // 2), np.arange(n // 2, n)]
    ids = [str(a) for a in range(log.n_actions)]
    dist = np.zeros((n, log.n_actions, LEN_LIST))
    for train, test in ((halves[0], halves[1]), (halves[1], halves[0])):
        policy = BanditPolicy(dict(config, seed=seed, dim=8, features="outer")).fit_items(
            ids, items, contexts=log.context[train]
        )
        for i in train:
            policy.update(str(log.action[i]), log.context[i], log.reward[i])
        if draws:
            mean, cov = policy.posterior()
            rng = np.random.default_rng(seed)
            chol = np.linalg.cholesky(config["alpha"] ** 2 * cov + 1e-12 * np.eye(len(mean)))
            for i in test:
                x = policy.shared_features(log.context[i], ids)
                thetas = mean[None, :] + rng.standard_normal((draws, len(mean))) @ chol.T
                top = np.argsort(-(thetas @ x.T), axis=1, kind="stable")[:, :LEN_LIST]
                for p in range(LEN_LIST):
                    dist[i, :, p] = np.bincount(top[:, p], minlength=log.n_actions) / draws
            continue
        for i in test:
            slate = policy.select(log.context[i], ids, k=LEN_LIST, explore_share=0.0)
            for p, s in enumerate(slate):
                dist[i, int(s.item_id), p] = 1.0
    return dist


def item_features(items: np.ndarray) -> np.ndarray:
    """One-hot of the three categorical item attributes plus the standardised numeric one."""
    cols = [np.eye(int(items[:, j].max()) + 1)[items[:, j].astype(int)] for j in range(items.shape[1] - 1)]
    num = items[:, -1:]
    return np.hstack(cols + [(num - num.mean()) / (num.std() + 1e-12)])


def obp_estimates(log: BanditLog, dist: np.ndarray, q_hat: np.ndarray) -> dict[str, dict[str, float]] | None:
    try:
        from obp.ope import DirectMethod, DoublyRobust, InverseProbabilityWeighting
        from obp.ope import SelfNormalizedInverseProbabilityWeighting as SNIPW
    except ImportError:
        return None
    common = dict(
        reward=log.reward, action=log.action, position=log.position, pscore=log.pscore, action_dist=dist
    )
    out = {}
    for name, est in (
        ("ips", InverseProbabilityWeighting()),
        ("snips", SNIPW()),
        ("dm", DirectMethod()),
        ("dr", DoublyRobust()),
    ):
        kw = dict(common, estimated_rewards_by_reg_model=q_hat)
        value = est.estimate_policy_value(**kw)
        ci = est.estimate_interval(**kw, random_state=0)
        keys = list(ci)
        out[name] = {"value": float(value), "ci_low": float(ci[keys[1]]), "ci_high": float(ci[keys[2]])}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--obd", help="the obd folder (default: the one inside the installed obp package)")
    ap.add_argument("--json", help="write every figure here")
    ap.add_argument("--alpha", type=float, default=0.5, help="LinUCB width / TS scale")
    ap.add_argument("--draws", type=int, default=200, help="posterior draws per round for TS's distribution")
    args = ap.parse_args(argv)
    from threadpoolctl import threadpool_limits

    # many tiny matrix products: one BLAS thread is ~10x faster than several contending ones
    threadpool_limits(1)
    folder = Path(args.obd) if args.obd else obp_sample_folder()
    if folder is None:
        print("obp is not installed and --obd was not given: nothing to evaluate", file=sys.stderr)
        return 2
    results: dict = {"obd": str(folder), "policies": {}, "agreement": {}}
    for logging_policy in ("random", "bts"):
        log, raw_items = load_open_bandit(folder, policy=logging_policy, campaign="all")
        items = item_features(raw_items)
        on_policy = float(log.reward.mean())
        on_ci = bootstrap_interval(log.reward, seed=0)
        q_hat = fit_reward_model(log, items, n_folds=2, seed=0)
        print(
            f"\n== logging policy {logging_policy}: {log.n_rounds} rounds, {log.n_actions} items, CTR {on_policy:.5f} "
            f"({on_ci[0]:.5f}-{on_ci[1]:.5f})"
        )
        policies = [("ts-sampling", {"policy": "ts", "alpha": args.alpha}, args.draws)]
        if logging_policy == "random":  # replay training is unbiased under uniform logging only
            policies.append(
                ("linucb-hybrid-greedy", {"policy": "linucb", "mode": "hybrid", "alpha": args.alpha}, 0)
            )
        for name, cfg, draws in policies:
            dist = policy_action_dist(log, items, cfg, draws=draws)
            ours = estimate_all(log, dist, q_hat=q_hat, seed=0)
            ref = obp_estimates(log, dist, q_hat)
            row = {k: e.as_dict() for k, e in ours.items()}
            results["policies"][f"{logging_policy}/{name}"] = {
                "logging_ctr": on_policy,
                "logging_ci": on_ci,
                "estimates": row,
            }
            print(f"  {name}:")
            worst = 0.0
            for k, e in ours.items():
                line = f"    {k:5s} ours {e.value:.6f} ({e.ci_low:.6f}-{e.ci_high:.6f}), x{e.value / on_policy:.2f} logging"
                if ref is not None:
                    r = ref[k]
                    diff = max(
                        abs(e.value - r["value"]), abs(e.ci_low - r["ci_low"]), abs(e.ci_high - r["ci_high"])
                    )
                    worst = max(worst, diff)
                    line += f" | obp {r['value']:.6f} ({r['ci_low']:.6f}-{r['ci_high']:.6f}) | max |diff| {diff:.1e}"
                print(line)
            results["agreement"][f"{logging_policy}/{name}"] = None if ref is None else worst
    if all(v is None for v in results["agreement"].values()):
        print("\nobp not importable: no agreement check", file=sys.stderr)
    else:
        print(
            f"\nlargest |ours - obp| over values and interval ends: {max(results['agreement'].values()):.2e}"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
