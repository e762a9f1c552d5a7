"""Run an encoder's forward pass on ONNX Runtime or OpenVINO, optionally with int8 weights.

The torch model is exported once per weights (all hidden states as outputs, batch and length
dynamic) into ``<folder>/exports/v3/<weights>/``: to ONNX for ONNX Runtime
(``torch.onnx.export``, folder ``onnx``), to OpenVINO's format for OpenVINO
(``openvino.convert_model``, folder ``openvino``). int8 is made from that export, beside it:

- ``onnx`` + ``int8``: ONNX Runtime's block-wise 8-bit ``MatMulNBits`` (blocks of 32, the
  activations quantized per block at run time, ``accuracy_level=4`` = int8 dot products).
  Chosen by measurement: per-tensor dynamic quantization (``quantize_dynamic``, per channel)
  was about as fast but its vectors fell to cosine 0.97 of the float32 ones on MiniLM; the
  block-wise form kept 0.997 (docs/benchmarks.md).
- ``openvino`` + ``int8``: NNCF's int8 weight compression (asymmetric, per channel), which
  OpenVINO multiplies with int8 activations it quantizes per token in groups of
  :data:`OPENVINO_INT8_GROUP` channels; the rest of the graph runs in ``dtype``. Symmetric
  weights with OpenVINO's default groups of 32 (until 0.3) ran 0.87-0.89x as fast at a lower
  worst-text cosine (docs/benchmarks.md).

OpenVINO compiles, per member, a model whose results are only the layers it reads, on one
single-thread stream per torch thread, and the encoder keeps a batch in flight on each
(:class:`_OpenVINORun`): other jobs on the cores then slow it by their share.

Compiled runtimes are kept per process, so clones and reloaded pickles share one. Exports
are written to a temporary folder and renamed into place, so concurrent processes (Dask
workers) never read half a file.

Import rule: torch, the standard library, ``skstack._config``, ``skstack._files``,
``skstack._loading``, ``skstack._packed`` and ``skstack.artifacts``; onnx, onnxruntime,
openvino and nncf are imported when a backend needs them.
"""

from __future__ import annotations

import collections
import copy
import importlib.util
import platform
import queue
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch

from skstack._config import home_folder, quiet
from skstack._files import folder_in_place
from skstack._loading import native_bfloat16, onednn_isa_limit, resolve_devices
from skstack._packed import packed_forward, packs
from skstack.artifacts import ARTIFACTS

BACKENDS = ("torch", "onnx", "openvino")
QUANTIZATIONS = ("int8",)
AUTO = "auto"  # backend and quantization chosen per machine at fit (auto_runtime)
_EXTRAS = {"onnx": ("onnx", "onnxruntime", "onnxscript"), "openvino": ("openvino", "nncf")}
# a change to how exports are made gets a new folder, never old files (v2: OpenVINO models
# converted from torch directly, float32 weights kept; v3: OpenVINO int8 weights asymmetric)
EXPORT_FORMAT = "v3"
# OpenVINO runs int8 weights' products on int8 activations it quantizes per token, in groups
# of this many channels: 64 with asymmetric weights ran 1.12-1.15x the 32 of symmetric ones,
# at a higher worst-text cosine (0.993 against 0.991; docs/benchmarks.md, "Speed on any CPU")
OPENVINO_INT8_GROUP = 64

# (input_ids, attention_mask) -> the hidden states a member reads, float32
Forward = Callable[[torch.Tensor, torch.Tensor], list[torch.Tensor]]


def _missing(backend: str) -> list[str]:
    return [name for name in _EXTRAS.get(backend, ()) if importlib.util.find_spec(name) is None]


def require_backend(backend: str) -> None:
    """Raise ImportError naming the extra to install when a backend's packages are missing."""
    missing = _missing(backend)
    if missing:
        raise ImportError(f"backend={backend!r} needs {', '.join(missing)}; install them with "
                          f"pip install 'skstack[{backend}]'.")


