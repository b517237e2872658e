"""Top-K ranking metrics over a recommendations frame, vectorised with numpy.

The accuracy metrics follow ``score_recs.py`` of the benchmark exactly:

* a recommendations frame has columns ``user_id, item_id`` and optionally ``score`` and ``rank``; a user's
  rows are read in ``(rank, item_id)`` order when there is a ``rank`` column, else in row order;
* items the user had in training, items outside ``candidates`` and repeated items are dropped (and counted)
  *before* the list is cut at K;
* every user in the test frame counts; a test user with no recommendations is a miss (all zeros).

With ``rel_u`` the user's distinct test items and ``hit_r`` = 1 when the item at 0-based position ``r`` of
the cleaned list is in ``rel_u``:

* ``NDCG@K = sum_{r<K} hit_r / log2(r + 2) / IDCG``, ``IDCG = sum_{r < min(|rel_u|, K)} 1 / log2(r + 2)``
* ``Recall@K = sum_{r<K} hit_r / min(|rel_u|, K)``
* ``HR@K = 1`` when any ``hit_r`` is 1
* ``MRR@K = 1 / (r + 1)`` for the first hit
* ``MAP@K = sum_{r<K} hit_r * P@(r+1) / min(|rel_u|, K)``

Beyond accuracy, over the cleaned top-K of every test user (popularity counted on the training frame as
the number of distinct users who interacted with an item, ``U`` = number of training users):

* ``coverage@K``: distinct recommended items / number of ``candidates`` when given, else of ``catalog``
* ``novelty@K``: mean self-information ``-log2(max(count_i, 1) / U)`` of the recommended items (bits)
* ``arp@K``: average recommendation popularity, the mean ``count_i / U`` of the recommended items
* ``long_tail@K``: share of recommended items outside the short head, the short head being the
  ``ceil(20%)`` most popular items of the whole ``catalog`` (ties broken by item id; never an item with
  no training event, so new items are always long tail)
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

import numpy as np
import pandas as pd
import scipy.sparse as sp

from tokrec.data.dataset import ids_in
from tokrec.errors import DataError

#: share of the catalog (most popular first) that forms the "short head"
SHORT_HEAD_SHARE = 0.2
#: accuracy metrics, in the order reports list them
ACCURACY_METRICS = ("ndcg", "recall", "hr", "mrr", "map")
#: beyond-accuracy metrics, in the order reports list them
BEYOND_METRICS = ("coverage", "novelty", "arp", "long_tail")

#: the position of an item a list never holds (a non-finite score): beyond any cut-off
_NOT_LISTED = 2**40
#: one cut-off K or several
Cutoffs: TypeAlias = int | Sequence[int]
#: item ids as any iterable (strings, numbers: compared as strings)
ItemIds: TypeAlias = Iterable[object]


def _pair_codes(*pairs: tuple[pd.Series, pd.Series]) -> list[np.ndarray]:
    """The ``(user_id, item_id)`` pairs of several frames as int64 codes, one array per frame, equal exactly when
    both ids are equal as strings (integer keys hash and sort far faster than joined strings: 2.2 M rows)."""

    def codes(i: int) -> np.ndarray:
        ids = np.concatenate([np.asarray(p[i].astype(str), dtype=object) for p in pairs])
        return pd.factorize(ids)[0].astype(np.int64)

    users, items = codes(0), codes(1)
    key = users * (int(items.max(initial=0)) + 1) + items
    return np.split(key, np.cumsum([len(p[0]) for p in pairs])[:-1])


def _need(df: pd.DataFrame, name: str, columns: Iterable[str]) -> None:
    for c in columns:
        if c not in df.columns:
            raise DataError(f"{name} frame has no column {c!r}", column=c)


def _as_ks(k: Cutoffs) -> list[int]:
    ks = [int(k)] if isinstance(k, int | np.integer) else sorted({int(x) for x in k})
    if not ks or min(ks) < 1:
        raise DataError(f"k must be positive integers, got {k!r}")
    return ks


def clean_recommendations(
    recs: pd.DataFrame,
    train: pd.DataFrame,
    *,
    users: Sequence[str] | None = None,
    candidates: ItemIds | None = None,
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Applies the scorer's filters to a recommendations frame.

    Args:
        recs: ``user_id, item_id[, score][, rank]``.
        train: ``user_id, item_id`` of what each user had already seen.
        users: keep only these users (the test users); all users when None.
        candidates: allowed item ids; all items when None.

    Returns:
        The cleaned frame ``user_id, item_id[, score], pos`` (0-based position in the user's cleaned list,
        rows grouped by user in list order) and the counts ``seen_items_filtered``,
        ``outside_candidates_filtered``, ``duplicates_filtered``.
    """
    _need(recs, "recommendations", ("user_id", "item_id"))
    _need(train, "train", ("user_id", "item_id"))
    r = pd.DataFrame({"user_id": recs["user_id"].astype(str), "item_id": recs["item_id"].astype(str)})
    if users is not None:
        r = r[ids_in(r["user_id"], {str(u) for u in users})]
    if "rank" in recs.columns:
        r["rank"] = pd.to_numeric(recs.loc[r.index, "rank"], errors="raise").astype(float)
        r = r.sort_values(["user_id", "rank", "item_id"], kind="mergesort")
    else:
        r = r.sort_values("user_id", kind="mergesort")
    listed = ids_in(train["user_id"].astype(str), pd.unique(r["user_id"]))  # only these users' events
    key, seen_key = _pair_codes(
        (r["user_id"], r["item_id"]), (train.loc[listed, "user_id"], train.loc[listed, "item_id"])
    )
    seen = np.isin(key, seen_key)
    if candidates is not None:
        outside = ~ids_in(r["item_id"], {str(c) for c in candidates}) & ~seen
    else:
        outside = np.zeros(len(r), dtype=bool)
    rest = ~seen & ~outside
    dup = np.zeros(len(r), dtype=bool)
    dup[rest] = pd.Series(key[rest]).duplicated().to_numpy()
    keep = rest & ~dup
    if "score" in recs.columns:
        r["score"] = pd.to_numeric(recs.loc[r.index, "score"], errors="coerce").astype(float)
    clean = r.loc[keep, [c for c in ("user_id", "item_id", "score") if c in r.columns]].reset_index(drop=True)
    clean["pos"] = clean.groupby("user_id", sort=False).cumcount().to_numpy()
    counts = {
        "seen_items_filtered": int(seen.sum()),
        "outside_candidates_filtered": int(outside.sum()),
        "duplicates_filtered": int(dup.sum()),
    }
    return clean, counts


