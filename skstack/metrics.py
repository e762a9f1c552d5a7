"""Multi-label metrics, a printable report and scorers for ``GridSearchCV``.

Definitions follow scikit-learn (precision, recall, F1, Hamming loss, subset accuracy) and
the SemEval-2018 Task 1 E-c scorer for Jaccard accuracy: the mean over examples of
``|gold ∩ pred| / |gold ∪ pred|``, where an example with empty gold and empty prediction
scores 1.

Import rule: numpy, scikit-learn and ``skstack._validation`` only (no torch: the Jaccard
formula below works on torch tensors without importing torch).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    hamming_loss,
    make_scorer,
    precision_recall_fscore_support,
)

from skstack._validation import check_label_matrix


def jaccard_from_counts(intersection, union):
    """``|A ∩ B| / |A ∪ B|`` from the two counts, with two empty sets counting as identical (1).

    The package's one Jaccard formula: numpy arrays or torch tensors, any shape (the metric,
    the threshold search over candidate rules and the contrastive loss all use it).
    """
    empty = union == 0
    return (intersection + empty) / (union + empty)


def _pair(y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
    true = check_label_matrix(y_true, name="y_true")[0].astype(bool)
    pred = check_label_matrix(y_pred, name="y_pred")[0].astype(bool)
    if true.shape != pred.shape:
        raise ValueError(f"y_true has shape {true.shape} but y_pred has {pred.shape}.")
    return true, pred


def jaccard_accuracy(y_true, y_pred) -> float:
    """SemEval-2018 E-c Jaccard accuracy (empty gold and empty prediction count as 1).

    Examples
    --------
    >>> jaccard_accuracy([[1, 1, 0], [0, 0, 0]], [[1, 0, 0], [0, 0, 0]])
    0.75
    """
    return float(jaccard_per_example(y_true, y_pred).mean())


def jaccard_per_example(y_true, y_pred) -> np.ndarray:
    """Jaccard similarity of each example's gold and predicted label sets (empty/empty = 1)."""
    true, pred = _pair(y_true, y_pred)
    return jaccard_from_counts((true & pred).sum(axis=-1), (true | pred).sum(axis=-1))


@dataclass
class MultilabelReport:
    """Per-label and averaged scores; ``str(report)`` is a readable table."""

    labels: list[str]
    per_label: dict[str, dict[str, float]]
    averages: dict[str, dict[str, float]]
    jaccard_accuracy: float
    hamming_loss: float
    subset_accuracy: float
    thresholds: dict[str, float] | None = None
    threshold_objective: str | None = None

    def to_dict(self) -> dict:
        out = {
            "per_label": self.per_label,
            "averages": self.averages,
            "jaccard_accuracy": self.jaccard_accuracy,
            "hamming_loss": self.hamming_loss,
            "subset_accuracy": self.subset_accuracy,
        }
        if self.thresholds is not None:
            out["thresholds"] = self.thresholds
            out["threshold_objective"] = self.threshold_objective
        return out

    def __str__(self) -> str:
        width = max([len(n) for n in self.labels] + [12])
        has_t = self.thresholds is not None
        head = f"{'label':<{width}}  precision  recall      f1  support" + (
            "  threshold" if has_t else ""
        )
        lines = [head, "-" * len(head)]
        for name in self.labels:
            s = self.per_label[name]
            line = (f"{name:<{width}}  {s['precision']:9.3f}  {s['recall']:6.3f}  "
                    f"{s['f1']:6.3f}  {int(s['support']):7d}")
            if has_t:
                line += f"  {self.thresholds[name]:9.3f}"
            lines.append(line)
        lines.append("-" * len(head))
        for avg, s in self.averages.items():
            lines.append(f"{avg + ' avg':<{width}}  {s['precision']:9.3f}  {s['recall']:6.3f}  "
                         f"{s['f1']:6.3f}  {int(s['support']):7d}")
        lines.append("")
        lines.append(f"Jaccard accuracy (SemEval E-c): {self.jaccard_accuracy:.4f}")
        lines.append(f"Hamming loss:                   {self.hamming_loss:.4f}")
        lines.append(f"Subset accuracy:                {self.subset_accuracy:.4f}")
        if has_t:
            lines.append(f"Thresholds tuned for:           {self.threshold_objective}")
        return "\n".join(lines)


def multilabel_report(
    y_true,
    y_pred,
    label_names: list[str] | None = None,
    thresholds=None,
    threshold_objective: str | None = None,
) -> MultilabelReport:
    """Score a multi-label prediction.

    Parameters
    ----------
    y_true, y_pred : array-like of shape (n_samples, n_labels)
        0/1 matrices (or DataFrames, whose columns name the labels).
    label_names : list of str, default=None
    thresholds : array-like of shape (n_labels,), default=None
        Decision thresholds to show beside each label (e.g.
        ``skstack.decision_rule(model).thresholds``).
    threshold_objective : str, default=None
        What the thresholds were tuned for, shown under the table.

    Examples
    --------
    >>> report = multilabel_report([[1, 0], [1, 1]], [[1, 0], [0, 1]], ["joy", "anger"])
    >>> round(report.averages["micro"]["f1"], 3)
    0.8
    """
    if label_names is None and hasattr(y_true, "columns"):
        label_names = [str(c) for c in y_true.columns]
    true, pred = _pair(y_true, y_pred)
    n_labels = true.shape[1]
    labels = list(label_names) if label_names is not None else [str(i) for i in range(n_labels)]
    if len(labels) != n_labels:
        raise ValueError(f"{len(labels)} label names given for {n_labels} labels.")
    p, r, f, s = precision_recall_fscore_support(true, pred, average=None, zero_division=0)
    per_label = {
        name: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]),
               "support": int(s[i])}
        for i, name in enumerate(labels)
    }
    averages = {}
    for avg in ("micro", "macro", "weighted", "samples"):
        ap, ar, af, _ = precision_recall_fscore_support(true, pred, average=avg, zero_division=0)
        averages[avg] = {"precision": float(ap), "recall": float(ar), "f1": float(af),
                         "support": int(true.sum())}
    shown = None
    if thresholds is not None:
        shown = {name: float(t) for name, t in zip(labels, np.ravel(thresholds), strict=True)}
    return MultilabelReport(
        labels=labels,
        per_label=per_label,
        averages=averages,
        jaccard_accuracy=jaccard_accuracy(true, pred),
        hamming_loss=float(hamming_loss(true, pred)),
        subset_accuracy=float(accuracy_score(true, pred)),
        thresholds=shown,
        threshold_objective=threshold_objective,
    )


def get_scorers() -> dict:
    """Named scorers for ``GridSearchCV(scoring=get_scorers(), refit="macro_f1")``.

    Keys: ``jaccard``, ``micro_f1``, ``macro_f1``, ``samples_f1``, ``hamming_loss`` (negated,
    so greater is better) and ``subset_accuracy``.
    """
    return {
        "jaccard": make_scorer(jaccard_accuracy),
        "micro_f1": make_scorer(f1_score, average="micro", zero_division=0),
        "macro_f1": make_scorer(f1_score, average="macro", zero_division=0),
        "samples_f1": make_scorer(f1_score, average="samples", zero_division=0),
        "hamming_loss": make_scorer(hamming_loss, greater_is_better=False),
        "subset_accuracy": make_scorer(accuracy_score),
    }