def auto_runtime(device: torch.device, native_bf16: bool, backend: str,
                 quantization: str | None, dtype: str) -> tuple[str, str | None]:
    """``(backend, quantization)`` with ``"auto"`` resolved for this device and CPU class.

    By measurement (docs/scaling.md, "Which backend runs"): where bfloat16 is native
    (AVX512-BF16 or AMX) torch in bfloat16 encoded as fast as OpenVINO int8 (2.7x and 2.8x
    sentence-transformers' float32 on a Zen 4 EPYC) at cosine 0.9997 instead of 0.991, with
    no export, so torch stays; on an x86 CPU without it (AVX2: Zen 3) torch float32 ran at
    1.0x and OpenVINO int8 at 2.6x, so OpenVINO is taken where it is installed (the default
    install). ONNX Runtime is never chosen: its int8 speed swung 0.4x-1.9x from run to run on
    AVX2. Torch stays on a GPU, on CPUs other than x86 (not measured), with an explicit
    float16 or bfloat16 ``dtype``, and under an ``ONEDNN_MAX_CPU_ISA`` limit (OpenVINO picks
    its kernels by the CPU's real flags, then fails to build them under the limit: seen for
    int8 and bfloat16 layers). ``quantization="auto"`` is int8 on a runtime backend and none
    on torch; an explicit int8 makes ``"auto"`` pick a runtime.
    """
    if backend == AUTO:
        wants_runtime = (quantization == "int8" or not native_bf16) and dtype in (
            AUTO, "float32")
        measured = device.type == "cpu" and platform.machine().lower() in ("x86_64", "amd64")
        backend = ("openvino" if measured and wants_runtime and not _missing("openvino")
                   and onednn_isa_limit() is None else "torch")
    if quantization == AUTO:
        quantization = None if backend == "torch" else "int8"
    return backend, quantization


@dataclass(frozen=True)
class Runtime:
    """Where and how an encoder runs, its ``"auto"`` parameters resolved for this machine."""

    device: torch.device
    backend: str
    quantization: str | None
    dtype: str
    native_bfloat16: bool

    @property
    def resolved(self) -> tuple[torch.device, str, str | None, str]:
        return self.device, self.backend, self.quantization, self.dtype


def resolve_runtime(device, backend: str, quantization: str | None, dtype: str) -> Runtime:
    """An encoder's device, backend, quantization and dtype on this machine (``"auto"``
    resolved by :func:`auto_runtime`), each combination checked (:func:`check_backend`)."""
    check_backend(backend, quantization, device, dtype)
    first = resolve_devices(device if backend in ("torch", AUTO) else "cpu")[0]
    native = native_bfloat16(first)
    chosen, quantized = auto_runtime(first, native, backend, quantization, dtype)
    check_backend(chosen, quantized, device, dtype, chosen_by=backend)
    # ONNX Runtime's CPU kernels have no bfloat16 path worth taking: it runs float32
    bf16 = native and chosen != "onnx"
    resolved = ("bfloat16" if bf16 else "float32") if dtype == "auto" else dtype
    return Runtime(first, chosen, quantized, resolved, native)


DTYPES = {"float32": torch.float32, "float16": torch.float16,
                 "bfloat16": torch.bfloat16}


def placed(model: torch.nn.Module, device: torch.device, dtype: str, backend: str,
           shared: bool) -> torch.nn.Module:
    """``model`` on ``device`` in ``dtype`` (float32 on a runtime backend, which exports
    it); a ``shared`` model (a loaded pretrained one) is copied first when moving or casting
    would change it for other embedders."""
    torch_dtype = DTYPES[dtype] if backend == "torch" else torch.float32
    if shared and (device.type != "cpu" or torch_dtype != torch.float32):
        model = copy.deepcopy(model)
    return model.to(device, torch_dtype)


