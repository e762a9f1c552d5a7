"""Word-level stacked representations: one shared word splitter and a ragged container.

In word mode (``EncoderEmbedder(word_pooling="first" | "mean")``) every encoder returns one
vector per *word*, not per text. The words are the same for every encoder because they come
from one splitter (:func:`word_spans`), so ``StackingEmbedder`` can concatenate the members'
states word by word, as flair's ``StackedEmbeddings`` does, and the Bi-LSTM reads the text.
Texts have different numbers of words: :class:`WordSequences` keeps all states in one flat
float16 array with row offsets (no padding is stored), beside the sentence-level blocks
(character n-grams, the meta-learner's probabilities) that join at the classifier's head.

Words are orthographic words in every script (see :func:`word_spans`).

Import rule: a leaf (numpy, ``regex`` and the standard library only).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence

import numpy as np
import regex

# Versions of the splitter: a new one changes word-mode vectors, so it is in their cache key.
WORD_SPLITTER = "2"
_CJK = r"\p{Han}\p{Hiragana}\p{Katakana}"  # scripts written without spaces between words
_START = rf"[\p{{L}}\p{{N}}_--[{_CJK}]]"  # a word starts with a letter, digit or _ ...
# ... and goes on with those, combining marks (harakat, shadda, Hebrew points, matras,
# accents of NFD text) and the joiners ZWJ/ZWNJ (Persian, Indic); tatweel is a letter (Lm)
_GO_ON = rf"[\p{{L}}\p{{N}}_\p{{M}}\u200c\u200d--[{_CJK}]]"
_WORD = regex.compile(
    rf"[{_CJK}]\p{{M}}*"  # one ideograph or kana (with its marks) is one word
    rf"|{_START}{_GO_ON}*(?:['’]{_START}{_GO_ON}*)*"  # inner apostrophes: "don't"
    rf"|(?=[^\p{{L}}\p{{N}}_\p{{M}}\s\u200c\u200d])\X",  # any other character with what
    regex.V1,  # joins it (a grapheme: an emoji ZWJ sequence, a skin tone) is a word of its own
)


def word_spans(text: str) -> list[tuple[int, int]]:
    """Character ``(start, end)`` of each word of ``text``, in order.

    A word is a run of letters and digits of any script with the combining marks that
    follow them (Arabic harakat and shadda, Hebrew points, Devanagari matras, the accents of
    NFD text), tatweel, ZWJ/ZWNJ and inner apostrophes; a word never starts with a mark, and
    a mark with no letter before it belongs to no word. Every other character is a word of
    its own with what joins it: punctuation (``،``, ``؟``), one emoji with its ZWJ sequence
    or skin tone. Scripts written without spaces: a Chinese or Japanese ideograph or kana
    is one word (the same for every tokenizer, as no dictionary is assumed); a run of Thai,
    Lao or Khmer letters is one word, as a space-free run is in any script. The text is not
    normalised (no NFC): the spans index the very text the tokenizers see, and NFC and NFD
    forms of a text give the same words.

    Examples
    --------
    >>> [("I don't know!")[s:e] for s, e in word_spans("I don't know!")]
    ['I', "don't", 'know', '!']
    >>> [("السَّلَامُ عَلَيْكُمْ")[s:e] for s, e in word_spans("السَّلَامُ عَلَيْكُمْ")]
    ['السَّلَامُ', 'عَلَيْكُمْ']
    """
    return [m.span() for m in _WORD.finditer(text)]


def token_words(offsets: Sequence[tuple[int, int]], spans: Sequence[tuple[int, int]],
                shift: int = 0) -> list[int]:
    """The word index of each token (-1 for special tokens and tokens outside every word).

    ``offsets`` are a fast tokenizer's character offsets into the text it was given, which
    had ``shift`` characters (a prefix such as ``"query: "``) before the text whose word
    ``spans`` these are. A token belongs to the word that holds its last character.
    """
    starts = [start + shift for start, _ in spans]
    out = []
    for start, end in offsets:
        word = -1
        if end > start:
            i = bisect_right(starts, end - 1) - 1
            if i >= 0 and end - 1 < spans[i][1] + shift:
                word = i
        out.append(word)
    return out


def _gather_index(offsets: np.ndarray, rows: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Flat indices of the first ``lengths[k]`` words of text ``rows[k]``, text after text."""
    total = int(lengths.sum())
    starts = np.repeat(offsets[rows], lengths)
    within = np.arange(total) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    return starts + within


def _offsets(lengths: np.ndarray) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)


