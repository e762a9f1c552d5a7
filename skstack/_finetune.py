"""Task fine-tuning of an encoder with a temporary multi-label head.

The paper fine-tunes each encoder on the emotion task before extracting embeddings. Here a
linear head on the pooled last layer is trained with binary cross-entropy together with the
encoder; the head is thrown away afterwards and only the encoder's new weights are kept.

:func:`fine_tune_or_reuse` decides reuse: a seeded fine-tuning is kept under a key of
everything that decides its weights (the pretrained weights, the token ids, the labels, every
setting and the seed): in memory (the process's artifact store), and under the home folder
(``<home>/finetuned``) when one is set, so that the clones of a grid search that differ only
in the classifier's parameters reuse one fine-tuning per fold instead of repeating it per
candidate. An unseeded one is never reused (it is not repeatable).

Import rule: torch, transformers, safetensors, ``skstack._batching``, ``skstack._config``,
``skstack._files``, ``skstack._pooling`` and ``skstack.artifacts`` only.
"""

from __future__ import annotations

import hashlib
import json
import math
import numbers
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from skstack._batching import bucketed_batches, pad_batch
from skstack._config import home_folder, progress
from skstack._files import folder_in_place, intact_folder
from skstack._pooling import pool
from skstack.artifacts import ARTIFACTS

_WEIGHT_DECAY = 0.01


@dataclass(frozen=True)
class FineTuneSettings:
    """What decides a fine-tuning besides the data and the pretrained weights, declared
    once: ``EncoderEmbedder``'s ``finetune_*`` parameters take these defaults, the training
    loop takes the whole object, and the reuse key hashes it as it is.

    ``mixed_precision`` runs the forward pass under bfloat16 autocast (on GPUs with bf16
    support and CPUs with AVX512-BF16 it roughly halves the time). ``accumulation_steps``
    batches are summed into one optimizer step (an effective batch of ``batch_size *
    accumulation_steps`` in the memory of one). ``pooling`` is the temporary head's.
    ``layers`` trains only the top transformer layers (a count, or a share of them in
    (0, 1), rounded up), the embeddings and the layers below kept as they are (no
    gradients through them, no optimizer state for them); ``None`` trains everything.
    """

    epochs: int = 0
    learning_rate: float = 2e-5
    warmup_ratio: float = 0.1
    batch_size: int = 16
    accumulation_steps: int = 1
    mixed_precision: bool = False
    random_state: int | None = None
    pooling: str = "mean"
    layers: int | float | None = None


def transformer_layers(model: torch.nn.Module) -> torch.nn.ModuleList:
    """The stack of transformer layers of a Hugging Face encoder: the first module list
    with ``config.num_hidden_layers`` entries (``encoder.layer`` in BERT, RoBERTa,
    XLM-RoBERTa; ``transformer.layer`` in DistilBERT)."""
    n = model.config.num_hidden_layers
    for module in model.modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == n:
            return module
    raise ValueError(f"Cannot find the {n} transformer layers of {type(model).__name__} to "
                     "train only the top ones; use finetune_layers=None.")


def trained_parameters(model: torch.nn.Module, layers: int | float | None
                       ) -> list[torch.nn.Parameter]:
    """The parameters fine-tuning updates: all, or those of the top ``layers`` layers (a
    float: that share of the layers, rounded up)."""
    if layers is None:
        return list(model.parameters())
    stack = transformer_layers(model)
    # a share rounds up, but not past float error: a third of 6 layers is 2, not 3
    count = layers if isinstance(layers, numbers.Integral) else \
        math.ceil(layers * len(stack) - 1e-9)
    if count > len(stack):
        raise ValueError(f"finetune_layers={layers}, but the encoder has {len(stack)} "
                         "transformer layers.")
    return [p for layer in stack[len(stack) - count:] for p in layer.parameters()]


