"""HybridLoss: class-weighted BCE + a label-correlation term + a supervised contrastive term.

The paper names the three components but its full text is not available to us; the exact
formulas below are our definitions (see ``docs/hybrid_loss.md``).
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
import torch.nn.functional as F

COMPONENTS = ("bce", "corr", "con")


def balanced_pos_weight(Y: np.ndarray, max_weight: float = 100.0) -> np.ndarray:
    """Per-label positive weight ``n_negative / n_positive``, clipped to ``max_weight``.

    A label without positives gets ``max_weight`` and a warning instead of ``inf``.
    """
    Y = np.asarray(Y, dtype=np.float64)
    pos = Y.sum(axis=0)
    neg = Y.shape[0] - pos
    missing = np.flatnonzero(pos == 0)
    if missing.size:
        warnings.warn(
            f"Labels {missing.tolist()} have no positive example in the training data; their "
            f"positive weight is set to max_pos_weight={max_weight}.",
            UserWarning,
            stacklevel=3,
        )
    with np.errstate(divide="ignore"):
        weight = np.where(pos > 0, neg / np.maximum(pos, 1), max_weight)
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
    union = sizes[:, None] + sizes[None, :] - inter
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))


class HybridLoss(torch.nn.Module):
    """``L = BCE_w + corr_weight * L_corr + contrastive_weight * L_con``.

    Parameters
    ----------
    pos_weight : "balanced", array-like of shape (n_labels,) or None, default="balanced"
        Positive-class weight of each label in the BCE term. ``"balanced"`` uses
        ``n_negative / n_positive`` of the training labels (see :meth:`fit`).
    corr_weight : float, default=0.1
        Weight of the label-correlation term.
    contrastive_weight : float, default=0.1
        Weight of the supervised contrastive term.
    temperature : float, default=0.1
        Temperature of the contrastive term.
    max_pos_weight : float, default=100.0
        Upper bound of a balanced positive weight (rare or absent labels).

    Notes
    -----
    With logits ``z`` (n, L), probabilities ``p = sigmoid(z)``, targets ``y`` and hidden
    vectors ``h`` (n, d):

    - ``BCE_w = mean_{i,l} -[w_l y_il log p_il + (1 - y_il) log(1 - p_il)]``
    - ``L_corr = mean_i sum_{j<k} (C+_jk (p_ij - p_ik)^2 + C-_jk p_ij p_ik) / sum_{j<k} |C_jk|``
      with ``C`` the Pearson correlation of the training labels, ``C+ = max(C, 0)`` and
      ``C- = max(-C, 0)``: labels that co-occur are pushed to similar probabilities, labels
      that exclude each other are kept from firing together.
    - ``L_con = mean_{i in A} [-sum_{j!=i} a_ij log softmax_{k!=i}(s_ik)_j / sum_{j!=i} a_ij]``
      with ``s_ij = cos(h_i, h_j) / temperature``, ``a_ij`` the Jaccard similarity of the label
      sets of ``i`` and ``j``, and ``A`` the anchors with some ``a_ij > 0``.

    After each call, :attr:`last_components` holds the three unweighted terms as floats.

    Examples
    --------
    >>> import torch, numpy as np
    >>> from skstack.losses import HybridLoss
    >>> Y = np.array([[1, 0, 1], [0, 1, 0], [1, 0, 1], [0, 1, 1]])
    >>> loss = HybridLoss(corr_weight=0.5, contrastive_weight=0.5).fit(Y)
    >>> value = loss(torch.zeros(4, 3), torch.tensor(Y, dtype=torch.float32), torch.randn(4, 8))
    >>> sorted(loss.last_components)
    ['bce', 'con', 'corr']
    """

    def __init__(
        self,
        pos_weight: str | np.ndarray | None = "balanced",
        corr_weight: float = 0.1,
        contrastive_weight: float = 0.1,
        temperature: float = 0.1,
        max_pos_weight: float = 100.0,
    ):
        super().__init__()
        self.pos_weight = pos_weight
        self.corr_weight = corr_weight
        self.contrastive_weight = contrastive_weight
        self.temperature = temperature
        self.max_pos_weight = max_pos_weight
        self.register_buffer("pos_weight_", None)
        self.register_buffer("correlation_", None)
        self.last_components: dict[str, float] = {}

    def fit(self, Y: np.ndarray) -> HybridLoss:
        """Compute the label statistics (positive weights, correlation) from training labels."""
        Y = np.asarray(Y)
        n_labels = Y.shape[1]
        if isinstance(self.pos_weight, str):
            if self.pos_weight != "balanced":
                raise ValueError(
                    f"pos_weight must be 'balanced', an array or None, got {self.pos_weight!r}."
                )
            weight = balanced_pos_weight(Y, self.max_pos_weight)
        elif self.pos_weight is None:
            weight = None
        else:
            weight = np.asarray(self.pos_weight, dtype=np.float32)
            if weight.shape != (n_labels,) or not np.all(np.isfinite(weight)) or (weight < 0).any():
                raise ValueError(
                    f"pos_weight must be finite, non-negative and of shape ({n_labels},), got "
                    f"{weight.shape} {weight[:5]}."
                )
        device = self._device()
        self.pos_weight_ = None if weight is None else torch.as_tensor(weight, device=device)
        self.correlation_ = torch.as_tensor(label_correlation(Y), device=device)
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
        bce = F.binary_cross_entropy_with_logits(logits, targets, pos_weight=self.pos_weight_)
        total = bce
        corr = con = torch.zeros((), device=logits.device)
        if self.corr_weight:
            if self.correlation_ is None:
                raise RuntimeError("Call HybridLoss.fit(Y) before using the correlation term.")
            corr = self.correlation_term(torch.sigmoid(logits))
            total = total + self.corr_weight * corr
        if self.contrastive_weight:
            if hidden is None:
                raise ValueError("The contrastive term needs the hidden representation.")
            con = self.contrastive_term(hidden, targets)
            total = total + self.contrastive_weight * con
        self.last_components = {"bce": bce.item(), "corr": corr.item(), "con": con.item()}
        return total

    def correlation_term(self, probs: torch.Tensor) -> torch.Tensor:
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

    def contrastive_term(self, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
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
