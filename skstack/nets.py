"""BiLSTMClassifier: a skorch net for multi-label targets over stacked embeddings.

Block mode: each block of the stacked representation (one encoder's vector, the
meta-learner's probabilities, ...) is projected to a common width and becomes one step of a
sequence that a bidirectional LSTM reads. Word mode (a
:class:`~skstack.sequences.WordSequences` input): the Bi-LSTM reads the text word by word,
each word's stacked states re-projected first, and the sentence-level blocks join its final
states at the head. A fully connected head turns them into label logits.
The net returns probabilities; the decision rule that turns them into label sets lives in
:class:`skstack.thresholds.TunedThresholds`, which can wrap this net or any other classifier.

Import rule: torch, skorch, scikit-learn, the skstack leaves (``_batching``, ``_config``,
``_threads``, ``_validation``, ``blocks``, ``sequences``, ``losses``, ``rules``, ``targets``) and
``persistence`` (the save protocol); never the
encoder, the stack or the decision-rule wrapper (``thresholds``), which wraps this net.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from copy import deepcopy
from typing import ClassVar

import numpy as np
import torch
from skorch import NeuralNet
from skorch.callbacks import Callback, EarlyStopping, PassthroughScoring, ProgressBar
from skorch.dataset import ValidSplit
from skorch.utils import to_tensor
from torch.nn.utils.rnn import pack_padded_sequence, pad_sequence
from torch.utils.data import default_collate

from skstack._batching import bucketed_batches
from skstack._config import progress, progress_enabled
from skstack._threads import (
    MEASURE_AGAIN,
    WaitProbe,
    crowded_lately,
    note_crowded,
    own_threads,
    prediction_threads,
)
from skstack._validation import (
    ARRAY_LIKE,
    BLOCKS,
    BOOLEAN,
    CALLABLE,
    COUNT,
    NAMES,
    NONE,
    SEED,
    TARGET_TYPES,
    Check,
    Interval,
    Options,
    check_features,
    validates_params,
)
from skstack.blocks import META_BLOCK, block_layout, check_same_layout, resolve_blocks
from skstack.losses import COMPONENTS, HybridLoss, LabelStatistics
from skstack.persistence import VersionedState
from skstack.rules import _decide, check_thresholds
from skstack.sequences import WordSequences
from skstack.targets import (
    check_fitted_target,
    check_target,
    class_predictions,
    class_proba,
    multilabel_classifier_tags,
    target_score,
)

_PART = Check(lambda v: isinstance(v, type) or isinstance(v, torch.nn.Module),
              "a class or a torch.nn.Module instance")


class BiLSTMModule(torch.nn.Module):
    """Steps -> Bi-LSTM -> dropout -> linear head.

    Block mode (``word_width=None``): each block of ``X`` is projected to
    ``projection_dim`` and becomes one step. Word mode: the steps are the words (each word's
    stacked states projected, as flair re-projects before its RNN), packed so that padding
    is never read, and the blocks of ``X`` (sentence-level) are projected and join the
    Bi-LSTM's final states at the head.

    ``forward`` returns ``(logits, features)``: the label logits and what the head read
    (the representation the contrastive loss works on).

    With a residual block (the meta-learner's probabilities), the logits are
    ``gain * logit(p_meta) + head(features)``: the head starts at zero, so an untrained net
    predicts exactly what the meta-learner predicts, and training learns a per-label
    recalibration (``gain``, from 1) and a correction on top of it. A head that starts from
    the model it sits on cannot lose what that model knows unless training moves it away.

    Parameters
    ----------
    block_widths : list of int
    n_labels : int
    block_names : list of str, default=None
    residual : "auto", str or None, default=None
        Name of the block of probabilities to add as logits. ``"auto"``: the ``"meta"`` block
        when there is one of width ``n_labels``, else none. ``None``: no residual path. Off
        in a bare net; the ready-made pipelines turn it on (see ``docs/benchmarks.md``).
    word_width : int, default=None
        Width of one word's stacked states (word mode); ``None`` for block mode.
    projection_dim, hidden_size, num_layers, dropout
        Sizes of the projection, the Bi-LSTM and the dropout before the head.
    """

    def __init__(
        self,
        block_widths: Sequence[int],
        n_labels: int,
        block_names: Sequence[str] | None = None,
        residual: str | None = None,
        word_width: int | None = None,
        projection_dim: int = 128,
        hidden_size: int = 128,
        num_layers: int = 1,
        dropout: float = 0.2,
    ):
        super().__init__()
        self.block_widths = list(block_widths)
        names = list(block_names) if block_names is not None else [
            f"block{i}" for i in range(len(self.block_widths))]
        self.residual_index = _residual_index(residual, names, self.block_widths, n_labels)
        self.projections = torch.nn.ModuleList(
            torch.nn.Linear(w, projection_dim) for w in self.block_widths
        )
        self.word_projection = None if word_width is None else torch.nn.Linear(
            word_width, projection_dim)
        self.norm = torch.nn.LayerNorm(projection_dim)
        self.lstm = torch.nn.LSTM(
            projection_dim, hidden_size, num_layers=num_layers, batch_first=True,
            bidirectional=True, dropout=dropout if num_layers > 1 else 0.0,
        )
        self.dropout = torch.nn.Dropout(dropout)
        at_head = 0 if word_width is None else projection_dim * len(self.block_widths)
        self.head = torch.nn.Linear(2 * hidden_size + at_head, n_labels)
        if self.residual_index is not None:
            torch.nn.init.zeros_(self.head.weight)
            torch.nn.init.zeros_(self.head.bias)
            self.gain = torch.nn.Parameter(torch.ones(n_labels))

    def forward(self, X: torch.Tensor, words: torch.Tensor | None = None,
                lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        parts = torch.split(X, self.block_widths, dim=1) if self.block_widths else ()
        projected = [self.norm(proj(p)) for proj, p in zip(self.projections, parts,
                                                            strict=True)]
        self.lstm.flatten_parameters()  # weights unpickled onto a GPU are not one cuDNN chunk
        if self.word_projection is None:
            _, (h_n, _) = self.lstm(torch.stack(projected, dim=1))
            features = torch.cat([h_n[-2], h_n[-1]], dim=1)  # top layer, both directions
        else:
            steps = self.norm(self.word_projection(words))
            packed = pack_padded_sequence(steps, lengths.cpu(), batch_first=True,
                                          enforce_sorted=False)
            _, (h_n, _) = self.lstm(packed)
            features = torch.cat([h_n[-2], h_n[-1], *projected], dim=1)
        logits = self.head(self.dropout(features))
        if self.residual_index is not None:
            p = parts[self.residual_index].float().clamp(1e-6, 1 - 1e-6)
            logits = logits + self.gain * torch.logit(p)
        return logits, features


class _WordDataset(torch.utils.data.Dataset):
    """Items of a :class:`WordSequences`: ``({"X": sentence row, "words": states}, y row)``."""

    def __init__(self, X: WordSequences, y=None):
        self.X = X
        self.y = None if y is None else torch.as_tensor(np.asarray(y, dtype=np.float32))

    def __len__(self) -> int:
        return len(self.X)

    def __getitem__(self, i):
        words = torch.from_numpy(self.X.words(i).astype(np.float32))
        x = {"X": torch.from_numpy(self.X.sentence[i]), "words": words}
        return x, (torch.zeros(0) if self.y is None else self.y[i])


def collate_words(batch):
    """Batch word-mode items: words right-padded to the longest text, their ``lengths``
    (at least 1: a text without words reads one zero step); other items as torch does."""
    if not isinstance(batch[0][0], dict) or "words" not in batch[0][0]:
        return default_collate(batch)
    words = [x["words"] for x, _ in batch]
    lengths = torch.tensor([max(len(w), 1) for w in words])
    padded = pad_sequence([w if len(w) else w.new_zeros(1, w.shape[1]) for w in words],
                          batch_first=True)
    X = torch.stack([x["X"] for x, _ in batch])
    return {"X": X, "words": padded, "lengths": lengths}, default_collate([y for _, y in batch])


def _residual_index(residual, names: list[str], widths: list[int], n_labels: int) -> int | None:
    if residual is None:
        return None
    if residual == "auto":
        if META_BLOCK in names and widths[names.index(META_BLOCK)] == n_labels:
            return names.index(META_BLOCK)
        return None
    if residual not in names or widths[names.index(residual)] != n_labels:
        blocks = list(zip(names, widths, strict=True))
        raise ValueError(f"residual={residual!r} must name a block of {n_labels} probabilities "
                         f"(one per label); the blocks are {blocks}.")
    return names.index(residual)


class _Batches(torch.utils.data.Sampler):
    """Training batches in a new random order each epoch (``bucketed_batches``); with
    ``lengths``, of texts of similar length, so that the Bi-LSTM steps through little
    padding. The order follows torch's seed (``random_state``)."""

    def __init__(self, n: int, batch_size: int, lengths: np.ndarray | None = None):
        self.batch_size = batch_size
        self.lengths = np.zeros(n, dtype=np.int64) if lengths is None else lengths

    @classmethod
    def of(cls, dataset, batch_size: int, by_length: bool) -> _Batches:
        """The batches of a training dataset (the rows ``train_split`` left, or all);
        ``by_length`` sorts word-mode texts by their number of words."""
        base, rows = dataset, np.arange(len(dataset))
        if isinstance(dataset, torch.utils.data.Subset):
            base, rows = dataset.dataset, np.asarray(dataset.indices)
        lengths = base.X.lengths[rows] if by_length and isinstance(base, _WordDataset) else None
        return cls(len(dataset), len(dataset) if batch_size == -1 else batch_size, lengths)

    def __len__(self) -> int:
        return -(-len(self.lengths) // self.batch_size)

    def __iter__(self):
        generator = torch.Generator().manual_seed(int(torch.randint(2**62, ()).item()))
        for batch in bucketed_batches(self.lengths, self.batch_size, generator, pool=20):
            yield batch.tolist()


class _ThreadsForTheMachine(Callback):
    """Train on one torch thread while this process's threads wait for a core more than
    :data:`skstack._threads.CROWDED` of the time (another job holds the cores), and try every
    thread again after :attr:`RETRY` seconds on one, keeping them if the cores are free; the
    fit gives the process its threads back when it ends
    (:func:`skstack._threads.own_threads`). A quiet machine keeps every thread.

    Why: the head's small operations on several OpenMP threads stall whenever one of them is
    descheduled; beside a 2-thread torch job the head ran 4-56x slower on 2 threads and 1.4x
    on one (docs/benchmarks.md, "A busy machine"). Without the retry, a long fit (43,000
    texts) that began beside another job ran on one thread with a core idle once that job
    had ended, and would have for the rest of its fit. Turn it off with
    ``callbacks__threads=None``."""

    # before training, a short burst of matrix products shows how crowded the cores are;
    # while training, stretches long enough to see the scheduler's share, short to an epoch;
    # on one thread, every thread is tried again after RETRY seconds (on cores that are
    # still crowded, a try costs a window's batches at the crowded speed)
    PROBE, WINDOW, RETRY = 0.05, 0.25, 10.0

    def on_train_begin(self, net, **kwargs):
        self.all_threads_ = self.threads_ = torch.get_num_threads()
        # the last verdict this fit measured (None: none yet), and whether it is on one
        # thread because of the cores
        self.verdict_, self.crowded_ = None, False
        if self.threads_ > 1 and crowded_lately(max_age=MEASURE_AGAIN):
            self._one_thread()  # a fit just before found them crowded
        elif self.threads_ > 1:
            probe = WaitProbe()
            a, b = torch.ones(128, 256), torch.ones(256, 256)  # no draw from the seeded RNG
            while probe.seconds() < self.PROBE:
                a @ b
            self._judge(probe)
        self._probe = WaitProbe()

    def on_batch_end(self, net, training=False, **kwargs):
        if not training or self.all_threads_ == 1:
            return
        # one thread of several: only a crowded verdict puts it there
        if self._probe.seconds() < (self.RETRY if self.threads_ == 1 else self.WINDOW):
            return
        if self.threads_ == 1:  # every thread again; the next window judges them
            self.threads_ = self.all_threads_
            torch.set_num_threads(self.threads_)
        else:
            self._judge(self._probe)
        self._probe.restart()

    def on_train_end(self, net, **kwargs):
        # the predictions that follow (a rule's) and the next fit run on one thread too;
        # a chain of short fits that never measure passes the verdict on only until it is
        # MEASURE_AGAIN seconds old
        if self.crowded_:
            note_crowded(measured=bool(self.verdict_))

    def _judge(self, probe: WaitProbe) -> None:
        self.verdict_ = probe.crowded(self.threads_)
        if self.verdict_:
            self._one_thread()
        elif self.crowded_:
            self.crowded_ = False
            progress(f"Bi-LSTM head: the cores are free again; training on {self.threads_} "
                     "threads")

    def _one_thread(self) -> None:
        if not self.crowded_:
            progress("Bi-LSTM head: the cores are busy with other work; training on one "
                     "thread")
        self.threads_, self.crowded_ = 1, True
        torch.set_num_threads(1)


class _ProgressLines(Callback):
    """One progress line per epoch (:func:`skstack._config.progress`)."""

    def on_epoch_end(self, net, **kwargs):
        row = net.history[-1]
        valid = f", valid loss {row['valid_loss']:.4f}" if "valid_loss" in row else ""
        progress(f"Bi-LSTM head: epoch {row['epoch']}/{net.max_epochs}, train loss "
                 f"{row['train_loss']:.4f}{valid} ({row['dur']:.1f} s)")


class _EarlyStoppingFromStart(EarlyStopping):
    """Early stopping that counts the starting point as epoch 0 when it means something.

    With the residual path, the untrained net predicts exactly the meta-learner's
    probabilities (its head starts at zero, its gain at one). Its validation loss before the
    first step is then the loss to beat: when no epoch beats it, the net keeps its starting
    weights and predicts what the meta-learner predicts (``best_epoch_ == 0``), which is how
    the pipeline falls back where the head does not help (docs/benchmarks.md, "Beyond one
    data set").
    """

    def on_train_begin(self, net, **kwargs):
        super().on_train_begin(net, **kwargs)
        self._start_pending = True

    def on_epoch_begin(self, net, dataset_train=None, dataset_valid=None, **kwargs):
        if not self._start_pending:
            return
        self._start_pending = False
        if dataset_valid is None or getattr(net.module_, "residual_index", None) is None \
                or net.target_type_ != "multilabel" or not isinstance(net.criterion_,
                                                                       HybridLoss):
            return
        total, rows = 0.0, 0
        net.module_.eval()
        # a DataLoader draws its seed from torch's generator: keep the training's draws
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            for Xi, yi in net.get_iterator(dataset_valid, training=False):
                logits, hidden = net.infer(Xi)
                yi = to_tensor(yi, device=net.device).to(logits.dtype)
                total += float(net.criterion_(logits, yi, hidden)) * len(yi)
                rows += len(yi)
        start = total / rows  # what skorch's valid_loss is: the batch losses' weighted mean
        net.history.record("valid_loss_start", start)
        self.dynamic_threshold_ = self._calc_new_threshold(start)
        self.best_epoch_ = 0
        self.best_model_weights_ = deepcopy(net.module_.state_dict())


# what a file's fitted state must be (checked when loaded, as fit would have made it)
_STATE = {
    "blocks_": [BLOCKS], "word_blocks_": [BLOCKS], "label_names_": [NAMES],
    "n_labels_": [Interval(numbers.Integral, 1, None)],
    "n_features_in_": [Interval(numbers.Integral, 1, None)],
    "target_type_": [TARGET_TYPES], "best_epoch_": [COUNT, NONE],
    "label_statistics_": [Check(lambda v: isinstance(v, LabelStatistics),
                                "label statistics")],
}

# Each parameter's valid values (checked before every fit and on load).
_PARAMETERS = {
    "module": [_PART],
    "criterion": [_PART],
    "optimizer": [Check(lambda v: isinstance(v, type), "a torch optimizer class")],
    "lr": [Interval(numbers.Real, 0, None, closed="neither")],
    "max_epochs": [Interval(numbers.Integral, 0, None)],
    "batch_size": [Interval(numbers.Integral, 1, None),
                   Check(lambda v: isinstance(v, int) and v == -1, "-1 (one batch)")],
    "train_split": [NONE, Interval(numbers.Real, 0, 1, closed="neither"), CALLABLE],
    "patience": [NONE, Interval(numbers.Integral, 1, None)],
    "threshold": [Interval(numbers.Real, 0, 1), ARRAY_LIKE],
    "blocks": [Options(("auto", "single")), ARRAY_LIKE],
    "batch_order": [Options(("rows", "shuffled", "by_length"))],
    "mixed_precision": [BOOLEAN],
    "random_state": SEED,
    "device": [NONE, Check(lambda v: isinstance(v, (str, torch.device)), "a device name")],
    "verbose": [Interval(numbers.Integral, 0, None)],
}


class BiLSTMClassifier(VersionedState, NeuralNet):
    """Multi-label Bi-LSTM classifier over stacked embeddings, trained with :class:`HybridLoss`.

    X is a 2-D array of stacked blocks (one Bi-LSTM step per block) or a
    :class:`~skstack.sequences.WordSequences` (one step per word, the sentence-level blocks at
    the head); ``StackingEmbedder`` makes either.

    A skorch ``NeuralNet`` with multi-label defaults: ``predict_proba`` is (n, L) sigmoid
    probabilities, ``predict`` the 0/1 matrix at ``threshold``, ``score`` the Jaccard accuracy.
    A 1-D ``y`` works as in scikit-learn: binary (``predict_proba`` (n, 2)) or multiclass (a
    softmax head, cross-entropy), ``predict`` giving class labels, ``score`` the accuracy.
    ``module__*`` and ``criterion__*`` params reach the parts (``GridSearchCV`` searches them);
    for a tuned rule wrap the net: ``TunedThresholds(BiLSTMClassifier(...))``.

    Parameters
    ----------
    module : torch.nn.Module class, default=BiLSTMModule
        Built from the data's layout and labels plus ``module__*`` params (``residual``,
        ``projection_dim``, ``hidden_size``, ``num_layers``, ``dropout``; see
        :class:`BiLSTMModule`).
    criterion : default=HybridLoss
        Its weights as ``criterion__*`` params (see :class:`~skstack.HybridLoss`); a criterion
        with a ``fit`` method receives the training labels'
        :class:`~skstack.losses.LabelStatistics`.
    optimizer : default=torch.optim.AdamW
    lr : float, default=1e-3
    max_epochs : int, default=20
    batch_size : int, default=64
    train_split : None, float or callable, default=None
        ``None`` trains on every row; a float holds out that fraction (shuffled, not
        stratified, so label matrices work) for validation; a callable is skorch's.
    patience : int, default=None
        Early stopping on the validation loss (needs ``train_split``), keeping the best
        epoch's weights; with the residual path the start counts as epoch 0.
    threshold : float or array-like of shape (n_labels,), default=0.5
        Decision threshold(s) of :meth:`predict`, each in [0, 1].
    blocks : "auto", "single" or list of int or of (name, width), default="auto"
        The layout of X, one Bi-LSTM step per block: ``"auto"`` the one X carries (a plain
        array: one block, as ``"single"``); ``"single"`` or an explicit layout override it.
    batch_order : {"rows", "shuffled", "by_length"}, default="rows"
        Training batches in row order (skorch's default), shuffled each epoch, or shuffled
        then sorted by length in runs of 20 batches (word mode: little padding).
    mixed_precision : bool, default=False
        Run the module's forward pass (training and prediction) under bfloat16 autocast.
    random_state : int, default=None
        Seeds torch before initialisation and training: a fit is reproducible on CPU.
    device : str, default="cpu"
        ``"cuda"`` puts the module, the criterion's tensors and every batch on the GPU.
    verbose : int, default=0
        1 prints skorch's table of losses per epoch (bars: ``skstack.set_config``).
    **kwargs
        Any other skorch parameter (``callbacks``, ``iterator_train__shuffle``, ...).

    Attributes
    ----------
    blocks_ : list of (name, width)
    word_blocks_ : list of (name, width)
        The word-level layout in word mode; empty in block mode.
    label_names_ : list of str
        Column names of a DataFrame ``y``, else ``"0", "1", ...`` (a 1-D ``y``: its classes).
    label_statistics_ : LabelStatistics
        Counts and correlations of the training labels, given to the criterion.
    target_type_ : {"multilabel", "binary", "multiclass"}
    classes_ : ndarray
        Label indices ``0 .. n_labels - 1`` for a label matrix (what scikit-learn's scorers
        expect); the class labels of a 1-D ``y``.
    n_features_in_ : int
    best_epoch_ : int
        The epoch whose weights the net kept (the last, or the best with ``patience``); 0
        with the residual path: no epoch beat the meta-learner's own probabilities, which
        the net then predicts unchanged.

    Examples
    --------
    >>> import numpy as np
    >>> from skstack import BiLSTMClassifier
    >>> rng = np.random.default_rng(0)
    >>> X, Y = rng.normal(size=(64, 10)), rng.integers(0, 2, size=(64, 3))
    >>> net = BiLSTMClassifier(blocks=[6, 4], max_epochs=2, random_state=0).fit(X, Y)
    >>> net.predict(X).shape, net.blocks_
    ((64, 3), [('block0', 6), ('block1', 4)])
    """

    # what skstack.save keeps of a fitted net, besides its weights and history
    _portable_state: ClassVar[tuple[str, ...]] = (
        "blocks_", "word_blocks_", "label_names_", "n_labels_", "n_features_in_", "classes_",
        "target_type_", "label_statistics_", "best_epoch_")

    _state_constraints: ClassVar[dict[str, list]] = _STATE
    _parameter_constraints: ClassVar[dict[str, list]] = _PARAMETERS

    def __init__(
        self,
        module=BiLSTMModule,
        criterion=HybridLoss,
        optimizer=torch.optim.AdamW,
        lr: float = 1e-3,
        max_epochs: int = 20,
        batch_size: int = 64,
        train_split=None,
        patience: int | None = None,
        threshold=0.5,
        blocks="auto",
        batch_order: str = "rows",
        mixed_precision: bool = False,
        random_state: int | None = None,
        device: str = "cpu",
        verbose: int = 0,
        **kwargs,
    ):
        super().__init__(
            module, criterion, optimizer=optimizer, lr=lr, max_epochs=max_epochs,
            batch_size=batch_size, train_split=train_split, device=device, verbose=verbose,
            **kwargs,
        )
        self.patience = patience
        self.threshold = threshold
        self.blocks = blocks
        self.batch_order = batch_order
        self.mixed_precision = mixed_precision
        self.random_state = random_state

    def _check_state(self) -> None:
        """Restored state (``skstack.load``): the labels, their statistics and the threshold
        agree, as a fit leaves them."""
        owner = type(self).__name__
        for key in ("n_labels_", "target_type_", "blocks_", "n_features_in_"):
            if not hasattr(self, key):
                raise ValueError(f"{owner} is fitted but lacks the fitted attribute {key!r}.")
        check_fitted_target(owner, self)
        if getattr(self, "label_statistics_", None) is not None:
            self.label_statistics_.check(self.n_labels_, f"'label_statistics_' of {owner}")
        check_thresholds(self.threshold, self.n_labels_, owner)

    def _persist_state(self, writer) -> dict:
        return {"weights": writer.tensors(self.module_.state_dict()),
                "history": writer.data(self.history.to_list(), f"{type(self).__name__}.history")}

    def _restore_state(self, saved: dict, reader) -> None:
        from skorch.history import History

        self.device = reader.device(self.device, "net")  # a GPU-saved net loads on a CPU
        self.initialize()
        reader.load_weights(self.module_, saved["weights"], self.device)
        self.module_.eval()
        self.history_ = History(reader.value(saved.get("history") or []))

    @property
    def _default_callbacks(self):
        # skorch's defaults plus the epoch mean of each loss component, train and valid
        components = [
            (f"{prefix}_{name}", PassthroughScoring(name=f"{prefix}_{name}",
                                                    on_train=prefix == "train"))
            for prefix in ("train", "valid") for name in COMPONENTS
        ]
        defaults = super()._default_callbacks
        if getattr(self, "patience", None) is not None:  # set before skorch's __init__ asks
            components.append(("early_stopping", _EarlyStoppingFromStart(
                monitor="valid_loss", patience=self.patience, load_best=True)))
        if progress_enabled():  # the package-wide switch (skstack.set_config)
            components.append(("progress_bar", ProgressBar()))
        # print_log after the scores; the progress line after everything an epoch records
        return defaults[:-1] + components + defaults[-1:] + [
            ("progress_lines", _ProgressLines()), ("threads", _ThreadsForTheMachine())]

    def on_train_end(self, net, X=None, y=None, **kwargs):
        super().on_train_end(net, X=X, y=y, **kwargs)
        stopper = dict(self.callbacks_).get("early_stopping")
        self.best_epoch_ = len(self.history) if stopper is None else int(stopper.best_epoch_)

    def __sklearn_tags__(self):
        tags = multilabel_classifier_tags(super().__sklearn_tags__())
        tags.input_tags.allow_nan = False
        tags.non_deterministic = self.random_state is None
        return tags

    def _checked(self, X, n_features: int | None, min_samples: int = 0):
        if isinstance(X, WordSequences):
            if len(X) < min_samples:
                raise ValueError(f"Found {len(X)} texts while a minimum of {min_samples} is "
                                 "required.")
            return X.check_finite()
        return check_features(X, n_features, type(self).__name__, min_samples=min_samples)

    def _validate_data(self, X, y, reset: bool) -> tuple[np.ndarray | WordSequences,
                                                          np.ndarray]:
        """Check and cast the data; on ``reset`` also record its layout and label statistics
        (the one place the loss's label statistics come from)."""
        layout = block_layout(X)
        if not reset:
            check_same_layout(X, self.blocks, self.blocks_, self.word_blocks_)
        X = self._checked(X, None if reset else self.n_features_in_, min_samples=1)
        one_d = not reset and self.target_type_ != "multilabel"
        target = check_target(y, X.shape[0], self.classes_ if one_d else None)
        Y = target.Y
        if not reset and target.kind != self.target_type_:
            raise ValueError(f"y is a {target.kind} target; this net was fitted on a "
                             f"{self.target_type_} one.")
        if reset:
            words = isinstance(X, WordSequences)
            self.word_blocks_ = X.word_blocks if words else []
            sentence_width = X.sentence.shape[1] if words else X.shape[1]
            self.blocks_ = resolve_blocks(self.blocks, layout, sentence_width)
            self.n_features_in_ = X.shape[1]
            self.n_labels_ = Y.shape[1]
            self.target_type_ = target.kind
            self.classes_ = target.classes
            labels = target.classes[-self.n_labels_:]  # binary: the class its output scores
            self.label_names_ = target.names or [str(c) for c in labels]
            self.label_statistics_ = LabelStatistics.from_labels(Y)
            check_thresholds(self.threshold, self.n_labels_, type(self).__name__)
        elif Y.shape[1] != self.n_labels_:
            raise ValueError(f"y has {Y.shape[1]} labels; this net was fitted with "
                             f"{self.n_labels_}.")
        return X, np.asarray(Y)  # skorch gets a plain array

    @validates_params
    def fit(self, X, y, **fit_params):
        """Train on features ``X`` (n, d), any float, and a 0/1 label matrix ``y`` (n, L)
        (integers, bools or a DataFrame) or a 1-D target."""
        if self.patience is not None and self.train_split is None:
            raise ValueError(f"patience={self.patience} stops on the validation loss, and "
                             "train_split=None holds out no rows to compute it: set "
                             "train_split (e.g. 0.1) or patience=None.")
        if self.random_state is not None:
            torch.manual_seed(self.random_state)
        reset = not (self.warm_start and self.initialized_)
        X, Y = self._validate_data(X, y, reset=reset)
        if reset:
            self.initialize()
        with own_threads():
            return super().partial_fit(X, Y, **fit_params)

    @validates_params
    def partial_fit(self, X, y=None, classes=None, **fit_params):
        """Train further on ``(X, y)`` without re-initialising (see skorch)."""
        X, Y = self._validate_data(X, y, reset=not self.initialized_)
        with own_threads():
            return super().partial_fit(X, Y, classes, **fit_params)

    def initialize_module(self):
        kwargs = self.get_params_for("module")
        if self.word_blocks_:
            kwargs.setdefault("word_width", sum(w for _, w in self.word_blocks_))
        self.module_ = self.module(
            block_widths=[w for _, w in self.blocks_], n_labels=self.n_labels_,
            block_names=[name for name, _ in self.blocks_], **kwargs
        )
        return self

    def get_dataset(self, X, y=None):
        if isinstance(X, WordSequences):
            return _WordDataset(X, y)
        return super().get_dataset(X, y)

    def get_iterator(self, dataset, training=False):
        if not training or self.batch_order == "rows":
            return super().get_iterator(dataset, training)
        kwargs = self.get_params_for("iterator_train")
        batch_size = kwargs.pop("batch_size", self.batch_size)
        kwargs.pop("shuffle", None)  # the batch sampler shuffles
        sampler = _Batches.of(dataset, batch_size, by_length=self.batch_order == "by_length")
        return self.iterator_train(dataset, batch_sampler=sampler, **kwargs)

    def get_params_for(self, prefix: str) -> dict:
        params = super().get_params_for(prefix)
        if prefix in ("iterator_train", "iterator_valid"):
            params.setdefault("collate_fn", collate_words)  # word mode pads its batches
        return params

    def initialize_criterion(self):
        super().initialize_criterion()
        stats = getattr(self, "label_statistics_", None)
        if stats is not None and hasattr(self.criterion_, "fit"):
            # fit creates the criterion's tensors; move them where the module is
            self.criterion_ = self.criterion_.fit(stats).to(self.device)
        return self

    def get_split_datasets(self, X, y=None, **fit_params):
        split = self.train_split
        if isinstance(split, float):
            split = ValidSplit(split, stratified=False, random_state=self.random_state)
        dataset = self.get_dataset(X, y)
        if not split:
            return dataset, None
        return split(dataset, y, **fit_params)

    def infer(self, x, **fit_params):
        device_type = torch.device(self.device).type
        with torch.autocast(device_type, dtype=torch.bfloat16, enabled=self.mixed_precision):
            logits, hidden = super().infer(x, **fit_params)
        return logits.float(), hidden.float()

    def get_loss(self, y_pred, y_true, X=None, training=False):
        logits, hidden = y_pred if isinstance(y_pred, tuple) else (y_pred, None)
        y_true = to_tensor(y_true, device=self.device).to(logits.dtype)
        if self.target_type_ == "multiclass":  # one class per row: a softmax head
            return torch.nn.functional.cross_entropy(logits, y_true.argmax(dim=1))
        if isinstance(self.criterion_, HybridLoss):
            loss = self.criterion_(logits, y_true, hidden)
            prefix = "train" if training else "valid"
            for name, value in self.criterion_.last_components.items():
                self.history.record_batch(f"{prefix}_{name}", value)
            return loss
        return self.criterion_(logits, y_true)

    def _get_predict_nonlinearity(self):
        if self.predict_nonlinearity == "auto":
            if self.target_type_ == "multiclass":
                return lambda logits: torch.softmax(logits, dim=-1)
            return torch.sigmoid
        return super()._get_predict_nonlinearity()

    def predict_proba(self, X) -> np.ndarray:
        """Label probabilities, shape (n_samples, n_labels); for a 1-D ``y``, class
        probabilities of shape (n_samples, n_classes)."""
        self.check_is_fitted()
        check_same_layout(X, self.blocks, self.blocks_, self.word_blocks_)
        # one thread while the cores are crowded, unless the net's training rule is off
        adapt = any(name == "threads" for name, _ in getattr(self, "callbacks_", []))
        with prediction_threads(adapt):
            proba = super().predict_proba(self._checked(X, self.n_features_in_))
        return class_proba(proba, self.target_type_)

    def predict(self, X) -> np.ndarray:
        """0/1 label matrix (n_samples, n_labels): probabilities at or above ``threshold``.
        For a 1-D ``y``: class labels (binary: the second class at or above ``threshold``)."""
        proba = self.predict_proba(X)[:, -self.n_labels_:]  # binary: P(second class)
        thresholds = check_thresholds(self.threshold, self.n_labels_, type(self).__name__)
        # the rule decide applies, without checking again what was just checked
        return class_predictions(proba, _decide(proba, thresholds, 0, None), self.classes_,
                                 self.target_type_)

    def score(self, X, y) -> float:
        """Jaccard accuracy (SemEval-2018 E-c definition) of :meth:`predict` against a label
        matrix ``y``; the accuracy against a 1-D ``y``."""
        return target_score(y, self.predict(X), self.target_type_)
