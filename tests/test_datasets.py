import numpy as np
import pandas as pd
import pytest

from skstack import load_goemotions, load_sample_emotions, load_semeval2018_ec
from skstack.datasets import SEMEVAL_LABELS

HEADER = "ID\tTweet\t" + "\t".join(SEMEVAL_LABELS)


def test_bundled_sample_has_every_label_in_both_splits():
    train = load_sample_emotions("train")
    test = load_sample_emotions("test")
    assert len(train.texts) == 3000 and len(test.texts) == 1000
    assert train.Y.shape == (3000, 28) and test.Y.shape == (1000, 28)
    assert train.Y.sum(axis=0).min() > 0 and test.Y.sum(axis=0).min() > 0
    assert train.label_names == test.label_names
    assert train.label_names[0] == "admiration" and train.label_names[27] == "neutral"
    assert set(np.unique(train.Y)) == {0, 1}
    with pytest.raises(ValueError, match="'train' and 'test'"):
        load_sample_emotions("dev")


def test_as_frame_returns_named_label_columns():
    data = load_sample_emotions("test", as_frame=True)
    assert isinstance(data.Y, pd.DataFrame)
    assert list(data.Y.columns) == data.label_names


def write_goemotions(folder, rows):
    (folder / "labels.txt").write_text("joy\nanger\nneutral\n")
    (folder / "train.tsv").write_text("".join(rows), encoding="utf-8")


def test_goemotions_format(tmp_path):
    write_goemotions(tmp_path, ["I am so happy\t0\tid1\n", "Grr \"quoted\"\t1,2\tid2\n"])
    texts, Y, names = load_goemotions(tmp_path)
    assert texts == ["I am so happy", 'Grr "quoted"']
    assert Y.tolist() == [[1, 0, 0], [0, 1, 1]]
    assert names == ["joy", "anger", "neutral"]


@pytest.mark.parametrize(("row", "message"), [
    ("no tabs here\n", "line 2: expected 'text<TAB>label ids<TAB>id'"),
    ("text\tx,1\tid\n", "line 2: label ids must be comma-separated integers"),
    ("text\t7\tid\n", "line 2: label id 7 is outside 0..2"),
])
def test_goemotions_errors_name_the_line(tmp_path, row, message):
    write_goemotions(tmp_path, ["fine\t0\tid1\n", row])
    with pytest.raises(ValueError, match=message):
        load_goemotions(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"labels\.txt"):
        load_goemotions(tmp_path / "missing")


def test_goemotions_byte_order_marks_are_dropped(tmp_path):
    (tmp_path / "labels.txt").write_bytes("\ufeffjoy\nanger\nneutral\n".encode())
    (tmp_path / "train.tsv").write_bytes("\ufeffI am so happy\t0\tid1\n".encode())
    texts, _, names = load_goemotions(tmp_path)
    assert texts == ["I am so happy"] and names[0] == "joy"


@pytest.mark.parametrize(("encoding", "likely"), [("latin-1", "Latin-1"), ("utf-16", "UTF-16")])
def test_files_in_other_encodings_are_named_with_the_place(tmp_path, encoding, likely):
    write_goemotions(tmp_path, [])
    rows = "fine\t0\tid1\n" * 60 + "café\t0\tid2\n"
    (tmp_path / "train.tsv").write_bytes(rows.encode(encoding))
    with pytest.raises(ValueError, match=rf"train\.tsv is not UTF-8 \(byte .*{likely}"):
        load_goemotions(tmp_path)
    if encoding == "latin-1":
        with pytest.raises(ValueError, match="line 61"):
            load_goemotions(tmp_path)


def write_semeval(path, rows, header=HEADER):
    path.write_bytes(("\r\n".join([header, *rows]) + "\r\n").encode("utf-8"))


def test_semeval_official_format(tmp_path):
    labels = ["1", "0", "0", "0", "1", "0", "1", "0", "0", "0", "0"]
    write_semeval(tmp_path / "2018-E-c-Ar-dev.txt", [
        "2018-Ar-01\tأنا سعيد\\nجدا\t" + "\t".join(labels),
        "2018-Ar-02\tحزين\t" + "\t".join(["0"] * 11),
    ])
    texts, Y, names = load_semeval2018_ec(tmp_path, "Arabic", "dev")
    assert texts == ["أنا سعيد\nجدا", "حزين"]
    assert Y.shape == (2, 11)
    assert Y[0].tolist() == [int(v) for v in labels]
    assert names == SEMEVAL_LABELS
    same = load_semeval2018_ec(tmp_path / "2018-E-c-Ar-dev.txt")  # a file path works too
    np.testing.assert_array_equal(same.Y, Y)


def test_semeval_test_split_reads_the_gold_file_by_either_name(tmp_path):
    gold = ["2018-En-9\tso happy\t" + "\t".join(["0"] * 6 + ["1"] + ["0"] * 4)]
    write_semeval(tmp_path / "2018-E-c-En-test-gold.txt", gold)
    # the unlabelled release file beside it (labels NONE) is never taken for the gold one
    write_semeval(tmp_path / "2018-E-c-En-test.txt", ["2018-En-9\tso happy\t" + "\t".join(
        ["NONE"] * 11)])
    for split in ("test", "test-gold"):
        texts, Y, _ = load_semeval2018_ec(tmp_path, "English", split)
        assert texts == ["so happy"] and Y[0].tolist() == [0] * 6 + [1] + [0] * 4
    with pytest.raises(ValueError, match=r"split must be one of \('train', 'dev', 'test'\), "
                                         r"got 'gold'"):
        load_semeval2018_ec(tmp_path, "English", "gold")


def test_semeval_errors(tmp_path):
    bad_header = tmp_path / "a.txt"
    write_semeval(bad_header, [], header="ID\tTweet\tjoy")
    with pytest.raises(ValueError, match="unexpected header"):
        load_semeval2018_ec(bad_header)
    short = tmp_path / "b.txt"
    write_semeval(short, ["id\ttext\t" + "\t".join(["0"] * 11), "id2\ttext\t1\t0"])
    with pytest.raises(ValueError, match="row 3: expected 13 tab-separated fields, found 4"):
        load_semeval2018_ec(short)
    unlabelled = tmp_path / "c.txt"
    write_semeval(unlabelled, ["id\ttext\t" + "\t".join(["NONE"] * 11)])
    with pytest.raises(ValueError, match="row 2: label 'anger' is 'NONE'"):
        load_semeval2018_ec(unlabelled)
    with pytest.raises(FileNotFoundError, match=r"E-c-En-train"):
        load_semeval2018_ec(tmp_path, "English", "train")
    with pytest.raises(ValueError, match="language must be"):
        load_semeval2018_ec(tmp_path, "French")


def test_goemotions_files_with_cr_only_line_endings(tmp_path):
    (tmp_path / "labels.txt").write_bytes(b"joy\ranger\r")
    (tmp_path / "train.tsv").write_bytes(b"so happy\t0\tid1\rgrr\t0,1\tid2\r")
    texts, Y, names = load_goemotions(tmp_path)
    assert texts == ["so happy", "grr"] and names == ["joy", "anger"]
    assert Y.tolist() == [[1, 0], [1, 1]]


def test_an_empty_labels_file_is_refused(tmp_path):
    write_goemotions(tmp_path, ["happy\t0\tid1\n"])
    (tmp_path / "labels.txt").write_text("\n  \n")
    with pytest.raises(ValueError, match=r"labels\.txt holds no label names"):
        load_goemotions(tmp_path)
