import itertools

import joblib
import numpy as np
import pytest
from sklearn.base import clone
from sklearn.ensemble import RandomForestClassifier
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.model_selection import GridSearchCV, KFold, ShuffleSplit
from sklearn.multiclass import OneVsRestClassifier
from sklearn.neural_network import MLPClassifier

from skstack import (
    AveragedClassifier,
    BiLSTMClassifier,
    BlockArray,
    TunedThresholds,
    get_scorers,
    load,
    model_card,
    save,
)
from skstack.metrics import jaccard_accuracy
from skstack.parts import find_part
from skstack.thresholds import decide, score_predictions, tune_thresholds

GRID = np.array([0.1, 0.3, 0.5, 0.7, 0.9])


def test_score_predictions_agrees_with_the_metrics_for_every_candidate_at_once():
    rng = np.random.default_rng(0)
    Y = (rng.random((30, 4)) < [0.5, 0.2, 0.05, 0.0]).astype(int)  # a label never seen
    Y[:3] = 0  # rows without a label: Jaccard counts an empty answer to them as right
    preds = (rng.random((6, 30, 4)) < 0.3).astype(int)
    preds[0] = 0
    expected = {
        "macro_f1": [f1_score(Y, p, average="macro", zero_division=0) for p in preds],
        "micro_f1": [f1_score(Y, p, average="micro", zero_division=0) for p in preds],
        "jaccard": [jaccard_accuracy(Y, p) for p in preds]}
    for objective, values in expected.items():
        np.testing.assert_allclose(score_predictions(Y, preds, objective), values, rtol=1e-12)
        assert score_predictions(Y, preds[2], objective) == pytest.approx(values[2], rel=1e-12)


@pytest.fixture
def scores():
    rng = np.random.default_rng(3)
    Y = (rng.random((40, 3)) < [0.5, 0.3, 0.1]).astype(int)
    P = np.clip(0.35 * Y + rng.random((40, 3)) * 0.7, 0, 1)
    return Y, P


def brute_force(Y, P, objective, per_label, min_labels=0):
    combos = itertools.product(GRID, repeat=3) if per_label else ((t, t, t) for t in GRID)
    return max(score_predictions(Y, decide(P, np.array(c), min_labels), objective)
               for c in combos)


@pytest.mark.parametrize("objective", ["macro_f1", "micro_f1", "jaccard"])
@pytest.mark.parametrize("min_labels", [0, 1])
def test_shared_threshold_is_the_brute_force_optimum(scores, objective, min_labels):
    Y, P = scores
    t = tune_thresholds(Y, P, objective, per_label=False, min_labels=min_labels, grid=GRID)
    assert len(set(t)) == 1
    achieved = score_predictions(Y, decide(P, t, min_labels), objective)
    assert achieved == pytest.approx(brute_force(Y, P, objective, False, min_labels))


def test_per_label_macro_f1_is_the_brute_force_optimum(scores):
    Y, P = scores
    t = tune_thresholds(Y, P, "macro_f1", grid=GRID)
    achieved = score_predictions(Y, decide(P, t), "macro_f1")
    assert achieved == pytest.approx(brute_force(Y, P, "macro_f1", True))


@pytest.mark.parametrize("objective", ["micro_f1", "jaccard"])
def test_per_label_coordinate_ascent_is_coordinatewise_optimal(scores, objective):
    Y, P = scores
    t = tune_thresholds(Y, P, objective, grid=GRID, min_labels=1)
    achieved = score_predictions(Y, decide(P, t, 1), objective)
    assert achieved >= brute_force(Y, P, objective, False, 1) - 1e-12
    for label, value in itertools.product(range(3), GRID):
        moved = t.copy()
        moved[label] = value
        assert score_predictions(Y, decide(P, moved, 1), objective) <= achieved + 1e-12
    assert achieved >= brute_force(Y, P, objective, True, 1) - 0.05  # near the global optimum


