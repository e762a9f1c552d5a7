"""The whole published method end to end, on tiny encoders."""

import re

import joblib
import numpy as np
import pytest
from sklearn.model_selection import GridSearchCV

from conftest import ARABIC_TEXTS
from skstack import (
    arabic_emotion_pipeline,
    decide,
    get_scorers,
    make_stacked_pipeline,
    quickstart_pipeline,
)
from skstack.pipelines import ARABIC_ENCODERS, char_tfidf_member

NET = {"max_epochs": 3, "module__hidden_size": 8, "module__projection_dim": 8}


def test_stacked_pipeline_grid_search_and_joblib_round_trip(tiny_bert, tiny_bert_b,
                                                            emotion_data, tmp_path):
    texts, Y = emotion_data
    pipe = make_stacked_pipeline(
        [("a", tiny_bert), ("b", tiny_bert_b)],
        objective="macro_f1",
        extra_members=[("chars", char_tfidf_member(6))],
        cv=3,
        classifier_params=NET,
    )
    pipe.set_params(embed__a__finetune_epochs=1, embed__a__finetune_learning_rate=1e-3)
    grid = {"clf__estimator__criterion__corr_weight": [0.0, 0.5],
            "clf__objective": ["macro_f1", "jaccard"]}
    search = GridSearchCV(pipe, grid, cv=3, scoring=get_scorers(), refit="jaccard")
    search.fit(texts, Y)
    best_index = int(np.argmax(search.cv_results_["mean_test_jaccard"]))  # refit="jaccard"
    assert search.best_index_ == best_index
    assert search.best_params_ == search.cv_results_["params"][best_index]
    assert search.best_estimator_.get_params()["clf__objective"] == \
        search.best_params_["clf__objective"]

    best = search.best_estimator_
    stack, rule = best.named_steps["embed"], best.named_steps["clf"]
    # the recommended configuration: word mode, residual head, pairwise term, early stopping,
    # three fold nets averaged, the rule tuned on every row out of fold
    assert rule.cv == 3 and len(rule.estimator_.estimators_) == 3
    assert rule.n_tuning_rows_ == rule.n_samples_fit_
    net = rule.estimator_.estimators_[0][1]
    assert stack.word_blocks_ == [("a", 32), ("b", 48)]
    assert stack.blocks_ == [("chars", 6), ("meta", 4)]
    assert (net.word_blocks_, net.blocks_) == (stack.word_blocks_, stack.blocks_)
    assert net.module_.word_projection.in_features == 80
    assert [p.in_features for p in net.module_.projections] == [6, 4]
    assert net.module_.residual_index == 1  # the meta block
    assert net.get_params()["criterion__corr_form"] == "pairwise"
    assert "valid_loss" in net.history[-1] and net.patience == 3
    assert stack.members_[0][1].finetune_loss_  # member "a" was fine-tuned

    # (that the meta block of the training rows is out of fold is checked against a hand
    # computation in tests/test_stacking.py)
    joblib.dump(search, tmp_path / "search.joblib")
    loaded = joblib.load(tmp_path / "search.joblib")
    np.testing.assert_array_equal(loaded.predict(texts), search.predict(texts))


def test_arabic_pipeline_with_tiny_arabic_encoders(tiny_bert, tiny_bert_b):
    texts = [f"{ARABIC_TEXTS[i % len(ARABIC_TEXTS)]} {i}" for i in range(40)]
    Y = np.zeros((40, 3), dtype=int)
    Y[np.arange(40), np.arange(40) % 3] = 1
    pipe = arabic_emotion_pipeline(
        {"arabicbert": tiny_bert, "marbert": tiny_bert_b, "arabert": tiny_bert},
        finetune_epochs=1, max_length=16, device="cpu", cv=2,
        objective="jaccard", classifier_params=NET, rule_params={"cv": 0.25},
    )
    pipe.fit(texts, Y)
    clf = pipe.named_steps["clf"]
    assert clf.objective == "jaccard" and clf.min_labels == 1
    assert clf.n_tuning_rows_ == 10
    net = clf.estimator_
    assert net.get_params()["criterion__contrastive_weight"] > 0
    assert net.module_.residual_index is None  # the paper's head: blocks, no residual path
    stack = pipe.named_steps["embed"]
    assert stack.word_blocks_ == [] and net.max_epochs == 3
    assert [name for name, _ in stack.blocks_] == ["arabicbert", "marbert", "arabert", "meta"]
    assert all(m.finetune_loss_ for _, m in stack.members_)  # each encoder fine-tuned
    pred = pipe.predict(texts)
    np.testing.assert_array_equal(pred, decide(pipe.predict_proba(texts), clf.thresholds_,
                                               min_labels=1))
    assert pred.sum(axis=1).min() >= 1  # the paper's rule: every text gets a label


