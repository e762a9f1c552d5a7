"""Tokenise once, then feed the encoder batches of similar length (less padding).

Import rule: a leaf (numpy and torch only).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch


def tokenize(tokenizer, texts: list[str], max_length: int) -> tuple[list[list[int]], int]:
    """Token ids of each text, cut at ``max_length``, and how many texts were cut."""
    ids = tokenizer(texts, truncation=True, max_length=max_length, add_special_tokens=True,
                    return_attention_mask=False, return_token_type_ids=False)["input_ids"]
    at_limit = [i for i, seq in enumerate(ids) if len(seq) >= max_length]
    n_cut = 0
    if at_limit:  # only texts that reached the limit can have been cut
        full = tokenizer([texts[i] for i in at_limit], add_special_tokens=True,
                         return_attention_mask=False, return_token_type_ids=False)["input_ids"]
        n_cut = sum(len(seq) > max_length for seq in full)
    return ids, n_cut


def length_sorted_batches(
    ids: list[list[int]], batch_size: int, pad_id: int
) -> Iterator[tuple[np.ndarray, torch.Tensor, torch.Tensor]]:
    """Yield (positions, input_ids, attention_mask), longest batches first.

    ``positions`` are the indices into ``ids`` of the batch's rows, so callers put
    each output row back where its text came from.
    """
    order = np.argsort([-len(seq) for seq in ids], kind="stable")
    for start in range(0, len(order), batch_size):
        positions = order[start : start + batch_size]
        yield (positions, *pad_batch([ids[p] for p in positions], pad_id))


def pad_batch(seqs: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad token id lists to one width: (input_ids, attention_mask)."""
    width = max(len(seq) for seq in seqs)
    input_ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for row, seq in enumerate(seqs):
        input_ids[row, : len(seq)] = torch.as_tensor(seq)
        mask[row, : len(seq)] = 1
    return input_ids, mask
