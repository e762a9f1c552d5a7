"""Pooling of token vectors into one vector per text, with padding masked out.

A new pooling mode is one entry in ``POOLING_MODES`` and one branch in :func:`pool`; the
encoder's parameter check and fine-tuning read both from here.

Import rule: a leaf (torch only).
"""

from __future__ import annotations

import torch

POOLING_MODES = ("cls", "mean", "max")


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, mode: str) -> torch.Tensor:
    """Pool ``hidden`` (batch, tokens, dim) into (batch, dim).

    ``attention_mask`` is 1 for real tokens and 0 for padding; padding never contributes.
    ``cls`` takes the first token, ``mean`` averages real tokens, ``max`` takes the
    element-wise maximum over real tokens.
    """
    if mode == "cls":
        return hidden[:, 0]
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    if mode == "mean":
        return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
    if mode == "max":
        return hidden.masked_fill(mask == 0, torch.finfo(hidden.dtype).min).amax(dim=1)
    raise ValueError(f"pooling must be one of {POOLING_MODES}, got {mode!r}.")
