"""Figures for multi-label results (matplotlib, a dependency of skstack).

Import rule: numpy, matplotlib (inside the functions) and ``skstack.losses`` only.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from skstack.losses import COMPONENTS


def _pyplot():
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError('Plotting needs matplotlib: pip install matplotlib') from exc
    return plt


def plot_per_label_f1(f1_a: Sequence[float], f1_b: Sequence[float] | None,
                      labels: Sequence[str], names: tuple[str, str] = ("A", "B"), ax=None):
    """Per-label F1 as bars, labels sorted by the last series: two configurations side by
    side, or one (``f1_b=None``). Returns the matplotlib Axes."""
    plt = _pyplot()
    series = [np.asarray(f1_a)] + ([] if f1_b is None else [np.asarray(f1_b)])
    if any(len(f) != len(labels) for f in series):
        raise ValueError("f1_a, f1_b and labels must have one entry per label.")
    order = np.argsort(series[-1])[::-1]
    if ax is None:
        _, ax = plt.subplots(figsize=(max(6, 0.35 * len(labels)), 4))
    x = np.arange(len(labels))
    width = 0.8 / len(series)
    for k, f1 in enumerate(series):
        offset = (k - (len(series) - 1) / 2) * width
        ax.bar(x + offset, f1[order], width=width, label=names[k])
    ax.set_xticks(x, [labels[i] for i in order], rotation=70, ha="right")
    ax.set_ylabel("F1")
    ax.set_ylim(0, 1)
    if len(series) > 1:
        ax.legend()
    ax.figure.tight_layout()
    return ax


def plot_precision_recall(Y, proba, labels: Sequence[str], thresholds=None, columns: int = 6):
    """One small precision/recall curve per label, the chosen threshold marked on each.

    Returns the matplotlib Figure.
    """
    from sklearn.metrics import precision_recall_curve

    plt = _pyplot()
    Y, proba = np.asarray(Y), np.asarray(proba, dtype=np.float64)
    rows = -(-len(labels) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(2.2 * columns, 2.0 * rows),
                             sharex=True, sharey=True, squeeze=False)
    t = None if thresholds is None else np.broadcast_to(thresholds, (len(labels),))
    for j, ax in enumerate(axes.flat):
        if j >= len(labels):
            ax.axis("off")
            continue
        ax.set_title(labels[j], fontsize=8)
        if Y[:, j].any():
            precision, recall, cuts = precision_recall_curve(Y[:, j], proba[:, j])
            ax.plot(recall, precision, lw=1)
            if t is not None and len(cuts):
                k = min(np.searchsorted(cuts, t[j]), len(cuts) - 1)
                ax.plot(recall[k], precision[k], "o", ms=4, color="C3")
        else:
            ax.text(0.5, 0.5, "no positives", ha="center", fontsize=7)
        ax.tick_params(labelsize=6)
    fig.supxlabel("recall", fontsize=8)
    fig.supylabel("precision", fontsize=8)
    fig.tight_layout()
    return fig


def plot_label_cooccurrence(Y, labels: Sequence[str], normalize: bool = True, ax=None):
    """Heatmap of how often labels occur together: ``P(column label | row label)`` when
    ``normalize``, raw counts otherwise. Returns the Axes."""
    plt = _pyplot()
    Y = np.asarray(Y, dtype=np.float64)
    counts = Y.T @ Y
    matrix = counts / np.maximum(np.diag(counts)[:, None], 1) if normalize else counts
    if ax is None:
        size = max(5, 0.3 * len(labels))
        _, ax = plt.subplots(figsize=(size + 1, size))
    image = ax.imshow(matrix, cmap="viridis")
    ax.set_xticks(range(len(labels)), labels, rotation=90)
    ax.set_yticks(range(len(labels)), labels)
    ax.figure.colorbar(image, ax=ax, label="P(column | row)" if normalize else "count")
    ax.figure.tight_layout()
    return ax


def plot_loss_components(history, ax=None):
    """Training curves of each hybrid-loss component from a ``BiLSTMClassifier`` history
    (train, and valid when recorded); terms switched off (zero throughout) are left out.
    Returns the Axes."""
    plt = _pyplot()
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4))
    epochs = history[:, "epoch"]
    for prefix, style in (("train", "-"), ("valid", "--")):
        for name in COMPONENTS:
            key = f"{prefix}_{name}"
            if key in history[-1] and any(history[:, key]):
                ax.plot(epochs, history[:, key], style, label=key)
    ax.set_xlabel("epoch")
    ax.set_ylabel("unweighted term")
    ax.legend()
    ax.figure.tight_layout()
    return ax
