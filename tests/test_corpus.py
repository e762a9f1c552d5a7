"""predict_corpus: a Dask collection of texts in, one Parquet file per partition out, on one
process and on a LocalCluster whose worker dies mid-partition."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest
from sklearn.base import BaseEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import Pipeline

from skstack import EncoderEmbedder, StackingEmbedder, TunedThresholds, save
from skstack.corpus import predict_corpus

dd = pytest.importorskip("dask.dataframe")
dask = pytest.importorskip("dask")
pytest.importorskip("pyarrow")


@pytest.fixture
def saved(tiny_bert, emotion_data, tmp_path):
    texts, Y = emotion_data
    pipe = Pipeline([
        ("embed", StackingEmbedder([("a", EncoderEmbedder(tiny_bert, cache=None))], cv=2,
                                   random_state=0)),
        ("clf", TunedThresholds(OneVsRestClassifier(LogisticRegression()), objective="jaccard",
                                cv=0.25, refit=False, min_labels=1, random_state=0)),
    ]).fit(texts, pd.DataFrame(Y, columns=["joy", "anger", "fear", "love"]))
    return pipe, save(pipe, tmp_path / "model.skstack", card=False), texts


def corpus(texts, partitions: int = 3):
    frame = pd.DataFrame({"text": texts}, index=pd.RangeIndex(100, 100 + len(texts)))
    return dd.from_pandas(frame, npartitions=partitions)


@pytest.mark.parametrize("method", ["predict_proba", "predict", "predict_label_lists"])
def test_parts_hold_what_predict_gives_in_one_process(saved, tmp_path, method):
    from skstack import predict_label_lists

    pipe, path, texts = saved
    with dask.config.set(scheduler="synchronous"):
        parts = predict_corpus(path, corpus(texts), str(tmp_path / "out"), method=method)
    assert [os.path.basename(p) for p in parts] == [f"part-0000{i}.parquet" for i in range(3)]
    back = pd.read_parquet(tmp_path / "out")
    assert list(back.index) == list(range(100, 160))  # corpus order, the frame's index kept
    if method == "predict_label_lists":
        assert [list(v) for v in back["labels"]] == predict_label_lists(pipe, texts)
        return
    assert list(back.columns) == ["joy", "anger", "fear", "love"]
    expected = getattr(pipe, method)(texts)
    np.testing.assert_allclose(back.to_numpy(), expected, rtol=1e-6, atol=1e-7)


def test_a_bag_of_texts_and_transform(saved, tmp_path):
    import dask.bag as db

    pipe, _, texts = saved
    stack = save(pipe.named_steps["embed"], tmp_path / "stack.skstack", card=False)
    with dask.config.set(scheduler="synchronous"):
        predict_corpus(stack, db.from_sequence(texts, npartitions=2), str(tmp_path / "v"),
                       method="transform")
    vectors = np.stack(pd.read_parquet(tmp_path / "v")["vector"].to_numpy())
    np.testing.assert_allclose(vectors, pipe.named_steps["embed"].transform(texts), rtol=1e-5,
                               atol=1e-6)


def test_a_second_run_redoes_only_the_missing_parts(saved, tmp_path):
    _, path, texts = saved
    out = tmp_path / "out"
    with dask.config.set(scheduler="synchronous"):
        parts = predict_corpus(path, corpus(texts), str(out))
        before = {p: os.stat(p).st_mtime_ns for p in parts}
        os.remove(parts[1])  # as if the job had stopped before this partition
        predict_corpus(path, corpus(texts), str(out))
    after = {p: os.stat(p).st_mtime_ns for p in parts}
    assert after[parts[0]] == before[parts[0]] and after[parts[2]] == before[parts[2]]
    assert os.path.exists(parts[1]) and not list(out.glob(".part-*"))


def damage_truncate(part):
    part.write_bytes(part.read_bytes()[:-40])


def damage_garble(part):  # 16 bytes in the middle of the values, the footer intact
    raw = bytearray(part.read_bytes())
    middle = len(raw) // 3
    raw[middle:middle + 16] = bytes(b ^ 0x5A for b in raw[middle:middle + 16])
    part.write_bytes(bytes(raw))


@pytest.mark.parametrize("damage", [damage_truncate, damage_garble, os.remove])
def test_a_resumed_run_redoes_damaged_or_missing_parts_only(saved, tmp_path, damage):
    pipe, path, texts = saved
    out = tmp_path / "out"
    with dask.config.set(scheduler="synchronous"):
        parts = predict_corpus(path, corpus(texts), str(out))
        before = {p: os.stat(p).st_mtime_ns for p in parts}
        damage(out / "part-00001.parquet")
        predict_corpus(path, corpus(texts), str(out))
    assert os.stat(parts[0]).st_mtime_ns == before[parts[0]]  # verified, kept
    assert os.stat(parts[2]).st_mtime_ns == before[parts[2]]
    np.testing.assert_allclose(pd.read_parquet(out).to_numpy(), pipe.predict_proba(texts),
                               rtol=1e-6, atol=1e-7)


def test_another_corpus_in_the_same_folder_never_reuses_a_part(saved, tmp_path):
    pipe, path, texts = saved
    out = tmp_path / "out"
    other = [f"{t} (again)" for t in texts[:48]]
    with dask.config.set(scheduler="synchronous"):
        predict_corpus(path, corpus(texts), str(out))  # 60 texts, 3 parts
        predict_corpus(path, corpus(other), str(out))  # 48 other texts, 3 parts
        back = pd.read_parquet(out)
        assert len(back) == 48
        np.testing.assert_allclose(back.to_numpy(), pipe.predict_proba(other), rtol=1e-6,
                                   atol=1e-7)
        predict_corpus(path, corpus(other, 2), str(out))  # fewer parts: the third goes
    assert sorted(os.listdir(out)) == ["_skstack", "_skstack.json", "part-00000.parquet",
                                       "part-00001.parquet"]
    assert len(pd.read_parquet(out)) == 48


def test_a_folder_without_its_manifest_is_refused_unless_overwritten(saved, tmp_path):
    pipe, path, texts = saved
    out = tmp_path / "out"
    with dask.config.set(scheduler="synchronous"):
        predict_corpus(path, corpus(texts), str(out))
        os.remove(out / "_skstack.json")
        stack = save(pipe.steps[0][1], tmp_path / "stack.skstack", card=False)
        with pytest.raises(ValueError, match=r"holds 3 part file\(s\) but no _skstack.json, "
                                             r"so they cannot be verified: pass "
                                             r"overwrite=True"):
            predict_corpus(stack, corpus(texts), str(out), method="transform")
        assert len(os.listdir(out)) == 4  # nothing touched
        predict_corpus(stack, corpus(texts), str(out), method="transform", overwrite=True)
    vectors = np.stack(pd.read_parquet(out)["vector"].to_numpy())
    np.testing.assert_allclose(vectors, pipe.steps[0][1].transform(texts), rtol=1e-5,
                               atol=1e-6)


@pytest.mark.parametrize("value, kind", [(7, "int"), (2.5, "float"), (b"x", "bytes"),
                                         (["a"], "list")])
def test_non_strings_in_a_text_column_are_refused_before_dask_converts_them(
        saved, tmp_path, value, kind):
    _, path, _ = saved
    frame = pd.DataFrame({"text": ["fine", "ok", value, "also"]},
                         index=pd.RangeIndex(10, 14))
    with pytest.raises(TypeError, match=rf"the text at row 2 \(index 12\) is {kind} .*not a "
                                        r"string; Dask would have predicted it as the text"):
        predict_corpus(path, dd.from_pandas(frame, npartitions=2), str(tmp_path / "o"))
    with pytest.raises(TypeError, match=r"the text column 'text' holds int64 values"):
        predict_corpus(path, dd.from_pandas(pd.DataFrame({"text": [1, 2]}), npartitions=1),
                       str(tmp_path / "o"))
    assert not (tmp_path / "o" / "part-00000.parquet").exists()


def test_a_folder_of_another_run_is_refused(saved, tmp_path):
    _, path, texts = saved
    with dask.config.set(scheduler="synchronous"):
        predict_corpus(path, corpus(texts), str(tmp_path / "out"))
        with pytest.raises(ValueError, match=r"holds the results of another run \(its method "
                                             r"differ\): pass an empty folder, or "
                                             r"overwrite=True"):
            predict_corpus(path, corpus(texts), str(tmp_path / "out"), method="predict")


def test_bad_input_is_named(saved, tmp_path):
    _, path, texts = saved
    with pytest.raises(ValueError, match=r"has no column 'body' \(its columns: \['text'\]\)"):
        predict_corpus(path, corpus(texts), str(tmp_path / "a"), text_column="body")
    with pytest.raises(ValueError, match=r"method='score' is not one of 'predict_proba'"):
        predict_corpus(path, corpus(texts), str(tmp_path / "a"), method="score")
    with pytest.raises(ValueError, match=r"is a pickle; .* skstack.save"):
        predict_corpus(tmp_path / "m.joblib", corpus(texts), str(tmp_path / "a"))
    with pytest.raises(TypeError, match=r"a dask DataFrame, Series or Bag of strings; got list"):
        predict_corpus(path, texts, str(tmp_path / "a"))
    frame = dd.from_pandas(pd.DataFrame({"text": ["fine", None, "also fine", "ok"]}),
                           npartitions=2)
    with dask.config.set(scheduler="synchronous"), pytest.raises(TypeError,
                                                                 match=r"^partition 0: .*1"):
        predict_corpus(path, frame, str(tmp_path / "b"))


class DiesOnce(BaseEstimator):
    """Scores texts by length; the first time it sees a text holding "die" while ``sentinel``
    exists, it removes the sentinel and ends its process: a worker killed mid-partition."""

    _portable_state = ("label_names_",)

    def __init__(self, sentinel: str = ""):
        self.sentinel = sentinel

    def fit(self, X, y=None):
        self.label_names_ = ["short", "long"]
        return self

    def predict_proba(self, X):
        if any("die" in t for t in X) and os.path.exists(self.sentinel):
            os.remove(self.sentinel)
            os._exit(1)
        long = np.array([len(t) / (len(t) + 10) for t in X], dtype=np.float32)
        return np.stack([1 - long, long], axis=1)


def test_on_two_workers_a_killed_workers_partition_is_redone(saved, tmp_path):
    distributed = pytest.importorskip("distributed")
    pipe, path, texts = saved
    sentinel = tmp_path / "kill-once"
    sentinel.touch()
    dies = save(DiesOnce(str(sentinel)).fit(texts), tmp_path / "dies.skstack", card=False)
    words = [f"text {i}" + (" die" if i == 25 else "") for i in range(60)]
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster):
        predict_corpus(dies, corpus(words, 4), str(tmp_path / "dies"),
                       trusted=["test_corpus.DiesOnce"])
        predict_corpus(path, corpus(texts, 4), str(tmp_path / "pipe"))
    assert not sentinel.exists()  # a worker died on partition 1 (rows 15-29) ...
    back = pd.read_parquet(tmp_path / "dies")  # ... and the partition was redone elsewhere
    np.testing.assert_allclose(back.to_numpy(), DiesOnce().fit(words).predict_proba(words))
    assert not list((tmp_path / "dies").glob(".part-*"))
    np.testing.assert_allclose(pd.read_parquet(tmp_path / "pipe").to_numpy(),
                               pipe.predict_proba(texts), rtol=1e-6, atol=1e-7)
