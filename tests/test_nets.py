import joblib
import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from skstack import BiLSTMClassifier, BlockArray, get_scorers, jaccard_accuracy

SMALL = {"module__hidden_size": 8, "module__projection_dim": 8, "max_epochs": 3}

# Checks that assume a 1-D (binary or multiclass) or continuous y, or skorch internals.
_Y_1D = "BiLSTMClassifier is multi-label only: y must be a 2-D 0/1 label matrix"
EXPECTED_FAILURES = {
    "check_no_attributes_set_in_init": "skorch's NeuralNet.__init__ sets history_, "
    "initialized_ and virtual_params_ and stores dunder params (skorch design)",
    "check_set_params": "skorch's set_params re-initialises components and rejects the "
    "arbitrary values this check sets",
    "check_estimators_dtypes": _Y_1D,
    "check_dtype_object": _Y_1D,
    "check_classifier_data_not_an_array": _Y_1D,
    "check_classifiers_one_label": _Y_1D,
    "check_classifiers_one_label_sample_weights": _Y_1D,
    "check_classifiers_classes": _Y_1D,
    "check_classifiers_train": _Y_1D,
    "check_classifiers_regression_target": _Y_1D,
    "check_classifier_not_supporting_multiclass": _Y_1D,
    "check_fit2d_1feature": _Y_1D,
}


@parametrize_with_checks(
    [BiLSTMClassifier(random_state=0, **SMALL)],
    expected_failed_checks=lambda est: EXPECTED_FAILURES,
)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 12))
    Y = (X[:, :4] + 0.3 * rng.normal(size=(120, 4)) > 0.4).astype(int)
    return X, Y


def test_predict_shapes_and_values(data):
    X, Y = data
    net = BiLSTMClassifier(random_state=0, **SMALL).fit(X, Y)  # float64 X, int Y
    proba = net.predict_proba(X)
    assert proba.shape == (120, 4)
    assert proba.dtype == np.float32
    assert ((proba >= 0) & (proba <= 1)).all()
    pred = net.predict(X)
    assert pred.shape == (120, 4)
    np.testing.assert_array_equal(pred, (proba >= 0.5).astype(int))
    assert net.score(X, Y) == pytest.approx(jaccard_accuracy(Y, pred))


def test_learns_a_separable_problem(data):
    X, Y = data
    net = BiLSTMClassifier(random_state=0, max_epochs=40, lr=3e-3).fit(X, Y)
    assert net.score(X, Y) > 0.7


def test_fit_is_reproducible_with_random_state(data):
    X, Y = data
    a = BiLSTMClassifier(random_state=1, **SMALL).fit(X, Y).predict_proba(X)
    b = BiLSTMClassifier(random_state=1, **SMALL).fit(X, Y).predict_proba(X)
    np.testing.assert_array_equal(a, b)


def test_history_holds_every_loss_component(data):
    X, Y = data
    net = BiLSTMClassifier(random_state=0, train_split=0.25, criterion__corr_weight=0.5,
                           criterion__contrastive_weight=0.5, **SMALL).fit(X, Y)
    for prefix in ("train", "valid"):
        for name in ("bce", "corr", "con", "loss"):
            values = net.history[:, f"{prefix}_{name}"]
            assert len(values) == 3 and np.isfinite(values).all() and values[0] > 0
    last = net.history[-1]
    assert last["train_loss"] == pytest.approx(
        last["train_bce"] + 0.5 * last["train_corr"] + 0.5 * last["train_con"], rel=1e-4)


def test_default_trains_on_every_row(data):
    X, Y = data
    net = BiLSTMClassifier(random_state=0, **SMALL).fit(X, Y)
    assert "valid_loss" not in net.history[-1]
    assert net.history[-1, "train_batch_count"] == 2  # 120 rows in batches of 64


