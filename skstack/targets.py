"""Targets: what a classifier learns.

One place for the target kinds a skstack classifier takes (a 0/1 label matrix, or a 1-D
binary or multiclass target), their checks, and the adapters between the (n, L)
probabilities the models compute and scikit-learn's layouts for 1-D targets. How
probabilities become label sets (the decision rule) lives in ``rules``.

Import rule: numpy, scikit-learn's tags, ``skstack._validation`` and ``skstack.metrics``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.utils import ClassifierTags

from skstack._validation import CheckedLabels, check_label_matrix
from skstack.metrics import jaccard_accuracy


@dataclass(frozen=True)
class Target:
    """A validated classification target.

    ``Y`` is always a 0/1 float32 matrix: the label matrix itself (``kind="multilabel"``),
    one column for the second class of a binary target, or one column per class (one-hot)
    of a multiclass target. ``classes`` are the class labels of a 1-D target (label indices
    of a label matrix); ``names`` the columns of a DataFrame target.
    """

    Y: np.ndarray
    kind: str
    classes: np.ndarray
    names: list[str] | None = None


def check_target(y, n_samples: int | None = None, classes=None, name: str = "y") -> Target:
    """Validate a label matrix, or a 1-D binary / multiclass target of class labels.

    ``classes`` (those of an earlier fit) encodes a 1-D target against known classes, and
    refuses labels outside them. A column vector (n, 1) whose values are not all 0/1 is read
    as 1-D, as scikit-learn reads it.
    """
    if y is None:
        raise ValueError("This estimator requires y to be passed, but the target y is None.")
    if isinstance(y, CheckedLabels) and y.ndim == 2:  # a parent checked it
        Y, names = check_label_matrix(y, n_samples, name)
        return Target(Y, "multilabel", np.arange(Y.shape[1]), names)
    values = y.to_numpy() if hasattr(y, "to_numpy") and getattr(y, "ndim", 2) == 1 else y
    if not (hasattr(values, "shape") or hasattr(values, "__array__")
            or isinstance(values, (list, tuple))):
        raise ValueError(f"{name} must be array-like, got {type(y).__name__}.")
    array = None if hasattr(values, "tocsr") else np.asarray(values)
    if array is not None and array.ndim == 2 and array.shape[1] == 1 and array.size and (
            array.dtype.kind not in "biuf" or not np.isin(array, (0, 1)).all()):
        array = array[:, 0]
    if array is None or array.ndim != 1:
        Y, names = check_label_matrix(y, n_samples, name)
        return Target(Y, "multilabel", np.arange(Y.shape[1]), names)
    if n_samples is not None and len(array) != n_samples:
        raise ValueError(f"{name} has {len(array)} rows but X has {n_samples}; they must match.")
    if len(array) == 0:
        raise ValueError(f"Found array with 0 sample(s) in {name} while a minimum of 1 is "
                         "required.")
    if array.dtype.kind == "f":
        if not np.isfinite(array).all():
            raise ValueError(f"{name} contains NaN or infinity at position "
                             f"{int(np.argmin(np.isfinite(array)))}; class labels must be set.")
        if (array != np.round(array)).any():
            raise ValueError(f"Unknown label type: continuous. {name} holds non-integer numbers "
                             f"such as {array[array != np.round(array)][0]!r}; a classifier "
                             "needs class labels or a 0/1 label matrix.")
    try:
        found = np.unique(array)
    except TypeError:
        raise ValueError(f"Unknown label type: {name} mixes types of class labels "
                         f"({sorted({type(v).__name__ for v in array})}).") from None
    if classes is None:
        classes = found
        if len(classes) < 2:
            raise ValueError(f"{name} holds only one class ({classes[0].item()!r}); a "
                             "classifier needs samples of at least 2 classes.")
    unknown = np.setdiff1d(found, classes)
    if len(unknown):
        raise ValueError(f"{name} holds the class {unknown[0].item()!r}, which was not in the "
                         f"classes fitted before ({np.asarray(classes).tolist()}).")
    if len(classes) == 2:
        return Target((array == classes[1]).astype(np.float32)[:, None], "binary", classes)
    onehot = (array[:, None] == np.asarray(classes)[None, :]).astype(np.float32)
    return Target(onehot, "multiclass", np.asarray(classes))


def check_fitted_target(owner: str, fitted) -> None:
    """For state restored from a file: ``n_labels_``, ``label_names_`` and ``classes_`` of a
    fitted classifier agree with each other and its ``target_type_``, as a fit leaves them."""
    n_labels, kind = fitted.n_labels_, fitted.target_type_
    names = getattr(fitted, "label_names_", None)
    if names is not None and len(names) != n_labels:
        raise ValueError(f"the fitted attribute 'label_names_' of {owner} holds {len(names)} "
                         f"names for n_labels_={n_labels} labels.")
    classes = getattr(fitted, "classes_", None)
    if classes is not None:
        expected = 2 if kind == "binary" else n_labels
        if np.ndim(classes) != 1 or len(classes) != expected or len(set(
                np.asarray(classes).tolist())) != len(classes):
            raise ValueError(f"the fitted attribute 'classes_' of {owner} must hold {expected} "
                             f"distinct classes for a {kind} target of {n_labels} label(s); got "
                             f"{classes!r:.80}.")
    if kind == "binary" and n_labels != 1:
        raise ValueError(f"the fitted attribute 'n_labels_' of {owner} must be 1 for a binary "
                         f"target; got {n_labels}.")


def multilabel_classifier_tags(tags):
    """scikit-learn tags of a classifier whose target is a 2-D 0/1 label matrix or a 1-D
    binary or multiclass target."""
    tags.estimator_type = "classifier"
    tags.classifier_tags = ClassifierTags(multi_class=True, multi_label=True)
    tags.target_tags.required = True
    tags.target_tags.two_d_labels = True
    tags.target_tags.multi_output = True
    tags.target_tags.single_output = True
    return tags


def class_proba(P: np.ndarray, target_type: str) -> np.ndarray:
    """``predict_proba`` in scikit-learn's layout: a binary target's one column P(second
    class) becomes (n, 2); label matrices and multiclass targets keep theirs."""
    return np.hstack([1 - P, P]) if target_type == "binary" else P


def class_predictions(P: np.ndarray, pred: np.ndarray, classes: np.ndarray,
                      target_type: str) -> np.ndarray:
    """``predict`` from the (n, L) probabilities and 0/1 decisions: the 0/1 matrix for label
    matrices, class labels for 1-D targets (multiclass: the most probable class)."""
    if target_type == "multiclass":
        return classes[P.argmax(axis=1)]
    return classes[pred[:, 0]] if target_type == "binary" else pred


def target_score(y, pred: np.ndarray, target_type: str) -> float:
    """``score``: Jaccard accuracy against a label matrix, accuracy against a 1-D target."""
    if target_type != "multilabel":
        return float(np.mean(pred == np.asarray(y).ravel()))
    return jaccard_accuracy(y, pred)
