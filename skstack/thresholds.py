"""The estimators of the decision rule: tuned (:class:`TunedThresholds`) or fixed
(:class:`FixedThresholds`), and the tuning itself (:func:`tune_thresholds`). The rule,
its checks and :func:`decide` live in ``rules``.

Which rule is best depends on the metric (see ``docs/decision_rules.md``): per-label
thresholds tuned for each label's F1 maximise macro-F1, while thresholds tuned for Jaccard
accuracy win on Jaccard. ``min_labels=1`` gives every text at least its top label.

Two ways in: the functions :func:`tune_thresholds` and :func:`decide` work on the output of
any ``predict_proba``; :class:`TunedThresholds` wraps any multi-label classifier and learns
its rule in ``fit`` (held-out or out-of-fold rows), keeping the rule out of the model, as
scikit-learn's ``TunedThresholdClassifierCV`` does for binary classifiers;
:class:`FixedThresholds` wraps one with a rule you give, as ``FixedThresholdClassifier``.

Import rule: numpy, scikit-learn, ``skstack._config``, ``skstack._validation``,
``skstack.averaging``, ``skstack.metrics``, ``skstack.persistence`` (the save protocol),
``skstack.rules`` and ``skstack.targets`` only.
"""

from __future__ import annotations

import numbers
from typing import ClassVar

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, MetaEstimatorMixin, clone
from sklearn.model_selection import ShuffleSplit
from sklearn.utils import _safe_indexing, get_tags
from sklearn.utils.validation import _num_samples, check_is_fitted

from skstack._config import progress
from skstack._validation import (
    ARRAY_LIKE,
    BOOLEAN,
    COUNT,
    ESTIMATOR,
    NAMES,
    NONE,
    SEED,
    SPLITTER,
    TARGET_TYPES,
    Check,
    Interval,
    Options,
    check_label_matrix,
    check_params,
    check_proba,
    make_splitter,
    parameter_error,
    validates_params,
)
from skstack.averaging import AveragedClassifier
from skstack.metrics import jaccard_from_counts
from skstack.persistence import VersionedState
from skstack.rules import (
    LIMIT_CONSTRAINTS,
    _decide,
    check_label_limits,
    check_rule,
    decide,
    label_ranks,
    rule_mask,
)
from skstack.targets import (
    check_fitted_target,
    check_target,
    class_predictions,
    class_proba,
    multilabel_classifier_tags,
    target_score,
)

# decide lives in rules (the net decides with it too); it stays importable from here
__all__ = ["OBJECTIVES", "RULE_CONSTRAINTS", "FixedThresholds", "TunedThresholds", "decide",
           "score_predictions", "tune_thresholds"]

OBJECTIVES = ("macro_f1", "micro_f1", "jaccard")
# Quantile levels of the scores tried as thresholds: even steps, then ever closer to the top,
# where the best threshold of a rare label lies (a label with 1 % positives wants ~ the 99th).
_LEVELS = np.concatenate([np.linspace(0.0, 0.9, 46), 1 - np.logspace(-1, -4, 40)[1:]])

# The rule's parameters, shared by tune_thresholds and TunedThresholds.
RULE_CONSTRAINTS = {
    "objective": [Options(OBJECTIVES)],
    "per_label": [BOOLEAN],
    "shrinkage": [Interval(numbers.Real, 0, None)],
    **LIMIT_CONSTRAINTS,
}


def _candidates(P: np.ndarray, grid) -> tuple[np.ndarray, np.ndarray]:
    """Shared candidates (T,) and per-label candidates (T, L)."""
    if grid is not None:
        grid = np.asarray(grid, dtype=np.float64)
        return grid, np.repeat(grid[:, None], P.shape[1], axis=1)
    return np.quantile(P, _LEVELS), np.quantile(P, _LEVELS, axis=0)


def _f1(tp, fp, fn):
    denom = 2 * tp + fp + fn
    return np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 0.0)


def score_predictions(Y: np.ndarray, pred: np.ndarray, objective: str) -> np.ndarray:
    """``objective`` of 0/1 predictions; ``pred`` may carry leading candidate axes (..., n, L)."""
    Y = np.asarray(Y, dtype=bool)
    pred = np.asarray(pred, dtype=bool)
    hits = Y & pred  # the one pass over every candidate's cells; the rest are sums
    if objective == "jaccard":
        inter = hits.sum(axis=-1)
        return jaccard_from_counts(inter, Y.sum(axis=-1) + pred.sum(axis=-1) - inter).mean(
            axis=-1)
    tp = hits.sum(axis=-2)
    fp = pred.sum(axis=-2) - tp
    fn = Y.sum(axis=-2) - tp
    if objective == "macro_f1":
        return _f1(tp, fp, fn).mean(axis=-1)
    if objective == "micro_f1":
        return _f1(tp.sum(axis=-1), fp.sum(axis=-1), fn.sum(axis=-1))
    raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}.")


