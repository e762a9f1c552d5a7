"""Run an encoder's forward pass on ONNX Runtime or OpenVINO, optionally with int8 weights.

The torch model is exported to ONNX once per weights (``torch.onnx.export``, all hidden
states as outputs, batch and length dynamic) into ``<folder>/exports/v1/<weights>/onnx``;
int8 is made from that export, beside it:

- ``onnx`` + ``int8``: ONNX Runtime's block-wise 8-bit ``MatMulNBits`` (blocks of 32, the
  activations quantized per block at run time, ``accuracy_level=4`` = int8 dot products).
  Chosen by measurement: per-tensor dynamic quantization (``quantize_dynamic``, per channel)
  was about as fast but its vectors fell to cosine 0.97 of the float32 ones on MiniLM; the
  block-wise form kept 0.997 (docs/benchmarks.md).
- ``openvino`` + ``int8``: NNCF's int8 weight compression (symmetric, per channel); the rest
  of the graph runs in ``dtype``.

Compiled runtimes are kept per process, so clones and reloaded pickles share one. Exports
are written to a temporary folder and renamed into place, so concurrent processes (Dask
workers) never read half a file.

Import rule: torch, the standard library, ``skstack._config``, ``skstack.artifacts`` and
``skstack.cache``; onnx, onnxruntime, openvino and nncf are imported when a backend needs
them (optional extras).
"""

from __future__ import annotations

import importlib.util
import threading
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from skstack._config import quiet
from skstack.artifacts import ARTIFACTS
from skstack.cache import folder_in_place

BACKENDS = ("torch", "onnx", "openvino")
QUANTIZATIONS = ("int8",)
_EXTRAS = {"onnx": ("onnx", "onnxruntime", "onnxscript"),
           "openvino": ("onnx", "openvino", "nncf", "onnxscript")}
_EXPORT_FORMAT = "v1"  # a change to how exports are made gets a new folder, never old files

# (input_ids, attention_mask) -> every hidden state, float32
Forward = Callable[[torch.Tensor, torch.Tensor], list[torch.Tensor]]


def require_backend(backend: str) -> None:
    """Raise ImportError naming the extra to install when a backend's packages are missing."""
    missing = [name for name in _EXTRAS.get(backend, ())
               if importlib.util.find_spec(name) is None]
    if missing:
        raise ImportError(f"backend={backend!r} needs {', '.join(missing)}; install them with "
                          f"pip install 'skstack[{backend}]'.")


