"""Where fine-tuning time goes, per step, against this machine's matmul peak; and how close
``finetune_epochs="auto"``'s estimate comes (issue 35, items 1 and 3; run by hand).

    python benchmarks/profile_finetune.py                    # about 4 min on 2 cores
    python benchmarks/profile_finetune.py --device cuda --n 8000

The real training loop (``skstack._finetune.fine_tune_encoder``, one epoch on the first
``--n`` texts of a fixed GoEmotions shuffle, batch 16) runs with timers wrapped around its
parts, so nothing is re-implemented here: tokenisation (once, before the loop), padding a
batch, the forward pass with the head and the loss, ``backward``, gradient clipping and the
AdamW step; "other" is the rest of the epoch (the schedule, the Python between). Also per
variant:

- padded tokens as a share of real ones in our length-bucketed batches, and in the shuffled
  batches a plain Hugging Face loop pads to their longest text (``bench_finetune.py`` times
  that loop against ours);
- the achieved GFLOP/s of forward + backward, counted from the padded batch shapes
  (``profile_encode.flops``; backward counted as twice the forward of the layers that train),
  against the peak of a 2048 x 2048 matrix product in the precision the forward ran in;
- ``estimate_seconds`` (what ``"auto"`` decides on), made just before the epoch, over the
  epoch's measured seconds.

The first variant runs AdamW's default loop instead of the fused kernel (0.2's optimizer),
for the side-by-side speed-up of fusing it.
"""

from __future__ import annotations

import argparse
import copy
import time
from contextlib import contextmanager

import numpy as np
import torch
from data_sets import load
from machine import describe
from profile_encode import flops, peak

import skstack._finetune as finetune
from skstack import EncoderEmbedder, default_minilm
from skstack._batching import bucketed_batches
from skstack._finetune import FineTuneSettings, estimate_seconds
from skstack.pipelines import default_multilingual

PARTS = ("pad", "forward + loss", "backward", "clip", "AdamW step")


class Timers:
    """Seconds spent in each wrapped part, and the padded (B, L) shape of every batch."""

    def __init__(self) -> None:
        self.seconds = dict.fromkeys(PARTS, 0.0)
        self.shapes: list[tuple[int, int]] = []

    def timed(self, part: str, function, device: torch.device):
        def call(*args, **kwargs):
            start = time.perf_counter()
            out = function(*args, **kwargs)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            self.seconds[part] += time.perf_counter() - start
            if part == "pad":
                self.shapes.append(tuple(out[0].shape))
            return out
        return call


@contextmanager
def wrapped(timers: Timers, device: torch.device):
    """The training loop's parts, timed where ``_finetune`` and torch look them up."""
    saved = [(finetune, "pad_batch"), (finetune, "_batch_loss"), (torch.Tensor, "backward"),
             (torch.nn.utils, "clip_grad_norm_"), (torch.optim.AdamW, "step")]
    originals = [getattr(owner, name) for owner, name in saved]
    try:
        for (owner, name), original, part in zip(saved, originals, PARTS, strict=True):
            setattr(owner, name, timers.timed(part, original, device))
        yield
    finally:
        for (owner, name), original in zip(saved, originals, strict=True):
            setattr(owner, name, original)


def padded_share(lengths: list[int], batches) -> float:
    """Padded tokens over real tokens, for batches of row indices."""
    cells = sum(len(rows) * max(lengths[r] for r in rows) for rows in batches)
    return cells / sum(lengths)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--models", nargs="*", default=["minilm", "e5"])
    args = parser.parse_args()
    if args.device == "cpu":
        torch.set_num_threads(2)
    print(describe())
    device = torch.device(args.device)
    texts, Y, _ = load("goemotions", args.n, 1)
    texts, Y = texts["train"], Y["train"]
    peaks = {"float32": peak(torch.float32), "bfloat16": peak(torch.bfloat16)}
    print(f"matmul peak (2048², {torch.get_num_threads()} threads): " + ", ".join(
        f"{k} {v:.0f} GFLOP/s" for k, v in peaks.items() if v) + "\n")
    paths = {"minilm": default_minilm(), "e5": default_multilingual()}
    # (name, finetune_layers, bf16 autocast, fused AdamW): the first row is 0.2's optimizer
    variants = [("every weight, float32, AdamW loop (0.2)", None, False, False),
                ("every weight, float32", None, False, True),
                ("every weight, bf16 autocast", None, True, True),
                ("top third, bf16 autocast", 1 / 3, True, True)]
    print("| model, variant | texts/s | tokenise | pad | forward + loss | backward | clip | "
          "AdamW step | other | padded / real (ours; plain loop) | GFLOP/s (share of peak) | "
          "estimate / measured |\n|" + "---|" * 12)
    for name in args.models:
        emb = EncoderEmbedder(paths[name], cache=None, prefix="query: " if name == "e5" else "")
        emb.fit(texts[:2])
        start = time.perf_counter()
        ids = emb._new_tokens().of(texts)[0]
        tokenise = time.perf_counter() - start
        lengths = [len(i) for i in ids]
        plain = [list(range(s, min(s + 16, len(ids)))) for s in range(0, len(ids), 16)]
        shuffled = np.random.default_rng(0).permutation(len(ids))
        plain = [shuffled[rows] for rows in plain]
        ours = padded_share(lengths, bucketed_batches(lengths, 16,
                                                      torch.Generator().manual_seed(0)))
        for label, layers, mixed, fused in variants:
            finetune._FUSED_ADAMW = ("cpu", "cuda") if fused else ()
            model = copy.deepcopy(emb.model_).float()
            settings = FineTuneSettings(epochs=1, batch_size=16, mixed_precision=mixed,
                                        random_state=0, layers=layers)
            estimate = estimate_seconds(model, ids, Y, settings, pad_id=emb._pad_id(),
                                        device=device)
            timers = Timers()
            start = time.perf_counter()
            with wrapped(timers, device):
                finetune.fine_tune_encoder(model, ids, Y, settings, pad_id=emb._pad_id(),
                                           device=device)
            total = time.perf_counter() - start
            timers.seconds["forward + loss"] -= timers.seconds["pad"]  # padding is inside it
            share = {k: v / total for k, v in timers.seconds.items()}
            other = 1 - sum(share.values())
            n_layers = model.config.num_hidden_layers
            trained = n_layers if layers is None else -(-n_layers // 3)
            work = flops(model.config, timers.shapes) * (1 + 2 * trained / n_layers)
            achieved = work / (timers.seconds["forward + loss"] + timers.seconds["backward"])
            ceiling = peaks["bfloat16" if mixed else "float32"]
            print(f"| {name}, {label} | "
                  f"{len(ids) / total:.1f} | {tokenise:.1f} s | "
                  + " | ".join(f"{100 * share[p]:.0f} %" for p in PARTS)
                  + f" | {100 * other:.0f} % | {ours:.2f}; {padded_share(lengths, plain):.2f} | "
                  f"{achieved / 1e9:.0f} ({100 * achieved / 1e9 / ceiling:.0f} %) | "
                  f"{estimate:.0f} / {total:.0f} s = {estimate / total:.2f} |", flush=True)


if __name__ == "__main__":
    main()
