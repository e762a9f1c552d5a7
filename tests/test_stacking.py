import numpy as np
import pytest
from sklearn.base import clone
from sklearn.decomposition import TruncatedSVD
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.metrics import average_precision_score
from sklearn.model_selection import KFold, cross_val_predict
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from skstack import BlockArray, EncoderEmbedder, StackingEmbedder
from skstack.stacking import (
    META_C_GRID,
    META_C_START,
    _meta_predict_proba,
    default_meta_learner,
)


def tfidf(n=5):
    return make_pipeline(TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 3)),
                         TruncatedSVD(n, random_state=0))


def test_output_layout_and_feature_names(tiny_bert, emotion_data):
    texts, Y = emotion_data
    stack = StackingEmbedder([("enc", EncoderEmbedder(tiny_bert)), ("chars", tfidf())],
                             cv=3, random_state=0)
    Z = stack.fit_transform(texts, Y)
    assert isinstance(Z, BlockArray)
    assert Z.dtype == np.float32
    assert Z.shape == (60, 32 + 5 + 4)
    assert stack.blocks_ == [("enc", 32), ("chars", 5), ("meta", 4)]
    assert Z.blocks == stack.blocks_
    names = stack.get_feature_names_out()
    assert names[0] == "enc__encoderembedder0"
    assert names[32] == "chars__truncatedsvd0"
    assert list(names[-4:]) == ["meta__0", "meta__1", "meta__2", "meta__3"]
    assert stack.transform(texts[:7]).shape == (7, 41)


def test_training_rows_get_out_of_fold_meta_features(emotion_data):
    texts, Y = emotion_data
    stack = StackingEmbedder([("chars", tfidf())], cv=4, random_state=0)
    oof = stack.fit_transform(texts, Y)[:, -4:]
    in_sample = stack.transform(texts)[:, -4:]
    assert not np.allclose(oof, in_sample)
    # By hand: the same folds, a fresh meta-learner (the chosen C) per fold, probabilities of
    # held-out rows.
    C = stack.meta_learner_[-1].estimator.C
    members = clone(tfidf()).fit_transform(texts, Y).astype(np.float32)
    expected = np.empty_like(oof)
    for train, test in KFold(4, shuffle=True, random_state=0).split(members):
        meta = default_meta_learner(0, C=C).fit(members[train], Y[train])
        expected[test] = meta.predict_proba(members[test])
    np.testing.assert_allclose(oof, expected, rtol=1e-5, atol=1e-6)


def _features_member(F):
    """A member that reads row i's features from ``F`` for the text ``str(i)``."""
    return FunctionTransformer(lambda texts: F[[int(t) for t in texts]])


def _latent_labels(n: int, width: int, noise: float):
    """3 labels of a 3-D latent, read through ``width`` features with ``noise`` added."""
    rng = np.random.default_rng(0)
    latent = rng.normal(size=(n, 3))
    Y = (latent + 0.3 * rng.normal(size=(n, 3)) > 0.3).astype(int)
    F = latent @ rng.normal(size=(3, width)) + noise * rng.normal(size=(n, width))
    return F.astype(np.float32), Y


# few rows of many weak, noisy copies of the signal want a stronger penalty than the grid's
# start; many rows of the signal itself a weaker one
@pytest.mark.parametrize(("n", "width", "noise", "direction"),
                         [(100, 200, 3.0, "down"), (600, 3, 0.0, "up")])
