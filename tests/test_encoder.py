import copy
import re
import warnings

import joblib
import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from conftest import FIXTURE_TEXTS
from skstack import EncoderEmbedder

TEXTS = ["short", "a much longer text with many more tokens in it than the first", "mid length one"]


def _hand_states(emb: EncoderEmbedder, text: str) -> tuple:
    """Hidden states of one text run alone (no padding at all)."""
    enc = emb.tokenizer_(text, return_tensors="pt", return_token_type_ids=False)
    with torch.no_grad():
        return emb.model_(**enc, output_hidden_states=True).hidden_states


@pytest.mark.parametrize("pooling", ["mean", "max", "cls"])
def test_pooling_matches_a_hand_computation_without_padding(tiny_bert, pooling):
    emb = EncoderEmbedder(tiny_bert, pooling=pooling, cache=None, batch_size=3).fit(TEXTS)
    Z = emb.transform(TEXTS)
    for row, text in enumerate(TEXTS):
        last = _hand_states(emb, text)[-1][0]  # (tokens, dim)
        expected = {"mean": last.mean(0), "max": last.max(0).values, "cls": last[0]}[pooling]
        np.testing.assert_allclose(Z[row], expected.numpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(("layers", "combine", "picked"), [
    ("-1,-2", "mean", [-1, -2]), ([-2, -1], "concat", [-2, -1]), ("all", "mean", [0, 1, 2]),
    (0, "mean", [0]),
])
def test_layer_selection_matches_a_hand_computation(tiny_bert, layers, combine, picked):
    emb = EncoderEmbedder(tiny_bert, layers=layers, layer_combine=combine, cache=None).fit(TEXTS)
    Z = emb.transform(TEXTS)
    for row, text in enumerate(TEXTS):
        states = _hand_states(emb, text)
        pooled = [states[i][0].mean(0) for i in picked]
        expected = torch.cat(pooled) if combine == "concat" else torch.stack(pooled).mean(0)
        np.testing.assert_allclose(Z[row], expected.numpy(), rtol=1e-4, atol=1e-5)
    assert emb.embedding_dim_ == (64 if combine == "concat" else 32)


def test_order_is_restored_after_length_sorting(tiny_bert):
    texts = [FIXTURE_TEXTS[i] * (1 + i % 3) for i in range(len(FIXTURE_TEXTS))]
    emb = EncoderEmbedder(tiny_bert, cache=None, batch_size=4).fit(texts)
    batched = emb.transform(texts)
    one_by_one = np.vstack([emb.transform([t]) for t in texts])
    np.testing.assert_allclose(batched, one_by_one, rtol=1e-4, atol=1e-5)


def test_sentence_transformers_folder_gives_the_same_vectors_as_the_plain_model(
    tiny_bert, tiny_st_folder
):
    from sentence_transformers import SentenceTransformer

    plain = EncoderEmbedder(tiny_bert, max_length=32, cache=None).fit(FIXTURE_TEXTS)
    st_folder = EncoderEmbedder(tiny_st_folder, cache=None).fit(FIXTURE_TEXTS)
    reference = SentenceTransformer(tiny_st_folder, device="cpu").encode(FIXTURE_TEXTS)
    np.testing.assert_allclose(plain.transform(FIXTURE_TEXTS), reference, atol=1e-5)
    np.testing.assert_allclose(st_folder.transform(FIXTURE_TEXTS), reference, atol=1e-5)


def test_normalize_truncate_dim_and_prefix(tiny_bert):
    base = EncoderEmbedder(tiny_bert, cache=None).fit(TEXTS).transform(TEXTS)
    Z = EncoderEmbedder(tiny_bert, normalize=True, truncate_dim=8, cache=None).fit(TEXTS)
    Z = Z.transform(TEXTS)
    assert Z.shape == (3, 8)
    np.testing.assert_allclose(np.linalg.norm(Z, axis=1), 1.0, rtol=1e-5)
    expected = base[:, :8] / np.linalg.norm(base[:, :8], axis=1, keepdims=True)
    np.testing.assert_allclose(Z, expected, rtol=1e-4, atol=1e-6)
    prefixed = EncoderEmbedder(tiny_bert, prefix="query: ", cache=None).fit(TEXTS)
    assert not np.allclose(prefixed.transform(TEXTS), base)


def test_accepts_list_array_series_and_one_column_frame(tiny_bert):
    emb = EncoderEmbedder(tiny_bert).fit(TEXTS)
    expected = emb.transform(TEXTS)
    for X in (np.array(TEXTS, dtype=object), pd.Series(TEXTS, index=[5, 7, 9]),
              pd.DataFrame({"text": TEXTS}), tuple(TEXTS)):
        np.testing.assert_array_equal(emb.transform(X), expected)


def test_feature_names_and_pandas_output(tiny_bert):
    emb = EncoderEmbedder(tiny_bert, truncate_dim=4).fit(TEXTS)
    assert list(emb.get_feature_names_out()) == [f"encoderembedder{i}" for i in range(4)]
    frame = emb.set_output(transform="pandas").transform(TEXTS)
    assert isinstance(frame, pd.DataFrame)
    assert frame.shape == (3, 4)


@pytest.mark.parametrize(
    ("bad", "position", "kind"),
    [
        (["ok", None], 1, "None"),
        (["ok", "fine", float("nan")], 2, "NaN"),
        ([3, "ok"], 0, "int"),
        (["ok", b"bytes"], 1, "bytes"),
        (["ok", ["nested"]], 1, "list"),
    ],
)
def test_bad_texts_name_the_first_bad_position(tiny_bert, bad, position, kind):
    emb = EncoderEmbedder(tiny_bert).fit(TEXTS)
    with pytest.raises(TypeError, match=rf"position {position} is .*{kind}"):
        emb.transform(bad)
    with pytest.raises(TypeError, match=rf"position {position}"):
        EncoderEmbedder(tiny_bert).fit(bad)


def test_lone_surrogates_are_refused_before_anything_is_computed(tiny_bert):
    emb = EncoderEmbedder(tiny_bert, cache=None).fit(TEXTS)
    broken = b"caf\xe9 au lait".decode("utf-8", "surrogateescape")
    with pytest.raises(ValueError, match=r"position 1 is not valid Unicode.*'\\udce9' at "
                                         r"character 3"):
        emb.transform(["fine", broken])


def test_max_length_beyond_the_position_embeddings_is_refused(tiny_bert):
    with pytest.raises(ValueError, match="max_length=100 is more tokens than the 64 positions"):
        EncoderEmbedder(tiny_bert, max_length=100).fit(TEXTS)
    assert EncoderEmbedder(tiny_bert, max_length=64).fit(TEXTS).max_length_ == 64


def test_nan_outputs_are_refused_and_never_cached(tiny_bert):
    emb = EncoderEmbedder(tiny_bert).fit(TEXTS)
    emb.model_ = copy.deepcopy(emb.model_)  # the loaded model is shared within the process
    with torch.no_grad():
        emb.model_.embeddings.word_embeddings.weight[5:].fill_(float("nan"))
    emb.fingerprint_ = "damaged weights"  # as a damaged folder would hash
    with pytest.raises(ValueError, match=r"NaN or infinite values for 3 of the 3 texts in a "
                                         r"batch \(first: 'a much longer"):
        emb.transform(TEXTS)
    from skstack.cache import MEMORY, text_key

    assert not MEMORY.get_many("damaged weights", [text_key(t) for t in TEXTS])


def test_bad_containers_are_rejected(tiny_bert):
    emb = EncoderEmbedder(tiny_bert).fit(TEXTS)
    with pytest.raises(TypeError, match="sequence of texts"):
        emb.transform("just one string")
    with pytest.raises(ValueError, match="one-column DataFrame"):
        emb.transform(pd.DataFrame({"a": TEXTS, "b": TEXTS}))


def test_empty_string_and_empty_input(tiny_bert):
    emb = EncoderEmbedder(tiny_bert, cache=None).fit(TEXTS)
    Z = emb.transform(["", "text"])
    assert Z.shape == (2, 32)
    assert np.isfinite(Z).all()
    assert emb.transform([]).shape == (0, 32)


@pytest.mark.parametrize("cache", [None, "memory"])
def test_truncation_warns_once_with_the_count(tiny_bert, cache):
    emb = EncoderEmbedder(tiny_bert, max_length=8, cache=cache).fit(TEXTS)
    with pytest.warns(UserWarning, match=r"^2 of 3 texts are longer than max_length=8") as rec:
        emb.transform(TEXTS)
    assert len(rec) == 1
    assert rec[0].filename == __file__  # points at the caller, not at skstack


def test_unfitted_and_bad_parameters(tiny_bert):
    with pytest.raises(NotFittedError):
        EncoderEmbedder(tiny_bert).transform(TEXTS)
    with pytest.raises(ValueError, match="Layer 5 does not exist"):
        EncoderEmbedder(tiny_bert, layers="5").fit(TEXTS)


@pytest.mark.parametrize(("params", "message"), [
    ({"pooling": "median"}, r"'pooling' parameter of EncoderEmbedder must be one of 'cls', "
                            r"'mean', 'max'; got 'median'"),
    ({"dtype": "int8"}, r"'dtype' .* one of 'float32', 'float16', 'bfloat16', 'auto'; got 'int8'"),
    ({"batch_size": 0}, r"'batch_size' .* an integer >= 1; got 0"),
    ({"max_length": 1}, r"'max_length' .* an integer >= 2 or None; got 1"),
    ({"finetune_learning_rate": -1e-5}, r"'finetune_learning_rate' .* a number > 0"),
    ({"finetune_warmup_ratio": 1.5}, r"'finetune_warmup_ratio' .* in \[0, 1\]; got 1.5"),
    ({"prefix": None}, r"'prefix' .* a str; got None"),
    ({"normalize": "yes"}, r"'normalize' .* a bool; got 'yes'"),
    ({"cache": 3}, r"'cache' .* a path or None; got 3"),
    ({"layers": []}, r"'layers' .* a non-empty list of ints; got \[\]"),
    ({"random_state": -1}, r"'random_state' .* an integer in \[0, 4294967295\] or None"),
])
def test_bad_parameters_are_named_before_loading(params, message):
    with pytest.raises(ValueError, match=message):
        EncoderEmbedder("not/loaded-because-the-check-comes-first", **params).fit(TEXTS)


def test_init_only_stores_parameters_and_clone_round_trips():
    emb = EncoderEmbedder("some/hub-id", pooling="cls", layers="-1,-2")
    assert not [k for k in vars(emb) if k.endswith("_")]  # nothing loaded, nothing fitted
    assert clone(emb).get_params() == emb.get_params()


def test_joblib_round_trip_returns_identical_vectors(tiny_bert, tmp_path):
    emb = EncoderEmbedder(tiny_bert, cache=None, pooling="max").fit(TEXTS)
    path = tmp_path / "emb.joblib"
    joblib.dump(emb, path)
    loaded = joblib.load(path)
    np.testing.assert_array_equal(loaded.transform(TEXTS), emb.transform(TEXTS))
    assert loaded.fingerprint_ == emb.fingerprint_
    assert loaded.device_.type == "cpu"


def test_fine_tuning_changes_weights_and_fingerprint(tiny_bert, emotion_data):
    texts, Y = emotion_data
    frozen = EncoderEmbedder(tiny_bert).fit(texts)
    tuned = EncoderEmbedder(tiny_bert, finetune_epochs=2, finetune_learning_rate=1e-3,
                            random_state=0).fit(texts, Y)
    assert len(tuned.finetune_loss_) == 2
    assert tuned.model_ is not frozen.model_  # the shared pretrained model is untouched
    assert tuned.fingerprint_ != frozen.fingerprint_
    assert not np.allclose(tuned.transform(texts), frozen.transform(texts))
    again = EncoderEmbedder(tiny_bert, finetune_epochs=2, finetune_learning_rate=1e-3,
                            random_state=0, cache=None).fit(texts, Y)
    np.testing.assert_allclose(again.transform(texts), tuned.transform(texts), atol=1e-6)
    with pytest.raises(ValueError, match="needs the label matrix y"):
        EncoderEmbedder(tiny_bert, finetune_epochs=1).fit(texts)


def test_fine_tuning_the_top_layers_leaves_the_rest_as_pretrained(tiny_bert, emotion_data):
    texts, Y = emotion_data
    frozen = EncoderEmbedder(tiny_bert, cache=None).fit(texts).model_.state_dict()
    tuned = EncoderEmbedder(tiny_bert, finetune_epochs=2, finetune_learning_rate=1e-3,
                            finetune_layers=1, random_state=0, cache=None).fit(texts, Y)
    state = tuned.model_.state_dict()
    moved = {k for k in state if not torch.equal(state[k], frozen[k])}
    # the tiny BERT has 2 layers: the top one trains, the embeddings and layer 0 do not
    assert moved and all(k.startswith("encoder.layer.1.") for k in moved)
    assert all(p.requires_grad for p in tuned.model_.parameters())  # unfrozen afterwards
    with pytest.raises(ValueError, match=r"finetune_layers=3, but the encoder has 2 "
                                         r"transformer layers\."):
        EncoderEmbedder(tiny_bert, finetune_epochs=1, finetune_layers=3).fit(texts, Y)
    # a share of the layers, rounded up: a third of 2 layers is the top one
    third = EncoderEmbedder(tiny_bert, finetune_epochs=2, finetune_learning_rate=1e-3,
                            finetune_layers=1 / 3, random_state=0, cache=None).fit(texts, Y)
    for k, v in third.model_.state_dict().items():
        assert torch.equal(v, state[k])  # the same fine-tuning as finetune_layers=1
    with pytest.raises(ValueError, match=r"'finetune_layers' parameter of EncoderEmbedder "
                                         r"must be an integer >= 1 or a number in \(0, 1\) "
                                         r"or None; got 1\.5"):
        EncoderEmbedder(tiny_bert, finetune_epochs=1, finetune_layers=1.5).fit(texts, Y)


def test_fine_tuning_time_is_estimated_from_one_median_batch_without_changing_weights(
        monkeypatch):
    from types import SimpleNamespace

    from transformers import BertConfig, BertModel

    import skstack._finetune
    from skstack._finetune import FineTuneSettings, estimate_seconds

    config = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=32, max_position_embeddings=32)
    model = BertModel(config).eval()
    before = copy.deepcopy(model.state_dict())
    ticks = iter(range(100))  # a clock on which each timed run takes exactly 1 s
    monkeypatch.setattr(skstack._finetune, "time",
                        SimpleNamespace(perf_counter=lambda: next(ticks)))
    ids = [[1] * n for n in (2, 2, 3, 3, 4, 4, 10, 10)]
    settings = FineTuneSettings(epochs=2, batch_size=2, layers=1)
    seconds = estimate_seconds(model, ids, np.zeros((8, 3)), settings, pad_id=0)
    # batches of widths 2, 3, 4, 10: 38 padded tokens an epoch; the median batch (width 4,
    # 8 tokens) timed at 1 s: 38 / 8 s an epoch; its 4 optimizer steps timed at 1 s each
    # (on a scratch tensor as large as the trained weights: fewer than 4M); 2 epochs
    assert seconds == pytest.approx(2 * (38 / 8 + 4))
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert all(p.grad is None and p.requires_grad for p in model.parameters())
    assert not model.training


