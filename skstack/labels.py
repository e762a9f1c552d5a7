"""Label names in and out: lists of names per text <-> 0/1 label matrices.

Users think in ``["joy", "optimism"]``; estimators learn and predict 0/1 columns. The
names an estimator learned (the columns of a DataFrame ``y``, or ``"0", "1", ...``) are its
``label_names_``; :func:`label_names` finds them in a fitted pipeline.

Import rule: scikit-learn, numpy, ``skstack._validation`` and ``skstack.parts``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
from sklearn.preprocessing import MultiLabelBinarizer

from skstack._validation import unwrap_search
from skstack.parts import final_step


def label_names(estimator) -> list[str]:
    """The label names a fitted estimator (or the last step of a fitted pipeline, or a fitted
    search's ``best_estimator_``) learned.

    Examples
    --------
    >>> import pandas as pd
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn.multiclass import OneVsRestClassifier
    >>> from skstack import TunedThresholds
    >>> Y = pd.DataFrame({"joy": [1, 0, 1, 0, 1, 0], "anger": [0, 1, 0, 1, 0, 1]})
    >>> X = [[1.0], [0.0], [0.9], [0.1], [0.8], [0.2]]
    >>> rule = TunedThresholds(OneVsRestClassifier(LogisticRegression()), objective="jaccard",
    ...                        cv=2).fit(X, Y)
    >>> label_names(rule)
    ['joy', 'anger']
    """
    step = final_step(unwrap_search(estimator, "name labels with"))
    names = getattr(step, "label_names_", None)
    if names is None:
        raise ValueError(f"{type(step).__name__} has no label_names_: it is not fitted, or "
                         "not a skstack estimator; pass the names explicitly.")
    return list(names)


def to_label_lists(Y, names: Sequence[str]) -> list[list[str]]:
    """Turn a 0/1 label matrix into one list of label names per row.

    Examples
    --------
    >>> to_label_lists([[1, 0, 1], [0, 0, 0]], ["joy", "anger", "optimism"])
    [['joy', 'optimism'], []]
    """
    Y = np.asarray(Y)
    if Y.ndim != 2 or Y.shape[1] != len(names):
        raise ValueError(f"Expected a label matrix with {len(names)} columns (one per name), "
                         f"got shape {Y.shape}.")
    names = [str(n) for n in names]
    return [[names[j] for j in np.flatnonzero(row)] for row in Y]


def from_label_lists(
    label_lists: Iterable[Iterable[str]], names: Sequence[str] | None = None
) -> tuple[np.ndarray, list[str]]:
    """Turn one list of label names per text into a 0/1 label matrix and its column names.

    Parameters
    ----------
    label_lists : iterable of iterables of str
        E.g. ``[["joy", "optimism"], [], ["anger"]]``. An empty list is a text without labels.
    names : sequence of str, default=None
        The columns, in order (e.g. the names a fitted model uses). ``None``: every name
        found, sorted. A name outside ``names`` is an error naming its row.

    Returns
    -------
    Y : ndarray of shape (n_texts, n_labels), int64
    names : list of str

    Examples
    --------
    >>> Y, names = from_label_lists([["joy", "optimism"], [], ["anger"]])
    >>> Y.tolist(), names
    ([[0, 1, 1], [0, 0, 0], [1, 0, 0]], ['anger', 'joy', 'optimism'])
    """
    rows = []
    for i, row in enumerate(label_lists):
        if isinstance(row, (str, bytes)) or not isinstance(row, Iterable):
            raise TypeError(f"Row {i} is {row!r}; expected a list of label names (a text "
                            "with one label is a list of one name, e.g. ['joy']).")
        rows.append([str(name) for name in row])
    bad = first_unknown(rows, names)
    if bad is not None:
        raise ValueError(f"Row {bad[0]} has label(s) {bad[1]} that are not among the "
                         f"{len(names)} names {list(names)}.")
    binarizer = MultiLabelBinarizer(classes=None if names is None else list(names))
    Y = binarizer.fit_transform(rows).astype(np.int64)
    return Y, [str(c) for c in binarizer.classes_]


def first_unknown(rows: Sequence[Sequence[str]],
                  names: Sequence[str] | None) -> tuple[int, list[str]] | None:
    """The first row holding names outside ``names``, as (row index, those names sorted);
    ``None`` when every name is known or ``names`` is ``None`` (any name is)."""
    if names is None:
        return None
    known = set(names)
    for i, row in enumerate(rows):
        unknown = sorted(set(row) - known)
        if unknown:
            return i, unknown
    return None


def predict_label_lists(estimator, X, names: Sequence[str] | None = None) -> list[list[str]]:
    """Predict, then name the labels: one list of label names per text.

    ``names`` defaults to the names the estimator learned (:func:`label_names`); a fitted
    search predicts with its ``best_estimator_``. For a 1-D target (binary or multiclass),
    each list holds the predicted class.
    """
    estimator = unwrap_search(estimator, "predict with")
    pred = np.asarray(estimator.predict(X))
    if pred.ndim == 1:
        return [[str(c)] for c in pred]
    return to_label_lists(pred, label_names(estimator) if names is None else names)
