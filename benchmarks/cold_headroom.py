"""Where the cold-item headroom is on the ml-100k cold split: popularity against taste.

Usage:
    .venv/bin/python benchmarks/cold_headroom.py [--splits ../shared/data/ml-100k-splits] [--vectors /tmp/vecs.npy]

Prints, each scored with the official scorer where it is a ranking:
- an ORACLE that ranks the new items by their number of test events, the same list for every user (an upper
  bound for any popularity-only ranking: it reads the test events, so it is not a model);
- the ``tokrec`` model's ``map`` signal alone (a per-user ridge from item content ``[text, attributes]`` to the
  user's history) and its ``prior`` signal alone (a ridge from content to log-popularity), both honest models;
- how well content predicts a new item's popularity: Spearman correlation between the test-event counts of the
  new items and a prediction from ``[text, attributes]`` fitted on the items with training events (the ridge of
  ``prior``, and LightGBM on 32 principal components of the text vectors plus the attributes);
- how good that prediction would have to be: an ORACLE diagnostic that gives the shipped ``tokrec`` blend, in place of
  its ``prior`` on the new items, their test-event counts with more and more noise, and scores it at each Spearman.

With ``--learned`` (about 6 minutes more) it also asks whether the COMBINER is the limit rather than the signals: the items
with training events are split into 5 folds; each fold in turn becomes pseudo-new (its events removed from training),
and the ``tokrec`` model fitted on the rest gives every (user, pseudo-new item) its new-item signals. A LightGBM
classifier over those signals plus time features the linear blend cannot combine (the user's first and last timestamps
and history length, the item's release and its age at the user's first and last event, the catalog attributes) is
trained on four folds and scored on the fifth (items it never saw labelled), against the blend the model ships with.
Only training events are used.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from deep_sasrec import SCORER, load_split, load_vectors, score
from tokrec.models import signals as sig
from tokrec.models.recommended import TokrecHybrid


def oracle_recs(test: pd.DataFrame, candidates: list[str], k: int = 100) -> pd.DataFrame:
    """The candidates by test-event count (ties by item id), the same top ``k`` for every test user."""
    counts = test["item_id"].astype(str).value_counts()
    order = sorted(candidates, key=lambda i: (-int(counts.get(i, 0)), i))[:k]
    users = test["user_id"].astype(str).unique()
    return pd.DataFrame(
        {
            "user_id": np.repeat(users, len(order)),
            "item_id": np.tile(order, len(users)),
            "score": np.tile(np.arange(len(order), 0, -1, dtype=float), len(users)),
            "rank": np.tile(np.arange(1, len(order) + 1), len(users)),
        }
    )


def _learned_combiner(ds, vecs: np.ndarray, n_folds: int = 5, negatives: float = 0.2) -> None:
    """Item-fold check of a learned combiner of the new-item signals against the shipped blend (see module doc)."""
    import lightgbm as lgb

    from ml100k_recs import ValSet

    signals = ("age", "map", "prop", "prior", "profile")
    items = np.array(sorted(set(ds.interactions["item_id"])))
    fold_of = np.random.default_rng(0).permutation(len(items)) % n_folds
    folds = []
    for f in range(n_folds):
        new = sorted(items[fold_of == f].tolist())
        held = ds.interactions["item_id"].isin(set(new))
        vs = ValSet(ds.with_interactions(ds.interactions[~held]), ds.interactions[held], new)
        m = TokrecHybrid().fit(vs.train, vecs)
        n_u = vs.train.n_users
        seqs = [m.seen_.get(u, np.empty(0, dtype=np.int64)) for u in range(n_u)]
        s = m.signals(seqs, m.user_time_, signals)
        c = np.flatnonzero(vs.cand)
        ts = vs.train.interactions["timestamp"].to_numpy(dtype=np.float64)
        first = np.full(n_u, np.inf)
        np.minimum.at(first, vs.train.user_idx, ts)
        last = m.user_time_.astype(np.float64)
        day, t0 = 86400.0, ts.min()
        attrs, release = sig.attribute_features(vs.train.items)
        cols = [s[k][:, c] for k in signals] + [sig.znorm_rows(s[k][:, c]) for k in signals]
        cols += [
            np.broadcast_to(v[:, None], (n_u, len(c)))
            for v in (
                np.log1p(np.bincount(vs.train.user_idx, minlength=n_u)),
                (first - t0) / day,
                (last - t0) / day,
            )
        ]
        cols += [np.broadcast_to(v[None, :], (n_u, len(c))) for v in ((release[c] - t0) / day, *attrs[c].T)]
        cols += [(last[:, None] - release[c][None, :]) / day, (first[:, None] - release[c][None, :]) / day]
        x = np.stack([np.asarray(v, dtype=np.float32) for v in cols], axis=-1)
        y = np.asarray(vs.rel[:, c].todense()) > 0
        folds.append((x, y, m.blend(s)[:, c], vs))
    rng = np.random.default_rng(0)
    rows = []
    for f in range(n_folds):
        train = [g for g in range(n_folds) if g != f]
        xs = np.concatenate([folds[g][0].reshape(-1, folds[g][0].shape[-1]) for g in train])
        ys = np.concatenate([folds[g][1].ravel() for g in train])
        keep = ys | (rng.random(len(ys)) < negatives)  # every positive, a fifth of the negatives
        clf = lgb.LGBMClassifier(
            n_estimators=200,
            learning_rate=0.05,
            num_leaves=7,
            min_child_samples=400,
            subsample=0.5,
            subsample_freq=1,
            colsample_bytree=0.7,
            reg_lambda=10.0,
            random_state=0,
            verbose=-1,
            n_jobs=2,
        ).fit(xs[keep], ys[keep])
        x, y, blend, vs = folds[f]
        p = np.log(clf.predict_proba(x.reshape(-1, x.shape[-1]))[:, 1].reshape(y.shape) + 1e-9)
        mix = sig.znorm_rows(p) + sig.znorm_rows(blend)
        rows.append([vs.score(_on_catalog(v, vs.cand)) for v in (blend, p, mix)])
        print(
            f"  fold {f}: blend {rows[-1][0]:.4f}  LightGBM {rows[-1][1]:.4f}  half each {rows[-1][2]:.4f}",
            flush=True,
        )
    mean = np.mean(rows, axis=0)
    print(
        f"learned combiner, {n_folds} item folds (NDCG@10 among each fold's pseudo-new items): blend {mean[0]:.4f}  "
        f"LightGBM {mean[1]:.4f}  half each {mean[2]:.4f}"
    )


def _popularity_needed(
    ds,
    vecs: np.ndarray,
    counts: np.ndarray,
    cands: list[str],
    users: list[str],
    out: Path,
    splits: Path,
    draws: int = 5,
) -> None:
    """ORACLE diagnostic: ``tokrec`` as shipped, its ``prior`` signal on the new items replaced by their test-event
    log-counts plus Gaussian noise (put on the shipped prior's mean and spread), scored at several noise levels
    (``draws`` noise draws each, averaged): how well a popularity estimate would have to rank the new items
    (Spearman) for the blend to reach a given NDCG@10."""
    model = TokrecHybrid().fit(ds, vecs)
    new = ds.item_vocab.encode(cands)
    shipped = model.prior_.copy()
    true = np.log1p(counts)
    path = out / "tokrec.csv"
    model.recommend_batch(users, k=100, candidates=cands).to_csv(path, index=False)
    print(
        f"tokrec as shipped (its own content prior): NDCG@10 {score(path, splits, 'cold')['ndcg@10']:.4f}",
        flush=True,
    )
    rng = np.random.default_rng(0)
    for noise in (0.0, 0.5, 1.0, 1.5, 2.0, 3.0):
        rhos, ndcgs = [], []
        for draw in range(1 if noise == 0 else draws):
            pred = true + noise * true.std() * rng.standard_normal(len(true))
            prior = shipped.copy()
            prior[new] = shipped[new].mean() + (pred - pred.mean()) / pred.std() * shipped[new].std()
            model.prior_ = prior
            path = out / f"prior_noise{noise}_{draw}.csv"
            model.recommend_batch(users, k=100, candidates=cands).to_csv(path, index=False)
            rhos.append(spearmanr(counts, pred).statistic)
            ndcgs.append(score(path, splits, "cold")["ndcg@10"])
        print(
            f"ORACLE tokrec with a popularity prior of Spearman {np.mean(rhos):.2f} to the test counts "
            f"(noise {noise} sd, {len(rhos)} draw(s)): NDCG@10 {np.mean(ndcgs):.4f} "
            f"(min {min(ndcgs):.4f}, max {max(ndcgs):.4f})",
            flush=True,
        )


def _on_catalog(cand_scores: np.ndarray, cand: np.ndarray) -> np.ndarray:
    """``(users, candidates)`` scores as ``(users, catalog)``, zero elsewhere (``ValSet.score`` drops non-candidates)."""
    out = np.zeros((len(cand_scores), len(cand)), dtype=np.float32)
    out[:, cand] = cand_scores
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--splits", type=Path, default=SCORER.parents[1] / "data" / "ml-100k-splits")
    ap.add_argument("--vectors", default=None, help=".npy cache of the item vectors")
    ap.add_argument("--encoder", default=None, help="encoder folder or id (default: all-MiniLM-L6-v2)")
    ap.add_argument(
        "--learned", action="store_true", help="also the item-fold check of a learned combiner (~6 min)"
    )
    a = ap.parse_args()
    ds, items = load_split(a.splits, "cold")
    vecs = load_vectors(items, a.vectors, a.encoder)
    test = pd.read_csv(a.splits / "cold" / "test.csv", dtype={"user_id": str, "item_id": str})
    cands = pd.read_csv(a.splits / "cold" / "candidates.csv", dtype=str)["item_id"].tolist()
    users = test["user_id"].unique().tolist()
    out = Path(tempfile.mkdtemp(prefix="cold_headroom."))

    path = out / "oracle.csv"
    oracle_recs(test, cands).to_csv(path, index=False)
    print(f"ORACLE test popularity (reads the test events): {score(path, a.splits, 'cold')}", flush=True)
    zero = {f"w_{s}": 0.0 for s in ("ease", "trans", "time", "age", "map", "prop", "prior", "profile")}
    for signal in ("map", "prior"):
        model = TokrecHybrid({**zero, f"w_{signal}": 1.0}).fit(ds, vecs)
        path = out / f"{signal}.csv"
        model.recommend_batch(users, k=100, candidates=cands).to_csv(path, index=False)
        print(f"tokrec's {signal} signal alone: {score(path, a.splits, 'cold')}", flush=True)

    x = ds.interaction_matrix()
    pop = np.asarray(x.sum(axis=0)).ravel()
    warm = np.flatnonzero(pop > 0)
    new = ds.item_vocab.encode(cands)
    counts = test["item_id"].value_counts().reindex(cands).fillna(0).to_numpy()
    attrs, release = sig.attribute_features(ds.items)
    z = sig.l2_rows(vecs)
    f = sig.content_features(vecs, attrs).astype(np.float64)
    ridge_pred = (f @ sig.ridge(f[warm], np.log1p(pop[warm])[:, None], 10.0)).ravel()
    print(
        f"Spearman(test-event count, ridge prediction from content): {spearmanr(counts, ridge_pred[new]).statistic:.3f}"
    )
    import lightgbm as lgb
    from sklearn.decomposition import PCA

    years = np.where(np.isnan(release), 0.0, release / 86400 / 365.25 + 1970)
    feats = np.hstack([PCA(32, random_state=0).fit_transform(z), attrs, years[:, None]])
    gbm = lgb.LGBMRegressor(
        n_estimators=300, learning_rate=0.03, num_leaves=15, min_child_samples=20, random_state=0, verbose=-1
    ).fit(feats[warm], np.log1p(pop[warm]))
    print(
        f"Spearman(test-event count, LightGBM prediction from content): {spearmanr(counts, gbm.predict(feats[new])).statistic:.3f}"
    )
    _popularity_needed(ds, vecs, counts, cands, users, out, a.splits)
    if a.learned:
        _learned_combiner(ds, vecs)


if __name__ == "__main__":
    main()
