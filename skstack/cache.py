"""Per-text embedding cache, in memory and optionally on disk.

Entries are keyed by a *fingerprint* (everything that changes a vector: the encoder's
weights, layers, pooling, ...) and the text. Estimators store only the fingerprint and the
folder, never the cache object, so the cache survives ``clone`` and pickling: every embedder
with the same fingerprint in one process shares one memory store, and processes that name
the same folder share one SQLite file. SQLite serialises concurrent writers; each row carries
a checksum so that a damaged entry is detected and recomputed instead of returned.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

_MEMORY: dict[str, dict[str, np.ndarray]] = {}
_DB_NAME = "skstack-embeddings.sqlite3"
_CONNECTIONS: dict[tuple[str, int], sqlite3.Connection] = {}


def _text_key(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()


def _checksum(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=16).digest()


class _DiskStore:
    """One SQLite file per cache folder; a fresh connection per process (fork-safe)."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder).expanduser()
        self.path = self.folder / _DB_NAME

    def _connect(self) -> sqlite3.Connection:
        key = (str(self.path), os.getpid())
        conn = _CONNECTIONS.get(key)
        if conn is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            conn = self._open()
            _CONNECTIONS[key] = conn
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
                stacklevel=4,
            )
            return self._open()
        return conn

    def get(self, fingerprint: str, keys: list[bytes]) -> dict[bytes, np.ndarray]:
        conn = self._connect()
        found: dict[bytes, np.ndarray] = {}
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

    def put(self, fingerprint: str, items: list[tuple[bytes, np.ndarray]]) -> None:
        rows = []
        for key, vector in items:
            data = np.ascontiguousarray(vector, dtype=np.float32).tobytes()
            rows.append((fingerprint, key, vector.shape[0], _checksum(data), data))
        conn = self._connect()
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany("INSERT OR REPLACE INTO vectors VALUES (?, ?, ?, ?, ?)", rows)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")


def cached_embed(
    texts: Sequence[str],
    fingerprint: str,
    embed: Callable[[list[str]], np.ndarray],
    dim: int,
    folder: str | os.PathLike | None = None,
    memory: bool = True,
) -> np.ndarray:
    """Return the vectors of ``texts``, calling ``embed`` only for texts not cached yet.

    Duplicated texts in one call are embedded once. New vectors go to memory (when
    ``memory``) and to ``folder`` (when given).
    """
    out = np.empty((len(texts), dim), dtype=np.float32)
    store = _MEMORY.setdefault(fingerprint, {}) if memory else {}
    disk = _DiskStore(folder) if folder is not None else None

    missing: dict[str, list[int]] = {}
    for i, text in enumerate(texts):
        vector = store.get(text)
        if vector is None:
            missing.setdefault(text, []).append(i)
        else:
            out[i] = vector
    if missing and disk is not None:
        keys = {_text_key(t): t for t in missing}
        for key, vector in disk.get(fingerprint, list(keys)).items():
            text = keys[key]
            out[missing.pop(text)] = vector
            if memory:
                store[text] = vector
    if missing:
        new_texts = list(missing)
        vectors = np.asarray(embed(new_texts), dtype=np.float32)
        for text, vector in zip(new_texts, vectors, strict=True):
            out[missing[text]] = vector
            if memory:
                store[text] = vector
        if disk is not None:
            disk.put(fingerprint, [(_text_key(t), v) for t, v in zip(new_texts, vectors,
                                                                     strict=True)])
    return out


def clear_memory_cache(fingerprint: str | None = None) -> None:
    """Drop in-memory vectors: of one fingerprint, or all of them."""
    if fingerprint is None:
        _MEMORY.clear()
    else:
        _MEMORY.pop(fingerprint, None)
