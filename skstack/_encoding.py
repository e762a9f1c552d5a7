"""Texts to vectors for a fitted ``EncoderEmbedder``: the cache lookup and the vectors' key,
batches of similar token length through the forward pass of its backend, and the readout
(pooling, layer combination, truncation, normalisation) into one vector per text or per
word.

Import rule: numpy, torch, tqdm, ``skstack._batching``, ``skstack._config``,
``skstack._loading``, ``skstack._packed``, ``skstack._pooling``, ``skstack._runtimes``,
``skstack._threads``,
``skstack.cache`` and ``skstack.sequences``; the embedder comes in as an argument.
"""

from __future__ import annotations

import time
import warnings

import numpy as np
import torch
from tqdm.auto import tqdm

from skstack._batching import Tokens, length_sorted_batches, n_batches
from skstack._config import outside_caller_level, progress, progress_enabled
from skstack._loading import short_name
from skstack._packed import ROWS, packs
from skstack._pooling import pool, pool_words
from skstack._runtimes import EXPORT_FORMAT, each_batch
from skstack._threads import prediction_threads
from skstack.cache import Lookup, fingerprint, open_stores
from skstack.sequences import WORD_SPLITTER, WordSequences, token_words, word_spans

_LONG = 100  # texts to encode for a progress line: a long stage, not a serving call


def _check_finite(vectors: torch.Tensor, positions: np.ndarray, texts: list[str]) -> None:
    """Refuse NaN or infinite outputs (damaged weights, an overflowing dtype) before they
    reach the cache, naming the first text."""
    bad = ~torch.isfinite(vectors).flatten(1).all(dim=1)
    if bad.any():
        first = texts[int(positions[int(bad.nonzero()[0, 0])])]
        raise ValueError(f"The encoder returned NaN or infinite values for {int(bad.sum())} "
                         f"of the {len(positions)} texts in a batch (first: {first[:60]!r}). "
                         "Its weights may be damaged, or dtype may overflow; nothing was "
                         "cached.")


def _packed(embedder) -> bool:
    """Whether the embedder's forward pass runs on packed tokens
    (:mod:`skstack._packed`): then a text's states never depend on its batch, and batches
    need no width of their own (``pad_to_multiple_of`` is left unused)."""
    return embedder._runtime()[0] == "torch" and packs(embedder.model_)


def _word_index(texts: list[str], offsets: list, prefix_length: int) -> list[list[int]]:
    """Each token's word index (-1 outside words), words as the shared splitter cuts them."""
    return [token_words(o, word_spans(t), prefix_length)
            for o, t in zip(offsets, texts, strict=True)]


def transform_texts(embedder, texts: list[str], tokens: Tokens | None = None
                    ) -> np.ndarray | WordSequences:
    """``embedder.transform`` of checked texts: cached arrays, the rest encoded (one progress
    line each way for a long stage) and cached; one warning for texts cut at the token
    limit."""
    lookup = Lookup(texts, embedder.fingerprint_, open_stores(embedder.cache))
    n_new, start = len(lookup.missing), time.perf_counter()
    if n_new >= _LONG:
        backend, quantization = embedder._runtime()
        progress(f"encoding {n_new:,} texts with {short_name(embedder.model)} ({embedder.dtype_} "
                 f"on {backend}{', ' + quantization if quantization else ''}; "
                 f"{len(texts) - n_new:,} from the cache)")
    arrays, n_cut = embedder._embed_on_devices(lookup.missing, tokens)
    if n_new >= _LONG:
        seconds = time.perf_counter() - start
        progress(f"encoded {n_new:,} texts in {seconds:.1f} s "
                 f"({n_new / max(seconds, 1e-9):,.0f} texts/s)")
    rows = lookup.complete(arrays)
    if n_cut:
        warnings.warn(
            f"{n_cut} of {len(texts)} texts are longer than "
            f"max_length={embedder.max_length_} tokens and were cut.",
            UserWarning,
            stacklevel=outside_caller_level(),
        )
    if embedder.word_pooling is not None:
        return WordSequences.from_rows(rows, "words", embedder.embedding_dim_)
    if not rows:
        return np.empty((0, embedder.embedding_dim_), dtype=np.float32)
    return np.stack(rows)


