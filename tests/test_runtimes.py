"""EncoderEmbedder on ONNX Runtime and OpenVINO: same outputs contract as torch, exports made
once and kept beside the cache, precisions and backends never sharing cached vectors."""

from __future__ import annotations

import importlib.util
import os
import pickle
import threading

import numpy as np
import pytest
import torch

from conftest import FIXTURE_TEXTS
from skstack import EncoderEmbedder
from skstack._threads import own_threads
from skstack.artifacts import ARTIFACTS

TEXTS = FIXTURE_TEXTS


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)


@pytest.fixture(scope="module")
def reference(tiny_bert):
    return EncoderEmbedder(tiny_bert, cache=None, layers="-1,-2").fit(TEXTS).transform(TEXTS)


def _truncate(folder):
    for file in folder.rglob("*.bin"):
        file.write_bytes(file.read_bytes()[:100])


def _empty(folder):
    for file in folder.iterdir():
        file.unlink()


@pytest.mark.parametrize("damage", [_truncate, _empty])
def test_a_damaged_export_is_made_again(tiny_bert, reference, home, damage):
    pytest.importorskip("openvino")
    ARTIFACTS.discard("runtime")
    embed = EncoderEmbedder(tiny_bert, backend="openvino", layers="-1,-2", cache=None,
                            dtype="float32").fit(TEXTS)
    embed.transform(TEXTS)
    [folder] = [p.parent for p in (home / "exports").rglob("model.xml")]
    damage(folder)
    ARTIFACTS.discard("runtime")  # a new process: the export is read from disk again
    with pytest.warns(RuntimeWarning, match=r"openvino was damaged or incomplete \(its files "
                                            r"do not match the checksums"):
        out = EncoderEmbedder(tiny_bert, backend="openvino", layers="-1,-2", cache=None,
                              dtype="float32").fit(TEXTS).transform(TEXTS)
    np.testing.assert_allclose(out, reference, atol=2e-4)
    assert [p.name for p in folder.parent.iterdir()] == ["openvino"]  # nothing left aside


@pytest.mark.parametrize("backend", ["onnx", "openvino"])
def test_float32_runtime_matches_torch_and_exports_once(backend, tiny_bert, reference, home):
    tmp_path = home  # exports go under the home folder
    pytest.importorskip("onnxruntime" if backend == "onnx" else "openvino")
    ARTIFACTS.discard("runtime")
    emb = EncoderEmbedder(tiny_bert, backend=backend, layers="-1,-2", cache=tmp_path,
                          dtype="float32").fit(TEXTS)
    out = emb.transform(TEXTS)
    assert out.dtype == np.float32 and out.shape == reference.shape
    np.testing.assert_allclose(out, reference, atol=2e-4)
    exports = list((tmp_path / "exports").rglob("model.onnx" if backend == "onnx"
                                                else "model.xml"))
    assert len(exports) == 1
    stamp = exports[0].stat().st_mtime_ns
    EncoderEmbedder(tiny_bert, backend=backend, layers=-1, cache=tmp_path).fit(
        TEXTS).transform(TEXTS[:3])
    assert exports[0].stat().st_mtime_ns == stamp  # the same weights are exported once


@pytest.mark.parametrize("backend", ["onnx", "openvino"])
def test_int8_is_close_to_float32_and_keeps_its_own_cache_entries(backend, tiny_bert,
                                                                  reference, home):
    tmp_path = home  # the cache and the exports in one folder
    pytest.importorskip("onnxruntime" if backend == "onnx" else "nncf")
    ARTIFACTS.discard("runtime")  # an earlier test's runtime would be reused, not exported
    fp32 = EncoderEmbedder(tiny_bert, backend=backend, layers="-1,-2", cache=tmp_path).fit(TEXTS)
    int8 = EncoderEmbedder(tiny_bert, backend=backend, quantization="int8", layers="-1,-2",
                           cache=tmp_path).fit(TEXTS)
    torch_fp = EncoderEmbedder(tiny_bert, layers="-1,-2", cache=tmp_path).fit(TEXTS)
    assert len({fp32.fingerprint_, int8.fingerprint_, torch_fp.fingerprint_}) == 3
    out = int8.transform(TEXTS)
    assert out.dtype == np.float32
    assert _cosines(out, reference).min() > 0.98
    assert not np.array_equal(out, fp32.transform(TEXTS))  # really quantized
    assert (tmp_path / "exports").is_dir()


