"""Word mode: the shared word splitter, per-word encoder states, their alignment in the
stack, the ragged container and the Bi-LSTM reading words."""

import joblib
import numpy as np
import pytest
import torch
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.pipeline import Pipeline
from sklearn.utils import _safe_indexing

from skstack import BiLSTMClassifier, EncoderEmbedder, StackingEmbedder, TunedThresholds
from skstack._pooling import pool_words
from skstack.cache import clear_memory_cache
from skstack.sequences import WordSequences, token_words, word_spans
from tests.conftest import FIXTURE_TEXTS


def _words(text):
    return [text[s:e] for s, e in word_spans(text)]


def test_word_splitter_keeps_contractions_and_splits_punctuation_and_emoji():
    assert _words("I'm so happy!! 😊") == ["I'm", "so", "happy", "!", "!", "😊"]
    assert _words("أنا سعيد، جدا") == ["أنا", "سعيد", "،", "جدا"]
    assert _words("   ") == []


@pytest.mark.parametrize("text, words", [
    # Arabic with full diacritics (harakat, shadda, sukun), and without
    ("السَّلَامُ عَلَيْكُمْ", ["السَّلَامُ", "عَلَيْكُمْ"]),
    ("السلام عليكم", ["السلام", "عليكم"]),
    # clitics are part of the word; Arabic comma, semicolon, question mark are words
    ("وبالكتاب، لِلْمَدْرَسَةِ؛ هل ذهبتَ؟", ["وبالكتاب", "،", "لِلْمَدْرَسَةِ", "؛", "هل",
                                          "ذهبتَ", "؟"]),
    ("مرحبـــا", ["مرحبـــا"]),  # tatweel inside a word
    # dialect tweets: elongated letters, Gulf and Egyptian spellings, an emoji, a hashtag
    ("ههههه والله مبسوووط 😂 #الرياض", ["ههههه", "والله", "مبسوووط", "😂", "#", "الرياض"]),
    ("شلونك؟ إزيك يا باشا", ["شلونك", "؟", "إزيك", "يا", "باشا"]),
    ("می‌خواهم", ["می‌خواهم"]),  # Persian: a ZWNJ inside the word
    ("שָׁלוֹם עוֹלָם", ["שָׁלוֹם", "עוֹלָם"]),  # Hebrew points
    ("नमस्ते दुनिया", ["नमस्ते", "दुनिया"]),  # Devanagari matras and virama
    ("cafe\u0301 au lait", ["cafe\u0301", "au", "lait"]),  # NFD accent
    ("你好，世界", ["你", "好", "，", "世", "界"]),  # Chinese: one ideograph a word
    ("ナヌ！！( ゜!゜)y", ["ナ", "ヌ", "！", "！", "(", "゜", "!", "゜", ")", "y"]),  # a kaomoji
    ("สวัสดีครับ ผม", ["สวัสดีครับ", "ผม"]),  # Thai: a space-free run is one word
    ("us 👨\u200d👩\u200d👧 ok 👍🏽!", ["us", "👨\u200d👩\u200d👧", "ok", "👍🏽", "!"]),
    ("\u0301alone", ["alone"]),  # a mark with no letter before it is no word
])
def test_one_word_per_orthographic_word_in_every_script(text, words):
    assert _words(text) == words


def test_words_never_start_with_a_mark_and_marks_never_change_the_count():
    import unicodedata

    from hypothesis import given, settings
    from hypothesis import strategies as st

    letters = st.sampled_from([*"abcاسلمשלוםनमतक你好ก", " ", "!", "،", "😊", "\u200d"])
    marks = st.sampled_from(["\u064e", "\u0651", "\u05b8", "\u093e", "\u094d", "\u0301",
                             "\ufe0f"])

    @settings(max_examples=300, deadline=None, derandomize=True)
    @given(st.lists(letters | marks, max_size=30).map("".join))
    def check(text):
        spans = word_spans(text)
        assert all(not unicodedata.category(text[start]).startswith("M") for start, _ in spans)
        bare = "".join(c for c in text if not unicodedata.category(c).startswith("M"))
        assert len(spans) == len(word_spans(bare))
        assert len(word_spans(unicodedata.normalize("NFC", text))) == len(spans)

    check()


def test_word_mode_gives_one_state_per_arabic_word_with_or_without_diacritics(tiny_bert_b):
    emb = EncoderEmbedder(tiny_bert_b, word_pooling="first", cache=None).fit(["x"])
    out = emb.transform(["السَّلَامُ عَلَيْكُمْ", "السلام عليكم"])
    assert [len(out.words(i)) for i in range(2)] == [2, 2]
    assert np.abs(out.words(0).astype(np.float32)).sum(axis=1).min() > 0  # no empty state


def test_tokens_map_to_the_word_holding_their_last_character():
    spans = word_spans("unhappy day")  # (0, 7), (8, 11)
    offsets = [(0, 0), (0, 2), (2, 7), (8, 11), (0, 0)]  # [CLS] un ##happy day [SEP]
    assert token_words(offsets, spans) == [-1, 0, 0, 1, -1]
    # with a 7-character prefix in front of the text, its tokens belong to no word
    shifted = [(0, 0), (0, 5), (5, 6), (7, 9), (9, 14), (15, 18), (0, 0)]
    assert token_words(shifted, spans, shift=7) == [-1, -1, -1, 0, 0, 1, -1]