def test_min_labels_never_returns_an_empty_row():
    P = np.array([[0.1, 0.2, 0.05], [0.9, 0.8, 0.1], [0.3, 0.3, 0.2]])
    pred = decide(P, 0.5, min_labels=1)
    assert pred.sum(axis=1).min() >= 1
    assert pred.tolist() == [[0, 1, 0], [1, 1, 0], [1, 0, 0]]  # ties: first label wins
    assert decide(P, 0.5, min_labels=2)[0].tolist() == [1, 1, 0]


def test_max_labels_keeps_the_top_predicted_labels():
    P = np.array([[0.9, 0.6, 0.7, 0.2]])
    assert decide(P, 0.5, max_labels=2).tolist() == [[1, 0, 1, 0]]
    assert decide(P, [0.5, 0.5, 0.8, 0.5], max_labels=2).tolist() == [[1, 1, 0, 0]]


def test_shrinkage_pulls_rare_labels_toward_the_shared_threshold(scores):
    Y, P = scores
    raw = tune_thresholds(Y, P, "macro_f1", grid=GRID)
    shared = tune_thresholds(Y, P, "macro_f1", per_label=False, grid=GRID)[0]
    shrunk = tune_thresholds(Y, P, "macro_f1", grid=GRID, shrinkage=10)
    n = Y.sum(axis=0)
    np.testing.assert_allclose(shrunk, (n * raw + 10 * shared) / (n + 10))


@pytest.mark.parametrize(("call", "message"), [
    (lambda: tune_thresholds([[1]], [[0.5]], "accuracy"),
     r"'objective' parameter of tune_thresholds must be one of 'macro_f1', 'micro_f1', "
     r"'jaccard'; got 'accuracy'"),
    (lambda: tune_thresholds([[1, 0]], [[0.5]]), "must be of one shape"),
    (lambda: tune_thresholds([[1, 0]], [[0.5, 0.2]], min_labels=1.5),
     r"'min_labels' .* an integer >= 0; got 1.5"),
    (lambda: tune_thresholds([[1, 0]], [[0.5, 0.2]], min_labels=3),
     r"'min_labels' .* at most the number of labels \(2\); got 3"),
    (lambda: decide([[0.5, 0.2]], 0.5, max_labels=-1), r"'max_labels' .* >= 1 or None; got -1"),
    (lambda: decide([[0.5, 0.2]], 0.5, min_labels=2, max_labels=1),
     r"'max_labels' .* None or >= min_labels \(2\); got 1"),
    (lambda: decide([[0.5, 0.2]], [0.5, np.nan]), r"'threshold' .* in \[0, 1\]"),
    (lambda: decide([[0.5, 0.2]], 1.5), r"'threshold' .* in \[0, 1\]"),
    (lambda: decide([[0.5, 0.2]], [0.5, 0.5, 0.5]), r"or 2 such numbers \(one per label\)"),
    (lambda: decide([[0.5, np.nan]]), r"probabilities in \[0, 1\]; found nan at row 0, col"),
    (lambda: tune_thresholds([[2, 0]], [[0.5, 0.2]]), r"only 0 and 1; found 2 at row 0"),
])
def test_bad_arguments_are_named(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_default_candidates_follow_the_scores_up_to_the_top():
    # Probabilities squeezed near 1 (as with strong positive weighting): the best threshold
    # lies above 0.99, beyond any fixed 0.01-step grid.
    rng = np.random.default_rng(0)
    Y = (rng.random((200, 2)) < 0.1).astype(int)
    P = 0.99 + 0.009 * (0.5 * Y + 0.5 * rng.random((200, 2)))
    t = tune_thresholds(Y, P, "macro_f1")
    assert (t > 0.99).all()
    assert score_predictions(Y, decide(P, t), "macro_f1") > 0.9


# ------------------------------------------------------------------------ TunedThresholds


@pytest.fixture
def features():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(150, 6))
    Y = (X[:, :3] + 0.8 * rng.normal(size=(150, 3)) > 0.6).astype(int)
    return X, Y


