"""A grid search on a Dask cluster against the same search in one process (run by hand).

    python benchmarks/bench_dask.py               # 1,200 texts, 6 candidates x 3 folds
    python benchmarks/bench_dask.py --n 3000 --workers 2

The quickstart pipeline (MiniLM in word mode + character n-grams, the meta-learner, the
Bi-LSTM head with its decision rule) on the first N GoEmotions training texts, with a disk
cache in a fresh folder. ``warm_cache`` encodes every text once in this process; then
``GridSearchCV(n_jobs=-1)`` runs under ``joblib.parallel_backend("dask")`` on a
``LocalCluster`` (processes, one thread each), and the same search with ``n_jobs=1``. Prints
wall times, whether the workers wrote anything to the cache (they must not: every text was
encoded once), and whether best parameters and scores agree.
"""

from __future__ import annotations

import argparse
import os
import platform
import sqlite3
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from bench_encode import DATA
from joblib import parallel_backend
from machine import describe
from sklearn.model_selection import GridSearchCV, KFold

from skstack import load_goemotions, quickstart_pipeline, warm_cache

GRID = {"clf__estimator__criterion__corr_weight": [0.0, 0.1, 0.5],
        "clf__estimator__lr": [1e-3, 3e-3]}


def cache_rows(folder: Path) -> tuple[int, int]:
    """(rows, highest rowid) of the cache file: unchanged means nothing was written."""
    with sqlite3.connect(next(folder.glob("*.sqlite3"))) as conn:
        return conn.execute("SELECT COUNT(*), MAX(rowid) FROM arrays").fetchone()


def main() -> None:
    from dask.distributed import Client, LocalCluster

    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=1200)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--max-epochs", type=int, default=10)
    args = parser.parse_args()
    print(describe())  # which CPU (and GPU) these figures come from
    split = load_goemotions(DATA, "train")
    texts, Y = split.texts[: args.n], split.Y[: args.n]
    folder = Path(tempfile.mkdtemp(prefix="skstack-dask-"))
    pipe = quickstart_pipeline(random_state=0)
    pipe.set_params(embed__minilm__cache=str(folder),
                    clf__estimator__max_epochs=args.max_epochs)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"torch {torch.__version__}; {len(texts)} texts, 6 candidates x 3 folds, "
          f"{args.workers} Dask workers with 1 thread each\n")
    start = time.perf_counter()
    encoded = warm_cache(pipe, texts)
    print(f"warm_cache: {encoded} texts encoded in {time.perf_counter() - start:.1f} s")
    before = cache_rows(folder)
    search = {"cv": KFold(3, shuffle=True, random_state=0), "scoring": "f1_macro"}

    with LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster):
        start = time.perf_counter()
        with parallel_backend("dask"):
            on_dask = GridSearchCV(pipe, GRID, n_jobs=-1, **search).fit(texts, Y)
        dask_seconds = time.perf_counter() - start
    after = cache_rows(folder)
    print(f"dask: {dask_seconds:.0f} s; cache rows/rowid before {before}, after {after}: "
          + ("nothing encoded on the workers" if after == before else "THE WORKERS ENCODED"))

    start = time.perf_counter()
    alone = GridSearchCV(pipe, GRID, n_jobs=1, **search).fit(texts, Y)
    one_seconds = time.perf_counter() - start
    print(f"one process (n_jobs=1, {torch.get_num_threads()} torch threads): "
          f"{one_seconds:.0f} s; wall-time ratio {one_seconds / dask_seconds:.2f}x")
    a, b = on_dask.cv_results_["mean_test_score"], alone.cv_results_["mean_test_score"]
    print(f"best parameters: dask {on_dask.best_params_}, one process {alone.best_params_} "
          f"({'same' if on_dask.best_params_ == alone.best_params_ else 'DIFFERENT'})")
    print("mean test scores: dask " + ", ".join(f"{v:.4f}" for v in a)
          + "; one process " + ", ".join(f"{v:.4f}" for v in b)
          + f"; identical: {np.array_equal(a, b)}, largest difference "
          f"{np.abs(a - b).max():.2e}")


if __name__ == "__main__":
    main()