def test_openvino_int8_has_asymmetric_weights_and_activations_in_groups_of_64(
        tiny_bert, home, monkeypatch):
    # the settings benchmarks/bench_int8_static.py measured faster and closer than
    # symmetric weights with OpenVINO's default groups of 32
    openvino = pytest.importorskip("openvino")
    pytest.importorskip("nncf")
    ARTIFACTS.discard("runtime")
    configs = []
    compile_model = openvino.Core.compile_model
    monkeypatch.setattr(openvino.Core, "compile_model", lambda core, path, device, config: (
        configs.append(config) or compile_model(core, path, device, config)))
    EncoderEmbedder(tiny_bert, backend="openvino", quantization="int8", dtype="float32",
                    cache=None).fit(TEXTS).transform(TEXTS)
    streams = str(torch.get_num_threads())
    assert configs == [{"INFERENCE_PRECISION_HINT": "f32", "NUM_STREAMS": streams,
                        "INFERENCE_NUM_THREADS": streams, "DYNAMIC_QUANTIZATION_GROUP_SIZE": "64"}]
    [xml] = (home / "exports").rglob("openvino-int8/model.xml")
    weights = {op.get_output_element_type(0).get_type_name() for op in
               openvino.Core().read_model(xml).get_ops() if op.get_type_name() == "Constant"}
    assert "u8" in weights and "i8" not in weights  # unsigned codes with zero points


@pytest.mark.parametrize("backend", ["onnx", "openvino"])
def test_a_runtime_returns_only_the_states_read_bitwise_as_from_all_of_them(
        backend, tiny_bert, home, monkeypatch):
    # each output of a compiled model is a copy out of the runtime's buffers: reading one
    # layer of seven made the forward pass 8-11 % slower (docs/benchmarks.md)
    from skstack._runtimes import layer_forward, runtime_forward

    openvino = pytest.importorskip("onnxruntime" if backend == "onnx" else "openvino")
    ARTIFACTS.discard("runtime")
    emb = EncoderEmbedder(tiny_bert, cache=None).fit(TEXTS)
    compiled = []
    if backend == "openvino":
        compile_model = openvino.Core.compile_model
        monkeypatch.setattr(openvino.Core, "compile_model", lambda core, model, *a: (
            compiled.append(len(model.outputs)) or compile_model(core, model, *a)))
    read = layer_forward(emb.model_, [-1, 1], backend, None, "float32", "w")
    every = runtime_forward(emb.model_, "w", backend, None, "float32", home,
                            states=tuple(range(emb.model_.config.num_hidden_layers + 1)))
    ids = torch.tensor([[2, 5, 7, 3], [2, 9, 3, 0]])
    mask = (ids > 0).long()
    got, full = read(ids, mask), every(ids, mask)
    assert len(got) == 2
    assert torch.equal(got[0], full[-1]) and torch.equal(got[1], full[1])
    if backend == "openvino":
        assert compiled == [2, emb.model_.config.num_hidden_layers + 1]