def tune_thresholds(
    y_true,
    proba,
    objective: str = "macro_f1",
    per_label: bool = True,
    min_labels: int = 0,
    max_labels: int | None = None,
    shrinkage: float = 0.0,
    grid=None,
    max_sweeps: int = 5,
) -> np.ndarray:
    """Thresholds (one per label) that maximise ``objective`` on held-out predictions.

    Parameters
    ----------
    y_true : array-like of shape (n_samples, n_labels)
        0/1 gold labels of the held-out rows (a validation split or out-of-fold rows).
    proba : array-like of shape (n_samples, n_labels)
        Predicted probabilities for the same rows.
    objective : {"macro_f1", "micro_f1", "jaccard"}, default="macro_f1"
    per_label : bool, default=True
        ``False``: one shared threshold (exhaustive search over ``grid``). ``True``: start
        from the shared one and improve each label's threshold in turn (coordinate ascent)
        until no label changes; for macro-F1 this is each label's own best-F1 threshold.
    min_labels, max_labels : int
        The rule of :func:`decide` that the thresholds are tuned under.
    shrinkage : float, default=0.0
        Pull each per-label threshold toward the shared one by ``shrinkage`` pseudo-positives:
        ``t_l = (n_l t_l + k t_shared) / (n_l + k)`` with ``n_l`` the label's positives.
        Rare labels, tuned on few positives, move most.
    grid : array-like, default=None
        Thresholds to try. ``None`` tries quantiles of the scores (of all scores for the
        shared threshold, of each label's scores per label), dense near the top, so the
        search adapts to how the model's probabilities are spread.
    max_sweeps : int, default=5

    Returns
    -------
    ndarray of shape (n_labels,)

    Examples
    --------
    >>> Y = np.array([[1, 0], [0, 1], [1, 1], [0, 0]])
    >>> P = np.array([[0.6, 0.2], [0.3, 0.8], [0.2, 0.9], [0.1, 0.7]])
    >>> tune_thresholds(Y, P, objective="macro_f1", grid=[0.1, 0.25, 0.5, 0.75]).tolist()
    [0.5, 0.75]
    """
    check_params("tune_thresholds", RULE_CONSTRAINTS, {
        "objective": objective, "per_label": per_label, "shrinkage": shrinkage,
        "min_labels": min_labels, "max_labels": max_labels})
    Y = check_label_matrix(y_true, name="y_true")[0].astype(bool)
    P = check_proba(proba)
    if Y.shape != P.shape:
        raise ValueError(f"y_true {Y.shape} and proba {P.shape} must be of one shape.")
    if len(Y) == 0:
        raise ValueError("tune_thresholds needs at least one row of held-out predictions; "
                         "y_true and proba have 0 rows.")
    n_labels = Y.shape[1]
    check_label_limits("tune_thresholds", min_labels, max_labels, n_labels)
    shared_grid, label_grid = _candidates(P, grid)
    ranks = label_ranks(P) if min_labels or max_labels is not None else None

    def best(candidates: np.ndarray) -> tuple[int, float]:
        """Index of the first candidate rule with the highest score, and that score."""
        scores = score_predictions(Y, rule_mask(P, candidates, min_labels, max_labels, ranks),
                                   objective)
        i = int(np.argmax(scores))
        return i, float(scores[i])

    i, current = best(np.repeat(shared_grid[:, None, None], n_labels, axis=2))
    shared = float(shared_grid[i])
    thresholds = np.full(n_labels, shared)
    if not per_label:
        return thresholds
    for _ in range(max_sweeps):
        changed = False
        for label in range(n_labels):
            candidates = np.repeat(thresholds[None, None, :], len(label_grid), axis=0)
            candidates[:, 0, label] = label_grid[:, label]
            i, score = best(candidates)
            if score > current + 1e-12:
                thresholds[label], current, changed = label_grid[i, label], score, True
        if not changed:
            break
    if shrinkage:
        positives = Y.sum(axis=0)
        thresholds = (positives * thresholds + shrinkage * shared) / (positives + shrinkage)
    return thresholds


