"""Per-text embedding cache: stores behind one interface, and the lookup an encoder uses.

Vectors are keyed by a *fingerprint* (everything that changes a vector: the encoder's
weights, layers, pooling, ...) and a digest of the text. Estimators keep only their ``cache``
parameter and fingerprint, never a store, so the cache survives ``clone`` and pickling: every
embedder in one process shares the memory store, and processes that name the same folder
share one SQLite file.

A store is an :class:`EmbeddingStore`: ``get_many``, ``put_many`` and ``clear``. Two ship
here: :class:`MemoryStore` (bounded by bytes, least recently used first out) and
:class:`SQLiteStore` (a file per folder; SQLite serialises concurrent writers, each row
carries a checksum so that a damaged entry is recomputed, never returned). A new backend is
one subclass with a ``scheme``: ``cache="<scheme>://<location>"`` then selects it
(:func:`open_stores`).

Import rule: a leaf (numpy and the standard library only).
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
import time
import warnings
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import ClassVar

import numpy as np

_DB_NAME = "skstack-embeddings.sqlite3"


def text_key(text: str) -> bytes:
    """The key of a text in every store: its SHA-256 (lone surrogates included)."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()


def _checksum(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=16).digest()


class EmbeddingStore(ABC):
    """Where vectors are kept: a mapping ``(fingerprint, text key) -> float32 vector``.

    Subclasses with a ``scheme`` are selected by ``cache="<scheme>://<location>"`` and are
    built as ``cls(location)``.
    """

    scheme: ClassVar[str | None] = None
    _registry: ClassVar[dict[str, type[EmbeddingStore]]] = {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.scheme:
            EmbeddingStore._registry[cls.scheme] = cls

    @abstractmethod
    def get_many(self, fingerprint: str, keys: Sequence[bytes]) -> dict[bytes, np.ndarray]:
        """The stored vectors among ``keys`` (missing keys are left out)."""

    @abstractmethod
    def put_many(self, fingerprint: str, items: Mapping[bytes, np.ndarray]) -> None:
        """Store vectors, replacing any under the same key."""

    @abstractmethod
    def clear(self, fingerprint: str | None = None) -> None:
        """Drop the vectors of one fingerprint, or all of them."""


class MemoryStore(EmbeddingStore):
    """Vectors in this process, at most ``max_bytes`` of them; the least recently used go
    first when a put would exceed the bound."""

    def __init__(self, max_bytes: int = 2 * 1024**3):
        self.max_bytes = max_bytes
        self.nbytes = 0
        self._items: OrderedDict[tuple[str, bytes], np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def get_many(self, fingerprint: str, keys: Sequence[bytes]) -> dict[bytes, np.ndarray]:
        found = {}
        with self._lock:
            for key in keys:
                vector = self._items.get((fingerprint, key))
                if vector is not None:
                    self._items.move_to_end((fingerprint, key))
                    found[key] = vector
        return found

    def put_many(self, fingerprint: str, items: Mapping[bytes, np.ndarray]) -> None:
        with self._lock:
            for key, vector in items.items():
                vector = np.array(vector, dtype=np.float32)  # a copy: callers may reuse theirs
                vector.flags.writeable = False
                old = self._items.pop((fingerprint, key), None)
                self.nbytes += vector.nbytes - (0 if old is None else old.nbytes)
                self._items[(fingerprint, key)] = vector
            while self.nbytes > self.max_bytes and self._items:
                _, evicted = self._items.popitem(last=False)
                self.nbytes -= evicted.nbytes

    def clear(self, fingerprint: str | None = None) -> None:
        with self._lock:
            if fingerprint is None:
                self._items.clear()
                self.nbytes = 0
                return
            for key in [k for k in self._items if k[0] == fingerprint]:
                self.nbytes -= self._items.pop(key).nbytes

    def __len__(self) -> int:
        return len(self._items)


class SQLiteStore(EmbeddingStore):
    """One SQLite file per cache folder; a fresh connection per process (fork-safe)."""

    _connections: ClassVar[dict[tuple[str, int], sqlite3.Connection]] = {}

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder).expanduser()
        self.path = self.folder / _DB_NAME

    def _connect(self) -> sqlite3.Connection:
        key = (str(self.path), os.getpid())
        conn = self._connections.get(key)
        if conn is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            conn = self._open()
            self._connections[key] = conn
        return conn

    def _open(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=120, isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS vectors (fingerprint TEXT NOT NULL, "
                "text_key BLOB NOT NULL, dim INTEGER NOT NULL, checksum BLOB NOT NULL, "
                "data BLOB NOT NULL, PRIMARY KEY (fingerprint, text_key))"
            )
        except sqlite3.DatabaseError as exc:
            conn.close()
            # Keep the damaged file for the user; start a new one beside it.
            aside = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}")
            os.replace(self.path, aside)
            warnings.warn(
                f"The embedding cache {self.path} could not be read ({exc}); it was moved to "
                f"{aside} and a new cache was started.",
                RuntimeWarning,
                stacklevel=5,
            )
            return self._open()
        return conn

    def get_many(self, fingerprint: str, keys: Sequence[bytes]) -> dict[bytes, np.ndarray]:
        conn = self._connect()
        found: dict[bytes, np.ndarray] = {}
        keys = list(keys)
        for start in range(0, len(keys), 500):  # SQLite caps the number of bound variables
            chunk = keys[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = conn.execute(
                f"SELECT text_key, dim, checksum, data FROM vectors "
                f"WHERE fingerprint = ? AND text_key IN ({marks})",
                [fingerprint, *chunk],
            )
            for key, dim, checksum, data in rows:
                if len(data) == 4 * dim and _checksum(data) == checksum:
                    found[key] = np.frombuffer(data, dtype=np.float32)
        return found

    def put_many(self, fingerprint: str, items: Mapping[bytes, np.ndarray]) -> None:
        rows = []
        for key, vector in items.items():
            data = np.ascontiguousarray(vector, dtype=np.float32).tobytes()
            rows.append((fingerprint, key, len(data) // 4, _checksum(data), data))
        conn = self._connect()
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany("INSERT OR REPLACE INTO vectors VALUES (?, ?, ?, ?, ?)", rows)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def clear(self, fingerprint: str | None = None) -> None:
        conn = self._connect()
        if fingerprint is None:
            conn.execute("DELETE FROM vectors")
        else:
            conn.execute("DELETE FROM vectors WHERE fingerprint = ?", (fingerprint,))


MEMORY = MemoryStore()  # shared by every embedder of this process


def open_stores(cache) -> list[EmbeddingStore]:
    """The stores an encoder's ``cache`` parameter names, fastest first.

    ``None``: none. ``"memory"``: this process's :data:`MEMORY`. ``"<scheme>://<location>"``:
    memory, then the registered store of that scheme. Any other str or path: memory, then a
    :class:`SQLiteStore` in that folder.
    """
    if cache is None:
        return []
    if isinstance(cache, str) and cache == "memory":
        return [MEMORY]
    scheme, sep, location = str(cache).partition("://")
    if sep:
        if scheme not in EmbeddingStore._registry:
            raise ValueError(f"No cache store is registered for {scheme + '://'!r}; known: "
                             f"{sorted(s + '://' for s in EmbeddingStore._registry)}.")
        return [MEMORY, EmbeddingStore._registry[scheme](location)]
    return [MEMORY, SQLiteStore(cache)]


class Lookup:
    """The cached part of one batch of texts; the caller embeds :attr:`missing` and passes
    the vectors to :meth:`complete`.

    Duplicated texts are looked up and embedded once. A vector found in a slower store is
    copied into the faster ones; new vectors go to every store.
    """

    def __init__(self, texts: Sequence[str], fingerprint: str, dim: int,
                 stores: Sequence[EmbeddingStore]):
        self.fingerprint, self.stores = fingerprint, list(stores)
        self.out = np.empty((len(texts), dim), dtype=np.float32)
        rows: dict[bytes, list[int]] = {}
        texts_by_key: dict[bytes, str] = {}
        for i, text in enumerate(texts):
            key = text_key(text)
            rows.setdefault(key, []).append(i)
            texts_by_key[key] = text
        pending = list(rows)
        for level, store in enumerate(self.stores):
            if not pending:
                break
            found = store.get_many(fingerprint, pending)
            for key, vector in found.items():
                self.out[rows[key]] = vector
            if found:
                for faster in self.stores[:level]:
                    faster.put_many(fingerprint, found)
            pending = [key for key in pending if key not in found]
        self._rows = rows
        self._pending = pending
        self.missing = [texts_by_key[key] for key in pending]

    def complete(self, vectors: np.ndarray) -> np.ndarray:
        """All rows, with ``vectors`` (one per text in :attr:`missing`) filled in and stored."""
        vectors = np.asarray(vectors, dtype=np.float32)
        if len(vectors) != len(self._pending):
            raise ValueError(f"{len(vectors)} vectors for {len(self._pending)} missing texts.")
        new = dict(zip(self._pending, vectors, strict=True))
        for key, vector in new.items():
            self.out[self._rows[key]] = vector
        if new:  # an empty put would still open a write transaction in SQLite
            for store in self.stores:
                store.put_many(self.fingerprint, new)
        return self.out


def clear_memory_cache(fingerprint: str | None = None) -> None:
    """Drop in-memory vectors: of one fingerprint, or all of them."""
    MEMORY.clear(fingerprint)
