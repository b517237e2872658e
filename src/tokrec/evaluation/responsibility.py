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


def _lists(users: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each user's catalog rows as one row of a padded matrix (-1 = no item), users in first-seen order:
    the distinct users, the ``(n_users, longest)`` matrix and each list's length."""
    codes, uniq = pd.factorize(users)
    if len(uniq) == 0:
        return np.asarray(uniq), np.zeros((0, 0), dtype=np.int64), np.zeros(0, dtype=np.int64)
    pos = pd.Series(codes).groupby(codes).cumcount().to_numpy()
    lengths = np.bincount(codes, minlength=len(uniq))
    mat = np.full((len(uniq), int(lengths.max())), -1, dtype=np.int64)
    mat[codes, pos] = rows
    return np.asarray(uniq), mat, lengths


def intra_list_diversity(clean: pd.DataFrame, context: RerankContext, k: int) -> float:
    if context.vectors is None:
        return float("nan")
    _, mat, lengths = _lists(*_top(clean, k, context))
    v = context.vectors / np.maximum(np.linalg.norm(context.vectors, axis=1, keepdims=True), 1e-12)
    n = mat.shape[1]
    upper = np.triu(np.ones((n, n), dtype=bool), 1)
    vals = []
    for lo in range(0, len(mat), 2048):  # 2,048 lists at a time: memory 2,048 x K x d
        m, ln = mat[lo : lo + 2048], lengths[lo : lo + 2048]
        x = v[np.maximum(m, 0)] * (m >= 0)[:, :, None]  # padding rows are zero vectors
        dist = 1.0 - np.einsum("ukd,ujd->ukj", x, x)
        valid = upper[None] & (m >= 0)[:, :, None] & (m >= 0)[:, None, :]
        pairs = ln * (ln - 1) / 2
        ok = ln >= 2
        vals.append(np.where(valid, dist, 0.0).sum(axis=(1, 2))[ok] / pairs[ok])
    out = np.concatenate(vals) if vals else np.zeros(0)
    return float(np.mean(out)) if len(out) else float("nan")


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
    codes, uniq = pd.factorize(users)
    known = {
        j: d
        for j, u in enumerate(uniq)
        if (d := context.user_category.get(str(u))) is not None and d.sum() > 0
    }
    if not known:
        return float("nan")
    has = np.zeros(len(uniq), dtype=bool)
    has[list(known)] = True
    p = np.zeros((len(uniq), context.categories.shape[1]))
    p[has] = np.stack(list(known.values()))
    q = np.zeros_like(p)
    np.add.at(q, codes, context.categories[rows])
    tot = q.sum(axis=1, keepdims=True)
    q = np.where(tot > 0, q / np.where(tot > 0, tot, 1.0), q)
    qt = (1 - CALIBRATION_ALPHA) * q + CALIBRATION_ALPHA * p
    m = p > 0
    terms = np.where(m, p * np.log(np.where(m, p, 1.0) / np.where(m, qt, 1.0)), 0.0)
    return float(np.mean(terms.sum(axis=1)[has]))


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
    clean: pd.DataFrame,
    context: RerankContext,
    catalog: Sequence[str],
    k: int,
    figures: Sequence[str] = RESPONSIBILITY_METRICS,
) -> dict[str, float]:
    """``ild@K``, ``category_coverage@K``, ``miscalibration@K``, ``gini@K`` of a cleaned frame (those of them
    named in ``figures``)."""
    measure = {
        "ild": lambda: intra_list_diversity(clean, context, k),
        "category_coverage": lambda: category_coverage(clean, context, k),
        "miscalibration": lambda: miscalibration(clean, context, k),
        "gini": lambda: exposure_gini(clean, catalog, k),
    }
    return {f"{name}@{k}": measure[name]() for name in RESPONSIBILITY_METRICS if name in figures}


#: every figure a trade-off row can carry, beside ``ndcg``
TRADEOFF_FIGURES = (*RESPONSIBILITY_METRICS, "long_tail", "arp", "coverage")


