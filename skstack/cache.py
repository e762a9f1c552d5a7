"""Per-text embedding cache: stores behind one interface, and the lookup an encoder uses.

Arrays (a text's vector, or its per-word states in word mode) are keyed by a *fingerprint*
(everything that changes them: the encoder's weights, layers, pooling, ...) and a digest of
the text. Estimators keep only their ``cache``
parameter and fingerprint, never a store, so the cache survives ``clone`` and pickling: every
embedder in one process shares the memory store, and processes that name the same folder
share one SQLite file.

A store is an :class:`EmbeddingStore`: ``get_many``, ``put_many`` and ``clear``. Two ship
here: :class:`MemoryStore` (bounded by bytes, least recently used first out) and
:class:`SQLiteStore` (a file per folder, for one host; SQLite serialises concurrent writers,
each row carries a checksum over its key and its data, so that a damaged or misplaced entry
is recomputed, never returned); :mod:`skstack.sharded_cache` adds the store a cluster
shares. A new backend is one subclass with a ``scheme``: ``cache="<scheme>://<location>"``
then selects it (:func:`open_stores`).

Import rule: numpy, the standard library and ``skstack.artifacts`` (the in-memory arrays
live in the process's one artifact store).
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
import warnings
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import ClassVar

import numpy as np

from skstack.artifacts import ARTIFACTS, ArtifactStore

_DB_NAME = "skstack-embeddings.sqlite3"


def text_key(text: str) -> bytes:
    """The key of a text in every store: its SHA-256 (lone surrogates included)."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()


def _checksum(fingerprint: str, key: bytes, dtype: str, shape: str, data: bytes) -> bytes:
    """Binds the data to its key: a row whose payload moved to another key fails it."""
    digest = hashlib.blake2b(digest_size=16)
    for part in (fingerprint.encode(), key, dtype.encode(), shape.encode(), data):
        digest.update(len(part).to_bytes(8, "little"))
        digest.update(part)
    return digest.digest()


class EmbeddingStore(ABC):
    """Where arrays are kept: a mapping ``(fingerprint, text key) -> ndarray`` (float32 or
    float16, any shape); what is put is what is got back.

    Subclasses with a ``scheme`` are selected by ``cache="<scheme>://<location>"`` and are
    built as ``cls(location)``; one that overrides :meth:`handles` is built as ``cls(cache)``
    (the whole URL) for the schemes it accepts, after every exact ``scheme``.
    """

    scheme: ClassVar[str | None] = None
    _registry: ClassVar[dict[str, type[EmbeddingStore]]] = {}
    _by_url: ClassVar[list[type[EmbeddingStore]]] = []

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.scheme:
            EmbeddingStore._registry[cls.scheme] = cls
        if "handles" in cls.__dict__:
            EmbeddingStore._by_url.append(cls)

    @classmethod
    def handles(cls, scheme: str) -> bool:
        """Whether ``cache="<scheme>://..."`` (the whole URL) selects this store."""
        return False

    @abstractmethod
    def get_many(self, fingerprint: str, keys: Sequence[bytes]) -> dict[bytes, np.ndarray]:
        """The stored arrays among ``keys`` (missing keys are left out)."""

    @abstractmethod
    def put_many(self, fingerprint: str, items: Mapping[bytes, np.ndarray]) -> None:
        """Store arrays, replacing any under the same key."""

    @abstractmethod
    def clear(self, fingerprint: str | None = None) -> None:
        """Drop the arrays of one fingerprint, or all of them."""