def test_the_jaccard_objective_gets_its_own_correlation_weight():
    def weight(**kwargs):  # nothing loads: the encoders are only named
        pipe = make_stacked_pipeline({"m": "sentence-transformers/all-MiniLM-L6-v2"}, **kwargs)
        return pipe.named_steps["clf"].estimator.criterion__corr_weight

    assert weight(objective="jaccard") == 0.3
    assert weight(objective="macro_f1") == weight(objective="micro_f1") == 0.1
    assert weight(objective="jaccard", classifier_params={"criterion__corr_weight": 0.0}) == 0.0
    assert quickstart_pipeline(objective="jaccard").named_steps[
        "clf"].estimator.criterion__corr_weight == 0.3


def test_the_arabic_pipeline_names_the_papers_encoders_by_default():
    stack = arabic_emotion_pipeline(objective="jaccard").named_steps["embed"]  # nothing loads
    assert {name: m.model for name, m in stack.members} == ARABIC_ENCODERS
    assert ARABIC_ENCODERS["marbert"] == "UBC-NLP/MARBERT"
    assert all(m.finetune_epochs == 2 and m.max_length == 128 for _, m in stack.members)


def test_a_pipeline_fit_tokenises_each_distinct_text_once_per_encoder(
        tiny_bert, tiny_bert_b, emotion_data, monkeypatch):
    from skstack import _batching

    texts, Y = emotion_data
    texts = texts + texts[:10]  # repeated texts are tokenised once too
    Y = np.vstack([Y, Y[:10]])
    seen = []
    real = _batching.tokenize

    def counting(tokenizer, batch, *args, **kwargs):
        seen.extend((id(tokenizer), text) for text in batch)
        return real(tokenizer, batch, *args, **kwargs)

    monkeypatch.setattr(_batching, "tokenize", counting)
    pipe = make_stacked_pipeline([("a", tiny_bert), ("b", tiny_bert_b)], objective="jaccard",
                                 cv=2, encoder_params={"cache": None}, classifier_params=NET)
    pipe.set_params(embed__a__finetune_epochs=1)  # fine-tuning, then encoding: one tokenising
    pipe.fit(texts, Y)
    assert len(seen) == len(set(seen)) == 2 * len(set(texts))


def test_y_is_checked_where_it_enters_and_not_again_inside(tiny_bert, emotion_data,
                                                           monkeypatch):
    from skstack import _validation

    texts, Y = emotion_data
    checked = []
    real = _validation._validated_label_matrix

    def counting(y, *args, **kwargs):
        checked.append(y.shape)
        return real(y, *args, **kwargs)

    monkeypatch.setattr(_validation, "_validated_label_matrix", counting)
    pipe = make_stacked_pipeline([("a", tiny_bert)], objective="jaccard", cv=2,
                                 encoder_params={"cache": None}, classifier_params=NET)
    pipe.set_params(embed__a__finetune_epochs=1)
    pipe.fit(texts, Y)
    # the two steps that take y from the Pipeline (the stack, the decision rule) check it;
    # the fine-tuned encoder, the held-out split and the net inside take it checked
    assert checked == [(60, 4), (60, 4)]
    with pytest.raises(ValueError, match=r"must contain only 0 and 1; found 2 at row 0"):
        pipe.named_steps["clf"].estimator_.fit(pipe.named_steps["embed"].transform(texts),
                                               np.full((60, 4), 2))  # standalone: checked


def test_a_language_picks_its_encoders(monkeypatch):
    monkeypatch.setattr("skstack.pipelines.default_multilingual", lambda: "e5-folder")
    spanish = make_stacked_pipeline(language="Spanish", objective="jaccard")
    [(name, e5)] = spanish.named_steps["embed"].members
    assert (name, e5.model, e5.prefix) == ("e5", "e5-folder", "query: ")
    # its one encoder gives two views from one forward pass: the last layer, the fourth from
    # the top
    assert (e5.layers, e5.layer_combine) == ([-1, -4], "concat")
    arabic = make_stacked_pipeline(language="ar", objective="jaccard")
    assert [n for n, _ in arabic.named_steps["embed"].members] == list(ARABIC_ENCODERS)
    assert arabic.named_steps["embed"].members[0][1].prefix == ""
    english = quickstart_pipeline(language="en").named_steps["embed"].members
    assert [n for n, _ in english] == ["minilm", "chars"]
    japanese = quickstart_pipeline(language="ja").named_steps["embed"].members
    assert [(n, getattr(m, "model", None)) for n, m in japanese] == [("e5", "e5-folder"),
                                                                     ("chars", None)]


@pytest.mark.parametrize(("kwargs", "message"), [
    ({}, "needs encoders or language=..., not both: got encoders=None, language=None"),
    ({"encoders": {"a": "x"}, "language": "es"}, "not both"),
    ({"language": "Klingonese"}, "language='Klingonese' is neither a two-letter ISO 639-1"),
])
def test_encoders_or_a_language_one_of_them(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        make_stacked_pipeline(objective="jaccard", **kwargs)
