"""Task fine-tuning of an encoder with a temporary multi-label head.

The paper fine-tunes each encoder on the emotion task before extracting embeddings. Here a
linear head on the pooled last layer is trained with binary cross-entropy together with the
encoder; the head is thrown away afterwards and only the encoder's new weights are kept.
Label-aware (``head="labels"``, after SpanEmo): the label names go before each text, each
label is scored from its own name's first token state, and the loss adds the pairwise
label-correlation term of :class:`skstack.losses.HybridLoss`.

:func:`fine_tune_or_reuse` decides reuse: a seeded fine-tuning is kept under a key of
everything that decides its weights (the pretrained weights, the token ids, the labels, every
setting and the seed): in memory (the process's artifact store), and under the home folder
(``<home>/finetuned``) when one is set, so that the clones of a grid search that differ only
in the classifier's parameters reuse one fine-tuning per fold instead of repeating it per
candidate. An unseeded one is never reused (it is not repeatable).

``finetune_epochs="auto"`` decides here too (:func:`fine_tune_or_reuse` with a ``budget``): a
kept fine-tuning is reused; otherwise the encoder fine-tunes :data:`AUTO_EPOCHS` epochs when
there are at least :data:`AUTO_MIN_TEXTS` texts and :func:`estimate_seconds` is within the
budget, else it stays frozen; the progress lines say which and why.

Import rule: torch, transformers, safetensors, ``skstack._batching``, ``skstack._config``,
``skstack._files``, ``skstack._pooling``, ``skstack.artifacts`` and ``skstack.losses`` only.
"""

from __future__ import annotations

import hashlib
import json
import math
import numbers
import time
from collections.abc import Iterator
from contextlib import contextmanager
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
from skstack.losses import HybridLoss

_WEIGHT_DECAY = 0.01

# finetune_epochs="auto": the epochs measured to pay (docs/benchmarks.md, "Fine-tuning the top
# layers"; held-back tweets +0.03 Jaccard), and the fewest texts it fine-tunes on (our gains
# were measured from 2,000 texts; below 1,000 a label has few positives to learn from)
AUTO_EPOCHS = 2
AUTO_MIN_TEXTS = 1000

