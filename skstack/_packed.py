"""The encoder's forward pass on packed tokens, in matrix products of a fixed height.

A BERT-family encoder (BERT, RoBERTa, XLM-RoBERTa: MiniLM, e5, sre) spends its time in the
linear layers, and the linear layers treat every token alike. So the tokens of a batch are
packed into one matrix without padding, every linear layer runs on it in blocks of exactly
:data:`ROWS` rows (the last block filled with zero rows), and only attention looks at texts,
each group of equally long texts in one call.

Why fixed blocks: the matrix-product libraries (oneDNN, MKL) choose their kernel and the
order in which they sum by the product's height, so a token's output moved in its last bits
with how many tokens shared its product; in bfloat16 on a CPU with AMX, 163 of 400 texts'
probabilities moved by up to 0.009 between one call and calls of 16 texts, with texts
padded to a width of their own. With every product ``ROWS`` high, a text's states are the
same bits alone or in any batch, for a given thread count (a token's row never depends on
the rows beside it). Packing also drops the padding, so a small batch runs one pass instead
of one per width.

On a CPU with native bfloat16, the linear layers' weights are packed once into oneDNN's
own layout for products of ``ROWS`` rows (:func:`_linear`): ``torch.addmm`` reorders a
bfloat16 weight on every call, which made a 128-row product 1.5-2x slower on a Xeon with AMX
(``benchmarks/profile_encode.py --products``).

Import rule: torch only.
"""

from __future__ import annotations

import itertools
import threading
import weakref
from collections.abc import Callable
from functools import lru_cache, partial
from operator import attrgetter

import torch
import torch.nn.functional as F

# the height of every linear layer's matrix product: large enough to keep bulk encoding near
# the matrix units' speed, small enough for one short text (docs/benchmarks.md, "Serving")
ROWS = 128
_FAMILY = ("bert", "roberta", "xlm-roberta")


def packs(model: torch.nn.Module) -> bool:
    """Whether ``model`` is an encoder whose forward pass :func:`packed_forward` runs: a
    BERT-family model with absolute positions and the usual module layout."""
    config = getattr(model, "config", None)
    if getattr(config, "model_type", None) not in _FAMILY or config.is_decoder:
        return False
    if getattr(config, "position_embedding_type", "absolute") != "absolute":
        return False
    layers = getattr(getattr(model, "encoder", None), "layer", None)
    if not layers:
        return False
    parts = ("attention.self.query", "attention.self.key", "attention.self.value",
             "attention.output.dense", "attention.output.LayerNorm", "intermediate.dense",
             "intermediate.intermediate_act_fn", "output.dense", "output.LayerNorm")
    try:
        for layer in layers:
            attrgetter(*parts)(layer)
    except AttributeError:
        return False
    return True


def _in_blocks(run: Callable[..., torch.Tensor], *inputs: torch.Tensor) -> torch.Tensor:
    """``run`` on ``ROWS`` rows at a time of inputs whose height is a multiple of ``ROWS``."""
    return torch.cat([run(*block) for block in zip(*(x.split(ROWS) for x in inputs),
                                                   strict=True)])


@lru_cache(maxsize=1)
def _packs_bfloat16_weights() -> bool:
    """Whether oneDNN runs bfloat16 on this CPU natively, with the operators that take a
    packed weight (torch's own, which its compiler uses for the same purpose)."""
    ops = torch.ops.mkldnn
    try:
        return (torch.backends.mkldnn.is_available() and ops._is_mkldnn_bf16_supported()
                and hasattr(ops, "_reorder_linear_weight") and hasattr(ops, "_linear_pointwise"))
    except (AttributeError, RuntimeError):
        return False


# each linear layer's weight in oneDNN's layout, with the weight's version and address when
# it was packed: a fine-tuning step or a load changes one of them, and it is packed again
_packed_weights: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_packing = threading.Lock()


def _packed_weight(linear: torch.nn.Linear) -> torch.Tensor:
    weight = linear.weight
    key = (weight._version, weight.data_ptr())
    with _packing:
        found = _packed_weights.get(linear)
        if found is None or found[0] != key:
            with torch.inference_mode(False), torch.no_grad():
                found = (key, torch.ops.mkldnn._reorder_linear_weight(weight.detach(), ROWS))
            _packed_weights[linear] = found
    return found[1]


def _linear(linear: torch.nn.Linear, x: torch.Tensor, gelu: bool = False) -> torch.Tensor:
    """``linear(x)`` for ``ROWS`` rows ``x``, then the exact (erf) GELU if ``gelu``: on a
    packed weight where the CPU runs bfloat16 natively (the GELU fused into the product),
    with ``torch.addmm`` otherwise."""
    if x.dtype == torch.bfloat16 and linear.weight.dtype == torch.bfloat16 and (
            x.device.type == "cpu" and _packs_bfloat16_weights()):
        return torch.ops.mkldnn._linear_pointwise(
            x, _packed_weight(linear), linear.bias, *(("gelu", [], "none") if gelu
                                                      else ("none", [], "")))
    out = torch.addmm(linear.bias, x, linear.weight.t())
    return F.gelu(out) if gelu else out


