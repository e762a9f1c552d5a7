"""Prediction over a corpus larger than one machine: Dask partitions in, Parquet files out.

Each partition of a Dask DataFrame (a text column), Series or Bag of strings becomes one
Parquet file, ``part-00000.parquet``, ``part-00001.parquet``, ..., written by whichever worker
runs it. The worker loads the fitted model once per process from its ``.skstack`` file,
predicts the partition, writes the result under a temporary name beside the final one and
renames it into place. So a part file is whole or absent: a worker that dies mid-partition
leaves nothing to undo, and Dask's scheduler runs the partition again on another worker.

A second call with the same ``out`` folder (a job stopped halfway resumes) keeps only the
parts it can verify: ``out/_skstack.json`` records the model (a digest of its file) and the
method, and beside each part ``out/_skstack/part-<n>.json`` records the digest of the texts
(and index) it was computed from, its model and method, and the part file's SHA-256; it is
written after the part, so a part without its record is redone. A part that is missing,
damaged (truncated, garbled), from another corpus (other texts in that partition) or from
another model is redone. A folder holding parts but no manifest cannot be verified and is
refused unless ``overwrite=True``. Files under ``_skstack`` are skipped by Parquet readers
(their names start with ``_``).

This is dask-ml's ``ParallelPostFit`` pattern (apply a fitted model partition by partition)
with the model read from the safe format on the workers instead of pickled to them, and
results that land on disk instead of in the client's memory.

Import rule: ``persistence``, ``labels``, ``_validation`` and ``artifacts``; dask, fsspec and
pandas are imported when called (the ``[dask]`` extra).
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Iterable

import numpy as np

from skstack._validation import check_texts
from skstack.artifacts import ARTIFACTS
from skstack.labels import label_names, predict_label_lists
from skstack.persistence import load

METHODS = ("predict_proba", "predict", "predict_label_lists", "transform")
_MANIFEST = "_skstack.json"
_RECORDS = "_skstack"  # one record per part: what it was computed from, its checksum


def predict_corpus(model: str | os.PathLike, texts, out: str, *,
                   method: str = "predict_proba", text_column: str = "text",
                   trusted: Iterable[str] = (), storage_options: dict | None = None,
                   overwrite: bool = False) -> list[str]:
    """Apply a saved model to every partition of a Dask collection of texts, one Parquet
    file per partition, on the current Dask scheduler (a ``distributed.Client`` if one is
    active).

    Parameters
    ----------
    model : path-like
        A ``.skstack`` file written by :func:`skstack.save`, at a path every worker reads (a
        shared file system). Each worker process loads it once; joblib pickles are refused.
    texts : dask DataFrame, Series or Bag
        The corpus: a DataFrame's ``text_column``, a Series or a Bag of strings.
    out : str
        A folder, local or any fsspec URL (``s3://bucket/labels``) that every worker can
        write; ``storage_options`` go to fsspec.
    method : {"predict_proba", "predict", "predict_label_lists", "transform"}
        Per text: one float32 column per label, one 0/1 int8 column per label, a ``labels``
        column of label-name lists, or a ``vector`` column (the model's ``transform``, one
        vector per text).
    text_column : str, default="text"
    trusted : iterable of str
        Further classes the model file may name (see :func:`skstack.load`).
    overwrite : bool, default=False
        Start over in a folder that holds results this call cannot verify or keep: parts
        without a manifest, or another model's or method's. Without it such a folder is
        refused, and nothing in it is touched.

    Returns
    -------
    parts : list of str
        The part files, in corpus order; ``pandas.read_parquet(out)`` reads them all back in
        that order (a DataFrame's index is kept).

    Examples
    --------
    >>> import dask.dataframe as dd                                        # doctest: +SKIP
    >>> from distributed import Client                                     # doctest: +SKIP
    >>> frame = dd.read_parquet("s3://corpus/texts/")                      # doctest: +SKIP
    >>> with Client("scheduler:8786"):                                     # doctest: +SKIP
    ...     predict_corpus("/shared/model.skstack", frame, "s3://corpus/labels",
    ...                    method="predict_label_lists")
    """
    import dask
    import fsspec

    if method not in METHODS:
        raise ValueError(f"method={method!r} is not one of {', '.join(map(repr, METHODS))}.")
    path = os.fspath(model)
    if path.endswith((".joblib", ".pkl")):
        raise ValueError(f"{path} is a pickle; predict_corpus loads the safe format on every "
                         "worker: save the model with skstack.save(model, 'model.skstack').")
    fitted = load(path, trusted=trusted)  # a file that fails to load stops here, not on workers
    needed = {"transform": "transform", "predict_proba": "predict_proba"}.get(method, "predict")
    if not hasattr(fitted, needed):
        raise ValueError(f"method={method!r} needs a model with {needed}; "
                         f"{type(fitted).__name__} has none.")
    parts = _partitions(texts, text_column)
    fs, root = fsspec.core.url_to_fs(out, **(storage_options or {}))
    fs.makedirs(root, exist_ok=True)
    run = {"model": _digest(path), "method": method}
    _check_manifest(fs, root, run, overwrite)
    label = dask.delayed(_label_partition, pure=False)
    done = dask.compute(*[label(part, i, path, fs, root, run, tuple(trusted))
                          for i, part in enumerate(parts)])
    # from attempts that died mid-write, and parts of a longer corpus written here before
    stale = fs.glob(f"{root}/.part-*.tmp") + fs.glob(f"{root}/{_RECORDS}/.*.tmp") + [
        p for p in fs.glob(f"{root}/part-*.parquet") if _part_number(p) >= len(parts)]
    for leftover in stale:
        fs.rm(leftover)
    return [fs.unstrip_protocol(p) if "://" in out else p for p in done]


def _part_number(path: str) -> int:
    return int(path.rsplit("part-", 1)[1].split(".", 1)[0])


def _partitions(texts, text_column: str) -> list:
    import dask.bag
    import dask.dataframe as dd

    if isinstance(texts, dd.DataFrame):
        if text_column not in texts.columns:
            raise ValueError(f"the DataFrame has no column {text_column!r} (its columns: "
                             f"{list(texts.columns)[:10]}); pass text_column=.")
        texts = texts[text_column]
    if isinstance(texts, dd.Series):
        if texts.dtype.kind in "biufcmM":
            raise TypeError(f"the text column {texts.name!r} holds {texts.dtype} values; "
                            "predict_corpus needs strings.")
        _check_source_values(texts)
    if isinstance(texts, (dd.Series, dask.bag.Bag)):
        return list(texts.to_delayed())
    raise TypeError("texts must be a dask DataFrame, Series or Bag of strings; got "
                    f"{type(texts).__name__}.")


def _check_source_values(texts) -> None:
    """Refuse non-strings in a pandas object column that ``dd.from_pandas`` turned into a
    string column: Dask converts ``1``, ``2.5``, ``b"x"`` or ``["a"]`` to their string
    forms before any partition reaches us, so they are looked for where they came from."""
    import pandas as pd

    for node in texts.expr.walk():
        if type(node).__name__ != "FromPandas" or not node.operand("pyarrow_strings_enabled"):
            continue
        frame = node.operand("frame")
        source = frame if isinstance(frame, pd.Series) else frame.get(texts.name)
        if source is None or source.dtype != object:
            continue
        bad = ~source.map(lambda v: isinstance(v, str) or v is None or v is pd.NA or (
            isinstance(v, float) and v != v)).to_numpy(dtype=bool)  # missing: named later
        if bad.any():
            row = int(bad.argmax())
            value = source.iloc[row]
            raise TypeError(f"the text at row {row} (index {source.index[row]!r}) is "
                            f"{type(value).__name__} ({value!r:.40}), not a string; Dask "
                            f"would have predicted it as the text {str(value)!r:.40}.")


def _digest(path: str) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()


def _check_manifest(fs, root: str, wanted: dict, overwrite: bool) -> None:
    """Refuse a folder whose parts cannot be verified (no manifest) or belong to another
    model or method, unless ``overwrite`` (then empty it of them)."""
    where = f"{root}/{_MANIFEST}"
    found = None
    if fs.exists(where):
        try:
            with fs.open(where, "r") as f:
                found = json.load(f)
        except ValueError:
            found = {}  # damaged: as another run's
    parts = fs.glob(f"{root}/part-*.parquet")
    if found is not None and all(found.get(k) == v for k, v in wanted.items()):
        if found != wanted:  # an older manifest of the same run (its parts have no records)
            _write_json(fs, where, wanted)
        return
    if (found is not None or parts) and not overwrite:
        if found is None:
            raise ValueError(f"{root} holds {len(parts)} part file(s) but no {_MANIFEST}, so "
                             "they cannot be verified: pass overwrite=True to start over, or "
                             "an empty folder.")
        differs = [k for k in wanted if found.get(k) != wanted[k]]
        raise ValueError(f"{root} holds the results of another run (its {', '.join(differs)} "
                         "differ): pass an empty folder, or overwrite=True to start over.")
    for stale in parts + fs.glob(f"{root}/{_RECORDS}/*.json"):
        fs.rm(stale)
    _write_json(fs, where, wanted)


def _write_json(fs, where: str, content: dict) -> None:
    """``content`` at ``where``, whole or absent (a temporary name, then a rename)."""
    folder, name = where.rsplit("/", 1)
    temporary = f"{folder}/.{name}.{uuid.uuid4().hex}.tmp"
    fs.makedirs(folder, exist_ok=True)
    with fs.open(temporary, "w") as f:
        json.dump(content, f)
    fs.mv(temporary, where)


def _texts_digest(part) -> str:
    """A digest of a partition's texts and index (a Bag's list has none), which a resumed
    run compares before it keeps a part."""
    import pandas as pd

    series = part if isinstance(part, pd.Series) else pd.Series(list(part), dtype=object)
    hashed = pd.util.hash_pandas_object(series.astype(object), index=isinstance(
        part, pd.Series))
    return hashlib.sha256(hashed.to_numpy().tobytes() + str(len(series)).encode()).hexdigest()


def _kept(fs, final: str, record_path: str, expected: dict) -> bool:
    """Whether the part at ``final`` is the one ``expected`` describes: its record matches
    and its bytes match the record's checksum."""
    try:
        with fs.open(record_path, "r") as f:
            record = json.load(f)
        data = fs.cat_file(final)
    except (FileNotFoundError, ValueError):
        return False
    return isinstance(record, dict) and record.get("sha256") == \
        hashlib.sha256(data).hexdigest() and all(
            record.get(k) == v for k, v in expected.items())


def _label_partition(part, index: int, path: str, fs, root: str, run: dict,
                     trusted: tuple) -> str:
    """One partition, on a worker (``fs``, an fsspec file system, travels pickled): predict
    and write its part file and its record, or keep the part an earlier attempt wrote from
    the same texts and model."""
    final = f"{root}/part-{index:05d}.parquet"
    record_path = f"{root}/{_RECORDS}/part-{index:05d}.json"
    try:
        texts = check_texts(part)  # a Series, or a Bag's list
    except (TypeError, ValueError) as exc:  # which partition: the row is in the message
        raise type(exc)(f"partition {index}: {exc}") from exc
    expected = {**run, "texts": _texts_digest(part)}
    if _kept(fs, final, record_path, expected):
        return final
    stat = os.stat(path)
    model = ARTIFACTS.get_or_make("corpus model", (os.path.abspath(path), stat.st_mtime_ns,
                                                   stat.st_size),
                                  lambda: load(path, trusted=trusted))
    try:
        frame = _result(model, part, texts, run["method"])
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"partition {index}: {exc}") from exc
    temporary = f"{root}/.part-{index:05d}.{uuid.uuid4().hex}.tmp"
    with fs.open(temporary, "wb") as f:  # a DataFrame's index is stored; a Bag has none
        frame.to_parquet(f, index=hasattr(part, "index"))
    checksum = hashlib.sha256(fs.cat_file(temporary)).hexdigest()
    fs.mv(temporary, final)  # whole or absent: the rename is the commit
    _write_json(fs, record_path, {**expected, "rows": len(texts), "sha256": checksum})
    return final


def _result(model, part, texts: list[str], method: str):
    import pandas as pd

    index = part.index if isinstance(part, pd.Series) else None
    if method == "predict_label_lists":
        return pd.DataFrame({"labels": predict_label_lists(model, texts)}, index=index)
    if method == "transform":
        vectors = np.asarray(model.transform(texts), dtype=np.float32)
        return pd.DataFrame({"vector": list(vectors)}, index=index)
    values = getattr(model, method)(texts)
    dtype = np.float32 if method == "predict_proba" else np.int8
    return pd.DataFrame(np.asarray(values, dtype=dtype), columns=label_names(model),
                        index=index)