def _batches(n: int, width: int = 6) -> list[tuple[int, torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, 90, (n, 3, width), generator=g)
    return [(i, ids[i], torch.ones_like(ids[i])) for i in range(n)]


def test_openvino_keeps_a_batch_per_stream_in_flight_and_hands_back_each_in_order(tiny_bert,
                                                                                   home):
    pytest.importorskip("openvino")
    from skstack._runtimes import each_batch, runtime_forward

    ARTIFACTS.discard("runtime")
    emb = EncoderEmbedder(tiny_bert, cache=None).fit(TEXTS)
    with own_threads():
        torch.set_num_threads(2)
        forward = runtime_forward(emb.model_, "w", "openvino", None, "float32", home)
    assert forward.streams == 2
    with own_threads():  # another thread count: streams of its own, the same bits
        torch.set_num_threads(1)
        one = runtime_forward(emb.model_, "w", "openvino", None, "float32", home)
    assert one.streams == 1
    batches = _batches(7)
    got = []
    each_batch(forward, batches, lambda tag, states: got.append((tag, states[0])))
    assert [tag for tag, _ in got] == list(range(7))
    for (_, ids, mask), (_, states) in zip(batches, got, strict=True):
        assert torch.equal(states, forward(ids, mask)[0])  # the same bits, one at a time
        assert torch.equal(states, one(ids, mask)[0])

    def fail(tag, states):  # a failure while the next batch runs frees every stream
        if tag == 1:
            raise ValueError("stop")

    with pytest.raises(ValueError, match="stop"):
        each_batch(forward, batches, fail)
    assert forward._free.qsize() == 2
    # threads sharing the streams, each holding one while it waits for another: no deadlock
    results = {}
    workers = [threading.Thread(target=each_batch, args=(forward, batches, (
        lambda tag, states, w=w: results.setdefault(w, []).append(tag)))) for w in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert results == {w: list(range(7)) for w in range(3)}


def test_word_mode_on_onnx_matches_torch(tiny_bert, tmp_path):
    pytest.importorskip("onnxruntime")
    words = EncoderEmbedder(tiny_bert, word_pooling="mean", cache=None).fit(TEXTS)
    onnx = EncoderEmbedder(tiny_bert, word_pooling="mean", backend="onnx",
                           cache=tmp_path).fit(TEXTS)
    a, b = words.transform(TEXTS), onnx.transform(TEXTS)
    assert a.shape == b.shape
    np.testing.assert_array_equal(a.lengths, b.lengths)
    for i in range(len(TEXTS)):  # the word states are cached as float16
        np.testing.assert_allclose(a.words(i), b.words(i), atol=2e-3)


def test_pickled_runtime_embedder_loads_and_runs(tiny_bert, tmp_path):
    pytest.importorskip("onnxruntime")
    emb = EncoderEmbedder(tiny_bert, backend="onnx", quantization="int8",
                          cache=tmp_path).fit(TEXTS)
    loaded = pickle.loads(pickle.dumps(emb))
    np.testing.assert_array_equal(loaded.set_params(cache=None).transform(TEXTS),
                                  emb.transform(TEXTS))


def test_runtime_settings_are_checked_before_loading(tiny_bert):
    with pytest.raises(ValueError, match="quantization='int8' needs backend='onnx' or"):
        EncoderEmbedder(tiny_bert, quantization="int8").fit(TEXTS)
    if importlib.util.find_spec("onnxruntime") is None:
        pytest.skip("onnxruntime is not installed")
    with pytest.raises(ValueError, match=r"backend='onnx' runs dtype in \('float32',\)"):
        EncoderEmbedder(tiny_bert, backend="onnx", dtype="bfloat16").fit(TEXTS)
    with pytest.raises(ValueError, match="runs on the CPU; device='cuda:1'"):
        EncoderEmbedder(tiny_bert, backend="onnx", device="cuda:1").fit(TEXTS)
    emb = EncoderEmbedder(tiny_bert, backend="onnx", dtype="auto", cache=None).fit(TEXTS)
    assert emb.dtype_ == "float32" and emb.device_.type == "cpu"


def test_a_missing_runtime_names_the_extra_to_install(tiny_bert, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "openvino" else real(name, *a))
    with pytest.raises(ImportError, match=r"pip install 'skstack\[openvino\]'"):
        EncoderEmbedder(tiny_bert, backend="openvino").fit(TEXTS)


@pytest.mark.parametrize("show", [False, True])
def test_quantizing_prints_its_bar_only_when_asked(show, tiny_bert, tmp_path):
    pytest.importorskip("nncf")
    import subprocess
    import sys

    # in a process of its own, as a user's script: NNCF draws on the real stdout
    script = ("from skstack import EncoderEmbedder\n"
              f"EncoderEmbedder({tiny_bert!r}, backend='openvino', quantization='int8', "
              f"cache={str(tmp_path)!r}, show_progress_bar={show}).fit(['a b']).transform(['a'])")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "SKSTACK_HOME": str(tmp_path)})
    assert done.returncode == 0, done.stderr[-2000:]
    assert ("Applying Weight Compression" in done.stdout + done.stderr) is show


