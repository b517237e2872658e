"""MIND impression metrics against MIND's own per-impression definitions, and freshness."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from tokrec.evaluation.impressions import impression_metrics, item_first_seen


def mind_reference(labels: list[np.ndarray], scores: list[np.ndarray]) -> dict[str, float]:
    """MIND's evaluate.py, written out per impression (scores have no ties here)."""

    def dcg(y, s, k):
        order = np.argsort(s)[::-1]
        y = np.take(y, order[:k])
        return np.sum((2**y - 1) / np.log2(np.arange(len(y)) + 2))

    aucs, mrrs, n5, n10 = [], [], [], []
    for y, s in zip(labels, scores, strict=True):
        aucs.append(roc_auc_score(y, s))
        order = np.argsort(s)[::-1]
        yy = np.take(y, order)
        mrrs.append(np.sum(yy / (np.arange(len(yy)) + 1)) / np.sum(yy))
        n5.append(dcg(y, s, 5) / dcg(y, y, 5))
        n10.append(dcg(y, s, 10) / dcg(y, y, 10))
    return {"auc": np.mean(aucs), "mrr": np.mean(mrrs), "ndcg@5": np.mean(n5), "ndcg@10": np.mean(n10)}


def test_matches_mind_definitions_on_random_impressions():
    rng = np.random.default_rng(3)
    labels, scores, rows = [], [], []
    for imp in range(60):
        n = int(rng.integers(2, 25))
        y = (rng.random(n) < 0.2).astype(int)
        y[rng.integers(0, n)] = 1
        if y.all():
            y[0] = 0
        s = rng.normal(size=n) + y * rng.random()
        labels.append(y)
        scores.append(s)
        rows += [(f"i{imp}", f"n{j}", int(y[j])) for j in range(n)]
    frame = pd.DataFrame(rows, columns=["impression_id", "item_id", "label"])
    got = impression_metrics(frame, np.concatenate(scores))
    ref = mind_reference(labels, scores)
    for key in ("auc", "mrr", "ndcg@5", "ndcg@10"):
        assert got[key] == pytest.approx(ref[key], abs=1e-12), key
    assert got["impressions"] == 60 and got["impressions_without_auc"] == 0


def test_ties_auc_half_and_single_class_impressions_counted():
    frame = pd.DataFrame(
        {
            "impression_id": ["a", "a", "a", "b", "b"],
            "item_id": ["x", "y", "z", "x", "y"],
            "label": [1, 0, 0, 1, 1],
        }
    )
    got = impression_metrics(frame, np.array([1.0, 1.0, 0.0, 0.5, np.nan]))
    # impression a: the clicked x ties with y (1/2) and beats z (1) -> AUC 0.75; b has no negative
    assert got["auc"] == pytest.approx(0.75)
    assert got["impressions_without_auc"] == 1
    # b: both clicked, so nDCG is 1 whatever the order; a: x at rank 1 or 2 depending on the tie-break
    assert got["ndcg@5"] in (pytest.approx(1.0), pytest.approx((1 + 1 / np.log2(3)) / 2))


def test_freshness_decays_with_age():
    frame = pd.DataFrame(
        {
            "impression_id": ["a", "a"],
            "item_id": ["new", "old"],
            "label": [1, 0],
            "timestamp": [100 * 3600, 100 * 3600],
        }
    )
    first = item_first_seen(
        pd.DataFrame({"item_id": ["new", "old", "new"], "timestamp": [100 * 3600, 52 * 3600, 0]})
    )
    assert first.to_dict() == {"new": 0, "old": 52 * 3600}
    first = pd.Series({"new": 100 * 3600, "old": 52 * 3600})
    prefer_new = impression_metrics(frame, np.array([2.0, 1.0]), item_first_seen=first, ks=(1, 2))
    prefer_old = impression_metrics(frame, np.array([1.0, 2.0]), item_first_seen=first, ks=(1, 2))
    assert prefer_new["freshness@1"] == pytest.approx(1.0)
    assert prefer_old["freshness@1"] == pytest.approx(0.25)  # 48 h old, half life 24 h
    assert prefer_new["freshness@2"] == prefer_old["freshness@2"] == pytest.approx(0.625)
    assert prefer_new["freshness_clicked"] == pytest.approx(1.0)


def test_impression_split_cuts_by_time_and_keeps_train_non_clicks():
    from tokrec.data.synthetic import make_synthetic
    from tokrec.evaluation.impressions import evaluate_impressions, impression_split
    from tokrec.models.registry import create_model

    ds = make_synthetic(n_items=60, n_users=30, seed=3, domain="news")
    train, test = impression_split(ds, quantile=0.75)
    cut = test["timestamp"].min()
    assert train.interactions["timestamp"].max() < cut
    assert train.impressions is not None and train.impressions["timestamp"].max() < cut
    assert (train.impressions["label"] == 0).any()  # non-clicks stay available to models
    assert len(train.impressions) + len(test) == len(ds.impressions)
    got = evaluate_impressions(create_model("popularity").fit(train), test)
    assert got["impressions"] == test["impression_id"].nunique()
    assert 0.0 <= got["auc"] <= 1.0 and 0.0 < got["mrr"] <= 1.0
