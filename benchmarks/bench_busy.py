"""A busy machine: the quickstart's fit quiet and beside another torch job (issue 35, item 5).

    python benchmarks/bench_busy.py                      # 1,000 GoEmotions texts, ~10 min
    python benchmarks/bench_busy.py --n 3000 --rounds 1
    python benchmarks/bench_busy.py --n 10000 --rounds 1 --ends-after 20 \\
        --only default "default, the switch to one thread one-way"

Each configuration fits ``quickstart_pipeline`` (no cache, ``dtype="auto"``) in a fresh
process, since OpenMP reads its wait policy only when torch loads: once on a quiet machine and
once beside a competitor, another process that runs 2-thread torch matrix products of the
size a small encoder multiplies (256 x 384 by 384 x 1536, float32) without pause. Quiet and
busy alternate, configuration by configuration, for ``--rounds`` rounds. Printed per run: the
stack's fit (encoder, characters, meta-learner) and the head's (the net and its rule), and
the slowdown busy / quiet of each; a fair share of 2 cores beside a 2-thread job is 2x; and the
1-minute load average before each run (it lags: it still holds part of the run before).

Configurations: ``OMP_WAIT_POLICY`` unset (the OpenMP runtime's default: threads spin a
while before they sleep), ``PASSIVE`` (they sleep at once) or GNU OpenMP's spin shortened
(``GOMP_SPINCOUNT=20000``, of 300,000 by default); the head's fit as skstack chooses its
threads (one once the process waits for a core, ``nets._ThreadsForTheMachine``), on the
process's torch threads throughout (``callbacks__threads=None``, as before 0.3), or on one;
or as the first form of 0.3's rule chose them, one-way: once on one thread, the rest of
the fit and every fit after it stayed there.

``--ends-after S``: the competitor ends S seconds after the head's fit began (the child
writes a marker file then), so the busy run is busy at the start only: what a fit does once
the other job is gone.

Run from the repository root, with ``../shared/data/goemotions`` beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = "../shared/data/goemotions"
# name: (OpenMP variables, the head's threads: "auto" (skstack's default: one thread once the
# cores are crowded), "all" (the process's threads throughout, as before 0.3) or "1")
PASSIVE = {"OMP_WAIT_POLICY": "PASSIVE"}
CONFIGS = {"default": ({}, "auto"), "default, the head on all threads": ({}, "all"),
           "passive, the head on all threads": (PASSIVE, "all"),
           "spin 20000, the head on all threads": ({"GOMP_SPINCOUNT": "20000"}, "all"),
           "default, the head on 1 thread": ({}, "1"),
           "default, the switch to one thread one-way": ({}, "one-way")}
OPENMP = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")  # unset in the child unless a config sets them


def competitor() -> None:
    """Another torch job: 2-thread float32 matrix products, forever."""
    import torch

    torch.set_num_threads(2)
    a, b = torch.randn(256, 384), torch.randn(384, 1536)
    while True:
        a @ b


def fit(n: int, head: str, marker: str | None = None) -> dict:
    """Fit the quickstart on the first ``n`` GoEmotions texts; the seconds of its stages
    (``marker``: a file made when the head's fit begins)."""
    import torch

    from skstack import load_goemotions, nets, quickstart_pipeline

    if head == "one-way":  # 0.3's first form: no retry, a crowded verdict passed on for ever
        nets._ThreadsForTheMachine.RETRY = nets.MEASURE_AGAIN = float("inf")

    train = load_goemotions(DATA, "train")
    texts, Y = train.texts[:n], train.Y[:n]
    pipe = quickstart_pipeline().set_params(embed__minilm__cache=None)
    if head not in ("auto", "one-way"):
        pipe.set_params(clf__estimator__callbacks__threads=None)
    start = time.perf_counter()
    Z = pipe.named_steps["embed"].fit_transform(texts, Y)
    stack = time.perf_counter() - start
    threads = torch.get_num_threads()
    torch.set_num_threads(1 if head == "1" else threads)
    if marker:
        Path(marker).touch()
    start = time.perf_counter()
    pipe.named_steps["clf"].fit(Z, Y)
    head = time.perf_counter() - start
    torch.set_num_threads(threads)
    return {"stack": stack, "head": head, "fit": stack + head}


def child(config: str, n: int, busy: bool, ends_after: float | None = None) -> dict:
    variables, head = CONFIGS[config]
    env = {k: v for k, v in os.environ.items() if k not in OPENMP} | variables
    other = None
    if busy:  # the competitor keeps the default policy: it is someone else's job
        other = subprocess.Popen([sys.executable, __file__, "--competitor"])
        time.sleep(3)  # let it start
    with tempfile.TemporaryDirectory() as folder:
        marker = Path(folder) / "head-began"
        command = [sys.executable, __file__, "--child", "--n", str(n), "--head", head,
                   "--marker", str(marker)]
        try:
            run = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True)
            if other is not None and ends_after is not None:
                while not marker.exists() and run.poll() is None:
                    time.sleep(0.1)
                time.sleep(ends_after)
                other.kill()
            out, _ = run.communicate()
        finally:
            if other is not None:
                other.kill()
                other.wait()
    if run.returncode:
        raise subprocess.CalledProcessError(run.returncode, command)
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--only", nargs="*", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--head", default="auto", help=argparse.SUPPRESS)
    parser.add_argument("--marker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--competitor", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--ends-after", type=float, default=None, metavar="S",
                        help="the competitor ends S seconds into the head's fit")
    args = parser.parse_args()
    if args.competitor:
        competitor()
    if args.child:
        print(json.dumps(fit(args.n, args.head, args.marker)))
        return
    sys.path.insert(0, str(HERE))
    from machine import describe

    print(describe())
    during = ("" if args.ends_after is None else
              f" until {args.ends_after:g} s into the head's fit")
    print(f"\nthe quickstart's fit on {args.n} GoEmotions texts, seconds; busy: beside a "
          f"2-thread torch job{during}\n")
    print("| round | configuration | quiet stack / head / fit | busy stack / head / fit | "
          "slowdown stack / head / fit | load before quiet / busy |\n|---|---|---|---|---|---|")
    for r in range(args.rounds):
        for config in args.only:
            load_quiet = os.getloadavg()[0]  # 1 minute: others' jobs, part of our last run
            quiet = child(config, args.n, busy=False)
            load_busy = os.getloadavg()[0]
            busy = child(config, args.n, busy=True, ends_after=args.ends_after)
            cells = [" / ".join(f"{run[k]:.1f}" for k in ("stack", "head", "fit"))
                     for run in (quiet, busy)]
            ratio = " / ".join(f"{busy[k] / quiet[k]:.2f}x" for k in ("stack", "head", "fit"))
            print(f"| {r + 1} | {config} | {cells[0]} | {cells[1]} | {ratio} | "
                  f"{load_quiet:.1f} / {load_busy:.1f} |", flush=True)


if __name__ == "__main__":
    main()
