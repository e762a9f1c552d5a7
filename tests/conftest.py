"""Tiny encoders built on the fly, so that tests exercise real Hugging Face loading code
without a model hub: a WordPiece tokenizer trained on fixture text (English, Arabic, emoji)
and a 2-layer BERT with random weights, saved with ``save_pretrained``."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never let a test wait on the network

FIXTURE_TEXTS = [
    "I love this so much, best day ever!",
    "This is terrible and I am really angry.",
    "I'm scared of what happens next.",
    "What a surprise, I did not expect that at all",
    "so sad today 😢",
    "Thank you, you made me happy 😊",
    "The meeting is at noon.",
    "Disgusting behaviour, shame on them",
    "أنا سعيد جدا اليوم",
    "هذا محزن للغاية",
    "أشعر بالخوف من المستقبل",
    "يا له من يوم رائع 😍",
    "غاضب جدا من هذا القرار",
    "شكرا لكم على كل شيء",
]
ARABIC_TEXTS = FIXTURE_TEXTS[8:]

def _build_tiny_bert(folder, texts, hidden: int = 32, seed: int = 0):
    from tokenizers import BertWordPieceTokenizer
    from transformers import BertConfig, BertModel, BertTokenizerFast

    wordpiece = BertWordPieceTokenizer(lowercase=True, strip_accents=False)
    wordpiece.train_from_iterator(texts * 3, vocab_size=400, min_frequency=1)
    tokenizer = BertTokenizerFast(tokenizer_object=wordpiece._tokenizer, model_max_length=64)
    tokenizer.save_pretrained(folder)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=hidden,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=2 * hidden,
        max_position_embeddings=64,
    )
    torch.manual_seed(seed)
    BertModel(config).save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="session", autouse=True)
def skstack_home(tmp_path_factory):
    """Exports and kept fine-tunings of the tests go to a temporary home, not the user's;
    predictions on the process's threads."""
    from skstack import config_context

    home = tmp_path_factory.mktemp("skstack_home")
    # predictions keep the process's threads: answers compared bit for bit must not depend
    # on how busy the test machine is (tests/test_threads.py turns it on)
    with config_context(home=home, adapt_threads=False):
        yield home


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A home folder of this test's own (``tmp_path``)."""
    from skstack import config_context

    with config_context(home=tmp_path):
        yield tmp_path


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> str:
    """Folder of a tiny BERT (hidden size 32, 2 layers) in plain transformers layout."""
    return _build_tiny_bert(tmp_path_factory.mktemp("tiny_bert"), FIXTURE_TEXTS)


@pytest.fixture(scope="session")
def tiny_bert_b(tmp_path_factory) -> str:
    """A second tiny BERT with other weights and width, trained on Arabic-heavy text."""
    texts = FIXTURE_TEXTS + ARABIC_TEXTS * 2
    return _build_tiny_bert(tmp_path_factory.mktemp("tiny_bert_b"), texts, hidden=48, seed=1)


@pytest.fixture(scope="session")
def tiny_st_folder(tiny_bert, tmp_path_factory) -> str:
    """The same tiny BERT saved as a sentence-transformers folder (Transformer + Pooling)."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer

    transformer = Transformer(tiny_bert, max_seq_length=32)
    pooling = Pooling(transformer.get_embedding_dimension(), "mean")
    folder = tmp_path_factory.mktemp("tiny_st")
    SentenceTransformer(modules=[transformer, pooling], device="cpu").save(str(folder))
    return str(folder)


@pytest.fixture(scope="session")
def trained(tiny_bert, tmp_path_factory):
    """A TSV of 60 texts with label names, a TOML config and the model `train` wrote."""
    from skstack.cli import main

    folder = tmp_path_factory.mktemp("cli")
    texts, Y = emotion_rows()
    names = ["joy", "anger", "fear"]  # the first three labels (each row has one of them)
    lines = ["text\tlabels"]
    for text, row in zip(texts, Y[:, :3], strict=True):
        lines.append(f"{text}\t{','.join(n for n, on in zip(names, row, strict=True) if on)}")
    data = folder / "train.tsv"
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    config = folder / "pipe.toml"
    config.write_text(f'preset = "stacked"\nobjective = "jaccard"\nchar_ngrams = 8\ncv = 3\n'
                      f'[encoders]\nbert = "{tiny_bert}"\n'
                      '[classifier_params]\nmax_epochs = 2\nbatch_size = 16\n', encoding="utf-8")
    model = folder / "model.skstack"
    assert main(["--quiet", "train", str(data), "--config", str(config), "-o", str(model)]) == 0
    return folder, data, model


@pytest.fixture(scope="session")
def check_site():
    """``docs/check_site.py`` as a module: the headless-Chromium helpers."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(
        "check_site", Path(__file__).resolve().parents[1] / "docs" / "check_site.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def emotion_rows() -> tuple[list[str], np.ndarray]:
    """The tests' one labelled data set: 60 texts with a 4-label matrix in which label 3
    co-occurs with label 0 and every row has a label among the first three."""
    rng = np.random.default_rng(0)
    texts = [f"{FIXTURE_TEXTS[i % len(FIXTURE_TEXTS)]} {i}" for i in range(60)]
    Y = (rng.random((60, 4)) < 0.3).astype(int)
    Y[:, 3] = Y[:, 0]
    Y[Y.sum(axis=1) == 0, 1] = 1
    return texts, Y


@pytest.fixture
def emotion_data():
    """:func:`emotion_rows`, for a test to change as it likes."""
    return emotion_rows()


@pytest.fixture
def calibrated_meta():
    """Stacked blocks whose meta block holds the labels' true probabilities (the rest is
    noise), their labels, and a residual net's settings: early stopping on plain BCE."""
    from skstack import BlockArray

    rng = np.random.default_rng(0)
    meta = rng.uniform(0.05, 0.95, size=(300, 3))
    Y = (rng.uniform(size=(300, 3)) < meta).astype(int)
    Z = BlockArray(np.hstack([rng.normal(size=(300, 8)), meta]), [("x", 8), ("meta", 3)])
    params = {"blocks": "auto", "module__residual": "auto", "module__hidden_size": 8,
              "module__projection_dim": 8, "train_split": 0.2, "patience": 3,
              "max_epochs": 30, "random_state": 0, "criterion__pos_weight": None,
              "criterion__corr_weight": 0.0, "criterion__contrastive_weight": 0.0}
    return Z, Y, params


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


class ForwardCounter:
    """Counts forward passes of an encoder through a hook on its embeddings, which run once
    per pass, the model's own or one on packed tokens (skstack._packed)."""

    def __init__(self, model):
        self.calls = 0
        self.handle = getattr(model, "embeddings", model).register_forward_hook(self._hook)

    def _hook(self, module, args, kwargs_or_output, output=None):
        self.calls += 1

    def remove(self):
        self.handle.remove()


def transformed_from_cache(embedder, texts):
    """``embedder.transform(texts)``, asserting that no text reached the encoder's model."""
    counter = ForwardCounter(embedder.model_)
    try:
        out = embedder.transform(texts)
    finally:
        counter.remove()
    assert counter.calls == 0, f"{counter.calls} forward passes; all texts should be cached"
    return out
