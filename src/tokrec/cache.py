"""Content-addressed embedding cache in SQLite, and an encoder wrapper that uses it.

Each row is keyed by ``sha256(fingerprint + "\\0" + text)`` and stores the encoder fingerprint, the
vector size and the float32 vector. The fingerprint is stored and checked on read, so a vector made
by another model, pooling, dtype, max length or prompt is never served. The database runs in WAL mode
with ``synchronous=NORMAL``; every ``put_many`` is one transaction, so a process killed mid-run
leaves only whole, committed rows behind and a re-run encodes just what is missing.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from tokrec.errors import ConfigError, DataError

DB_NAME = "embeddings.sqlite"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS embeddings (
    key BLOB PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    dim INTEGER NOT NULL,
    vector BLOB NOT NULL
) WITHOUT ROWID
"""
_CHUNK = 500  # keys per SELECT (below SQLite's host-parameter limit)


def default_cache_dir() -> Path:
    """``$TOKREC_CACHE_DIR`` if set, else ``~/.cache/tokrec``."""
    env = os.environ.get("TOKREC_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "tokrec"


def cache_key(fingerprint: str, text: str) -> bytes:
    """The 32-byte row key of one text under one encoder fingerprint."""
    return hashlib.sha256(fingerprint.encode("utf-8") + b"\0" + text.encode("utf-8")).digest()


class EmbeddingCache:
    """A SQLite store of vectors keyed by (encoder fingerprint, text).

    Args:
        path: a database file, or a folder (the file is ``<folder>/embeddings.sqlite``; a path
            without a suffix counts as a folder). ``None`` uses :func:`default_cache_dir`.

    Safe to share between threads of one process (one connection behind a lock) and between
    processes (SQLite locking, WAL, 60 s busy timeout).
    """

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        p = Path(path).expanduser() if path is not None else default_cache_dir()
        if p.is_dir() or (not p.exists() and p.suffix == ""):
            p = p / DB_NAME
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(str(p), timeout=60.0, check_same_thread=False, isolation_level=None)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute(_SCHEMA)
        except (OSError, sqlite3.Error) as e:
            raise ConfigError(f"cannot open embedding cache {p}: {e}") from e
        self.path = p
        self._lock = threading.Lock()

    def close(self) -> None:
        """Closes the connection."""
        with self._lock:
            self._conn.close()

    def __enter__(self) -> EmbeddingCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __len__(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM embeddings").fetchone()[0])

    def count(self, fingerprint: str) -> int:
        """Rows stored under one fingerprint."""
        with self._lock:
            return int(
                self._conn.execute(
                    "SELECT COUNT(*) FROM embeddings WHERE fingerprint = ?", (fingerprint,)
                ).fetchone()[0]
            )

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def get_many(
        self, fingerprint: str, texts: Sequence[str], *, dim: int | None = None
    ) -> list[np.ndarray | None]:
        """Looks texts up.

        Args:
            fingerprint: the encoder fingerprint.
            texts: ``n`` strings.
            dim: the expected vector size; a stored row of another size is an error.

        Returns:
            ``n`` entries: a float32 vector ``(dim,)`` for a hit, ``None`` for a miss.

        Raises:
            DataError: a stored row has the wrong size or is corrupt.
        """
        keys = [cache_key(fingerprint, t) for t in texts]
        found: dict[bytes, np.ndarray] = {}
        with self._lock:
            for i in range(0, len(keys), _CHUNK):
                part = list(dict.fromkeys(keys[i : i + _CHUNK]))
                marks = ",".join("?" * len(part))
                rows = self._conn.execute(
                    f"SELECT key, fingerprint, dim, vector FROM embeddings WHERE key IN ({marks})", part
                )
                for key, fp, d, blob in rows:
                    if fp != fingerprint:
                        continue  # a hash collision across fingerprints: never serve it
                    if (dim is not None and d != dim) or len(blob) != 4 * d:
                        raise DataError(
                            f"cached vector has dim {d} ({len(blob)} bytes) but the encoder gives dim {dim}; "
                            "the cache is inconsistent, delete it",
                            file=str(self.path),
                        )
                    found[key] = np.frombuffer(blob, dtype=np.float32)
        return [found.get(k) for k in keys]

    def put_many(self, fingerprint: str, texts: Sequence[str], vectors: np.ndarray) -> None:
        """Stores vectors in one transaction.

        Args:
            fingerprint: the encoder fingerprint.
            texts: ``n`` strings.
            vectors: array ``(n, dim)``; stored as float32.
        """
        vecs = np.ascontiguousarray(vectors, dtype=np.float32)
        if vecs.ndim != 2 or vecs.shape[0] != len(texts):
            raise ValueError(f"vectors must be ({len(texts)}, dim), got {vecs.shape}")
        d = int(vecs.shape[1])
        rows = [(cache_key(fingerprint, t), fingerprint, d, vecs[i].tobytes()) for i, t in enumerate(texts)]
        with self._transaction() as conn:
            conn.executemany(
                "INSERT OR REPLACE INTO embeddings (key, fingerprint, dim, vector) VALUES (?, ?, ?, ?)", rows
            )


class CachedEncoder:
    """Wraps an encoder with an :class:`EmbeddingCache` (implements the Encoder protocol).

    ``encode`` dedupes the texts, looks them up, encodes only the misses in chunks of ``chunk_size``
    and commits each chunk as soon as it is encoded, so an interrupted run resumes where it stopped.

    Args:
        encoder: any Encoder.
        cache: the cache (or a path for one).
        chunk_size: texts encoded and committed together.

    Attributes:
        stats: cumulative counters: ``hits`` and ``misses`` (unique texts served from the cache /
            encoded), ``texts`` (requested, duplicates included), ``encode_seconds`` (time in the
            inner encoder), ``lookup_seconds``, ``tokens`` (tokens encoded, where the inner encoder says).
    """

    def __init__(
        self,
        encoder: object,
        cache: EmbeddingCache | str | os.PathLike[str] | None,
        *,
        chunk_size: int = 1024,
    ) -> None:
        self.encoder = encoder
        self.cache = cache if isinstance(cache, EmbeddingCache) else EmbeddingCache(cache)
        self.chunk_size = int(chunk_size)
        self.stats: dict[str, float] = {
            "texts": 0,
            "hits": 0,
            "misses": 0,
            "tokens": 0,
            "encode_seconds": 0.0,
            "lookup_seconds": 0.0,
        }

    @property
    def dim(self) -> int:
        return int(self.encoder.dim)  # type: ignore[attr-defined]

    @property
    def fingerprint(self) -> str:
        return str(self.encoder.fingerprint)  # type: ignore[attr-defined]

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return list(self.encoder.count_tokens(texts))  # type: ignore[attr-defined]

    def __getattr__(self, name: str) -> object:
        # tokenize(), describe(), max_length ... of the wrapped encoder; never its encode_windows, which would
        # let a cache around this one reach the encoder past this cache
        if name in ("encoder", "encode_windows"):
            raise AttributeError(name)
        return getattr(self.encoder, name)

    def encode(self, texts: Sequence[str], *, progress: bool = False) -> np.ndarray:
        """Encodes texts, serving what it can from the cache.

        Args:
            texts: ``n`` strings.
            progress: show a tqdm bar (over the texts to encode) on stderr.

        Returns:
            float32 ``(n, dim)``, C-contiguous, in input order.
        """
        from tqdm.auto import tqdm

        texts = list(texts)
        fp, dim = self.fingerprint, self.dim
        index: dict[str, int] = {}
        inverse = np.fromiter(
            (index.setdefault(t, len(index)) for t in texts), dtype=np.int64, count=len(texts)
        )
        unique = list(index)
        t0 = time.perf_counter()
        got = self.cache.get_many(fp, unique, dim=dim)
        self.stats["lookup_seconds"] += time.perf_counter() - t0
        out = np.empty((len(unique), dim), dtype=np.float32)
        miss = [i for i, v in enumerate(got) if v is None]
        for i, v in enumerate(got):
            if v is not None:
                out[i] = v
        bar = tqdm(total=len(miss), disable=not progress or not miss, desc="encode", unit="text", leave=False)
        t1 = time.perf_counter()
        for rows, vecs in self._encoded_chunks([unique[i] for i in miss]):
            chunk_rows = [miss[i] for i in rows]
            chunk = [unique[i] for i in chunk_rows]
            self.stats["encode_seconds"] += time.perf_counter() - t1
            if vecs.shape != (len(chunk), dim):
                raise DataError(f"encoder returned {vecs.shape} for {len(chunk)} texts of dim {dim}")
            self.cache.put_many(fp, chunk, vecs)
            out[chunk_rows] = vecs
            bar.update(len(chunk))
            t1 = time.perf_counter()
        bar.close()
        self.stats["texts"] += len(texts)
        self.stats["hits"] += len(unique) - len(miss)
        self.stats["misses"] += len(miss)
        return np.ascontiguousarray(out[inverse])

    def _encoded_chunks(self, texts: list[str]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """``(rows, vectors)`` for chunks of about ``chunk_size`` of ``texts``, each to be committed as it comes.

        An encoder with ``encode_windows`` (:class:`~tokrec.encoders.hf.HFEncoder`) gets all the texts in
        one call and yields its windows, so that on a GPU it tokenizes the next chunk while the model runs;
        any other encoder is called once per chunk."""
        windows = getattr(self.encoder, "encode_windows", None)
        if windows is not None:
            seen = 0.0  # the encoder's token count is cumulative over the call
            for rows, vecs in windows(texts, self.chunk_size):
                total = float(self.encoder.stats.get("tokens", 0))  # type: ignore[attr-defined]
                self.stats["tokens"] += total - seen
                seen = total
                yield rows, np.asarray(vecs, dtype=np.float32)
            return
        for s in range(0, len(texts), self.chunk_size):
            chunk = texts[s : s + self.chunk_size]
            vecs = np.asarray(self.encoder.encode(chunk), dtype=np.float32)  # type: ignore[attr-defined]
            self.stats["tokens"] += float(getattr(self.encoder, "stats", {}).get("tokens", 0))
            yield np.arange(s, s + len(chunk)), vecs
