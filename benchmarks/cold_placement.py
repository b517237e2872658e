"""Where should new items stand among known ones? `tokrec`'s cold placement measured on mixed lists.

The shared cold split asks for new items only (``--candidates``); a live catalog mixes them with known items,
and the question is how high an item without events should stand. Mixed-list protocol on MovieLens 100K warm:
20% of the items with training events (seeded) become new — their training events are dropped, they stay in
the catalog — and each user's test event is ranked among ALL items (seen ones excluded), so about a fifth of
the test events fall on new items. The default model ``tokrec`` (shipped configuration) is fitted once on the
reduced log and scored through the public API at several ``cold_offset`` values (a constant added to every
item without events, in the blend's units; 0 is the default: new items where the cold calibration line puts
them), and with the calibration off. Then the issue's Star Wars check: fitted on the cold split's training
file without the new items, a made-up new item close in text to the three Star Wars films is added
(``add_items``, as ``POST /items`` does) and its rank for a visitor with those three films is printed at the
same offsets.

    python benchmarks/cold_placement.py [--shared ../shared] [--seed 0]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from common import shared_dir

OFFSETS = (0.0, 2.0, 5.0, 10.0, 15.0, 20.0, 30.0)


def mixed_lists(s: Path, seed: int, tmp: Path) -> None:
    from tokrec.data.loaders import load_dataset
    from tokrec.evaluation.metrics import score_recommendations
    from tokrec.features import item_vectors
    from tokrec.models.registry import create_model

    train = pd.read_csv(s / "warm" / "train.csv", dtype={"user_id": str, "item_id": str})
    test = pd.read_csv(s / "warm" / "test.csv", dtype={"user_id": str, "item_id": str})
    with_events = np.array(sorted(train["item_id"].unique()))
    rng = np.random.default_rng(seed)
    new = set(rng.choice(with_events, int(0.2 * len(with_events)), replace=False).tolist())
    reduced = train[~train["item_id"].isin(new)]
    reduced.to_csv(tmp / "mixed_train.csv", index=False)
    ds = load_dataset(s / "items.csv", tmp / "mixed_train.csv")
    vectors = item_vectors(ds)
    users = sorted(set(test["user_id"]) & set(ds.user_vocab.ids), key=int)
    test = test[test["user_id"].isin(users)]
    on_new = test.groupby("user_id")["item_id"].agg(lambda x: bool(set(x) & new))
    print(
        f"mixed lists: {len(new)} of {ds.n_items} items made new (seed {seed}); {len(users)} test users, "
        f"{on_new.mean():.1%} of them with their test item among the new ones"
    )
    print(
        "| setting | NDCG@10 | NDCG@10, test item new | NDCG@10, test item known | new items in the top 10 |"
    )
    print("| --- | ---: | ---: | ---: | ---: |")
    fitted = create_model("tokrec", {}).fit(ds, vectors)
    off = create_model("tokrec", {"cold_calibration": False}).fit(ds, vectors)
    runs = [("calibration off", off)] + [
        (f"cold_offset {o:g}", fitted.with_scoring(cold_offset=o)) for o in OFFSETS
    ]
    for name, model in runs:
        recs = model.recommend_batch(users, k=10)
        per = score_recommendations(recs, test, reduced, k=10, per_user=True)["per_user"].set_index("user_id")
        flags = on_new.reindex(per.index).to_numpy()
        ndcg = per["ndcg@10"].to_numpy()
        share = recs["item_id"].isin(new).mean()
        print(
            f"| {name} | {ndcg.mean():.4f} | {ndcg[flags].mean():.4f} | {ndcg[~flags].mean():.4f} | {share:.3f} |"
        )


def star_wars(s: Path, tmp: Path) -> None:
    from tokrec.data.loaders import load_dataset
    from tokrec.features import item_vectors
    from tokrec.models.registry import create_model

    items = pd.read_csv(s / "items.csv", dtype={"item_id": str})
    new = pd.read_csv(s / "cold" / "candidates.csv", dtype={"item_id": str})["item_id"]
    items[~items["item_id"].isin(new)].to_csv(tmp / "old_items.csv", index=False)
    ds = load_dataset(tmp / "old_items.csv", s / "cold" / "train.csv")
    model = create_model("tokrec", {}).fit(ds, item_vectors(ds))
    wookiee = pd.DataFrame(
        [
            {
                "item_id": "wookiee",
                "title": "Galactic Wookiee Rebellion: The Lightsaber Saga (1998)",
                "release_date": "01-Jan-1998",
                "genres": "Action|Adventure|Sci-Fi",
            }
        ]
    )
    model.add_items(["wookiee"], item_vectors(wookiee), items=wookiee)
    history = ["50", "172", "181"]  # Star Wars, The Empire Strikes Back, Return of the Jedi
    ranks = []
    for o in OFFSETS:
        top = model.with_scoring(cold_offset=o).recommend(None, k=model.n_items, history=history)
        ranks.append(f"{o:g}: {[i for i, _ in top].index('wookiee') + 1}")
    print("Star Wars check, rank of the new item by cold_offset: " + ", ".join(ranks))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--shared", default=None)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    import tempfile

    s = shared_dir(args.shared) / "data" / "ml-100k-splits"
    with tempfile.TemporaryDirectory() as d:
        mixed_lists(s, args.seed, Path(d))
        star_wars(s, Path(d))


if __name__ == "__main__":
    main()
