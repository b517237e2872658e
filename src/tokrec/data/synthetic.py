"""Synthetic catalogs and behaviour whose structure is written in the item text.

Items belong to latent topics; each topic has its own words (nouns, adjectives, brands, uses),
and an item's title and description are drawn from its topic's words (plus a little noise from a
second topic). Users hold tastes over topics; each event either stays on the topic of the user's
previous item (sessions), follows the user's taste (which drifts over time for some users) or
follows global popularity. So the items a user picks share words with the items they picked
before, and language-model features of the item text genuinely predict behaviour.

Everything is vectorised numpy (a loop over event *positions*, never over users or items) and
deterministic given the seed.
"""

from __future__ import annotations

import json
import os
from importlib import resources
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from tokrec.data.dataset import Dataset, LoadReport
from tokrec.errors import ConfigError
from tokrec.fileio import atomic_write

Domain = Literal["ecommerce", "movies", "news", "music"]

#: domain -> topic (category / genre) -> (nouns, adjectives, uses), in the order the topics are numbered;
#: the word lists are data, kept in ``synthetic_topics.json`` beside this module
TOPICS: dict[str, dict[str, tuple[str, str, str]]] = {
    domain: {topic: (words[0], words[1], words[2]) for topic, words in table.items()}
    for domain, table in json.loads(
        resources.files("tokrec.data").joinpath("synthetic_topics.json").read_text(encoding="utf-8")
    ).items()
}
ECOMMERCE_TOPICS = TOPICS["ecommerce"]
MOVIE_TOPICS = TOPICS["movies"]
NEWS_TOPICS = TOPICS["news"]
MUSIC_TOPICS = TOPICS["music"]

_SYLLABLES = (
    "ka",
    "lo",
    "ve",
    "ri",
    "mo",
    "ta",
    "ze",
    "nu",
    "pi",
    "sa",
    "dro",
    "lin",
    "gar",
    "vex",
    "tor",
    "mi",
)


def _topics(domain: str) -> dict[str, tuple[str, str, str]]:
    if domain in TOPICS:
        return TOPICS[domain]
    raise ConfigError(f"unknown synthetic domain {domain!r}; use 'ecommerce', 'movies', 'news' or 'music'")