def item_popularity(train: pd.DataFrame) -> tuple[pd.Series, int]:
    """Number of distinct training users per item id, and the number of training users."""
    pairs = train[["user_id", "item_id"]].astype(str).drop_duplicates()
    return pairs.groupby("item_id").size(), int(pairs["user_id"].nunique())


def short_head(counts: pd.Series, catalog: Sequence[str]) -> set[str]:
    """The ``ceil(SHORT_HEAD_SHARE * len(catalog))`` most popular catalog items (ties: smaller id first).

    Items with no training event are never in the short head.
    """
    cat = counts.reindex(list(catalog)).fillna(0)
    order = sorted((i for i in cat.index if cat[i] > 0), key=lambda i: (-cat[i], i))
    return set(order[: math.ceil(SHORT_HEAD_SHARE * len(cat))])


def _accuracy(
    codes: np.ndarray, pos: np.ndarray, hit: np.ndarray, n_rel: np.ndarray, k: int
) -> dict[str, np.ndarray]:
    """Per-user accuracy metrics at ``k``: each ``(len(n_rel),)`` float.

    ``codes``, ``pos``, ``hit`` have one entry per cleaned recommendation (user index, 0-based position,
    1.0 when relevant), grouped by user in list order; ``n_rel`` is ``(n_users,)`` relevant counts.
    """
    n_users = len(n_rel)
    m = pos < k
    c, p, h = codes[m], pos[m], hit[m]
    denom = np.minimum(n_rel, k).astype(float)
    disc = 1.0 / np.log2(np.arange(k) + 2.0)
    idcg = np.cumsum(disc)[np.maximum(denom.astype(int), 1) - 1]
    dcg = np.bincount(c, weights=h * disc[p], minlength=n_users)
    hits = np.bincount(c, weights=h, minlength=n_users)
    first = np.full(n_users, np.inf)
    np.minimum.at(first, c[h > 0], p[h > 0].astype(float))
    # hits so far within each user's list (rows are grouped by user in list order)
    cum = pd.Series(h).groupby(c).cumsum().to_numpy() if len(h) else h
    ap = np.bincount(c, weights=h * cum / (p + 1.0), minlength=n_users)
    return {
        "ndcg": dcg / idcg,
        "recall": hits / denom,
        "hr": (hits > 0).astype(float),
        "mrr": np.where(np.isfinite(first), 1.0 / (first + 1.0), 0.0),
        "map": ap / denom,
    }


