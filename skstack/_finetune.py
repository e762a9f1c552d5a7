"""Task fine-tuning of an encoder with a temporary multi-label head.

The paper fine-tunes each encoder on the emotion task before extracting embeddings. Here a
linear head on the pooled last layer is trained with binary cross-entropy together with the
encoder; the head is thrown away afterwards and only the encoder's new weights are kept.

Import rule: torch, transformers, ``skstack._batching`` and ``skstack._pooling`` only.
"""

from __future__ import annotations

import numpy as np
import torch
from tqdm.auto import tqdm

from skstack._batching import bucketed_batches, pad_batch
from skstack._pooling import pool


def fine_tune_encoder(
    model: torch.nn.Module,
    token_ids: list[list[int]],
    Y: np.ndarray,
    *,
    pad_id: int,
    pooling: str = "mean",
    epochs: int = 1,
    learning_rate: float = 2e-5,
    warmup_ratio: float = 0.1,
    batch_size: int = 16,
    weight_decay: float = 0.01,
    device: torch.device | str = "cpu",
    mixed_precision: bool = False,
    random_state: int | None = None,
    show_progress_bar: bool = False,
) -> list[float]:
    """Fine-tune ``model`` in place on tokenised texts and a 0/1 label matrix.

    Returns the mean training loss of each epoch. ``mixed_precision`` runs the forward
    pass under bfloat16 autocast (on GPUs with bf16 support it roughly halves the time).
    """
    from transformers import get_linear_schedule_with_warmup

    device = torch.device(device)
    generator = torch.Generator().manual_seed(random_state) if random_state is not None else None
    if random_state is not None:
        torch.manual_seed(random_state)
    head = torch.nn.Linear(model.config.hidden_size, Y.shape[1])
    model.to(device).train()
    head.to(device).train()
    targets = torch.as_tensor(Y, dtype=torch.float32)
    params = list(model.parameters()) + list(head.parameters())
    optimizer = torch.optim.AdamW(params, lr=learning_rate, weight_decay=weight_decay)
    steps_per_epoch = -(-len(token_ids) // batch_size)
    total = steps_per_epoch * epochs
    scheduler = get_linear_schedule_with_warmup(optimizer, int(warmup_ratio * total), total)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    history = []
    bar = tqdm(total=total, desc="fine-tuning", disable=not show_progress_bar)
    try:
        lengths = [len(ids) for ids in token_ids]
        for _ in range(epochs):
            epoch_loss = 0.0
            for rows in bucketed_batches(lengths, batch_size, generator):
                input_ids, mask = pad_batch([token_ids[r] for r in rows], pad_id)
                input_ids, mask = input_ids.to(device), mask.to(device)
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=mixed_precision):
                    hidden = model(input_ids=input_ids, attention_mask=mask).last_hidden_state
                    logits = head(pool(hidden, mask, pooling))
                loss = loss_fn(logits.float(), targets[rows].to(device))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                optimizer.step()
                scheduler.step()
                epoch_loss += loss.item() * len(rows)
                bar.update()
            history.append(epoch_loss / len(token_ids))
    finally:
        bar.close()
        model.eval()
    return history
