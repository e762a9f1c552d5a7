"""Encoding on several devices at once: one process per device, each with a copy of the
encoder and a share of the texts.

Texts sorted by token length are dealt out in runs of four batches, so that every device
gets short and long ones; each process encodes its share of the token ids tokenised in the
parent. Processes are spawned (CUDA cannot be used in a forked child) per call.

Import rule: numpy, torch and the standard library; the embedder comes in as an argument.
"""

from __future__ import annotations

import copy
import multiprocessing
import os
import pickle
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import torch


def _embed_share(payload: bytes, texts: list[str], tokens, n_devices: int):
    """In a worker process: one device's share (``payload``: the embedder pickled with its
    one device; ``tokens``: its texts' ids)."""
    embedder = pickle.loads(payload)
    if embedder.device_.type == "cpu":  # the processes share the CPU's cores
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // n_devices))
    return embedder._embed(texts, tokens)


def _for_device(embedder, device: str) -> bytes:
    """A fitted embedder pickled for one device (its model travels as CPU weights)."""
    single = copy.copy(embedder)
    single.device = device
    return pickle.dumps(single)


def embed_on_devices(embedder, devices: list[torch.device], texts: list[str], tokens
                     ) -> tuple[np.ndarray | list[np.ndarray], int]:
    """``embedder._embed(texts, tokens)`` split over ``devices`` (two or more): the arrays
    in the order of ``texts``, and how many texts were cut at the token limit."""
    ids = tokens.of(texts)[0]
    order = np.argsort([len(i) for i in ids], kind="stable")
    run = 4 * embedder.batch_size
    shares: list[list[int]] = [[] for _ in devices]
    for k, start in enumerate(range(0, len(order), run)):
        shares[k % len(devices)].extend(order[start : start + run].tolist())
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(len(devices), mp_context=context) as pool:
        futures = [pool.submit(_embed_share, _for_device(embedder, str(device)), part,
                               tokens.only(part), len(devices))
                   for device, share in zip(devices, shares, strict=True) if share
                   for part in [[texts[i] for i in share]]]
        results = [future.result() for future in futures]
    words = embedder.word_pooling is not None
    out = [None] * len(texts) if words else np.empty((len(texts), embedder.embedding_dim_),
                                                     dtype=np.float32)
    n_cut = 0
    for share, (arrays, cut) in zip([s for s in shares if s], results, strict=True):
        n_cut += cut
        for i, array in zip(share, arrays, strict=True):
            out[i] = array
    return out, n_cut