@pytest.mark.parametrize(("native", "limit", "dtype", "quantization", "expected"), [
    (False, None, "auto", "auto", ("openvino", "int8", "float32")),  # an AVX2 CPU
    (True, None, "auto", "auto", ("torch", None, "bfloat16")),  # AVX512-BF16 or AMX
    (True, None, "auto", "int8", ("openvino", "int8", "bfloat16")),  # int8 asked for
    (False, "AVX2", "auto", "auto", ("torch", None, "float32")),  # OpenVINO fails under it
    (False, None, "float16", "auto", ("torch", None, "float16")),  # a precision torch runs
    (False, None, "auto", None, ("openvino", None, "float32")),
    (False, "aarch64", "auto", "auto", ("torch", None, "float32")),  # not measured there
])
def test_auto_backend_follows_the_cpu_class(native, limit, dtype, quantization, expected,
                                            tiny_bert, reference, home, monkeypatch):
    pytest.importorskip("nncf")
    monkeypatch.setattr("skstack._runtimes.native_bfloat16", lambda device: native)
    machine = "aarch64" if limit == "aarch64" else "x86_64"
    monkeypatch.setattr("skstack._runtimes.platform.machine", lambda: machine)
    limit = None if limit == "aarch64" else limit
    if limit:
        monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", limit)
    emb = EncoderEmbedder(tiny_bert, backend="auto", quantization=quantization, dtype=dtype,
                          layers="-1,-2", cache=None).fit(TEXTS)
    assert (emb.backend_, emb.quantization_, emb.dtype_) == expected
    if expected[0] == "openvino":  # really run there, close to torch float32
        assert emb.fingerprint_ != EncoderEmbedder(tiny_bert, layers="-1,-2").fit(
            TEXTS).fingerprint_
        assert _cosines(emb.transform(TEXTS), reference).min() > 0.98


def test_auto_backend_without_openvino_is_torch(tiny_bert, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "openvino" else real(name, *a))
    monkeypatch.setattr("skstack._runtimes.native_bfloat16", lambda device: False)
    emb = EncoderEmbedder(tiny_bert, backend="auto", quantization="auto", cache=None).fit(TEXTS)
    assert (emb.backend_, emb.quantization_) == ("torch", None)
    with pytest.raises(ValueError, match=r"needs backend='onnx' or 'openvino' \(backend='auto' "
                                         r"chose 'torch' here\)"):
        EncoderEmbedder(tiny_bert, backend="auto", quantization="int8").fit(TEXTS)


def test_the_chosen_backend_is_kept_by_a_saved_model(tiny_bert, home, tmp_path, monkeypatch):
    pytest.importorskip("nncf")
    from skstack import load, save

    monkeypatch.setattr("skstack._runtimes.native_bfloat16", lambda device: False)
    monkeypatch.setattr("skstack._runtimes.platform.machine", lambda: "x86_64")
    emb = EncoderEmbedder(tiny_bert, backend="auto", quantization="auto", cache=None).fit(TEXTS)
    save(emb, tmp_path / "emb.skstack")
    # loaded on a machine of the other class: the vectors the model was fitted on stay
    monkeypatch.setattr("skstack._runtimes.native_bfloat16", lambda device: True)
    loaded = load(tmp_path / "emb.skstack")
    assert (loaded.backend_, loaded.quantization_, loaded.dtype_) == ("openvino", "int8",
                                                                      "float32")
    np.testing.assert_array_equal(loaded.transform(TEXTS), emb.transform(TEXTS))
