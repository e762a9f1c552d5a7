"""Data set loaders: the bundled GoEmotions sample, GoEmotions TSV files and SemEval-2018 E-c.

``load_table`` reads any TSV, CSV or JSONL file with named text and label columns. Every
loader returns ``(texts, Y, label_names)``: a list of str, a 0/1 int matrix of shape
(n_texts, n_labels) (a DataFrame with ``as_frame=True``) and the label names. SemEval-2018
data may not be redistributed, so its loader reads the official files from a path you give.

Import rule: numpy, pandas, the standard library and ``skstack.labels``.
"""

from __future__ import annotations

import csv
import io
import json
import os
import warnings
from importlib import resources
from pathlib import Path
from typing import NamedTuple

import numpy as np

from skstack.labels import first_unknown, from_label_lists

SEMEVAL_LABELS = ["anger", "anticipation", "disgust", "fear", "joy", "love", "optimism",
                  "pessimism", "sadness", "surprise", "trust"]
# SemEval-2018 E-c languages by name or code -> the code in the official file names
SEMEVAL_LANGUAGES = {"english": "En", "arabic": "Ar", "spanish": "Es",
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


def _lines(text: str) -> list[str]:
    """Lines ended by LF, CRLF or a lone CR (old Mac files): a file of CR-only lines would
    otherwise read as one line. Other separators (U+2028, form feeds) stay inside texts."""
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")


def _read_goemotions(path: Path, names: list[str], as_frame: bool) -> MultilabelData:
    texts, rows = [], []
    for line_no, line in enumerate(_lines(_read_text(path)), start=1):
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
    names = [n.strip() for n in _lines(_read_text(labels_file)) if n.strip()]
    if not names:
        raise ValueError(f"{labels_file} holds no label names; it lists one name per line, "
                         "in the order of the label ids of the .tsv files.")
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
    code = SEMEVAL_LANGUAGES.get(language.lower())
    if code is None:
        raise ValueError(f"language must be English, Arabic or Spanish, got {language!r}.")
    if split != "test-gold":  # the official name of the labelled test file
        _check_split(split)
    # "test" matches test-gold.txt before test.txt (the unlabelled one): '-' sorts first
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

    ``path`` is the official file or a folder holding ``2018-E-c-<En|Ar|Es>-<split>.txt``;
    ``split`` is ``"train"``, ``"dev"`` or ``"test"`` (the official ``"test-gold"`` too).
    The format: tab-separated, header ``ID Tweet anger ... trust``, CRLF line ends, 0/1
    labels, and newlines inside tweets written as a literal backslash-n (restored here).

    Examples
    --------
    >>> texts, Y, names = load_semeval2018_ec("data/semeval", "Arabic", "dev")  # doctest: +SKIP
    """
    file = _semeval_file(Path(path), language, split)
    lines = _lines(_read_text(file))
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


_TABLE_FORMATS = {".tsv": "tsv", ".tab": "tsv", ".csv": "csv", ".jsonl": "jsonl",
                  ".ndjson": "jsonl"}


def _table_records(path: Path, fmt: str) -> list[tuple[int, dict]]:
    """(line number, record) pairs of a TSV/CSV file with a header, or of a JSONL file."""
    text = _read_text(path)
    if fmt == "jsonl":
        records = []
        for line_no, line in enumerate(_lines(text), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}, line {line_no}: not valid JSON ({exc.msg}).") from None
            if not isinstance(record, dict):
                raise ValueError(f"{path}, line {line_no}: expected a JSON object per line, "
                                 f"got {type(record).__name__}.")
            records.append((line_no, record))
        return records
    reader = csv.DictReader(io.StringIO(text, newline=""),
                            delimiter="\t" if fmt == "tsv" else ",")
    records = []
    for record in reader:
        if None in record:  # more fields than the header names
            raise ValueError(f"{path}, line {reader.line_num}: more fields than the header's "
                             f"{len(reader.fieldnames or [])} ({reader.fieldnames}).")
        records.append((reader.line_num, record))
    return records


def _check_header(path: Path, fmt: str, header: list[str], wanted: list[str]) -> None:
    """A ValueError naming the first of ``wanted`` the header lacks, with what to do."""
    missing = [c for c in wanted if c not in header]
    if not missing:
        return
    other = {"tsv": ("csv", ","), "csv": ("tsv", "\t")}[fmt]
    if len(header) == 1 and other[1] in header[0]:
        hint = (f"It has no {'tab' if fmt == 'tsv' else 'comma'} but holds "
                f"{'commas' if fmt == 'tsv' else 'tabs'}: read it as {other[0].upper()} "
                f"(file_format='{other[0]}'; on the command line --format {other[0]}).")
    else:
        sep = "<TAB>" if fmt == "tsv" else ","
        hint = ("Name the columns that hold the texts and the labels (text_column=..., "
                "label_column=...; on the command line --text-column, --label-column), or, "
                f"for a file without a header, add the line 'text{sep}labels' first.")
    raise ValueError(f"{path}, line 1 (the header): no column {missing[0]!r}; the header "
                     f"names {header}. {hint}")


def _label_names_of(value, sep: str, where: str) -> list[str]:
    """One cell of a label-names column: ``"joy,optimism"``, a JSON list ``["joy",
    "optimism"]`` (as a string in TSV/CSV, or a list in JSONL), or empty."""
    if isinstance(value, str) and value.strip().startswith("["):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise ValueError(f"{where} is {value!r}, which starts like a JSON list but is not "
                             "one; write a JSON list of names (e.g. [\"joy\", \"anger\"]) or "
                             f"names separated by {sep!r}.") from None
    if isinstance(value, str):
        return [v.strip() for v in value.split(sep) if v.strip()]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{where} is {value!r:.80}; expected label names separated by "
                         f"{sep!r} or a list of names (strings).")
    return [v.strip() for v in value if v.strip()]


def _zero_one_row(record: dict, columns: list[str], where: str) -> list[int]:
    """One row's 0/1 label columns, or an error naming the first that holds anything else."""
    values = [str(record[c]).strip() for c in columns]
    bad = [(c, v) for c, v in zip(columns, values, strict=True) if v not in ("0", "1")]
    if bad:
        raise ValueError(f"{where}: column {bad[0][0]!r} is {bad[0][1]!r}; expected 0 or 1.")
    return [int(v) for v in values]


def load_table(
    path: str | os.PathLike,
    text_column: str = "text",
    label_column: str | None = "labels",
    label_columns: list[str] | None = None,
    label_sep: str = ",",
    names: list[str] | None = None,
    file_format: str = "auto",
    as_frame: bool = False,
) -> MultilabelData:
    """Read texts and labels from a TSV, CSV or JSONL file with named columns.

    Labels come either as one column of label *names* (``label_column``: ``"joy,optimism"``
    separated by ``label_sep``, or a JSON list ``["joy", "optimism"]``, in TSV/CSV; a list or
    either string in JSONL; empty for a text without labels) or as one 0/1 column per label
    (``label_columns``). Label names holding ``[``, ``]`` or ``"`` are warned about: they
    usually come from a list written some other way.

    Parameters
    ----------
    path : path-like
    text_column : str, default="text"
    label_column : str or None, default="labels"
        The column of label names; ignored when ``label_columns`` is given. ``None``: the
        file has no labels (e.g. texts to predict); ``Y`` is then ``None``.
    label_columns : list of str, default=None
        One 0/1 column per label; the names are these column names.
    label_sep : str, default=","
    names : list of str, default=None
        The label names in order (e.g. those a fitted model uses). ``None``: every name
        found in ``label_column``, sorted.
    file_format : {"auto", "tsv", "csv", "jsonl"}, default="auto"
        ``"auto"`` goes by the file's suffix (.tsv, .csv, .jsonl).
    as_frame : bool, default=False

    Examples
    --------
    >>> import tempfile, pathlib
    >>> f = pathlib.Path(tempfile.mkdtemp()) / "data.tsv"
    >>> _ = f.write_text("text\\tlabels\\nWhat a day!\\tjoy,surprise\\nOk.\\t\\n")
    >>> texts, Y, names = load_table(f)
    >>> texts, Y.tolist(), names
    (['What a day!', 'Ok.'], [[1, 1], [0, 0]], ['joy', 'surprise'])
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found.")
    fmt = _TABLE_FORMATS.get(path.suffix.lower()) if file_format == "auto" else file_format
    if fmt not in ("tsv", "csv", "jsonl"):
        raise ValueError(f"{path}: cannot tell the format from the suffix {path.suffix!r}; "
                         "pass file_format='tsv', 'csv' or 'jsonl' (on the command line "
                         "--format tsv, csv or jsonl).")
    records = _table_records(path, fmt)
    if not records:
        raise ValueError(f"{path} holds no rows.")
    wanted = [text_column] + (list(label_columns) if label_columns else
                              [label_column] if label_column is not None else [])
    if fmt != "jsonl":  # every row has the header's columns: a missing one is the header's
        _check_header(path, fmt, list(records[0][1]), wanted)
    texts, label_rows = [], []
    for line_no, record in records:
        missing = [c for c in wanted if c not in record]
        if missing:
            raise ValueError(f"{path}, line {line_no}: no column {missing[0]!r}; the columns "
                             f"are {list(record)}.")
        text = record[text_column]
        if not isinstance(text, str):
            raise ValueError(f"{path}, line {line_no}: column {text_column!r} is "
                             f"{text!r}; expected text.")
        texts.append(text)
        if label_columns:
            label_rows.append(_zero_one_row(record, label_columns, f"{path}, line {line_no}"))
        elif label_column is not None:
            label_rows.append(_label_names_of(record[label_column], label_sep,
                                              f"{path}, line {line_no}: column {label_column!r}"))
    if label_columns:
        Y = np.asarray(label_rows, dtype=np.int64).reshape(len(texts), len(label_columns))
        return _result(texts, Y, list(label_columns), as_frame)
    if label_column is None:
        return MultilabelData(texts, None, list(names or []))
    odd = sorted({n for row in label_rows for n in row if any(c in n for c in '[]"')})
    if odd:
        warnings.warn(f"{path}: the label names {odd[:5]} hold '[', ']' or '\"'; if the "
                      "column was written another way (a Python list, a quoted CSV cell), "
                      "check that these are the names you meant.", UserWarning, stacklevel=2)
    bad = first_unknown(label_rows, names)
    if bad is not None:
        raise ValueError(f"{path}, line {records[bad[0]][0]}: label(s) {bad[1]} are not "
                         f"among the {len(names)} names {list(names)}.")
    Y, found = from_label_lists(label_rows, names)
    return _result(texts, Y, found, as_frame)
