"""AveragedClassifier: the mean of several classifiers' label probabilities.

Averaging nets that differ only in their seed, or in the rows they were trained on, removes
much of what one fit owes to chance (its initialisation, its early-stopping split). It is
how :class:`~skstack.thresholds.TunedThresholds` keeps its fold models with ``cv=k,
refit=False``: each row's held-out probability tunes the rule, and new rows get the mean of
the ``k`` fold models, so no model is fitted twice.

Import rule: numpy, scikit-learn, ``skstack._validation``, ``skstack.persistence`` (the
save protocol) and ``skstack.targets`` only.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, MetaEstimatorMixin, clone
from sklearn.utils import get_tags
from sklearn.utils.validation import check_is_fitted

from skstack._validation import TARGET_TYPES, Check, check_proba, validates_params
from skstack.persistence import VersionedState
from skstack.targets import (
    check_fitted_target,
    check_target,
    class_predictions,
    class_proba,
    multilabel_classifier_tags,
)


def _named(estimators) -> bool:
    return isinstance(estimators, (list, tuple)) and len(estimators) > 0 and all(
        isinstance(e, tuple) and len(e) == 2 and isinstance(e[0], str) and hasattr(e[1], "fit")
        for e in estimators)


class AveragedClassifier(VersionedState, MetaEstimatorMixin, ClassifierMixin, BaseEstimator):
    """Fit several classifiers on the same rows and predict the mean of their probabilities.

    Parameters
    ----------
    estimators : list of (str, estimator) tuples
        Multi-label classifiers with ``predict_proba``, each fitted (a clone) on every row:
        typically one net under several seeds.

    Attributes
    ----------
    estimators_ : list of (str, estimator) tuples
        The fitted classifiers. Inside ``TunedThresholds(cv=k, refit=False)`` these are the
        fold models, each fitted on its fold's training rows.
    classes_ : ndarray
        Label indices ``0 .. n_labels - 1``, or the classes of a 1-D ``y``.
    target_type_ : {"multilabel", "binary", "multiclass"}
    n_labels_ : int

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn.multiclass import OneVsRestClassifier
    >>> from skstack.averaging import AveragedClassifier
    >>> X = np.array([[0.0], [1.0], [0.2], [0.9]])
    >>> Y = np.array([[1, 0], [0, 1], [1, 0], [0, 1]])
    >>> avg = AveragedClassifier([("c1", OneVsRestClassifier(LogisticRegression(C=1.0))),
    ...                           ("c10", OneVsRestClassifier(LogisticRegression(C=10.0)))])
    >>> avg.fit(X, Y).predict(X).tolist()
    [[1, 0], [0, 1], [1, 0], [0, 1]]
    """

    _portable_state: ClassVar[tuple[str, ...]] = ("classes_", "target_type_", "n_labels_")
    _portable_parts: ClassVar[tuple[str, ...]] = ("estimators_",)
    _state_constraints: ClassVar[dict[str, list]] = {
        "target_type_": [TARGET_TYPES],
        "estimators_": [Check(_named, "a non-empty list of (name, fitted estimator) pairs")],
    }
    _parameter_constraints: ClassVar[dict[str, list]] = {
        "estimators": [Check(_named, "a non-empty list of (name, estimator) pairs")],
    }

    def __init__(self, estimators):
        self.estimators = estimators

    def _check_state(self) -> None:
        """Restored state (``skstack.load``): the target agrees with the classes."""
        check_fitted_target(type(self).__name__, self)

    @validates_params
    def fit(self, X, y, **fit_params):
        """Fit a clone of every estimator on ``(X, y)``.

        Returns
        -------
        self : AveragedClassifier
        """
        target = check_target(y)
        self._set_target(target)
        self.estimators_ = [(name, clone(est).fit(X, y, **fit_params))
                            for name, est in self.estimators]
        return self

    def _set_target(self, target) -> None:
        self.target_type_, self.classes_ = target.kind, target.classes
        self.n_labels_ = target.Y.shape[1]

    @classmethod
    def of_fitted(cls, estimators: list, target) -> AveragedClassifier:
        """An AveragedClassifier of classifiers fitted elsewhere (a ``(name, estimator)``
        list) on the ``target`` (:func:`skstack.targets.check_target`) they learned."""
        averaged = cls(estimators)
        averaged._set_target(target)
        averaged.estimators_ = list(estimators)
        return averaged

    @property
    def n_features_in_(self) -> int:
        check_is_fitted(self, "estimators_")
        return self.estimators_[0][1].n_features_in_

    def _labels_proba(self, X) -> np.ndarray:
        check_is_fitted(self, "estimators_")
        return np.mean([check_proba(est.predict_proba(X), self.n_labels_,
                                    name=f"{name}'s predict_proba output")
                        for name, est in self.estimators_], axis=0)

    def predict_proba(self, X) -> np.ndarray:
        """The mean of the estimators' probabilities, shape (n_samples, n_labels); for a 1-D
        ``y``, class probabilities of shape (n_samples, n_classes)."""
        return class_proba(self._labels_proba(X), self.target_type_)

    def predict(self, X) -> np.ndarray:
        """Labels whose mean probability is at least 0.5 (the most probable class for a
        multiclass ``y``); wrap in ``TunedThresholds`` to tune the rule instead."""
        P = self._labels_proba(X)
        return class_predictions(P, (P >= 0.5).astype(int), self.classes_, self.target_type_)

    def __sklearn_tags__(self):
        tags = multilabel_classifier_tags(super().__sklearn_tags__())
        first = self.estimators[0][1] if _named(self.estimators) else None
        if first is not None:
            tags.input_tags = get_tags(first).input_tags
        return tags