def _word_table(words: list[list[str]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flattens per-topic word lists: (flat words (object), offsets (T,), lengths (T,))."""
    lengths = np.asarray([len(w) for w in words], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    flat = np.asarray([x for w in words for x in w], dtype=object)
    return flat, offsets, lengths


def _pick(
    rng: np.random.Generator, table: tuple[np.ndarray, np.ndarray, np.ndarray], topic: np.ndarray
) -> np.ndarray:
    """One random word of each row's topic. Shape (n,) object array."""
    flat, offsets, lengths = table
    return flat[offsets[topic] + (rng.random(len(topic)) * lengths[topic]).astype(np.int64)]


def _brands(rng: np.random.Generator, n_topics: int, per_topic: int = 5) -> list[list[str]]:
    syl = np.asarray(_SYLLABLES, dtype=object)
    names = syl[rng.integers(0, len(syl), (n_topics * per_topic * 2, 3))].sum(axis=1)
    unique = list(dict.fromkeys(str(n).capitalize() for n in names))[: n_topics * per_topic]
    return [unique[t * per_topic : (t + 1) * per_topic] for t in range(n_topics)]


def _title(words: np.ndarray) -> np.ndarray:
    """Title-cases each distinct word once (the catalog has few distinct words). Object array."""
    codes, uniques = pd.factorize(words)
    return np.asarray([str(u).title() for u in uniques], dtype=object)[codes]


def _article(words: np.ndarray, *, lower: bool = False) -> np.ndarray:
    """ "A " or "An " (``lower``: "a ", "an ") for each word. Object array."""
    codes, uniques = pd.factorize(words)
    an, a = ("an ", "a ") if lower else ("An ", "A ")
    return np.asarray([an if str(u)[:1] in "aeiou" else a for u in uniques], dtype=object)[codes]


def _items(
    rng: np.random.Generator, n_items: int, domain: str
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Item table, each item's primary topic (n_items,) and popularity weights (n_items,)."""
    topics = _topics(domain)
    names = list(topics)
    n_t = len(names)
    nouns = _word_table([[w.replace("-", " ") for w in topics[c][0].split()] for c in names])
    adjs = _word_table([[w.replace("-", " ") for w in topics[c][1].split()] for c in names])
    uses = np.asarray([topics[c][2] for c in names], dtype=object)
    size = rng.dirichlet(np.full(n_t, 3.0))
    topic = rng.choice(n_t, size=n_items, p=size)
    other = (topic + rng.integers(1, n_t, n_items)) % n_t  # a different topic, for noise words
    second = np.where(rng.random(n_items) < 0.25, other, topic)
    popularity = rng.lognormal(0.0, 1.3, n_items)
    noun, adj = _pick(rng, nouns, topic), _pick(rng, adjs, topic)
    adj2, noun2 = _pick(rng, adjs, topic), _pick(rng, nouns, second)
    cat = np.asarray(names, dtype=object)
    ids = np.asarray([f"i{i}" for i in range(1, n_items + 1)], dtype=object)
    if domain == "ecommerce":
        brand = _pick(rng, _word_table(_brands(rng, n_t)), topic)
        items = pd.DataFrame(
            {
                "item_id": ids,
                "title": brand + " " + _title(adj) + " " + _title(noun),
                "category": cat[topic],
                "description": _article(adj2) + adj2 + " " + noun + " for " + uses[topic]
                + ", goes well with " + _article(noun2, lower=True) + noun2 + ".",
                "price": np.round(rng.lognormal(3.0 + 0.1 * (topic % 7), 0.6), 2),
            }
        )  # fmt: skip
    elif domain == "news":
        sub = _pick(rng, nouns, topic)
        items = pd.DataFrame(
            {
                "item_id": ids,
                "title": _title(adj) + " " + _title(noun) + " Shakes Up " + _title(uses[topic]),
                "category": cat[topic],
                "subcategory": sub,
                "abstract": _article(adj2) + adj2 + " " + noun + " story for " + uses[topic]
                + ", and what it means for " + _article(noun2, lower=True) + noun2 + ".",
            }
        )  # fmt: skip
    elif domain == "music":
        artist = _pick(rng, _word_table(_brands(rng, n_t, per_topic=8)), topic)
        items = pd.DataFrame(
            {
                "item_id": ids,
                "title": _title(adj) + " " + _title(noun),
                "artist": artist,
                "genre": cat[topic],
                "tags": adj2 + ", " + noun2 + ", " + uses[topic],
            }
        )  # fmt: skip
    else:
        year = rng.integers(1950, 2025, n_items)
        title = np.where(
            rng.random(n_items) < 0.5,
            "The " + _title(adj) + " " + _title(noun),
            _title(noun) + " of the " + _title(noun2),
        )
        items = pd.DataFrame(
            {
                "item_id": ids,
                "title": title + " (" + year.astype(str).astype(object) + ")",
                "year": year,
                "genres": np.where(second != topic, cat[topic] + "|" + cat[second], cat[topic]),
                "description": _article(adj2) + adj2 + " story about " + uses[topic] + ", with "
                + _article(noun2, lower=True) + noun2 + ".",
            }
        )  # fmt: skip
    return items, topic, popularity  # fmt: skip


def _sample_in_topic(
    rng: np.random.Generator, topic: np.ndarray, by_topic: np.ndarray, cum: np.ndarray, bounds: np.ndarray
) -> np.ndarray:
    """Items drawn by popularity within each row's topic (topics without items fall back to any)."""
    lo, hi = cum[bounds[topic]], cum[bounds[topic + 1]]
    empty = hi <= lo
    lo, hi = np.where(empty, 0.0, lo), np.where(empty, cum[-1], hi)
    pos = np.searchsorted(cum, lo + rng.random(len(topic)) * (hi - lo), side="right") - 1
    return by_topic[np.clip(pos, 0, len(by_topic) - 1)]


def _behaviour(
    rng: np.random.Generator,
    n_users: int,
    events_per_user: tuple[int, int],
    item_topic: np.ndarray,
    popularity: np.ndarray,
    n_topics: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(user rows, item rows, user taste (n_users, T)) for every event, in per-user time order."""
    lo, hi = events_per_user
    n_ev = rng.integers(lo, hi + 1, n_users)
    steps = int(n_ev.max()) if n_users else 0
    taste = rng.dirichlet(np.full(n_topics, 0.25), n_users)
    later = rng.dirichlet(np.full(n_topics, 0.25), n_users)
    drifts = rng.random(n_users) < 0.3  # these users' tastes move to `later` over their history
    by_topic = np.argsort(item_topic, kind="stable")
    cum = np.concatenate([[0.0], np.cumsum(popularity[by_topic])])
    bounds = np.searchsorted(item_topic[by_topic], np.arange(n_topics + 1))
    pop_cum = np.cumsum(popularity) / popularity.sum()
    hist = np.full((n_users, max(steps, 1)), -1, dtype=np.int64)
    for s in range(steps):
        w = (s / max(hi - 1, 1)) * drifts[:, None]
        mix = (1 - w) * taste + w * later
        from_taste = (rng.random((n_users, 1)) > mix.cumsum(axis=1)).sum(axis=1).clip(0, n_topics - 1)
        stay = (rng.random(n_users) < 0.55) & (s > 0)
        prev = item_topic[hist[:, s - 1].clip(0)] if s > 0 else from_taste
        topic = np.where(stay, prev, from_taste)
        cand = _sample_in_topic(rng, topic, by_topic, cum, bounds)
        popular = rng.random(n_users) < 0.1
        cand = np.where(
            popular, np.searchsorted(pop_cum, rng.random(n_users)).clip(0, len(popularity) - 1), cand
        )
        for _ in range(4):  # re-draw items the user already has
            seen = (hist[:, :s] == cand[:, None]).any(axis=1)
            if not seen.any():
                break
            cand = np.where(seen, _sample_in_topic(rng, topic, by_topic, cum, bounds), cand)
        hist[:, s] = cand
    active = np.arange(max(steps, 1))[None, :] < n_ev[:, None]
    users = np.broadcast_to(np.arange(n_users)[:, None], hist.shape)[active]
    return users, hist[active], taste


def _events(
    rng: np.random.Generator,
    users: np.ndarray,
    items: np.ndarray,
    taste: np.ndarray,
    item_topic: np.ndarray,
    domain: str,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(timestamps int64, event names, values) for events sorted by user then time."""
    n = len(users)
    affinity = taste[users, item_topic[items]] / taste.max(axis=1).clip(1e-9)[users] if n else np.zeros(0)
    stars = np.clip(np.round(2.2 + 2.6 * affinity + rng.normal(0.0, 0.7, n)), 1, 5)
    if domain == "movies":
        event = np.full(n, "rating", dtype=object)
        value = stars
    elif domain == "news":
        event = np.full(n, "click", dtype=object)
        value = np.ones(n)
    elif domain == "music":  # play counts grow with the user's affinity for the genre
        event = np.full(n, "play", dtype=object)
        value = 1.0 + rng.poisson(1.0 + 30.0 * affinity**2)
    else:
        names = np.asarray(["view", "click", "purchase", "rating"], dtype=object)
        event = names[
            np.searchsorted(np.cumsum([0.6, 0.25, 0.1, 0.05]), rng.random(n), side="right").clip(0, 3)
        ]
        value = np.where(event == "rating", stars, 1.0)
    in_session = rng.random(n) < 0.8
    gaps = (
        np.where(in_session, rng.exponential(300.0, n), rng.exponential(2 * 86400.0, n)).astype(np.int64) + 1
    )
    first = np.r_[True, users[1:] != users[:-1]] if n else np.zeros(0, dtype=bool)
    gaps[first] = 0
    cs = np.cumsum(gaps)
    group_start = (
        np.maximum.accumulate(np.where(first, np.arange(n), 0)) if n else np.zeros(0, dtype=np.int64)
    )
    start = 1_704_067_200 + rng.integers(0, 180 * 86400, int(users.max()) + 1 if n else 0)
    ts = start[users] + cs - cs[group_start] if n else np.zeros(0, dtype=np.int64)
    return ts.astype(np.int64), event, value.astype(np.float64)


def make_synthetic(
    n_items: int = 1000,
    n_users: int = 500,
    events_per_user: tuple[int, int] = (5, 40),
    seed: int = 0,
    domain: Domain = "ecommerce",
    negatives: int = 4,
) -> Dataset:
    """A synthetic catalog with text, and behaviour that follows the text.

    Args:
        n_items: catalog size (200,000 items take a few seconds).
        n_users: number of users (0 gives a catalog with no interactions).
        events_per_user: inclusive range of events per user, drawn uniformly.
        seed: everything is a deterministic function of the arguments.
        domain: ``"ecommerce"`` (items: ``title, category, description, price``; events
            ``view``/``click``/``purchase``/``rating``) or ``"movies"`` (items: ``title, year,
            genres, description``; every event a 1-5 ``rating``), ``"news"`` (items: ``title, category,
            subcategory, abstract``; every event a ``click``; the dataset also has MIND-like
            ``impressions``: each click shown with ``negatives`` other items by popularity, not clicked,
            in random order) or ``"music"`` (items: ``title, artist, genre, tags``; events ``play``
            whose ``value`` is a play count that grows with the user's taste for the genre).
        negatives: news only: non-clicked items shown with each click.

    Returns:
        A :class:`Dataset` named ``synthetic-<domain>``; item ids ``i1..iN``, user ids ``u1..uM``.
        Each user's timestamps increase with their events. The few repeat (user, item) events the
        sampler could not avoid are dropped and counted in ``dataset.report``.
    """
    lo, hi = events_per_user
    if n_items < 1 or n_users < 0 or lo < 1 or hi < lo:
        raise ConfigError(
            f"make_synthetic needs n_items >= 1, n_users >= 0 and 1 <= min <= max events_per_user; "
            f"got n_items={n_items}, n_users={n_users}, events_per_user={events_per_user}"
        )
    rng = np.random.default_rng(seed)
    items, item_topic, popularity = _items(rng, n_items, domain)
    n_topics = len(_topics(domain))
    users, item_rows, taste = _behaviour(rng, n_users, (lo, hi), item_topic, popularity, n_topics)
    ts, event, value = _events(rng, users, item_rows, taste, item_topic, domain)
    inter = pd.DataFrame(
        {
            "user_id": pd.Series(users + 1).map("u{}".format).astype(object),
            "item_id": items["item_id"].to_numpy()[item_rows],
            "timestamp": ts,
            "event": event,
            "value": value,
        }
    )
    report = LoadReport()
    dup = inter.duplicated(["user_id", "item_id"]).to_numpy()
    report.count("repeat (user, item) events", int(dup.sum()))
    inter = inter[~dup].reset_index(drop=True)
    report.rows_read = {"items": n_items, "interactions": len(inter)}
    report.notes.append(f"synthetic {domain}, seed {seed}")
    impressions = _impressions(rng, inter, items, popularity, negatives) if domain == "news" else None
    return Dataset(inter, items, None, name=f"synthetic-{domain}", report=report, impressions=impressions)


def _impressions(
    rng: np.random.Generator, inter: pd.DataFrame, items: pd.DataFrame, popularity: np.ndarray, negatives: int
) -> pd.DataFrame:
    """One impression per click: the clicked item and ``negatives`` items drawn by popularity, shuffled."""
    if negatives < 0:
        raise ConfigError(f"negatives must be >= 0, got {negatives}")
    n, m = len(inter), negatives + 1
    ids = items["item_id"].to_numpy()
    clicked = pd.Index(ids).get_indexer(inter["item_id"])
    pop_cum = np.cumsum(popularity) / popularity.sum()
    neg = np.searchsorted(pop_cum, rng.random((n, negatives))).clip(0, len(ids) - 1)
    neg = np.where(neg == clicked[:, None], (neg + 1) % len(ids), neg)
    shown = np.concatenate([clicked[:, None], neg], axis=1)
    label = np.zeros((n, m), dtype=np.int8)
    label[:, 0] = 1
    perm = np.argsort(rng.random((n, m)), axis=1)
    shown, label = np.take_along_axis(shown, perm, 1), np.take_along_axis(label, perm, 1)
    frame = pd.DataFrame(
        {
            "impression_id": np.repeat(np.arange(1, n + 1), m).astype(str),
            "user_id": np.repeat(inter["user_id"].to_numpy(), m),
            "timestamp": np.repeat(inter["timestamp"].to_numpy(), m),
            "item_id": ids[shown.ravel()],
            "label": label.ravel(),
            "position": np.tile(np.arange(m), n),
        }
    )
    return frame[~frame.duplicated(["impression_id", "item_id"])].reset_index(drop=True)


def write_synthetic(
    directory: str | os.PathLike, dataset: Dataset | None = None, **kwargs
) -> dict[str, Path]:
    """Writes ``items.csv`` and ``interactions.csv`` (atomically) in the benchmark splits' CSV form.

    ``interactions.csv`` has ``user_id,item_id,rating,timestamp,event``: the benchmark's columns
    (``rating`` is the event's value) plus the event type; :func:`tokrec.data.load_dataset` reads
    the pair back into an identical dataset.

    Args:
        directory: created if missing.
        dataset: what to write; by default ``make_synthetic(**kwargs)``.
        **kwargs: passed to :func:`make_synthetic` when ``dataset`` is None.

    Returns:
        ``{"items": path, "interactions": path}``.
    """
    if dataset is None:
        dataset = make_synthetic(**kwargs)
    elif kwargs:
        raise ConfigError(f"write_synthetic got both a dataset and make_synthetic options: {sorted(kwargs)}")
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    inter = dataset.interactions
    frame = pd.DataFrame(
        {
            "user_id": inter["user_id"],
            "item_id": inter["item_id"],
            "rating": inter["value"].map("{:g}".format),
            "timestamp": inter["timestamp"],
            "event": inter["event"],
        }
    )
    paths = {"items": out / "items.csv", "interactions": out / "interactions.csv"}
    atomic_write(paths["items"], lambda tmp: dataset.items.to_csv(tmp, index=False))
    atomic_write(paths["interactions"], lambda tmp: frame.to_csv(tmp, index=False))
    return paths


def make_synthetic_multimodal(
    n_items: int = 2000,
    n_users: int = 800,
    events_per_user: tuple[int, int] = (8, 30),
    seed: int = 0,
    *,
    n_styles: int = 8,
    dim: int = 32,
    noise: float = 0.5,
) -> tuple[Dataset, pd.DataFrame]:
    """A catalog whose behaviour follows two tastes: one written in the text, one only in "image" vectors.

    The items are :func:`make_synthetic`'s e-commerce catalog (topic words in the text). Each item also
    has a hidden *style* (one of ``n_styles``, uniform) that no text mentions; its image vector is the
    style's random centroid plus Gaussian noise (``noise`` per dimension over the centroid's unit norm
    spread, ``dim`` values). Each user has a taste over topics and one over styles (Dirichlet 0.1 each: a few of each);
    each event draws a topic and a style from them and picks, by popularity, an item with both (or of
    the topic when none has both). So text alone can find the right topic, images alone the right style,
    and only both together the items a user picks.

    Returns:
        ``(dataset, image_vectors)``: the dataset (events ``click``, value 1) and a frame ``item_id``,
        ``vector`` (float32 lists) and ``style`` (the hidden style, for checks; not an input).
    """
    lo, hi = events_per_user
    if n_items < 1 or n_users < 1 or lo < 1 or hi < lo or n_styles < 1 or dim < 1:
        raise ConfigError(
            "make_synthetic_multimodal needs positive sizes and 1 <= min <= max events_per_user"
        )
    rng = np.random.default_rng(seed)
    items, topic, popularity = _items(rng, n_items, "ecommerce")
    n_topics = len(_topics("ecommerce"))
    style = rng.integers(0, n_styles, n_items)
    centroids = rng.normal(size=(n_styles, dim))
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
    image = centroids[style] + noise * rng.normal(size=(n_items, dim)) / np.sqrt(dim)
    cell = topic * n_styles + style
    by_cell = np.argsort(cell, kind="stable")
    cum = np.concatenate([[0.0], np.cumsum(popularity[by_cell])])
    bounds = np.searchsorted(cell[by_cell], np.arange(n_topics * n_styles + 1))
    by_topic = np.argsort(topic, kind="stable")
    cum_t = np.concatenate([[0.0], np.cumsum(popularity[by_topic])])
    bounds_t = np.searchsorted(topic[by_topic], np.arange(n_topics + 1))
    t_taste = rng.dirichlet(np.full(n_topics, 0.1), n_users)
    s_taste = rng.dirichlet(np.full(n_styles, 0.1), n_users)
    n_ev = rng.integers(lo, hi + 1, n_users)
    users, picks = [], []
    for s in range(hi):
        active = np.flatnonzero(n_ev > s)
        t = (rng.random((len(active), 1)) > t_taste[active].cumsum(axis=1)).sum(axis=1).clip(0, n_topics - 1)
        st = (rng.random((len(active), 1)) > s_taste[active].cumsum(axis=1)).sum(axis=1).clip(0, n_styles - 1)
        c = t * n_styles + st
        item = _sample_in_topic(rng, c, by_cell, cum, bounds)
        empty = bounds[c + 1] == bounds[c]
        if empty.any():
            item[empty] = _sample_in_topic(rng, t[empty], by_topic, cum_t, bounds_t)
        users.append(active)
        picks.append(item)
    u = np.concatenate(users)
    i = np.concatenate(picks)
    step = np.concatenate([np.full(len(a), s) for s, a in enumerate(users)])
    start = 1_704_067_200 + rng.integers(0, 90 * 86400, n_users)
    inter = pd.DataFrame(
        {
            "user_id": pd.Series(u + 1).map("u{}".format).astype(object),
            "item_id": items["item_id"].to_numpy()[i],
            "timestamp": start[u] + step * 3600,
            "event": "click",
            "value": 1.0,
        }
    ).sort_values(["user_id", "timestamp"], kind="stable")
    report = LoadReport()
    dup = inter.duplicated(["user_id", "item_id"]).to_numpy()
    report.count("repeat (user, item) events", int(dup.sum()))
    inter = inter[~dup].reset_index(drop=True)
    report.rows_read = {"items": n_items, "interactions": len(inter)}
    report.notes.append(
        f"synthetic multimodal ({n_styles} hidden styles in {dim}-d image vectors), seed {seed}"
    )
    vectors = pd.DataFrame(
        {"item_id": items["item_id"], "vector": list(image.astype(np.float32)), "style": style}
    )
    return Dataset(inter, items, None, name="synthetic-multimodal", report=report), vectors