def _check_tuning_rows(n_rows: int) -> None:
    if n_rows < 2:
        raise ValueError(f"Only {n_rows} sample(s) to tune the thresholds on; give more rows or a "
                         "larger held-out fraction (cv).")


class _RuleStep(VersionedState, MetaEstimatorMixin, ClassifierMixin, BaseEstimator):
    """What the rule estimators share: a wrapped classifier (``estimator_``), the target it
    learned, ``thresholds_`` with ``min_labels``/``max_labels``, and predictions under that
    rule. Subclasses fit the classifier and set the thresholds."""

    # what a file's fitted state must be (checked when loaded, as fit would have made it)
    _state_constraints: ClassVar[dict[str, list]] = {
        "thresholds_": [NONE, Check(lambda v: np.ndim(v) == 1, "a 1-D array")],
        "best_score_": [Check(lambda v: isinstance(v, numbers.Real) and not np.isinf(v),
                              "a number (NaN when not tuned)")],
        "n_tuning_rows_": [COUNT],
        "n_samples_fit_": [COUNT],
        "label_names_": [NAMES],
        "target_type_": [TARGET_TYPES],
        "n_labels_": [Interval(numbers.Integral, 1, None)],
    }

    def _check_state(self) -> None:
        """Restored state (``skstack.load``): the labels agree, and the rule is one that
        :func:`decide` accepts."""
        owner = type(self).__name__
        missing = [k for k in ("n_labels_", "target_type_", "thresholds_")
                   if not hasattr(self, k)]
        if missing:
            raise ValueError(f"{owner} is fitted but lacks the fitted attribute {missing[0]!r}.")
        check_fitted_target(owner, self)
        if self.thresholds_ is not None:
            try:
                check_rule(owner, self.thresholds_, self.min_labels, self.max_labels,
                           self.n_labels_)
            except ValueError as exc:
                raise ValueError(f"the fitted attribute 'thresholds_': {exc}") from None

    def _learn_target(self, X, y):
        """Check ``y`` against ``X`` and the rule's limits; set the target's fitted
        attributes; return the target and what the wrapped classifier is fitted on."""
        target = check_target(y, _num_samples(X))
        Y = target.Y
        # the wrapped classifier sees the target as given: class labels stay class labels
        y_fit = Y if target.kind == "multilabel" else np.asarray(y).reshape(len(Y))
        self.target_type_, self.classes_, self.n_labels_ = target.kind, target.classes, Y.shape[1]
        self.n_samples_fit_ = len(Y)
        self.label_names_ = target.names or [str(c) for c in target.classes[-Y.shape[1]:]]
        check_label_limits(type(self).__name__, self.min_labels, self.max_labels, Y.shape[1])
        if target.kind == "binary" and self.min_labels:
            # one label: min_labels=1 would predict the second class for every row
            raise ValueError(
                f"min_labels={self.min_labels} gives every row of a label matrix at least that "
                f"many labels; y is a 1-D binary target (one label, classes "
                f"{target.classes.tolist()}), where min_labels=1 would predict "
                f"{target.classes.tolist()[1]!r} for every row. Use min_labels=0.")
        return target, y_fit

    @staticmethod
    def _proba(model, X, n_labels: int) -> np.ndarray:
        return check_proba(model.predict_proba(X), n_labels, name="predict_proba output")

    @property
    def n_features_in_(self) -> int:
        check_is_fitted(self, "estimator_")
        return self.estimator_.n_features_in_

    def _labels_proba(self, X) -> np.ndarray:
        check_is_fitted(self, "estimator_")
        return self._proba(self.estimator_, X, self.n_labels_)

    def predict_proba(self, X) -> np.ndarray:
        """Label probabilities of the wrapped classifier, shape (n_samples, n_labels); for a
        1-D ``y``, class probabilities of shape (n_samples, n_classes)."""
        return class_proba(self._labels_proba(X), self.target_type_)

    def predict(self, X) -> np.ndarray:
        """0/1 label matrix (n_samples, n_labels) under the rule; class labels for a 1-D
        ``y``."""
        P = self._labels_proba(X)
        pred = None if self.target_type_ == "multiclass" else _decide(
            P, self.thresholds_, self.min_labels, self.max_labels)
        return class_predictions(P, pred, self.classes_, self.target_type_)

    def score(self, X, y) -> float:
        """Jaccard accuracy (SemEval-2018 E-c definition) of :meth:`predict` against a label
        matrix ``y``; the accuracy against a 1-D ``y``."""
        check_is_fitted(self, "estimator_")
        return target_score(y, self.predict(X), self.target_type_)

    def __sklearn_tags__(self):
        tags = multilabel_classifier_tags(super().__sklearn_tags__())
        tags.input_tags = get_tags(self.estimator).input_tags
        return tags


