"""HybridLoss: a weighted sum of terms: class-weighted BCE, the ZLPR loss, a label-correlation
term and a supervised contrastive term.

The paper names the three components but its full text is not available to us; the exact
formulas below are our definitions (see ``docs/method.md``). Each term has one name used
everywhere: the ``<name>_weight`` parameter, the ``<name>_term`` method, the key in
:attr:`HybridLoss.last_components` and the ``train_<name>``/``valid_<name>`` history columns
of ``BiLSTMClassifier``. A new term is one weight, one method and one entry in
:data:`COMPONENTS`, all in this module.

Import rule: numpy, torch, ``skstack._validation`` and ``skstack.metrics`` only.
"""

from __future__ import annotations

import numbers
import warnings
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from skstack._validation import (
    ARRAY_LIKE,
    NONE,
    Interval,
    Options,
    check_label_matrix,
    check_params,
    parameter_error,
)
from skstack.metrics import jaccard_from_counts

COMPONENTS = ("bce", "zlpr", "corr", "contrastive")
POS_WEIGHTS = ("balanced", "sqrt")
CORR_FORMS = ("pearson", "pairwise")


@dataclass(frozen=True)
class LabelStatistics:
    """What the loss needs to know of the training labels: counts and correlations.

    Computed once from the label matrix (``from_labels``); ``BiLSTMClassifier`` keeps it as
    fitted state so that its criterion can be re-created (``set_params``) without the data.
    """

    n_samples: int
    positives: np.ndarray  # (n_labels,) positive count of each label
    correlation: np.ndarray  # (n_labels, n_labels) Pearson correlation, zero diagonal

    def check(self, n_labels: int, what: str) -> None:
        """Refuse statistics that do not describe ``n_labels`` labels (state a file restored:
        finite counts of a positive number of rows, an (L, L) correlation matrix)."""
        n = n_labels
        if not (np.shape(self.positives) == (n,) and np.shape(self.correlation) == (n, n)
                and np.isfinite(self.positives).all() and np.isfinite(self.correlation).all()
                and isinstance(self.n_samples, numbers.Integral) and self.n_samples > 0):
            raise ValueError(f"the fitted attribute {what} does not describe {n} labels "
                             f"(finite counts and an {n} x {n} correlation matrix).")

    @classmethod
    def from_labels(cls, Y) -> LabelStatistics:
        Y, _ = check_label_matrix(Y)
        return cls(Y.shape[0], Y.sum(axis=0).astype(np.float64), label_correlation(Y))


def positive_weight(stats: LabelStatistics, rule: str, max_weight: float = 100.0) -> np.ndarray:
    """Per-label positive weight from the label counts, clipped to ``max_weight``.

    ``"balanced"``: ``n_negative / n_positive``; ``"sqrt"``: its square root (a milder
    push toward rare labels). A label without positives gets ``max_weight`` and a warning
    instead of ``inf``; a label without negatives gets 1 (no reweighting) and a warning.
    """
    pos = stats.positives
    neg = stats.n_samples - pos
    for mask, what, value in ((pos == 0, "no positive", max_weight), (neg == 0, "no negative", 1)):
        if mask.any():
            warnings.warn(
                f"Labels {np.flatnonzero(mask).tolist()} have {what} example in the training "
                f"data; their positive weight is set to {value}.",
                UserWarning,
                stacklevel=3,
            )
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = neg / pos
    weight = np.sqrt(ratio) if rule == "sqrt" else ratio
    weight = np.where(pos == 0, max_weight, np.where(neg == 0, 1.0, weight))
    return np.clip(weight, 0.0, max_weight).astype(np.float32)


def label_correlation(Y: np.ndarray) -> np.ndarray:
    """Pearson correlation between label columns, zero on the diagonal and for constant labels."""
    Y = np.asarray(Y, dtype=np.float64)
    centred = Y - Y.mean(axis=0)
    std = np.sqrt((centred**2).mean(axis=0))
    with np.errstate(divide="ignore", invalid="ignore"):
        corr = (centred.T @ centred) / Y.shape[0] / np.outer(std, std)
    corr = np.nan_to_num(corr, nan=0.0, posinf=0.0, neginf=0.0)
    np.fill_diagonal(corr, 0.0)
    return corr.astype(np.float32)