def tradeoff_curves(
    recs: pd.DataFrame,
    split: Any,
    context: RerankContext,
    controls: Sequence[str],
    k: int,
    weights: Sequence[float] = TRADEOFF_WEIGHTS,
    pool: int | None = None,
    figures: Sequence[str] = TRADEOFF_FIGURES,
) -> list[dict[str, Any]]:
    """Each re-ranker in ``controls`` applied to a model's lists ``recs`` (its best candidates per test user of
    ``split``) at each of ``weights``, scored on ``split``'s test events: one row per (control, weight) with
    ``ndcg``, its change against the model's own list over the same users with a paired 95% bootstrap interval
    (``ndcg_diff``, ``ndcg_diff_low``, ``ndcg_diff_high``), the control's ``goal`` (:data:`tokrec.rerank.GOALS`)
    and the beyond-accuracy figures at ``k``
    named in ``figures`` (default all of :data:`TRADEOFF_FIGURES`; the goal is always measured; weight 0 =
    the model's own list; ``pool``: each re-ranker within the user's ``pool`` best candidates, ``@pool``).
    Descriptive: read on test events, so a weight is chosen on a validation split
    (:func:`tokrec.tuning.choose_rerank` runs this on one, measuring the goal alone)."""
    from tokrec.evaluation import metrics as em
    from tokrec.rerank import GOALS, rerank_frame

    unknown = sorted(set(figures) - set(TRADEOFF_FIGURES))
    if unknown:
        raise ValueError(f"unknown trade-off figures {unknown}; known: {', '.join(TRADEOFF_FIGURES)}")
    train, test = split.train.interactions, split.test.interactions
    catalog = split.train.item_vocab.ids

    def scored(r: pd.DataFrame) -> tuple[dict[str, Any], np.ndarray]:
        m = em.score_recommendations(
            r, test, train, k=k, candidates=split.candidates, catalog=catalog, per_user=True, with_clean=True
        )
        each = m.pop("per_user").sort_values("user_id")[f"ndcg@{k}"].to_numpy()
        return m, each

    base_m, base_each = scored(recs)
    rows = []
    for control in controls:
        wanted = [g for g in TRADEOFF_FIGURES if g in figures or g == GOALS[control]]
        for w in weights:
            at = "" if pool is None else f"@{pool}"
            if w > 0:
                m, each = scored(rerank_frame(recs, context, f"{control}:{w:g}{at}", k))
            else:
                m, each = dict(base_m), base_each
            clean = m.pop("clean")
            if any(g in RESPONSIBILITY_METRICS for g in wanted):
                m.update(responsibility_metrics(clean, context, split.candidates or catalog, k, wanted))
            # the NDCG change against the model's own list, user by user, with its paired 95% interval
            diff = em.paired_difference(each, base_each)
            rows.append(
                {
                    "control": control,
                    "weight": float(w),
                    "goal": GOALS[control],
                    "ndcg": m[f"ndcg@{k}"],
                    "ndcg_diff": diff["diff"],
                    "ndcg_diff_low": diff["ci_low"],
                    "ndcg_diff_high": diff["ci_high"],
                    **{g: m[f"{g}@{k}"] for g in wanted},
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
    medium, heavy; ``none`` for a user of ``users`` without training events, a new user) for any dataset, and
    ``gender``, ``age`` (bands), ``occupation`` when ``users`` has them (for every user it lists, with training
    events or not)."""
    counts = train.groupby(train["user_id"].astype(str)).size()
    ranks = counts.rank(method="first")
    band = pd.qcut(ranks, 3, labels=["light", "medium", "heavy"]) if len(counts) >= 3 else "all"
    out = pd.DataFrame({"user_id": counts.index, "activity": np.asarray(band, dtype=object)})
    if users is not None and "user_id" in users.columns:
        new = pd.Index(users["user_id"].astype(str).unique()).difference(out["user_id"])
        out = pd.concat([out, pd.DataFrame({"user_id": new, "activity": "none"})], ignore_index=True)
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