def test_tuned_thresholds(data):
    X, Y = data
    net = BiLSTMClassifier(random_state=0, train_split=0.3, threshold="tuned",
                           threshold_objective="jaccard", min_labels=1, **SMALL).fit(X, Y)
    assert net.thresholds_.shape == (4,)
    assert net.threshold_objective_ == "jaccard"
    assert net.predict(X).sum(axis=1).min() >= 1
    with pytest.raises(ValueError, match="threshold='tuned' chooses thresholds on a validation"):
        BiLSTMClassifier(threshold="tuned").fit(X, Y)


def test_fixed_thresholds(data):
    X, Y = data
    net = BiLSTMClassifier(random_state=0, threshold=[0.1, 0.9, 0.5, 0.5], **SMALL).fit(X, Y)
    proba = net.predict_proba(X)
    np.testing.assert_array_equal(net.predict(X)[:, 0], proba[:, 0] >= 0.1)
    assert net.threshold_objective_ is None


def test_dataframe_labels_name_the_labels(data):
    X, Y = data
    frame = pd.DataFrame(Y, columns=["joy", "anger", "fear", "love"])
    net = BiLSTMClassifier(random_state=0, **SMALL).fit(X, frame.astype(bool))
    assert net.label_names_ == ["joy", "anger", "fear", "love"]


def test_block_layout_from_blockarray_and_explicit(data):
    X, Y = data
    net = BiLSTMClassifier(random_state=0, **SMALL).fit(BlockArray(X, [("a", 5), ("b", 7)]), Y)
    assert net.blocks_ == [("a", 5), ("b", 7)]
    assert [p.in_features for p in net.module_.projections] == [5, 7]
    assert BiLSTMClassifier(blocks=[4, 8], **SMALL).fit(X, Y).blocks_ == [
        ("block0", 4), ("block1", 8)]
    with pytest.raises(ValueError, match=r"adds up to 10 columns, but X has 12"):
        BiLSTMClassifier(blocks=[4, 6], **SMALL).fit(X, Y)


@pytest.mark.parametrize(
    ("y_change", "message"),
    [
        (lambda Y: Y[:, 0], "must be a 2-D label matrix"),
        (lambda Y: Y * 2, r"only 0 and 1; found .*2.* at row"),
        (lambda Y: Y[:-1], "Y has 119 rows but X has 120"),
    ],
)
def test_bad_labels(data, y_change, message):
    X, Y = data
    with pytest.raises(ValueError, match=message):
        BiLSTMClassifier(**SMALL).fit(X, y_change(Y))


def test_bad_features(data):
    X, Y = data
    X = X.copy()
    X[7, 3] = np.nan
    with pytest.raises(ValueError, match="contains NaN at row 7, column 3"):
        BiLSTMClassifier(**SMALL).fit(X, Y)
    X[7, 3] = np.inf
    with pytest.raises(ValueError, match="contains infinity at row 7, column 3"):
        BiLSTMClassifier(**SMALL).fit(X, Y)
    net = BiLSTMClassifier(**SMALL)
    with pytest.raises(NotFittedError):
        net.predict(X)


def test_clone_get_and_set_params():
    net = BiLSTMClassifier(criterion__corr_weight=0.3, module__hidden_size=16, lr=0.01)
    params = net.get_params()
    assert params["criterion__corr_weight"] == 0.3
    assert params["module__hidden_size"] == 16
    twin = clone(net)
    assert twin.get_params()["criterion__corr_weight"] == 0.3
    twin.set_params(criterion__contrastive_weight=0.7, threshold=0.3)
    assert twin.get_params()["criterion__contrastive_weight"] == 0.7
    assert twin.threshold == 0.3


def test_grid_search_over_loss_weights_with_multi_metric_scoring(data, tmp_path):
    X, Y = data
    pipe = make_pipeline(StandardScaler(), BiLSTMClassifier(random_state=0, **SMALL))
    grid = {"bilstmclassifier__criterion__corr_weight": [0.0, 0.5],
            "bilstmclassifier__criterion__contrastive_weight": [0.0, 0.5]}
    search = GridSearchCV(pipe, grid, cv=3, scoring=get_scorers(), refit="macro_f1")
    search.fit(X, Y)
    assert len(search.cv_results_["params"]) == 4
    for name in ("jaccard", "micro_f1", "macro_f1", "hamming_loss"):
        assert np.isfinite(search.cv_results_[f"mean_test_{name}"]).all()
    joblib.dump(search, tmp_path / "search.joblib")
    loaded = joblib.load(tmp_path / "search.joblib")
    np.testing.assert_array_equal(loaded.predict(X), search.predict(X))
    np.testing.assert_array_equal(loaded.predict_proba(X), search.predict_proba(X))