def test_pool_words_first_and_mean_against_hand_computation():
    hidden = torch.tensor([[[0.0], [1.0], [3.0], [5.0], [9.0]]])  # 5 tokens, dim 1
    index = torch.tensor([[-1, 0, 0, 1, -1]])
    first = pool_words(hidden, index, 3, "first")
    mean = pool_words(hidden, index, 3, "mean")
    assert first.flatten().tolist() == [1.0, 5.0, 0.0]  # word 2 has no token: zeros
    assert mean.flatten().tolist() == [2.0, 5.0, 0.0]


def test_word_sequences_select_concatenate_and_align():
    a = WordSequences.from_rows([np.ones((3, 2)), np.zeros((0, 2)), 2 * np.ones((1, 2))], "a")
    assert a.lengths.tolist() == [3, 0, 1] and a.shape == (3, 2)
    sub = a[np.array([2, 0])]
    assert sub.lengths.tolist() == [1, 3] and sub.words(0).tolist() == [[2, 2]]
    assert _safe_indexing(a, [1, 2]).lengths.tolist() == [0, 1]  # sklearn's splitters
    both = WordSequences.concatenate([a[[0]], a[[1, 2]]])
    np.testing.assert_array_equal(both.values, a.values)
    b = WordSequences.from_rows([np.full((2, 1), 7.0), np.zeros((1, 1)), np.ones((1, 1))], "b")
    aligned = WordSequences.align([("a", a), ("b", b)], np.eye(3), [("s", 3)])
    assert aligned.lengths.tolist() == [2, 0, 1]  # each text keeps the words both reached
    assert aligned.word_blocks == [("a", 2), ("b", 1)] and aligned.shape == (3, 6)
    assert aligned.words(0).tolist() == [[1, 1, 7], [1, 1, 7]]
    np.testing.assert_allclose(a.mean_words(), [[1, 1], [0, 0], [2, 2]])
    with pytest.raises(ValueError, match="do not add up"):
        WordSequences(np.zeros((2, 3)), [0, 2], [("a", 2)])
    bad = WordSequences.from_rows([np.ones((1, 2)), np.array([[np.nan, 0.0]])], "a")
    with pytest.raises(ValueError, match="NaN or infinity in the word states of text 1"):
        bad.check_finite()


@pytest.mark.parametrize("word_pooling", ["first", "mean"])
def test_encoder_word_mode_returns_one_vector_per_word(tiny_bert, word_pooling):
    emb = EncoderEmbedder(tiny_bert, word_pooling=word_pooling, cache=None).fit(FIXTURE_TEXTS)
    out = emb.transform(FIXTURE_TEXTS)
    assert isinstance(out, WordSequences)
    assert out.lengths.tolist() == [len(word_spans(t)) for t in FIXTURE_TEXTS]
    assert out.values.dtype == np.float16 and out.word_width == 32
    # a one-word text in mean mode: its word vector is the sentence vector without specials
    sentence = EncoderEmbedder(tiny_bert, cache=None).fit(["x"])
    ids = sentence.tokenizer_("hello")["input_ids"]
    with torch.inference_mode():
        hidden = sentence.model_(torch.tensor([ids])).last_hidden_state[0]
    expected = hidden[1:-1].mean(0) if word_pooling == "mean" else hidden[1]
    got = emb.transform(["hello"]).words(0)
    np.testing.assert_allclose(got[0], expected.numpy(), atol=2e-3)


def test_two_layers_in_word_mode_are_each_layers_word_states_side_by_side(tiny_bert):
    # one forward pass giving what two members, one per layer, would give (E5_PARAMS)
    params = {"word_pooling": "mean", "cache": None}
    both = EncoderEmbedder(tiny_bert, layers=[-1, -2], layer_combine="concat", **params)
    out = both.fit(FIXTURE_TEXTS).transform(FIXTURE_TEXTS)
    assert out.word_width == 64 and both.embedding_dim_ == 64
    last, second = (EncoderEmbedder(tiny_bert, layers=layer, **params).fit(FIXTURE_TEXTS)
                    .transform(FIXTURE_TEXTS) for layer in (-1, -2))
    assert out.lengths.tolist() == last.lengths.tolist()
    np.testing.assert_array_equal(out.values, np.hstack([last.values, second.values]))


def test_word_states_are_cached_compactly_and_served_again(tiny_bert, tmp_path):
    clear_memory_cache()
    emb = EncoderEmbedder(tiny_bert, word_pooling="mean", cache=tmp_path).fit(FIXTURE_TEXTS)
    first = emb.transform(FIXTURE_TEXTS)
    clear_memory_cache()
    again = EncoderEmbedder(tiny_bert, word_pooling="mean", cache=tmp_path).fit(FIXTURE_TEXTS)
    again.model_ = None  # the disk cache must serve every text
    second = again.transform(FIXTURE_TEXTS)
    np.testing.assert_array_equal(second.values, first.values)
    sentence = EncoderEmbedder(tiny_bert, cache=tmp_path).fit(FIXTURE_TEXTS)
    assert sentence.fingerprint_ != emb.fingerprint_


