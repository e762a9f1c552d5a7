"""scikit-learn's estimator checks on every skstack estimator with default parameters.

The expected failures are listed here with their reasons, and docs/index.md ("scikit-learn
conformance") lists the same. scikit-learn runs its data checks on numeric arrays only, so
for the text transformers (``EncoderEmbedder``, ``StackingEmbedder``) this module runs its
input-independent API checks and, on texts, the counterparts of its data checks.
"""

import pickle

import joblib
import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier
from sklearn.utils import estimator_checks
from sklearn.utils.estimator_checks import parametrize_with_checks

from skstack import (
    AveragedClassifier,
    BiLSTMClassifier,
    EncoderEmbedder,
    FixedThresholds,
    StackingEmbedder,
    TunedThresholds,
    char_tfidf_member,
)

NET_FAILURES = {
    "check_no_attributes_set_in_init": "skorch's NeuralNet.__init__ sets history_, "
    "initialized_ and virtual_params_ and stores dunder params (skorch design)",
    "check_set_params": "skorch's set_params re-initialises components and rejects the "
    "arbitrary values this check sets",
}
RULE_FAILURES = {
    name: "predict applies the tuned thresholds, not argmax or 0.5 (as scikit-learn's "
    "TunedThresholdClassifierCV)"
    for name in ("check_classifier_multioutput", "check_classifiers_train",
                 "check_classifiers_train(readonly_memmap=True)",
                 "check_classifiers_train(readonly_memmap=True,X_dtype=float32)")
}


def expected_failures(estimator) -> dict:
    if isinstance(estimator, BiLSTMClassifier):
        return NET_FAILURES
    # fixed 0.5 (FixedThresholds' default, the average's predict): none
    return RULE_FAILURES if isinstance(estimator, TunedThresholds) else {}


@parametrize_with_checks(
    [BiLSTMClassifier(),  # defaults: blocks="auto" reads a plain array as one block
     BiLSTMClassifier(random_state=0),  # seeded: the determinism checks run too
     TunedThresholds(OneVsRestClassifier(LogisticRegression())),  # default cv=5
     TunedThresholds(OneVsRestClassifier(LogisticRegression()), cv=3, refit=False),
     FixedThresholds(OneVsRestClassifier(LogisticRegression())),
     AveragedClassifier([("C=1", OneVsRestClassifier(LogisticRegression())),
                         ("C=0.1", OneVsRestClassifier(LogisticRegression(C=0.1)))])],
    expected_failed_checks=expected_failures,
)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


def test_tuned_thresholds_with_an_integer_cv_tunes_the_same_rule_on_every_clone():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 5))
    Y = (X[:, :3] + rng.normal(size=(120, 3)) > 0.5).astype(int)
    rule = TunedThresholds(OneVsRestClassifier(LogisticRegression()))
    first = rule.fit(X, Y).thresholds_.copy()
    np.testing.assert_array_equal(clone(rule).fit(X, Y).thresholds_, first)
    order = np.argsort(Y[:, 0])  # rows sorted by a label still spread over the folds
    sorted_rule = clone(rule).fit(X[order], Y[order])
    assert sorted_rule.best_score_ > 0.5


# ---------------------------------------------------------------- text transformers

TEXT_API_CHECKS = ["check_estimator_cloneable", "check_estimator_repr",
                   "check_no_attributes_set_in_init", "check_get_params_invariance",
                   "check_set_params", "check_parameters_default_constructible",
                   "check_do_not_raise_errors_in_init_or_set_params",
                   "check_estimator_tags_renamed"]


@pytest.fixture(params=["encoder", "stack of an encoder", "stack of char n-grams"])
def text_transformer(request, tiny_bert):
    return {"encoder": lambda: EncoderEmbedder(tiny_bert),
            "stack of an encoder": lambda: StackingEmbedder([("bert",
                                                              EncoderEmbedder(tiny_bert))]),
            "stack of char n-grams": lambda: StackingEmbedder([("chars", char_tfidf_member())]),
            }[request.param]()


def test_check_estimator_passes_and_skips_its_numeric_checks(text_transformer):
    results = estimator_checks.check_estimator(text_transformer, on_fail=None)
    assert [r["check_name"] for r in results if r["status"] == "failed"] == []


@pytest.mark.parametrize("check", TEXT_API_CHECKS)
def test_sklearn_api_checks(text_transformer, check):
    getattr(estimator_checks, check)(type(text_transformer).__name__, text_transformer)


def test_text_counterparts_of_the_data_checks(text_transformer, emotion_data):
    texts, Y = emotion_data
    est = text_transformer
    with pytest.raises(NotFittedError, match="not fitted yet"):
        est.transform(texts)
    params = joblib.hash(est.get_params())
    est.fit(texts, Y)
    assert joblib.hash(est.get_params()) == params  # fit leaves the parameters alone
    Z = np.asarray(est.transform(texts))
    state = joblib.hash(est)  # what its pickle holds: parameters and fitted state
    np.testing.assert_array_equal(np.asarray(est.transform(texts)), Z)
    assert joblib.hash(est) == state  # transform changes nothing it holds
    assert Z.shape == (len(texts), len(est.get_feature_names_out()))
    np.testing.assert_allclose(np.asarray(clone(est).fit(texts, Y).transform(texts)), Z,
                               atol=1e-6)  # fit is idempotent and clone repeats it
    assert not any(k.endswith("_") and not k.startswith("_") for k in vars(clone(est)))
    restored = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(np.asarray(restored.transform(texts)), Z)
    np.testing.assert_allclose(np.asarray(est.transform(texts[:1])), Z[:1], atol=1e-6)
    with pytest.raises(ValueError, match=r"Found 0 texts while a minimum of 1 is required"):
        clone(est).fit([], np.zeros((0, 4)))


def test_a_stack_takes_a_one_dimensional_target(tiny_bert, emotion_data):
    texts, Y = emotion_data
    binary, classes = Y[:, 0], np.array(["calm", "angry", "sad"])[np.arange(60) % 3]
    stack = StackingEmbedder([("chars", char_tfidf_member())], cv=3)
    assert stack.fit(texts, binary).blocks_[-1] == ("meta", 1)  # P(second class)
    assert stack.label_names_ == ["1"]
    Z = stack.fit(texts, classes).transform(texts)
    assert stack.blocks_[-1] == ("meta", 3)  # one probability per class
    np.testing.assert_allclose(Z[:, -3:].sum(axis=1), 1.0, rtol=1e-5)
    assert stack.label_names_ == ["angry", "calm", "sad"]
