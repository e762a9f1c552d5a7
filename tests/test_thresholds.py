import itertools

import numpy as np
import pytest

from skstack.thresholds import decide, score_predictions, tune_thresholds

GRID = np.array([0.1, 0.3, 0.5, 0.7, 0.9])


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


def test_bad_arguments():
    with pytest.raises(ValueError, match="objective must be one of"):
        tune_thresholds([[1]], [[0.5]], "accuracy")
    with pytest.raises(ValueError, match="must be 2-D and of one shape"):
        tune_thresholds([[1, 0]], [[0.5]])


def test_default_candidates_follow_the_scores_up_to_the_top():
    # Probabilities squeezed near 1 (as with strong positive weighting): the best threshold
    # lies above 0.99, beyond any fixed 0.01-step grid.
    rng = np.random.default_rng(0)
    Y = (rng.random((200, 2)) < 0.1).astype(int)
    P = 0.99 + 0.009 * (0.5 * Y + 0.5 * rng.random((200, 2)))
    t = tune_thresholds(Y, P, "macro_f1")
    assert (t > 0.99).all()
    assert score_predictions(Y, decide(P, t), "macro_f1") > 0.9
