"""Input and parameter checks shared by every estimator.

Data checks (texts, label matrices, dense features, probabilities) name the first offending
position so that a user can find the bad row. Parameter checks are declarative: each
estimator lists its parameters' valid values once, in a ``_parameter_constraints`` table
(after scikit-learn's convention), and the :func:`validates_params` decorator checks the
table before every ``fit``, with one message format.

Import rule: a leaf. numpy, scipy, the standard library and (inside functions)
scikit-learn's splitters; no skstack module.
"""

from __future__ import annotations

import functools
import numbers
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np


class InvalidParameterError(ValueError, TypeError):
    """A constructor parameter has a value outside its declared constraints."""


# ----------------------------------------------------------------------------- constraints


@dataclass(frozen=True)
class Interval:
    """Numbers of ``kind`` (``numbers.Integral`` or ``numbers.Real``) between two bounds.

    ``closed`` says which bounds belong to the interval: ``"both"``, ``"left"``,
    ``"right"`` or ``"neither"``. ``None`` as a bound means unbounded.
    """

    kind: type
    low: float | None
    high: float | None
    closed: str = "both"

    def accepts(self, value) -> bool:
        if isinstance(value, bool) or not isinstance(value, self.kind):
            return False
        if isinstance(value, numbers.Real) and not np.isfinite(value):
            return False  # nan, and inf: no parameter here means "infinitely many"
        if self.low is not None:
            if value < self.low or (value == self.low and self.closed in ("right", "neither")):
                return False
        if self.high is not None:
            if value > self.high or (value == self.high and self.closed in ("left", "neither")):
                return False
        return True

    def describe(self) -> str:
        what = "an integer" if self.kind is numbers.Integral else "a number"
        if self.low is not None and self.high is not None:
            left = "[" if self.closed in ("both", "left") else "("
            right = "]" if self.closed in ("both", "right") else ")"
            return f"{what} in {left}{self.low}, {self.high}{right}"
        if self.low is not None:
            return f"{what} {'>=' if self.closed in ('both', 'left') else '>'} {self.low}"
        if self.high is not None:
            return f"{what} {'<=' if self.closed in ('both', 'right') else '<'} {self.high}"
        return what


@dataclass(frozen=True)
class Options:
    """One of a fixed set of values (strings, usually)."""

    values: tuple

    def accepts(self, value) -> bool:
        return isinstance(value, str) and value in self.values

    def describe(self) -> str:
        return "one of " + ", ".join(repr(v) for v in self.values)


@dataclass(frozen=True)
class Check:
    """Any value for which ``test`` returns True; ``description`` completes 'must be ...'."""

    test: Callable[[object], bool]
    description: str

    def accepts(self, value) -> bool:
        return bool(self.test(value))

    def describe(self) -> str:
        return self.description


def _is_array_like(value) -> bool:
    return isinstance(value, (list, tuple, np.ndarray))


# The constraint vocabulary: besides Interval, Options and Check, a table may use these.
BOOLEAN = Check(lambda v: isinstance(v, (bool, np.bool_)), "a bool")
NONE = Check(lambda v: v is None, "None")
STRING = Check(lambda v: isinstance(v, str), "a str")
PATH = Check(lambda v: isinstance(v, (str, os.PathLike)), "a path")
ARRAY_LIKE = Check(_is_array_like, "an array-like")
CALLABLE = Check(callable, "a callable")
ESTIMATOR = Check(lambda v: hasattr(v, "fit") and not isinstance(v, type), "an estimator")
SEED = [Interval(numbers.Integral, 0, 2**32 - 1), NONE]
# a cross-validation splitter object (a str has a split method too, and is not one)
SPLITTER = Check(lambda v: hasattr(v, "split") and not isinstance(v, (str, bytes)),
                 "a CV splitter")


def _unique_names(v) -> bool:
    return isinstance(v, (list, tuple)) and all(isinstance(n, str) for n in v) and \
        len(set(v)) == len(v)


def _blocks(v) -> bool:
    return isinstance(v, list) and _unique_names([p[0] for p in v if isinstance(
        p, (list, tuple)) and len(p) == 2]) and all(
        isinstance(p, (list, tuple)) and len(p) == 2 and Interval(numbers.Integral, 1, None)
        .accepts(p[1]) for p in v)