# where torch has a fused AdamW kernel: on 2 CPU cores it steps MiniLM's 23M weights in 9 ms
# against 70-97 ms for the default loop, which took a quarter of an every-weight epoch
# (benchmarks/profile_finetune.py)
_FUSED_ADAMW = ("cpu", "cuda")


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
    ``head``: ``"pooled"`` (a linear layer on the pooled last layer, binary cross-entropy)
    or ``"labels"`` (label-aware: the token ids start with the label names, whose first
    pieces' positions the training loop is given).
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
    head: str = "pooled"


HEADS = ("pooled", "labels")
# the label-aware loss's correlation term: the pairwise form at the head's own weight
# (RECOMMENDED_CLASSIFIER_PARAMS)
_LABEL_CORRELATION = {"pos_weight": None, "corr_weight": 0.1, "contrastive_weight": 0.0,
                      "corr_form": "pairwise"}


class _PooledHead(torch.nn.Module):
    """A linear layer on the pooled last layer: one logit per label."""

    def __init__(self, hidden: int, n_labels: int, pooling: str):
        super().__init__()
        self.linear, self.pooling = torch.nn.Linear(hidden, n_labels), pooling

    def forward(self, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.linear(pool(states, mask, self.pooling))


class _LabelTokenHead(torch.nn.Module):
    """Each label's logit from the state of its name's first piece (SpanEmo): one scoring
    layer shared by the labels, and a bias of each label's own."""

    def __init__(self, hidden: int, positions: list[int]):
        super().__init__()
        self.score = torch.nn.Linear(hidden, 1, bias=False)
        self.bias = torch.nn.Parameter(torch.zeros(len(positions)))
        self.positions = positions

    def forward(self, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.score(states[:, self.positions]).squeeze(-1) + self.bias


def _head_and_loss(model: torch.nn.Module, Y: np.ndarray, settings: FineTuneSettings,
                   label_positions: list[int] | None, device: torch.device
                   ) -> tuple[torch.nn.Module, torch.nn.Module]:
    """The temporary head and the loss ``settings.head`` names (the loss on ``device``; the
    head goes there with the model, in :func:`_training`)."""
    hidden = model.config.hidden_size
    if settings.head == "labels":
        if label_positions is None or len(label_positions) != Y.shape[1]:
            raise ValueError("A label-aware fine-tuning needs the position of each of the "
                             f"{Y.shape[1]} labels' names in the token ids.")
        head = _LabelTokenHead(hidden, label_positions)
        loss = HybridLoss(**_LABEL_CORRELATION).fit(Y)
    else:
        head = _PooledHead(hidden, Y.shape[1], settings.pooling)
        loss = torch.nn.BCEWithLogitsLoss()
    return head, loss.to(device)


def _second_run_seconds(run, device: torch.device) -> float:
    """Seconds of the second of two calls of ``run`` (the first warms up: allocations,
    kernel choices), waiting for a GPU to finish."""
    for _ in range(2):
        began = time.perf_counter()
        run()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - began
    return seconds


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


@contextmanager
def _training(model: torch.nn.Module, head: torch.nn.Module, layers: int | float | None,
              device: torch.device) -> Iterator[list[torch.nn.Parameter]]:
    """``model`` and ``head`` on ``device`` in training mode, with only the parameters
    fine-tuning updates requiring gradients (yielded, the head's last); afterwards the model
    is in eval mode and every parameter requires gradients as before."""
    trained = trained_parameters(model, layers)
    model.to(device).train()
    head.to(device).train()
    # the rest is frozen while it trains: autograd then stops below the lowest trained
    # layer, and AdamW keeps no state for, say, e5's 96M-parameter embedding matrix
    kept = {id(p) for p in trained}
    frozen = [p for p in model.parameters() if p.requires_grad and id(p) not in kept]
    for p in frozen:
        p.requires_grad_(False)
    try:
        yield trained + list(head.parameters())
    finally:
        model.eval()
        for p in frozen:
            p.requires_grad_(True)


def _batch_loss(model: torch.nn.Module, head: torch.nn.Module, loss: torch.nn.Module,
                seqs: list[list[int]], targets: torch.Tensor, settings: FineTuneSettings,
                pad_id: int, device: torch.device) -> torch.Tensor:
    """The loss of one padded batch through the encoder and the temporary head (forward
    only; the caller calls ``backward``)."""
    input_ids, mask = pad_batch(seqs, pad_id)
    input_ids, mask = input_ids.to(device), mask.to(device)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=settings.mixed_precision):
        hidden = model(input_ids=input_ids, attention_mask=mask).last_hidden_state
        logits = head(hidden, mask)
    return loss(logits.float(), targets.to(device))


def fine_tune_encoder(model: torch.nn.Module, token_ids: list[list[int]], Y: np.ndarray,
                      settings: FineTuneSettings, *, pad_id: int,
                      device: torch.device | str = "cpu", show_progress_bar: bool = False,
                      label_positions: list[int] | None = None) -> list[float]:
    """Fine-tune ``model`` in place on tokenised texts and a 0/1 label matrix, under
    ``settings``; returns the mean training loss of each epoch. A label-aware fine-tuning
    takes texts whose ids start with the label names (:func:`skstack._batching.prepend_labels`)
    and the positions that function returned."""
    from transformers import get_linear_schedule_with_warmup

    epochs, batch_size = settings.epochs, settings.batch_size
    accumulation_steps, random_state = settings.accumulation_steps, settings.random_state
    device = torch.device(device)
    generator = torch.Generator().manual_seed(random_state) if random_state is not None else None
    if random_state is not None:
        torch.manual_seed(random_state)
    head, loss_fn = _head_and_loss(model, Y, settings, label_positions, device)
    targets = torch.as_tensor(Y, dtype=torch.float32)
    batches_per_epoch = -(-len(token_ids) // batch_size)
    steps_per_epoch = -(-batches_per_epoch // accumulation_steps)
    total = steps_per_epoch * epochs
    history = []
    # one bar over optimizer steps: tqdm shows the rate and the time left
    bar = tqdm(total=total, desc="fine-tuning", unit="step", disable=not show_progress_bar)
    began = time.perf_counter()
    with _training(model, head, settings.layers, device) as params:
        optimizer = _adamw(params, settings.learning_rate, device)
        scheduler = get_linear_schedule_with_warmup(optimizer,
                                                    int(settings.warmup_ratio * total), total)
        try:
            lengths = [len(ids) for ids in token_ids]
            for _ in range(epochs):
                epoch_loss = torch.zeros((), device=device)
                batches = bucketed_batches(lengths, batch_size, generator)
                for start in range(0, len(batches), accumulation_steps):
                    group = batches[start : start + accumulation_steps]
                    n_rows = sum(len(rows) for rows in group)
                    for rows in group:
                        loss = _batch_loss(model, head, loss_fn,
                                           [token_ids[r] for r in rows], targets[rows],
                                           settings, pad_id, device)
                        # weighted by rows, so that a group's gradient is its rows' mean
                        (loss * (len(rows) / n_rows)).backward()
                        # summed on the device: .item() per batch would wait for the GPU
                        epoch_loss += loss.detach() * len(rows)
                    torch.nn.utils.clip_grad_norm_(params, 1.0)
                    optimizer.step()
                    scheduler.step()
                    optimizer.zero_grad(set_to_none=True)
                    bar.update()
                history.append(float(epoch_loss) / len(token_ids))
                bar.set_postfix(loss=f"{history[-1]:.4f}")
                progress(f"fine-tuning on {len(token_ids):,} texts: epoch {len(history)}/"
                         f"{epochs}, loss {history[-1]:.4f} "
                         f"({time.perf_counter() - began:.0f} s)")
        finally:
            bar.close()
    return history


def _adamw(params: list[torch.nn.Parameter], learning_rate: float, device: torch.device
           ) -> torch.optim.AdamW:
    """Fine-tuning's optimizer, fused where the device has the kernel."""
    return torch.optim.AdamW(params, lr=learning_rate, weight_decay=_WEIGHT_DECAY,
                             fused=True if device.type in _FUSED_ADAMW else None)


def _step_seconds(n_weights: int, settings: FineTuneSettings, device: torch.device) -> float:
    """Seconds of one optimizer step over ``n_weights`` weights: a step timed on a scratch
    tensor of at most 4M weights (the second of two), scaled by the count (a step reads
    and writes each weight's state once, so its time grows with their number)."""
    scratch = torch.nn.Parameter(torch.zeros(min(n_weights, 1 << 22), device=device))
    scratch.grad = torch.ones_like(scratch)
    optimizer = _adamw([scratch], settings.learning_rate, device)
    return _second_run_seconds(optimizer.step, device) * n_weights / scratch.numel()


def estimate_seconds(model: torch.nn.Module, token_ids: list[list[int]], Y: np.ndarray,
                     settings: FineTuneSettings, *, pad_id: int,
                     device: torch.device | str = "cpu",
                     label_positions: list[int] | None = None) -> float:
    """Seconds :func:`fine_tune_encoder` would take on this machine now: one batch of the
    median padded width is timed forward and backward (the second of two runs; the first
    warms up) and scaled by the padded tokens of every epoch's batches, plus the optimizer
    steps (:func:`_step_seconds`). The weights are left as they were."""
    device = torch.device(device)
    lengths = [len(ids) for ids in token_ids]
    batches = bucketed_batches(lengths, settings.batch_size, torch.Generator().manual_seed(0))
    widths = [max(lengths[r] for r in rows) for rows in batches]
    cells = [len(rows) * width for rows, width in zip(batches, widths, strict=True)]
    probe = int(np.argsort(widths, kind="stable")[len(widths) // 2])
    rows = batches[probe]
    head, loss_fn = _head_and_loss(model, Y, settings, label_positions, device)
    targets = torch.as_tensor(Y[rows], dtype=torch.float32)
    with _training(model, head, settings.layers, device) as params:
        n_weights = sum(p.numel() for p in params)

        def step() -> None:
            for p in params:  # as after each optimizer step: gradients start from none
                p.grad = None
            _batch_loss(model, head, loss_fn, [token_ids[r] for r in rows], targets,
                        settings, pad_id, device).backward()

        seconds = _second_run_seconds(step, device)
        for p in params:
            p.grad = None
    steps = -(-len(batches) // settings.accumulation_steps)
    return (seconds * sum(cells) / cells[probe]
            + steps * _step_seconds(n_weights, settings, device)) * settings.epochs


def _affordable(model: torch.nn.Module, token_ids: list[list[int]], Y: np.ndarray,
                settings: FineTuneSettings, budget: float, *, pad_id: int,
                device: torch.device | str, label_positions: list[int] | None) -> bool:
    """``finetune_epochs="auto"``'s choice, said in a progress line: enough texts, and an
    estimated time within ``budget`` seconds."""
    n = len(token_ids)
    if n < AUTO_MIN_TEXTS:
        progress(f"fine-tuning (auto): {n:,} texts, fewer than {AUTO_MIN_TEXTS:,}; "
                 "the encoder stays frozen")
        return False
    seconds = estimate_seconds(model, token_ids, Y, settings, pad_id=pad_id, device=device,
                               label_positions=label_positions)
    verdict = "fine-tuning" if seconds <= budget else \
        f"the encoder stays frozen (finetune_epochs={settings.epochs} fine-tunes anyway)"
    progress(f"fine-tuning (auto): {settings.epochs} epochs on {n:,} texts estimated at "
             f"{seconds:,.0f} s on {torch.device(device).type}, budget {budget:,.0f} s: "
             f"{verdict}")
    return seconds <= budget


def fine_tune_or_reuse(model: torch.nn.Module, token_ids: list[list[int]], Y: np.ndarray,
                       settings: FineTuneSettings, *, weights: str, tokenizer: str,
                       reuse: bool, pad_id: int, device: torch.device | str,
                       show_progress_bar: bool, budget: float | None = None,
                       label_positions: list[int] | None = None) -> list[float]:
    """:func:`fine_tune_encoder`, or the weights and losses an identical seeded fine-tuning
    kept (loaded into ``model``). ``settings`` are all part of the key; ``weights`` and
    ``tokenizer`` digest the pretrained model; ``reuse=False`` (an encoder without a cache)
    neither reads nor keeps. With a ``budget`` in seconds (``finetune_epochs="auto"``), a
    fine-tuning that is not kept runs only where :func:`_affordable`; otherwise ``model``
    is left as it was and the losses are empty."""
    seeded = reuse and settings.random_state is not None
    key = fine_tune_key(weights, tokenizer, token_ids, Y, settings) if seeded else None
    folder = home_folder(default=False)
    found = recall_fine_tuned(key, folder) if seeded else None
    if found is not None:
        model.load_state_dict(found[0])
        progress("fine-tuning: an identical seeded fine-tuning was kept; its weights reused")
        return list(found[1])
    if budget is not None and not _affordable(model, token_ids, Y, settings, budget,
                                              pad_id=pad_id, device=device,
                                              label_positions=label_positions):
        return []
    losses = fine_tune_encoder(model, token_ids, Y, settings, pad_id=pad_id, device=device,
                               show_progress_bar=show_progress_bar,
                               label_positions=label_positions)
    if seeded:
        keep_fine_tuned(key, folder, model, losses)
    return losses


def fine_tune_key(weights: str, tokenizer: str, token_ids: list[list[int]], Y: np.ndarray,
                  settings: FineTuneSettings) -> str:
    """A digest of everything that decides fine-tuned weights (``settings`` includes the seed)."""
    digest = hashlib.sha256()
    fields = asdict(settings)
    # at their defaults, as keys were before these settings existed: still found
    for name, default in (("layers", None), ("head", "pooled")):
        if fields[name] == default:
            del fields[name]
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
