import os
import pickle
import subprocess
import sys
import time
from pathlib import Path

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
from skorch.callbacks import Callback

from skstack import (
    BiLSTMClassifier,
    BlockArray,
    WordSequences,
    get_scorers,
    jaccard_accuracy,
    nets,
)

SMALL = {"module__hidden_size": 8, "module__projection_dim": 8, "max_epochs": 3,
         "blocks": "single"}

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
    net = BiLSTMClassifier(random_state=0, max_epochs=40, lr=3e-3, blocks="single").fit(X, Y)
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
        for name in ("bce", "corr", "contrastive", "loss"):
            values = net.history[:, f"{prefix}_{name}"]
            assert len(values) == 3 and np.isfinite(values).all() and values[0] > 0
    last = net.history[-1]
    assert last["train_loss"] == pytest.approx(
        last["train_bce"] + 0.5 * last["train_corr"] + 0.5 * last["train_contrastive"], rel=1e-4)


def test_default_trains_on_every_row(data):
    X, Y = data
    net = BiLSTMClassifier(random_state=0, **SMALL).fit(X, Y)
    assert "valid_loss" not in net.history[-1]
    assert net.history[-1, "train_batch_count"] == 2  # 120 rows in batches of 64


def test_patience_stops_early_and_keeps_the_best_epoch(data):
    X, Y = data
    net = BiLSTMClassifier(random_state=0, blocks="single", max_epochs=300, lr=0.05,
                           train_split=0.25, patience=2).fit(X, Y)
    valid = net.history[:, "valid_loss"]
    best = int(np.argmin(valid))
    assert len(valid) < 300 and len(valid) == best + 3  # two epochs without improvement
    # the weights of the best epoch are back: the validation loss recomputed is the best one
    split = net.get_split_datasets(X.astype(np.float32), Y.astype(np.float32))[1]
    Xv, Yv = (np.stack([split[i][k] for i in range(len(split))]) for k in (0, 1))
    net.module_.eval()
    with torch.no_grad():
        loss = net.get_loss(net.infer(torch.as_tensor(Xv)), torch.as_tensor(Yv))
    assert loss.item() == pytest.approx(valid[best], rel=1e-3)


def test_patience_needs_a_validation_split(data):
    X, Y = data
    with pytest.raises(ValueError, match=r"patience=3 stops on the validation loss, and "
                                         r"train_split=None holds out no rows"):
        BiLSTMClassifier(patience=3, **SMALL).fit(X, Y)


def word_sequences(n: int = 200, seed: int = 0) -> WordSequences:
    rng = np.random.default_rng(seed)
    rows = [rng.normal(size=(k, 4)) for k in rng.integers(1, 60, size=n)]
    ws = WordSequences.from_rows(rows, "enc")
    return WordSequences(ws.values, ws.offsets, ws.word_blocks, rng.normal(size=(n, 3)),
                         [("s", 3)])


def epoch_batches(net, X, epochs: int = 2) -> list[list[list[int]]]:
    """The rows of each training batch, epoch by epoch, as the net would draw them."""
    torch.manual_seed(0)
    dataset = net.get_dataset(X, np.zeros((len(X), 2), dtype=np.float32))
    iterator = net.get_iterator(dataset, training=True)
    return [list(iterator.batch_sampler) for _ in range(epochs)]


@pytest.mark.parametrize("order", ["rows", "shuffled", "by_length"])
def test_batch_order_draws_every_row_once_per_epoch(order):
    X = word_sequences()
    epochs = epoch_batches(BiLSTMClassifier(batch_size=32, batch_order=order), X)
    for batches in epochs:
        assert sorted(i for b in batches for i in b) == list(range(200))
        assert max(len(b) for b in batches) == 32
    if order == "rows":  # skorch's default: consecutive rows, every epoch alike
        assert epochs[0] == epochs[1] and epochs[0][1] == list(range(32, 64))
    else:
        assert epochs[0] != epochs[1] and epochs[0][0] != list(range(32))