def fine_tune_encoder(model: torch.nn.Module, token_ids: list[list[int]], Y: np.ndarray,
                      settings: FineTuneSettings, *, pad_id: int,
                      device: torch.device | str = "cpu",
                      show_progress_bar: bool = False) -> list[float]:
    """Fine-tune ``model`` in place on tokenised texts and a 0/1 label matrix, under
    ``settings``; returns the mean training loss of each epoch."""
    from transformers import get_linear_schedule_with_warmup

    epochs, batch_size, pooling = settings.epochs, settings.batch_size, settings.pooling
    accumulation_steps, random_state = settings.accumulation_steps, settings.random_state
    device = torch.device(device)
    generator = torch.Generator().manual_seed(random_state) if random_state is not None else None
    if random_state is not None:
        torch.manual_seed(random_state)
    head = torch.nn.Linear(model.config.hidden_size, Y.shape[1])
    model.to(device).train()
    head.to(device).train()
    targets = torch.as_tensor(Y, dtype=torch.float32)
    trained = trained_parameters(model, settings.layers)
    # the rest is frozen while it trains: autograd then stops below the lowest trained
    # layer, and AdamW keeps no state for, say, e5's 96M-parameter embedding matrix
    kept = {id(p) for p in trained}
    frozen = [p for p in model.parameters() if p.requires_grad and id(p) not in kept]
    for p in frozen:
        p.requires_grad_(False)
    params = trained + list(head.parameters())
    optimizer = torch.optim.AdamW(params, lr=settings.learning_rate, weight_decay=_WEIGHT_DECAY)
    batches_per_epoch = -(-len(token_ids) // batch_size)
    steps_per_epoch = -(-batches_per_epoch // accumulation_steps)
    total = steps_per_epoch * epochs
    scheduler = get_linear_schedule_with_warmup(optimizer, int(settings.warmup_ratio * total),
                                                total)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    history = []
    # one bar over optimizer steps: tqdm shows the rate and the time left
    bar = tqdm(total=total, desc="fine-tuning", unit="step", disable=not show_progress_bar)
    began = time.perf_counter()
    try:
        lengths = [len(ids) for ids in token_ids]
        for _ in range(epochs):
            epoch_loss = torch.zeros((), device=device)
            batches = bucketed_batches(lengths, batch_size, generator)
            for start in range(0, len(batches), accumulation_steps):
                group = batches[start : start + accumulation_steps]
                n_rows = sum(len(rows) for rows in group)
                for rows in group:
                    input_ids, mask = pad_batch([token_ids[r] for r in rows], pad_id)
                    input_ids, mask = input_ids.to(device), mask.to(device)
                    with torch.autocast(device.type, dtype=torch.bfloat16,
                                        enabled=settings.mixed_precision):
                        hidden = model(input_ids=input_ids,
                                       attention_mask=mask).last_hidden_state
                        logits = head(pool(hidden, mask, pooling))
                    loss = loss_fn(logits.float(), targets[rows].to(device))
                    # weighted by rows, so that a group's gradient is its rows' mean
                    (loss * (len(rows) / n_rows)).backward()
                    # summed on the device: .item() per batch would wait for the GPU each time
                    epoch_loss += loss.detach() * len(rows)
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                bar.update()
            history.append(float(epoch_loss) / len(token_ids))
            bar.set_postfix(loss=f"{history[-1]:.4f}")
            progress(f"fine-tuning on {len(token_ids):,} texts: epoch {len(history)}/{epochs}, "
                     f"loss {history[-1]:.4f} ({time.perf_counter() - began:.0f} s)")
    finally:
        bar.close()
        model.eval()
        for p in frozen:
            p.requires_grad_(True)
    return history


def fine_tune_or_reuse(model: torch.nn.Module, token_ids: list[list[int]], Y: np.ndarray,
                       settings: FineTuneSettings, *, weights: str, tokenizer: str,
                       reuse: bool, pad_id: int, device: torch.device | str,
                       show_progress_bar: bool) -> list[float]:
    """:func:`fine_tune_encoder`, or the weights and losses an identical seeded fine-tuning
    kept (loaded into ``model``). ``settings`` are all part of the key; ``weights`` and
    ``tokenizer`` digest the pretrained model; ``reuse=False`` (an encoder without a cache)
    neither reads nor keeps."""
    if not (reuse and settings.random_state is not None):
        return fine_tune_encoder(model, token_ids, Y, settings, pad_id=pad_id, device=device,
                                 show_progress_bar=show_progress_bar)
    key = fine_tune_key(weights, tokenizer, token_ids, Y, settings)
    folder = home_folder(default=False)
    found = recall_fine_tuned(key, folder)
    if found is not None:
        model.load_state_dict(found[0])
        progress("fine-tuning: an identical seeded fine-tuning was kept; its weights reused")
        return list(found[1])
    losses = fine_tune_encoder(model, token_ids, Y, settings, pad_id=pad_id, device=device,
                               show_progress_bar=show_progress_bar)
    keep_fine_tuned(key, folder, model, losses)
    return losses


def fine_tune_key(weights: str, tokenizer: str, token_ids: list[list[int]], Y: np.ndarray,
                  settings: FineTuneSettings) -> str:
    """A digest of everything that decides fine-tuned weights (``settings`` includes the seed)."""
    digest = hashlib.sha256()
    fields = asdict(settings)
    if fields["layers"] is None:  # as keys were before the setting existed: still found
        del fields["layers"]
    digest.update(json.dumps({"weights": weights, "tokenizer": tokenizer, **fields},
                             sort_keys=True).encode())
    for ids in token_ids:
        digest.update(np.asarray(ids, dtype=np.int64).tobytes() + b"|")
    digest.update(np.ascontiguousarray(Y, dtype=np.int8).tobytes())
    digest.update(str(Y.shape).encode())
    return digest.hexdigest()


def recall_fine_tuned(key: str, folder: Path | None
                      ) -> tuple[dict[str, torch.Tensor], list[float]] | None:
    """Weights and loss history kept under ``key``: in memory, else in ``folder``."""
    found = ARTIFACTS.get("fine-tuned", key)
    if found is not None:
        return found
    path = None if folder is None else folder / "finetuned" / key
    if path is None or not intact_folder(path):
        return None
    from safetensors.torch import load_file

    found = (load_file(str(path / "model.safetensors")),
             json.loads((path / "loss.json").read_text()))
    return ARTIFACTS.put("fine-tuned", key, found)


def keep_fine_tuned(key: str, folder: Path | None, model: torch.nn.Module,
                    losses: list[float]) -> None:
    """Keep ``model``'s weights under ``key`` in memory, and in ``folder`` if given."""
    state = {k: v.detach().to("cpu").clone().contiguous() for k, v in model.state_dict().items()}
    ARTIFACTS.put("fine-tuned", key, (state, list(losses)))
    if folder is None:
        return
    from safetensors.torch import save_file

    def write(tmp: Path) -> None:
        save_file(state, str(tmp / "model.safetensors"))
        (tmp / "loss.json").write_text(json.dumps(losses))

    folder_in_place(folder / "finetuned" / key, write)


def forget_fine_tuned() -> None:
    """Drop the fine-tuned weights kept in this process (not those in cache folders)."""
    ARTIFACTS.discard("fine-tuned")
