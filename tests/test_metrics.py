import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score, hamming_loss, precision_score

from skstack.metrics import get_scorers, jaccard_accuracy, jaccard_per_example, multilabel_report

Y_TRUE = np.array([[1, 1, 0], [0, 0, 0], [1, 0, 0], [0, 1, 1]])
Y_PRED = np.array([[1, 0, 0], [0, 0, 0], [0, 1, 0], [0, 1, 1]])


def test_jaccard_matches_the_semeval_definition_by_hand():
    # |∩|/|∪| per tweet: 1/2, empty/empty = 1, 0/2, 2/2
    np.testing.assert_allclose(jaccard_per_example(Y_TRUE, Y_PRED), [0.5, 1.0, 0.0, 1.0])
    assert jaccard_accuracy(Y_TRUE, Y_PRED) == pytest.approx(0.625)


def test_report_matches_scikit_learn():
    report = multilabel_report(Y_TRUE, Y_PRED, ["joy", "anger", "fear"])
    for avg in ("micro", "macro", "weighted", "samples"):
        expected = f1_score(Y_TRUE, Y_PRED, average=avg, zero_division=0)
        assert report.averages[avg]["f1"] == pytest.approx(expected)
        expected_p = precision_score(Y_TRUE, Y_PRED, average=avg, zero_division=0)
        assert report.averages[avg]["precision"] == pytest.approx(expected_p)
    per_label = f1_score(Y_TRUE, Y_PRED, average=None, zero_division=0)
    assert [report.per_label[n]["f1"] for n in ("joy", "anger", "fear")] == pytest.approx(
        per_label)
    assert report.per_label["anger"]["support"] == 2
    assert report.hamming_loss == pytest.approx(hamming_loss(Y_TRUE, Y_PRED))
    assert report.subset_accuracy == pytest.approx(accuracy_score(Y_TRUE, Y_PRED))
    assert report.jaccard_accuracy == pytest.approx(0.625)


def test_report_text_and_thresholds():
    report = multilabel_report(Y_TRUE, Y_PRED, ["joy", "anger", "fear"],
                               thresholds=[0.2, 0.5, 0.7], threshold_objective="jaccard")
    text = str(report)
    assert "threshold" in text.splitlines()[0]
    assert "anger" in text and "0.700" in text
    assert "Thresholds tuned for:           jaccard" in text
    assert report.to_dict()["thresholds"] == {"joy": 0.2, "anger": 0.5, "fear": 0.7}


def test_label_names_come_from_a_dataframe():
    import pandas as pd

    report = multilabel_report(pd.DataFrame(Y_TRUE, columns=list("abc")), Y_PRED)
    assert report.labels == ["a", "b", "c"]


def test_shape_errors():
    with pytest.raises(ValueError, match=r"y_true has shape \(4, 3\) but y_pred has \(4, 2\)"):
        multilabel_report(Y_TRUE, Y_PRED[:, :2])
    with pytest.raises(ValueError, match="2 label names given for 3 labels"):
        multilabel_report(Y_TRUE, Y_PRED, ["a", "b"])
    with pytest.raises(ValueError, match=r"y_true must be a 2-D label matrix .* shape \(2,\)"):
        jaccard_accuracy([1, 0], [1, 0])


@pytest.mark.parametrize(("y_pred", "message"), [
    ([[2, 0], [0, 1]], r"y_pred must contain only 0 and 1; found 2 at row 0, column 0"),
    ([[1, np.nan], [0, 1]], r"y_pred must contain only 0 and 1; found nan at row 0, column 1"),
    (np.zeros((2, 0)), r"y_pred has 0 label columns"),
])
def test_metrics_refuse_what_is_not_a_label_matrix(y_pred, message):
    with pytest.raises(ValueError, match=message):
        jaccard_accuracy([[1, 0], [0, 1]], y_pred)


def test_sparse_label_matrices_are_scored_like_dense_ones():
    from scipy import sparse

    assert jaccard_accuracy(sparse.csr_matrix(Y_TRUE), sparse.csr_matrix(Y_PRED)) == \
        pytest.approx(jaccard_accuracy(Y_TRUE, Y_PRED))


def test_scorers_score_predictions():
    from sklearn.base import BaseEstimator

    class Fixed(BaseEstimator):
        def predict(self, X):
            return Y_PRED

    scorers = get_scorers()
    assert scorers["jaccard"](Fixed(), None, Y_TRUE) == pytest.approx(0.625)
    assert scorers["hamming_loss"](Fixed(), None, Y_TRUE) == pytest.approx(
        -hamming_loss(Y_TRUE, Y_PRED))
    assert scorers["macro_f1"](Fixed(), None, Y_TRUE) == pytest.approx(
        f1_score(Y_TRUE, Y_PRED, average="macro", zero_division=0))
