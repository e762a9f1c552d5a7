"""``skstack.explain``: per-word contributions by occlusion, against hand computations on a
stand-in model and against direct ``predict_proba`` calls on a trained pipeline."""

import numpy as np
import pytest

import skstack.explanations
from skstack import explain, load
from skstack.explanations import occluded_texts


class WordModel:
    """Probabilities a hand can compute: "joy" is 0.2 + 0.3 per happy word (at most 0.8),
    "anger" is 0.7 when "not" is present, else 0.1."""

    def __init__(self):
        self.label_names_ = ["joy", "anger"]
        self.calls = []

    def predict_proba(self, texts):
        self.calls.append(len(texts))
        rows = []
        for text in texts:
            words = text.lower().split()
            happy = sum(w.strip("!") in ("happy", "glad", "سعيد") for w in words)
            rows.append([min(0.8, 0.2 + 0.3 * happy), 0.7 if "not" in words else 0.1])
        return np.array(rows)


def test_the_occluded_texts_drop_one_word_and_its_space():
    rows, [spans] = occluded_texts(["I am happy!"])
    assert spans == [(0, 1), (2, 4), (5, 10), (10, 11)]
    assert rows == ["I am happy!", "am happy!", "I happy!", "I am!", "I am happy"]


def test_contributions_match_a_hand_computation():
    model = WordModel()
    [e] = explain(model, ["not happy and glad"])
    assert e.words == ["not", "happy", "and", "glad"]
    np.testing.assert_allclose(e.probabilities, [0.8, 0.7])
    # joy: 0.8 whole; without "happy" or "glad" 0.5; anger: 0.7 whole, 0.1 without "not"
    np.testing.assert_allclose(e.contributions, [[0, 0.6], [0.3, 0], [0, 0], [0.3, 0]],
                               atol=1e-12)
    assert e.top_words("joy") == [("happy", pytest.approx(0.3)), ("glad", pytest.approx(0.3))]
    assert e.top_words("anger", k=1) == [("not", pytest.approx(0.6))]
    assert model.calls == [5]  # the text and its 4 occlusions in one call


def test_arabic_words_keep_their_diacritics():
    [e] = explain(WordModel(), ["أنا سَعِيدٌ جدا"], labels="joy")
    assert e.words == ["أنا", "سَعِيدٌ", "جدا"] and e.labels == ["joy"]
    assert e.contributions.shape == (3, 1)


def test_large_inputs_are_split_into_bounded_calls(monkeypatch):
    texts = ["happy " * 7, "not glad", "I am happy", "x"]
    whole = explain(WordModel(), texts)
    monkeypatch.setattr(skstack.explanations, "_ROWS_PER_CALL", 5)
    model = WordModel()
    split = explain(model, texts)
    assert model.calls == [5, 3, 3, 4, 2]  # the 8-row text cut in two, the others whole
    for a, b in zip(whole, split, strict=True):
        np.testing.assert_allclose(a.contributions, b.contributions)


def test_a_long_text_is_refused_by_default_and_bounded_when_allowed():
    long = "happy " + "word " * 3_000
    model = WordModel()
    with pytest.raises(ValueError, match=r"text 1 has 3,001 words; explain takes at most "
                                         r"max_words=512"):
        explain(model, ["fine", long])
    assert model.calls == []  # refused before any work
    [e] = explain(model, [long], labels="joy", max_words=None)
    # at most 2,000,000 characters per call: 131 rows of this 15,006-character text
    assert max(model.calls) == 2_000_000 // len(long) and sum(model.calls) == 3_002
    assert e.contributions[0, 0] == pytest.approx(0.3) and not e.contributions[1:].any()


def test_unknown_labels_are_refused_before_any_work():
    model = WordModel()
    with pytest.raises(ValueError, match=r"unknown label\(s\) \['surprise'\]; the model's "
                                         r"labels are \['joy', 'anger'\]"):
        explain(model, ["happy"], labels=["joy", "surprise"])
    assert model.calls == []
    with pytest.raises(TypeError, match="Text at position 1 is None"):
        explain(model, ["happy", None])


def test_a_model_without_label_names_gets_numbered_labels():
    class Bare:
        def predict_proba(self, texts):
            return np.full((len(texts), 2), 0.5)

    [e] = explain(Bare(), ["a b"])
    assert e.labels == ["0", "1"] and e.to_dict()["contributions"] == {"0": [0, 0], "1": [0, 0]}
    with pytest.raises(ValueError, match=r"label 'joy' was not explained"):
        e.top_words("joy")


def test_on_a_trained_pipeline_contributions_are_the_probability_drops(trained):
    model = load(trained[2])
    text = "Thank you, you made me happy 😊"
    [e] = explain(model, [text], labels=["joy", "fear"])
    assert e.words == ["Thank", "you", ",", "you", "made", "me", "happy", "😊"]
    direct = model.predict_proba([text, "Thank you, you made me 😊"])[:, [2, 1]]
    np.testing.assert_allclose(e.probabilities, direct[0], atol=1e-5)
    np.testing.assert_allclose(e.contributions[6], direct[0] - direct[1], atol=1e-5)
    as_json = e.to_dict()
    assert set(as_json["contributions"]) == {"joy", "fear"}
    assert len(as_json["contributions"]["joy"]) == 8
