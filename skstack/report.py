"""A self-contained HTML evaluation report: :func:`html_report` and :func:`evaluate_model`.

One page, no external files: warnings first (scores that cannot be trusted), what the
model is, the averages beside two text-blind baselines, a per-label table, per-label F1
bars, each label's precision/recall curve with its chosen threshold, label co-occurrence of
gold against predicted labels, and the most confident errors with the words that drove them
(:func:`~skstack.explain`). Figures are inline SVG (matplotlib).

Import rule: numpy and ``skstack._config``, ``_files``, ``cards``, ``explanations``,
``metrics``, ``plotting``, ``rules``.
"""

from __future__ import annotations

import html
import io
import os
from collections.abc import Mapping, Sequence

import numpy as np

from skstack._config import progress
from skstack._files import write_text
from skstack.cards import model_facts
from skstack.explanations import Explanation, explain
from skstack.metrics import multilabel_report
from skstack.plotting import (
    _pyplot,
    plot_label_cooccurrence,
    plot_per_label_f1,
    plot_precision_recall,
)
from skstack.rules import decision_rule

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
td.text { text-align: left; max-width: 40em; }
.warning { background: #fff4ce; border-left: 4px solid #e0a800; padding: 0.5em 0.8em; }
span.up { background: rgba(40, 160, 70, var(--a)); border-radius: 3px; }
span.down { background: rgba(220, 50, 50, var(--a)); border-radius: 3px; }
.figures { display: flex; flex-wrap: wrap; gap: 1em; }
svg { max-width: 100%; height: auto; }
"""


def _svg(fig) -> str:
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", bbox_inches="tight")
    _pyplot().close(fig)
    text = buffer.getvalue()
    return text[text.index("<svg"):]  # drop the XML prologue: the page is HTML


class _HTML(str):
    """A table cell's text that is HTML already (shaded words), not to be escaped."""


def _cell(value) -> str:
    if isinstance(value, str):  # text left-aligned, numbers right-aligned
        text = value if isinstance(value, _HTML) else html.escape(value)
        return f"<td class='text'>{text}</td>"
    return f"<td>{f'{value:.3f}' if isinstance(value, float) else value}</td>"


def _table(header: Sequence[str], rows: list[Sequence]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(_cell(c) for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _confident_errors(Y, pred, proba, n: int) -> list[tuple[str, int, int]]:
    """``(kind, row, label)`` of the ``n`` predicted labels the model was surest of that
    were wrong, and of the ``n`` gold labels it was surest were absent."""
    out = []
    for kind, mask, key in (("false positive", (pred == 1) & (Y == 0), -proba),
                            ("false negative", (pred == 0) & (Y == 1), proba)):
        where = np.argwhere(mask)
        order = np.argsort(key[mask], kind="stable")[:n]
        out += [(kind, int(i), int(j)) for i, j in where[order]]
    return out


def _highlighted(explanation: Explanation, label: str) -> _HTML:
    """The text as HTML, each word shaded by its contribution to ``label``."""
    column = explanation.contributions[:, explanation.labels.index(label)]
    scale = max(float(np.abs(column).max(initial=0.0)), 1e-9)
    parts, at = [], 0
    for (start, end), c in zip(explanation.spans, column, strict=True):
        word = html.escape(explanation.text[start:end])
        parts.append(html.escape(explanation.text[at:start]))
        parts.append(f"<span class='{'up' if c >= 0 else 'down'}' style='--a: "
                     f"{abs(c) / scale * 0.75:.2f}' title='{c:+.3f}'>{word}</span>"
                     if abs(c) >= 5e-4 else word)
        at = end
    return _HTML("".join(parts) + html.escape(explanation.text[at:]))


def _baselines(Y: np.ndarray) -> list[list]:
    """Two predictions that ignore the text, scored on ``Y``: a floor for the model's."""
    top = np.zeros_like(Y)
    top[:, int(Y.sum(axis=0).argmax())] = 1
    rows = []
    for name, pred in (("the most frequent label for every text", top),
                       ("every label for every text", np.ones_like(Y))):
        report = multilabel_report(Y, pred)
        rows.append([f"baseline: {name}", report.averages["macro"]["f1"],
                     report.averages["micro"]["f1"], report.jaccard_accuracy])
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
    explanations: Mapping[int, Explanation] | None = None,
    about: Sequence[tuple[str, str]] = (),
    warnings: Sequence[str] = (),
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
    explanations : dict of int to Explanation, default=None
        Explanations of some rows (:func:`~skstack.explain`), by row index: a listed error's
        text is shaded by what its words did to the error's label.
    about : list of (str, str), default=()
        What the model is, shown as a table (:func:`~skstack.cards.model_facts`).
    warnings : list of str, default=()
        Shown first, each in a box: reasons not to trust the scores.

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
    Y, pred = np.asarray(y_true), np.asarray(y_pred)
    P = None if proba is None else np.asarray(proba, dtype=np.float64)
    if P is not None and P.shape != Y.shape:
        raise ValueError(f"proba has shape {P.shape}; y_true has {Y.shape}.")
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
             f"</title><style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>",
             *[f"<p class='warning'>{html.escape(w)}</p>" for w in warnings],
             f"<p>{len(Y):,} texts, {len(report.labels)} labels"
             + (f"; thresholds tuned for <code>{html.escape(threshold_objective)}</code>"
                if threshold_objective else "") + ".</p>"]
    if about:
        parts += ["<h2>Model</h2>", _table(["part", "what it is"], [list(fact) for fact in about])]
    parts += _scores_section(report, Y, pred)
    parts += _figures_section(report, Y, pred, P, thresholds)
    if P is not None:
        parts += _errors_section(report.labels, Y, pred, P, texts, n_errors, explanations or {})
    parts.append("</body></html>")
    return "\n".join(parts)


def _scores_section(report, Y: np.ndarray, pred: np.ndarray) -> list[str]:
    """Averages against text-blind baselines, the overall measures, the per-label table."""
    parts = ["<h2>Averages</h2>",
             _table(["average", "precision", "recall", "F1"],
                    [[name, s["precision"], s["recall"], s["f1"]]
                     for name, s in report.averages.items()]),
             "<p>Against predictions that ignore the text (a floor):</p>",
             _table(["prediction", "macro-F1", "micro-F1", "Jaccard"],
                    [["this model", report.averages["macro"]["f1"],
                      report.averages["micro"]["f1"], report.jaccard_accuracy],
                     *_baselines(Y)]),
             _table(["measure", "value"],
                    [["Jaccard accuracy (SemEval E-c)", report.jaccard_accuracy],
                     ["Hamming loss", report.hamming_loss],
                     ["subset accuracy", report.subset_accuracy],
                     ["texts without a predicted label", int((pred.sum(axis=1) == 0).sum())]]),
             "<h2>Per label</h2>"]
    header = ["label", "precision", "recall", "F1", "support", "predicted"]
    header += ["threshold"] if report.thresholds else []
    rows = []
    for j, name in enumerate(report.labels):
        s = report.per_label[name]
        row = [name, s["precision"], s["recall"], s["f1"], s["support"], int(pred[:, j].sum())]
        rows.append(row + ([report.thresholds[name]] if report.thresholds else []))
    return [*parts, _table(header, rows)]


def _figures_section(report, Y: np.ndarray, pred: np.ndarray, P: np.ndarray | None,
                     thresholds) -> list[str]:
    """F1 per label, the precision/recall curves (with probabilities), co-occurrence."""
    labels = report.labels
    f1 = [report.per_label[name]["f1"] for name in labels]
    parts = ["<h2>F1 per label</h2>" + _svg(plot_per_label_f1(f1, None, labels).figure)]
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
    return [*parts, "</div>"]


def _errors_section(labels, Y: np.ndarray, pred: np.ndarray, P: np.ndarray,
                    texts: Sequence[str] | None, n_errors: int,
                    explanations: Mapping[int, Explanation]) -> list[str]:
    """The most confident false positives and negatives, their words shaded where
    explained."""
    parts = ["<h2>Most confident errors</h2>"]
    if explanations:
        parts.append("<p>Words shaded by what they did to the error's label: "
                     "<span class='up' style='--a: 0.6'>raised it</span>, "
                     "<span class='down' style='--a: 0.6'>lowered it</span> (the "
                     "probability without the word; hover for the change).</p>")
    rows = []
    for kind, i, j in _confident_errors(Y, pred, P, n_errors):
        text = (_highlighted(explanations[i], str(labels[j])) if i in explanations
                and str(labels[j]) in explanations[i].labels else
                texts[i] if texts is not None else f"row {i}")
        rows.append([kind, str(labels[j]), float(P[i, j]), text])
    return [*parts, _table(["error", "label", "probability", "text"], rows)]


def rule_settings(model) -> dict:
    """``thresholds`` and ``threshold_objective`` of a model's tuned decision rule (its
    :class:`~skstack.thresholds.TunedThresholds` step), for :func:`html_report` and
    :func:`~skstack.metrics.multilabel_report`; empty when it has none."""
    rule = decision_rule(model)
    if not rule.tuned:
        return {}
    return {"thresholds": rule.thresholds, "threshold_objective": rule.objective}


def report_warnings(model, n_texts: int, split: str | None = None) -> list[str]:
    """Reasons not to trust a report of ``model`` on ``n_texts`` texts: they look like its
    training data, or its decision rule was tuned on too few rows to believe its score."""
    out = []
    rule = decision_rule(model)
    n_fit = getattr(rule.source, "n_samples_fit_", None)
    if split == "train":
        out.append("These are the data set's training split: if the model was trained on it, "
                   "these scores overstate what it does on new texts (evaluate on --split "
                   "test).")
    elif n_fit is not None and n_texts == n_fit:
        out.append(f"These {n_texts:,} texts are as many as the model was trained on: if "
                   "they are its training data, these scores overstate what it does on new "
                   "texts.")
    rows = rule.n_tuning_rows
    if 0 < rows < 100:
        out.append(f"The decision rule's validation {rule.objective} "
                   f"({rule.validation_score:.3f}) came from only {rows} rows: too few to trust. "
                   "Fit on more texts, or tune on more rows (cv).")
    return out


def evaluate_model(model, texts: Sequence[str], y_true, path: str | os.PathLike | None = None,
                   label_names: Sequence[str] | None = None, split: str | None = None,
                   y_pred=None, proba=None, **kwargs) -> str:
    """:func:`html_report` for a fitted model on labelled texts; writes it to ``path`` too.

    The thresholds and their objective come from the model's
    :class:`~skstack.thresholds.TunedThresholds` step when it has one; the label names from
    the model unless given. The page also says what the model is
    (:func:`~skstack.cards.model_facts`), warns where the scores cannot be trusted
    (``split="train"``, texts as many as the training set, a rule tuned on under 100 rows),
    and shades the words of the most confident errors by what they did
    (:func:`~skstack.explain`). ``y_pred`` and ``proba``: the model's ``predict`` and
    ``predict_proba`` of ``texts`` where the caller has them already (computed here
    otherwise). Other keywords go to :func:`html_report`.
    """
    texts = list(texts)
    proba = np.asarray(model.predict_proba(texts) if proba is None else proba)
    pred = np.asarray(model.predict(texts) if y_pred is None else y_pred)
    Y = np.asarray(y_true)
    names = label_names or getattr(decision_rule(model).source, "label_names_", None)
    n_errors = kwargs.pop("n_errors", 10)
    rows = sorted({i for _, i, _ in _confident_errors(Y, pred, proba, n_errors)})
    progress(f"explaining the {len(rows)} texts of the most confident errors (one more text "
             "for the model per word)")
    explained = dict(zip(rows, explain(model, [texts[i] for i in rows]), strict=True))
    page = html_report(Y, pred, proba, names, texts=texts, n_errors=n_errors,
                       explanations=explained, about=model_facts(model),
                       warnings=report_warnings(model, len(texts), split),
                       **{**rule_settings(model), **kwargs})
    if path is not None:
        write_text(path, page)
    return page