def test_auto_fine_tunes_when_affordable_and_says_what_it_chose(tiny_bert, emotion_data,
                                                                monkeypatch, caplog):
    import logging

    import skstack._finetune
    from skstack.cards import _ran

    texts, Y = emotion_data
    frozen = EncoderEmbedder(tiny_bert, cache=None).fit(texts)
    caplog.set_level(logging.INFO, logger="skstack.progress")
    few = EncoderEmbedder(tiny_bert, finetune_epochs="auto", cache=None).fit(texts, Y)
    assert few.finetune_loss_ == [] and few.fingerprint_ == frozen.fingerprint_
    assert f"{len(texts)} texts, fewer than 1,000; the encoder stays frozen" in caplog.text
    assert _ran(few) == " (not fine-tuned)"

    monkeypatch.setattr(skstack._finetune, "AUTO_MIN_TEXTS", 1)
    params = {"finetune_learning_rate": 1e-3, "random_state": 0, "cache": None}
    caplog.clear()
    slow = EncoderEmbedder(tiny_bert, finetune_epochs="auto", finetune_budget=0,
                           **params).fit(texts, Y)
    assert slow.finetune_loss_ == [] and slow.fingerprint_ == frozen.fingerprint_
    assert re.search(r"2 epochs on \d+ texts estimated at [\d,]+ s on cpu, budget 0 s: the "
                     r"encoder stays frozen \(finetune_epochs=2 fine-tunes anyway\)",
                     caplog.text)
    caplog.clear()
    cheap = EncoderEmbedder(tiny_bert, finetune_epochs="auto", finetune_budget=1e6,
                            **params).fit(texts, Y)
    assert "budget 1,000,000 s: fine-tuning" in caplog.text
    explicit = EncoderEmbedder(tiny_bert, finetune_epochs=2, **params).fit(texts, Y)
    assert cheap.finetune_loss_ == explicit.finetune_loss_ and len(cheap.finetune_loss_) == 2
    assert cheap.fingerprint_ == explicit.fingerprint_ != frozen.fingerprint_
    assert _ran(cheap) == " (fine-tuned 2 epochs)"

    # a kept fine-tuning of the same settings is reused, whatever the budget
    kept = {**params, "cache": "memory"}
    first = EncoderEmbedder(tiny_bert, finetune_epochs=2, **kept).fit(texts, Y)
    reused = EncoderEmbedder(tiny_bert, finetune_epochs="auto", finetune_budget=0,
                             **kept).fit(texts, Y)
    assert reused.finetune_loss_ == first.finetune_loss_
    assert reused.fingerprint_ == first.fingerprint_
    with pytest.raises(ValueError, match=r"finetune_epochs='auto' needs the label matrix y"):
        EncoderEmbedder(tiny_bert, finetune_epochs="auto").fit(texts)
    with pytest.raises(ValueError, match=r"'finetune_epochs' parameter of EncoderEmbedder "
                                         r"must be .*'auto'.*; got 'always'"):
        EncoderEmbedder(tiny_bert, finetune_epochs="always").fit(texts, Y)


