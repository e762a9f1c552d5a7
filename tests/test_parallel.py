"""warm_cache and a grid search on a Dask LocalCluster: every text encoded once, results
identical to the single-process search."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import Pipeline

from conftest import FIXTURE_TEXTS
from skstack import EncoderEmbedder, StackingEmbedder, warm_cache
from skstack.parallel import frozen_encoders


def _rows(folder) -> tuple[int, int]:
    """Rows in the cache's SQLite file and the highest rowid: a rewrite of any row (an
    INSERT OR REPLACE) gives it a new rowid, so an unchanged pair means nothing was written."""
    with sqlite3.connect(next(folder.glob("*.sqlite3"))) as conn:
        return conn.execute("SELECT COUNT(*), MAX(rowid) FROM arrays").fetchone()


@pytest.fixture
def search_data():
    rng = np.random.default_rng(0)
    texts = [f"{FIXTURE_TEXTS[i % len(FIXTURE_TEXTS)]} {i % 20}" for i in range(90)]
    Y = (rng.random((90, 3)) < 0.4).astype(int)
    Y[:, 0] = [("love" in t or "happy" in t or "سعيد" in t) for t in texts]
    return texts, Y


def test_frozen_encoders_are_found_anywhere_and_fine_tuned_ones_left_out(tiny_bert, tiny_bert_b):
    frozen = EncoderEmbedder(tiny_bert)
    tuned = EncoderEmbedder(tiny_bert_b, finetune_epochs=1)
    stack = StackingEmbedder([("a", frozen), ("b", tuned)])
    pipe = Pipeline([("embed", stack), ("clf", LogisticRegression())])
    assert frozen_encoders(pipe) == [frozen]
    assert frozen_encoders(GridSearchCV(pipe, {"clf__C": [1.0]})) == [frozen]
    assert frozen_encoders(frozen) == [frozen]


def test_warm_cache_encodes_each_text_once_and_needs_a_shared_folder(tiny_bert, tmp_path):
    texts = [*FIXTURE_TEXTS, FIXTURE_TEXTS[0]]  # a duplicate is encoded once
    EncoderEmbedder(tiny_bert).fit(texts).transform(texts[:3])  # in this process's memory
    emb = EncoderEmbedder(tiny_bert, cache=tmp_path)
    pipe = Pipeline([("embed", StackingEmbedder([("a", emb), ("b", EncoderEmbedder(
        tiny_bert, cache=tmp_path))])), ("clf", LogisticRegression())])
    assert warm_cache(pipe, texts) == len(FIXTURE_TEXTS)  # two equal encoders: one pass
    assert warm_cache(pipe, texts) == 0
    assert _rows(tmp_path)[0] == len(FIXTURE_TEXTS)
    with pytest.raises(ValueError, match="cache='memory', which other processes cannot read"):
        warm_cache(EncoderEmbedder(tiny_bert), texts)
    assert warm_cache(EncoderEmbedder(tiny_bert, pooling="max"), texts,
                      require_folder=False) == len(FIXTURE_TEXTS)


def test_grid_search_on_two_dask_workers_encodes_once_and_matches_one_process(
        tiny_bert, tmp_path, search_data):
    distributed = pytest.importorskip("distributed")
    from joblib import parallel_backend

    texts, Y = search_data
    pipe = Pipeline([("embed", EncoderEmbedder(tiny_bert, cache=tmp_path)),
                     ("clf", OneVsRestClassifier(LogisticRegression(max_iter=500)))])
    grid = {"clf__estimator__C": [0.01, 0.1, 1.0, 10.0, 100.0, 1000.0]}  # 6 candidates
    cv = KFold(3, shuffle=True, random_state=0)
    assert warm_cache(pipe, texts) == len(set(texts))
    before = _rows(tmp_path)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster), parallel_backend("dask"):
        on_dask = GridSearchCV(pipe, grid, cv=cv, scoring="f1_macro", n_jobs=-1).fit(texts, Y)
    assert _rows(tmp_path) == before  # the workers read vectors, encoded nothing
    alone = GridSearchCV(pipe, grid, cv=cv, scoring="f1_macro", n_jobs=1).fit(texts, Y)
    assert on_dask.best_params_ == alone.best_params_
    np.testing.assert_array_equal(on_dask.cv_results_["mean_test_score"],
                                  alone.cv_results_["mean_test_score"])
    assert len(set(on_dask.cv_results_["mean_test_score"])) > 1  # the candidates differ
