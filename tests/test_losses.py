import math

import numpy as np
import pytest
import torch

from skstack.losses import HybridLoss, LabelStatistics, label_correlation, positive_weight

Y_TRAIN = np.array([[1, 0, 1], [0, 1, 0], [1, 0, 1], [0, 1, 1]])
LOGITS = [[0.5, -1.0, 2.0], [1.0, 0.0, -0.5], [-2.0, 1.0, 0.0]]
TARGETS = [[1, 0, 1], [0, 1, 0], [1, 1, 0]]
HIDDEN = [[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]]


def sig(x):
    return 1 / (1 + math.exp(-x))


def tensors():
    logits = torch.tensor(LOGITS, requires_grad=True)
    hidden = torch.tensor(HIDDEN, requires_grad=True)
    return logits, torch.tensor(TARGETS, dtype=torch.float32), hidden


def test_weighted_bce_against_hand_computation():
    weights = [2 / 2, 2 / 2, 1 / 3]  # n_negative / n_positive per label of Y_TRAIN
    total = 0.0
    for i in range(3):
        for j in range(3):
            p, t = sig(LOGITS[i][j]), TARGETS[i][j]
            total -= weights[j] * t * math.log(p) + (1 - t) * math.log(1 - p)
    loss = HybridLoss(corr_weight=0, contrastive_weight=0).fit(Y_TRAIN)
    logits, targets, hidden = tensors()
    value = loss(logits, targets, hidden)
    assert value.item() == pytest.approx(total / 9, rel=1e-6)
    value.backward()
    assert logits.grad.abs().sum() > 0


def test_correlation_term_against_hand_computation():
    C = np.corrcoef(Y_TRAIN.T)
    np.fill_diagonal(C, 0)
    total, scale = 0.0, 0.0
    for j in range(3):
        for k in range(j + 1, 3):
            scale += abs(C[j, k])
    for i in range(3):
        p = [sig(z) for z in LOGITS[i]]
        for j in range(3):
            for k in range(j + 1, 3):
                c = C[j, k]
                total += max(c, 0) * (p[j] - p[k]) ** 2 + max(-c, 0) * p[j] * p[k]
    expected = total / 3 / scale
    loss = HybridLoss(pos_weight=None, corr_weight=1.0, contrastive_weight=0).fit(Y_TRAIN)
    logits, targets, hidden = tensors()
    value = loss(logits, targets, hidden)
    assert loss.last_components["corr"] == pytest.approx(expected, rel=1e-5)
    assert value.item() == pytest.approx(loss.last_components["bce"] + expected, rel=1e-5)
    loss.corr_term(logits, targets).backward()
    assert logits.grad.abs().sum() > 0


def test_contrastive_term_against_hand_computation():
    tau = 0.5
    sets = [set(np.flatnonzero(t)) for t in TARGETS]
    norm = [np.asarray(h) / np.linalg.norm(h) for h in HIDDEN]
    total, anchors = 0.0, 0
    for i in range(3):
        others = [j for j in range(3) if j != i]
        logits = {j: float(norm[i] @ norm[j]) / tau for j in others}
        log_z = math.log(sum(math.exp(v) for v in logits.values()))
        aff = {j: len(sets[i] & sets[j]) / len(sets[i] | sets[j]) for j in others}
        if sum(aff.values()) == 0:
            continue
        anchors += 1
        total += -sum(aff[j] * (logits[j] - log_z) for j in others) / sum(aff.values())
    expected = total / anchors
    loss = HybridLoss(pos_weight=None, corr_weight=0, contrastive_weight=2.0,
                      temperature=tau).fit(Y_TRAIN)
    logits, targets, hidden = tensors()
    value = loss(logits, targets, hidden)
    assert loss.last_components["contrastive"] == pytest.approx(expected, rel=1e-5)
    assert value.item() == pytest.approx(loss.last_components["bce"] + 2 * expected, rel=1e-5)
    value.backward()
    assert hidden.grad.abs().sum() > 0


def test_label_without_positives_gets_a_bounded_weight_and_a_warning():
    Y = np.array([[1, 0], [1, 0], [0, 0]])
    with pytest.warns(UserWarning, match=r"Labels \[1\] have no positive example"):
        weights = positive_weight(LabelStatistics.from_labels(Y), "balanced", max_weight=50.0)
    np.testing.assert_allclose(weights, [0.5, 50.0])
    with pytest.warns(UserWarning):
        loss = HybridLoss(max_pos_weight=50.0).fit(Y)
    value = loss(torch.zeros(3, 2), torch.tensor(Y, dtype=torch.float32), torch.randn(3, 4))
    assert torch.isfinite(value)


