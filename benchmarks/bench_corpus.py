"""Prediction over a corpus on a Dask LocalCluster against ``predict_proba`` in one process.

    python benchmarks/bench_corpus.py                       # 4,000 texts, 2 workers
    python benchmarks/bench_corpus.py --n 20000 --workers 2 --partitions 16

The quickstart pipeline is fitted on the bundled sample and saved (``.skstack``); the corpus
is the first ``--n`` GoEmotions training texts, a Dask DataFrame of ``--partitions``
partitions. Timed side by side: ``pipe.predict_proba`` in this process (torch on every core),
and :func:`skstack.predict_corpus` on ``--workers`` worker processes of one thread each
(the cluster started beforehand), twice: the first run includes each worker's imports and its
loading the model, the second finds the model loaded. Prints
texts per second overall and per worker, and checks that the parts hold the one-process
probabilities. No cache: every text is encoded where it is predicted.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import dask.dataframe as dd
import distributed
import numpy as np
import pandas as pd
from bench_encode import DATA
from machine import describe
from models import fitted_quickstart

from skstack import (
    load_goemotions,
    predict_corpus,
    save,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=4000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--dtype", default="float32", choices=("float32", "auto"),
                        help="the encoder's precision at prediction (auto: bfloat16 here)")
    args = parser.parse_args()
    print(describe())
    pipe, _ = fitted_quickstart(args.dtype)
    texts = load_goemotions(DATA, "train").texts[: args.n]
    with tempfile.TemporaryDirectory() as tmp:
        model = save(pipe, Path(tmp) / "model.skstack", card=False)
        start = time.perf_counter()
        alone = pipe.predict_proba(texts)
        one = time.perf_counter() - start
        frame = dd.from_pandas(pd.DataFrame({"text": texts}), npartitions=args.partitions)
        with distributed.LocalCluster(n_workers=args.workers, threads_per_worker=1,
                                      processes=True, dashboard_address=None) as cluster, \
                distributed.Client(cluster):
            start = time.perf_counter()
            predict_corpus(model, frame, str(Path(tmp) / "cold"))  # imports, loads the model
            cold = time.perf_counter() - start
            start = time.perf_counter()
            predict_corpus(model, frame, str(Path(tmp) / "out"))  # each worker holds it now
            spread = time.perf_counter() - start
        back = pd.read_parquet(Path(tmp) / "out").to_numpy()
    print(f"{args.n} texts, {args.partitions} partitions")
    print(f"| run | seconds | texts/s | texts/s per worker |\n|---|---|---|---|\n"
          f"| predict_proba, one process (torch on every core) | {one:.1f} | "
          f"{args.n / one:.0f} | |\n"
          f"| predict_corpus, {args.workers} workers x 1 thread, first run (workers import "
          f"torch, load the model) | {cold:.1f} | {args.n / cold:.0f} | "
          f"{args.n / cold / args.workers:.0f} |\n"
          f"| predict_corpus, {args.workers} workers x 1 thread, model loaded | {spread:.1f} | "
          f"{args.n / spread:.0f} | {args.n / spread / args.workers:.0f} |")
    print(f"max |difference| of the parts from one-process probabilities: "
          f"{np.abs(back - alone).max():.2e}")


if __name__ == "__main__":
    main()
