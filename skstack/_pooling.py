"""Pooling of token vectors into one vector per text (or per word), padding masked out.

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


WORD_POOLING_MODES = ("first", "mean")


def pool_words(hidden: torch.Tensor, token_word: torch.Tensor, n_words: int, mode: str
               ) -> torch.Tensor:
    """Pool ``hidden`` (batch, tokens, dim) into (batch, n_words, dim), one vector per word.

    ``token_word`` (batch, tokens) holds each token's word index, -1 for special tokens and
    padding. ``first`` takes a word's first subword, ``mean`` averages its subwords; a word
    without tokens gets zeros.
    """
    if mode not in WORD_POOLING_MODES:
        raise ValueError(f"word pooling must be one of {WORD_POOLING_MODES}, got {mode!r}.")
    batch, _, dim = hidden.shape
    keep = token_word >= 0
    if mode == "first":  # a token whose word differs from the previous token's starts a word
        previous = torch.nn.functional.pad(token_word[:, :-1], (1, 0), value=-1)
        keep = keep & (token_word != previous)
    # every dropped token goes to one extra slot, cut off at the end
    slot = torch.where(keep, token_word, torch.full_like(token_word, n_words))
    index = slot.unsqueeze(-1).expand(-1, -1, dim)
    sums = hidden.new_zeros(batch, n_words + 1, dim).scatter_add_(1, index, hidden)
    counts = hidden.new_zeros(batch, n_words + 1).scatter_add_(1, slot, keep.to(hidden.dtype))
    return sums[:, :n_words] / counts[:, :n_words, None].clamp(min=1.0)
