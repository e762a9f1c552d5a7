"""Figures for multi-label results (needs matplotlib: ``pip install "skstack[plot]"``).

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
        raise ImportError('Plotting needs matplotlib: pip install "skstack[plot]"') from exc
    return plt


def plot_per_label_f1(f1_a: Sequence[float], f1_b: Sequence[float], labels: Sequence[str],
                      names: tuple[str, str] = ("A", "B"), ax=None):
    """Per-label F1 of two configurations as side-by-side bars, labels sorted by ``f1_b``.

    Returns the matplotlib Axes.
    """
    plt = _pyplot()
    f1_a, f1_b = np.asarray(f1_a), np.asarray(f1_b)
    if not len(f1_a) == len(f1_b) == len(labels):
        raise ValueError("f1_a, f1_b and labels must have one entry per label.")
    order = np.argsort(f1_b)[::-1]
    if ax is None:
        _, ax = plt.subplots(figsize=(max(6, 0.35 * len(labels)), 4))
    x = np.arange(len(labels))
    ax.bar(x - 0.2, f1_a[order], width=0.4, label=names[0])
    ax.bar(x + 0.2, f1_b[order], width=0.4, label=names[1])
    ax.set_xticks(x, [labels[i] for i in order], rotation=70, ha="right")
    ax.set_ylabel("F1")
    ax.set_ylim(0, 1)
    ax.legend()
    ax.figure.tight_layout()
    return ax


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