def label_jaccard(targets: torch.Tensor) -> torch.Tensor:
    """Pairwise Jaccard similarity of label sets; two empty sets count as identical (1)."""
    inter = targets @ targets.T
    sizes = targets.sum(dim=1)
    return jaccard_from_counts(inter, sizes[:, None] + sizes[None, :] - inter)


class HybridLoss(torch.nn.Module):
    """``L = bce_weight * BCE_w + zlpr_weight * L_zlpr + corr_weight * L_corr
    + contrastive_weight * L_contrastive``.

    Parameters
    ----------
    pos_weight : "balanced", "sqrt", array-like of shape (n_labels,) or None, \
            default="balanced"
        Positive-class weight of each label in the BCE term. ``"balanced"`` uses
        ``n_negative / n_positive`` of the training labels (see :meth:`fit`), ``"sqrt"`` its
        square root, ``None`` no weighting.
    corr_weight : float, default=0.1
        Weight of the label-correlation term.
    corr_form : {"pearson", "pairwise"}, default="pearson"
        ``"pearson"``: probabilities of labels that co-occur in the training data are pulled
        together, those of labels that exclude each other kept from firing together.
        ``"pairwise"`` (after SpanEmo, Alhuzali & Ananiadou, EACL 2021): every negative label
        scoring above a positive label of the same text is penalised.
    contrastive_weight : float, default=0.1
        Weight of the supervised contrastive term.
    temperature : float, default=0.1
        Temperature of the contrastive term (> 0).
    max_pos_weight : float, default=100.0
        Upper bound of a computed positive weight (rare or absent labels).
    bce_weight : float, default=1.0
        Weight of the (class-weighted) binary cross-entropy.
    zlpr_weight : float, default=0.0
        Weight of the ZLPR loss (Su et al., arXiv:2208.02955), a multi-label softmax whose
        natural threshold is logit 0 (probability 0.5). ``bce_weight=0, zlpr_weight=1`` uses
        it instead of BCE.

    Notes
    -----
    With logits ``z`` (n, L), probabilities ``p = sigmoid(z)``, targets ``y`` and hidden
    vectors ``h`` (n, d):

    - ``BCE_w = mean_{i,l} -[w_l y_il log p_il + (1 - y_il) log(1 - p_il)]``
    - ``L_zlpr = mean_i [log(1 + sum_{l: y_il=0} exp(z_il)) + log(1 + sum_{l: y_il=1}
      exp(-z_il))]``
    - ``pearson``: ``L_corr = mean_i sum_{j<k} (C+_jk (p_ij - p_ik)^2 + C-_jk p_ij p_ik) /
      sum_{j<k} |C_jk|`` with ``C`` the Pearson correlation of the training labels,
      ``C+ = max(C, 0)`` and ``C- = max(-C, 0)``: labels that co-occur are pushed to similar
      probabilities, labels that exclude each other are kept from firing together.
    - ``pairwise``: ``L_corr = mean_{i in B} mean_{p in P_i, q in N_i} exp(p_iq - p_ip)`` with
      ``P_i``/``N_i`` the positive/negative labels of text ``i`` and ``B`` the texts with both.
    - ``L_contrastive = mean_{i in A} [-sum_{j!=i} a_ij log softmax_{k!=i}(s_ik)_j /
      sum_{j!=i} a_ij]`` with ``s_ij = cos(h_i, h_j) / temperature``, ``a_ij`` the Jaccard
      similarity of the label sets of ``i`` and ``j``, and ``A`` the anchors with some
      ``a_ij > 0``.

    After each call, :attr:`last_components` holds the unweighted terms as floats, keyed by
    the names in :data:`COMPONENTS`.

    Examples
    --------
    >>> import torch, numpy as np
    >>> from skstack import HybridLoss
    >>> Y = np.array([[1, 0, 1], [0, 1, 0], [1, 0, 1], [0, 1, 1]])
    >>> loss = HybridLoss(corr_weight=0.5, contrastive_weight=0.5).fit(Y)
    >>> value = loss(torch.zeros(4, 3), torch.tensor(Y, dtype=torch.float32), torch.randn(4, 8))
    >>> sorted(loss.last_components)
    ['bce', 'contrastive', 'corr', 'zlpr']
    """

    _parameter_constraints: ClassVar[dict[str, list]] = {
        "pos_weight": [Options(POS_WEIGHTS), ARRAY_LIKE, NONE],
        "corr_weight": [Interval(numbers.Real, 0, None)],
        "contrastive_weight": [Interval(numbers.Real, 0, None)],
        "temperature": [Interval(numbers.Real, 0, None, closed="neither")],
        "max_pos_weight": [Interval(numbers.Real, 0, None, closed="neither")],
        "bce_weight": [Interval(numbers.Real, 0, None)],
        "zlpr_weight": [Interval(numbers.Real, 0, None)],
        "corr_form": [Options(CORR_FORMS)],
    }

    def __init__(
        self,
        pos_weight: str | np.ndarray | None = "balanced",
        corr_weight: float = 0.1,
        contrastive_weight: float = 0.1,
        temperature: float = 0.1,
        max_pos_weight: float = 100.0,
        bce_weight: float = 1.0,
        zlpr_weight: float = 0.0,
        corr_form: str = "pearson",
    ):
        super().__init__()
        # A torch module is built by skorch inside BiLSTMClassifier.fit, so checking here
        # reports a bad ``criterion__*`` value when the net is fitted.
        params = {"pos_weight": pos_weight, "corr_weight": corr_weight,
                  "contrastive_weight": contrastive_weight, "temperature": temperature,
                  "max_pos_weight": max_pos_weight, "bce_weight": bce_weight,
                  "zlpr_weight": zlpr_weight, "corr_form": corr_form}
        check_params(type(self).__name__, self._parameter_constraints, params)
        if not any(params[f"{name}_weight"] for name in COMPONENTS):
            raise parameter_error(type(self).__name__, "bce_weight",
                                  "> 0 when every other term's weight is 0", bce_weight)
        self.pos_weight = pos_weight
        self.corr_weight = corr_weight
        self.contrastive_weight = contrastive_weight
        self.temperature = temperature
        self.max_pos_weight = max_pos_weight
        self.bce_weight = bce_weight
        self.zlpr_weight = zlpr_weight
        self.corr_form = corr_form
        self.register_buffer("pos_weight_", None)
        self.register_buffer("correlation_", None)
        self.last_components: dict[str, float] = {}

    def fit(self, Y) -> HybridLoss:
        """Set the label statistics (positive weights, correlation) of the training labels.

        Parameters
        ----------
        Y : array-like of shape (n_samples, n_labels) or LabelStatistics
            The 0/1 training labels, or their statistics.
        """
        stats = Y if isinstance(Y, LabelStatistics) else LabelStatistics.from_labels(Y)
        n_labels = len(stats.positives)
        if isinstance(self.pos_weight, str):
            weight = positive_weight(stats, self.pos_weight, self.max_pos_weight)
        elif self.pos_weight is None:
            weight = None
        else:
            weight = np.asarray(self.pos_weight, dtype=np.float32)
            if weight.shape != (n_labels,) or not np.all(np.isfinite(weight)) or (weight < 0).any():
                raise parameter_error(type(self).__name__, "pos_weight",
                                      f"finite, non-negative and of shape ({n_labels},)",
                                      self.pos_weight)
        device = self._device()
        self.pos_weight_ = None if weight is None else torch.as_tensor(weight, device=device)
        self.correlation_ = torch.as_tensor(stats.correlation, device=device)
        return self

    def _device(self) -> torch.device:
        for buffer in (self.pos_weight_, self.correlation_):
            if buffer is not None:
                return buffer.device
        return torch.device("cpu")

    def forward(
        self, logits: torch.Tensor, targets: torch.Tensor, hidden: torch.Tensor | None = None
    ) -> torch.Tensor:
        targets = targets.to(logits.dtype)
        total = torch.zeros((), device=logits.device)
        components = {}
        for name in COMPONENTS:
            weight = getattr(self, f"{name}_weight")
            value = torch.zeros((), device=logits.device)
            if weight:
                value = getattr(self, f"{name}_term")(logits, targets, hidden)
                total = total + weight * value
            components[name] = value.item()
        self.last_components = components
        return total

    def bce_term(self, logits: torch.Tensor, targets: torch.Tensor, hidden=None) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(logits, targets, pos_weight=self.pos_weight_)

    def zlpr_term(self, logits: torch.Tensor, targets: torch.Tensor, hidden=None) -> torch.Tensor:
        zero = torch.zeros_like(logits[:, :1])
        negatives = logits.masked_fill(targets > 0, float("-inf"))
        positives = (-logits).masked_fill(targets <= 0, float("-inf"))
        return (torch.logsumexp(torch.cat([zero, negatives], dim=1), dim=1)
                + torch.logsumexp(torch.cat([zero, positives], dim=1), dim=1)).mean()

    def corr_term(self, logits: torch.Tensor, targets: torch.Tensor, hidden=None) -> torch.Tensor:
        if self.corr_form == "pairwise":
            return self._pairwise_corr(torch.sigmoid(logits), targets)
        if self.correlation_ is None:
            raise RuntimeError("Call HybridLoss.fit(Y) before using the correlation term.")
        probs = torch.sigmoid(logits)
        corr = self.correlation_.to(probs.dtype)
        upper = torch.triu(torch.ones_like(corr), diagonal=1)
        positive, negative = corr.clamp(min=0) * upper, (-corr).clamp(min=0) * upper
        scale = (positive + negative).sum()
        if scale == 0:
            return torch.zeros((), device=probs.device, dtype=probs.dtype)
        diff = (probs[:, :, None] - probs[:, None, :]) ** 2
        joint = probs[:, :, None] * probs[:, None, :]
        per_example = (positive * diff + negative * joint).sum(dim=(1, 2))
        return per_example.mean() / scale

    @staticmethod
    def _pairwise_corr(probs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        pos, neg = targets > 0, targets <= 0
        # (n, q, p): exp(p_q - p_p) for every negative q and positive p of a text
        gaps = torch.exp(probs[:, :, None] - probs[:, None, :])
        pairs = (neg[:, :, None] & pos[:, None, :]).to(probs.dtype)
        n_pairs = pairs.sum(dim=(1, 2))
        both = n_pairs > 0
        if not both.any():
            return torch.zeros((), device=probs.device, dtype=probs.dtype)
        return ((gaps * pairs).sum(dim=(1, 2))[both] / n_pairs[both]).mean()

    def contrastive_term(self, logits, targets: torch.Tensor,
                         hidden: torch.Tensor | None) -> torch.Tensor:
        if hidden is None:
            raise ValueError("The contrastive term needs the hidden representation.")
        n = hidden.shape[0]
        if n < 2:
            return torch.zeros((), device=hidden.device, dtype=hidden.dtype)
        z = F.normalize(hidden.float(), dim=-1)
        sims = z @ z.T / self.temperature
        eye = torch.eye(n, dtype=torch.bool, device=hidden.device)
        log_prob = sims.masked_fill(eye, float("-inf")).log_softmax(dim=1)
        affinity = label_jaccard(targets.float()).masked_fill(eye, 0.0)
        mass = affinity.sum(dim=1)
        anchors = mass > 0
        if not anchors.any():
            return torch.zeros((), device=hidden.device, dtype=hidden.dtype)
        per_anchor = -(affinity * log_prob.masked_fill(eye, 0.0)).sum(dim=1)
        return (per_anchor[anchors] / mass[anchors]).mean()