class MemoryStore(EmbeddingStore):
    """Arrays in this process, in an :class:`~skstack.artifacts.ArtifactStore`: by default
    the process's one store (:data:`MEMORY`, bounded with the loaded models and the other
    artifacts); ``max_bytes`` gives a store of its own. The least recently used go first."""

    def __init__(self, max_bytes: int | None = None, store: ArtifactStore | None = None):
        self._store = store if store is not None else ArtifactStore(
            2 * 1024**3 if max_bytes is None else max_bytes)

    @property
    def nbytes(self) -> int:
        return sum(v.nbytes for v in self._arrays().values())

    def _arrays(self) -> dict:
        return {k: self._store.get("vectors", k) for k in self._store.keys("vectors")}

    def get_many(self, fingerprint: str, keys: Sequence[bytes]) -> dict[bytes, np.ndarray]:
        found = {}
        for key in keys:
            vector = self._store.get("vectors", (fingerprint, key))
            if vector is not None:
                found[key] = vector
        return found

    def put_many(self, fingerprint: str, items: Mapping[bytes, np.ndarray]) -> None:
        for key, vector in items.items():
            vector = np.array(vector)  # a copy: callers may reuse theirs
            vector.flags.writeable = False
            self._store.put("vectors", (fingerprint, key), vector, vector.nbytes)

    def clear(self, fingerprint: str | None = None) -> None:
        self._store.discard("vectors", None if fingerprint is None else
                            lambda key: key[0] == fingerprint)

    def __len__(self) -> int:
        return len(self._store.keys("vectors"))


_TABLE = (
    "CREATE TABLE IF NOT EXISTS arrays (fingerprint TEXT NOT NULL, text_key BLOB NOT NULL, "
    "dtype TEXT NOT NULL, shape TEXT NOT NULL, checksum BLOB NOT NULL, data BLOB NOT NULL, "
    "PRIMARY KEY (fingerprint, text_key))"
)


def _is_damage(exc: sqlite3.Error) -> bool:
    """Damage (a garbled page, a file that is no database) as opposed to a database that is
    busy, read-only or in a folder we may not write: only damage moves a file aside."""
    return getattr(exc, "sqlite_errorname", "") in ("SQLITE_CORRUPT", "SQLITE_NOTADB")


def _is_busy(exc: sqlite3.Error) -> bool:
    return getattr(exc, "sqlite_errorname", "") in ("SQLITE_BUSY", "SQLITE_LOCKED")


