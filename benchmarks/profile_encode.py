"""Where encoding time goes, against this machine's measured matmul peak (run by hand).

    python benchmarks/profile_encode.py                 # about 3 min
    python benchmarks/profile_encode.py -n 4000 --batch-sizes 32 64 128

1. The peak: the best of several 2048 x 2048 matrix products in float32, bfloat16 and int8
   (``torch._int_mm``), 2 threads, in GFLOP/s (GOP/s for int8).
2. Per encoder variant on the same texts (all-MiniLM-L6-v2): texts/s, the shares of
   tokenisation and of the forward pass, and the forward pass's achieved GFLOP/s, counted
   from the padded batch shapes it was given (per layer: 8·B·L·H² for the projections,
   4·B·L·H·I for the feed-forward block of inner width I, 4·B·L²·H for attention) — the
   same count for ``SentenceTransformer.encode``.
3. The packed encoder's products (``skstack._packed``: ``ROWS`` rows each, MiniLM's widths),
   ``torch.addmm`` against the same layer on a weight packed once (``--products`` prints
   only these and stops).
4. OpenVINO int8 settings on the exact batches our encoder feeds it: the precision hint,
   the latency hint, batch size, lengths padded to a multiple of 16 (fewer distinct shapes),
   and outputs cut to the one layer the encoder pools.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from bench_encode import model_path, texts
from machine import describe

from skstack import EncoderEmbedder


def peak(dtype: torch.dtype, n: int = 2048, repeats: int = 5) -> float | None:
    """Best GFLOP/s of an n x n matrix product in ``dtype``; None where torch has no kernel."""
    if dtype == torch.int8:
        a = torch.randint(-128, 127, (n, n), dtype=torch.int8)
        b = torch.randint(-128, 127, (n, n), dtype=torch.int8)
        product = torch._int_mm
    else:
        a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
        product = torch.mm
    try:
        product(a, b)
    except RuntimeError:
        return None
    best = min(_seconds(lambda: product(a, b)) for _ in range(repeats))
    return 2 * n**3 / best / 1e9


def _seconds(call) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def flops(config, shapes: list[tuple[int, int]]) -> float:
    """Multiply-adds x 2 of a BERT-like encoder over batches of these (B, L) shapes."""
    H, inner, N = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    return sum(N * (8 * B * L * H * H + 4 * B * L * H * inner + 4 * B * L * L * H)
               for B, L in shapes)


class Recorder:
    """Wraps an encoder's forward function: the batch shapes, the batches, the seconds."""

    def __init__(self, emb: EncoderEmbedder):
        self.shapes, self.batches, self.seconds = [], [], 0.0
        real = emb._forward

        def forward_factory():
            forward = real()

            def timed(ids, mask):
                self.shapes.append(tuple(ids.shape))
                self.batches.append((ids, mask))
                start = time.perf_counter()
                out = forward(ids, mask)
                self.seconds += time.perf_counter() - start
                return out

            return timed

        emb._forward = forward_factory

    def reset(self) -> None:
        self.shapes, self.batches, self.seconds = [], [], 0.0


VARIANTS = {
    "torch float32": {},
    "torch bfloat16": {"dtype": "bfloat16"},
    "openvino float32": {"backend": "openvino", "dtype": "float32"},
    "openvino int8 (float32 elsewhere)": {"backend": "openvino", "quantization": "int8",
                                          "dtype": "float32"},
    "onnx int8": {"backend": "onnx", "quantization": "int8"},
}


def profile_variants(data: list[str], batch_size: int, peaks: dict) -> dict:
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(model_path(), device="cpu")
    st_shapes: list[tuple[int, int]] = []
    st_forward = [0.0]
    model = st[0].model  # sentence-transformers 6 calls its forward method, past any hook
    real_forward = model.forward

    def timed_forward(*args, **kwargs):
        st_shapes.append(tuple(kwargs["input_ids"].shape))
        start = time.perf_counter()
        out = real_forward(*args, **kwargs)
        st_forward[0] += time.perf_counter() - start
        return out

    model.forward = timed_forward
    st.encode(data[:64], batch_size=batch_size)
    st_shapes.clear()
    st_forward[0] = 0.0
    total = _seconds(lambda: st.encode(data, batch_size=batch_size))
    config = model.config
    rows = {"sentence-transformers (float32)": (total, st_forward[0], None, st_shapes,
                                                "float32")}
    recorders = {}
    for name, params in VARIANTS.items():
        emb = EncoderEmbedder(model_path(), normalize=True, batch_size=batch_size, cache=None,
                              max_length=st.max_seq_length, device="cpu", **params).fit(data)
        recorder = recorders[name] = Recorder(emb)
        emb.transform(data[:64])  # export and warm up
        recorder.reset()
        total = _seconds(lambda emb=emb: emb.transform(data))
        tokenise = _seconds(lambda emb=emb: emb.tokenizer_(
            data, truncation=True, max_length=emb.max_length_))
        precision = "int8" if params.get("quantization") else emb.dtype_
        rows[name] = (total, recorder.seconds, tokenise, recorder.shapes, precision)
    print(f"\n{len(data)} texts, batch size {batch_size}\n")
    print("| variant | texts/s | forward share | tokenisation share | forward GFLOP/s | "
          "% of the matmul peak (its precision) | mean padded length |\n"
          "|---|---|---|---|---|---|---|")
    for name, (total, forward, tokenise, shapes, precision) in rows.items():
        gflops = flops(config, shapes) / forward / 1e9
        ceiling = peaks.get(precision) or peaks["float32"]
        length = np.average([L for _, L in shapes], weights=[B for B, _ in shapes])
        print(f"| {name} | {len(data) / total:.0f} | {forward / total:.0%} | "
              f"{'' if tokenise is None else f'{tokenise / total:.0%}'} | {gflops:.0f} | "
              f"{gflops / ceiling:.0%} ({precision}) | {length:.1f} |")
    return recorders["openvino int8 (float32 elsewhere)"].batches


