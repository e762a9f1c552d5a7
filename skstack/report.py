"""A self-contained HTML evaluation report: :func:`html_report` and :func:`evaluate_model`.

One page, no external files: the averages, a per-label table, per-label F1 bars, each label's
precision/recall curve with its chosen threshold, label co-occurrence of gold against
predicted labels, and the most confident errors. Figures are inline SVG
(matplotlib).

Import rule: numpy and ``skstack.metrics``, ``plotting``, ``cards``, ``thresholds``.
"""

from __future__ import annotations

import html
import io
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from skstack.cards import find_part
from skstack.metrics import multilabel_report
from skstack.plotting import (
    _pyplot,
    plot_label_cooccurrence,
    plot_per_label_f1,
    plot_precision_recall,
)
from skstack.thresholds import TunedThresholds

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
td.text { text-align: left; max-width: 40em; }
.figures { display: flex; flex-wrap: wrap; gap: 1em; }
svg { max-width: 100%; height: auto; }
"""


def _svg(fig) -> str:
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", bbox_inches="tight")
    _pyplot().close(fig)
    text = buffer.getvalue()
    return text[text.index("<svg"):]  # drop the XML prologue: the page is HTML


def _cell(value) -> str:
    if isinstance(value, str):  # text left-aligned, numbers right-aligned
        return f"<td class='text'>{html.escape(value)}</td>"
    return f"<td>{f'{value:.3f}' if isinstance(value, float) else value}</td>"


def _table(header: Sequence[str], rows: list[Sequence]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(_cell(c) for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _confident_errors(Y, pred, proba, labels, texts, n: int) -> list[list]:
    """The ``n`` predicted labels the model was surest of that were wrong, and the ``n``
    gold labels it was surest were absent."""
    rows = []
    for kind, mask, key in (("false positive", (pred == 1) & (Y == 0), -proba),
                            ("false negative", (pred == 0) & (Y == 1), proba)):
        where = np.argwhere(mask)
        order = np.argsort(key[mask], kind="stable")[:n]
        for i, j in where[order]:
            text = texts[i] if texts is not None else f"row {i}"
            rows.append([kind, labels[j], float(proba[i, j]), text])
    return rows


def html_report(
    y_true,
    y_pred,
    proba=None,
    label_names: Sequence[str] | None = None,
    thresholds=None,
    threshold_objective: str | None = None,
    texts: Sequence[str] | None = None,
    title: str = "skstack evaluation report",
    n_errors: int = 10,
) -> str:
    """One self-contained HTML page that shows how a multi-label prediction scores.

    Parameters
    ----------
    y_true, y_pred : array-like of shape (n_samples, n_labels)
        Gold and predicted 0/1 label matrices.
    proba : array-like of shape (n_samples, n_labels), default=None
        Predicted probabilities: needed for the precision/recall curves and the most
        confident errors (left out without them).
    label_names : list of str, default=None
    thresholds : array-like of shape (n_labels,) or float, default=None
        The decision rule's thresholds, shown in the table and on the curves.
    threshold_objective : str, default=None
    texts : list of str, default=None
        The texts, shown beside the most confident errors.
    title : str
    n_errors : int, default=10
        How many false positives and false negatives to list.

    Returns
    -------
    str : the HTML page

    Examples
    --------
    >>> page = html_report([[1, 0], [0, 1]], [[1, 0], [1, 1]], label_names=["joy", "anger"])
    >>> page.startswith("<!DOCTYPE html>"), "joy" in page
    (True, True)
    """
    report = multilabel_report(y_true, y_pred, label_names, thresholds, threshold_objective)
    labels = report.labels
    Y, pred = np.asarray(y_true), np.asarray(y_pred)
    P = None if proba is None else np.asarray(proba, dtype=np.float64)
    if P is not None and P.shape != Y.shape:
        raise ValueError(f"proba has shape {P.shape}; y_true has {Y.shape}.")
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
             f"</title><style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>",
             f"<p>{len(Y):,} texts, {len(labels)} labels"
             + (f"; thresholds tuned for <code>{html.escape(threshold_objective)}</code>"
                if threshold_objective else "") + ".</p>",
             "<h2>Averages</h2>",
             _table(["average", "precision", "recall", "F1"],
                    [[name, s["precision"], s["recall"], s["f1"]]
                     for name, s in report.averages.items()]),
             _table(["measure", "value"],
                    [["Jaccard accuracy (SemEval E-c)", report.jaccard_accuracy],
                     ["Hamming loss", report.hamming_loss],
                     ["subset accuracy", report.subset_accuracy],
                     ["texts without a predicted label", int((pred.sum(axis=1) == 0).sum())]]),
             "<h2>Per label</h2>"]
    header = ["label", "precision", "recall", "F1", "support", "predicted"]
    header += ["threshold"] if report.thresholds else []
    rows = []
    for j, name in enumerate(labels):
        s = report.per_label[name]
        row = [name, s["precision"], s["recall"], s["f1"], s["support"], int(pred[:, j].sum())]
        rows.append(row + ([report.thresholds[name]] if report.thresholds else []))
    parts.append(_table(header, rows))
    f1 = [report.per_label[name]["f1"] for name in labels]
    parts.append("<h2>F1 per label</h2>" + _svg(plot_per_label_f1(f1, None, labels).figure))
    if P is not None:
        parts.append("<h2>Precision and recall per label</h2><p>Each curve sweeps the "
                     "threshold; the dot is the threshold the rule chose.</p>"
                     + _svg(plot_precision_recall(Y, P, labels, thresholds)))
    parts.append("<h2>Label co-occurrence</h2><p>P(column label | row label), gold labels "
                 "and predicted labels.</p><div class='figures'>")
    for name, matrix in (("gold", Y), ("predicted", pred)):
        ax = plot_label_cooccurrence(matrix, labels)
        ax.set_title(name)
        parts.append(_svg(ax.figure))
    parts.append("</div>")
    if P is not None:
        parts.append("<h2>Most confident errors</h2>")
        parts.append(_table(["error", "label", "probability", "text"],
                            _confident_errors(Y, pred, P, labels, texts, n_errors)))
    parts.append("</body></html>")
    return "\n".join(parts)


def rule_settings(model) -> dict:
    """``thresholds`` and ``threshold_objective`` of a model's tuned decision rule (its
    :class:`~skstack.thresholds.TunedThresholds` step), for :func:`html_report` and
    :func:`~skstack.metrics.multilabel_report`; empty when it has none."""
    rule = find_part(model, TunedThresholds)
    if rule is None or getattr(rule, "thresholds_", None) is None:
        return {}
    return {"thresholds": rule.thresholds_, "threshold_objective": rule.objective}


def evaluate_model(model, texts: Sequence[str], y_true, path: str | os.PathLike | None = None,
                   label_names: Sequence[str] | None = None, **kwargs) -> str:
    """:func:`html_report` for a fitted model on labelled texts; writes it to ``path`` too.

    The thresholds and their objective come from the model's
    :class:`~skstack.thresholds.TunedThresholds` step when it has one; the label names from
    the model unless given.
    """
    proba = np.asarray(model.predict_proba(texts))
    pred = np.asarray(model.predict(texts))
    names = label_names or getattr(find_part(model, TunedThresholds), "label_names_", None)
    page = html_report(y_true, pred, proba, names, texts=list(texts),
                       **{**rule_settings(model), **kwargs})
    if path is not None:
        Path(path).write_text(page, encoding="utf-8")
    return page
