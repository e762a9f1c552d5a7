"""BiLSTMClassifier: a skorch net for multi-label targets over stacked embedding blocks.

Each block of the stacked representation (one encoder's vector, the meta-learner's
probabilities, ...) is projected to a common width and becomes one step of a sequence that a
bidirectional LSTM reads; a fully connected head turns the final states into label logits.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from sklearn.utils import ClassifierTags
from sklearn.utils.validation import check_is_fitted
from skorch import NeuralNet
from skorch.callbacks import PassthroughScoring
from skorch.dataset import ValidSplit
from skorch.utils import to_tensor

from skstack._validation import check_features, check_label_matrix
from skstack.blocks import block_layout, check_blocks
from skstack.losses import COMPONENTS, HybridLoss
from skstack.metrics import jaccard_accuracy
from skstack.thresholds import OBJECTIVES, decide, tune_thresholds


def _dataset_labels(dataset, Y: np.ndarray) -> np.ndarray:
    """The label rows of a validation dataset: a ``Subset`` of the training data (a float
    ``train_split``, skorch's ``ValidSplit``) or a dataset with ``y`` (``predefined_split``)."""
    if dataset is None or len(dataset) == 0:
        raise ValueError("threshold='tuned' needs a non-empty validation split.")
    if isinstance(dataset, torch.utils.data.Subset):
        return Y[np.asarray(dataset.indices)]
    if getattr(dataset, "y", None) is not None:
        labels, _ = check_label_matrix(dataset.y, len(dataset))
        return labels
    raise ValueError(f"Cannot read the labels of a validation dataset of type "
                     f"{type(dataset).__name__}; use a float train_split or predefined_split.")


class BiLSTMModule(torch.nn.Module):
    """Blocks -> per-block projection -> Bi-LSTM -> dropout -> linear head.

    ``forward`` returns ``(logits, hidden)``: the label logits and the Bi-LSTM's final
    forward and backward states (the representation the contrastive loss works on).
    """

    def __init__(
        self,
        block_widths: Sequence[int],
        n_labels: int,
        projection_dim: int = 128,
        hidden_size: int = 128,
        num_layers: int = 1,
        dropout: float = 0.2,
    ):
        super().__init__()
        self.block_widths = list(block_widths)
        self.projections = torch.nn.ModuleList(
            torch.nn.Linear(w, projection_dim) for w in self.block_widths
        )
        self.norm = torch.nn.LayerNorm(projection_dim)
        self.lstm = torch.nn.LSTM(
            projection_dim, hidden_size, num_layers=num_layers, batch_first=True,
            bidirectional=True, dropout=dropout if num_layers > 1 else 0.0,
        )
        self.dropout = torch.nn.Dropout(dropout)
        self.head = torch.nn.Linear(2 * hidden_size, n_labels)

    def forward(self, X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        parts = torch.split(X, self.block_widths, dim=1)
        steps = torch.stack([proj(p) for proj, p in zip(self.projections, parts,
                                                         strict=True)], dim=1)
        _, (h_n, _) = self.lstm(self.norm(steps))
        hidden = torch.cat([h_n[-2], h_n[-1]], dim=1)  # top layer, both directions
        return self.head(self.dropout(hidden)), hidden


class BiLSTMClassifier(NeuralNet):
    """Multi-label Bi-LSTM classifier over stacked blocks, trained with :class:`HybridLoss`.

    A skorch ``NeuralNet`` with multi-label defaults: ``predict_proba`` returns (n, L) sigmoid
    probabilities, ``predict`` the (n, L) 0/1 matrix, ``score`` the Jaccard accuracy. Module
    and loss settings reach the parts as ``module__hidden_size``,
    ``criterion__corr_weight`` and so on, so ``GridSearchCV`` can search them.

    Parameters
    ----------
    module : torch.nn.Module class, default=BiLSTMModule
        Built with ``block_widths`` and ``n_labels`` from the data plus ``module__*`` params
        (``projection_dim``, ``hidden_size``, ``num_layers``, ``dropout``).
    criterion : default=HybridLoss
        ``criterion__pos_weight``, ``criterion__corr_weight``,
        ``criterion__contrastive_weight``, ``criterion__temperature``. Its label statistics
        are computed from ``y`` in :meth:`fit`.
    optimizer : default=torch.optim.AdamW
    lr : float, default=1e-3
    max_epochs : int, default=20
    batch_size : int, default=64
    train_split : None, float or callable, default=None
        ``None`` trains on every row. A float holds out that fraction (shuffled, not
        stratified, so label matrices work) for validation scores, early stopping callbacks
        and ``threshold="tuned"``; a callable is used as skorch's ``train_split``.
    threshold : float, array-like of shape (n_labels,) or "tuned", default=0.5
        Decision threshold(s) of :meth:`predict`. ``"tuned"`` picks thresholds on the
        validation split with :func:`skstack.thresholds.tune_thresholds`.
    threshold_objective : {"macro_f1", "micro_f1", "jaccard"}, default="macro_f1"
        What ``"tuned"`` thresholds maximise.
    threshold_per_label : bool, default=True
        Per-label thresholds (``True``) or one shared threshold.
    threshold_shrinkage : float, default=0.0
        Pseudo-positives pulling per-label thresholds toward the shared one.
    min_labels : int, default=0
        Every row gets at least this many labels (its top-scoring ones).
    max_labels : int, default=None
        No row gets more labels than this.
    blocks : list of int or of (name, width), default=None
        The block layout of X. ``None`` takes the layout carried by X (the output of
        ``StackingEmbedder``) or treats X as one block.
    mixed_precision : bool, default=False
        Run the module under bfloat16 autocast.
    random_state : int, default=None
        Seeds torch before initialisation and training: a fit is reproducible on CPU.
    device : str, default="cpu"
        ``"cuda"`` puts the module, the criterion's tensors and every batch on the GPU.
    verbose : int, default=0
    **kwargs
        Any other skorch parameter (``callbacks``, ``iterator_train__shuffle``, ...).

    Attributes
    ----------
    thresholds_ : ndarray of shape (n_labels,)
    threshold_objective_ : str or None
        The objective the thresholds were tuned for (``None`` when given by the user).
    blocks_ : list of (name, width)
    label_names_ : list of str
        Column names of a DataFrame ``y``, else ``"0", "1", ...``.
    classes_ : ndarray of shape (n_labels,)
        Label indices ``0 .. n_labels - 1`` (what scikit-learn's scorers expect).
    n_features_in_ : int

    Examples
    --------
    >>> import numpy as np
    >>> from skstack import BiLSTMClassifier
    >>> rng = np.random.default_rng(0)
    >>> X, Y = rng.normal(size=(64, 10)), rng.integers(0, 2, size=(64, 3))
    >>> net = BiLSTMClassifier(max_epochs=2, random_state=0).fit(X, Y)
    >>> net.predict(X).shape
    (64, 3)
    """

    def __init__(
        self,
        module=BiLSTMModule,
        criterion=HybridLoss,
        optimizer=torch.optim.AdamW,
        lr: float = 1e-3,
        max_epochs: int = 20,
        batch_size: int = 64,
        train_split=None,
        threshold=0.5,
        threshold_objective: str = "macro_f1",
        threshold_per_label: bool = True,
        threshold_shrinkage: float = 0.0,
        min_labels: int = 0,
        max_labels: int | None = None,
        blocks=None,
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
        self.threshold = threshold
        self.threshold_objective = threshold_objective
        self.threshold_per_label = threshold_per_label
        self.threshold_shrinkage = threshold_shrinkage
        self.min_labels = min_labels
        self.max_labels = max_labels
        self.blocks = blocks
        self.mixed_precision = mixed_precision
        self.random_state = random_state

    @property
    def _default_callbacks(self):
        # skorch's defaults plus the epoch mean of each loss component, train and valid
        components = [
            (f"{prefix}_{name}", PassthroughScoring(name=f"{prefix}_{name}",
                                                    on_train=prefix == "train"))
            for prefix in ("train", "valid") for name in COMPONENTS
        ]
        defaults = super()._default_callbacks
        return defaults[:-1] + components + defaults[-1:]  # print_log stays last

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.estimator_type = "classifier"
        tags.classifier_tags = ClassifierTags(multi_class=False, multi_label=True)
        tags.target_tags.required = True
        tags.target_tags.two_d_labels = True
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = False
        tags.input_tags.allow_nan = False
        tags.non_deterministic = self.random_state is None
        return tags

    def _check_params(self) -> None:
        if self.threshold_objective not in OBJECTIVES:
            raise ValueError(
                f"threshold_objective must be one of {OBJECTIVES}, got "
                f"{self.threshold_objective!r}."
            )
        if isinstance(self.threshold, str):
            if self.threshold != "tuned":
                raise ValueError(
                    f"threshold must be a float, an array or 'tuned', got {self.threshold!r}."
                )
            if not self.train_split:
                raise ValueError(
                    "threshold='tuned' chooses thresholds on a validation split; set "
                    "train_split, e.g. train_split=0.1."
                )

    def _resolve_blocks(self, carried, n_features: int) -> list[tuple[str, int]]:
        if self.blocks is not None:
            return check_blocks(self.blocks, n_features)
        return carried if carried is not None else [("X", n_features)]

    def fit(self, X, y, **fit_params):
        """Train on features ``X`` (n, d) and a 0/1 label matrix ``y`` (n, L).

        ``X`` may be float64 and ``y`` integer, bool or a DataFrame; both are cast here.
        """
        self._check_params()
        if self.random_state is not None:
            torch.manual_seed(self.random_state)
        X, Y = self._setup(X, y, reset=not (self.warm_start and self.initialized_))
        try:
            return super().fit(X, Y, **fit_params)
        finally:
            self.__dict__.pop("_fit_labels_", None)

    def partial_fit(self, X, y=None, classes=None, **fit_params):
        """Train further on ``(X, y)`` without re-initialising (see skorch)."""
        X, Y = self._setup(X, y, reset=not self.initialized_)
        super().partial_fit(X, Y, classes, **fit_params)
        self._fit_thresholds(Y)
        return self

    def _setup(self, X, y, reset: bool) -> tuple[np.ndarray, np.ndarray]:
        """Validate and cast the data; on ``reset`` also record its layout and labels."""
        layout = block_layout(X)
        X = check_features(X, None if reset else self.n_features_in_, type(self).__name__,
                           min_samples=1)
        Y, names = check_label_matrix(y, X.shape[0])
        if reset:
            self.blocks_ = self._resolve_blocks(layout, X.shape[1])
            self.n_features_in_ = X.shape[1]
            self.n_labels_ = Y.shape[1]
            self.label_names_ = names or [str(i) for i in range(self.n_labels_)]
            self.classes_ = np.arange(self.n_labels_)  # label indices, as MLPClassifier has
            # Read by initialize_criterion. Private attributes end in "_": skorch takes every
            # other attribute for a constructor parameter.
            self._fit_labels_ = Y
        elif Y.shape[1] != self.n_labels_:
            raise ValueError(f"y has {Y.shape[1]} labels; this net was fitted with "
                             f"{self.n_labels_}.")
        return X, Y

    def initialize_module(self):
        kwargs = self.get_params_for("module")
        self.module_ = self.module(
            block_widths=[w for _, w in self.blocks_], n_labels=self.n_labels_, **kwargs
        )
        return self

    def initialize_criterion(self):
        super().initialize_criterion()
        labels = getattr(self, "_fit_labels_", None)
        if labels is not None and hasattr(self.criterion_, "fit"):
            self.criterion_.fit(labels)
        return self

    def get_split_datasets(self, X, y=None, **fit_params):
        split = self.train_split
        if isinstance(split, float):
            split = ValidSplit(split, stratified=False, random_state=self.random_state)
        dataset = self.get_dataset(X, y)
        if not split:
            return dataset, None
        train, valid = split(dataset, y, **fit_params)
        self._valid_data_ = valid  # kept until the thresholds are tuned on it
        return train, valid

    def _fit_thresholds(self, Y: np.ndarray) -> None:
        valid = self.__dict__.pop("_valid_data_", None)
        self.threshold_objective_ = None
        if isinstance(self.threshold, str):  # "tuned", checked in _check_params
            Y_valid = _dataset_labels(valid, Y)
            self.thresholds_ = tune_thresholds(
                Y_valid, super().predict_proba(valid), self.threshold_objective,
                per_label=self.threshold_per_label, min_labels=self.min_labels,
                max_labels=self.max_labels, shrinkage=self.threshold_shrinkage,
            )
            self.threshold_objective_ = self.threshold_objective
            return
        thresholds = np.broadcast_to(np.asarray(self.threshold, dtype=np.float64),
                                     (self.n_labels_,)).copy()
        self.thresholds_ = thresholds

    def infer(self, x, **fit_params):
        device_type = torch.device(self.device).type
        with torch.autocast(device_type, dtype=torch.bfloat16, enabled=self.mixed_precision):
            logits, hidden = super().infer(x, **fit_params)
        return logits.float(), hidden.float()

    def get_loss(self, y_pred, y_true, X=None, training=False):
        logits, hidden = y_pred if isinstance(y_pred, tuple) else (y_pred, None)
        y_true = to_tensor(y_true, device=self.device).to(logits.dtype)
        if isinstance(self.criterion_, HybridLoss):
            loss = self.criterion_(logits, y_true, hidden)
            prefix = "train" if training else "valid"
            for name, value in self.criterion_.last_components.items():
                self.history.record_batch(f"{prefix}_{name}", value)
            return loss
        return self.criterion_(logits, y_true)

    def _get_predict_nonlinearity(self):
        if self.predict_nonlinearity == "auto":
            return torch.sigmoid
        return super()._get_predict_nonlinearity()

    def predict_proba(self, X) -> np.ndarray:
        """Label probabilities, shape (n_samples, n_labels)."""
        check_is_fitted(self, "thresholds_")
        return super().predict_proba(check_features(X, self.n_features_in_, type(self).__name__))

    def predict(self, X) -> np.ndarray:
        """0/1 label matrix (n_samples, n_labels) from ``thresholds_`` and the label limits."""
        return decide(self.predict_proba(X), self.thresholds_, self.min_labels, self.max_labels)

    def score(self, X, y) -> float:
        """Jaccard accuracy (SemEval-2018 E-c definition) of :meth:`predict` against ``y``."""
        return jaccard_accuracy(y, self.predict(X))
