"""Decision rules: how label probabilities become label sets.

Which rule is best depends on the metric (see ``docs/decision_rules.md``): per-label
thresholds tuned for each label's F1 maximise macro-F1, while one shared threshold tuned for
Jaccard accuracy wins on Jaccard. ``min_labels=1`` gives every text at least its top label.
Works on the output of any ``predict_proba``.
"""

from __future__ import annotations

import numpy as np

OBJECTIVES = ("macro_f1", "micro_f1", "jaccard")
# Quantile levels of the scores tried as thresholds: even steps, then ever closer to the top,
# where the best threshold of a rare label lies (a label with 1 % positives wants ~ the 99th).
_LEVELS = np.concatenate([np.linspace(0.0, 0.9, 46), 1 - np.logspace(-1, -4, 40)[1:]])


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
    Y = Y.astype(bool)
    pred = pred.astype(bool)
    if objective == "jaccard":
        inter = (Y & pred).sum(axis=-1)
        union = (Y | pred).sum(axis=-1)
        return np.where(union == 0, 1.0, inter / np.maximum(union, 1)).mean(axis=-1)
    tp = (Y & pred).sum(axis=-2)
    fp = (~Y & pred).sum(axis=-2)
    fn = (Y & ~pred).sum(axis=-2)
    if objective == "macro_f1":
        return _f1(tp, fp, fn).mean(axis=-1)
    if objective == "micro_f1":
        return _f1(tp.sum(axis=-1), fp.sum(axis=-1), fn.sum(axis=-1))
    raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}.")


def decide(
    proba: np.ndarray, thresholds, min_labels: int = 0, max_labels: int | None = None
) -> np.ndarray:
    """0/1 label matrix from probabilities.

    A label is predicted when its probability reaches its threshold. Rows with fewer than
    ``min_labels`` labels also get their top-scoring labels; rows with more than
    ``max_labels`` keep only their top-scoring predicted labels. ``thresholds`` may carry
    leading candidate axes, e.g. shape (T, 1, L), to evaluate many rules at once.
    """
    proba = np.asarray(proba)
    pred = proba >= np.asarray(thresholds)
    if min_labels or max_labels is not None:
        order = np.argsort(-proba, axis=-1, kind="stable")  # best label first
        rank = np.argsort(order, axis=-1, kind="stable")
        if min_labels:
            short = pred.sum(axis=-1, keepdims=True) < min_labels
            pred = pred | (short & (rank < min_labels))
        if max_labels is not None:
            order_b = np.broadcast_to(order, pred.shape)
            in_order = np.take_along_axis(pred, order_b, axis=-1)
            keep = in_order & (np.cumsum(in_order, axis=-1) <= max_labels)
            pred = np.zeros_like(pred)
            np.put_along_axis(pred, order_b, keep, axis=-1)
    return pred.astype(np.int64)


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
    Y = np.asarray(y_true).astype(bool)
    P = np.asarray(proba, dtype=np.float64)
    if Y.shape != P.shape or Y.ndim != 2:
        raise ValueError(f"y_true {Y.shape} and proba {P.shape} must be 2-D and of one shape.")
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}.")
    if shrinkage < 0:
        raise ValueError(f"shrinkage must be >= 0, got {shrinkage}.")
    shared_grid, label_grid = _candidates(P, grid)
    n_labels = Y.shape[1]

    def best(candidates: np.ndarray) -> tuple[int, float]:
        """Index of the first candidate rule with the highest score, and that score."""
        scores = score_predictions(Y, decide(P, candidates, min_labels, max_labels), objective)
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