def score_matrix_metrics(
    scores: np.ndarray,
    relevant: np.ndarray | Any,
    *,
    exclude: Sequence[np.ndarray] | Any = None,
    candidates: np.ndarray | None = None,
    k: int = 10,
) -> dict[str, float]:
    """NDCG@k, HR@k and Recall@k straight from a score matrix (no recommendation lists), for validation
    loops that score every item for every row.

    The definitions are those of :func:`score_recommendations` (``idcg`` over ``min(n_relevant, k)``,
    recall over the same). A relevant item's position is its position in the list the model would write
    (:func:`tokrec.models.base.top_k_rows`: exact ties broken by the catalog's fixed order, as in every list).

    Args:
        scores: ``(n_rows, n_items)``.
        relevant: ``(n_rows,)`` int, one relevant item per row, or a ``(n_rows, n_items)`` scipy sparse
            matrix whose non-zeros are the relevant items. Rows without a relevant item are left out.
        exclude: items each row may not be recommended (its history): a sequence of item-row arrays,
            one per row, or a ``(n_rows, n_items)`` sparse matrix. A relevant item excluded never counts.
        candidates: ``(n_items,)`` bool: only these items are ranked (None: all).
        k: the cut-off.

    Returns:
        ``{"ndcg@k", "hr@k", "recall@k"}`` means over the rows with a relevant item (0.0 for none).
    """
    s = np.array(scores, dtype=np.float32, copy=True)
    if exclude is not None:
        if sp.issparse(exclude):
            s[sp.csr_matrix(exclude).nonzero()] = -np.inf
        else:
            for j, h in enumerate(exclude):
                s[j, np.asarray(h, dtype=np.int64)] = -np.inf
    if candidates is not None:
        s[:, ~np.asarray(candidates, dtype=bool)] = -np.inf
    if sp.issparse(relevant):
        rel = sp.coo_matrix(relevant)
        rows, items = rel.row.astype(np.int64), rel.col.astype(np.int64)
    else:
        items = np.asarray(relevant, dtype=np.int64)
        rows = np.arange(len(items))
    pos = _list_positions(s, rows, items)
    hit = pos < k
    users, codes = np.unique(rows, return_inverse=True)
    if not len(users):
        return {f"ndcg@{k}": 0.0, f"hr@{k}": 0.0, f"recall@{k}": 0.0}
    n_rel = np.bincount(codes, minlength=len(users))
    denom = np.minimum(n_rel, k)
    idcg = np.cumsum(1.0 / np.log2(np.arange(k) + 2.0))[denom - 1]
    dcg = np.bincount(codes, weights=np.where(hit, 1.0 / np.log2(pos + 2.0), 0.0), minlength=len(users))
    hits = np.bincount(codes, weights=hit.astype(float), minlength=len(users))
    return {
        f"ndcg@{k}": float(np.mean(dcg / idcg)),
        f"hr@{k}": float(np.mean(hits > 0)),
        f"recall@{k}": float(np.mean(hits / denom)),
    }


def _list_positions(s: np.ndarray, rows: np.ndarray, items: np.ndarray) -> np.ndarray:
    """0-based position of ``items[j]`` in the list that row ``rows[j]`` of ``s`` ranks, under the one ranking rule.

    The rule is :func:`tokrec.models.base.top_k_rows`'s (float32 scores, best first, exact ties by the
    catalog's fixed pseudo-random :func:`~tokrec.models.base.tie_order`), so a figure from a score matrix
    equals the scorer's on the list the model would write. A non-finite score is never in the list:
    its position is :data:`_NOT_LISTED` (never a hit). ``s`` is float32, already masked with ``-inf``.
    """
    from tokrec.models.base import tie_order  # the ranking rule; models import this module lazily too

    tie = tie_order(s.shape[1])
    target = s[rows, items]
    pos = np.empty(len(rows), dtype=np.int64)
    for a in range(0, len(rows), 1024):  # (entries, n_items) comparisons, a block at a time
        block, t = s[rows[a : a + 1024]], target[a : a + 1024, None]
        ahead = (block > t) | ((block == t) & (tie[None, :] < tie[items[a : a + 1024], None]))
        pos[a : a + 1024] = ahead.sum(1)
    pos[~np.isfinite(target)] = _NOT_LISTED
    return pos


