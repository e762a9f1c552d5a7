"""Label names in and out, and reading labelled tables."""

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier

from skstack import (
    TunedThresholds,
    from_label_lists,
    label_names,
    load_table,
    predict_label_lists,
    to_label_lists,
)


def test_lists_and_matrices_round_trip():
    lists = [["joy", "optimism"], [], ["anger"], ["joy"]]
    Y, names = from_label_lists(lists)
    assert names == ["anger", "joy", "optimism"]
    assert Y.tolist() == [[0, 1, 1], [0, 0, 0], [1, 0, 0], [0, 1, 0]]
    assert to_label_lists(Y, names) == lists


def test_given_names_fix_the_columns_and_unknown_names_are_refused():
    Y, names = from_label_lists([["joy"]], names=["fear", "joy", "anger"])
    assert Y.tolist() == [[0, 1, 0]] and names == ["fear", "joy", "anger"]
    with pytest.raises(ValueError, match=r"Row 1 has label\(s\) \['love'\] that are not"):
        from_label_lists([["joy"], ["love"]], names=["joy"])


def test_a_bare_string_row_is_refused():
    with pytest.raises(TypeError, match=r"Row 0 is 'joy'; expected a list of label names"):
        from_label_lists(["joy", ["anger"]])


def test_wrong_width_is_refused():
    with pytest.raises(ValueError, match=r"3 columns \(one per name\), got shape \(1, 2\)"):
        to_label_lists([[1, 0]], ["a", "b", "c"])


def test_a_fitted_model_predicts_the_names_of_its_dataframe_columns():
    X = np.r_[np.zeros((10, 1)), np.ones((10, 1))]
    Y = pd.DataFrame({"calm": [1] * 10 + [0] * 10, "angry": [0] * 10 + [1] * 10})
    rule = TunedThresholds(OneVsRestClassifier(LogisticRegression()), cv=2,
                           min_labels=1).fit(X, Y)
    assert label_names(rule) == ["calm", "angry"]
    assert predict_label_lists(rule, [[0.0], [1.0]]) == [["calm"], ["angry"]]
    with pytest.raises(ValueError, match="has no label_names_"):
        label_names(LogisticRegression())


@pytest.mark.parametrize("suffix, body", [
    (".tsv", "text\tlabels\nhello there\tjoy,fear\nno label\t\n"),
    (".csv", 'text,labels\n"hello, there",joy|fear\nno label,\n'),
    (".jsonl", json.dumps({"text": "hello there", "labels": ["joy", "fear"]}) + "\n"
     + json.dumps({"text": "no label", "labels": []}) + "\n"),
])
def test_load_table_reads_each_format(tmp_path, suffix, body):
    path = tmp_path / f"data{suffix}"
    path.write_text(body, encoding="utf-8")
    sep = "|" if suffix == ".csv" else ","
    texts, Y, names = load_table(path, label_sep=sep)
    assert texts[1] == "no label" and names == ["fear", "joy"]
    assert Y.tolist() == [[1, 1], [0, 0]]


def test_load_table_reads_one_column_per_label(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("id,text,joy,anger\n1,hi,1,0\n2,grr,0,1\n")
    texts, Y, names = load_table(path, label_columns=["joy", "anger"])
    assert texts == ["hi", "grr"] and names == ["joy", "anger"] and Y.tolist() == [[1, 0], [0, 1]]
    path.write_text("id,text,joy,anger\n1,hi,1,0\n2,grr,yes,1\n")
    with pytest.raises(ValueError, match=r"d.csv, line 3: column 'joy' is 'yes'; expected 0 or 1"):
        load_table(path, label_columns=["joy", "anger"])


@pytest.mark.parametrize("body, message", [
    ("words\tlabels\nhi\tjoy\n", r"bad.tsv, line 1 \(the header\): no column 'text'; the header "
                                r"names \['words', 'labels'\]\. Name the columns .*--text-column"),
    ("text,labels\nhi,joy\n", r"no column 'text'; the header names \['text,labels'\]\. It has no "
                               r"tab but holds commas: read it as CSV \(file_format='csv'; on "
                               r"the command line --format csv\)"),
    ("text\tlabels\nhi\tjoy\textra\n", r"line 2: more fields than the header's 2"),
    ("text\tlabels\n", "holds no rows"),
])
def test_load_table_names_the_line_and_column_of_bad_input(tmp_path, body, message):
    path = tmp_path / "bad.tsv"
    path.write_text(body)
    with pytest.raises(ValueError, match=message):
        load_table(path)


def test_load_table_jsonl_errors_name_the_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "a", "labels": []}\n{"text": 3, "labels": []}\n')
    with pytest.raises(ValueError, match=r"line 2: column 'text' is 3; expected text"):
        load_table(path)
    path.write_text('{"text": "a", "labels": []}\nnot json\n')
    with pytest.raises(ValueError, match=r"line 2: not valid JSON"):
        load_table(path)


@pytest.mark.parametrize("suffix, body", [
    (".tsv", 'text\tlabels\nhello\t["joy", "fear"]\nnone\t[]\n'),
    (".csv", 'text,labels\nhello,"[""joy"", ""fear""]"\nnone,[]\n'),
    (".jsonl", '{"text": "hello", "labels": "[\\"joy\\", \\"fear\\"]"}\n'
               '{"text": "none", "labels": []}\n'),
])
def test_labels_written_as_a_json_list_are_read_as_a_list(tmp_path, suffix, body):
    path = tmp_path / f"data{suffix}"
    path.write_text(body, encoding="utf-8")
    texts, Y, names = load_table(path)
    assert texts == ["hello", "none"]
    assert names == ["fear", "joy"] and Y.tolist() == [[1, 1], [0, 0]]


@pytest.mark.parametrize("cell, message", [
    ('["joy", "fear"', r"line 3: column 'labels' is '\[\"joy\", \"fear\"', which starts like "
                       r"a JSON list but is not one"),
    ('[1, 2]', r"line 3: column 'labels' is \[1, 2\]; expected label names .* \(strings\)"),
])
def test_a_broken_json_list_is_refused_naming_the_line(tmp_path, cell, message):
    path = tmp_path / "bad.tsv"
    path.write_text(f"text\tlabels\nfine\tjoy\nbroken\t{cell}\n", encoding="utf-8")
    with pytest.raises(ValueError, match=message):
        load_table(path)


def test_label_names_holding_brackets_or_quotes_are_warned_about(tmp_path):
    path = tmp_path / "odd.tsv"
    path.write_text("text\tlabels\nhello\tjoy|fear]|\"sad\"\n", encoding="utf-8")
    with pytest.warns(UserWarning, match=r"odd\.tsv: the label names \['\"sad\"', 'fear\]'\] "
                                         r"hold '\[', '\]' or '\"'"):
        _, _, names = load_table(path, label_sep="|")
    assert names == ['"sad"', "fear]", "joy"]
