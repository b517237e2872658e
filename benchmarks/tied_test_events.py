"""How much of a model's warm NDCG@10 comes from test events that share a second with the user's last
training event?

Usage:
    python benchmarks/tied_test_events.py [RECS.csv ...] [--splits ../shared/data/ml-100k-splits]

On ``ml-100k-splits`` 415 of the 943 users (44%) rated their test item in the same second as their last
training event, and in every one of those cases the test item is the largest item id rated in that second:
the split orders events of equal time by item id and holds out the last. Within a second the true order of
ratings is unknown, so a model that reads order can learn the split's id order there (a sequential model
sees same-second events in ascending id order in its training data too). This script scores each
recommendations file (``user_id, item_id[, score][, rank]``, the shared scorer's format) on the two groups
of users separately, with :func:`tokrec.evaluation.metrics.score_recommendations` (the shared scorer's
definitions): ``tied`` (test event in the same second as the last training event) and ``later`` (strictly
later). A model whose ``tied`` figure far exceeds its ``later`` figure, when an order-free model (EASE)
scores ``tied`` users lower, is drawing on that order.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from tokrec.evaluation.metrics import score_recommendations

SPLITS = Path(__file__).resolve().parents[2] / "shared" / "data" / "ml-100k-splits"


def tie_groups(train: pd.DataFrame, test: pd.DataFrame) -> dict[str, set[str]]:
    """Test users whose test event shares the second of their last training event, and the others."""
    last = train.groupby("user_id")["timestamp"].max()
    same = test["timestamp"].to_numpy() == last.reindex(test["user_id"]).to_numpy()
    users = test["user_id"].astype(str)
    return {"tied": set(users[same]), "later": set(users[~same])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("recs", nargs="*", type=Path, help="recommendation files (warm split)")
    ap.add_argument("--splits", type=Path, default=SPLITS)
    a = ap.parse_args()
    train = pd.read_csv(a.splits / "warm" / "train.csv", dtype={"user_id": str, "item_id": str})
    test = pd.read_csv(a.splits / "warm" / "test.csv", dtype={"user_id": str, "item_id": str})
    groups = tie_groups(train, test)
    print(f"test users: {len(test)}; tied: {len(groups['tied'])}; later: {len(groups['later'])}")
    same = train.merge(
        test[["user_id", "timestamp", "item_id"]], on=["user_id", "timestamp"], suffixes=("", "_test")
    )
    if len(same) and same["item_id"].str.isdigit().all() and same["item_id_test"].str.isdigit().all():
        above = (
            (same["item_id_test"].astype(int) > same["item_id"].astype(int)).groupby(same["user_id"]).all()
        )
        print(
            f"tied users whose test item has the largest id of that second: {int(above.sum())} of {len(above)}"
        )
    # the validation split the tuner cuts (each user's last training event held out) is tied where a user's
    # last training second holds two or more events, whichever of them is held out
    at_last = train["timestamp"] == train.groupby("user_id")["timestamp"].transform("max")
    val_tied = int((at_last.groupby(train["user_id"]).sum() >= 2).sum())
    users = train["user_id"].nunique()
    print(
        f"validation split (each user's last training event): tied {val_tied} of {users} ({val_tied / users:.1%})"
    )
    if not a.recs:
        return
    print("| recommendations | NDCG@10 all | tied | later |")
    print("| --- | ---: | ---: | ---: |")
    for path in a.recs:
        recs = pd.read_csv(path, dtype={"user_id": str, "item_id": str})
        row = [f"{score_recommendations(recs, test, train)['ndcg@10']:.4f}"]
        for name in ("tied", "later"):
            part = test[test["user_id"].isin(groups[name])]
            row.append(f"{score_recommendations(recs, part, train)['ndcg@10']:.4f}")
        print(f"| {path.name} | " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