class TunedThresholds(_RuleStep):
    """Wrap a multi-label classifier and learn the decision rule that turns its
    probabilities into label sets.

    A 1-D binary ``y`` is one label: the rule is the threshold on the second class's
    probability, and ``predict`` returns class labels. A multiclass ``y`` has no threshold to
    tune: the classifier is fitted on all rows and ``predict`` returns the most probable class.

    The rule (per-label or shared thresholds for an objective, at least ``min_labels`` and
    at most ``max_labels`` labels a row) is tuned on rows the model did not train on: a
    held-out fraction, out-of-fold predictions over all rows, or, for a model fitted
    elsewhere, the rows given to :meth:`fit`.

    Parameters
    ----------
    estimator : estimator
        A multi-label classifier with ``predict_proba`` returning (n, L) probabilities (or a
        list of L (n, 2) arrays): ``BiLSTMClassifier``,
        ``OneVsRestClassifier(LogisticRegression())``, ``MLPClassifier``, a ``Pipeline``
        ending in one of them, ...
    objective : {"macro_f1", "micro_f1", "jaccard"}, default="macro_f1"
        What the thresholds maximise. ``"jaccard"`` for SemEval-style scoring (example-based
        Jaccard accuracy), ``"macro_f1"`` when every label's F1 counts alike.
    per_label : bool, default=True
        One threshold per label (``True``) or one shared by all labels.
    shrinkage : float, default=0.0
        Pseudo-positives pulling each per-label threshold toward the shared one.
    min_labels : int, default=0
        Every row gets at least this many labels (its top-scoring ones). Refused for a 1-D
        binary ``y``, where it would predict the second class for every row.
    max_labels : int, default=None
        No row gets more labels than this.
    cv : float, int, cross-validation splitter or "prefit", default=5
        Where the tuning rows come from. A float in (0, 1): that fraction is held out
        (shuffled, unstratified, so label matrices work) and the rule is tuned on it. An int
        or a splitter: out-of-fold probabilities of every row. An int is ``KFold``
        (``StratifiedKFold`` for a 1-D ``y``) shuffled with ``random_state``, or with seed 0
        when it is ``None``: every fit (and every ``clone``) tunes on the same folds, and
        rows sorted by label still spread over them. ``"prefit"``: ``estimator`` is
        already fitted and the rule is tuned on the rows passed to :meth:`fit`.
    refit : bool or "auto", default="auto"
        Refit ``estimator`` on every row after tuning. ``"auto"``: ``True`` except with
        ``cv="prefit"``. With a float ``cv``, ``refit=False`` keeps the model fitted on the
        remaining rows, whose probabilities the rule was tuned on (advisable for nets, whose
        calibration changes from one fit to the next). With an int or a splitter,
        ``refit=False`` keeps the fold models and predicts the mean of their probabilities
        (:class:`~skstack.averaging.AveragedClassifier`): every row tunes the rule and no
        model is fitted twice.
    random_state : int, default=None
        Seeds the hold-out or fold shuffling. With a float ``cv`` and ``None``, the held-out
        rows differ from fit to fit (as ``train_test_split``'s); pass an int to repeat them.
        An int ``cv`` shuffles with seed 0 when this is ``None``.

    Attributes
    ----------
    estimator_ : estimator
        The fitted classifier used by :meth:`predict_proba`.
    thresholds_ : ndarray of shape (n_labels,)
    best_score_ : float
        The objective reached on the tuning rows under the tuned rule.
    n_tuning_rows_ : int
        How many rows the rule was tuned on.
    n_samples_fit_ : int
        How many rows ``fit`` received.
    label_names_ : list of str
        Column names of a DataFrame ``y``, else ``"0", "1", ...``.
    classes_ : ndarray
        Label indices ``0 .. n_labels - 1``, or the classes of a 1-D ``y``.
    target_type_ : {"multilabel", "binary", "multiclass"}
    n_labels_ : int
        Columns of ``predict_proba`` of the wrapped classifier (1 for a binary ``y``).

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn.multiclass import OneVsRestClassifier
    >>> from skstack import TunedThresholds
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(200, 5))
    >>> Y = (X[:, :3] + rng.normal(size=(200, 3)) > 0.5).astype(int)
    >>> clf = TunedThresholds(OneVsRestClassifier(LogisticRegression()), objective="jaccard",
    ...                       min_labels=1, cv=3, random_state=0).fit(X, Y)
    >>> clf.thresholds_.shape, int(clf.predict(X).sum(axis=1).min())
    ((3,), 1)
    """

    # what skstack.save keeps of a fitted rule, and the fitted classifier as a node
    _portable_state: ClassVar[tuple[str, ...]] = (
        "thresholds_", "best_score_", "n_tuning_rows_", "n_samples_fit_", "label_names_",
        "classes_", "target_type_", "n_labels_")
    _portable_parts: ClassVar[tuple[str, ...]] = ("estimator_",)

    _parameter_constraints: ClassVar[dict[str, list]] = {
        "estimator": [ESTIMATOR],
        **RULE_CONSTRAINTS,
        "cv": [Interval(numbers.Real, 0, 1, closed="neither"), Interval(numbers.Integral, 2, None),
               Options(("prefit",)), SPLITTER],
        "refit": [BOOLEAN, Options(("auto",))],
        "random_state": SEED,
    }

    def __init__(self, estimator, *, objective: str = "macro_f1", per_label: bool = True,
                 shrinkage: float = 0.0, min_labels: int = 0, max_labels: int | None = None,
                 cv=5, refit: bool | str = "auto", random_state: int | None = None):
        self.estimator = estimator
        self.objective = objective
        self.per_label = per_label
        self.shrinkage = shrinkage
        self.min_labels = min_labels
        self.max_labels = max_labels
        self.cv = cv
        self.refit = refit
        self.random_state = random_state

    @validates_params
    def fit(self, X, y, **fit_params):
        """Fit the classifier and tune the rule on rows it did not train on.

        Parameters
        ----------
        X : array-like or sequence of str
            Whatever ``estimator`` takes.
        y : array-like of shape (n_samples, n_labels)
            0/1 label matrix or DataFrame.
        **fit_params
            Passed to ``estimator.fit``.

        Returns
        -------
        self : TunedThresholds
        """
        if not hasattr(X, "shape") and hasattr(X, "__array__"):  # array-likes split as arrays
            X = np.asarray(X)
        target, y_fit = self._learn_target(X, y)
        Y, owner = target.Y, type(self).__name__
        is_prefit = isinstance(self.cv, str)
        refit = not is_prefit if self.refit == "auto" else self.refit
        if is_prefit and refit:
            raise parameter_error(owner, "refit", "False or 'auto' with cv='prefit'", refit)
        one_split = isinstance(self.cv, float)
        multiclass = target.kind == "multiclass"  # argmax: nothing to tune, no tuning rows
        if is_prefit:
            check_is_fitted(self.estimator)
        splits = [] if is_prefit or multiclass else self._splits(len(Y), y_fit)
        rows = np.arange(len(Y)) if is_prefit else np.concatenate(
            [test for _, test in splits] or [np.zeros(0, int)])
        if not multiclass:
            _check_tuning_rows(len(rows))  # before any fit: nothing computed is thrown away
        # one loop for every cv: fit on each split's training rows, predict its held-out rows
        parts, models = [], []
        if splits:
            progress(f"decision rule: {len(splits)} fit(s) of the model to tune "
                     f"{self.objective} thresholds on held-out rows")
        for train, test in splits:
            models.append(clone(self.estimator).fit(_safe_indexing(X, train), y_fit[train],
                                                    **fit_params))
            parts.append(self._proba(models[-1], _safe_indexing(X, test), Y.shape[1]))
        if is_prefit:
            self.estimator_ = self.estimator
        elif refit or multiclass:
            self.estimator_ = clone(self.estimator).fit(X, y_fit, **fit_params)
        elif one_split:  # refit=False: the model the rule was tuned on
            self.estimator_ = models[0]
        else:  # folds, refit=False: the fold models, averaged
            self.estimator_ = AveragedClassifier.of_fitted(
                [(f"fold{i}", m) for i, m in enumerate(models)], target)
        if multiclass:
            self.thresholds_, self.best_score_, self.n_tuning_rows_ = None, float("nan"), 0
            return self
        P = self._proba(self.estimator_, X, Y.shape[1]) if is_prefit else np.vstack(parts)
        Y_tune = Y[rows]
        self.thresholds_ = tune_thresholds(
            Y_tune, P, self.objective, per_label=self.per_label, min_labels=self.min_labels,
            max_labels=self.max_labels, shrinkage=self.shrinkage)
        pred = _decide(P, self.thresholds_, self.min_labels, self.max_labels)
        self.best_score_ = float(score_predictions(Y_tune, pred, self.objective))
        self.n_tuning_rows_ = len(Y_tune)
        progress(f"decision rule: thresholds tuned on {len(Y_tune):,} rows, {self.objective} "
                 f"{self.best_score_:.4f}")
        return self

    def _splits(self, n: int, y_fit: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """The (train, held-out) row splits of ``cv``: one shuffled hold-out for a float,
        the folds of an int or a splitter. The held-out rows of the folds must partition the
        rows: out-of-fold tuning reads every row once."""
        if isinstance(self.cv, float):
            return list(ShuffleSplit(1, test_size=self.cv, random_state=self.random_state)
                        .split(np.zeros((n, 1))))
        splits = list(make_splitter(self.cv, y_fit, self.random_state)
                      .split(np.zeros((n, 1)), y_fit))
        tested = np.bincount(np.concatenate([test for _, test in splits]), minlength=n)
        if (tested != 1).any():
            raise ValueError(f"The cv splitter holds out {int((tested == 0).sum())} row(s) in "
                             f"no fold and {int((tested > 1).sum())} in several; out-of-fold "
                             "tuning needs folds whose held-out rows partition the rows.")
        return splits


class FixedThresholds(_RuleStep):
    """Wrap a multi-label classifier and decide with a rule you fix: thresholds, at least
    ``min_labels`` and at most ``max_labels`` labels per text. The counterpart of
    :class:`TunedThresholds` for a rule chosen elsewhere (as scikit-learn's
    ``FixedThresholdClassifier`` beside ``TunedThresholdClassifierCV``).

    Parameters
    ----------
    estimator : classifier with ``predict_proba``
        Fitted on all rows in :meth:`fit` (a clone).
    threshold : float or array-like of shape (n_labels,), default=0.5
        One threshold for every label, or one per label, each in [0, 1].
    min_labels : int, default=0
    max_labels : int, default=None

    Attributes
    ----------
    estimator_ : estimator
    thresholds_ : ndarray of shape (n_labels,)
        ``threshold`` per label.
    label_names_, classes_, target_type_, n_labels_, n_samples_fit_
        As :class:`TunedThresholds`'s.

    Examples
    --------
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn.multiclass import OneVsRestClassifier
    >>> from skstack.thresholds import FixedThresholds
    >>> X, Y = [[0.0], [1.0], [0.1], [0.9]], [[1, 0], [0, 1], [1, 0], [0, 1]]
    >>> clf = FixedThresholds(OneVsRestClassifier(LogisticRegression()), threshold=[0.4, 0.6],
    ...                       min_labels=1).fit(X, Y)
    >>> clf.thresholds_.tolist(), clf.predict([[0.5]]).sum()
    ([0.4, 0.6], np.int64(1))
    """

    _portable_state: ClassVar[tuple[str, ...]] = (
        "thresholds_", "n_samples_fit_", "label_names_", "classes_", "target_type_",
        "n_labels_")
    _portable_parts: ClassVar[tuple[str, ...]] = ("estimator_",)

    _parameter_constraints: ClassVar[dict[str, list]] = {
        "estimator": [ESTIMATOR],
        "threshold": [Interval(numbers.Real, 0, 1), ARRAY_LIKE],
        **LIMIT_CONSTRAINTS,
    }

    def __init__(self, estimator, *, threshold=0.5, min_labels: int = 0,
                 max_labels: int | None = None):
        self.estimator = estimator
        self.threshold = threshold
        self.min_labels = min_labels
        self.max_labels = max_labels

    @validates_params
    def fit(self, X, y, **fit_params):
        """Fit a clone of ``estimator`` on ``(X, y)``; the rule is checked against the
        labels ``y`` has.

        Returns
        -------
        self : FixedThresholds
        """
        target, y_fit = self._learn_target(X, y)
        thresholds = check_rule(type(self).__name__, self.threshold, self.min_labels,
                                self.max_labels, target.Y.shape[1])
        self.estimator_ = clone(self.estimator).fit(X, y_fit, **fit_params)
        self.thresholds_ = None if target.kind == "multiclass" else thresholds
        return self
