"""The HTML evaluation report, the model card, and the progress switch."""

import numpy as np
import pytest

import skstack
from skstack import (
    BiLSTMClassifier,
    EncoderEmbedder,
    TunedThresholds,
    clear_loaded_encoders,
    config_context,
    html_report,
    model_card,
    save,
)


@pytest.fixture
def prediction():
    Y = np.array([[1, 0, 0], [0, 1, 0], [1, 1, 0], [0, 0, 1]])
    proba = np.array([[0.9, 0.2, 0.1], [0.8, 0.7, 0.3], [0.6, 0.4, 0.2], [0.1, 0.1, 0.95]])
    return Y, proba, (proba >= 0.5).astype(int)


def test_the_report_shows_scores_thresholds_figures_and_confident_errors(prediction):
    Y, proba, pred = prediction
    page = html_report(Y, pred, proba, ["joy", "anger", "fear"], thresholds=[0.5, 0.5, 0.5],
                       threshold_objective="jaccard", texts=["a", "b <b>", "c", "d"])
    assert page.startswith("<!DOCTYPE html>") and page.count("<svg") == 4
    # row 1 is the surest false positive (joy at 0.8); row 2 the surest false negative
    # (anger at 0.4); text is escaped
    errors = page[page.index("Most confident errors"):]
    assert errors.index("0.800") < errors.index("0.400")
    assert "b &lt;b&gt;" in errors and "<b>" not in errors
    assert "<td>0.500</td>" in page and "<code>jaccard</code>" in page


def test_the_report_scores_two_text_blind_baselines(prediction):
    Y, proba, pred = prediction
    page = html_report(Y, pred, proba, ["joy", "anger", "fear"])
    # every text "joy" (the most frequent): F1 2/3, 0, 0; micro P 2/4, R 2/5; Jaccard
    # (1 + 0 + 1/2 + 0) / 4.  Every label: F1 2/3, 2/3, 2/5; micro 10/17; Jaccard 5/12
    assert ("the most frequent label for every text</td><td>0.222</td><td>0.444</td>"
            "<td>0.375</td>") in page
    assert "every label for every text</td><td>0.578</td><td>0.588</td><td>0.417</td>" in page


def test_warnings_facts_and_explained_errors_are_shown(prediction):
    from skstack import Explanation

    Y, proba, pred = prediction
    why = Explanation("b <b> c", ["b", "<b>", "c"], [(0, 1), (2, 5), (6, 7)],
                      ["joy", "anger", "fear"], proba[1],
                      np.array([[0.5, 0, 0], [-0.2, 0, 0], [0.0, 0, 0]]))
    page = html_report(Y, pred, proba, ["joy", "anger", "fear"], texts=["a", "b <b> c", "c",
                                                                         "d"],
                       explanations={1: why}, about=[("encoders", "minilm <x>")],
                       warnings=["scores from <20> rows"])
    assert "<p class='warning'>scores from &lt;20&gt; rows</p>" in page
    assert "<td class='text'>minilm &lt;x&gt;</td>" in page
    # row 1's false positive is joy: "b" raised it (full shade), "<b>" lowered it, "c" did
    # nothing (plain)
    assert ("<span class='up' style='--a: 0.75' title='+0.500'>b</span> <span class='down' "
            "style='--a: 0.30' title='-0.200'>&lt;b&gt;</span> c</td>") in page


def test_report_warnings_name_what_makes_scores_untrustworthy():
    from skstack.report import report_warnings

    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, 6)).astype(np.float32)
    rule = TunedThresholds(BiLSTMClassifier(blocks=[6], max_epochs=2, random_state=0),
                           cv=0.25, random_state=0).fit(X, (X[:, :2] > 0).astype(int))
    tuned = f"The decision rule's validation macro_f1 ({rule.best_score_:.3f}) came from " \
            "only 20 rows: too few to trust."
    assert [w[:len(tuned)] for w in report_warnings(rule, 500)] == [tuned]
    assert report_warnings(rule, 80)[0].startswith(
        "These 80 texts are as many as the model was trained on")
    assert report_warnings(rule, 500, split="train")[0].startswith(
        "These are the data set's training split")
    assert report_warnings(BiLSTMClassifier(), 80) == []


