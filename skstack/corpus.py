"""Prediction over a corpus larger than one machine: Dask partitions in, Parquet files out.

Each partition of a Dask DataFrame (a text column), Series or Bag of strings becomes one
Parquet file, ``part-00000.parquet``, ``part-00001.parquet``, ..., written by whichever worker
runs it. The worker loads the fitted model once per process from its ``.skstack`` file,
predicts the partition, writes the result under a temporary name beside the final one and
renames it into place. So a part file is whole or absent: a worker that dies mid-partition
leaves nothing to undo, Dask's scheduler runs the partition again on another worker, and a
second call with the same ``out`` folder skips the parts already written (a job stopped
halfway resumes). ``out/_skstack.json`` records which model and method the parts hold, so a
folder never mixes two models' results.

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


def predict_corpus(model: str | os.PathLike, texts, out: str, *,
                   method: str = "predict_proba", text_column: str = "text",
                   trusted: Iterable[str] = (), storage_options: dict | None = None
                   ) -> list[str]:
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
    _check_manifest(fs, root, {"model": _digest(path), "method": method,
                               "partitions": len(parts)})
    label = dask.delayed(_label_partition, pure=False)
    done = dask.compute(*[label(part, i, path, fs, root, method, tuple(trusted))
                          for i, part in enumerate(parts)])
    for leftover in fs.glob(f"{root}/.part-*.tmp"):  # from attempts that died mid-write
        fs.rm(leftover)
    return [fs.unstrip_protocol(p) if "://" in out else p for p in done]


def _partitions(texts, text_column: str) -> list:
    import dask.bag
    import dask.dataframe as dd

    if isinstance(texts, dd.DataFrame):
        if text_column not in texts.columns:
            raise ValueError(f"the DataFrame has no column {text_column!r} (its columns: "
                             f"{list(texts.columns)[:10]}); pass text_column=.")
        texts = texts[text_column]
    if isinstance(texts, (dd.Series, dask.bag.Bag)):
        return list(texts.to_delayed())
    raise TypeError("texts must be a dask DataFrame, Series or Bag of strings; got "
                    f"{type(texts).__name__}.")


def _digest(path: str) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()


def _check_manifest(fs, root: str, wanted: dict) -> None:
    """Refuse a folder that holds parts of another model, method or partitioning."""
    where = f"{root}/{_MANIFEST}"
    if fs.exists(where):
        with fs.open(where, "r") as f:
            found = json.load(f)
        if found != wanted:
            differs = [k for k in wanted if found.get(k) != wanted[k]]
            raise ValueError(f"{root} holds the results of another run (its {', '.join(differs)} "
                             "differ): pass an empty folder, or remove that one to start over.")
        return
    with fs.open(where, "w") as f:
        json.dump(wanted, f)


def _label_partition(part, index: int, path: str, fs, root: str, method: str,
                     trusted: tuple) -> str:
    """One partition, on a worker (``fs``, an fsspec file system, travels pickled): predict
    and write its part file, or find it written."""
    final = f"{root}/part-{index:05d}.parquet"
    if fs.exists(final):
        return final  # written by an earlier attempt or run
    stat = os.stat(path)
    model = ARTIFACTS.get_or_make("corpus model", (os.path.abspath(path), stat.st_mtime_ns,
                                                   stat.st_size),
                                  lambda: load(path, trusted=trusted))
    try:
        frame = _result(model, part, method)
    except (TypeError, ValueError) as exc:  # which partition: the row is in the message
        raise type(exc)(f"partition {index}: {exc}") from exc
    temporary = f"{root}/.part-{index:05d}.{uuid.uuid4().hex}.tmp"
    with fs.open(temporary, "wb") as f:  # a DataFrame's index is stored; a Bag has none
        frame.to_parquet(f, index=hasattr(part, "index"))
    fs.mv(temporary, final)  # whole or absent: the rename is the commit
    return final


def _result(model, part, method: str):
    import pandas as pd

    index = part.index if isinstance(part, pd.Series) else None
    texts = check_texts(part)  # a Series, or a Bag's list
    if method == "predict_label_lists":
        return pd.DataFrame({"labels": predict_label_lists(model, texts)}, index=index)
    if method == "transform":
        vectors = np.asarray(model.transform(texts), dtype=np.float32)
        return pd.DataFrame({"vector": list(vectors)}, index=index)
    values = getattr(model, method)(texts)
    dtype = np.float32 if method == "predict_proba" else np.int8
    return pd.DataFrame(np.asarray(values, dtype=dtype), columns=label_names(model),
                        index=index)