@torch.inference_mode()
def embed_texts(embedder, texts: list[str], tokens: Tokens
                ) -> tuple[np.ndarray | list[np.ndarray], int]:
    """The arrays of ``texts`` and how many texts were cut at ``max_length_``: (n, dim)
    float32 vectors, or in word mode one (n_words, dim) float16 array per text. The
    encoding is a function of the token ids in ``tokens`` (tokenised there once)."""
    words = embedder.word_pooling is not None
    out = [None] * len(texts) if words else np.empty((len(texts), embedder.embedding_dim_),
                                                     dtype=np.float32)
    if not texts:
        return out, 0
    ids, n_cut, offsets = tokens.of(texts)
    word_index = _word_index(texts, offsets, len(embedder.prefix)) if words else None
    forward = embedder._forward()
    size = embedder.batch_size
    multiple = None if _packed(embedder) else embedder.pad_to_multiple_of
    device = embedder.device_

    def store(batch: tuple[np.ndarray, torch.Tensor], states: list[torch.Tensor]) -> None:
        positions, mask = batch
        if words:
            index = torch.full(mask.shape, -1, dtype=torch.long)
            for row, p in enumerate(positions):
                index[row, : len(word_index[p])] = torch.as_tensor(word_index[p])
            n_words = (index.max(dim=1).values + 1).tolist()
            index = index.to(device)
            pooled = [pool_words(s.float(), index, max(n_words), embedder.word_pooling)
                      for s in states]
        else:
            pooled = [pool(s.float(), mask, embedder.pooling) for s in states]
        if embedder.layer_combine == "mean":
            vectors = torch.stack(pooled).mean(dim=0)
        else:
            vectors = torch.cat(pooled, dim=-1)
        vectors = vectors[..., : embedder.embedding_dim_]
        if embedder.normalize:
            vectors = torch.nn.functional.normalize(vectors, dim=-1)
        _check_finite(vectors, positions, texts)
        if words:
            half = vectors.to(torch.float16).cpu().numpy()
            for row, p in enumerate(positions):
                out[p] = half[row, : n_words[row]]
        else:
            out[positions] = vectors.cpu().numpy()
        threads.tick()

    def on_device(batches):  # tagged with what store needs of them
        for positions, input_ids, mask in batches:
            mask = mask.to(device)
            yield (positions, mask), input_ids.to(device), mask

    # on a CPU, one torch thread while other work crowds the cores (skstack._threads);
    # OpenVINO runs one stream a thread instead, which a crowded machine does not stall
    adapt = device.type == "cpu" and embedder._runtime()[0] == "torch"
    with prediction_threads(adapt) as threads:
        each_batch(forward, on_device(tqdm(
            length_sorted_batches(ids, size, embedder._pad_id(), multiple, embedder.max_length_),
            total=n_batches(ids, size, multiple, embedder.max_length_), desc="embedding",
            disable=not progress_enabled(embedder.show_progress_bar),
        )), store)
    return out, n_cut


def vectors_fingerprint(embedder, weights: str, tokenizer: str) -> str:
    """The cache key of a fitted embedder's arrays (:func:`skstack.cache.fingerprint`):
    everything that decides them, from the weights and the tokenizer to the readout, the
    word splitter in word mode and, off torch, the backend and its export."""
    spec = {
        "weights": weights,
        "tokenizer": tokenizer,
        "layers": embedder.layer_indices_,
        "layer_combine": embedder.layer_combine,
        # word mode: pooling only shapes fine-tuning, whose weights are in "weights"
        "pooling": None if embedder.word_pooling is not None else embedder.pooling,
        "word_pooling": embedder.word_pooling,
        "max_length": embedder.max_length_,
        "prefix": embedder.prefix,
        "dtype": embedder.dtype_,
        "normalize": bool(embedder.normalize),
        "truncate_dim": embedder.embedding_dim_,
    }
    if _packed(embedder):  # packed tokens give other last bits than padded batches
        spec["packed_rows"] = ROWS
    elif embedder.pad_to_multiple_of is not None:  # widths move the last bits; None: as 0.2
        spec["pad_to_multiple_of"] = embedder.pad_to_multiple_of
    if embedder.word_pooling is not None:  # the splitter decides the words' vectors
        spec["words"] = WORD_SPLITTER
    backend, quantization = embedder._runtime()
    if backend != "torch":  # torch leaves them out: caches made before stay valid
        spec.update(backend=backend, quantization=quantization, export=EXPORT_FORMAT)
    return fingerprint(spec)