def test_stack_aligns_word_members_and_keeps_sentence_blocks(tiny_bert, tiny_bert_b,
                                                              emotion_data):
    texts, Y = emotion_data
    stack = StackingEmbedder([
        ("a", EncoderEmbedder(tiny_bert, word_pooling="first")),
        ("b", EncoderEmbedder(tiny_bert_b, word_pooling="mean")),
        ("chars", TfidfVectorizer(analyzer="char", max_features=20)),
    ], cv=3, random_state=0)
    Z = stack.fit_transform(texts, Y)
    assert isinstance(Z, WordSequences)
    assert stack.word_blocks_ == [("a", 32), ("b", 48)]
    assert stack.blocks_ == [("chars", 20), ("meta", 4)]
    assert Z.lengths.tolist() == [len(word_spans(t)) for t in texts]
    assert len(stack.get_feature_names_out()) == Z.shape[1] == 32 + 48 + 20 + 4
    test = stack.transform(texts[:5])
    assert test.word_blocks == Z.word_blocks and test.lengths.tolist() == Z.lengths[:5].tolist()


def test_cross_fitted_members_embed_each_row_with_a_model_that_never_saw_it(tiny_bert,
                                                                             emotion_data):
    texts, Y = emotion_data
    member = EncoderEmbedder(tiny_bert, finetune_epochs=1, finetune_batch_size=8,
                             random_state=0, word_pooling="mean")
    stack = StackingEmbedder([("a", member)], cv=3, leak_free=2, random_state=0)
    Z = stack.fit_transform(texts, Y)
    folds = KFold(2, shuffle=True, random_state=0).split(np.zeros((60, 1)))
    for train, test in folds:
        fold_model = EncoderEmbedder(tiny_bert, finetune_epochs=1, finetune_batch_size=8,
                                     random_state=0, word_pooling="mean")
        expected = fold_model.fit([texts[i] for i in train], Y[train]).transform(
            [texts[i] for i in test])
        np.testing.assert_array_equal(Z[test].values, expected.values)


@pytest.fixture
def word_pipeline(tiny_bert):
    stack = StackingEmbedder([("a", EncoderEmbedder(tiny_bert, word_pooling="first"))],
                             cv=3, random_state=0)
    net = BiLSTMClassifier(max_epochs=3, batch_size=16, random_state=0,
                           module__projection_dim=16, module__hidden_size=8)
    return Pipeline([("embed", stack), ("clf", net)])


def test_bilstm_reads_words_in_a_pipeline_and_round_trips(word_pipeline, emotion_data, tmp_path):
    texts, Y = emotion_data
    word_pipeline.fit(texts, Y)
    net = word_pipeline.named_steps["clf"]
    assert net.word_blocks_ == [("a", 32)] and net.blocks_ == [("meta", 4)]
    assert net.module_.word_projection.in_features == 32
    assert net.module_.head.in_features == 2 * 8 + 16  # Bi-LSTM states + the meta block
    proba = word_pipeline.predict_proba(texts)
    assert proba.shape == (60, 4) and np.all((proba >= 0) & (proba <= 1))
    joblib.dump(word_pipeline, tmp_path / "p.joblib")
    np.testing.assert_allclose(joblib.load(tmp_path / "p.joblib").predict_proba(texts), proba,
                               atol=1e-6)
    with pytest.raises(ValueError, match="word-level layout"):
        net.predict_proba(np.zeros((2, 4), np.float32))


def test_padding_never_changes_a_texts_prediction(word_pipeline, emotion_data):
    texts, Y = emotion_data
    word_pipeline.fit(texts, Y)
    alone = word_pipeline.predict_proba([texts[0]])
    with_long = word_pipeline.predict_proba([texts[0], " ".join(texts[:6])])
    np.testing.assert_allclose(with_long[0], alone[0], atol=1e-5)


def test_word_mode_grid_search_with_tuned_thresholds(tiny_bert, emotion_data):
    texts, Y = emotion_data
    stack = StackingEmbedder([("a", EncoderEmbedder(tiny_bert, word_pooling="mean"))],
                             meta_learner="drop", cv=2, random_state=0)
    net = BiLSTMClassifier(max_epochs=2, batch_size=16, random_state=0, train_split=0.2,
                           module__projection_dim=8, module__hidden_size=4)
    pipe = Pipeline([("embed", stack),
                     ("clf", TunedThresholds(net, objective="jaccard", cv=2))])
    search = GridSearchCV(pipe, {"clf__estimator__criterion__corr_weight": [0.0, 0.1]}, cv=2)
    search.fit(texts, Y)
    assert search.predict(texts[:3]).shape == (3, 4)
    net = search.best_estimator_.named_steps["clf"].estimator_
    assert net.blocks_ == [] and net.module_.head.in_features == 8