def check_backend(backend: str, quantization: str | None, device, dtype: str,
                  chosen_by: str | None = None) -> None:
    """Refuse what a backend cannot do with an encoder's ``device`` and ``dtype``, before
    anything loads (``"auto"`` passes; it is checked again once resolved, ``chosen_by``
    naming the ``"auto"`` that chose ``backend``)."""
    chosen = "" if chosen_by in (None, backend) else \
        f" (backend={chosen_by!r} chose {backend!r} here)"
    if backend == AUTO:
        return
    if backend == "torch":
        if quantization not in (None, AUTO):
            raise ValueError(f"quantization={quantization!r} needs backend='onnx' or "
                             f"'openvino'{chosen}; the torch backend runs float32, float16 "
                             "or bfloat16 (dtype).")
        return
    require_backend(backend)
    if device not in ("auto", "cpu"):
        raise ValueError(f"backend={backend!r} runs on the CPU; device={device!r} "
                         "needs backend='torch'.")
    allowed = ("float32",) if backend == "onnx" else ("float32", "bfloat16")
    if dtype not in (*allowed, "auto"):
        raise ValueError(f"backend={backend!r} runs dtype in {allowed} (or 'auto'); "
                         f"got dtype={dtype!r}.")


def layer_forward(model: torch.nn.Module, layer_indices: list[int], backend: str,
                  quantization: str | None, dtype: str, weights: str | None,
                  show_progress_bar: bool = False) -> Forward:
    """One interface for every backend: a function from (input_ids, attention_mask) to the
    hidden states at ``layer_indices``. Torch runs a BERT-family ``model`` on packed tokens
    (:func:`~skstack._packed.packed_forward`), any other ``model`` itself (asking only for
    the last layer when that is all it needs); ONNX Runtime and OpenVINO run its export
    (:func:`runtime_forward`, made once per ``weights`` and layers)."""
    if backend != "torch":
        return runtime_forward(model, weights, backend, quantization, dtype, home_folder(),
                               show_progress_bar, tuple(layer_indices))
    if packs(model):
        return packed_forward(model, layer_indices)
    last = [model.config.num_hidden_layers]

    def forward(ids: torch.Tensor, mask: torch.Tensor) -> list[torch.Tensor]:
        if layer_indices == last:
            return [model(input_ids=ids, attention_mask=mask).last_hidden_state]
        output = model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
        return [output.hidden_states[i] for i in layer_indices]

    return forward