def test_without_probabilities_the_curves_and_errors_are_left_out(prediction):
    Y, _, pred = prediction
    page = html_report(Y, pred, label_names=["joy", "anger", "fear"])
    assert page.count("<svg") == 3 and "Most confident errors" not in page


def test_mismatched_probabilities_are_refused(prediction):
    Y, proba, pred = prediction
    with pytest.raises(ValueError, match=r"proba has shape \(4, 2\); y_true has \(4, 3\)"):
        html_report(Y, pred, proba[:, :2])


def test_save_writes_a_card_that_says_what_the_model_is(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, 6)).astype(np.float32)
    Y = (X[:, :2] > 0).astype(int)
    clf = TunedThresholds(BiLSTMClassifier(blocks=[6], max_epochs=3, random_state=0),
                          objective="macro_f1", cv=0.25, refit=False, min_labels=1,
                          random_state=0).fit(X, Y)
    save(clf, tmp_path / "m.joblib")
    card = (tmp_path / "m.card.md").read_text()
    assert card == model_card(clf)
    assert "80 training texts." in card and "The net trained on 60 of them" in card
    assert "tuned on 20 rows: a 25% hold-out" in card
    positives = clf.estimator_.label_statistics_.positives  # of the net's 60 rows
    for j, t in enumerate(clf.thresholds_):
        assert f"| {j} | {int(positives[j])} | {positives[j] / 60:.1%} | {t:.3f} |" in card
    assert f"| skstack | {skstack.__version__} |" in card
    save(clf, tmp_path / "n.skstack", card=False)
    assert not (tmp_path / "n.card.md").exists()


def test_the_card_says_when_the_net_kept_its_meta_learners_probabilities(calibrated_meta):
    Z, Y, params = calibrated_meta
    kept = BiLSTMClassifier(**params).fit(Z, Y)
    line = "No epoch beat the meta-learner's probabilities on the validation split"
    assert kept.best_epoch_ == 0 and line in model_card(kept)
    assert line not in model_card(BiLSTMClassifier(**{**params, "patience": None,
                                                      "train_split": None}).fit(Z, Y))


def test_progress_bars_only_with_the_switch(tiny_bert, capfd):
    texts = ["one text", "another text"]
    clear_loaded_encoders()
    EncoderEmbedder(tiny_bert, cache=None).fit_transform(texts)
    assert capfd.readouterr().err == ""
    clear_loaded_encoders()
    with config_context(show_progress_bar=True):
        EncoderEmbedder(tiny_bert, cache=None).fit_transform(texts)
    assert "embedding" in capfd.readouterr().err
    assert not skstack.get_config()["show_progress_bar"]  # restored after the block
    EncoderEmbedder(tiny_bert, cache=None, show_progress_bar=True).fit_transform(texts)
    assert "embedding" in capfd.readouterr().err  # the encoder's own setting wins


def test_set_config_checks_its_argument():
    with pytest.raises(TypeError, match="show_progress_bar must be a bool, got 'yes'"):
        skstack.set_config(show_progress_bar="yes")


def test_the_report_renders_in_headless_chromium(prediction, tmp_path, check_site):
    browser = check_site.chromium()
    if browser is None:
        pytest.skip("needs Chromium (apt-get install chromium)")
    Y, proba, pred = prediction
    page = tmp_path / "report.html"
    page.write_text(html_report(Y, pred, proba, ["joy", "anger", "fear"], texts=list("abcd")))
    shot = tmp_path / "report.png"
    check_site.screenshot(browser, page, shot)
    assert not check_site.is_blank(shot)


def test_a_model_that_fails_to_save_leaves_no_card_and_no_partial_file(tmp_path):
    from sklearn.preprocessing import FunctionTransformer

    unpicklable = FunctionTransformer(lambda X: X)  # joblib cannot pickle a lambda
    with pytest.raises(Exception, match="lambda"):
        save(unpicklable, tmp_path / "m.joblib")
    assert sorted(p.name for p in tmp_path.iterdir()) == []