class SQLiteStore(EmbeddingStore):
    """One SQLite file per cache folder; a fresh connection per process (fork-safe).

    Damage found at any point (opening, reading, writing) moves the file aside, with one
    warning, and the operation goes on with a new file; a busy database is waited for. A
    folder that cannot be written is read where its file is readable, and otherwise left
    alone: either way new arrays then stay in memory, after one warning per process.
    """

    # one connection per file, process and thread (sqlite3 connections refuse other threads)
    _connections: ClassVar[dict[tuple[str, int, int], tuple[sqlite3.Connection, int]]] = {}
    _read_only: ClassVar[set[str]] = set()  # paths opened read-only in this process
    _unusable: ClassVar[set[str]] = set()  # paths given up on in this process
    _warned: ClassVar[set[tuple[str, str]]] = set()

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder).expanduser()
        self.path = self.folder / _DB_NAME

    def _connect(self) -> sqlite3.Connection:
        key = self._key()
        conn, inode = self._connections.get(key, (None, None))
        if conn is not None and inode != _inode(self.path):
            conn.close()  # the file was deleted or replaced under us: its writes would be lost
            conn = None
        if conn is None:
            conn = self._open()
            self._connections[key] = (conn, _inode(self.path))
        return conn

    def _key(self) -> tuple[str, int, int]:
        return str(self.path), os.getpid(), threading.get_ident()

    def _open(self) -> sqlite3.Connection:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            for attempt in range(100):
                conn = sqlite3.connect(self.path, timeout=120, isolation_level=None)
                try:
                    conn.execute("PRAGMA journal_mode=WAL")
                    conn.execute(_TABLE)
                    return conn
                except sqlite3.OperationalError as exc:
                    conn.close()
                    if not _is_busy(exc) or attempt == 99:
                        raise
                    time.sleep(0.05)  # another process is creating the same file
        except sqlite3.OperationalError:
            if self.path.is_file():  # a folder we may not write, holding a cache we may read
                conn = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro&immutable=1",
                                       uri=True, isolation_level=None)
                conn.execute("SELECT 1 FROM arrays LIMIT 1")
                self._read_only.add(str(self.path))
                return conn
            raise

    def _run(self, operation, write: bool = False):
        """``operation(connection)``, healing damage once; ``None`` where the cache is
        unusable (or read-only, for a write)."""
        where = str(self.path)
        for attempt in range(2):
            if where in self._unusable:
                return None
            try:
                conn = self._connect()
                if write and where in self._read_only:
                    self._warn_once("can be read but not written (the folder is read-only)")
                    return None
                return operation(conn)
            except sqlite3.DatabaseError as exc:
                self._forget()
                if (_is_damage(exc) and attempt == 0 and where not in self._read_only
                        and self._set_aside(exc)):
                    continue
                self._unusable.add(where)
                self._warn_once(f"cannot be used ({exc})")
            except OSError as exc:
                self._forget()
                self._unusable.add(where)
                self._warn_once(f"cannot be used ({exc})")
        return None

    def _forget(self) -> None:
        conn, _ = self._connections.pop(self._key(), (None, None))
        if conn is not None:
            conn.close()

    def _set_aside(self, exc: Exception) -> bool:
        """Keep the damaged file for the user under a new name, so that the next open starts
        afresh; False where it cannot be moved."""
        aside = self.path.with_name(f"{self.path.name}.corrupt-{time.time_ns()}")
        try:
            os.replace(self.path, aside)
            for suffix in ("-wal", "-shm"):  # a journal belongs to the file it was written for
                journal = self.path.with_name(self.path.name + suffix)
                if journal.exists():
                    os.replace(journal, aside.with_name(aside.name + suffix))
        except FileNotFoundError:
            return True  # another process has set it aside already
        except OSError:
            return False
        warnings.warn(f"The embedding cache {self.path} is damaged ({exc}); it was moved to "
                      f"{aside} and a new cache was started.", RuntimeWarning, stacklevel=6)
        return True

    def _warn_once(self, what: str) -> None:
        if (str(self.path), what) not in self._warned:
            self._warned.add((str(self.path), what))
            warnings.warn(f"The embedding cache {self.path} {what}; in this process new "
                          "embeddings are kept in memory only.", RuntimeWarning, stacklevel=6)

    def get_many(self, fingerprint: str, keys: Sequence[bytes]) -> dict[bytes, np.ndarray]:
        keys = list(keys)

        def read(conn: sqlite3.Connection) -> dict[bytes, np.ndarray]:
            found = {}
            for start in range(0, len(keys), 500):  # SQLite caps the bound variables
                chunk = keys[start : start + 500]
                marks = ",".join("?" * len(chunk))
                rows = conn.execute(
                    f"SELECT text_key, dtype, shape, checksum, data FROM arrays "
                    f"WHERE fingerprint = ? AND text_key IN ({marks})",
                    [fingerprint, *chunk],
                )
                for key, dtype, shape, checksum, data in rows:
                    if _checksum(fingerprint, key, dtype, shape, data) == checksum:
                        dims = tuple(int(d) for d in shape.split(",") if d)
                        found[key] = np.frombuffer(data, dtype=np.dtype(dtype)).reshape(dims)
            return found

        return self._run(read) or {}

    def put_many(self, fingerprint: str, items: Mapping[bytes, np.ndarray]) -> None:
        rows = []
        for key, array in items.items():
            array = np.ascontiguousarray(array)
            dtype, shape, data = array.dtype.str, ",".join(map(str, array.shape)), array.tobytes()
            rows.append((fingerprint, key, dtype, shape,
                         _checksum(fingerprint, key, dtype, shape, data), data))

        def write(conn: sqlite3.Connection) -> None:
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany("INSERT OR REPLACE INTO arrays VALUES (?, ?, ?, ?, ?, ?)", rows)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

        self._run(write, write=True)

    def clear(self, fingerprint: str | None = None) -> None:
        if fingerprint is None:
            self._run(lambda conn: conn.execute("DELETE FROM arrays"), write=True)
        else:
            self._run(lambda conn: conn.execute("DELETE FROM arrays WHERE fingerprint = ?",
                                                (fingerprint,)), write=True)