class _AllStates(torch.nn.Module):
    """The encoder as a function of (input_ids, attention_mask) to its hidden states."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask):
        output = self.model(input_ids=input_ids, attention_mask=attention_mask,
                            output_hidden_states=True)
        return tuple(output.hidden_states)


def _example_inputs(model: torch.nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """Two tensors to trace with (one passed twice would be exported as one input), the ids
    inside the vocabulary."""
    ids = torch.arange(16, dtype=torch.long).reshape(2, 8) % model.config.vocab_size
    return ids, torch.ones((2, 8), dtype=torch.long)


def _export_onnx(model: torch.nn.Module, folder: Path) -> None:
    """``model`` (float32, on the CPU) as ``folder/model.onnx``."""
    n_states = model.config.num_hidden_layers + 1
    batch, length = torch.export.Dim("batch"), torch.export.Dim("length")
    with warnings.catch_warnings(), quiet("torch.onnx"):
        warnings.simplefilter("ignore")  # the exporter's notes on dynamic shapes and packages
        torch.onnx.export(
            _AllStates(model.eval()), _example_inputs(model),
            str(folder / "model.onnx"), dynamo=True, verbose=False,
            # inputs keep forward()'s argument names (the exporter's input_names renamed them
            # in another order, feeding the mask to the embeddings)
            output_names=[f"hidden_state_{i}" for i in range(n_states)],
            dynamic_shapes={"input_ids": {0: batch, 1: length},
                            "attention_mask": {0: batch, 1: length}},
        )


def _convert_openvino(model: torch.nn.Module, folder: Path) -> None:
    """``model`` as OpenVINO's ``folder/model.xml``, converted from torch directly: about 3 s
    for MiniLM against 8 s through an ONNX export, with no onnx packages. Batch and length
    stay dynamic; weights stay float32 (``save_model`` would halve them by default)."""
    import openvino

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer notes on the attention mask's shape checks
        converted = openvino.convert_model(_AllStates(model.eval()),
                                           example_input=_example_inputs(model))
    openvino.save_model(converted, str(folder / "model.xml"), compress_to_fp16=False)


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

    model = openvino.Core().read_model(str(source / "model.xml"))
    # its statistics tables log; its "Applying Weight Compression" bar prints to the terminal
    with quiet("nncf", output=not show_progress_bar):
        compressed = nncf.compress_weights(model, mode=nncf.CompressWeightsMode.INT8_ASYM)
    openvino.save_model(compressed, str(folder / "model.xml"), compress_to_fp16=False)


def exported(model: torch.nn.Module, weights: str, backend: str, quantization: str | None,
             folder: Path, show_progress_bar: bool = False) -> Path:
    """The folder of ``model``'s export for this backend and quantization, made if missing
    (quantizers' bars shown only with ``show_progress_bar``)."""
    root = folder / "exports" / EXPORT_FORMAT / weights
    if backend == "onnx":
        base = folder_in_place(root / "onnx", lambda tmp: _export_onnx(model, tmp))
        quantize = _quantize_onnx
    else:
        base = folder_in_place(root / "openvino", lambda tmp: _convert_openvino(model, tmp))
        quantize = partial(_quantize_openvino, show_progress_bar=show_progress_bar)
    if quantization is None:
        return base
    return folder_in_place(root / f"{backend}-{quantization}", lambda tmp: quantize(base, tmp))


def _inputs(input_ids: torch.Tensor, mask: torch.Tensor) -> dict[str, np.ndarray]:
    """A runtime's inputs: the exports take int64 ids and mask."""
    return {"input_ids": input_ids.numpy().astype(np.int64),
            "attention_mask": mask.numpy().astype(np.int64)}


def _onnxruntime_forward(path: Path, states: tuple[int, ...]) -> Forward:
    """The hidden states numbered ``states`` (indices into all of them, embeddings first)."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path / "model.onnx"),
                                           providers=["CPUExecutionProvider"])
    names = [session.get_outputs()[i].name for i in states]

    def forward(input_ids: torch.Tensor, mask: torch.Tensor) -> list[torch.Tensor]:
        return [torch.from_numpy(o) for o in session.run(names, _inputs(input_ids, mask))]

    return forward


class _OpenVINORun:
    """An OpenVINO model's forward pass (a :data:`Forward`) on one stream per thread, each
    stream one thread; :meth:`each` keeps a batch in flight on every stream.

    Streams instead of threads sharing each product: beside another 2-thread job on 2
    cores, one request on 2 threads ran 5.7-7.3x slower than quiet (each product waits for
    the thread that is descheduled), 2 streams of one thread 1.5-1.9x, and quiet the same
    or faster (docs/benchmarks.md, "OpenVINO on streams"). A text's states are the same bits
    on any stream or thread count (checked on MiniLM, int8 and bfloat16, and
    multilingual-e5-small's int8)."""

    def __init__(self, compiled, streams: int) -> None:
        self.streams = streams
        self._n_outputs = len(compiled.outputs)
        self._free: queue.SimpleQueue = queue.SimpleQueue()
        for _ in range(streams):
            self._free.put(compiled.create_infer_request())

    def _read(self, request) -> list[torch.Tensor]:
        return [torch.from_numpy(np.array(request.get_output_tensor(i).data))
                for i in range(self._n_outputs)]

    def __call__(self, input_ids: torch.Tensor, mask: torch.Tensor) -> list[torch.Tensor]:
        out = []
        self.each([(None, input_ids, mask)], lambda _, states: out.append(states))
        return out[0]

    def _finish(self, pending: collections.deque, consume: Callable) -> None:
        tag, request = pending.popleft()
        try:
            request.wait()
            states = self._read(request)
        finally:
            self._free.put(request)
        consume(tag, states)

    def each(self, batches: Iterable[tuple[object, torch.Tensor, torch.Tensor]],
             consume: Callable[[object, list[torch.Tensor]], None]) -> None:
        """``consume(tag, states)`` for each ``(tag, input_ids, mask)`` of ``batches``, in
        their order, the next batches running meanwhile. Several threads may share the
        streams: one that holds a stream never waits for another to free one."""
        pending: collections.deque = collections.deque()
        try:
            for tag, input_ids, mask in batches:
                inputs = _inputs(input_ids, mask)
                while True:
                    try:
                        request = self._free.get(block=not pending)
                        break
                    except queue.Empty:  # every stream busy: take in our oldest batch
                        self._finish(pending, consume)
                try:
                    request.start_async(inputs)
                except BaseException:
                    self._free.put(request)
                    raise
                pending.append((tag, request))
            while pending:
                self._finish(pending, consume)
        finally:  # a failure: the batches still running end before their streams go back
            for _, request in pending:
                request.wait()
                self._free.put(request)


def _openvino_forward(path: Path, dtype: str, group: int | None = None,
                      states: tuple[int, ...] | None = None, streams: int | None = None
                      ) -> _OpenVINORun:
    """The hidden states numbered ``states`` (indices into all of them, embeddings first;
    None: all), on ``streams`` streams sharing torch's threads (None: one thread each;
    int8 weights in bfloat16: one stream on every thread). ``group``: the channels per
    activation scale of int8 weights' products (0: none, the weights turned back to float;
    None: OpenVINO's default)."""
    import openvino

    threads = torch.get_num_threads()
    # int8 weights in bfloat16 on several streams gave wrong states on OpenVINO 2026.4 (a
    # BERT of hidden size 32, every time; MiniLM's were right): one stream, every thread
    if streams is None:
        streams = 1 if group and dtype == "bfloat16" else threads
    config = {"INFERENCE_PRECISION_HINT": {"bfloat16": "bf16", "float32": "f32"}[dtype],
              "NUM_STREAMS": str(streams), "INFERENCE_NUM_THREADS": str(threads)}
    if group is not None:
        config["DYNAMIC_QUANTIZATION_GROUP_SIZE"] = str(group)
    core = openvino.Core()
    model = core.read_model(str(path / "model.xml"))
    if states is not None:
        # a model whose only results are the states read: each result is a copy out of the
        # plugin's buffers, and the unread six of MiniLM's seven cost 10 % of a forward pass
        # (docs/benchmarks.md, "Speed on any CPU")
        model = openvino.Model([model.outputs[i] for i in states], model.get_parameters())
    return _OpenVINORun(core.compile_model(model, "CPU", config), streams)


def each_batch(forward: Forward, batches: Iterable[tuple[object, torch.Tensor, torch.Tensor]],
               consume: Callable[[object, list[torch.Tensor]], None]) -> None:
    """``consume(tag, forward(input_ids, mask))`` for each ``(tag, input_ids, mask)`` of
    ``batches``, in order; on OpenVINO with the next batches running meanwhile."""
    if isinstance(forward, _OpenVINORun):
        forward.each(batches, consume)
        return
    for tag, input_ids, mask in batches:
        consume(tag, forward(input_ids, mask))


def runtime_forward(model: torch.nn.Module, weights: str, backend: str,
                    quantization: str | None, dtype: str, folder: Path,
                    show_progress_bar: bool = False, states: tuple[int, ...] = (-1,)
                    ) -> Forward:
    """A function computing ``model``'s hidden states numbered ``states`` (embeddings
    first) on ``backend``, kept in the process's artifact store (OpenVINO's per torch thread
    count; its size: the exported model's files, which the session holds)."""
    def make() -> Forward:
        require_backend(backend)
        path = exported(model, weights, backend, quantization, folder, show_progress_bar)
        group = OPENVINO_INT8_GROUP if quantization else None
        forward = (_onnxruntime_forward(path, states) if backend == "onnx"
                   else _openvino_forward(path, dtype, group, states))
        forward.nbytes = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
        return forward

    # any folder's export gives the same one; OpenVINO's streams follow torch's thread count
    threads = torch.get_num_threads() if backend == "openvino" else None
    key = (weights, backend, quantization, dtype, states, threads)
    return ARTIFACTS.get_or_make("runtime", key, make, nbytes=lambda f: f.nbytes)
