"""Property-based tests: whatever a user passes, the answer is right or the error is clear.

Bounded example counts keep them inside the CI budget.
"""

import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from skstack import EncoderEmbedder, decide, jaccard_accuracy, tune_thresholds
from skstack._validation import InvalidParameterError, check_label_matrix

SETTINGS = settings(max_examples=40, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])

# Any code point, lone surrogates and control characters included, from short to very long.
any_char = st.characters(codec=None, categories=None)
texts = st.lists(st.text(any_char, max_size=30) | st.text(any_char, min_size=500,
                                                           max_size=3000),
                 min_size=1, max_size=4)


@pytest.fixture(scope="module")
def embedder(tiny_bert):
    return EncoderEmbedder(tiny_bert, cache=None).fit(["a"])


@SETTINGS
@given(batch=texts)
def test_any_text_gives_finite_vectors_or_names_the_bad_one(embedder, batch):
    surrogate = next((i for i, t in enumerate(batch)
                      if any(0xD800 <= ord(c) <= 0xDFFF for c in t)), None)
    if surrogate is not None:
        with pytest.raises(ValueError, match=f"position {surrogate} is not valid Unicode"):
            embedder.transform(batch)
        return
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        Z = embedder.transform(batch)
    assert Z.shape == (len(batch), 32) and Z.dtype == np.float32
    assert np.isfinite(Z).all()
    assert all("were cut" in str(w.message) for w in caught)  # the only warning there is


label_values = st.sampled_from([0, 1, 0.0, 1.0, True, False, 2, -1, 0.5, np.nan, np.inf])


@SETTINGS
@given(hnp.arrays(np.float64, hnp.array_shapes(min_dims=1, max_dims=3, max_side=5),
                  elements=label_values))
def test_a_label_matrix_is_accepted_exactly_when_it_is_2d_and_0_1(Y):
    valid = Y.ndim == 2 and Y.shape[1] > 0 and Y.shape[0] > 0 and np.isin(Y, (0, 1)).all()
    if valid:
        checked, _ = check_label_matrix(Y)
        np.testing.assert_array_equal(checked, Y)
        assert jaccard_accuracy(Y, Y) == 1.0
    else:
        with pytest.raises((ValueError, TypeError), match=r"Y|label|shape|sample"):
            check_label_matrix(Y)


@SETTINGS
@given(
    proba=hnp.arrays(np.float64, st.tuples(st.integers(1, 6), st.integers(1, 5)),
                     elements=st.floats(0, 1)),
    min_labels=st.one_of(st.integers(-2, 7), st.floats(-1, 7), st.none()),
    max_labels=st.one_of(st.integers(-2, 7), st.none()),
    threshold=st.one_of(st.floats(-0.5, 1.5), st.just(np.nan), st.just(0.5)),
)
def test_decision_rules_keep_their_limits_or_refuse_the_parameters(proba, min_labels,
                                                                   max_labels, threshold):
    n_labels = proba.shape[1]
    ok = (isinstance(min_labels, int) and 0 <= min_labels <= n_labels
          and (max_labels is None or (1 <= max_labels and min_labels <= max_labels))
          and 0 <= threshold <= 1)
    if not ok:
        with pytest.raises((InvalidParameterError, ValueError),
                           match=r"min_labels|max_labels|threshold"):
            decide(proba, threshold, min_labels, max_labels)
        return
    pred = decide(proba, threshold, min_labels, max_labels)
    counts = pred.sum(axis=1)
    assert (counts >= min_labels).all()
    if max_labels is not None:
        assert (counts <= max_labels).all()
    # tuned thresholds under the same limits stay inside [0, 1] and keep the limits too
    Y = (proba > 0.5).astype(int)
    tuned = tune_thresholds(Y, proba, "jaccard", min_labels=min_labels, max_labels=max_labels)
    assert tuned.shape == (n_labels,) and ((tuned >= 0) & (tuned <= 1)).all()