def test_grid_search_without_scoring_uses_score(data):
    X, Y = data
    search = GridSearchCV(BiLSTMClassifier(random_state=0, **SMALL),
                          {"criterion__corr_weight": [0.0, 1.0]}, cv=2).fit(X, Y)
    assert np.isfinite(search.best_score_)


@pytest.mark.gpu
def test_cuda_training_and_cpu_unpickling(data, tmp_path):
    X, Y = data
    net = BiLSTMClassifier(device="cuda", random_state=0, criterion__corr_weight=0.5,
                           **SMALL).fit(X, Y)
    assert next(net.module_.parameters()).is_cuda
    assert net.criterion_.correlation_.is_cuda
    joblib.dump(net, tmp_path / "net.joblib")
    loaded = joblib.load(tmp_path / "net.joblib")
    np.testing.assert_allclose(loaded.predict_proba(X), net.predict_proba(X), atol=1e-5)


def test_mixed_precision_runs_on_cpu(data):
    X, Y = data
    net = BiLSTMClassifier(mixed_precision=True, random_state=0, **SMALL).fit(X, Y)
    assert net.predict_proba(X).dtype == np.float32
    assert torch.isfinite(torch.as_tensor(net.history[-1, "train_loss"]))


def test_tuned_thresholds_on_a_predefined_validation_set(data):
    from skorch.dataset import Dataset
    from skorch.helper import predefined_split

    X, Y = data
    valid = Dataset(X[:40].astype(np.float32), Y[:40].astype(np.float32))
    net = BiLSTMClassifier(random_state=0, train_split=predefined_split(valid),
                           threshold="tuned", **SMALL).fit(X[40:], Y[40:])
    assert net.thresholds_.shape == (4,)
    assert "valid_loss" in net.history[-1]


def test_a_fitted_net_clones_to_its_parameters(data):
    X, Y = data
    net = BiLSTMClassifier(random_state=0, train_split=0.2, threshold="tuned", **SMALL)
    net.fit(X, Y)
    params = clone(net).get_params()
    assert not [k for k in params if k.startswith("_") and k != "_params_to_validate"]
    assert params["threshold"] == "tuned"


def test_tuned_thresholds_are_fitted_state_that_survives_joblib(data, tmp_path):
    X, Y = data
    net = BiLSTMClassifier(random_state=0, train_split=0.3, threshold="tuned",
                           threshold_objective="micro_f1", **SMALL).fit(X, Y)
    joblib.dump(net, tmp_path / "net.joblib")
    loaded = joblib.load(tmp_path / "net.joblib")
    np.testing.assert_array_equal(loaded.thresholds_, net.thresholds_)
    assert loaded.threshold_objective_ == "micro_f1"
    np.testing.assert_array_equal(loaded.predict(X), net.predict(X))
    twin = clone(net)  # the rule is a parameter: the clone tunes again when fitted
    assert twin.get_params()["threshold_objective"] == "micro_f1"
    assert not hasattr(twin, "thresholds_")


def test_the_decision_rule_is_grid_searchable(data):
    X, Y = data
    net = BiLSTMClassifier(random_state=0, train_split=0.3, threshold="tuned", **SMALL)
    grid = {"threshold_objective": ["macro_f1", "jaccard"], "min_labels": [0, 1]}
    search = GridSearchCV(net, grid, cv=2, scoring=get_scorers(), refit="jaccard").fit(X, Y)
    assert len(search.cv_results_["params"]) == 4
    assert search.best_estimator_.threshold_objective_ == search.best_params_[
        "threshold_objective"]
