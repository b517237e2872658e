"""Impression-level evaluation (MIND's protocol) and time-decayed freshness for news.

MIND ranks the candidates *shown in each impression* (clicked ``-1`` and not clicked ``-0``), not the
whole catalog, and averages four figures over impressions (its ``evaluate.py``):

* ``auc``: the probability that a clicked candidate outscores a non-clicked one (ties count one half;
  the Mann-Whitney form of ``sklearn.metrics.roc_auc_score``). An impression whose candidates are all
  clicked or all not clicked has no AUC: it is left out of the AUC mean only, and counted
  (``impressions_without_auc``).
* ``mrr``: MIND's, ``sum(label_r / r) / sum(label)`` over the ranked candidates (r = 1-based rank): the
  mean reciprocal rank of *every* clicked candidate, which differs from the first-hit MRR of
  :mod:`tokrec.evaluation.metrics`.
* ``ndcg@5``, ``ndcg@10``: binary gains, ``IDCG`` over ``min(clicks, K)`` positions; the implementation of
  :mod:`tokrec.evaluation.metrics` run with each impression as a "user" and its candidates as the list.

Candidates are ranked by score, exact ties broken by a fixed pseudo-random order (as everywhere in
tokrec: never by the order shown, which might leak the label).

Freshness (``freshness@K``): news loses value within hours. For each impression, the mean over its top
``K`` ranked candidates of ``2 ** (-age / half_life)``, where ``age`` is the impression's time minus the
item's first appearance in the log (its first impression or click; MIND has no publication time) and
``half_life`` is 24 hours by default; averaged over impressions. 1.0 = everything ranked first was brand
new. ``freshness_clicked`` is the same decay over the clicked candidates, the reference a model's figure
can be read against.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from tokrec.data.dataset import IMPRESSION_COLUMNS, Dataset
from tokrec.errors import ConfigError, DataError
from tokrec.evaluation.metrics import _accuracy

IMPRESSION_METRICS = ("auc", "mrr", "ndcg@5", "ndcg@10")
DEFAULT_HALF_LIFE_HOURS = 24.0

__all__ = [
    "IMPRESSION_METRICS",
    "impression_metrics",
    "impression_split",
    "item_first_seen",
    "score_impressions",
    "evaluate_impressions",
]


def _ranks(impressions: pd.DataFrame, scores: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(group code per row, 0-based rank within its impression by score, ties pseudo-random)."""
    codes, _ = pd.factorize(impressions["impression_id"])
    tie = np.random.default_rng(seed).random(len(scores))
    order = np.lexsort((tie, -scores, codes))
    rank = np.empty(len(scores), dtype=np.int64)
    starts = np.searchsorted(codes[order], codes[order], side="left")
    rank[order] = np.arange(len(order)) - starts
    return codes, rank