def _beyond(
    items: np.ndarray,
    counts: pd.Series,
    n_train_users: int,
    catalog: Sequence[str],
    head: set[str],
) -> dict[str, float]:
    """Coverage, novelty, ARP and long-tail share of the recommended ``items`` (one per cleaned rec)."""
    if len(items) == 0:
        return {"coverage": 0.0, "novelty": 0.0, "arp": 0.0, "long_tail": 0.0}
    c = counts.reindex(items).fillna(0).to_numpy(dtype=float)
    u = max(n_train_users, 1)
    return {
        "coverage": len(set(items)) / max(len(catalog), 1),
        "novelty": float(np.mean(-np.log2(np.maximum(c, 1.0) / u))),
        "arp": float(np.mean(c / u)),
        "long_tail": float(np.mean([i not in head for i in items])),
    }


def popularity_deciles(
    recs: pd.DataFrame, train: pd.DataFrame, catalog: Sequence[str], *, k: int = 10
) -> list[float]:
    """Share of the (cleaned, top-``k``) recommendations in each popularity decile of the catalog.

    Decile 0 holds the 10% most popular catalog items. ``recs`` must already be cleaned (``pos`` column,
    see :func:`clean_recommendations`). Returns 10 shares summing to 1 (all zeros when there are no recs).
    """
    counts, _ = item_popularity(train)
    cat = list(map(str, catalog))
    pop = counts.reindex(cat).fillna(0).to_numpy()
    order = np.lexsort((np.asarray(cat), -pop))
    decile = np.empty(len(cat), dtype=np.int64)
    decile[order] = np.arange(len(cat)) * 10 // max(len(cat), 1)
    index = dict(zip(cat, decile, strict=True))
    top = recs.loc[recs["pos"] < k, "item_id"].astype(str)
    d = np.array([index[i] for i in top if i in index], dtype=np.int64)
    if len(d) == 0:
        return [0.0] * 10
    return (np.bincount(d, minlength=10) / len(d)).tolist()


def tied_share(clean: pd.DataFrame, k: int) -> float:
    """Share of users whose top-``k`` was decided by a tie: the ``k``-th and ``k+1``-th scores are equal.

    A model that cannot tell items apart (e.g. one that gives every new item the same score) leaves its
    order to the tie-break (the catalog order in ``recommend_batch``), which can correlate with
    popularity. ``clean`` is a frame of :func:`clean_recommendations` with a ``score`` column; users with
    ``k`` or fewer recommendations count as not tied. NaN when there is no score column or no user.
    """
    if "score" not in clean.columns or clean.empty:
        return float("nan")
    at = clean[clean["pos"].isin((k - 1, k))]
    pairs = at.pivot_table(index="user_id", columns="pos", values="score", aggfunc="first")
    n_users = clean["user_id"].nunique()
    if k not in pairs.columns or k - 1 not in pairs.columns:
        return 0.0
    return float((pairs[k - 1] == pairs[k]).sum() / n_users)


@dataclass
class _Prepared:
    users: np.ndarray
    clean: pd.DataFrame
    filtered: dict[str, int]
    codes: np.ndarray
    pos: np.ndarray
    hit: np.ndarray
    n_rel: np.ndarray
    rel: pd.DataFrame
    cand: list[str] | None


