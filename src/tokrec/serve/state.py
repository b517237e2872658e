"""Durable log of what the API changed: events and items added online, replayed at start-up.

One SQLite file (``MODEL_DIR/state.sqlite`` by default, or ``--state PATH``) in WAL mode; each API
write is one transaction, committed before the request is answered, so an acknowledged write survives
a crash or restart. Several server processes may share the file (SQLite serialises the writers).

The file records the encoder fingerprint it was made for; a log written for another encoder is
refused, since its stored item vectors would not be comparable with the bundle's.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from tokrec.errors import ConfigError
from tokrec.serve.store import Event, ItemRecord

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id TEXT NOT NULL, item_id TEXT NOT NULL, event TEXT NOT NULL,
    timestamp INTEGER NOT NULL, value REAL NOT NULL);
CREATE TABLE IF NOT EXISTS items (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    item_id TEXT NOT NULL, attributes TEXT NOT NULL, vector BLOB NOT NULL);
"""


class StateLog:
    """The SQLite log.

    Args:
        path: the database file (created with its parent directory if missing).
        fingerprint: the bundle's encoder fingerprint.
        dim: the vector dimension.

    Raises:
        ConfigError: the file is not a tokrec state log or was made for another encoder.
    """

    def __init__(self, path: str | Path, *, fingerprint: str, dim: int) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.dim = dim
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(
                str(self.path), check_same_thread=False, timeout=30, isolation_level=None
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as e:
            raise ConfigError(f"{self.path}: not a usable tokrec state database: {e}") from e
        self._check_meta(fingerprint, dim)

    def _check_meta(self, fingerprint: str, dim: int) -> None:
        with self._tx() as cur:
            rows = dict(cur.execute("SELECT key, value FROM meta").fetchall())
            if not rows:
                cur.executemany(
                    "INSERT INTO meta(key, value) VALUES (?, ?)",
                    [("format", "tokrec-state/1"), ("fingerprint", fingerprint), ("dim", str(dim))],
                )
                return
        if rows.get("format") != "tokrec-state/1":
            raise ConfigError(f"{self.path}: not a tokrec state log (format {rows.get('format')!r})")
        if rows.get("fingerprint") != fingerprint or rows.get("dim") != str(dim):
            raise ConfigError(
                f"{self.path}: this state log was written for encoder {rows.get('fingerprint')!r} "
                f"(dim {rows.get('dim')}), the model uses {fingerprint!r} (dim {dim}); use another --state path"
            )

    def _tx(self):
        return _Transaction(self._db, self._lock)

    def append_events(self, events: list[Event]) -> None:
        """Appends events in one transaction."""
        with self._tx() as cur:
            cur.executemany(
                "INSERT INTO events(user_id, item_id, event, timestamp, value) VALUES (?, ?, ?, ?, ?)",
                [(e.user_id, e.item_id, e.event, e.timestamp, e.value) for e in events],
            )

    def add_items(self, records: list[ItemRecord]) -> None:
        """Appends item records in one transaction."""
        with self._tx() as cur:
            cur.executemany(
                "INSERT INTO items(item_id, attributes, vector) VALUES (?, ?, ?)",
                [
                    (
                        r.item_id,
                        json.dumps(r.attributes),
                        np.ascontiguousarray(r.vector, dtype="<f4").tobytes(),
                    )
                    for r in records
                ],
            )

    def iter_items(self) -> Iterator[ItemRecord]:
        """Every logged item record, oldest first."""
        with self._lock:
            rows = self._db.execute("SELECT item_id, attributes, vector FROM items ORDER BY seq").fetchall()
        for item_id, attrs, blob in rows:
            vec = np.frombuffer(blob, dtype="<f4").astype(np.float32)
            if vec.shape != (self.dim,):
                raise ConfigError(
                    f"{self.path}: item {item_id!r} has a vector of dimension {vec.shape}, expected {self.dim}"
                )
            yield ItemRecord(item_id, json.loads(attrs), vec)

    def iter_events(self, batch: int = 10_000) -> Iterator[list[Event]]:
        """Every logged event, oldest first, in batches."""
        last = 0
        while True:
            with self._lock:
                rows = self._db.execute(
                    "SELECT seq, user_id, item_id, event, timestamp, value FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
                    (last, batch),
                ).fetchall()
            if not rows:
                return
            last = rows[-1][0]
            yield [Event(u, i, e, int(t), float(v)) for _, u, i, e, t, v in rows]

    def counts(self) -> tuple[int, int]:
        """``(events, item records)`` in the log."""
        with self._lock:
            ne = self._db.execute("SELECT COUNT(*) FROM events").fetchone()[0]
            ni = self._db.execute("SELECT COUNT(*) FROM items").fetchone()[0]
        return int(ne), int(ni)

    def close(self) -> None:
        with self._lock:
            self._db.close()


class _Transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on error) under the log's lock."""

    def __init__(self, db: sqlite3.Connection, lock: threading.Lock) -> None:
        self._db = db
        self._lock = lock

    def __enter__(self) -> sqlite3.Cursor:
        self._lock.acquire()
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except BaseException:
            self._lock.release()
            raise
        return self._db.cursor()

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            self._db.execute("ROLLBACK" if exc_type else "COMMIT")
        finally:
            self._lock.release()