def test_batches_by_length_carry_less_padding():
    X = word_sequences()
    lengths = X.lengths

    def padding(order: str) -> float:
        batches = epoch_batches(BiLSTMClassifier(batch_size=16, batch_order=order), X, 1)[0]
        padded = sum(lengths[b].max() * len(b) for b in batches)
        return 1 - lengths.sum() / padded

    assert padding("by_length") < 0.1 < 0.3 < padding("shuffled")


def test_batch_order_by_length_trains_reproducibly(data):
    X = word_sequences(120)
    Y = data[1]
    params = {**SMALL, "blocks": "auto", "batch_order": "by_length", "random_state": 0}
    first = BiLSTMClassifier(**params).fit(X, Y).predict_proba(X)
    np.testing.assert_array_equal(BiLSTMClassifier(**params).fit(X, Y).predict_proba(X), first)
    rows = BiLSTMClassifier(**{**params, "batch_order": "rows"}).fit(X, Y).predict_proba(X)
    assert not np.allclose(rows, first)


def test_fixed_thresholds(data):
    X, Y = data
    net = BiLSTMClassifier(random_state=0, threshold=[0.1, 0.9, 0.5, 0.5], **SMALL).fit(X, Y)
    proba = net.predict_proba(X)
    np.testing.assert_array_equal(net.predict(X)[:, 0], proba[:, 0] >= 0.1)
    np.testing.assert_array_equal(net.predict(X)[:, 1], proba[:, 1] >= 0.9)


@pytest.mark.parametrize(("params", "message"), [
    ({"threshold": 1.5}, r"'threshold' parameter of BiLSTMClassifier must be a number in "
                         r"\[0, 1\] or an array-like; got 1.5"),
    ({"threshold": [0.5, 0.5]}, r"'threshold' .* 4 such numbers \(one per label\); got "
                                r"\[0.5, 0.5\]"),
    ({"threshold": [0.5, np.nan, 0.5, 0.5]}, r"'threshold' .* 4 such numbers"),
    ({"lr": 0}, r"'lr' parameter of BiLSTMClassifier must be a number > 0; got 0"),
    ({"max_epochs": 2.5}, r"'max_epochs' .* must be an integer >= 0; got 2.5"),
    ({"train_split": 1.0}, r"'train_split' .* None or a number in \(0, 1\) or a callable"),
    ({"patience": 0}, r"'patience' .* None or an integer >= 1; got 0"),
    ({"blocks": "stacked"}, r"'blocks' .* one of 'auto', 'single' or an array-like"),
    ({"batch_order": "sorted"}, r"'batch_order' .* one of 'rows', 'shuffled', 'by_length'; "
                                r"got 'sorted'"),
    ({"criterion__temperature": 0.0}, r"'temperature' parameter of HybridLoss must be a "
                                      r"number > 0; got 0.0"),
    ({"criterion__corr_weight": -1}, r"'corr_weight' parameter of HybridLoss"),
])
def test_bad_parameters_are_named_at_fit(data, params, message):
    X, Y = data
    with pytest.raises(ValueError, match=message):
        BiLSTMClassifier(**{**SMALL, **params}).fit(X, Y)


def test_dataframe_labels_name_the_labels(data):
    X, Y = data
    frame = pd.DataFrame(Y, columns=["joy", "anger", "fear", "love"])
    net = BiLSTMClassifier(random_state=0, **SMALL).fit(X, frame.astype(bool))
    assert net.label_names_ == ["joy", "anger", "fear", "love"]


def test_block_layout_from_blockarray_and_explicit(data):
    X, Y = data
    net = BiLSTMClassifier(random_state=0, **{**SMALL, "blocks": "auto"})
    net.fit(BlockArray(X, [("a", 5), ("b", 7)]), Y)
    assert net.blocks_ == [("a", 5), ("b", 7)]
    assert [p.in_features for p in net.module_.projections] == [5, 7]
    assert BiLSTMClassifier(**{**SMALL, "blocks": [4, 8]}).fit(X, Y).blocks_ == [
        ("block0", 4), ("block1", 8)]
    with pytest.raises(ValueError, match=r"adds up to 10 columns, but X has 12"):
        BiLSTMClassifier(**{**SMALL, "blocks": [4, 6]}).fit(X, Y)


