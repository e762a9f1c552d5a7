"""The process's one store for built artifacts: one bound, one eviction rule, made once."""

import threading
import time

import numpy as np
import pytest
import torch

from skstack import EncoderEmbedder
from skstack.artifacts import ARTIFACTS, ArtifactStore, size_of


def test_one_byte_bound_over_every_kind_least_recently_used_first():
    store = ArtifactStore(max_bytes=100)
    store.put("encoder", "a", np.zeros(40, np.uint8))
    store.put("vectors", "b", np.zeros(40, np.uint8))
    assert store.get("encoder", "a") is not None  # "b" is now the least recently used
    store.put("runtime", "c", object(), nbytes=40)
    assert store.keys("vectors") == [] and store.keys("encoder") == ["a"]
    assert store.nbytes == 80
    store.put("fine-tuned", "huge", np.zeros(500, np.uint8))  # over the bound alone: kept
    assert store.keys("fine-tuned") == ["huge"] and store.nbytes == 500
    store.discard("fine-tuned")
    assert store.nbytes == 0 and store.get("fine-tuned", "huge") is None


def test_sizes_are_counted_from_arrays_tensors_and_modules():
    module = torch.nn.Linear(10, 2)  # 20 weights + 2 biases, float32
    assert size_of(module) == 22 * 4
    assert size_of({"w": torch.zeros(3, dtype=torch.float16), "a": np.zeros(2)}) == 6 + 16


def test_an_entry_is_made_once_even_by_threads_asking_together():
    store, calls = ArtifactStore(max_bytes=10**6), []

    def make():
        calls.append(1)
        time.sleep(0.05)
        return np.ones(3)

    threads = [threading.Thread(target=store.get_or_make, args=("encoder", "k", make))
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
    np.testing.assert_array_equal(store.get("encoder", "k"), np.ones(3))


def test_loaded_encoders_and_memory_vectors_live_in_the_one_store(tiny_bert):
    from skstack import clear_loaded_encoders

    clear_loaded_encoders()
    ARTIFACTS.discard("vectors")  # earlier tests' vectors of the same encoder
    emb = EncoderEmbedder(tiny_bert).fit(["one text"])
    emb.transform(["one text", "another"])
    encoders = ARTIFACTS.keys("encoder")
    assert [k[0] for k in encoders] == [tiny_bert]
    assert sum(k[0] == emb.fingerprint_ for k in ARTIFACTS.keys("vectors")) == 2
    clear_loaded_encoders()
    assert ARTIFACTS.keys("encoder") == []


def test_the_bound_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("SKSTACK_MEMORY_BYTES", "1234")
    assert ArtifactStore().max_bytes == 1234
    monkeypatch.setenv("SKSTACK_MEMORY_BYTES", "lots")
    with pytest.raises(ValueError, match=r"SKSTACK_MEMORY_BYTES must be a number of bytes.*"
                                         r"got 'lots'"):
        ArtifactStore()