def logreg():
    return OneVsRestClassifier(LogisticRegression())


def test_prefit_tunes_on_the_given_rows_exactly_as_the_function_does(features):
    X, Y = features
    model = logreg().fit(X, Y)
    clf = TunedThresholds(model, cv="prefit", objective="jaccard", min_labels=1).fit(X, Y)
    expected = tune_thresholds(Y, model.predict_proba(X), "jaccard", min_labels=1)
    np.testing.assert_array_equal(clf.thresholds_, expected)
    assert clf.estimator_ is model
    np.testing.assert_array_equal(clf.predict(X),
                                  decide(model.predict_proba(X), expected, min_labels=1))
    assert clf.n_tuning_rows_ == 150


def test_a_float_cv_tunes_on_the_held_out_rows(features):
    X, Y = features
    clf = TunedThresholds(logreg(), cv=0.3, refit=False, random_state=0).fit(X, Y)
    train, valid = next(ShuffleSplit(1, test_size=0.3, random_state=0).split(X))
    model = logreg().fit(X[train], Y[train])
    expected = tune_thresholds(Y[valid], model.predict_proba(X[valid]))
    np.testing.assert_array_equal(clf.thresholds_, expected)
    np.testing.assert_allclose(clf.predict_proba(X), model.predict_proba(X))  # not refitted
    assert clf.n_tuning_rows_ == len(valid) == 45
    refitted = TunedThresholds(logreg(), cv=0.3, random_state=0).fit(X, Y)
    np.testing.assert_array_equal(refitted.thresholds_, expected)
    np.testing.assert_allclose(refitted.predict_proba(X), logreg().fit(X, Y).predict_proba(X))


def test_an_int_cv_tunes_on_out_of_fold_probabilities_of_every_row(features):
    X, Y = features
    clf = TunedThresholds(logreg(), cv=3, objective="micro_f1", random_state=1).fit(X, Y)
    oof = np.empty(Y.shape)
    for train, test in KFold(3, shuffle=True, random_state=1).split(X):
        oof[test] = logreg().fit(X[train], Y[train]).predict_proba(X[test])
    np.testing.assert_array_equal(clf.thresholds_, tune_thresholds(Y, oof, "micro_f1"))
    assert clf.n_tuning_rows_ == 150
    assert clf.best_score_ == pytest.approx(
        score_predictions(Y, decide(oof, clf.thresholds_), "micro_f1"))


def test_folds_without_refit_keep_the_fold_models_and_average_them(features):
    X, Y = features
    clf = TunedThresholds(logreg(), cv=3, refit=False, random_state=1).fit(X, Y)
    oof, models = np.empty(Y.shape), []
    for train, test in KFold(3, shuffle=True, random_state=1).split(X):
        models.append(logreg().fit(X[train], Y[train]))
        oof[test] = models[-1].predict_proba(X[test])
    np.testing.assert_array_equal(clf.thresholds_, tune_thresholds(Y, oof))
    assert clf.n_tuning_rows_ == 150
    assert isinstance(clf.estimator_, AveragedClassifier)
    assert [name for name, _ in clf.estimator_.estimators_] == ["fold0", "fold1", "fold2"]
    expected = np.mean([m.predict_proba(X) for m in models], axis=0)  # no model refitted
    np.testing.assert_allclose(clf.predict_proba(X), expected)
    np.testing.assert_array_equal(clf.predict(X), decide(expected, clf.thresholds_))