def test_auto_reads_a_plain_array_as_one_block_and_an_explicit_layout_overrides(data):
    X, Y = data
    Z = BlockArray(X, [("a", 5), ("b", 7)])
    pipe = make_pipeline(StandardScaler(), BiLSTMClassifier(max_epochs=1))  # drops the layout
    assert pipe.fit(Z, Y)[-1].blocks_ == [("X", 12)]
    assert len(pipe[-1].module_.projections) == 1
    pipe.set_params(bilstmclassifier__blocks=[5, 7]).fit(Z, Y)  # explicit layout
    assert pipe[-1].blocks_ == [("block0", 5), ("block1", 7)]
    assert pipe[-1].predict(Z).shape == (120, 4)  # same widths under other names: fine
    single = BiLSTMClassifier(**SMALL).fit(Z, Y)  # "single" over a carried layout
    assert single.blocks_ == [("X", 12)]
    np.testing.assert_array_equal(single.predict(Z), single.predict(X))


def test_predicting_on_another_layout_of_the_same_width_is_refused(data):
    X, Y = data
    net = BiLSTMClassifier(**{**SMALL, "blocks": "auto"}).fit(
        BlockArray(X, [("a", 5), ("b", 7)]), Y)
    assert net.predict(X).shape == (120, 4)  # a plain array of the right width is fine
    with pytest.raises(ValueError, match=r"carries the block layout \[\('a', 7\), \('b', 5\)\]"):
        net.predict(BlockArray(X, [("a", 7), ("b", 5)]))


def test_block_layout_survives_pickling():
    Z = BlockArray(np.ones((3, 4)), [("a", 1), ("b", 3)])
    again = pickle.loads(pickle.dumps(Z))
    assert again.blocks == [("a", 1), ("b", 3)]
    np.testing.assert_array_equal(again, Z)


def test_label_statistics_reach_a_re_created_criterion(data):
    X, Y = data
    net = BiLSTMClassifier(random_state=0, **SMALL).fit(X, Y)
    np.testing.assert_allclose(net.label_statistics_.positives, Y.sum(axis=0))
    expected = (len(Y) - Y.sum(axis=0)) / Y.sum(axis=0)
    np.testing.assert_allclose(net.criterion_.pos_weight_.numpy(), expected, rtol=1e-6)
    net.set_params(criterion__corr_weight=0.7)  # skorch re-creates the criterion
    assert net.criterion_.corr_weight == 0.7
    np.testing.assert_allclose(net.criterion_.pos_weight_.numpy(), expected, rtol=1e-6)
    net.partial_fit(X, Y)  # trains on with the new weight; the statistics are still there
    assert np.isfinite(net.history[-1, "train_corr"]) and net.history[-1, "train_corr"] > 0