def impression_metrics(
    impressions: pd.DataFrame,
    scores: np.ndarray,
    *,
    item_first_seen: pd.Series | None = None,
    half_life_hours: float = DEFAULT_HALF_LIFE_HOURS,
    ks: Sequence[int] = (5, 10),
    seed: int = 0,
) -> dict[str, Any]:
    """MIND's impression metrics (and freshness when ``item_first_seen`` is given).

    Args:
        impressions: ``impression_id, item_id, label`` (and ``timestamp`` for freshness), one row per
            shown candidate.
        scores: the model's score of each row (NaN counts as the lowest score).
        item_first_seen: epoch seconds of each item's first appearance, indexed by item id.
        half_life_hours: the freshness decay's half life.
        ks: the nDCG (and freshness) cut-offs.
        seed: the tie-break order.

    Returns:
        ``impressions``, ``auc``, ``mrr``, ``ndcg@K`` ..., ``impressions_without_auc`` and, with
        ``item_first_seen``, ``freshness@K`` ... and ``freshness_clicked``.
    """
    for col in ("impression_id", "item_id", "label"):
        if col not in impressions.columns:
            raise DataError("impressions frame: missing column", column=col)
    s = np.asarray(scores, dtype=np.float64)
    if s.shape != (len(impressions),):
        raise ConfigError(f"scores has shape {s.shape}, expected ({len(impressions)},)")
    if len(impressions) == 0:
        raise DataError("no impressions to evaluate")
    s = np.where(np.isnan(s), -np.inf, s)
    label = impressions["label"].to_numpy().astype(np.float64)
    codes, rank = _ranks(impressions, s, seed)
    n_imp = int(codes.max()) + 1
    n_pos = np.bincount(codes, weights=label, minlength=n_imp)
    n_all = np.bincount(codes, minlength=n_imp).astype(np.float64)
    n_neg = n_all - n_pos
    out: dict[str, Any] = {"impressions": n_imp}
    # AUC, Mann-Whitney with average ranks for ties
    avg = pd.Series(s).groupby(codes).rank(method="average").to_numpy()
    pos_rank_sum = np.bincount(codes, weights=avg * label, minlength=n_imp)
    has_auc = (n_pos > 0) & (n_neg > 0)
    auc = (pos_rank_sum - n_pos * (n_pos + 1) / 2) / np.where(has_auc, n_pos * n_neg, 1.0)
    out["auc"] = float(auc[has_auc].mean()) if has_auc.any() else float("nan")
    # MRR as MIND defines it
    rr = np.bincount(codes, weights=label / (rank + 1.0), minlength=n_imp)
    has_click = n_pos > 0
    out["mrr"] = float((rr[has_click] / n_pos[has_click]).mean()) if has_click.any() else float("nan")
    # nDCG through the shared implementation: rows grouped by impression in rank order
    order = np.lexsort((rank, codes))
    for k in ks:
        acc = _accuracy(codes[order], rank[order], label[order], n_pos.astype(np.int64), int(k))
        out[f"ndcg@{k}"] = float(acc["ndcg"][has_click].mean()) if has_click.any() else float("nan")
    out["impressions_without_auc"] = int((~has_auc).sum())
    if item_first_seen is not None:
        if "timestamp" not in impressions.columns:
            raise DataError("impressions frame: missing column (needed for freshness)", column="timestamp")
        first = item_first_seen.reindex(impressions["item_id"].astype(str)).to_numpy(dtype=np.float64)
        age_h = np.maximum(impressions["timestamp"].to_numpy(dtype=np.float64) - first, 0.0) / 3600.0
        fresh = np.where(np.isnan(first), 0.0, np.exp2(-age_h / float(half_life_hours)))
        for k in ks:
            top = rank < k
            num = np.bincount(codes[top], weights=fresh[top], minlength=n_imp)
            den = np.bincount(codes[top], minlength=n_imp)
            out[f"freshness@{k}"] = float(np.mean(num / np.maximum(den, 1)))
        clicked = label > 0
        num = np.bincount(codes[clicked], weights=fresh[clicked], minlength=n_imp)
        out["freshness_clicked"] = (
            float(np.mean(num[has_click] / n_pos[has_click])) if has_click.any() else float("nan")
        )
    return out


def item_first_seen(*frames: pd.DataFrame) -> pd.Series:
    """Each item's earliest ``timestamp`` over frames with ``item_id, timestamp`` (impressions, clicks)."""
    parts = [f[["item_id", "timestamp"]] for f in frames if f is not None and len(f)]
    if not parts:
        return pd.Series(dtype=np.int64)
    both = pd.concat(parts, ignore_index=True)
    return both.groupby(both["item_id"].astype(str))["timestamp"].min()


def score_impressions(model: Any, impressions: pd.DataFrame, *, batch_size: int = 256) -> np.ndarray:
    """The fitted ``model``'s score of every (user, shown item) row; NaN for users it does not know.

    Each distinct user's catalog scores are computed once (``model.score``, in batches of users).
    """
    users = impressions["user_id"].astype(str).to_numpy()
    items = impressions["item_id"].astype(str)
    out = np.full(len(impressions), np.nan, dtype=np.float64)
    uniq, inv = np.unique(users, return_inverse=True)
    item_rows = model.item_vocab_.encode(items, missing="mask")
    for start in range(0, len(uniq), batch_size):
        chunk = uniq[start : start + batch_size]
        scores = model.score(list(chunk))  # (len(chunk), n_items)
        sel = (inv >= start) & (inv < start + len(chunk)) & (item_rows >= 0)
        out[sel] = scores[inv[sel] - start, item_rows[sel]]
    return out


