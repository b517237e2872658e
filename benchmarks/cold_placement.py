"""Where should new items stand among known ones? `tokrec`'s cold placement measured on mixed lists.

The shared cold split asks for new items only (``--candidates``); a live catalog mixes them with known items,
and the question is how high an item without events should stand. Three measurements, each scoring the
default model ``tokrec`` (shipped configuration) through the public API at several placement settings:

1. **Mixed lists** on MovieLens 100K warm: 20% of the items with training events (seeded) become new — their
   training events are dropped, they stay in the catalog — and each user's test event is ranked among ALL
   items (seen ones excluded), so about a fifth of the test events fall on new items. One fit per seed; the
   settings are scoring options (``with_scoring``): the fresh slot (``fresh_slot`` / ``fresh_match``, on by
   default) and ``cold_offset`` (a constant added to every item without events, in the blend's units).
2. **The issue's Star Wars check**: fitted on the cold split's training file without the new items, a
   made-up new item close in text to the three Star Wars films is added (``add_items``, as ``POST /items``
   does); its rank for a visitor with those three films.
3. **Sequels**: every pair of catalog titles where one title extends the other ("Die Hard" -> "Die Hard 2",
   some not real sequels), the earlier one with at least 20 training events; the later titles are made new
   (their events dropped) and each is looked for in the list of a visitor whose history is the earlier title.

    python benchmarks/cold_placement.py [--shared ../shared] [--seeds 0 1 2 3]
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import numpy as np
import pandas as pd

from common import shared_dir

#: (label, scoring overrides); the fitted model is the shipped default (fresh slot 10, match 2, offset 0)
SETTINGS: tuple[tuple[str, dict[str, object]], ...] = (
    ("no fresh slot, calibration off", {"fresh_slot": 0, "cold_calibration": False}),
    ("no fresh slot (cold calibration alone)", {"fresh_slot": 0}),
    ("**default: fresh slot 10, match 2**", {}),
    ("fresh slot 10, match 1", {"fresh_match": 1}),
    ("fresh slot 10, match 3", {"fresh_match": 3}),
    ("no fresh slot, cold_offset 10", {"fresh_slot": 0, "cold_offset": 10.0}),
    ("no fresh slot, cold_offset 20", {"fresh_slot": 0, "cold_offset": 20.0}),
    ("no fresh slot, cold_offset 30", {"fresh_slot": 0, "cold_offset": 30.0}),
)


def mixed_lists(s: Path, seeds: list[int], tmp: Path) -> None:
    from tokrec.data.loaders import load_dataset
    from tokrec.evaluation.metrics import score_recommendations
    from tokrec.features import item_vectors
    from tokrec.models.registry import create_model

    train = pd.read_csv(s / "warm" / "train.csv", dtype={"user_id": str, "item_id": str})
    test_all = pd.read_csv(s / "warm" / "test.csv", dtype={"user_id": str, "item_id": str})
    with_events = np.array(sorted(train["item_id"].unique()))
    rows: dict[str, list[tuple[float, float, float, float]]] = {name: [] for name, _ in SETTINGS}
    for seed in seeds:
        rng = np.random.default_rng(seed)
        new = set(rng.choice(with_events, int(0.2 * len(with_events)), replace=False).tolist())
        reduced = train[~train["item_id"].isin(new)]
        reduced.to_csv(tmp / "mixed_train.csv", index=False)
        ds = load_dataset(s / "items.csv", tmp / "mixed_train.csv")
        users = sorted(set(test_all["user_id"]) & set(ds.user_vocab.ids), key=int)
        test = test_all[test_all["user_id"].isin(users)]
        on_new = test.groupby("user_id")["item_id"].agg(lambda x, new=new: bool(set(x) & new))
        print(
            f"seed {seed}: {len(new)} of {ds.n_items} items made new; {len(users)} test users, "
            f"{on_new.mean():.1%} of them with their test item among the new ones"
        )
        model = create_model("tokrec", {}).fit(ds, item_vectors(ds))
        for name, overrides in SETTINGS:
            recs = model.with_scoring(**overrides).recommend_batch(users, k=10)
            per = score_recommendations(recs, test, reduced, k=10, per_user=True)["per_user"].set_index(
                "user_id"
            )
            flags = on_new.reindex(per.index).to_numpy()
            ndcg = per["ndcg@10"].to_numpy()
            share = recs["item_id"].isin(new).mean()
            rows[name].append((ndcg.mean(), ndcg[flags].mean(), ndcg[~flags].mean(), share))
    base = np.array([r[0] for r in rows[SETTINGS[1][0]]])
    print(f"\nmixed lists, mean over seeds {seeds} (per seed: NDCG@10 change against no fresh slot)")
    print(
        "| setting | NDCG@10 | change | per seed | NDCG@10, test item new | NDCG@10, test item known "
        "| new items in the top 10 |"
    )
    print("| --- | ---: | ---: | --- | ---: | ---: | ---: |")
    for name, _ in SETTINGS:
        a = np.array(rows[name])
        per_seed = " / ".join(f"{x:+.1%}" for x in a[:, 0] / base - 1)
        print(
            f"| {name} | {a[:, 0].mean():.4f} | {a[:, 0].mean() / base.mean() - 1:+.1%} | {per_seed} | "
            f"{a[:, 1].mean():.4f} | {a[:, 2].mean():.4f} | {a[:, 3].mean():.3f} |"
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
    for name, overrides in SETTINGS:
        m = model.with_scoring(**overrides)
        top = m.recommend(None, k=m.n_items, history=history)
        ranks.append(f"{name.strip('*')}: {[i for i, _ in top].index('wookiee') + 1}")
    print("\nStar Wars check, rank of the new item:\n  " + "\n  ".join(ranks))


def sequels(s: Path, tmp: Path) -> None:
    from tokrec.data.loaders import load_dataset
    from tokrec.features import item_vectors
    from tokrec.models.registry import create_model

    items = pd.read_csv(s / "items.csv", dtype={"item_id": str})
    train = pd.read_csv(s / "warm" / "train.csv", dtype={"user_id": str, "item_id": str})
    titles = {r.item_id: re.sub(r"\s*\(\d{4}\)\s*$", "", str(r.title)).strip() for r in items.itertuples()}
    count = train["item_id"].value_counts()
    pairs = [
        (a, b)
        for a, ta in titles.items()
        for b, tb in titles.items()
        if a != b
        and len(ta) >= 5
        and tb != ta
        and (tb.startswith(ta + " ") or tb.startswith(ta + ":"))
        and count.get(a, 0) >= 20
    ]
    later = {b for _, b in pairs}
    train[~train["item_id"].isin(later)].to_csv(tmp / "seq_train.csv", index=False)
    ds = load_dataset(s / "items.csv", tmp / "seq_train.csv")
    model = create_model("tokrec", {}).fit(ds, item_vectors(ds))
    print(f"\nsequels: {len(pairs)} title pairs, {len(later)} later titles made new")
    print("| setting | later title in the top 10 | median rank |")
    print("| --- | ---: | ---: |")
    for name, overrides in SETTINGS:
        m = model.with_scoring(**overrides)
        ranks = np.array(
            [[i for i, _ in m.recommend(None, k=m.n_items, history=[a])].index(b) + 1 for a, b in pairs]
        )
        print(f"| {name} | {np.mean(ranks <= 10):.2f} | {np.median(ranks):.0f} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--shared", default=None)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    args = p.parse_args()
    import tempfile

    s = shared_dir(args.shared) / "data" / "ml-100k-splits"
    with tempfile.TemporaryDirectory() as d:
        mixed_lists(s, args.seeds, Path(d))
        star_wars(s, Path(d))
        sequels(s, Path(d))


if __name__ == "__main__":
    main()