def test_default_meta_learner_chooses_C_by_out_of_fold_average_precision(n, width, noise,
                                                                        direction):
    F, Y = _latent_labels(n, width, noise)
    texts = [str(i) for i in range(n)]
    stack = StackingEmbedder([("f", _features_member(F))], cv=3, random_state=0)
    oof = stack.fit_transform(texts, Y)[:, -3:]
    C = stack.meta_learner_[-1].estimator.C
    assert (C < META_C_START) if direction == "down" else (C > META_C_START)
    # By hand: every C of the grid out of fold on the same folds; the choice is a local
    # maximum of the macro average precision, and its probabilities are the meta block
    folds = list(KFold(3, shuffle=True, random_state=0).split(F))
    ap = {}
    for c in META_C_GRID:
        proba = cross_val_predict(default_meta_learner(0, C=c), F, Y, cv=folds,
                                  method="predict_proba")
        ap[c] = average_precision_score(Y, proba, average="macro")
        if c == C:
            np.testing.assert_allclose(oof, proba, rtol=1e-5, atol=1e-6)
    i = META_C_GRID.index(C)
    assert all(ap[C] >= ap[META_C_GRID[j]] for j in (i - 1, i + 1)
               if 0 <= j < len(META_C_GRID))


def test_a_meta_learner_given_is_used_as_it_is(emotion_data):
    texts, Y = emotion_data
    stack = StackingEmbedder([("chars", tfidf())], meta_learner=default_meta_learner(0, C=7.0),
                             cv=3, random_state=0).fit(texts, Y)
    assert stack.meta_learner_[-1].estimator.C == 7.0


def test_the_default_meta_learner_predicts_as_scikit_learn_and_the_same_bits_in_any_batch():
    # its per-label regressions run as one product (a served call's fixed cost)
    F, Y = _latent_labels(300, 40, 1.0)
    meta = default_meta_learner(0, C=0.1).fit(F[:200], Y[:200])
    got = _meta_predict_proba(meta, F[200:])
    assert got.shape == (100, 3)
    np.testing.assert_allclose(got, meta.predict_proba(F[200:]), rtol=1e-5, atol=1e-7)
    alone = np.vstack([_meta_predict_proba(meta, F[i:i + 1]) for i in range(200, 300)])
    np.testing.assert_array_equal(alone, got)
    with pytest.raises(ValueError, match="fitted on 40 features; got 39"):
        _meta_predict_proba(meta[-1], F[200:, :39])


def test_other_meta_learners_predict_through_their_own_predict_proba():
    F, Y = _latent_labels(200, 10, 1.0)
    Y[:, 2] = 0  # a label never seen positive: scikit-learn predicts it with a constant
    constant = default_meta_learner(0).fit(F, Y)
    np.testing.assert_array_equal(_meta_predict_proba(constant, F), constant.predict_proba(F))
    knn = KNeighborsClassifier(3).fit(F, Y)
    for got, want in zip(_meta_predict_proba(knn, F[:5]), knn.predict_proba(F[:5]),
                         strict=True):  # a list, one array per label
        np.testing.assert_array_equal(got, want)


def test_leak_free_embeds_training_rows_with_fold_models(tiny_bert, emotion_data):
    texts, Y = emotion_data
    tuned = EncoderEmbedder(tiny_bert, finetune_epochs=1, finetune_learning_rate=1e-3,
                            random_state=0)
    stack = StackingEmbedder([("tuned", tuned), ("chars", tfidf())], cv=2, leak_free=True,
                             random_state=0)
    train_rows = stack.fit_transform(texts, Y)
    refit_rows = stack.transform(texts)
    assert not np.allclose(train_rows[:, :32], refit_rows[:, :32])  # fine-tuned: out of fold
    np.testing.assert_allclose(train_rows[:, 32:37], refit_rows[:, 32:37], atol=1e-6)


def test_nested_params_reach_members():
    stack = StackingEmbedder([("enc", EncoderEmbedder("x")), ("chars", tfidf())])
    params = stack.get_params()
    assert params["enc__pooling"] == "mean"
    assert "chars__truncatedsvd__n_components" in params
    stack.set_params(enc__pooling="cls", chars__truncatedsvd__n_components=3, cv=2)
    assert stack.members[0][1].pooling == "cls"
    assert clone(stack).get_params()["chars__truncatedsvd__n_components"] == 3