@pytest.mark.parametrize(
    ("y_change", "message"),
    [
        (lambda Y: Y[:, :0], "0 label columns"),
        (lambda Y: Y * 2, r"only 0 and 1; found .*2.* at row"),
        (lambda Y: Y[:-1], "y has 119 rows but X has 120"),
        (lambda Y: Y[:, :, None], "must be a 2-D label matrix"),
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
    assert net.criterion_.pos_weight_.is_cuda
    joblib.dump(net, tmp_path / "net.joblib")
    loaded = joblib.load(tmp_path / "net.joblib")
    np.testing.assert_allclose(loaded.predict_proba(X), net.predict_proba(X), atol=1e-5)


def test_mixed_precision_runs_on_cpu(data):
    X, Y = data
    net = BiLSTMClassifier(mixed_precision=True, random_state=0, **SMALL).fit(X, Y)
    assert net.predict_proba(X).dtype == np.float32
    assert torch.isfinite(torch.as_tensor(net.history[-1, "train_loss"]))




def test_residual_path_starts_from_the_meta_learner(data):
    X, Y = data
    meta = np.random.default_rng(1).uniform(0.05, 0.95, size=(120, 4))
    Z = BlockArray(np.hstack([X, meta]), [("x", 12), ("meta", 4)])
    untrained = BiLSTMClassifier(**{**SMALL, "blocks": "auto", "max_epochs": 0},
                                 module__residual="auto").fit(Z, Y)
    np.testing.assert_allclose(untrained.predict_proba(Z), meta, rtol=1e-5, atol=1e-6)
    trained = BiLSTMClassifier(**{**SMALL, "blocks": "auto"}, module__residual="auto",
                               random_state=0).fit(Z, Y)
    assert not np.allclose(trained.predict_proba(Z), meta, atol=1e-3)  # it learned a correction
    plain = BiLSTMClassifier(**{**SMALL, "blocks": "auto", "max_epochs": 0}).fit(Z, Y)
    assert not np.allclose(plain.predict_proba(Z), meta, atol=0.05)


def test_early_stopping_keeps_the_meta_learner_when_no_epoch_beats_it(calibrated_meta):
    Z, Y, params = calibrated_meta  # nothing to add to a calibrated meta-learner
    net = BiLSTMClassifier(**params).fit(Z, Y)
    assert net.best_epoch_ == 0 and len(net.history) == 3  # three epochs without improvement
    np.testing.assert_allclose(net.predict_proba(Z), np.asarray(Z)[:, 8:], rtol=1e-5,
                               atol=1e-6)
    # the loss to beat, by hand: the meta-learner's BCE on the validation rows
    split = net.get_split_datasets(np.asarray(Z, dtype=np.float32), Y.astype(np.float32))[1]
    Xv, Yv = (np.stack([split[i][k] for i in range(len(split))]) for k in (0, 1))
    p = Xv[:, 8:]
    bce = -np.mean(Yv * np.log(p) + (1 - Yv) * np.log(1 - p))
    assert net.history[0, "valid_loss_start"] == pytest.approx(bce, rel=1e-4)
    assert min(net.history[:, "valid_loss"]) > net.history[0, "valid_loss_start"]


def test_early_stopping_keeps_a_correction_that_beats_the_meta_learner(calibrated_meta):
    Z, Y, params = calibrated_meta
    blurred = np.asarray(Z).copy()
    blurred[:, 8:] = 0.5 + 0.3 * (blurred[:, 8:] - 0.5)  # under-confident: a gain helps
    net = BiLSTMClassifier(**params, lr=0.01).fit(BlockArray(blurred, Z.blocks), Y)
    valid = net.history[:, "valid_loss"]
    assert net.best_epoch_ == int(np.argmin(valid)) + 1 > 0
    assert min(valid) < net.history[0, "valid_loss_start"]


def test_best_epoch_without_early_stopping_is_the_last(data):
    X, Y = data
    assert BiLSTMClassifier(random_state=0, **SMALL).fit(X, Y).best_epoch_ == 3


def test_residual_path_needs_a_block_of_label_probabilities(data):
    X, Y = data
    Z = BlockArray(X, [("a", 8), ("b", 4)])
    net = BiLSTMClassifier(**{**SMALL, "blocks": "auto", "max_epochs": 0},
                           module__residual="auto")
    assert net.fit(Z, Y).module_.residual_index is None  # "auto" without a meta block: none
    assert net.set_params(module__residual="b").fit(Z, Y).module_.residual_index == 1
    with pytest.raises(ValueError, match=r"residual='a' must name a block of 4 probabilities"):
        net.set_params(module__residual="a").fit(Z, Y)


def test_a_binary_1d_target_predicts_its_class_labels():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 4))
    y = np.where(X[:, 0] > 0, "pos", "neg")
    net = BiLSTMClassifier(random_state=0, **{**SMALL, "max_epochs": 30, "lr": 0.01}).fit(X, y)
    assert net.target_type_ == "binary" and net.classes_.tolist() == ["neg", "pos"]
    assert net.label_names_ == ["pos"] and net.module_.head.out_features == 1
    proba = net.predict_proba(X)
    assert proba.shape == (120, 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)
    pred = net.predict(X)
    assert set(pred) <= {"neg", "pos"} and net.score(X, y) > 0.9
    with pytest.raises(ValueError, match="the class 'maybe', which was not in the classes"):
        net.partial_fit(X[:2], ["pos", "maybe"])