def test_label_names_go_first_as_a_pair_with_each_names_first_piece_found(tmp_path):
    from transformers import BertTokenizerFast

    from skstack._batching import prepend_labels, tokenize

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "joy", "anger", "nerv", "##ous",
             "i", "am", "so", "happy", "a", "b"]
    (tmp_path / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tokenizer = BertTokenizerFast(str(tmp_path / "vocab.txt"))
    ids, _, _ = tokenize(tokenizer, ["i am so happy", "joy"], 16)
    pairs, positions = prepend_labels(tokenizer, ["joy", "nervous", "anger"], ids, 10)
    # [CLS] joy nerv ##ous anger [SEP] text [SEP], the text cut to the 10 tokens' room (4)
    assert [tokenizer.convert_ids_to_tokens(p) for p in pairs] == [
        ["[CLS]", "joy", "nerv", "##ous", "anger", "[SEP]", "i", "am", "so", "[SEP]"],
        ["[CLS]", "joy", "nerv", "##ous", "anger", "[SEP]", "joy", "[SEP]"]]
    assert positions == [1, 2, 4]
    # as the tokenizer itself lays out a pair
    assert pairs[1] == tokenizer("joy nervous anger", "joy")["input_ids"]
    with pytest.raises(ValueError, match=r"The 3 label names take 4 tokens; max_length=7 "
                                         r"leaves no room for the text\."):
        prepend_labels(tokenizer, ["joy", "nervous", "anger"], ids, 7)
    with pytest.raises(ValueError, match=r"The label name ' ' gives no tokens"):
        prepend_labels(tokenizer, ["joy", " "], ids, 16)


def test_label_aware_fine_tuning_scores_each_label_from_its_names_token(tiny_bert,
                                                                        emotion_data,
                                                                        monkeypatch):
    from skstack._finetune import _LabelTokenHead

    head = _LabelTokenHead(3, [1, 3])
    with torch.no_grad():
        head.score.weight.copy_(torch.tensor([[1.0, 2.0, 0.0]]))
        head.bias.copy_(torch.tensor([0.5, -0.5]))
    states = torch.arange(2 * 4 * 3, dtype=torch.float32).reshape(2, 4, 3)
    # by hand: label 0 reads token 1, label 1 token 3; state . (1, 2, 0) + the label's bias
    expected = torch.tensor([[3 + 2 * 4 + 0.5, 9 + 2 * 10 - 0.5],
                             [15 + 2 * 16 + 0.5, 21 + 2 * 22 - 0.5]])
    torch.testing.assert_close(head(states, torch.ones(2, 4)), expected)

    texts, Y = emotion_data
    frame = pd.DataFrame(Y, columns=["joy", "anger", "fear", "love"])
    params = {"finetune_epochs": 2, "finetune_learning_rate": 1e-3, "random_state": 0,
              "cache": None}
    pooled = EncoderEmbedder(tiny_bert, **params).fit(texts, frame)
    aware = EncoderEmbedder(tiny_bert, finetune_head="labels", **params).fit(texts, frame)
    assert len(aware.finetune_loss_) == 2 and aware.fingerprint_ != pooled.fingerprint_
    assert not np.allclose(aware.transform(texts), pooled.transform(texts))
    assert aware.transform(texts).shape == pooled.transform(texts).shape  # texts alone
    # "auto" estimates the label-aware fine-tuning it would run, and runs that one
    import skstack._finetune

    monkeypatch.setattr(skstack._finetune, "AUTO_MIN_TEXTS", 1)
    auto = EncoderEmbedder(tiny_bert, finetune_head="labels", finetune_budget=1e6,
                           **{**params, "finetune_epochs": "auto"}).fit(texts, frame)
    assert auto.finetune_loss_ == aware.finetune_loss_
    with pytest.raises(ValueError, match=r"finetune_head='labels' reads the label names: fit "
                                         r"with y as a DataFrame"):
        EncoderEmbedder(tiny_bert, finetune_head="labels", **params).fit(texts, Y)


def test_fine_tuning_keys_kept_before_finetune_layers_are_still_found():
    import hashlib
    import json

    from skstack._finetune import FineTuneSettings, fine_tune_key

    ids, Y = [[5, 6], [7]], np.array([[1, 0], [0, 1]])
    settings = FineTuneSettings(epochs=1, random_state=0)
    # by hand, as 0.2 digested it: the settings without the new field, then ids and labels
    digest = hashlib.sha256(json.dumps(
        {"weights": "w", "tokenizer": "t", "epochs": 1, "learning_rate": 2e-5,
         "warmup_ratio": 0.1, "batch_size": 16, "accumulation_steps": 1,
         "mixed_precision": False, "random_state": 0, "pooling": "mean"},
        sort_keys=True).encode())
    for row in ids:
        digest.update(np.asarray(row, dtype=np.int64).tobytes() + b"|")
    digest.update(Y.astype(np.int8).tobytes() + str(Y.shape).encode())
    assert fine_tune_key("w", "t", ids, Y, settings) == digest.hexdigest()
    top = FineTuneSettings(epochs=1, random_state=0, layers=1)
    assert fine_tune_key("w", "t", ids, Y, top) != digest.hexdigest()


def test_lower_precision_copies_the_shared_model(tiny_bert):
    full = EncoderEmbedder(tiny_bert, cache=None).fit(TEXTS)
    half = EncoderEmbedder(tiny_bert, dtype="bfloat16", cache=None).fit(TEXTS)
    assert next(half.model_.parameters()).dtype == torch.bfloat16
    assert next(full.model_.parameters()).dtype == torch.float32  # untouched
    Z = half.transform(TEXTS)
    assert Z.dtype == np.float32
    np.testing.assert_allclose(Z, full.transform(TEXTS), atol=0.05)
    assert half.fingerprint_ != full.fingerprint_


@pytest.mark.parametrize("multiple", [None, 1, 8])
def test_encoding_batches_pad_each_text_to_a_width_of_its_own(multiple):
    from skstack._batching import length_sorted_batches, n_batches

    ids = [[7] * n for n in (3, 9, 8, 16, 17, 30, 31, 3, 5)]
    batches = list(length_sorted_batches(ids, 2, 0, multiple, max_length=30))
    assert sorted(np.concatenate([b[0] for b in batches]).tolist()) == list(range(9))
    assert len(batches) == n_batches(ids, 2, multiple, 30)
    widths = {}
    for positions, input_ids, mask in batches:
        assert len(positions) <= 2
        np.testing.assert_array_equal(mask.sum(1), [len(ids[p]) for p in positions])
        widths.update((int(p), input_ids.shape[1]) for p in positions)
    if multiple is None:  # the batch's longest: lengths sorted, (31, 30), (17, 16), ...
        assert widths == {6: 31, 5: 31, 4: 17, 3: 17, 1: 9, 2: 9, 8: 5, 0: 5, 7: 3}
    else:  # its own: the next multiple, at most max_length (31 tokens keep their 31)
        expected = {1: [3, 9, 8, 16, 17, 30, 31, 3, 5],
                    8: [8, 16, 8, 16, 24, 30, 31, 8, 8]}[multiple]
        assert [widths[i] for i in range(9)] == expected


def test_fine_tuning_batches_group_similar_lengths_and_cover_every_row_once():
    from skstack._batching import bucketed_batches

    rng = np.random.default_rng(0)
    lengths = rng.integers(3, 120, size=1000).tolist()
    gen = torch.Generator().manual_seed(0)
    batches = bucketed_batches(lengths, 16, gen, pool=10)
    rows = np.concatenate(batches)
    assert sorted(rows.tolist()) == list(range(1000))
    assert max(len(b) for b in batches) == 16 and len(batches) == 63  # ceil(1000 / 16)
    padded = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    assert padded < 1.15 * sum(lengths)  # random batches of 16 would pad to ~1.9x
    again = bucketed_batches(lengths, 16, torch.Generator().manual_seed(1), pool=10)
    assert [b.tolist() for b in again] != [b.tolist() for b in batches]  # reshuffled per seed


def test_dtype_auto_picks_bfloat16_only_where_it_is_native(tiny_bert, monkeypatch):
    import skstack._runtimes

    texts = ["one text", "another text here"]
    fp32 = EncoderEmbedder(tiny_bert, cache=None).fit(texts)
    for native, expected in ((True, "bfloat16"), (False, "float32")):
        monkeypatch.setattr(skstack._runtimes, "native_bfloat16", lambda device, n=native: n)
        emb = EncoderEmbedder(tiny_bert, dtype="auto", cache=None).fit(texts)
        assert emb.dtype_ == expected
        assert next(emb.model_.parameters()).dtype == getattr(torch, expected)
        # precisions never share cached vectors; float32 keeps its old fingerprint
        assert (emb.fingerprint_ == fp32.fingerprint_) == (expected == "float32")
        out = emb.transform(texts)
        assert out.dtype == np.float32
        cos = (out * fp32.transform(texts)).sum(1) / (
            np.linalg.norm(out, axis=1) * np.linalg.norm(fp32.transform(texts), axis=1))
        assert cos.min() > 0.99


@pytest.mark.parametrize(("limit", "native"), [("AVX2", False), ("avx512_core_vnni", False),
                                               ("AVX512_CORE_BF16", True), ("ALL", True)])
def test_an_isa_limit_below_bfloat16_makes_it_emulated(monkeypatch, limit, native):
    from skstack._loading import native_bfloat16

    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True, raising=False)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", limit)
    assert native_bfloat16(torch.device("cpu")) is native


