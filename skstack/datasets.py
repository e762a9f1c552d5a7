"""Data set loaders: the bundled GoEmotions sample, GoEmotions TSV files and SemEval-2018 E-c.

Every loader returns ``(texts, Y, label_names)``: a list of str, a 0/1 int matrix of shape
(n_texts, n_labels) (a DataFrame with ``as_frame=True``) and the label names. SemEval-2018
data may not be redistributed, so its loader reads the official files from a path you give.

Import rule: a leaf (numpy, pandas and the standard library only).
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import NamedTuple

import numpy as np

SEMEVAL_LABELS = ["anger", "anticipation", "disgust", "fear", "joy", "love", "optimism",
                  "pessimism", "sadness", "surprise", "trust"]
_SEMEVAL_LANGUAGES = {"english": "En", "arabic": "Ar", "spanish": "Es",
                      "en": "En", "ar": "Ar", "es": "Es"}
_SPLITS = ("train", "dev", "test")


class MultilabelData(NamedTuple):
    texts: list[str]
    Y: object  # ndarray of int64, or a DataFrame with as_frame=True
    label_names: list[str]


def _result(texts, Y, names, as_frame: bool) -> MultilabelData:
    if as_frame:
        import pandas as pd

        Y = pd.DataFrame(Y, columns=names)
    return MultilabelData(texts, Y, names)


def _check_split(split: str) -> None:
    if split not in _SPLITS:
        raise ValueError(f"split must be one of {_SPLITS}, got {split!r}.")


def _read_text(path: Path) -> str:
    """A UTF-8 file's text without its byte-order mark; other encodings are refused with the
    path, the place and a likely cause."""
    raw = Path(path).read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        if raw[:2] in (b"\xff\xfe", b"\xfe\xff") or raw[1:200:2].count(0) > 50:
            likely = "it looks like UTF-16"
        else:
            likely = "it may be Latin-1 or Windows-1252"
        raise ValueError(
            f"{path} is not UTF-8 (byte {raw[exc.start]:#04x} at offset {exc.start}, line "
            f"{line}); {likely}. Convert it, e.g. iconv -f <encoding> -t UTF-8."
        ) from None


def _read_goemotions(path: Path, names: list[str], as_frame: bool) -> MultilabelData:
    texts, rows = [], []
    for line_no, line in enumerate(_read_text(path).split("\n"), start=1):
        line = line.rstrip("\r")
        if not line:
            continue
        parts = line.rsplit("\t", 2)
        if len(parts) != 3:
            raise ValueError(
                f"{path}, line {line_no}: expected 'text<TAB>label ids<TAB>id', found "
                f"{len(parts)} field(s)."
            )
        try:
            ids = [int(v) for v in parts[1].split(",")]
        except ValueError:
            raise ValueError(
                f"{path}, line {line_no}: label ids must be comma-separated integers, "
                f"got {parts[1]!r}."
            ) from None
        bad = [i for i in ids if not 0 <= i < len(names)]
        if bad:
            raise ValueError(
                f"{path}, line {line_no}: label id {bad[0]} is outside 0..{len(names) - 1}."
            )
        texts.append(parts[0])
        rows.append(ids)
    Y = np.zeros((len(texts), len(names)), dtype=np.int64)
    for r, ids in enumerate(rows):
        Y[r, ids] = 1
    return _result(texts, Y, names, as_frame)


def load_goemotions(folder: str | os.PathLike, split: str = "train",
                    as_frame: bool = False) -> MultilabelData:
    """Read a GoEmotions split (``train.tsv``, ``dev.tsv``, ``test.tsv`` and ``labels.txt``).

    Examples
    --------
    >>> texts, Y, names = load_goemotions("../shared/data/goemotions", "dev")  # doctest: +SKIP
    >>> Y.shape, names[:2]  # doctest: +SKIP
    ((5426, 28), ['admiration', 'amusement'])
    """
    _check_split(split)
    folder = Path(folder)
    labels_file = folder / "labels.txt"
    if not labels_file.is_file():
        raise FileNotFoundError(f"{labels_file} not found: a GoEmotions folder holds "
                                "labels.txt beside train.tsv, dev.tsv and test.tsv.")
    names = [n.strip() for n in _read_text(labels_file).splitlines() if n.strip()]
    return _read_goemotions(folder / f"{split}.tsv", names, as_frame)


def load_sample_emotions(split: str = "train", as_frame: bool = False) -> MultilabelData:
    """The bundled GoEmotions sample: 3,000 train and 1,000 test texts, 28 labels.

    Every label occurs in both splits. GoEmotions is Apache-2.0 (Demszky et al., 2020); see
    ``skstack/data/NOTICE-goemotions.md``.

    Examples
    --------
    >>> texts, Y, names = load_sample_emotions("test")
    >>> len(texts), Y.shape[1], names[-1]
    (1000, 28, 'neutral')
    """
    if split not in ("train", "test"):
        raise ValueError(f"The sample has the splits 'train' and 'test', got {split!r}.")
    data = resources.files("skstack") / "data"
    names = (data / "goemotions_labels.txt").read_text(encoding="utf-8").split()
    with resources.as_file(data / f"goemotions_sample_{split}.tsv") as path:
        return _read_goemotions(path, names, as_frame)


def _semeval_file(path: Path, language: str, split: str) -> Path:
    if path.is_file():
        return path
    code = _SEMEVAL_LANGUAGES.get(language.lower())
    if code is None:
        raise ValueError(f"language must be English, Arabic or Spanish, got {language!r}.")
    _check_split(split)
    candidates = sorted(path.glob(f"*E-c-{code}-{split}*.txt"))
    if not candidates:
        raise FileNotFoundError(
            f"No SemEval-2018 E-c file for {language} {split} in {path} (looked for "
            f"'*E-c-{code}-{split}*.txt', e.g. 2018-E-c-{code}-{split}.txt)."
        )
    return candidates[0]


def load_semeval2018_ec(path: str | os.PathLike, language: str = "English",
                        split: str = "train", as_frame: bool = False) -> MultilabelData:
    """Read SemEval-2018 Task 1 E-c data in its official format.

    ``path`` is the official file or a folder holding ``2018-E-c-<En|Ar|Es>-<split>.txt``.
    The format: tab-separated, header ``ID Tweet anger ... trust``, CRLF line ends, 0/1
    labels, and newlines inside tweets written as a literal backslash-n (restored here).

    Examples
    --------
    >>> texts, Y, names = load_semeval2018_ec("data/semeval", "Arabic", "dev")  # doctest: +SKIP
    """
    file = _semeval_file(Path(path), language, split)
    lines = _read_text(file).replace("\r\n", "\n").split("\n")
    header = lines[0].split("\t")
    if [h.strip().lower() for h in header] != ["id", "tweet", *SEMEVAL_LABELS]:
        raise ValueError(
            f"{file}: unexpected header {header}; SemEval-2018 E-c files start with "
            f"{['ID', 'Tweet', *SEMEVAL_LABELS]}."
        )
    texts, rows = [], []
    for line_no, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != 2 + len(SEMEVAL_LABELS):
            raise ValueError(
                f"{file}, row {line_no}: expected {2 + len(SEMEVAL_LABELS)} tab-separated "
                f"fields, found {len(fields)}."
            )
        values = fields[2:]
        bad = [(name, v) for name, v in zip(SEMEVAL_LABELS, values, strict=True)
               if v.strip() not in ("0", "1")]
        if bad:
            raise ValueError(
                f"{file}, row {line_no}: label {bad[0][0]!r} is {bad[0][1]!r}; expected 0 or 1 "
                "(an unlabelled test file marks labels as NONE and cannot be loaded as gold)."
            )
        texts.append(fields[1].replace("\\n", "\n"))
        rows.append([int(v) for v in values])
    Y = np.asarray(rows, dtype=np.int64).reshape(len(rows), len(SEMEVAL_LABELS))
    return _result(texts, Y, list(SEMEVAL_LABELS), as_frame)
