"""The decision rule: how label probabilities become label sets, in one place.

A rule is thresholds (one per label), at least ``min_labels`` and at most ``max_labels``
labels per text. :func:`decide` applies one; :func:`check_rule` holds every check of one
(for ``decide``, the estimators that decide, a server, a loaded file); :func:`decision_rule`
reads the rule a fitted model applies, whatever holds it (a ``TunedThresholds`` or
``FixedThresholds`` step, a net's own ``threshold``), for the server, the report, the model
card and the command line. The estimators that learn or fix a rule live in ``thresholds``.

Import rule: numpy, ``skstack._validation`` and ``skstack.parts``; no estimator module.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np

from skstack._validation import NONE, Interval, check_params, check_proba, parameter_error
from skstack.parts import final_step

# The limits of the rule, shared by decide, tune_thresholds and TunedThresholds.
LIMIT_CONSTRAINTS = {
    "min_labels": [Interval(numbers.Integral, 0, None)],
    "max_labels": [Interval(numbers.Integral, 1, None), NONE],
}


def check_label_limits(owner: str, min_labels: int, max_labels: int | None,
                        n_labels: int) -> None:
    """The checks of ``min_labels``/``max_labels`` that depend on each other and the data."""
    if min_labels > n_labels:
        raise parameter_error(owner, "min_labels", f"at most the number of labels ({n_labels})",
                              min_labels)
    if max_labels is not None and max_labels < min_labels:
        raise parameter_error(owner, "max_labels", f"None or >= min_labels ({min_labels})",
                              max_labels)


def check_thresholds(thresholds, n_labels: int, owner: str = "decide") -> np.ndarray:
    """One threshold for every label, or one per label, each a finite number in [0, 1]."""
    t = np.asarray(thresholds, dtype=np.float64)
    if t.ndim == 0:
        t = np.full(n_labels, float(t))
    if t.shape != (n_labels,) or not np.all((t >= 0) & (t <= 1)):
        raise parameter_error(owner, "threshold",
                              f"a number in [0, 1] or {n_labels} such numbers (one per label)",
                              thresholds)
    return t


def label_ranks(proba: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row's labels best first, and each label's place in that order (ties: the first
    label first)."""
    order = np.argsort(-proba, axis=-1, kind="stable")
    return order, np.argsort(order, axis=-1, kind="stable")


