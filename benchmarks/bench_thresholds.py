"""Seconds of ``tune_thresholds``, the decision rule's search, at a fit's sizes (run by hand;
about 5 min). Each run times the skstack it imports, so two checkouts compare side by side:

    python benchmarks/bench_thresholds.py
    PYTHONPATH=/path/to/other/checkout python benchmarks/bench_thresholds.py

Probabilities like a head's out-of-fold ones (28 labels, 5 % positives, fixed seed), the
pipelines' rule (``min_labels=1``, ``shrinkage=10``) and ``max_labels=2``, for each objective;
best of 2 rounds. Prints a digest of every threshold found, so two checkouts can be seen to
agree.
"""

from __future__ import annotations

import argparse
import hashlib
import time

import numpy as np
from machine import describe

import skstack
from skstack.thresholds import OBJECTIVES, tune_thresholds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, nargs="*", default=[3000, 20000])
    args = parser.parse_args()
    print(describe())
    print(f"skstack from {skstack.__file__}\n")
    print("| rows | objective | rule | seconds |\n|---|---|---|---|")
    digest = hashlib.sha256()
    for n in args.rows:
        rng = np.random.default_rng(0)
        Y = (rng.random((n, 28)) < 0.05).astype(int)
        P = np.clip(0.6 * Y + rng.random(Y.shape) * 0.5, 0, 1)
        for objective in OBJECTIVES:
            for rule in ({"min_labels": 1, "shrinkage": 10.0}, {"max_labels": 2}):
                seconds = []
                for _ in range(2):
                    start = time.perf_counter()
                    t = tune_thresholds(Y, P, objective=objective, **rule)
                    seconds.append(time.perf_counter() - start)
                digest.update(t.tobytes())
                print(f"| {n:,} | {objective} | {rule} | {min(seconds):.2f} |", flush=True)
    print(f"\nthresholds digest: {digest.hexdigest()[:16]}")


if __name__ == "__main__":
    main()