def test_fold_averaged_nets_save_load_and_show_in_the_card(features, tmp_path):
    X, Y = features
    Z = BlockArray(X, [("a", 2), ("b", 4)])
    clf = TunedThresholds(BiLSTMClassifier(random_state=0, **NET), cv=2, refit=False,
                          random_state=0).fit(Z, Y)
    nets = [net for _, net in clf.estimator_.estimators_]
    assert all(isinstance(net, BiLSTMClassifier) for net in nets)
    assert find_part(clf, BiLSTMClassifier) is nets[0]  # the walker reaches the fold models
    assert "the mean of 2 such nets (one per fold" in model_card(clf)
    save(clf, tmp_path / "rule.skstack")
    loaded = load(tmp_path / "rule.skstack")
    np.testing.assert_allclose(loaded.predict_proba(Z), clf.predict_proba(Z), atol=1e-6)
    np.testing.assert_array_equal(loaded.predict(Z), clf.predict(Z))


def test_averaged_classifier_is_the_mean_of_its_fitted_classifiers(features):
    X, Y = features
    pairs = [("C=1", logreg()), ("C=0.01", OneVsRestClassifier(LogisticRegression(C=0.01)))]
    avg = AveragedClassifier(pairs).fit(X, Y)
    expected = (logreg().fit(X, Y).predict_proba(X)
                + OneVsRestClassifier(LogisticRegression(C=0.01)).fit(X, Y).predict_proba(X)) / 2
    np.testing.assert_allclose(avg.predict_proba(X), expected)
    np.testing.assert_array_equal(avg.predict(X), (expected >= 0.5).astype(int))
    assert avg.n_features_in_ == 6 and avg.n_labels_ == 3
    with pytest.raises(ValueError, match=r"'estimators' parameter of AveragedClassifier must "
                                         r"be a non-empty list of \(name, estimator\) pairs"):
        AveragedClassifier([logreg()]).fit(X, Y)


@pytest.mark.parametrize("estimator", [MLPClassifier(max_iter=300, random_state=0),
                                       RandomForestClassifier(20, random_state=0)])
def test_wraps_other_multilabel_classifiers(features, estimator):
    X, Y = features  # the forest's predict_proba is a list of (n, 2) arrays, one per label
    clf = TunedThresholds(estimator, cv=3, min_labels=1, random_state=0).fit(X, Y)
    assert clf.predict_proba(X).shape == (150, 3)
    assert clf.predict(X).sum(axis=1).min() >= 1


def test_clone_joblib_and_names(features, tmp_path):
    import pandas as pd

    X, Y = features
    frame = pd.DataFrame(Y, columns=["joy", "anger", "fear"])
    clf = TunedThresholds(logreg(), objective="jaccard", min_labels=1, cv=3).fit(X, frame)
    assert clf.label_names_ == ["joy", "anger", "fear"]
    assert clf.n_features_in_ == 6
    joblib.dump(clf, tmp_path / "clf.joblib")
    loaded = joblib.load(tmp_path / "clf.joblib")
    np.testing.assert_array_equal(loaded.thresholds_, clf.thresholds_)
    np.testing.assert_array_equal(loaded.predict(X), clf.predict(X))
    twin = clone(clf)
    assert twin.get_params()["objective"] == "jaccard"
    assert not hasattr(twin, "thresholds_")
    with pytest.raises(NotFittedError):
        twin.predict(X)


@pytest.mark.parametrize(("params", "message"), [
    ({"objective": "f1"}, r"'objective' parameter of TunedThresholds must be one of"),
    ({"min_labels": 1.5}, r"'min_labels' parameter of TunedThresholds must be an integer"),
    ({"min_labels": 4}, r"at most the number of labels \(3\); got 4"),
    ({"max_labels": 0}, r"'max_labels' .* >= 1 or None; got 0"),
    ({"cv": 1}, r"'cv' parameter of TunedThresholds must be a number in \(0, 1\) or an "
                r"integer >= 2 or one of 'prefit' or a CV splitter; got 1"),
    ({"cv": "prefit", "refit": True}, r"'refit' .* False or 'auto' with cv='prefit'"),
    ({"shrinkage": -1.0}, r"'shrinkage' .* a number >= 0; got -1.0"),
    ({"estimator": "logreg"}, r"'estimator' .* an estimator; got 'logreg'"),
    ({"cv": 0.005}, r"Only 1 sample\(s\) to tune the thresholds on"),
])
def test_bad_parameters_are_named(features, params, message):
    X, Y = features
    with pytest.raises(ValueError, match=message):
        TunedThresholds(**{"estimator": logreg(), **params}).fit(X, Y)


