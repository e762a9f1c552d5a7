"""An embedding store a cluster can share: immutable segment files on any fsspec file system.

``cache="s3://bucket/cache"``, ``"gs://..."``, ``"file:///mnt/nfs/cache"`` (any URL whose
scheme fsspec knows) selects :class:`ShardedStore`: every machine that names the URL reads and
writes the same arrays, where the SQLite store (a plain folder) needs one host, since SQLite's
locks do not hold on network file systems.

Layout: ``<url>/v1/<fingerprint>/<shard>/<name>.seg``, the shard being the first byte of
the text key (256 per fingerprint). A segment is written once and never changed: a magic
line, the length of a JSON index, the index (per array: text key, dtype, shape, checksum,
offset, size), then the arrays' bytes. Each :meth:`ShardedStore.put_many` adds one segment
per shard it touches, so writers never share a file and need no lock; a reader lists a
shard, reads the index of each segment it has not seen (kept per process: segments do not
change) and fetches only the byte ranges of the keys it wants. What may go wrong, and what
happens:

- a reader never sees half a segment: it is written under a temporary name and renamed into
  place (on object stores, whose writes are whole or absent, it is written directly);
- an array whose bytes or key do not match its checksum (which covers the fingerprint, the
  key, dtype, shape and data, as in the SQLite store) is recomputed, never returned;
- a segment that cannot be parsed is moved aside (``.corrupt-<time>``) with one warning,
  and its arrays are recomputed; where it cannot be moved (a read-only folder) it is
  skipped for the rest of the process, with one warning;
- a folder that cannot be written (read-only, no permission) is read as usual, and new
  arrays are kept in the process's memory store only, with one warning, as the SQLite store
  does;
- a shard with more than :data:`COMPACT_AFTER` segments is merged into one by the writer that
  finds it so; a merge deletes only the segments it read, so arrays written meanwhile stay,
  and a reader that lists a segment a merge then deletes lists the shard again.

Import rule: numpy, the standard library, fsspec and ``skstack.cache``.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import ClassVar

import fsspec
import numpy as np

from skstack.cache import EmbeddingStore, _checksum

_FORMAT = "v1"
_MAGIC = b"skstack-segment-1\n"
_SUFFIX = ".seg"
COMPACT_AFTER = 32  # segments per shard before a writer merges them
_LOOKS = 8  # reads of a shard while merges keep deleting what was listed
# file systems whose writes land whole or not at all (a rename there is a copy)
_WHOLE_WRITES = {"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "adl", "memory"}

# one array in a segment: dtype, shape, checksum, offset into the data, size in bytes
_Entry = tuple[str, tuple[int, ...], bytes, int, int]


class DamagedSegment(ValueError):
    """A segment file that is not one (garbled, truncated, another program's file)."""


def encode_segment(fingerprint: str, items: Mapping[bytes, np.ndarray]) -> bytes:
    """The bytes of one segment holding ``items`` (text key -> array)."""
    index, chunks, offset = [], [], 0
    for key, array in items.items():
        array = np.ascontiguousarray(array)
        dtype, shape, data = array.dtype.str, ",".join(map(str, array.shape)), array.tobytes()
        checksum = _checksum(fingerprint, key, dtype, shape, data)
        index.append([key.hex(), dtype, shape, checksum.hex(), offset, len(data)])
        chunks.append(data)
        offset += len(data)
    header = json.dumps({"fingerprint": fingerprint, "arrays": index}).encode()
    return b"".join([_MAGIC, len(header).to_bytes(8, "little"), header, *chunks])


def decode_index(fingerprint: str, head: bytes, read) -> tuple[dict[bytes, _Entry], int]:
    """A segment's index (key -> entry) and where its data starts, from its first bytes
    ``head`` and ``read(start, end)`` for more; :class:`DamagedSegment` if it is none."""
    lead = len(_MAGIC) + 8
    if len(head) < lead or not head.startswith(_MAGIC):
        raise DamagedSegment("no segment header")
    size = int.from_bytes(head[len(_MAGIC):lead], "little")
    raw = head[lead:lead + size]
    if len(raw) < size:
        raw = read(lead, lead + size)
    try:
        header = json.loads(raw)
        if header["fingerprint"] != fingerprint:  # a segment copied to another folder
            raise DamagedSegment(f"it belongs to fingerprint {header['fingerprint']!r}")
        index = {bytes.fromhex(k): (dtype, tuple(int(d) for d in shape.split(",") if d),
                                    bytes.fromhex(checksum), int(offset), int(n))
                 for k, dtype, shape, checksum, offset, n in header["arrays"]}
    except (ValueError, KeyError, TypeError) as exc:
        raise DamagedSegment(f"unreadable index ({exc})") from exc
    return index, lead + size


class ShardedStore(EmbeddingStore):
    """Arrays in immutable segment files under an fsspec URL, shared by every process and
    machine that can reach it (see the module's notes for the guarantees).

    Parameters
    ----------
    url : str
        ``"<protocol>://<path>"`` for any protocol fsspec knows (``file``, ``s3``, ``gs``,
        ``memory``, ...).
    storage_options : dict, default=None
        Passed to fsspec (credentials, endpoints); the encoders' ``cache`` parameter gives
        none, so a cluster passes them through fsspec's configuration or the environment.

    Examples
    --------
    >>> import numpy as np
    >>> from skstack.sharded_cache import ShardedStore
    >>> store = ShardedStore("memory://skstack-doc-cache")
    >>> store.put_many("fp", {b"k" * 32: np.ones(3, np.float32)})
    >>> store.get_many("fp", [b"k" * 32, b"x" * 32])[b"k" * 32]
    array([1., 1., 1.], dtype=float32)
    """

    # segment path -> (its index, where its data starts), per process: segments never change
    _indexes: ClassVar[dict[str, tuple[dict[bytes, _Entry], int]]] = {}
    _lock: ClassVar[threading.Lock] = threading.Lock()
    _warned: ClassVar[set[str]] = set()
    _skipped: ClassVar[set[str]] = set()  # damaged segments that could not be moved aside

    def __init__(self, url: str, storage_options: dict | None = None):
        self.url = url
        self.fs, root = fsspec.core.url_to_fs(url, **(storage_options or {}))
        self.root = root.rstrip("/")
        protocols = self.fs.protocol if isinstance(self.fs.protocol, tuple) else (
            self.fs.protocol,)
        self._whole_writes = bool(set(protocols) & _WHOLE_WRITES)

    @classmethod
    def handles(cls, scheme: str) -> bool:
        return scheme in fsspec.available_protocols() or scheme in fsspec.registry

    def _shard(self, fingerprint: str, key: bytes) -> str:
        return f"{self.root}/{_FORMAT}/{fingerprint}/{key[:1].hex()}"

    def _segments(self, shard: str) -> list[str]:
        try:
            names = self.fs.ls(shard, detail=False)
        except FileNotFoundError:
            return []
        return sorted(n for n in names if n.endswith(_SUFFIX))

    def _index(self, fingerprint: str, path: str) -> tuple[dict[bytes, _Entry], int] | None:
        """The index of one segment (read once per process); ``None`` if it is gone or
        damaged (then moved aside)."""
        with self._lock:
            known = self._indexes.get(self._memo(path))
            if self._memo(path) in self._skipped:
                return {}, 0  # damaged, and left in place: holds nothing for us
        if known is not None:
            return known
        try:
            head = self.fs.cat_file(path, 0, 1 << 16)
            found = decode_index(fingerprint, head,
                                 lambda start, end: self.fs.cat_file(path, start, end))
        except FileNotFoundError:
            return None  # merged into another segment meanwhile
        except DamagedSegment as exc:
            self._set_aside(path, exc)
            return None
        with self._lock:
            self._indexes[self._memo(path)] = found
        return found

    def _memo(self, path: str) -> str:
        """The key of a segment's index in this process (one path on two file systems is
        two segments)."""
        return f"{self.fs.protocol}|{path}"

    def _set_aside(self, path: str, exc: Exception) -> None:
        aside = f"{path}.corrupt-{time.time_ns()}"
        try:
            self.fs.mv(path, aside)
            done = f"it was moved to {aside}"
        except FileNotFoundError:
            return  # another process moved it first
        except OSError as error:  # a read-only folder: leave it, and skip it from now on
            with self._lock:
                self._skipped.add(self._memo(path))
            done = f"it could not be moved aside ({type(error).__name__}) and is skipped"
        self._warn_once(path, f"The embedding cache segment {path} is damaged ({exc}); {done}, "
                              "and its arrays will be recomputed.")

    def _warn_once(self, about: str, message: str) -> None:
        with self._lock:
            if about in self._warned:
                return
            self._warned.add(about)
        warnings.warn(message, RuntimeWarning, stacklevel=6)

    def _located(self, fingerprint: str, shard: str, keys: set[bytes]
                 ) -> tuple[dict[bytes, tuple[str, _Entry, int]], bool]:
        """Where each of ``keys`` (all of one shard) is: segment path, entry, data start; and
        whether a listed segment vanished before its index was read (a merge deleted it)."""
        where, vanished = {}, False
        for path in self._segments(shard):
            found = self._index(fingerprint, path)
            if found is None:
                vanished = True
                continue
            index, start = found
            for key in keys & index.keys():
                where[key] = (path, index[key], start)
        return where, vanished

    def get_many(self, fingerprint: str, keys: Sequence[bytes]) -> dict[bytes, np.ndarray]:
        found: dict[bytes, np.ndarray] = {}
        pending = set(keys)
        # a merge may delete a segment between the listing and the read: look again for the
        # keys that went with it (the merged segment was written before the deletion)
        for _ in range(_LOOKS):
            pending = self._read(fingerprint, pending, found)
            if not pending:
                break
        return found

    def _read(self, fingerprint: str, keys: set[bytes], found: dict[bytes, np.ndarray]
              ) -> set[bytes]:
        """Add the arrays of ``keys`` to ``found``; the keys worth looking for again."""
        by_shard: dict[str, set[bytes]] = {}
        for key in keys:
            by_shard.setdefault(self._shard(fingerprint, key), set()).add(key)
        where: dict[bytes, tuple[str, _Entry, int]] = {}
        again: set[bytes] = set()
        for shard, wanted in by_shard.items():
            located, vanished = self._located(fingerprint, shard, wanted)
            where.update(located)
            if vanished:
                again |= wanted - located.keys()
        located = list(where)
        paths = [where[k][0] for k in located]
        starts = [where[k][2] + where[k][1][3] for k in located]
        ends = [s + where[k][1][4] for s, k in zip(starts, located, strict=True)]
        blobs = self.fs.cat_ranges(paths, starts, ends, on_error="return") if located else []
        for key, blob in zip(located, blobs, strict=True):
            dtype, shape, checksum, _, _ = where[key][1]
            if isinstance(blob, FileNotFoundError):
                again.add(key)
            elif isinstance(blob, bytes) and _checksum(
                    fingerprint, key, dtype, ",".join(map(str, shape)), blob) == checksum:
                found[key] = np.frombuffer(blob, dtype=np.dtype(dtype)).reshape(shape)
        return again

    def put_many(self, fingerprint: str, items: Mapping[bytes, np.ndarray]) -> None:
        by_shard: dict[str, dict[bytes, np.ndarray]] = {}
        for key, array in items.items():
            by_shard.setdefault(self._shard(fingerprint, key), {})[key] = array
        try:
            for shard, part in by_shard.items():
                self._write(shard, encode_segment(fingerprint, part))
                segments = self._segments(shard)
                if len(segments) > COMPACT_AFTER:
                    self._merge(fingerprint, shard, segments)
        except OSError as exc:  # read-only: the faster stores (memory) keep them
            self._warn_once(self.url, f"The embedding cache {self.url} cannot be written "
                                      f"({type(exc).__name__}: {exc}); new vectors are kept "
                                      "in this process's memory only.")

    def _write(self, shard: str, data: bytes) -> None:
        name = f"{shard}/{time.time_ns():020d}-{uuid.uuid4().hex}{_SUFFIX}"
        self.fs.makedirs(shard, exist_ok=True)
        if self._whole_writes:
            self.fs.pipe_file(name, data)
            return
        tmp = f"{shard}/.tmp-{uuid.uuid4().hex}"
        try:
            self.fs.pipe_file(tmp, data)
            self.fs.mv(tmp, name)
        finally:
            if self.fs.exists(tmp):
                self.fs.rm(tmp)

    def _merge(self, fingerprint: str, shard: str, segments: Iterable[str]) -> None:
        """One segment for ``segments`` (a shard's), then delete those it read."""
        merged, read = {}, []
        for path in segments:
            found = self._index(fingerprint, path)
            if found is None:
                continue
            index, start = found
            try:
                blob = self.fs.cat_file(path)
            except FileNotFoundError:
                continue  # another writer merged it
            for key, (dtype, shape, checksum, offset, n) in index.items():
                data = blob[start + offset:start + offset + n]
                if _checksum(fingerprint, key, dtype, ",".join(map(str, shape)),
                             data) == checksum:
                    merged[key] = np.frombuffer(data, dtype=np.dtype(dtype)).reshape(shape)
            read.append(path)
        if merged:
            self._write(shard, encode_segment(fingerprint, merged))
        for path in read:
            try:
                self.fs.rm(path)
            except FileNotFoundError:
                pass
        with self._lock:
            for path in read:
                self._indexes.pop(self._memo(path), None)

    def clear(self, fingerprint: str | None = None) -> None:
        target = f"{self.root}/{_FORMAT}" + (f"/{fingerprint}" if fingerprint else "")
        try:
            self.fs.rm(target, recursive=True)
        except FileNotFoundError:
            pass
        with self._lock:
            for memo in [m for m in self._indexes if m.startswith(self._memo(target) + "/")]:
                del self._indexes[memo]
