"""One store for what skstack builds and keeps in a process.

Loaded encoders, kept fine-tunings, runtime (ONNX Runtime / OpenVINO) sessions and the
in-memory embedding cache all live in :data:`ARTIFACTS`: entries keyed by ``(kind, key)``,
made at most once by :meth:`ArtifactStore.get_or_make`, bounded together by bytes, and
evicted by one rule (the least recently used entry of any kind goes first, never the one
just made). ``SKSTACK_MEMORY_BYTES`` sets the bound (default 4 GiB). Each kind's owner
empties its own: ``clear_loaded_encoders``, ``forget_fine_tuned``, ``clear_memory_cache``.

What is kept on disk (exported models, fine-tuned weights) is written with
:func:`skstack._files.folder_in_place`, atomically, under the home folder
(``skstack.set_config(home=...)``).

Import rule: a leaf (the standard library, numpy and torch only).
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

import numpy as np
import torch

_DEFAULT_BYTES = 4 * 1024**3


def size_of(value: Any) -> int:
    """Bytes an artifact holds: an array's, a module's parameters and buffers, a dict or
    sequence of tensors and arrays; 0 for anything else (pass ``nbytes`` for those)."""
    if isinstance(value, np.ndarray):
        return int(value.nbytes)
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, torch.nn.Module):
        return sum(size_of(t) for t in (*value.parameters(), *value.buffers()))
    if isinstance(value, dict):
        return sum(size_of(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(size_of(v) for v in value)
    return 0


class ArtifactStore:
    """Entries by ``(kind, key)``, at most ``max_bytes`` together (least recently used
    first out, whatever its kind). Thread-safe."""

    def __init__(self, max_bytes: int | None = None):
        if max_bytes is None:
            setting = os.environ.get("SKSTACK_MEMORY_BYTES", str(_DEFAULT_BYTES))
            if not setting.strip().isdigit():
                raise ValueError(f"SKSTACK_MEMORY_BYTES must be a number of bytes, e.g. "
                                 f"{_DEFAULT_BYTES}; got {setting!r}.")
            max_bytes = int(setting)
        self.max_bytes = max_bytes
        self.nbytes = 0
        self._items: OrderedDict[tuple[str, Hashable], tuple[Any, int]] = OrderedDict()
        self._lock = threading.RLock()
        self._makers: dict[tuple[str, Hashable], threading.Lock] = {}

    def get(self, kind: str, key: Hashable) -> Any | None:
        """The entry, marked as just used; ``None`` when there is none."""
        with self._lock:
            item = self._items.get((kind, key))
            if item is None:
                return None
            self._items.move_to_end((kind, key))
            return item[0]

    def put(self, kind: str, key: Hashable, value: Any, nbytes: int | None = None) -> Any:
        """Keep ``value`` (of ``nbytes``, default :func:`size_of`), evicting older entries
        while the store is over its bound."""
        size = size_of(value) if nbytes is None else int(nbytes)
        with self._lock:
            old = self._items.pop((kind, key), None)
            self.nbytes += size - (0 if old is None else old[1])
            self._items[(kind, key)] = (value, size)
            while self.nbytes > self.max_bytes and len(self._items) > 1:
                oldest = next(iter(self._items))
                if oldest == (kind, key):  # never the entry just put
                    break
                self.nbytes -= self._items.pop(oldest)[1]
        return value

    def get_or_make(self, kind: str, key: Hashable, make: Callable[[], Any],
                    nbytes: Callable[[Any], int] | None = None) -> Any:
        """The entry, made by ``make()`` when missing. Two threads never make the same entry
        twice, and making one (loading a model, exporting it) blocks no other entry."""
        found = self.get(kind, key)
        if found is not None:
            return found
        with self._lock:
            maker = self._makers.setdefault((kind, key), threading.Lock())
        with maker:
            found = self.get(kind, key)  # another thread may have made it meanwhile
            if found is None:
                found = make()
                self.put(kind, key, found, None if nbytes is None else nbytes(found))
        with self._lock:
            self._makers.pop((kind, key), None)
        return found

    def discard(self, kind: str, where: Callable[[Hashable], bool] | None = None) -> None:
        """Drop the entries of ``kind`` (those whose key ``where`` accepts)."""
        with self._lock:
            for k in [k for k in self._items if k[0] == kind and (where is None or where(k[1]))]:
                self.nbytes -= self._items.pop(k)[1]

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self.nbytes = 0

    def keys(self, kind: str) -> list[Hashable]:
        """The keys of ``kind``, least recently used first."""
        with self._lock:
            return [k[1] for k in self._items if k[0] == kind]


ARTIFACTS = ArtifactStore()  # the process's one store

