"""Replacing a user's file whole or not at all.

Every file skstack writes for a user (a model, its card, predictions, a report) is written
under a temporary name in the same folder and renamed over the target in one step: a reader
sees the old file or the new one, never half of one, and a write that fails (a full disk, an
interrupt) leaves the old file as it was.

Import rule: a leaf (the standard library only).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def replacing(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to; when the block succeeds it replaces
    ``path`` in one step, and when it fails it is removed and ``path`` is untouched (an
    ``OSError``, a full disk say, is raised again naming ``path``)."""
    path = Path(path)
    handle, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial",
                                    dir=path.parent if str(path.parent) else ".")
    os.close(handle)
    partial = Path(name)
    try:
        yield partial
        os.replace(partial, path)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        kept = "the previous file is unchanged" if path.exists() else "nothing was written"
        raise OSError(exc.errno, f"could not write {path} ({exc.strerror or exc}); "
                                 f"{kept}") from None
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def file_sha256(path: str | os.PathLike) -> str:
    """The SHA-256 hex digest of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def write_text(path: str | os.PathLike, text: str) -> None:
    """Replace ``path`` by ``text`` (UTF-8), whole or not at all."""
    with replacing(path) as partial:
        partial.write_text(text, encoding="utf-8")