def test_seeded_fine_tuning_is_done_once_and_reused(tiny_bert, emotion_data, monkeypatch,
                                                    home):
    import skstack
    import skstack._finetune

    tmp_path = home  # kept fine-tunings go under the home folder
    texts, Y = emotion_data
    calls = []
    real = skstack._finetune.fine_tune_encoder
    monkeypatch.setattr(skstack._finetune, "fine_tune_encoder",
                        lambda *a, **k: calls.append(1) or real(*a, **k))
    params = {"finetune_epochs": 1, "finetune_learning_rate": 1e-3, "random_state": 3}
    first = EncoderEmbedder(tiny_bert, **params).fit(texts, Y)
    second = clone(first).fit(texts, Y)  # a grid-search clone on the same fold
    assert len(calls) == 1
    assert second.fingerprint_ == first.fingerprint_
    assert second.finetune_loss_ == first.finetune_loss_
    np.testing.assert_array_equal(second.transform(texts), first.transform(texts))
    skstack._finetune.forget_fine_tuned()  # a new process: the home folder still has them
    EncoderEmbedder(tiny_bert, **params).fit(texts, Y)
    assert len(calls) == 1 and len(list((tmp_path / "finetuned").iterdir())) == 1
    # anything that changes the result fine-tunes again
    EncoderEmbedder(tiny_bert, **params).fit(texts, 1 - Y)
    EncoderEmbedder(tiny_bert, **{**params, "random_state": 4}).fit(texts, Y)
    EncoderEmbedder(tiny_bert, **{**params, "finetune_accumulation_steps": 2}).fit(texts, Y)
    assert len(calls) == 4
    unseeded = {**params, "random_state": None}
    EncoderEmbedder(tiny_bert, **unseeded).fit(texts, Y)
    EncoderEmbedder(tiny_bert, **unseeded).fit(texts, Y)
    assert len(calls) == 6  # an unseeded fine-tuning is not repeatable, so never reused
    EncoderEmbedder(tiny_bert, **{**params, "cache": None}).fit(texts, Y)
    assert len(calls) == 7  # cache=None: nothing kept, nothing reused
    monkeypatch.delenv("SKSTACK_HOME", raising=False)
    skstack._finetune.forget_fine_tuned()
    with skstack.config_context(home=False):
        EncoderEmbedder(tiny_bert, **{**params, "random_state": 5}).fit(texts, Y)
        EncoderEmbedder(tiny_bert, **{**params, "random_state": 5}).fit(texts, Y)
    assert len(calls) == 8  # no home: kept in memory only
    assert len(list((tmp_path / "finetuned").iterdir())) == 4


