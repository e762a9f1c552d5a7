"""Input checks shared by every estimator: texts, label matrices and dense features.

Each check names the first offending position so that a user can find the bad row.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import numpy as np


def check_texts(X) -> list[str]:
    """Return ``X`` as a list of ``str``, or raise naming the first bad element.

    Accepts a list or tuple of str, a 1-D numpy array, a pandas Series or a one-column
    DataFrame. ``None``, NaN, numbers, bytes and nested sequences are rejected.
    """
    if hasattr(X, "iloc") and getattr(X, "ndim", 1) == 2:  # pandas DataFrame
        if X.shape[1] != 1:
            raise ValueError(
                f"Expected a one-column DataFrame of texts, got {X.shape[1]} columns "
                f"({list(X.columns)[:5]})."
            )
        X = X.iloc[:, 0]
    if hasattr(X, "to_numpy") and not isinstance(X, np.ndarray):  # pandas Series
        X = X.to_numpy(dtype=object)
    if isinstance(X, np.ndarray):
        if X.ndim == 2 and X.shape[1] == 1:
            X = X[:, 0]
        if X.ndim != 1:
            raise ValueError(f"Expected a 1-D array of texts, got an array of shape {X.shape}.")
        X = X.tolist()
    if isinstance(X, (str, bytes)) or not isinstance(X, Sequence):
        raise TypeError(
            f"Expected a sequence of texts (list, numpy array, pandas Series), "
            f"got {type(X).__name__}."
        )
    texts = list(X)
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(
                f"Text at position {i} is {_describe(text)}; every element of X must be a str."
            )
    return texts


def _describe(value) -> str:
    if value is None:
        return "None"
    if isinstance(value, float) and np.isnan(value):
        return "NaN (float)"
    return f"of type {type(value).__name__} ({value!r:.40})"


def check_label_matrix(Y, n_samples: int | None = None) -> tuple[np.ndarray, list[str] | None]:
    """Validate a multi-label target: a 2-D 0/1 array or DataFrame.

    Returns the matrix as ``float32`` and the label names (the DataFrame's columns, or
    ``None`` for an array).
    """
    if Y is None:
        raise ValueError("This estimator requires y to be passed, but the target y is None.")
    names = None
    if hasattr(Y, "columns"):
        names = [str(c) for c in Y.columns]
        Y = Y.to_numpy()
    Y = np.asarray(Y)
    if Y.ndim != 2:
        raise ValueError(
            f"Y must be a 2-D label matrix of shape (n_samples, n_labels) with 0/1 entries; "
            f"got an array of shape {Y.shape}. For a single label use Y.reshape(-1, 1)."
        )
    if n_samples is not None and Y.shape[0] != n_samples:
        raise ValueError(f"Y has {Y.shape[0]} rows but X has {n_samples}; they must match.")
    if not (np.issubdtype(Y.dtype, np.number) or Y.dtype == bool):
        raise ValueError(f"Y must hold numbers 0/1, got dtype {Y.dtype}.")
    bad = ~np.isin(Y, (0, 1))
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise ValueError(
            f"Unknown label type: Y must contain only 0 and 1; found {Y[row, col]!r} at row "
            f"{row}, column {col}"
            + (f" ({names[col]!r})." if names else ".")
        )
    return Y.astype(np.float32), names


def check_features(
    X, n_features: int | None = None, owner: str = "the estimator", min_samples: int = 0
) -> np.ndarray:
    """Return dense features as a C-contiguous float32 array, rejecting NaN and inf."""
    from scipy import sparse

    if sparse.issparse(X):
        raise TypeError("Sparse input is not supported; pass a dense array (X.toarray()).")
    X = np.asarray(X)
    if X.ndim != 2:
        raise ValueError(
            f"Expected a 2-D feature array, got shape {X.shape}. Reshape your data with "
            "X.reshape(1, -1) for a single sample."
        )
    if np.iscomplexobj(X):
        raise ValueError("Complex data not supported.")
    if X.shape[1] == 0:
        raise ValueError(f"Found array with 0 feature(s) (shape={X.shape}) while a minimum of "
                         "1 is required.")
    if X.shape[0] < min_samples:
        raise ValueError(f"Found array with {X.shape[0]} sample(s) (shape={X.shape}) while a "
                         f"minimum of {min_samples} is required.")
    try:
        X = np.ascontiguousarray(X, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"X must hold numbers: {exc}") from None
    finite = np.isfinite(X)
    if not finite.all():
        row, col = np.argwhere(~finite)[0]
        what = "NaN" if np.isnan(X[row, col]) else "infinity"
        raise ValueError(f"Input X contains {what} at row {row}, column {col}; features must "
                         "be finite.")
    if n_features is not None and X.shape[1] != n_features:
        raise ValueError(f"X has {X.shape[1]} features, but {owner} is expecting "
                         f"{n_features} features as input.")
    return X


def check_positive_int(value, name: str, minimum: int = 1) -> int:
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}.")
    return int(value)