def impression_split(dataset: Dataset, *, quantile: float = 0.8) -> tuple[Dataset, pd.DataFrame]:
    """A temporal cut of a dataset with impressions: (train, test impressions).

    The test impressions are those at or after the ``quantile`` of impression times; train keeps every
    interaction (clicks, and MIND's history clicks, which precede all impressions) and every impression
    before the cut.
    """
    if dataset.impressions is None or len(dataset.impressions) == 0:
        raise ConfigError(f"dataset {dataset.name!r} has no impressions (MIND behaviors.tsv brings them)")
    if not 0.0 < quantile < 1.0:
        raise ConfigError(f"quantile must be in (0, 1), got {quantile}")
    imp = dataset.impressions
    cut = int(np.quantile(imp["timestamp"].to_numpy(), quantile))
    test = imp[imp["timestamp"] >= cut].reset_index(drop=True)
    inter = dataset.interactions
    train = dataset.with_interactions(inter[inter["timestamp"] < cut].reset_index(drop=True))
    train.impressions = imp[imp["timestamp"] < cut].reset_index(drop=True)  # for models that use non-clicks
    if len(train) == 0 or len(test) == 0:
        raise ConfigError(f"the impression cut at quantile {quantile} leaves an empty train or test")
    return train, test


def evaluate_impressions(
    model: Any,
    impressions: pd.DataFrame,
    *,
    first_seen: pd.Series | None = None,
    half_life_hours: float = DEFAULT_HALF_LIFE_HOURS,
    seed: int = 0,
) -> dict[str, Any]:
    """Scores every impression's candidates with a fitted model and returns :func:`impression_metrics`,
    plus ``unknown_user_impressions`` (impressions of users the model never saw: their candidates all
    tie and are ordered by the tie-break)."""
    missing = [c for c in IMPRESSION_COLUMNS if c not in impressions.columns and c != "position"]
    if missing:
        raise DataError("impressions frame: missing column", column=missing[0])
    scores = score_impressions(model, impressions)
    out = impression_metrics(
        impressions, scores, item_first_seen=first_seen, half_life_hours=half_life_hours, seed=seed
    )
    unknown = model.user_vocab_.encode(impressions["user_id"].astype(str), missing="mask") < 0
    out["unknown_user_impressions"] = int(impressions.loc[unknown, "impression_id"].nunique())
    return out


def given_impressions(dataset: Dataset, behaviors: str) -> tuple[Dataset, pd.DataFrame]:
    """MIND's train/dev protocol: (train, test impressions) from a dataset and another ``behaviors.tsv``.

    The test file's History clicks precede its impressions, so they join the training events (each
    (user, item) once); its impressions are the test. News it references must be in the catalog (give
    train's and dev's news.tsv to :func:`tokrec.data.mind.load_mind`, or concatenate them).
    """
    from tokrec.data.mind import read_mind_behaviors

    clicks, test = read_mind_behaviors(behaviors)
    for frame, col in ((test, "impressions"), (clicks, "history")):
        unknown = pd.Index(dataset.items["item_id"]).get_indexer(frame["item_id"]) < 0
        if unknown.any():
            i = int(np.flatnonzero(unknown)[0])
            raise DataError(
                f"news {frame['item_id'].iloc[i]!r} is not in the catalog ({int(unknown.sum())} rows); "
                "give the news.tsv of both splits",
                file=str(behaviors),
                row=int(frame.attrs["rows"][i]),
                column=col,
            )
    hist = clicks[clicks["source"] == "history"]
    inter = dataset.interactions
    known = pd.MultiIndex.from_frame(inter[["user_id", "item_id"]])
    new = ~pd.MultiIndex.from_frame(hist[["user_id", "item_id"]]).isin(known)
    hist = hist[new]
    hist.attrs.clear()
    test.attrs.clear()
    train = Dataset(
        pd.concat([inter, hist[list(inter.columns.intersection(hist.columns))]], ignore_index=True),
        dataset.items,
        dataset.users,
        name=dataset.name,
        impressions=dataset.impressions,
    )
    return train, test