class _AllStates(torch.nn.Module):
    """The encoder as a function of (input_ids, attention_mask) to its hidden states."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask):
        output = self.model(input_ids=input_ids, attention_mask=attention_mask,
                            output_hidden_states=True)
        return tuple(output.hidden_states)


def _export_onnx(model: torch.nn.Module, folder: Path) -> None:
    """``model`` (float32, on the CPU) as ``folder/model.onnx``."""
    n_states = model.config.num_hidden_layers + 1
    # two tensors (one passed twice would be exported as one input), ids inside the vocabulary
    ids = torch.arange(16, dtype=torch.long).reshape(2, 8) % model.config.vocab_size
    mask = torch.ones((2, 8), dtype=torch.long)
    batch, length = torch.export.Dim("batch"), torch.export.Dim("length")
    with warnings.catch_warnings(), quiet("torch.onnx"):
        warnings.simplefilter("ignore")  # the exporter's notes on dynamic shapes and packages
        torch.onnx.export(
            _AllStates(model.eval()), (ids, mask),
            str(folder / "model.onnx"), dynamo=True, verbose=False,
            # inputs keep forward()'s argument names (the exporter's input_names renamed them
            # in another order, feeding the mask to the embeddings)
            output_names=[f"hidden_state_{i}" for i in range(n_states)],
            dynamic_shapes={"input_ids": {0: batch, 1: length},
                            "attention_mask": {0: batch, 1: length}},
        )


def _quantize_onnx(source: Path, folder: Path) -> None:
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import (
        DefaultWeightOnlyQuantConfig,
        MatMulNBitsQuantizer,
    )

    config = DefaultWeightOnlyQuantConfig(block_size=32, is_symmetric=True, accuracy_level=4,
                                          bits=8)
    quantizer = MatMulNBitsQuantizer(onnx.load(str(source / "model.onnx")), algo_config=config)
    with quiet("onnxruntime.quantization"):  # it logs every node at INFO
        quantizer.process()
    quantizer.model.save_model_to_file(str(folder / "model.onnx"), True)


def _quantize_openvino(source: Path, folder: Path, show_progress_bar: bool = False) -> None:
    import nncf
    import openvino

    model = openvino.Core().read_model(str(source / "model.onnx"))
    # its statistics tables log; its "Applying Weight Compression" bar prints to the terminal
    with quiet("nncf", output=not show_progress_bar):
        compressed = nncf.compress_weights(model, mode=nncf.CompressWeightsMode.INT8_SYM)
    openvino.save_model(compressed, str(folder / "model.xml"))


def exported(model: torch.nn.Module, weights: str, backend: str, quantization: str | None,
             folder: Path, show_progress_bar: bool = False) -> Path:
    """The folder of ``model``'s export for this backend and quantization, made if missing
    (quantizers' bars shown only with ``show_progress_bar``)."""
    root = folder / "exports" / _EXPORT_FORMAT / weights
    base = folder_in_place(root / "onnx", lambda tmp: _export_onnx(model, tmp))
    if quantization is None:
        return base
    if backend == "onnx":
        return folder_in_place(root / f"{backend}-{quantization}",
                               lambda tmp: _quantize_onnx(base, tmp))
    return folder_in_place(root / f"{backend}-{quantization}",
                           lambda tmp: _quantize_openvino(base, tmp, show_progress_bar))


def _onnxruntime_forward(path: Path) -> Forward:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path / "model.onnx"),
                                           providers=["CPUExecutionProvider"])

    def forward(input_ids: torch.Tensor, mask: torch.Tensor) -> list[torch.Tensor]:
        outputs = session.run(None, {"input_ids": input_ids.numpy().astype(np.int64),
                                     "attention_mask": mask.numpy().astype(np.int64)})
        return [torch.from_numpy(o) for o in outputs]

    return forward


def _openvino_forward(path: Path, dtype: str) -> Forward:
    import openvino

    files = sorted(path.glob("model.xml")) or sorted(path.glob("model.onnx"))
    hint = {"bfloat16": "bf16", "float32": "f32"}[dtype]
    compiled = openvino.Core().compile_model(str(files[0]), "CPU",
                                             {"INFERENCE_PRECISION_HINT": hint})
    request = compiled.create_infer_request()
    lock = threading.Lock()  # one request object: calls from several threads take turns

    def forward(input_ids: torch.Tensor, mask: torch.Tensor) -> list[torch.Tensor]:
        with lock:
            results = request.infer({"input_ids": input_ids.numpy().astype(np.int64),
                                     "attention_mask": mask.numpy().astype(np.int64)})
            return [torch.from_numpy(np.array(results[out])) for out in compiled.outputs]

    return forward


def runtime_forward(model: torch.nn.Module, weights: str, backend: str,
                    quantization: str | None, dtype: str, folder: Path,
                    show_progress_bar: bool = False) -> Forward:
    """A function computing ``model``'s hidden states on ``backend``, kept in the process's
    artifact store (its size: the exported model's files, which the session holds)."""
    def make() -> Forward:
        require_backend(backend)
        path = exported(model, weights, backend, quantization, folder, show_progress_bar)
        forward = (_onnxruntime_forward(path) if backend == "onnx"
                   else _openvino_forward(path, dtype))
        forward.nbytes = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
        return forward

    key = (weights, backend, quantization, dtype)  # any folder's export gives the same one
    return ARTIFACTS.get_or_make("runtime", key, make, nbytes=lambda f: f.nbytes)