def _prepare(
    recs: pd.DataFrame, test: pd.DataFrame, train: pd.DataFrame, candidates: ItemIds | None
) -> _Prepared:
    _need(test, "test", ("user_id", "item_id"))
    rel = pd.DataFrame({"user_id": test["user_id"].astype(str), "item_id": test["item_id"].astype(str)})
    rel = rel.drop_duplicates()
    users = pd.unique(rel["user_id"])
    if len(users) == 0:
        raise DataError("the test frame has no events")
    cand = None if candidates is None else [str(c) for c in candidates]
    clean, filtered = clean_recommendations(recs, train, users=users, candidates=cand)
    codes = pd.Index(users).get_indexer(clean["user_id"])
    n_rel = rel.groupby("user_id").size().reindex(users).to_numpy()
    rec_key, rel_key = _pair_codes((clean["user_id"], clean["item_id"]), (rel["user_id"], rel["item_id"]))
    hit = np.isin(rec_key, rel_key)
    return _Prepared(
        np.asarray(users),
        clean,
        filtered,
        codes,
        clean["pos"].to_numpy(),
        hit.astype(float),
        n_rel,
        rel,
        cand,
    )


def bootstrap_ci(
    values: np.ndarray, *, n_boot: int = 1000, level: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (users resampled with replacement)."""
    v = np.asarray(values, dtype=float)
    if len(v) == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot)
    for b in range(0, n_boot, 100):  # 100 resamples at a time keeps memory at 100 x n_users
        idx = rng.integers(0, len(v), size=(min(100, n_boot - b), len(v)))
        means[b : b + len(idx)] = v[idx].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)


def paired_difference(
    a: np.ndarray, b: np.ndarray, *, n_boot: int = 1000, level: float = 0.95, seed: int = 0
) -> dict[str, Any]:
    """Two figures of the same users compared: the mean of ``a - b``, the percentile bootstrap interval of that
    mean (users resampled with replacement, a user's two figures together, as :func:`bootstrap_ci`), and how
    many users ``a`` scores higher and lower than ``b``. Paired, so much narrower than the gap between two
    separate intervals: an interval that excludes 0 is a difference these users resolve.

    Returns:
        ``users``, ``diff``, ``ci_low``, ``ci_high``, ``higher``, ``lower`` (NaN figures for no users) and
        ``resolved`` (the interval excludes 0).
    """
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.shape != y.shape:
        raise ValueError(f"paired_difference: {x.shape} figures against {y.shape}")
    d = x - y
    lo, hi = bootstrap_ci(d, n_boot=n_boot, level=level, seed=seed)
    return {
        "users": len(d),
        "diff": float(d.mean()) if len(d) else float("nan"),
        "ci_low": lo,
        "ci_high": hi,
        "higher": int((d > 0).sum()),
        "lower": int((d < 0).sum()),
        "resolved": bool(lo > 0 or hi < 0),
    }


def score_recommendations(
    recs: pd.DataFrame,
    test: pd.DataFrame,
    train: pd.DataFrame,
    *,
    k: Cutoffs = 10,
    candidates: ItemIds | None = None,
    catalog: ItemIds | None = None,
    per_user: bool = False,
    with_clean: bool = False,
) -> dict[str, Any]:
    """Scores a recommendations frame against held-out test events (full ranking).

    Args:
        recs: ``user_id, item_id[, score][, rank]``, one row per recommended item.
        test: ``user_id, item_id, ...`` held-out events; every user in it is scored.
        train: ``user_id, item_id, ...`` what each user had already seen.
        k: one cut-off or several.
        candidates: allowed item ids (cold-start protocol); recommendations outside are dropped.
        catalog: the item ids coverage is measured against when ``candidates`` is None (default: every
            item in ``train`` or ``test``).
        per_user: also return ``per_user``, each test user's accuracy figures (a frame: ``user_id``
            then ``ndcg@K``, ``recall@K``, ... per K) whose means are the figures above (use them for
            confidence intervals, groups and paired comparisons between models).
        with_clean: also return ``clean``, the cleaned frame the figures were computed from
            (:func:`clean_recommendations` with the test users and ``candidates``), for further measures of the
            same lists without cleaning them again.

    Returns:
        ``users``, then for each K ``ndcg@K``, ``recall@K``, ``hr@K``, ``mrr@K``, ``map@K``,
        ``coverage@K``, ``novelty@K``, ``arp@K``, ``long_tail@K`` (unrounded floats), then
        ``users_without_recs`` and the filter counts of :func:`clean_recommendations`. The accuracy keys and
        counts are those of ``score_recs.py``.
    """
    ks = _as_ks(k)
    prep = _prepare(recs, test, train, candidates)
    users, clean, cand, rel = prep.users, prep.clean, prep.cand, prep.rel
    codes, pos, hit_f, n_rel = prep.codes, prep.pos, prep.hit, prep.n_rel
    if catalog is not None:
        cat = [str(c) for c in catalog]
    else:
        cat = sorted(set(train["item_id"].astype(str)) | set(rel["item_id"]) | set(cand or ()))
    counts, n_train_users = item_popularity(train)
    head = short_head(counts, cat)
    out: dict[str, Any] = {"users": len(users)}
    each = pd.DataFrame({"user_id": users})
    items = clean["item_id"].to_numpy()
    for kk in ks:
        acc = _accuracy(codes, pos, hit_f, n_rel, kk)
        beyond = _beyond(items[pos < kk], counts, n_train_users, cand or cat, head)
        for name in ACCURACY_METRICS:
            out[f"{name}@{kk}"] = float(np.mean(acc[name]))
            each[f"{name}@{kk}"] = acc[name]
        for name in BEYOND_METRICS:
            out[f"{name}@{kk}"] = beyond[name]
    out["users_without_recs"] = int((~ids_in(users, pd.unique(recs["user_id"].astype(str)))).sum())
    out.update(prep.filtered)
    if per_user:
        out["per_user"] = each
    if with_clean:
        out["clean"] = clean
    return out


def ndcg_from_scores(
    scores: np.ndarray, rel: sp.csr_matrix, seen: sp.csr_matrix | None = None, *, k: int = 10
) -> float:
    """Mean NDCG@k straight from a score matrix (for tuning loops; the same rules as the scorer): the mean of
    :func:`ndcg_per_user_from_scores` (0.0 when no user has a relevant item)."""
    each = ndcg_per_user_from_scores(scores, rel, seen, k=k)
    return float(np.mean(each)) if len(each) else 0.0


def ndcg_per_user_from_scores(
    scores: np.ndarray, rel: sp.csr_matrix, seen: sp.csr_matrix | None = None, *, k: int = 10
) -> np.ndarray:
    """NDCG@k of each user with a relevant item, straight from a score matrix (the same rules as the scorer).

    Args:
        scores: ``(n_users, n_items)`` float; ``-inf`` = never recommended. ``(1, n_items)`` with more
            users in ``rel`` and no ``seen``: one ranking shared by every user (new users), ranked once.
        rel: ``(n_users, n_items)`` sparse, non-zero = a held-out item of that user.
        seen: ``(n_users, n_items)`` sparse, non-zero = a training item (dropped before the cut).
        k: the cut-off.

    Returns:
        ``(n,)`` float64: NDCG@k of each user (row of ``rel``) with at least one relevant item, in row order.
    """
    rel = sp.csr_matrix(rel)
    shared = len(scores) == 1 and rel.shape[0] > 1
    if shared and seen is not None:
        raise ValueError("ndcg_from_scores: a shared ranking (one row of scores) takes no seen items")
    s = np.array(scores, dtype=np.float32, copy=True)
    if seen is not None:
        s[sp.csr_matrix(seen).nonzero()] = -np.inf
    if shared:  # ranked once, the same list for every user: each relevant entry reads its item's position
        from tokrec.models.base import tie_order

        order = np.lexsort((tie_order(s.shape[1]), -s[0]))
        rank = np.empty(s.shape[1], dtype=np.int64)
        rank[order] = np.arange(s.shape[1])
        rank[~np.isfinite(s[0])] = _NOT_LISTED
        coo = rel.tocoo()
        rows, items = coo.row.astype(np.int64), coo.col.astype(np.int64)
        keep = coo.data != 0
        rows, items, pos = rows[keep], items[keep], rank[items[keep]]
    else:
        coo = rel.tocoo()
        keep = coo.data != 0
        rows, items = coo.row[keep].astype(np.int64), coo.col[keep].astype(np.int64)
        pos = _list_positions(s, rows, items)
    if len(rows) == 0:
        return np.zeros(0)
    users, codes = np.unique(rows, return_inverse=True)
    disc = np.where(pos < k, 1.0 / np.log2(pos + 2.0), 0.0)
    dcg = np.bincount(codes, weights=disc, minlength=len(users))
    n_rel = np.minimum(np.bincount(codes, minlength=len(users)), k)
    idcg = np.cumsum(1.0 / np.log2(np.arange(k) + 2.0))[n_rel - 1]
    return np.asarray(dcg / idcg, dtype=np.float64)