def rule_mask(proba: np.ndarray, thresholds, min_labels: int, max_labels: int | None,
              ranks: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """:func:`decide` as booleans, without the checks; ``thresholds`` may carry leading
    candidate axes, e.g. shape (T, 1, L), to evaluate many rules at once, and ``ranks``
    (:func:`label_ranks` of ``proba``) spares sorting again when many rules are decided on
    the same probabilities."""
    pred = proba >= np.asarray(thresholds)
    if min_labels or max_labels is not None:
        order, rank = label_ranks(proba) if ranks is None else ranks
        if min_labels:
            short = pred.sum(axis=-1, keepdims=True) < min_labels
            pred = pred | (short & (rank < min_labels))
        if max_labels is not None:
            order_b = np.broadcast_to(order, pred.shape)
            in_order = np.take_along_axis(pred, order_b, axis=-1)
            keep = in_order & (np.cumsum(in_order, axis=-1) <= max_labels)
            pred = np.zeros_like(pred)
            np.put_along_axis(pred, order_b, keep, axis=-1)
    return pred


def _decide(proba: np.ndarray, thresholds, min_labels: int, max_labels: int | None) -> np.ndarray:
    """:func:`rule_mask` as the 0/1 integers :func:`decide` returns."""
    return rule_mask(proba, thresholds, min_labels, max_labels).astype(np.int64)


def decide(
    proba, thresholds=0.5, min_labels: int = 0, max_labels: int | None = None
) -> np.ndarray:
    """0/1 label matrix from probabilities.

    A label is predicted when its probability reaches its threshold. Rows with fewer than
    ``min_labels`` labels also get their top-scoring labels; rows with more than
    ``max_labels`` keep only their top-scoring predicted labels.

    Examples
    --------
    >>> decide([[0.1, 0.3], [0.8, 0.6]], 0.5, min_labels=1).tolist()
    [[0, 1], [1, 1]]
    """
    P = check_proba(proba)
    return _decide(P, check_rule("decide", thresholds, min_labels, max_labels, P.shape[1]),
                   min_labels, max_labels)


def check_rule(owner: str, thresholds, min_labels: int, max_labels: int | None,
               n_labels: int) -> np.ndarray:
    """All the checks of a decision rule over ``n_labels`` labels: the limits' values, the
    limits against each other and the labels, the thresholds (finite, in [0, 1], one or one
    per label); returns the thresholds per label. What :func:`decide` checks, and what a
    server or a loaded file checks before it decides anything."""
    check_params(owner, LIMIT_CONSTRAINTS, {"min_labels": min_labels, "max_labels": max_labels})
    check_label_limits(owner, min_labels, max_labels, n_labels)
    return check_thresholds(thresholds, n_labels, owner)


@dataclass(frozen=True)
class DecisionRule:
    """The rule a fitted model applies to its label probabilities.

    Attributes
    ----------
    thresholds : ndarray of shape (n_labels,), or None
        ``None`` where there is no rule: a multiclass target takes the most probable class.
        One number (0-d) for a classifier that does not say how many labels it has.
    min_labels, max_labels : int, int or None
    objective : str or None
        The metric the thresholds were tuned for; ``None`` for fixed thresholds.
    n_tuning_rows : int
        Rows the thresholds were tuned on (0 when fixed).
    validation_score : float
        ``objective`` on those rows (NaN when fixed).
    source : estimator
        The part that holds the rule (for what else it says, such as its ``cv``).
    """

    thresholds: np.ndarray | None
    min_labels: int = 0
    max_labels: int | None = None
    objective: str | None = None
    n_tuning_rows: int = 0
    validation_score: float = math.nan
    source: object = None

    @property
    def tuned(self) -> bool:
        return self.objective is not None and self.thresholds is not None

    def apply(self, proba) -> np.ndarray:
        """The 0/1 decisions of this rule on ``proba`` (n, n_labels)."""
        return decide(proba, self.thresholds, self.min_labels, self.max_labels)


def decision_rule(model) -> DecisionRule:
    """The rule a fitted model (a pipeline, a search, a rule step, a net) applies: a
    ``TunedThresholds``/``FixedThresholds`` step's, else the final estimator's own
    ``threshold`` (0.5 where it has none), for each of its ``n_labels_`` labels.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn.multiclass import OneVsRestClassifier
    >>> from skstack import TunedThresholds
    >>> X, Y = [[0.0], [1.0], [0.1], [0.9]], [[1, 0], [0, 1], [1, 0], [0, 1]]
    >>> rule = decision_rule(TunedThresholds(OneVsRestClassifier(LogisticRegression()),
    ...                                      objective="jaccard", cv=2).fit(X, Y))
    >>> rule.objective, rule.thresholds.shape, rule.n_tuning_rows
    ('jaccard', (2,), 4)
    """
    final = final_step(model)
    if hasattr(final, "thresholds_"):  # a rule step, fitted
        tuned = getattr(final, "objective", None) if hasattr(final, "best_score_") else None
        thresholds = final.thresholds_
        return DecisionRule(
            None if thresholds is None else np.asarray(thresholds, dtype=np.float64),
            final.min_labels, final.max_labels, tuned,
            int(getattr(final, "n_tuning_rows_", 0)),
            float(getattr(final, "best_score_", math.nan)), final)
    n_labels = getattr(final, "n_labels_", None)
    threshold = getattr(final, "threshold", 0.5)
    if n_labels is None:
        return DecisionRule(np.asarray(threshold, dtype=np.float64), source=final)
    return DecisionRule(check_thresholds(threshold, n_labels, type(final).__name__),
                        source=final)