def _linear_in_blocks(linear: torch.nn.Linear, h: torch.Tensor) -> torch.Tensor:
    """``linear(h)`` computed ``ROWS`` rows at a time."""
    return torch.cat([_linear(linear, block) for block in h.split(ROWS)])


def _position_offset(model: torch.nn.Module) -> int:
    """The first token's position id: 0 for BERT; RoBERTa's family counts from its padding
    id + 1."""
    embeddings = model.embeddings
    if hasattr(embeddings, "create_position_ids_from_input_ids"):
        return embeddings.padding_idx + 1
    return 0


def _attention(layer: torch.nn.Module, h: torch.Tensor, groups: list[tuple[int, int, int]],
               n_tokens: int, heads: int) -> torch.Tensor:
    """Self-attention of ``layer`` within each text: queries, keys and values in blocks,
    then one call per group of equally long texts (``(first row, texts, length)``, their
    tokens side by side); zero rows where no text is."""
    own = layer.attention.self
    q, k, v = (_linear_in_blocks(linear, h) for linear in (own.query, own.key, own.value))
    width = q.shape[1] // heads
    context = torch.empty_like(q)
    context[n_tokens:] = 0
    for first, n, length in groups:
        rows = slice(first, first + n * length)
        q_, k_, v_ = (x[rows].view(n, length, heads, width).transpose(1, 2) for x in (q, k, v))
        out = F.scaled_dot_product_attention(q_, k_, v_, scale=getattr(own, "scaling", None))
        context[rows] = out.transpose(1, 2).reshape(n * length, heads * width)
    return context


def packed_forward(model: torch.nn.Module, layer_indices: list[int]
                   ) -> Callable[[torch.Tensor, torch.Tensor], list[torch.Tensor]]:
    """A function from a right-padded batch (input_ids, attention_mask) to the hidden states
    at ``layer_indices`` (0: the embeddings), each (batch, width, hidden) with zeros at the
    padding, computed on packed tokens (module docstring). The same as ``model``'s own
    forward pass up to rounding; for inference only (no dropout)."""
    offset = _position_offset(model)
    heads = model.config.num_attention_heads
    gelu = model.config.hidden_act == "gelu"  # transformers' name for the exact (erf) GELU
    keep = sorted(set(layer_indices))

    def forward(ids: torch.Tensor, mask: torch.Tensor) -> list[torch.Tensor]:
        # longest texts first, so that equally long texts lie side by side in the packing
        lengths = mask.sum(dim=1)
        order = torch.argsort(lengths, descending=True, stable=True)
        ids, mask, lengths = ids[order], mask[order], lengths[order].tolist()
        n_tokens = sum(lengths)
        fill = -n_tokens % ROWS
        at = mask.bool()
        flat = F.pad(ids[at], (0, fill))
        positions = F.pad((mask.cumsum(dim=1) - 1)[at] + offset, (0, fill))
        h = model.embeddings(input_ids=flat[None], position_ids=positions[None],
                             token_type_ids=torch.zeros_like(flat)[None])[0]
        groups, first = [], 0
        for length, run in itertools.groupby(lengths):
            n = len(list(run))
            groups.append((first, n, length))
            first += n * length
        states = {0: h}
        for index, layer in enumerate(model.encoder.layer[: keep[-1]], start=1):
            context = _attention(layer, h, groups, n_tokens, heads)
            h = _in_blocks(partial(_rest_of_layer, layer, gelu), context, h)
            states[index] = h
        back = torch.argsort(order)
        out = []
        for i in layer_indices:
            padded = states[i].new_zeros((*ids.shape, states[i].shape[1]))
            padded[at] = states[i][:n_tokens]
            out.append(padded[back])
        return out

    return forward


def _rest_of_layer(layer: torch.nn.Module, gelu: bool, context: torch.Tensor,
                   h: torch.Tensor) -> torch.Tensor:
    """What follows attention in a layer, row by row: its output projection, residual and
    norm, then the feed-forward block's (``gelu``: its activation is the exact GELU, run
    inside the product; any other runs as the model's own module). Dropout is off."""
    attention, feed_forward, out = layer.attention.output, layer.intermediate, layer.output
    h = attention.LayerNorm(_linear(attention.dense, context) + h)
    inner = (_linear(feed_forward.dense, h, gelu=True) if gelu
             else feed_forward.intermediate_act_fn(_linear(feed_forward.dense, h)))
    return out.LayerNorm(_linear(out.dense, inner) + h)