def test_gradient_accumulation_equals_one_larger_batch():
    from transformers import BertConfig, BertModel

    from skstack._finetune import FineTuneSettings, fine_tune_encoder

    config = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1,
                        num_attention_heads=2, intermediate_size=32, hidden_dropout_prob=0.0,
                        attention_probs_dropout_prob=0.0, max_position_embeddings=32)
    torch.manual_seed(0)
    base = BertModel(config)
    ids = [[1, 5, 7, 2], [1, 9, 2], [1, 4, 4, 8, 2], [1, 3, 2]]
    Y = np.array([[1, 0], [0, 1], [1, 1], [0, 0]])
    states = []
    for batch_size, steps in ((4, 1), (2, 2), (1, 4)):
        model = copy.deepcopy(base)
        settings = FineTuneSettings(epochs=1, learning_rate=1e-2, warmup_ratio=0.0,
                                    batch_size=batch_size, accumulation_steps=steps,
                                    random_state=0)
        losses = fine_tune_encoder(model, ids, Y, settings, pad_id=0)
        states.append((model.state_dict(), losses))
    # one optimizer step on the mean gradient of the 4 rows, however they were batched
    for state, losses in states[1:]:
        np.testing.assert_allclose(losses, states[0][1], rtol=1e-5)
        for name, tensor in state.items():
            torch.testing.assert_close(tensor, states[0][0][name], atol=1e-5, rtol=1e-4)
    changed = [not torch.equal(v, base.state_dict()[k]) for k, v in states[0][0].items()]
    assert any(changed)