def test_constant_label_has_zero_correlation():
    C = label_correlation(np.array([[1, 1, 0], [0, 1, 1], [1, 1, 0]]))
    assert C[1].tolist() == [0, 0, 0]
    assert C[0, 2] == pytest.approx(-1.0)


def test_label_without_negatives_is_not_silently_zero_weighted():
    Y = np.array([[1, 1], [1, 0], [1, 0]])
    with pytest.warns(UserWarning, match=r"Labels \[0\] have no negative example.*set to 1"):
        weights = positive_weight(LabelStatistics.from_labels(Y), "balanced")
    np.testing.assert_allclose(weights, [1.0, 2.0])


def test_sqrt_weighting_and_statistics_instead_of_labels():
    stats = LabelStatistics.from_labels(Y_TRAIN)
    assert stats.n_samples == 4 and stats.positives.tolist() == [2, 2, 3]
    loss = HybridLoss(pos_weight="sqrt").fit(stats)
    np.testing.assert_allclose(loss.pos_weight_.numpy(), [1.0, 1.0, np.sqrt(1 / 3)], rtol=1e-6)
    np.testing.assert_allclose(loss.correlation_.numpy(), label_correlation(Y_TRAIN))


def test_user_pos_weight_is_checked():
    HybridLoss(pos_weight=[1.0, 2.0, 3.0]).fit(Y_TRAIN)
    with pytest.raises(ValueError, match=r"finite, non-negative and of shape \(3,\)"):
        HybridLoss(pos_weight=[1.0, 2.0]).fit(Y_TRAIN)
    with pytest.raises(ValueError, match=r"'pos_weight' parameter of HybridLoss must be one of "
                                         r"'balanced', 'sqrt' or an array-like or None"):
        HybridLoss(pos_weight="auto")
    with pytest.raises(ValueError, match=r"'temperature' .* a number > 0; got 0"):
        HybridLoss(temperature=0)


def test_correlation_term_needs_fit_and_contrastive_needs_hidden():
    logits, targets, _ = tensors()
    with pytest.raises(RuntimeError, match=r"fit\(Y\)"):
        HybridLoss(pos_weight=None, contrastive_weight=0)(logits, targets)
    with pytest.raises(ValueError, match="hidden representation"):
        HybridLoss(pos_weight=None, corr_weight=0)(logits, targets)


def test_zlpr_term_against_hand_computation():
    total = 0.0
    for z, t in zip(LOGITS, TARGETS, strict=True):
        neg = sum(math.exp(v) for v, y in zip(z, t, strict=True) if y == 0)
        pos = sum(math.exp(-v) for v, y in zip(z, t, strict=True) if y == 1)
        total += math.log(1 + neg) + math.log(1 + pos)
    loss = HybridLoss(bce_weight=0, zlpr_weight=1.0, corr_weight=0, contrastive_weight=0)
    logits, targets, hidden = tensors()
    value = loss.fit(Y_TRAIN)(logits, targets, hidden)
    assert value.item() == pytest.approx(total / 3, rel=1e-6)
    assert loss.last_components["bce"] == 0.0
    value.backward()
    assert logits.grad.abs().sum() > 0


def test_pairwise_correlation_term_against_hand_computation():
    total, texts = 0.0, 0
    for z, t in zip(LOGITS, TARGETS, strict=True):
        p = [sig(v) for v in z]
        pos = [p[i] for i in range(3) if t[i] == 1]
        neg = [p[i] for i in range(3) if t[i] == 0]
        if pos and neg:
            total += sum(math.exp(q - r) for q in neg for r in pos) / (len(pos) * len(neg))
            texts += 1
    loss = HybridLoss(pos_weight=None, corr_weight=1.0, corr_form="pairwise",
                      contrastive_weight=0).fit(Y_TRAIN)
    logits, targets, hidden = tensors()
    loss(logits, targets, hidden)
    assert loss.last_components["corr"] == pytest.approx(total / texts, rel=1e-6)


def test_a_loss_needs_some_term():
    with pytest.raises(ValueError, match=r"'bce_weight' .* > 0 when every other term's weight"):
        HybridLoss(bce_weight=0, corr_weight=0, contrastive_weight=0)
    with pytest.raises(ValueError, match=r"'corr_form' .* one of 'pearson', 'pairwise'"):
        HybridLoss(corr_form="spanemo")