def test_prefit_needs_a_fitted_estimator(features):
    X, Y = features
    with pytest.raises(NotFittedError):
        TunedThresholds(logreg(), cv="prefit").fit(X, Y)


NET = {"max_epochs": 3, "module__hidden_size": 8, "module__projection_dim": 8}


def test_wraps_the_net_and_searches_loss_and_rule_together(features, tmp_path):
    X, Y = features
    Z = BlockArray(X, [("a", 2), ("b", 4)])  # the layout reaches the net through the folds
    clf = TunedThresholds(BiLSTMClassifier(random_state=0, **NET), cv=0.3, refit=False,
                          random_state=0)
    grid = {"estimator__criterion__corr_weight": [0.0, 0.5],
            "objective": ["macro_f1", "jaccard"], "min_labels": [0, 1]}
    search = GridSearchCV(clf, grid, cv=2, scoring=get_scorers(), refit="jaccard").fit(Z, Y)
    assert len(search.cv_results_["params"]) == 8
    best = search.best_estimator_
    assert best.estimator_.blocks_ == [("a", 2), ("b", 4)]
    assert best.estimator_.criterion_.corr_weight == search.best_params_[
        "estimator__criterion__corr_weight"]
    assert best.objective == search.best_params_["objective"]
    joblib.dump(search, tmp_path / "search.joblib")
    np.testing.assert_array_equal(joblib.load(tmp_path / "search.joblib").predict(Z),
                                  search.predict(Z))


def test_binary_and_multiclass_1d_targets():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 4))
    y = np.where(X[:, 0] + 0.3 * rng.normal(size=200) > 0.4, "yes", "no")
    clf = TunedThresholds(LogisticRegression(), objective="macro_f1", cv=3,
                          random_state=0).fit(X, y)
    assert clf.target_type_ == "binary" and clf.thresholds_.shape == (1,)
    proba = clf.predict_proba(X)
    assert proba.shape == (200, 2)
    expected = np.where(proba[:, 1] >= clf.thresholds_[0], "yes", "no")
    np.testing.assert_array_equal(clf.predict(X), expected)
    y3 = X[:, :3].argmax(axis=1)
    multi = TunedThresholds(LogisticRegression(), cv=3).fit(X, y3)
    assert multi.thresholds_ is None and multi.target_type_ == "multiclass"
    np.testing.assert_array_equal(multi.predict(X), multi.estimator_.predict(X))
    assert multi.score(X, y3) == pytest.approx(multi.estimator_.score(X, y3))


def test_tuning_on_no_rows_is_refused():
    with pytest.raises(ValueError, match=r"at least one row of held-out predictions; y_true "
                                         r"and proba have 0 rows"):
        tune_thresholds(np.zeros((0, 3)), np.zeros((0, 3)))


@pytest.mark.parametrize("params, message", [
    ({"shrinkage": float("inf")}, r"'shrinkage' parameter of TunedThresholds must be a number "
                                  r">= 0; got inf"),
    ({"cv": "kfold"}, r"'cv' parameter of TunedThresholds must be .* or a CV splitter; "
                      r"got 'kfold'"),
])
def test_parameters_that_only_looked_valid_are_refused(features, params, message):
    with pytest.raises(ValueError, match=message):
        TunedThresholds(logreg(), **params).fit(*features)


