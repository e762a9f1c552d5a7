"""Which words drove each label: :func:`explain`, by occlusion of one word at a time.

A word's contribution to a label is the label's probability for the whole text minus its
probability for the text without that word (and the space after it): positive when the
word raised the label, negative when it lowered it. Words are the word-mode units
(:func:`~skstack.sequences.word_spans`), in every script.

Why occlusion rather than gradient x input on the Bi-LSTM's word states: it measures what
the whole model does without the word — the encoders (on any backend, int8 included), the
character n-grams, the meta-learner and the decision head — where a gradient sees only the
head, and only to first order. Its cost is one extra row per word, all of a batch of texts
sent to ``predict_proba`` in one call, so the encoders sort them into length batches; a
20-word text costs 21 rows (about 0.05 s for the quickstart model on 2 cores).

Import rule: ``_validation``, ``labels`` and ``sequences``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from skstack._validation import check_texts
from skstack.labels import label_names
from skstack.sequences import word_spans

_ROWS_PER_CALL = 2048  # bound the memory of one predict_proba call over occluded texts,
_CHARS_PER_CALL = 2_000_000  # in rows and in characters (a row per word: O(words x length))
MAX_WORDS = 512  # words per text explain takes by default (skstack serve's limit too)


@dataclass(frozen=True)
class Explanation:
    """Each word's contribution to each explained label's probability, for one text.

    Attributes
    ----------
    text : str
    words : list of str
        The text's words, in order.
    spans : list of (int, int)
        Each word's ``(start, end)`` in ``text``.
    labels : list of str
        The explained labels: the columns of ``probabilities`` and ``contributions``.
    probabilities : ndarray of shape (n_labels,)
        The model's probability of each label for the whole text.
    contributions : ndarray of shape (n_words, n_labels)
        Probability of the whole text minus probability of the text without the word.
    """

    text: str
    words: list[str]
    spans: list[tuple[int, int]]
    labels: list[str]
    probabilities: np.ndarray
    contributions: np.ndarray

    def top_words(self, label: str, k: int = 5) -> list[tuple[str, float]]:
        """The ``k`` words that raised ``label`` most, with their contributions, largest
        first (only words that raised it)."""
        column = self.contributions[:, self._column(label)]
        order = np.argsort(-column, kind="stable")[:k]
        return [(self.words[i], float(column[i])) for i in order if column[i] > 0]

    def to_dict(self) -> dict:
        """JSON-ready: text, words, spans, and per label its probability and the words'
        contributions (rounded to 6 decimals)."""
        return {"text": self.text, "words": self.words, "spans": [list(s) for s in self.spans],
                "probabilities": {n: round(float(p), 6)
                                  for n, p in zip(self.labels, self.probabilities, strict=True)},
                "contributions": {n: (np.round(self.contributions[:, j], 6) + 0.0).tolist()
                                  for j, n in enumerate(self.labels)}}

    def _column(self, label: str) -> int:
        if label not in self.labels:
            raise ValueError(f"label {label!r} was not explained; explained: {self.labels}.")
        return self.labels.index(label)


def occluded_texts(texts: Sequence[str]) -> tuple[list[str], list[list[tuple[int, int]]]]:
    """Rows to score for :func:`explain`: each text, then the text without each word in
    turn; and each text's word spans."""
    all_spans = [word_spans(text) for text in texts]
    rows = [row for text, spans in zip(texts, all_spans, strict=True)
            for row in _occluded_rows(text, spans)]
    return rows, all_spans


def _occluded_rows(text: str, spans: list[tuple[int, int]]) -> Iterator[str]:
    """The text, then the text without each word in turn (made one at a time: a long text's
    rows need not all be in memory at once)."""
    yield text
    for start, end in spans:
        # the word and the spaces after it (before it, for the last word) go together
        after = len(text[end:]) - len(text[end:].lstrip())
        before = 0 if after else len(text[:start]) - len(text[:start].rstrip())
        yield text[:start - before] + text[end + after:]


def explanations_from(texts: Sequence[str], all_spans: list[list[tuple[int, int]]],
                      proba: np.ndarray, names: Sequence[str],
                      columns: Sequence[int]) -> list[Explanation]:
    """:class:`Explanation` objects from the probabilities of :func:`occluded_texts`' rows;
    ``columns`` picks the explained labels among ``names``."""
    proba = np.asarray(proba, dtype=np.float64)[:, list(columns)]
    out, row = [], 0
    for text, spans in zip(texts, all_spans, strict=True):
        whole, without = proba[row], proba[row + 1:row + 1 + len(spans)]
        out.append(Explanation(text, [text[s:e] for s, e in spans], list(spans),
                               [names[j] for j in columns], whole, whole - without))
        row += 1 + len(spans)
    return out