def test_drop_meta_learner_needs_no_labels(emotion_data):
    texts, _ = emotion_data
    stack = StackingEmbedder([("chars", tfidf())], meta_learner="drop")
    assert stack.fit_transform(texts).shape == (60, 5)
    assert stack.blocks_ == [("chars", 5)]


def test_meta_learner_returning_a_list_of_probabilities(emotion_data):
    texts, Y = emotion_data
    stack = StackingEmbedder([("chars", tfidf())], meta_learner=KNeighborsClassifier(3), cv=3)
    Z = stack.fit_transform(texts, Y)
    assert Z.shape == (60, 9)
    assert ((Z[:, 5:] >= 0) & (Z[:, 5:] <= 1)).all()


def test_member_errors(emotion_data):
    texts, Y = emotion_data
    with pytest.raises(ValueError, match="'meta' names the meta-learner's block"):
        StackingEmbedder([("meta", tfidf())]).fit(texts, Y)
    with pytest.raises(ValueError, match=r"must be a \(name, transformer\) pair"):
        StackingEmbedder([tfidf()]).fit(texts, Y)
    with pytest.raises(ValueError, match=r"'members' parameter of StackingEmbedder must be a "
                                         r"non-empty list of \(name, transformer\) pairs"):
        StackingEmbedder([]).fit(texts, Y)
    with pytest.raises(ValueError, match=r"'cv' .* an integer >= 2 or a CV splitter; got 1"):
        StackingEmbedder([("chars", tfidf())], cv=1).fit(texts, Y)
    with pytest.raises(ValueError, match="meta-learner needs the label matrix"):
        StackingEmbedder([("chars", tfidf())]).fit(texts)


def test_texts_are_checked_once_for_every_member(tiny_bert, tiny_bert_b, emotion_data,
                                                 monkeypatch):
    import skstack.encoder
    import skstack.stacking
    from skstack import EncoderEmbedder, _validation

    texts, Y = emotion_data
    full = []  # the lengths of inputs checked in full (not handed on already checked)

    def counting(X):
        if not isinstance(X, _validation.CheckedTexts):
            full.append(len(X))
        return _validation.check_texts(X)

    monkeypatch.setattr(skstack.stacking, "check_texts", counting)
    monkeypatch.setattr(skstack.encoder, "check_texts", counting)
    stack = StackingEmbedder([("a", EncoderEmbedder(tiny_bert)),
                              ("b", EncoderEmbedder(tiny_bert_b)), ("chars", tfidf())], cv=2)
    stack.fit(texts, Y).transform(texts)
    assert full == [60, 60]  # once in fit, once in transform; never by the two encoders
    with pytest.raises(TypeError, match=r"Text at position 1 is None"):
        stack.transform(["fine", None])


def test_a_members_projection_is_laid_out_for_sparse_products_with_the_same_values(
        emotion_data, tmp_path):
    from skstack import load, save

    texts, Y = emotion_data
    chars = make_pipeline(TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 3)),
                          TruncatedSVD(4, random_state=0))
    stack = StackingEmbedder([("chars", chars)], meta_learner="drop", cv=2).fit(texts, Y)
    svd = stack.members_[0][1][-1]
    # Fortran order: the transpose a sparse product reads is then C-contiguous, not copied
    assert svd.components_.flags.f_contiguous
    tfidf = stack.members_[0][1][0].transform(texts)
    expected = (tfidf @ np.ascontiguousarray(svd.components_).T).astype(np.float32)
    np.testing.assert_array_equal(stack.transform(texts), expected)
    assert load(save(stack, tmp_path / "s.skstack")).members_[0][1][-1] \
        .components_.flags.f_contiguous
    # a stack fitted before the layout (or given its members by hand) is laid out on use
    svd.components_ = np.ascontiguousarray(svd.components_)
    np.testing.assert_array_equal(stack.transform(texts), expected)
    assert svd.components_.flags.f_contiguous