def test_several_devices_encode_in_worker_processes_like_one(tiny_bert):
    texts = [f"{FIXTURE_TEXTS[i % len(FIXTURE_TEXTS)]} {'word ' * (i % 9)}{i}" for i in range(70)]
    for word_pooling in (None, "mean"):
        params = {"cache": None, "batch_size": 4, "word_pooling": word_pooling}
        one = EncoderEmbedder(tiny_bert, device="cpu", **params).fit(texts)
        two = EncoderEmbedder(tiny_bert, device=["cpu", "cpu"], **params).fit(texts)
        a, b = one.transform(texts), two.transform(texts)
        if word_pooling is None:
            np.testing.assert_allclose(b, a, atol=1e-5)
        else:
            np.testing.assert_array_equal(b.lengths, a.lengths)
            for i in range(len(texts)):
                np.testing.assert_allclose(b.words(i), a.words(i), atol=2e-3)
    assert two.device_.type == "cpu"


def test_several_devices_are_checked(tiny_bert):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ValueError, match="device='cuda:all' was requested but CUDA"):
        EncoderEmbedder(tiny_bert, device="cuda:all").fit(TEXTS)
    with pytest.raises(ValueError, match="'cuda:1' was requested but CUDA"):
        EncoderEmbedder(tiny_bert, device=["cpu", "cuda:1"]).fit(TEXTS)
    with pytest.raises(ValueError, match="a non-empty list of device names"):
        EncoderEmbedder(tiny_bert, device=[]).fit(TEXTS)