def _finite_numbers(v) -> bool:
    try:
        array = np.asarray(v, dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        return False
    return array.ndim == 1 and bool(np.isfinite(array).all())


# fitted attributes, for the state a file restores (_state_constraints tables)
NAMES = Check(_unique_names, "a list of distinct strings")
BLOCKS = Check(_blocks, "a list of (name, width >= 1) pairs with distinct names")
FINITE_LIST = Check(_finite_numbers, "a list of finite numbers")
COUNT = Interval(numbers.Integral, 0, None)
TARGET_TYPES = Options(("multilabel", "binary", "multiclass"))


def make_splitter(cv, y=None, random_state: int | None = None):
    """The splitter of a ``cv`` parameter: a splitter as given; an int ``k`` is ``KFold``
    (``StratifiedKFold`` for a 1-D class target), shuffled with ``random_state``, or with
    seed 0 when that is ``None``: rows are often sorted by label (unshuffled folds would
    then each miss whole labels), and every fit and every ``clone`` gets the same folds."""
    from sklearn.model_selection import KFold, StratifiedKFold, check_cv

    if not isinstance(cv, numbers.Integral):
        return check_cv(cv)
    kind = StratifiedKFold if y is not None and np.ndim(y) == 1 else KFold
    return kind(int(cv), shuffle=True, random_state=0 if random_state is None else random_state)


def unwrap_search(estimator, action: str):
    """The model a fitted search (``GridSearchCV``, ``RandomizedSearchCV``, ...) stands for:
    its ``best_estimator_``; any other estimator as it is. A search fitted with
    ``refit=False`` holds no model, and ``action`` (e.g. ``"save"``) is refused saying what to
    pass instead."""
    if not hasattr(estimator, "cv_results_"):
        return estimator
    if hasattr(estimator, "best_estimator_"):
        return estimator.best_estimator_
    raise ValueError(
        f"This {type(estimator).__name__} was fitted with refit=False and holds no fitted "
        f"model to {action}: fit it with refit=True (or refit=<scorer name> with several "
        "scorers), or fit estimator.set_params(**search.best_params_) yourself and pass that."
    )


def check_params(owner: str, table: Mapping[str, list], params: Mapping[str, object]) -> None:
    """Check each of ``params`` named in ``table`` against its constraints; raise
    :class:`InvalidParameterError` on the first that matches none of them."""
    for name, constraints in table.items():
        if name not in params:
            continue
        value = params[name]
        if not any(c.accepts(value) for c in constraints):
            expected = " or ".join(c.describe() for c in constraints)
            raise parameter_error(owner, name, expected, value)


def check_state(owner: str, table: Mapping[str, list], obj: object) -> None:
    """Check the fitted attributes of ``obj`` named in ``table`` (those it has) against
    their constraints, as :func:`check_params` does for parameters: for state restored from
    a file, which a fit did not make."""
    for name, constraints in table.items():
        if not hasattr(obj, name):
            continue
        value = getattr(obj, name)
        if not any(c.accepts(value) for c in constraints):
            expected = " or ".join(c.describe() for c in constraints)
            raise ValueError(f"the fitted attribute {name!r} of {owner} must be {expected}; "
                             f"got {value!r:.80}.")


def validate_params(estimator: object) -> None:
    """Check an estimator's parameters against its ``_parameter_constraints`` table."""
    check_params(type(estimator).__name__, type(estimator)._parameter_constraints,
                 estimator.get_params(deep=False))


def validates_params(fit: Callable) -> Callable:
    """Decorate an estimator's ``fit`` (or the method every fit goes through): its parameters
    are checked against its ``_parameter_constraints`` table before the method runs, as
    scikit-learn's ``_fit_context`` does, so that no fit path can skip the check."""
    @functools.wraps(fit)
    def checked(self, *args, **kwargs):
        validate_params(self)
        return fit(self, *args, **kwargs)
    return checked


def parameter_error(owner: str, name: str, expected: str, value) -> InvalidParameterError:
    """The error for a parameter outside its valid values, in the package's one format; also
    for checks a table cannot express (those that depend on the data or on another
    parameter)."""
    return InvalidParameterError(
        f"The {name!r} parameter of {owner} must be {expected}; got {value!r:.80}."
    )


# ----------------------------------------------------------------------------- data


class CheckedTexts(list):
    """Texts :func:`check_texts` has validated: a parent (the stack) hands them to its
    members, which take them without checking them again. A slice or a new list is an
    ordinary list, checked like any other input."""


def check_texts(X) -> list[str]:
    """Return ``X`` as a list of ``str`` (a :class:`CheckedTexts`), or raise naming the
    first bad element.

    Accepts a list or tuple of str, a 1-D numpy array, a pandas Series or a one-column
    DataFrame. ``None``, NaN, numbers, bytes and nested sequences are rejected.
    """
    if isinstance(X, CheckedTexts):
        return X
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
    try:
        "".join(texts).encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: bytes decoded with errors="surrogateescape"
        for i, text in enumerate(texts):
            try:
                text.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise ValueError(
                    f"Text at position {i} is not valid Unicode: a lone surrogate "
                    f"{text[exc.start]!r} at character {exc.start} ({text[:40]!r}). Decode the "
                    "bytes with errors='replace', or fix the text."
                ) from None
    return CheckedTexts(texts)


def blank_rows(texts: Sequence[str]) -> list[int]:
    """The rows of ``texts`` with no characters but white space: a model answers those from
    what it learned of no words (its priors, bent by its thresholds), not from the text."""
    return [i for i, text in enumerate(texts) if not text.strip()]


def _describe(value) -> str:
    if value is None:
        return "None"
    if isinstance(value, float) and np.isnan(value):
        return "NaN (float)"
    return f"of type {type(value).__name__} ({value!r:.40})"


class CheckedLabels(np.ndarray):
    """A label matrix :func:`check_label_matrix` has validated (0/1 values, 2-D, its
    ``names``). A parent estimator hands it to the estimators inside it, which then take it
    without checking it again; its rows (a fold's labels) stay checked. Arithmetic on it gives
    plain arrays, which are checked like any other input."""

    names: list[str] | None = None

    def __array_finalize__(self, obj) -> None:
        names = getattr(obj, "names", None)
        # a column subset keeps 0/1 values but not the names of the columns it dropped
        self.names = names if names is not None and self.ndim == 2 and \
            len(names) == self.shape[-1] else None

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        plain = [np.asarray(x) if isinstance(x, CheckedLabels) else x for x in inputs]
        if "out" in kwargs:
            kwargs["out"] = tuple(np.asarray(x) if isinstance(x, CheckedLabels) else x
                                  for x in kwargs["out"])
        return getattr(ufunc, method)(*plain, **kwargs)


def check_label_matrix(
    Y, n_samples: int | None = None, name: str = "Y"
) -> tuple[np.ndarray, list[str] | None]:
    """Validate a multi-label target: a 2-D 0/1 array, sparse matrix or DataFrame.

    Returns the matrix as ``float32`` (a :class:`CheckedLabels`) and the label names (the
    DataFrame's columns, or ``None`` otherwise). The one label-matrix check of the package:
    estimators, metrics and decision rules all use it. A :class:`CheckedLabels` is checked
    for its number of rows only.
    """
    if isinstance(Y, CheckedLabels) and Y.ndim == 2:
        if n_samples is not None and Y.shape[0] != n_samples:
            raise ValueError(f"{name} has {Y.shape[0]} rows but X has {n_samples}; they must "
                             "match.")
        return Y.astype(np.float32, copy=False), Y.names
    return _validated_label_matrix(Y, n_samples, name)


def _validated_label_matrix(Y, n_samples: int | None, name: str
                            ) -> tuple[CheckedLabels, list[str] | None]:
    """:func:`check_label_matrix` of an input nobody checked before."""
    from scipy import sparse

    if Y is None:
        raise ValueError("This estimator requires y to be passed, but the target y is None.")
    names = None
    if hasattr(Y, "columns"):
        names = [str(c) for c in Y.columns]
        Y = Y.to_numpy()
    if sparse.issparse(Y):
        Y = Y.toarray()
    Y = np.asarray(Y)
    if Y.ndim != 2:
        raise ValueError(
            f"{name} must be a 2-D label matrix of shape (n_samples, n_labels) with 0/1 "
            f"entries; got an array of shape {Y.shape}. For a single label use "
            f"{name}.reshape(-1, 1)."
        )
    if Y.shape[1] == 0:
        raise ValueError(f"{name} has 0 label columns; at least one label is needed.")
    if n_samples is not None and Y.shape[0] != n_samples:
        raise ValueError(f"{name} has {Y.shape[0]} rows but X has {n_samples}; they must match.")
    if not (np.issubdtype(Y.dtype, np.number) or Y.dtype == bool):
        raise ValueError(f"{name} must hold numbers 0/1, got dtype {Y.dtype}.")
    bad = ~np.isin(Y, (0, 1))
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise ValueError(
            f"Unknown label type: {name} must contain only 0 and 1; found "
            f"{Y[row, col].item()!r} at row {row}, column {col}"
            + (f" ({names[col]!r})." if names else ".")
        )
    checked = Y.astype(np.float32).view(CheckedLabels)
    checked.names = names
    return checked, names


def check_proba(proba, n_labels: int | None = None, name: str = "proba") -> np.ndarray:
    """(n, L) float64 probabilities from any multi-label ``predict_proba``: one (n, L) array,
    or a list of L (n, 2) arrays (one per label, as tree ensembles return). Values must lie in
    [0, 1]."""
    if isinstance(proba, list) and proba and all(
        isinstance(p, np.ndarray) and p.ndim == 2 for p in proba
    ):
        proba = np.column_stack([p[:, -1] for p in proba])
    P = np.asarray(proba, dtype=np.float64)
    if P.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n_samples, n_labels), got shape {P.shape}.")
    if n_labels == 1 and P.shape[1] == 2:  # a binary classifier's [P(0), P(1)]
        P = P[:, 1:]
    if n_labels is not None and P.shape[1] != n_labels:
        raise ValueError(f"{name} has {P.shape[1]} label columns, expected {n_labels}.")
    bad = ~((P >= 0) & (P <= 1))  # NaN fails both comparisons
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise ValueError(
            f"{name} must hold probabilities in [0, 1]; found {P[row, col].item()!r} at row {row}, "
            f"column {col}."
        )
    return P


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
        raise type(exc)(f"X must hold numbers: {exc}") from None
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