def test_min_labels_with_a_binary_target_is_refused_not_predicting_one_class(features):
    X, Y = features
    with pytest.raises(ValueError, match=r"y is a 1-D binary target \(one label, classes "
                                         r"\[0, 1\]\), where min_labels=1 would predict 1 for "
                                         r"every row"):
        TunedThresholds(logreg(), min_labels=1).fit(X, Y[:, 0])
    rule = TunedThresholds(logreg()).fit(X, Y[:, 0])
    assert set(rule.predict(X)) == {0, 1}


def test_out_of_fold_tuning_needs_folds_that_partition_the_rows(features):
    with pytest.raises(ValueError, match=r"holds out 45 row\(s\) in no fold and 0 in several; "
                                         r"out-of-fold tuning needs folds whose held-out rows "
                                         r"partition the rows"):
        TunedThresholds(logreg(), cv=ShuffleSplit(1, test_size=0.7, random_state=0)).fit(
            *features)


# ---------------------------------------------------------------- the fixed rule, one accessor

def test_a_fixed_rule_decides_as_decide_does_and_round_trips(tmp_path):
    from skstack import FixedThresholds, decision_rule, load, save

    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, 4))
    Y = (X[:, :3] + rng.normal(size=(80, 3)) > 0).astype(int)
    clf = FixedThresholds(OneVsRestClassifier(LogisticRegression()), threshold=[0.3, 0.5, 0.7],
                          min_labels=1, max_labels=2).fit(X, Y)
    expected = decide(clf.predict_proba(X), [0.3, 0.5, 0.7], min_labels=1, max_labels=2)
    np.testing.assert_array_equal(clf.predict(X), expected)
    rule = decision_rule(clf)
    assert not rule.tuned and rule.objective is None and rule.n_tuning_rows == 0
    assert rule.thresholds.tolist() == [0.3, 0.5, 0.7] and (rule.min_labels, rule.max_labels) \
        == (1, 2)
    np.testing.assert_array_equal(rule.apply(clf.predict_proba(X)), expected)
    loaded = load(save(clf, tmp_path / "fixed.skstack"))
    np.testing.assert_array_equal(loaded.predict(X), expected)
    assert "fixed thresholds" in (tmp_path / "fixed.card.md").read_text()
    with pytest.raises(ValueError, match=r"The 'threshold' parameter of FixedThresholds must "
                                         r"be a number in \[0, 1\] or 3 such numbers"):
        FixedThresholds(LogisticRegression(), threshold=[0.5, 0.5]).fit(X, Y)


def test_decision_rule_reads_a_tuned_step_a_pipeline_a_search_and_a_bare_net():
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from skstack import decision_rule

    rng = np.random.default_rng(1)
    X = rng.normal(size=(90, 4))
    Y = (X[:, :2] + rng.normal(size=(90, 2)) > 0).astype(int)
    tuned = TunedThresholds(OneVsRestClassifier(LogisticRegression()), objective="jaccard",
                            min_labels=1, cv=3, random_state=0)
    pipe = make_pipeline(StandardScaler(), tuned).fit(X, Y)
    rule = decision_rule(pipe)
    fitted = pipe.steps[-1][1]
    assert rule.tuned and rule.objective == "jaccard" and rule.min_labels == 1
    np.testing.assert_array_equal(rule.thresholds, fitted.thresholds_)
    assert rule.n_tuning_rows == 90 and rule.validation_score == fitted.best_score_
    search = GridSearchCV(pipe, {"tunedthresholds__min_labels": [1]}, cv=2).fit(X, Y)
    np.testing.assert_array_equal(decision_rule(search).thresholds,
                                  search.best_estimator_.steps[-1][1].thresholds_)
    net = BiLSTMClassifier(blocks="single", max_epochs=1, threshold=0.4,
                           random_state=0).fit(X, Y)
    assert decision_rule(net).thresholds.tolist() == [0.4, 0.4] and not decision_rule(net).tuned
