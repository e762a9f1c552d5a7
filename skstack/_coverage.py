"""How well an encoder's tokenizer covers the texts it is fitted on.

An encoder that does not read a language says so in its tokens before any score does: an
English WordPiece vocabulary cuts Arabic words into single letters (98 % of its pieces on
Arabic tweets), and maps Japanese kaomoji to the unknown token (18 %); multilingual-e5-small
cuts the same texts into whole words and syllables (docs/method.md, "Languages"). Two shares
of a sample of the texts' tokens tell it:

- **unknown**: tokens that are the tokenizer's unknown token;
- **letters**: tokens that hold a single letter and touch a neighbouring token with no space
  between, that is, words spelt out letter by letter. Letters of scripts written without
  spaces (Chinese, Japanese kana, Thai, ...) are single by nature and do not count.

Import rule: ``skstack._config`` only.
"""

from __future__ import annotations

import unicodedata
import warnings
from typing import NamedTuple

from skstack._config import outside_caller_level

# Above these shares a fit warns. Measured (unknown / letters): GoEmotions' English with
# MiniLM 0.1 % / 5 %, with multilingual-e5-small 0 % / 10 %; Arabic sentences with MiniLM
# 0.5 % / 98 %, with e5 0 % / 21 %; kaomoji with MiniLM 18 % / 6 %, with e5 0.3 % / 7 %.
MAX_UNKNOWN = 0.05
MAX_LETTERS = 0.30
SAMPLE = 1000  # texts looked at
_UNSPACED = ("CJK", "HIRAGANA", "KATAKANA", "HALFWIDTH KATAKANA", "THAI", "LAO", "KHMER",
             "MYANMAR", "TIBETAN")


class Coverage(NamedTuple):
    unknown: float
    letters: float
    tokens: int


def _spelt(char: str) -> bool:
    return char.isalpha() and not unicodedata.name(char, "").startswith(_UNSPACED)


def tokenizer_coverage(tokenizer, texts: list[str]) -> Coverage | None:
    """The unknown and single-letter shares of the tokens of (up to ``SAMPLE`` of)
    ``texts``; ``None`` for a tokenizer without character offsets (a slow one)."""
    if not getattr(tokenizer, "is_fast", False):
        return None
    sample = texts[:SAMPLE]
    encoded = tokenizer(sample, add_special_tokens=False, return_offsets_mapping=True)
    unk = tokenizer.unk_token_id
    n = unknown = letters = 0
    for text, ids, spans in zip(sample, encoded["input_ids"], encoded["offset_mapping"],
                                strict=True):
        n += len(ids)
        unknown += sum(i == unk for i in ids) if unk is not None else 0
        for k, (start, end) in enumerate(spans):
            piece = text[start:end].strip()
            if len(piece) != 1 or not _spelt(piece):
                continue
            touches = (k > 0 and spans[k - 1][1] == start) or \
                (k + 1 < len(spans) and spans[k + 1][0] == end)
            letters += touches
    if n == 0:
        return Coverage(0.0, 0.0, 0)
    return Coverage(unknown / n, letters / n, n)


def warn_on_poor_coverage(tokenizer, texts: list[str], model: str) -> None:
    """Warn, naming ``model`` and the remedy, when a share of :func:`tokenizer_coverage` is
    above its limit."""
    coverage = tokenizer_coverage(tokenizer, texts)
    if coverage is None or coverage.tokens == 0:
        return
    problems = []
    if coverage.unknown > MAX_UNKNOWN:
        problems.append(f"{coverage.unknown:.0%} of its tokens are unknown")
    if coverage.letters > MAX_LETTERS:
        problems.append(f"{coverage.letters:.0%} of its tokens are words spelt letter by "
                        "letter")
    if problems:
        warnings.warn(
            f"The tokenizer of {model} reads these texts badly: {' and '.join(problems)} "
            f"(in {min(len(texts), SAMPLE):,} texts). It may not know their language or "
            "script; an encoder that does will score better: language=... in "
            "make_stacked_pipeline, or --language on the command line (docs/method.md, "
            "'Languages').", UserWarning, stacklevel=outside_caller_level())
