"""Beyond accuracy: diversity, calibration, exposure and per-group accuracy of a recommendation list.

All figures read a *cleaned* recommendations frame (:func:`tokrec.evaluation.metrics.clean_recommendations`:
``user_id, item_id, pos``) cut at ``k``:

* ``ild@K`` — intra-list diversity: mean over users of the mean pairwise cosine distance ``1 - cos(v_i, v_j)``
  between the LM vectors of the user's top-K (users with fewer than 2 items are skipped).
* ``category_coverage@K`` — mean over users of the share of the catalog's categories present in the top-K.
* ``miscalibration@K`` — mean over users of Steck's ``KL(p_u || (1 - a) q_u + a p_u)`` (``a = 0.01``), ``p_u``
  the user's training category distribution, ``q_u`` the top-K's (users without training categories skipped).
* ``gini@K`` — Gini coefficient of the exposure (times recommended) of the catalog's items (0 = every item
  shown equally often, 1 = one item takes every slot).

ARP and long-tail share are :func:`tokrec.evaluation.metrics.score_recommendations`' ``arp@K`` and
``long_tail@K``. :func:`tradeoff_curves` measures NDCG@K against these as each re-ranker's weight varies.
Per-group accuracy (:func:`group_accuracy`) is the mean of each user's figure (from
:func:`tokrec.evaluation.metrics.score_recommendations` with ``per_user=True``, the project's one NDCG) over the
users of a group, with a percentile bootstrap interval over those users.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from tokrec.evaluation.metrics import bootstrap_ci
from tokrec.rerank import CALIBRATION_ALPHA, TRADEOFF_WEIGHTS, RerankContext

RESPONSIBILITY_METRICS = ("ild", "category_coverage", "miscalibration", "gini")
#: MovieLens' age bands (the 1M release's, used for 100K too)
AGE_BANDS = (
    (0, 18, "under 18"),
    (18, 25, "18-24"),
    (25, 35, "25-34"),
    (35, 45, "35-44"),
    (45, 56, "45-55"),
    (56, 200, "56+"),
)


def _top(clean: pd.DataFrame, k: int, context: RerankContext) -> tuple[np.ndarray, np.ndarray]:
    top = clean[clean["pos"] < k]
    rows = top["item_id"].astype(str).map(context.index)
    keep = rows.notna().to_numpy()
    return top["user_id"].astype(str).to_numpy()[keep], rows[keep].astype(int).to_numpy()


def intra_list_diversity(clean: pd.DataFrame, context: RerankContext, k: int) -> float:
    if context.vectors is None:
        return float("nan")
    users, rows = _top(clean, k, context)
    v = context.vectors / np.maximum(np.linalg.norm(context.vectors, axis=1, keepdims=True), 1e-12)
    vals = []
    for _, idx in pd.Series(np.arange(len(users))).groupby(users, sort=False):
        r = rows[idx.to_numpy()]
        n = len(r)
        if n < 2:
            continue
        sims = v[r] @ v[r].T
        vals.append(float(np.sum(1.0 - sims[np.triu_indices(n, 1)]) / (n * (n - 1) / 2)))
    return float(np.mean(vals)) if vals else float("nan")


def category_coverage(clean: pd.DataFrame, context: RerankContext, k: int) -> float:
    if context.categories is None:
        return float("nan")
    users, rows = _top(clean, k, context)
    if len(users) == 0:
        return 0.0
    present = context.categories[rows] > 0
    codes, _ = pd.factorize(users)
    per_user = np.zeros((codes.max() + 1, present.shape[1]), dtype=bool)
    np.logical_or.at(per_user, codes, present)
    return float(per_user.sum(axis=1).mean() / present.shape[1])


def miscalibration(clean: pd.DataFrame, context: RerankContext, k: int) -> float:
    if context.categories is None:
        return float("nan")
    users, rows = _top(clean, k, context)
    vals = []
    for u, idx in pd.Series(np.arange(len(users))).groupby(users, sort=False):
        p = context.user_category.get(str(u))
        if p is None or p.sum() == 0:
            continue
        q = context.categories[rows[idx.to_numpy()]].sum(axis=0)
        q = q / q.sum() if q.sum() > 0 else q
        qt = (1 - CALIBRATION_ALPHA) * q + CALIBRATION_ALPHA * p
        m = p > 0
        vals.append(float(np.sum(p[m] * np.log(p[m] / qt[m]))))
    return float(np.mean(vals)) if vals else float("nan")


def gini(values: np.ndarray) -> float:
    """Gini coefficient of non-negative ``values`` (0 when all equal or all zero)."""
    x = np.sort(np.asarray(values, dtype=np.float64))
    n, total = len(x), x.sum()
    if n == 0 or total == 0:
        return 0.0
    return float((2 * np.sum(np.arange(1, n + 1) * x) / (n * total)) - (n + 1) / n)


def exposure_gini(clean: pd.DataFrame, catalog: Sequence[str], k: int) -> float:
    top = clean.loc[clean["pos"] < k, "item_id"].astype(str)
    counts = top.value_counts().reindex(list(map(str, catalog))).fillna(0).to_numpy()
    return gini(counts)


def responsibility_metrics(
    clean: pd.DataFrame, context: RerankContext, catalog: Sequence[str], k: int
) -> dict[str, float]:
    """``ild@K``, ``category_coverage@K``, ``miscalibration@K``, ``gini@K`` of a cleaned frame."""
    return {
        f"ild@{k}": intra_list_diversity(clean, context, k),
        f"category_coverage@{k}": category_coverage(clean, context, k),
        f"miscalibration@{k}": miscalibration(clean, context, k),
        f"gini@{k}": exposure_gini(clean, catalog, k),
    }


def tradeoff_curves(
    recs: pd.DataFrame,
    split: Any,
    context: RerankContext,
    controls: Sequence[str],
    k: int,
    weights: Sequence[float] = TRADEOFF_WEIGHTS,
    pool: int | None = None,
) -> list[dict[str, Any]]:
    """Each re-ranker in ``controls`` applied to a model's lists ``recs`` (its best candidates per test user of
    ``split``) at each of ``weights``, scored on ``split``'s test events: one row per (control, weight) with
    ``ndcg``, the control's ``goal`` (:data:`tokrec.rerank.GOALS`) and every beyond-accuracy figure at ``k``
    (:data:`RESPONSIBILITY_METRICS`, ``long_tail``, ``arp``, ``coverage``; weight 0 =
    the model's own list; ``pool``: each re-ranker within the user's ``pool`` best candidates, ``@pool``).
    Descriptive: read on test events, so a weight is chosen on a validation split
    (:func:`tokrec.tuning.choose_rerank` runs this on one)."""
    from tokrec.evaluation import metrics as em
    from tokrec.rerank import GOALS, rerank_frame

    train, test = split.train.interactions, split.test.interactions
    catalog = split.train.item_vocab.ids
    rows = []
    for control in controls:
        for w in weights:
            at = "" if pool is None else f"@{pool}"
            r = rerank_frame(recs, context, f"{control}:{w:g}{at}", k) if w > 0 else recs
            m = em.score_recommendations(r, test, train, k=k, candidates=split.candidates, catalog=catalog)
            clean, _ = em.clean_recommendations(r, train, users=split.test_users, candidates=split.candidates)
            m.update(responsibility_metrics(clean, context, split.candidates or catalog, k))
            rows.append(
                {
                    "control": control,
                    "weight": float(w),
                    "goal": GOALS[control],
                    "ndcg": m[f"ndcg@{k}"],
                    **{g: m[f"{g}@{k}"] for g in (*RESPONSIBILITY_METRICS, "long_tail", "arp", "coverage")},
                }
            )
    return rows


def age_band(age: float) -> str:
    for lo, hi, name in AGE_BANDS:
        if lo <= age < hi:
            return name
    return "unknown"


def user_groups(train: pd.DataFrame, users: pd.DataFrame | None = None) -> pd.DataFrame:
    """``user_id`` plus one column per grouping: ``activity`` (terciles of training events: light,
    medium, heavy) for any dataset, and ``gender``, ``age`` (bands), ``occupation`` when ``users`` has them."""
    counts = train.groupby(train["user_id"].astype(str)).size()
    ranks = counts.rank(method="first")
    band = pd.qcut(ranks, 3, labels=["light", "medium", "heavy"]) if len(counts) >= 3 else "all"
    out = pd.DataFrame({"user_id": counts.index, "activity": np.asarray(band, dtype=object)})
    if users is not None and "user_id" in users.columns:
        u = users.copy()
        u["user_id"] = u["user_id"].astype(str)
        cols = {}
        if "gender" in u.columns:
            cols["gender"] = u["gender"].astype(str)
        if "age" in u.columns:
            cols["age"] = pd.to_numeric(u["age"], errors="coerce").map(
                lambda a: "unknown" if pd.isna(a) else age_band(float(a))
            )
        if "occupation" in u.columns:
            cols["occupation"] = u["occupation"].astype(str)
        extra = pd.DataFrame({"user_id": u["user_id"], **cols})
        out = out.merge(extra, on="user_id", how="left")
    return out


def group_accuracy(
    per_user: pd.DataFrame, groups: pd.DataFrame, metric: str, *, seed: int = 0, n_boot: int = 1000
) -> list[dict[str, object]]:
    """Mean ``metric`` per group with a 95% bootstrap interval: one row per (grouping, group)."""
    df = per_user[["user_id", metric]].merge(groups, on="user_id", how="left")
    rows: list[dict[str, object]] = []
    for grouping in [c for c in groups.columns if c != "user_id"]:
        for name, g in df.groupby(df[grouping].fillna("unknown").astype(str), sort=True):
            v = g[metric].to_numpy(dtype=np.float64)
            lo, hi = bootstrap_ci(v, n_boot=n_boot, seed=seed)
            rows.append(
                {
                    "grouping": grouping,
                    "group": name,
                    "users": len(v),
                    metric: float(v.mean()),
                    "ci_low": lo,
                    "ci_high": hi,
                }
            )
    return rows
