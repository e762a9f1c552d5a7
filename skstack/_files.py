"""Writing files and folders whole or not at all.

Every file skstack writes for a user (a model, its card, predictions, a report) is written
under a temporary name in the same folder and renamed over the target in one step
(:func:`replacing`): a reader sees the old file or the new one, never half of one, and a
write that fails (a full disk, an interrupt) leaves the old file as it was. Folders kept
under the home folder (exports, fine-tunings) are made the same way
(:func:`folder_in_place`), with the SHA-256 of their files, so that a damaged one is found
(:func:`intact_folder`) and made again.

Import rule: a leaf (the standard library only).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import time
import warnings
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


def file_sha256(path: str | os.PathLike, length: int | None = None) -> str:
    """The SHA-256 hex digest of a file (its first ``length`` bytes), read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        left = os.fstat(f.fileno()).st_size if length is None else length
        while left > 0 and (chunk := f.read(min(left, 1 << 20))):
            digest.update(chunk)
            left -= len(chunk)
    return digest.hexdigest()


def write_text(path: str | os.PathLike, text: str) -> None:
    """Replace ``path`` by ``text`` (UTF-8), whole or not at all."""
    with replacing(path) as partial:
        partial.write_text(text, encoding="utf-8")


_SUMS = ".skstack-sha256.json"  # what folder_in_place wrote, for intact_folder


def _digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): file_sha256(p) for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != _SUMS}


def intact_folder(target: Path) -> bool:
    """Whether ``target`` is a folder :func:`folder_in_place` finished and its files are as
    it wrote them (their SHA-256 against the list written with them). One that is not (a
    file damaged, truncated or removed, or a folder made before the lists existed) is
    removed, with a warning, so that it is made again."""
    if not target.is_dir():
        return False
    try:
        if json.loads((target / _SUMS).read_text()) == _digests(target):
            return True
    except (OSError, ValueError):
        pass
    aside = target.with_name(f".{target.name}.damaged-{time.time_ns()}")
    try:  # renamed first, so that no reader sees it half-deleted
        target.rename(aside)
    except OSError:
        return False  # another process set it aside first
    shutil.rmtree(aside, ignore_errors=True)
    warnings.warn(f"{target} was damaged or incomplete (its files do not match the checksums "
                  "written with them); it was removed and is made again.", RuntimeWarning,
                  stacklevel=3)
    return False


def folder_in_place(target: Path, write) -> Path:
    """Create folder ``target`` by ``write(tmp)`` into a temporary sibling and a rename, so
    that a reader (another process, a Dask worker) sees the whole folder or none; a folder
    another process finished first is kept, one that is damaged made again. The folder
    holds the SHA-256 of its files (see :func:`intact_folder`)."""
    if intact_folder(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        write(tmp)
        (tmp / _SUMS).write_text(json.dumps(_digests(tmp)))
        try:
            tmp.rename(target)
        except OSError:  # another process renamed its copy first
            if not target.is_dir():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
