"""The forward pass on packed tokens: the model's own states, the same bits in any batch."""

import numpy as np
import pytest
import torch
from transformers import (
    BertConfig,
    BertModel,
    DistilBertConfig,
    DistilBertModel,
    XLMRobertaConfig,
    XLMRobertaModel,
)

from skstack import EncoderEmbedder
from skstack._batching import pad_batch
from skstack._packed import (
    ROWS,
    _packed_weights,
    _packs_bfloat16_weights,
    packed_forward,
    packs,
)

SHAPE = dict(vocab_size=120, hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
             intermediate_size=64, max_position_embeddings=80)


def _model(kind: str, **shape) -> torch.nn.Module:
    torch.manual_seed(0)
    if kind == "bert":
        return BertModel(BertConfig(**{**SHAPE, **shape})).eval()
    return XLMRobertaModel(XLMRobertaConfig(**{**SHAPE, **shape}, pad_token_id=1)).eval()


def _texts(n: int, seed: int = 0) -> list[list[int]]:
    """Token ids of ``n`` texts of 3 to 60 tokens (ids above the pad ids)."""
    rng = np.random.default_rng(seed)
    return [rng.integers(5, 120, size=rng.integers(3, 61)).tolist() for _ in range(n)]


@pytest.mark.parametrize("kind", ["bert", "xlm-roberta"])
def test_packed_states_are_the_models_own_at_every_layer(kind):
    model, texts = _model(kind), _texts(12)
    ids, mask = pad_batch(texts, model.config.pad_token_id)
    with torch.inference_mode():
        want = model(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
        got = packed_forward(model, [0, 1, 2, 3])(ids, mask)
    assert len(got) == 4
    for layer in range(4):
        assert got[layer].shape == (12, ids.shape[1], 32)
        keep = mask.bool()
        torch.testing.assert_close(got[layer][keep], want[layer][keep], atol=2e-5, rtol=1e-5)
        assert not got[layer][~keep].any()  # zeros at the padding


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_a_texts_states_are_the_same_bits_alone_or_in_any_batch(dtype):
    # MiniLM's widths: the matrix products whose kernels change with their height
    model = _model("bert", hidden_size=384, num_attention_heads=12, intermediate_size=1536,
                   num_hidden_layers=2).to(dtype)
    texts = _texts(60, seed=1)
    assert sum(map(len, texts)) > 3 * ROWS  # several blocks, texts straddling their edges
    forward = packed_forward(model, [2])

    def states(batch: list[int]) -> list[torch.Tensor]:
        ids, mask = pad_batch([texts[i] for i in batch], 0)
        with torch.inference_mode():
            out = forward(ids, mask)[0]
        return [out[row, : len(texts[i])] for row, i in enumerate(batch)]

    alone = [states([i])[0] for i in range(60)]
    for batch in (list(range(60)), list(range(59, -1, -1)), [7, 3, 50, 22, 41, 9, 0]):
        for i, got in zip(batch, states(batch), strict=True):
            assert torch.equal(got, alone[i])


@pytest.mark.parametrize("act", ["gelu", "gelu_new"])
def test_bfloat16_packed_states_are_the_models_own_pass_up_to_bfloat16(act):
    # where bfloat16 is native, the products run on packed weights and the exact GELU inside
    # the product; any other activation runs as the model's own module
    model = _model("bert", hidden_act=act).to(torch.bfloat16)
    ids, mask = pad_batch(_texts(12), 0)
    with torch.inference_mode():
        want = model(input_ids=ids, attention_mask=mask).last_hidden_state
        got = packed_forward(model, [3])(ids, mask)[0]
    keep = mask.bool()
    torch.testing.assert_close(got[keep].float(), want[keep].float(), atol=0.1, rtol=0.05)
    assert (got[keep].float() - want[keep].float()).abs().mean() < 0.01


def test_a_weight_changed_in_place_is_packed_again():
    # a fine-tuning step or load_state_dict writes the weights in place: the packed copy of
    # an earlier pass must not be used again
    model = _model("bert").to(torch.bfloat16)
    ids, mask = pad_batch(_texts(5), 0)
    forward = packed_forward(model, [3])
    with torch.inference_mode():
        before = forward(ids, mask)[0]
    with torch.no_grad():
        model.encoder.layer[2].output.dense.weight.mul_(-1.0)
    with torch.inference_mode():
        after = forward(ids, mask)[0]
        want = model(input_ids=ids, attention_mask=mask).last_hidden_state
    keep = mask.bool()
    assert not torch.equal(after, before)
    torch.testing.assert_close(after[keep].float(), want[keep].float(), atol=0.1, rtol=0.05)


@pytest.mark.skipif(not _packs_bfloat16_weights(), reason="bfloat16 is not native here")
def test_every_bfloat16_product_runs_on_a_packed_weight_where_bfloat16_is_native():
    model = _model("bert").to(torch.bfloat16)
    ids, mask = pad_batch(_texts(5), 0)
    with torch.inference_mode():
        packed_forward(model, [2])(ids, mask)
    linears = [m for m in model.encoder.layer[:2].modules() if isinstance(m, torch.nn.Linear)]
    assert len(linears) == 12  # query, key, value, attention output, feed-forward in and out
    assert all(linear in _packed_weights for linear in linears)
    assert not any(m in _packed_weights for m in model.encoder.layer[2].modules())


def test_only_known_architectures_pack():
    assert packs(_model("bert")) and packs(_model("xlm-roberta"))
    distil = DistilBertModel(DistilBertConfig(vocab_size=120, dim=32, n_layers=1, n_heads=4,
                                              hidden_dim=64))
    assert not packs(distil)
    relative = _model("bert")
    relative.config.position_embedding_type = "relative_key"
    assert not packs(relative)


def test_the_embedder_packs_bert_and_keys_its_cache_by_it(tiny_bert):
    packed = EncoderEmbedder(tiny_bert, cache=None).fit(["a text"])
    assert packs(packed.model_)
    widths = EncoderEmbedder(tiny_bert, cache=None, pad_to_multiple_of=None).fit(["a text"])
    # packing leaves pad_to_multiple_of unused: the same vectors, the same cache key
    assert packed.fingerprint_ == widths.fingerprint_
    texts = ["short", "a much longer text with many more tokens in it", "mid length one"]
    np.testing.assert_array_equal(packed.transform(texts), widths.transform(texts))