class WordSequences:
    """Per-word states of ``n`` texts (ragged) and their sentence-level blocks.

    Parameters
    ----------
    values : ndarray of shape (n_words_total, word_width)
        The words' states, text after text; kept as float16 (half the memory of float32).
    offsets : ndarray of shape (n + 1,)
        Text ``i``'s words are ``values[offsets[i]:offsets[i + 1]]``.
    word_blocks : list of (str, int)
        Which columns of ``values`` came from which member.
    sentence : ndarray of shape (n, sentence_width), default=None
        One row per text of sentence-level features (float32); ``None`` for none.
    blocks : list of (str, int), default=()
        The layout of ``sentence``.

    Notes
    -----
    ``len(ws)`` and ``ws.shape[0]`` are the number of texts and ``ws[rows]`` selects texts,
    so scikit-learn's splitters, ``_safe_indexing`` and joblib treat it like an array of
    rows. ``shape[1]`` is the width of one word's states plus the sentence blocks.

    Examples
    --------
    >>> ws = WordSequences.from_rows([np.ones((2, 3)), np.zeros((1, 3))], "enc")
    >>> len(ws), ws.lengths.tolist(), ws[[1]].lengths.tolist()
    (2, [2, 1], [1])
    """

    def __init__(self, values, offsets, word_blocks, sentence=None, blocks=()):
        self.values = np.asarray(values, dtype=np.float16)
        self.offsets = np.asarray(offsets, dtype=np.int64)
        n = len(self.offsets) - 1
        if self.values.ndim != 2 or n < 0 or self.offsets[-1] != len(self.values):
            raise ValueError("offsets must run from 0 to the number of word rows in values.")
        self.word_blocks = [(str(name), int(w)) for name, w in word_blocks]
        if sum(w for _, w in self.word_blocks) != self.values.shape[1]:
            raise ValueError(f"The word blocks {self.word_blocks} do not add up to the "
                             f"{self.values.shape[1]} columns of values.")
        sentence = np.zeros((n, 0), np.float32) if sentence is None else sentence
        self.sentence = np.asarray(sentence, dtype=np.float32)
        self.blocks = [(str(name), int(w)) for name, w in blocks]
        if self.sentence.shape[0] != n or sum(w for _, w in self.blocks) != self.sentence.shape[1]:
            raise ValueError(f"sentence has shape {self.sentence.shape}; expected {n} rows "
                             f"and the widths of blocks {self.blocks}.")

    @classmethod
    def from_rows(cls, rows: Sequence[np.ndarray], name: str, width: int | None = None
                  ) -> WordSequences:
        """One text's (n_words, width) array after the other; ``width`` for zero texts."""
        width = rows[0].shape[1] if rows else width
        lengths = np.array([len(r) for r in rows], dtype=np.int64)
        values = np.concatenate(rows) if rows else np.zeros((0, width), np.float16)
        return cls(values, _offsets(lengths), [(name, width)])

    @classmethod
    def concatenate(cls, parts: Sequence[WordSequences]) -> WordSequences:
        """The texts of ``parts``, one part after the other (same layouts)."""
        first = parts[0]
        lengths = np.concatenate([p.lengths for p in parts])
        return cls(np.concatenate([p.values for p in parts]), _offsets(lengths),
                   first.word_blocks, np.concatenate([p.sentence for p in parts]), first.blocks)

    @classmethod
    def align(cls, members: Sequence[tuple[str, WordSequences]], sentence=None, blocks=()
              ) -> WordSequences:
        """Concatenate several members' states word by word.

        Every member splits the same words, but each cuts long texts at its own token limit:
        a text keeps the words that every member reached.
        """
        lengths = np.min([m.lengths for _, m in members], axis=0)
        rows = np.arange(len(lengths))
        values = np.hstack([m.values[_gather_index(m.offsets, rows, lengths)]
                            for _, m in members])
        word_blocks = [(name, m.values.shape[1]) for name, m in members]
        return cls(values, _offsets(lengths), word_blocks, sentence, blocks)

    @property
    def lengths(self) -> np.ndarray:
        """Number of words of each text."""
        return np.diff(self.offsets)

    @property
    def word_width(self) -> int:
        return self.values.shape[1]

    @property
    def shape(self) -> tuple[int, int]:
        return len(self), self.word_width + self.sentence.shape[1]

    @property
    def ndim(self) -> int:
        return 2

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, rows) -> WordSequences:
        if isinstance(rows, tuple):  # X[rows, ...], as scikit-learn's indexing writes it
            rows = rows[0]
        rows = np.arange(len(self))[rows]
        if rows.ndim == 0:
            raise TypeError("Select texts with a slice, a list or an array of rows; one "
                            "text is ws[[i]].")
        lengths = self.lengths[rows]
        values = self.values[_gather_index(self.offsets, rows, lengths)]
        return WordSequences(values, _offsets(lengths), self.word_blocks, self.sentence[rows],
                             self.blocks)

    def check_finite(self) -> WordSequences:
        """Return self, or raise naming the first text whose states are NaN or infinite."""
        for what, array in (("word states", self.values), ("sentence features", self.sentence)):
            finite = np.isfinite(array).all(axis=1)
            if not finite.all():
                row = int(np.argmin(finite))
                text = row if array is self.sentence else int(
                    np.searchsorted(self.offsets, row, side="right") - 1)
                raise ValueError(f"Input X contains NaN or infinity in the {what} of text "
                                 f"{text}; features must be finite.")
        return self

    def words(self, i: int) -> np.ndarray:
        """Text ``i``'s (n_words, word_width) states."""
        return self.values[self.offsets[i] : self.offsets[i + 1]]

    def mean_words(self) -> np.ndarray:
        """(n, word_width) float32: each text's mean word state (zeros for a text without
        words); the sentence vector the meta-learner reads from a word-level member."""
        out = np.zeros((len(self), self.word_width), dtype=np.float32)
        lengths = self.lengths
        filled = lengths > 0
        if filled.any():
            sums = np.add.reduceat(self.values, self.offsets[:-1][filled], axis=0,
                                   dtype=np.float32)
            out[filled] = sums / lengths[filled, None]
        return out

    def __repr__(self) -> str:
        return (f"WordSequences(n_texts={len(self)}, words={len(self.values)}, "
                f"word_blocks={self.word_blocks}, blocks={self.blocks})")
