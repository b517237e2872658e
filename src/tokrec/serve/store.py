"""Online state shared by the server's request handlers: events per user and the log of added items.

Two backends with one interface:

- :class:`MemoryStore`: plain dicts and lists in this process (one server process).
- :class:`RedisStore`: the same in Redis, so that several server processes (``--redis-url``) see each
  other's events and items at once. Keys (``P`` = the prefix, default ``tokrec``):
  ``P:ev:<user_id>`` list of JSON events (oldest first, trimmed to the newest ``max_user_events``),
  ``P:nev`` event counter, ``P:items`` list of JSON item records (append-only; a process applies the
  records past the count it has seen), ``P:replayed`` marker set by the process that replayed the
  SQLite log into Redis (so a second process does not replay it again).

Item records carry their vector (float32 bytes, base64 in Redis), so no process re-encodes text.
"""

from __future__ import annotations

import base64
import json
import threading
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np


@dataclass(frozen=True)
class Event:
    """One behaviour event."""

    user_id: str
    item_id: str
    event: str
    timestamp: int
    value: float = 1.0

    def to_json(self) -> dict[str, Any]:
        return {"u": self.user_id, "i": self.item_id, "e": self.event, "t": self.timestamp, "v": self.value}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Event:
        return cls(str(d["u"]), str(d["i"]), str(d["e"]), int(d["t"]), float(d["v"]))


@dataclass(frozen=True)
class ItemRecord:
    """A new or changed item: its attributes and its vector ``(d,)`` float32."""

    item_id: str
    attributes: dict[str, Any]
    vector: np.ndarray

    def to_json(self) -> dict[str, Any]:
        vec = base64.b64encode(np.ascontiguousarray(self.vector, dtype="<f4").tobytes()).decode()
        return {"id": self.item_id, "a": self.attributes, "v": vec}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ItemRecord:
        vec = np.frombuffer(base64.b64decode(d["v"]), dtype="<f4").astype(np.float32)
        return cls(str(d["id"]), dict(d["a"]), vec)


class Store(Protocol):
    """What the server needs from a state backend."""

    kind: str

    def append_events(self, events: list[Event]) -> None: ...

    def user_events(self, user_id: str, limit: int) -> list[Event]: ...

    def n_events(self) -> int: ...

    def events_since(self, offset: int) -> list[Event]: ...

    def add_items(self, records: list[ItemRecord]) -> None: ...

    def items_count(self) -> int: ...

    def items_since(self, offset: int) -> list[ItemRecord]: ...

    def claim_replay(self) -> bool: ...

    def ping(self) -> bool: ...

    def close(self) -> None: ...


class MemoryStore:
    """State in this process only."""

    kind = "memory"

    def __init__(self, *, max_user_events: int = 10_000, stream: bool = False) -> None:
        self.max_user_events = max_user_events
        self.stream = stream
        self._events: dict[str, list[Event]] = defaultdict(list)
        self._stream: list[Event] = []
        self._n_events = 0
        self._items: list[ItemRecord] = []
        self._lock = threading.Lock()

    def append_events(self, events: list[Event]) -> None:
        with self._lock:
            for e in events:
                lst = self._events[e.user_id]
                lst.append(e)
                if len(lst) > self.max_user_events:
                    del lst[: len(lst) - self.max_user_events]
            if self.stream:
                self._stream.extend(events)
            self._n_events += len(events)

    def user_events(self, user_id: str, limit: int) -> list[Event]:
        with self._lock:
            lst = self._events.get(user_id)
            return list(lst[-limit:]) if lst else []

    def n_events(self) -> int:
        return self._n_events

    def events_since(self, offset: int) -> list[Event]:
        """Every event in arrival order from ``offset`` on (kept only with ``stream=True``: a policy
        learns from them)."""
        with self._lock:
            return list(self._stream[offset:])

    def add_items(self, records: list[ItemRecord]) -> None:
        with self._lock:
            self._items.extend(records)

    def items_count(self) -> int:
        return len(self._items)

    def items_since(self, offset: int) -> list[ItemRecord]:
        with self._lock:
            return list(self._items[offset:])

    def claim_replay(self) -> bool:
        return True

    def ping(self) -> bool:
        return True

    def close(self) -> None:
        pass


class RedisStore:
    """State in Redis, shared by every server process that uses the same URL and prefix."""

    kind = "redis"

    def __init__(
        self, url: str, *, prefix: str = "tokrec", max_user_events: int = 10_000, stream: bool = False
    ) -> None:
        import redis

        self.prefix = prefix
        self.stream = stream
        self.max_user_events = max_user_events
        self._r = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)

    def _k(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    def append_events(self, events: list[Event]) -> None:
        if not events:
            return
        by_user: dict[str, list[str]] = defaultdict(list)
        for e in events:
            by_user[e.user_id].append(json.dumps(e.to_json()))
        pipe = self._r.pipeline(transaction=True)
        for user, payloads in by_user.items():
            key = self._k("ev", user)
            pipe.rpush(key, *payloads)
            pipe.ltrim(key, -self.max_user_events, -1)
        if self.stream:
            pipe.rpush(self._k("stream"), *[json.dumps(e.to_json()) for e in events])
        pipe.incrby(self._k("nev"), len(events))
        pipe.execute()

    def user_events(self, user_id: str, limit: int) -> list[Event]:
        raw = self._r.lrange(self._k("ev", user_id), -limit, -1)
        return [Event.from_json(json.loads(x)) for x in raw]  # type: ignore[union-attr]

    def n_events(self) -> int:
        return int(self._r.get(self._k("nev")) or 0)  # type: ignore[arg-type]

    def events_since(self, offset: int) -> list[Event]:
        raw = self._r.lrange(self._k("stream"), offset, -1)
        return [Event.from_json(json.loads(x)) for x in raw]  # type: ignore[union-attr]

    def add_items(self, records: list[ItemRecord]) -> None:
        if records:
            self._r.rpush(self._k("items"), *[json.dumps(r.to_json()) for r in records])

    def items_count(self) -> int:
        return int(self._r.llen(self._k("items")))  # type: ignore[arg-type]

    def items_since(self, offset: int) -> list[ItemRecord]:
        raw = self._r.lrange(self._k("items"), offset, -1)
        return [ItemRecord.from_json(json.loads(x)) for x in raw]  # type: ignore[union-attr]

    def claim_replay(self) -> bool:
        return bool(self._r.set(self._k("replayed"), "1", nx=True))

    def ping(self) -> bool:
        try:
            return bool(self._r.ping())
        except Exception:
            return False

    def close(self) -> None:
        self._r.close()


def make_store(redis_url: str | None, *, prefix: str = "tokrec", stream: bool = False) -> Store:
    """A Redis store for ``redis_url``, else an in-memory one; ``stream``: also keep every event in arrival
    order (:meth:`events_since`), for a policy that learns from them."""
    if redis_url:
        return RedisStore(redis_url, prefix=prefix, stream=stream)
    return MemoryStore(stream=stream)