def openvino_settings(batches, rounds: int = 3) -> None:
    """OpenVINO int8 forward passes alone over the encoder's own batches, per setting."""
    import openvino

    from skstack._config import home_folder
    from skstack._runtimes import EXPORT_FORMAT, OPENVINO_INT8_GROUP

    exports = sorted(home_folder().glob(f"exports/{EXPORT_FORMAT}/*/openvino-int8/model.xml"),
                     key=lambda p: p.stat().st_mtime)
    core = openvino.Core()
    base = core.read_model(str(exports[-1]))
    last_only = core.read_model(str(exports[-1]))
    last_only = openvino.Model([last_only.outputs[-1].node], last_only.get_parameters())

    def padded(multiple: int):
        out = []
        for ids, mask in batches:
            extra = -ids.shape[1] % multiple
            out.append((torch.nn.functional.pad(ids, (0, extra)),
                        torch.nn.functional.pad(mask, (0, extra))))
        return out

    def rebatched(size: int):
        # the encoder's batches are sorted by length: so are their rows, one after another
        rows = [i[:int(m.sum())] for ids, mask in batches for i, m in zip(ids, mask,
                                                                            strict=True)]
        out = []
        for start in range(0, len(rows), size):
            chunk = rows[start:start + size]
            L = max(len(c) for c in chunk)
            ids = torch.zeros((len(chunk), L), dtype=torch.long)
            mask = torch.zeros((len(chunk), L), dtype=torch.long)
            for k, c in enumerate(chunk):
                ids[k, :len(c)], mask[k, :len(c)] = c, 1
            out.append((ids, mask))
        return out

    settings = {
        "as the encoder runs it (precision hint f32)": (base, {}, batches),
        "+ PERFORMANCE_HINT=LATENCY": (base, {"PERFORMANCE_HINT": "LATENCY"}, batches),
        "+ lengths padded to a multiple of 16": (base, {}, padded(16)),
        "+ only the last layer as output": (last_only, {}, batches),
        "+ batches of 64": (base, {}, rebatched(64)),
        "+ batches of 128": (base, {}, rebatched(128)),
    }
    print("\n| OpenVINO int8 setting | forward seconds (best of rounds) | relative |\n"
          "|---|---|---|")
    reference = None
    for name, (model, extra, feed) in settings.items():
        compiled = core.compile_model(model, "CPU", {
            "INFERENCE_PRECISION_HINT": "f32",
            "DYNAMIC_QUANTIZATION_GROUP_SIZE": str(OPENVINO_INT8_GROUP), **extra})
        request = compiled.create_infer_request()

        def run(compiled=compiled, request=request, feed=feed):
            for ids, mask in feed:
                request.infer({"input_ids": ids.numpy(), "attention_mask": mask.numpy()})

        run()
        best = min(_seconds(run) for _ in range(rounds))
        reference = reference or best
        print(f"| {name} | {best:.2f} | {reference / best:.2f}x |")


def block_products(repeats: int = 200) -> None:
    """Microseconds of one ``ROWS``-row product of each of MiniLM's linear-layer shapes:
    ``torch.addmm`` (as before 0.3's packed weights) against ``skstack._packed._linear``
    (a weight packed once where bfloat16 is native), best of 3 runs of ``repeats``."""
    import contextlib
    from unittest import mock

    from skstack._packed import ROWS, _linear

    def best(linear, x) -> float:
        _linear(linear, x)  # packs the weight, warms the kernel
        return min(_seconds(lambda: [_linear(linear, x) for _ in range(repeats)])
                   for _ in range(3)) / repeats

    print(f"\n| dtype | product ({ROWS} rows x in x out) | torch.addmm | packed weight |\n"
          "|---|---|---|---|")
    for dtype in (torch.float32, torch.bfloat16):
        for width_in, width_out in ((384, 384), (384, 1536), (1536, 384)):
            linear = torch.nn.Linear(width_in, width_out).to(dtype)
            x = torch.randn(ROWS, width_in).to(dtype)
            times = []
            for unpacked in (mock.patch("skstack._packed._packs_bfloat16_weights",
                                        lambda: False), contextlib.nullcontext()):
                with torch.inference_mode(), unpacked:
                    times.append(best(linear, x))
            print(f"| {str(dtype)[6:]} | {ROWS} x {width_in} x {width_out} | "
                  f"{1e6 * times[0]:.0f} us | {1e6 * times[1]:.0f} us |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=2000)
    parser.add_argument("--batch-sizes", type=int, nargs="*", default=[32])
    parser.add_argument("--products", action="store_true",
                        help="only time the packed encoder's products (item 3) and stop")
    args = parser.parse_args()
    torch.set_num_threads(2)
    print(describe())
    if args.products:
        block_products()
        return
    peaks = {name: peak(dtype) for name, dtype in
             (("float32", torch.float32), ("bfloat16", torch.bfloat16), ("int8", torch.int8))}
    print("matmul peak, 2048 x 2048, 2 threads: " + ", ".join(
        f"{k} {'n/a' if v is None else f'{v:.0f}'} G{'OP' if k == 'int8' else 'FLOP'}/s"
        for k, v in peaks.items()))
    data = texts(args.n)
    batches = None
    for batch_size in args.batch_sizes:
        batches = profile_variants(data, batch_size, peaks)
    openvino_settings(batches)


if __name__ == "__main__":
    main()
