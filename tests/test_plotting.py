import numpy as np
import pytest

pytest.importorskip("matplotlib")

from skstack import BiLSTMClassifier
from skstack.plotting import (
    plot_label_cooccurrence,
    plot_loss_components,
    plot_per_label_f1,
)


def test_per_label_f1_bars_sorted_by_the_second_configuration():
    ax = plot_per_label_f1([0.1, 0.5, 0.3], [0.2, 0.9, 0.4], ["a", "b", "c"], ("base", "full"))
    assert [t.get_text() for t in ax.get_xticklabels()] == ["b", "c", "a"]
    heights = [p.get_height() for p in ax.patches]
    assert heights == [0.5, 0.3, 0.1, 0.9, 0.4, 0.2]
    with pytest.raises(ValueError, match="one entry per label"):
        plot_per_label_f1([0.1], [0.2, 0.3], ["a", "b"])


def test_cooccurrence_is_conditional_probability():
    Y = np.array([[1, 1, 0], [1, 0, 0], [0, 1, 1], [1, 1, 0]])
    ax = plot_label_cooccurrence(Y, ["a", "b", "c"])
    matrix = ax.images[0].get_array()
    assert matrix[0, 1] == pytest.approx(2 / 3)  # P(b | a)
    assert matrix[2, 1] == pytest.approx(1.0)  # P(b | c)


def test_loss_component_curves_from_history():
    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(40, 6)), rng.integers(0, 2, (40, 3))
    net = BiLSTMClassifier(max_epochs=2, train_split=0.25, blocks="single",
                           random_state=0).fit(X, Y)
    ax = plot_loss_components(net.history)
    assert {line.get_label() for line in ax.lines} == {
        "train_bce", "train_corr", "train_contrastive", "valid_bce", "valid_corr",
        "valid_contrastive"}
    assert len(ax.lines[0].get_xdata()) == 2