def _inode(path: Path) -> int | None:
    try:
        return path.stat().st_ino
    except FileNotFoundError:
        return None


MEMORY = MemoryStore(store=ARTIFACTS)  # shared by every embedder of this process


def open_stores(cache) -> list[EmbeddingStore]:
    """The stores an encoder's ``cache`` parameter names, fastest first.

    ``None``: none. ``"memory"``: this process's :data:`MEMORY`. ``"<scheme>://<location>"``:
    memory, then the registered store of that scheme, else the store that handles the URL
    (:class:`skstack.sharded_cache.ShardedStore` for any fsspec file system). Any other str
    or path: memory, then a :class:`SQLiteStore` in that folder.
    """
    if cache is None:
        return []
    if isinstance(cache, str) and cache == "memory":
        return [MEMORY]
    scheme, sep, location = str(cache).partition("://")
    if sep:
        if scheme in EmbeddingStore._registry:
            return [MEMORY, EmbeddingStore._registry[scheme](location)]
        for store in EmbeddingStore._by_url:
            if store.handles(scheme):
                return [MEMORY, store(str(cache))]
        raise ValueError(f"No cache store is registered for {scheme + '://'!r}; known: "
                         f"{sorted(s + '://' for s in EmbeddingStore._registry)} and the "
                         "file systems fsspec knows (s3://, gs://, file://, ...).")
    return [MEMORY, SQLiteStore(cache)]


def shared_by_processes(cache) -> bool:
    """Whether a ``cache`` parameter names a store other processes read (a folder's SQLite
    file, a URL's store), as :func:`open_stores` reads it."""
    return any(not isinstance(s, MemoryStore) for s in open_stores(cache))


def fingerprint(spec: Mapping) -> str:
    """The cache key of everything that decides an array (weights, tokenizer, settings):
    the SHA-256 of ``spec`` as JSON with sorted keys. Arrays are stored under it, so two
    configurations share vectors only when their specs are equal."""
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()


class Lookup:
    """The cached part of one batch of texts; the caller computes the arrays of
    :attr:`missing` and passes them to :meth:`complete`.

    Duplicated texts are looked up and computed once. An array found in a slower store is
    copied into the faster ones; new arrays go to every store.
    """

    def __init__(self, texts: Sequence[str], fingerprint: str,
                 stores: Sequence[EmbeddingStore]):
        self.fingerprint, self.stores = fingerprint, list(stores)
        self._keys = [text_key(text) for text in texts]
        texts_by_key = dict(zip(self._keys, texts, strict=True))
        self._found: dict[bytes, np.ndarray] = {}
        pending = list(texts_by_key)
        for level, store in enumerate(self.stores):
            if not pending:
                break
            found = store.get_many(fingerprint, pending)
            self._found.update(found)
            if found:
                for faster in self.stores[:level]:
                    faster.put_many(fingerprint, found)
            pending = [key for key in pending if key not in found]
        self._pending = pending
        self.missing = [texts_by_key[key] for key in pending]

    def complete(self, arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
        """One array per text, with ``arrays`` (one per text in :attr:`missing`) filled in and
        stored."""
        if len(arrays) != len(self._pending):
            raise ValueError(f"{len(arrays)} arrays for {len(self._pending)} missing texts.")
        new = dict(zip(self._pending, arrays, strict=True))
        if new:  # an empty put would still open a write transaction in SQLite
            for store in self.stores:
                store.put_many(self.fingerprint, new)
        self._found.update(new)
        return [self._found[key] for key in self._keys]


def clear_memory_cache(fingerprint: str | None = None) -> None:
    """Drop in-memory arrays: of one fingerprint, or all of them."""
    MEMORY.clear(fingerprint)