def test_encoding_many_texts_logs_a_progress_line(tiny_bert, capsys):
    from skstack import progress_to_stderr

    texts = [f"text number {i}" for i in range(120)]
    emb = EncoderEmbedder(tiny_bert, cache=None).fit(texts)
    progress_to_stderr()
    try:
        emb.transform(texts)
        emb.transform(texts[:99])  # under 100 new texts: no line (serving stays quiet)
    finally:
        progress_to_stderr(False)
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("skstack: encoding 120 texts with ") and err[0].endswith(
        "(float32 on torch; 0 from the cache)")
    assert err[1].startswith("skstack: encoded 120 texts in ") and len(err) == 2


def test_a_tokenizer_that_reads_the_texts_badly_is_reported(tiny_bert, emotion_data):
    # the tests' tiny vocabulary knows few of these words, as an English model few Japanese
    texts, _ = emotion_data
    with pytest.warns(UserWarning, match=r"The tokenizer of .*tiny_bert.* reads these texts "
                      r"badly: 12% of its tokens are unknown \(in 60 texts\).*language=\.\.\. "
                      r"in make_stacked_pipeline"):
        EncoderEmbedder(tiny_bert).fit(texts)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        EncoderEmbedder(tiny_bert).fit(["happy day"] * 5)  # words it knows: no warning


def test_tokenizer_coverage_counts_unknown_tokens_and_spelt_words(tmp_path):
    from transformers import BertTokenizerFast

    from skstack._coverage import tokenizer_coverage

    # a vocabulary written by hand, so the word pieces do not depend on how a trainer breaks
    # ties between equally frequent merges
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "happy", "a", "b", "y", "##p", "##a",
             "##h"]
    (tmp_path / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tokenizer = BertTokenizerFast(str(tmp_path / "vocab.txt"))
    texts = ["happy", "zqx", "a b", "日本", "yppah"]
    assert [tokenizer.tokenize(t) for t in texts] == [
        ["happy"], ["[UNK]"], ["a", "b"], ["[UNK]", "[UNK]"], ["y", "##p", "##p", "##a", "##h"]]
    # by hand: 11 tokens, 3 unknown; single letters that touch a neighbour: the 5 of yppah
    # (a and b stand apart; the kanji are single by nature)
    assert tokenizer_coverage(tokenizer, texts) == (3 / 11, 5 / 11, 11)