def explained_columns(names: Sequence[str], labels: str | Sequence[str] | None) -> list[int]:
    """Column indices of ``labels`` (all when ``None``) in ``names``, or a ValueError naming
    the unknown ones."""
    if labels is None:
        return list(range(len(names)))
    wanted = [labels] if isinstance(labels, str) else list(labels)
    unknown = [label for label in wanted if label not in names]
    if unknown:
        raise ValueError(f"unknown label(s) {unknown}; the model's labels are {list(names)}.")
    return [list(names).index(label) for label in wanted]


def explain(model, texts, labels: str | Sequence[str] | None = None,
            max_words: int | None = MAX_WORDS) -> list[Explanation]:
    """Each word's contribution to each label's probability, by occlusion.

    Parameters
    ----------
    model : fitted multi-label estimator with ``predict_proba`` over texts
        A pipeline from :func:`~skstack.make_stacked_pipeline`, a loaded ``.skstack`` model,
        or any estimator taking raw texts; its label names come from
        :func:`~skstack.label_names` (``"0"``, ``"1"``, ... when it has none).
    texts : list of str
    labels : str or list of str, default=None
        The labels to explain; all of them by default.
    max_words : int or None, default=512
        The most words a text may have: each word costs one more text for the model, of
        the text's length, so time and memory grow with the square of a text's length. A
        longer text is refused (a ``ValueError`` naming it) before any work; ``None``
        takes any length (the work is still cut into bounded calls).

    Returns
    -------
    list of Explanation, one per text

    Examples
    --------
    >>> import numpy as np
    >>> class Thanks:  # a stand-in model: "thanks" makes the only label likely
    ...     label_names_ = ["gratitude"]
    ...     def predict_proba(self, texts):
    ...         return np.array([[0.9 if "thanks" in t else 0.1] for t in texts])
    >>> [e] = explain(Thanks(), ["thanks a lot"])
    >>> e.words, np.round(e.contributions[:, 0], 2).tolist()
    (['thanks', 'a', 'lot'], [0.8, 0.0, 0.0])
    >>> e.top_words("gratitude")
    [('thanks', 0.8)]
    """
    texts = check_texts(texts)
    try:
        names = [str(n) for n in label_names(model)]
    except ValueError:  # not a skstack estimator: columns are numbered
        names = None
    columns = None if names is None else explained_columns(names, labels)  # before any work
    all_spans = [word_spans(text) for text in texts]
    if max_words is not None:
        for i, spans in enumerate(all_spans):
            if len(spans) > max_words:
                raise ValueError(f"text {i} has {len(spans):,} words; explain takes at most "
                                 f"max_words={max_words:,} (each word is one more text for "
                                 "the model). Pass a larger max_words, or None, to wait.")
    out = []
    for start, stop in _chunks(texts, all_spans):
        proba = np.concatenate([_checked_proba(model, rows)
                                for rows in _row_calls(texts[start:stop],
                                                       all_spans[start:stop])])
        if names is None:
            names = [str(j) for j in range(proba.shape[1])]
            columns = explained_columns(names, labels)
        out += explanations_from(texts[start:stop], all_spans[start:stop], proba, names,
                                 columns)
    return out


def _cost(text: str, spans: list) -> tuple[int, int]:
    """Rows and characters of a text's occluded rows."""
    return len(spans) + 1, (len(spans) + 1) * len(text)


def _chunks(texts: Sequence[str], all_spans: list) -> list[tuple[int, int]]:
    """``(start, stop)`` of runs of whole texts whose rows fit in one call's bounds (a text
    past them alone)."""
    out, start, rows, chars = [], 0, 0, 0
    for i, (text, spans) in enumerate(zip(texts, all_spans, strict=True)):
        more_rows, more_chars = _cost(text, spans)
        if i > start and (rows + more_rows > _ROWS_PER_CALL or
                          chars + more_chars > _CHARS_PER_CALL):
            out.append((start, i))
            start, rows, chars = i, 0, 0
        rows, chars = rows + more_rows, chars + more_chars
    if start < len(texts):
        out.append((start, len(texts)))
    return out


def _row_calls(texts: Sequence[str], all_spans: list):
    """The occluded rows of ``texts`` in calls within the bounds: one text's rows are made
    call by call (its rows may exceed a call's bounds when the text is long)."""
    width = max(1, min(_ROWS_PER_CALL, _CHARS_PER_CALL // max(1, max(map(len, texts)))))
    rows: list[str] = []
    for text, spans in zip(texts, all_spans, strict=True):
        for row in _occluded_rows(text, spans):
            rows.append(row)
            if len(rows) == width:
                yield rows
                rows = []
    if rows:
        yield rows


def _checked_proba(model, rows: list[str]) -> np.ndarray:
    proba = np.asarray(model.predict_proba(rows))
    if proba.ndim != 2 or len(proba) != len(rows):
        raise ValueError(f"explain needs multi-label probabilities of shape (n_texts, "
                         f"n_labels); predict_proba returned shape {proba.shape}.")
    return proba