def test_a_multiclass_1d_target_trains_a_softmax_head_with_cross_entropy():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(150, 4))
    y = X[:, :3].argmax(axis=1) * 10  # classes 0, 10, 20
    net = BiLSTMClassifier(random_state=0, **{**SMALL, "max_epochs": 30, "lr": 0.01}).fit(X, y)
    assert net.target_type_ == "multiclass" and net.classes_.tolist() == [0, 10, 20]
    proba = net.predict_proba(X)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(net.predict(X), net.classes_[proba.argmax(axis=1)])
    assert net.score(X, y) > 0.8
    # cross-entropy of the softmax, by hand, is what the net reports as its loss
    net.module_.eval()
    logits, _ = net.infer(torch.as_tensor(X, dtype=torch.float32))
    expected = torch.nn.functional.cross_entropy(logits, torch.as_tensor(y // 10)).item()
    assert net.get_loss((logits, None), net._validate_data(X, y, reset=False)[1]).item() == \
        pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize(("y", "message"), [
    (np.linspace(0, 1, 30), "Unknown label type: continuous"),
    (np.ones(30), "only one class"),
    (np.r_[np.zeros(29), np.nan], "NaN or infinity at position 29"),
])
def test_1d_targets_that_are_not_classes_are_refused(y, message):
    X = np.random.default_rng(0).normal(size=(30, 4))
    with pytest.raises(ValueError, match=message):
        BiLSTMClassifier(**SMALL).fit(X, y)


class _Probe:
    """A stand-in for the wait probe: the machine is crowded (or not) by decree."""

    crowded_now = False

    def __init__(self):
        pass

    def restart(self):
        pass

    def seconds(self):
        return 1.0

    def crowded(self, threads):
        return self.crowded_now

    def share(self, threads):
        return 1.0 if self.crowded_now else 0.0


class _SeenThreads(Callback):
    """The torch threads each training batch starts with."""

    def on_batch_begin(self, net, training=False, **kwargs):
        if training:
            self.seen.append(torch.get_num_threads())

    def on_train_begin(self, net, **kwargs):
        self.seen = []


def _threads_in_forward(net) -> list[int]:
    """The torch threads each forward pass of ``net``'s module runs with, as it runs."""
    seen = []
    net.module_.register_forward_hook(lambda *_: seen.append(torch.get_num_threads()))
    return seen


@pytest.mark.parametrize("crowded", [False, True])
def test_the_head_trains_on_one_thread_only_while_the_cores_are_crowded(data, monkeypatch,
                                                                         crowded):
    from skstack import _config, _threads

    X, Y = data
    monkeypatch.setattr(_threads, "_crowded_until", 0.0)  # no verdict from an earlier test
    monkeypatch.setitem(_config._CONFIG, "adapt_threads", True)
    monkeypatch.setattr(_threads, "WaitProbe", _Probe)  # predictions measure a quiet machine
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        monkeypatch.setattr(nets, "WaitProbe", type("P", (_Probe,), {"crowded_now": crowded}))
        seen = _SeenThreads()
        net = BiLSTMClassifier(max_epochs=2, batch_size=8, random_state=0,
                               callbacks=[("seen", seen)]).fit(X, Y)
        # measured before the first batch: a crowded machine trains on one thread
        assert set(seen.seen) == ({1} if crowded else {2})
        assert torch.get_num_threads() == 2  # the process's threads, after the fit
        # the predictions right after (a rule's on its held-out rows) follow the verdict
        in_forward = _threads_in_forward(net)
        net.predict_proba(X)
        assert set(in_forward) == ({1} if crowded else {2})
        assert torch.get_num_threads() == 2
        # the next fit takes the verdict without probing again (a crowded probe that now
        # says quiet is not asked)
        monkeypatch.setattr(nets, "WaitProbe", _Probe)
        seen = _SeenThreads()
        BiLSTMClassifier(max_epochs=1, batch_size=8, callbacks=[("seen", seen)]).fit(X, Y)
        assert set(seen.seen) == ({1} if crowded else {2})
        seen = _SeenThreads()
        off = BiLSTMClassifier(max_epochs=1, batch_size=8, callbacks=[("seen", seen)],
                               callbacks__threads=None).fit(X, Y)
        in_forward = _threads_in_forward(off)
        off.predict_proba(X)
        assert set(seen.seen) == set(in_forward) == {2}  # turned off
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("still_crowded", [False, True])
def test_the_head_tries_every_thread_again_after_a_while_on_one(data, monkeypatch,
                                                                still_crowded):
    from skstack import _threads

    X, Y = data
    monkeypatch.setattr(_threads, "_crowded_until", 0.0)
    # crowded before training; then, at each judged window, crowded or free again
    verdicts = iter([True] + [still_crowded] * 1000)

    class LongProbe(_Probe):  # every window and every retry has elapsed at each batch
        def seconds(self):
            return 100.0

        def crowded(self, threads):
            return next(verdicts)

    monkeypatch.setattr(nets, "WaitProbe", LongProbe)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        seen = _SeenThreads()
        BiLSTMClassifier(max_epochs=2, batch_size=8, random_state=0,
                         callbacks=[("seen", seen)]).fit(X, Y)
        assert len(seen.seen) >= 4
        if still_crowded:  # tried again after each while on one thread, and back to one
            assert seen.seen == [1, 2] * (len(seen.seen) // 2) + [1] * (len(seen.seen) % 2)
        else:  # the cores are free again: every thread from the first retry on
            assert seen.seen == [1] + [2] * (len(seen.seen) - 1)
        assert _threads.crowded_lately() == still_crowded  # the last verdict, passed on
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_short_fits_pass_a_crowded_verdict_on_until_it_is_old(data, monkeypatch):
    from skstack import _threads

    X, Y = data
    monkeypatch.setattr(_threads, "_crowded_until", 0.0)
    _threads.note_crowded()
    measured = _threads._measured_at
    # no window long enough to judge or retry; a probe would say the cores are free
    monkeypatch.setattr(nets, "WaitProbe", _Probe)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        seen = _SeenThreads()
        BiLSTMClassifier(max_epochs=1, batch_size=8, callbacks=[("seen", seen)]).fit(X, Y)
        assert set(seen.seen) == {1}  # on the verdict, passed on, not measured again
        assert _threads.crowded_lately() and _threads._measured_at == measured
        # once the last measurement is MEASURE_AGAIN seconds old, the next fit measures
        monkeypatch.setattr(_threads, "_measured_at", measured - _threads.MEASURE_AGAIN)
        seen = _SeenThreads()
        BiLSTMClassifier(max_epochs=1, batch_size=8, callbacks=[("seen", seen)]).fit(X, Y)
        assert set(seen.seen) == {2}
    finally:
        torch.set_num_threads(before)
        monkeypatch.setattr(_threads, "_crowded_until", 0.0)


def _spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity") or not Path("/proc/self/task").exists(),
                    reason="needs Linux's per-thread scheduler statistics")
def test_the_wait_probe_sees_other_jobs_on_our_core():
    from skstack._threads import CROWDED, WaitProbe

    cpus = os.sched_getaffinity(0)
    core = {min(cpus)}
    os.sched_setaffinity(0, core)
    rivals = [subprocess.Popen([sys.executable, "-c", "import os, time\n"
                                f"os.sched_setaffinity(0, {core})\n"
                                "end = time.time() + 5\nwhile time.time() < end: pass"])
              for _ in range(2)]
    try:
        time.sleep(0.3)  # they start
        probe = WaitProbe()
        _spin(0.6)  # one thread against two rivals on one core: it waits about 2/3 of the time
        assert probe.share(threads=1) > CROWDED
    finally:
        for rival in rivals:
            rival.kill()
            rival.wait()
        os.sched_setaffinity(0, cpus)
