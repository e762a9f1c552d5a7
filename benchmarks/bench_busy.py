"""A busy machine: the quickstart's fit quiet and beside another torch job (issue 35, item 5).

    python benchmarks/bench_busy.py                      # 1,000 GoEmotions texts, ~10 min
    python benchmarks/bench_busy.py --n 3000 --rounds 1
    python benchmarks/bench_busy.py --n 10000 --rounds 1 --ends-after 20 \\
        --only default "default, the switch to one thread one-way"
    python benchmarks/bench_busy.py --predict --only default \\
        "default, predictions on the process's threads"
    python benchmarks/bench_busy.py --predict --as-without-bf16 --only default \\
        "default, OpenVINO on one request"

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

``--predict``: after the fit, the fitted pipeline also predicts (test texts: 320 in calls of
16, a server's batches, and 1,000 in one call; ms a text), as a freshly loaded model would,
without the fit's verdict on the cores; by default on one thread once those predictions'
own waits show the cores crowded (``skstack._threads.prediction_threads``), or on the
process's threads throughout (``set_config(adapt_threads=False)``, as 0.3 did at first).

``--as-without-bf16``: ``"auto"`` resolves as on a CPU without native bfloat16, so the
encoder runs OpenVINO int8 (on this CPU's kernels); the configuration "OpenVINO on one
request" runs each of its calls on one request over every thread, as before 0.3's streams.

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
from functools import partial
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
           "default, the switch to one thread one-way": ({}, "one-way"),
           "default, predictions on the process's threads": ({}, "auto, predictions fixed"),
           "default, OpenVINO on one request": ({}, "auto, one request")}
OPENMP = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")  # unset in the child unless a config sets them


def competitor() -> None:
    """Another torch job: 2-thread float32 matrix products, forever."""
    import torch

    torch.set_num_threads(2)
    a, b = torch.randn(256, 384), torch.randn(384, 1536)
    while True:
        a @ b


def fit(n: int, head: str, marker: str | None = None, predict: bool = False,
        as_without_bf16: bool = False) -> dict:
    """Fit the quickstart on the first ``n`` GoEmotions texts; the seconds of its stages
    (``marker``: a file made when the head's fit begins); with ``predict``, the ms a text of
    its predictions too."""
    import torch

    from skstack import _runtimes, _threads, load_goemotions, nets, quickstart_pipeline, set_config

    if head == "one-way":  # 0.3's first form: no retry, a crowded verdict passed on for ever
        nets._ThreadsForTheMachine.RETRY = nets.MEASURE_AGAIN = float("inf")
    if as_without_bf16:  # "auto" as on a CPU without native bfloat16: OpenVINO int8
        from machine import pretend_without_bf16

        pretend_without_bf16()
    if head == "auto, one request":  # OpenVINO before 0.3's streams: every thread on a call
        _runtimes._openvino_forward = partial(_runtimes._openvino_forward, streams=1)
    # at first, 0.3 kept the process's threads for the encoders' passes and predictions
    set_config(adapt_threads=head != "auto, predictions fixed")

    train = load_goemotions(DATA, "train")
    texts, Y = train.texts[:n], train.Y[:n]
    pipe = quickstart_pipeline().set_params(embed__minilm__cache=None)
    if head not in ("auto", "one-way", "auto, predictions fixed"):
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
    seconds = time.perf_counter() - start
    torch.set_num_threads(threads)
    times = {"stack": stack, "head": seconds, "fit": stack + seconds}
    if predict:
        # as a freshly loaded model: no verdict on the cores from the fit
        _threads._crowded_until = 0.0
        test = load_goemotions(DATA, "test").texts
        start = time.perf_counter()
        for i in range(0, 320, 16):
            pipe.predict_proba(test[i:i + 16])
        times["calls of 16"] = 1000 * (time.perf_counter() - start) / 320
        start = time.perf_counter()
        pipe.predict_proba(test[:1000])
        times["one call"] = 1000 * (time.perf_counter() - start) / 1000
    return times


def child(config: str, n: int, busy: bool, ends_after: float | None = None,
          predict: bool = False, as_without_bf16: bool = False) -> dict:
    variables, head = CONFIGS[config]
    env = {k: v for k, v in os.environ.items() if k not in OPENMP} | variables
    other = None
    if busy:  # the competitor keeps the default policy: it is someone else's job
        other = subprocess.Popen([sys.executable, __file__, "--competitor"])
        time.sleep(3)  # let it start
    with tempfile.TemporaryDirectory() as folder:
        marker = Path(folder) / "head-began"
        command = [sys.executable, __file__, "--child", "--n", str(n), "--head", head,
                   "--marker", str(marker)] + ["--predict"] * predict + (
                      ["--as-without-bf16"] * as_without_bf16)
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
    parser.add_argument("--predict", action="store_true",
                        help="also time the fitted pipeline's predictions")
    parser.add_argument("--as-without-bf16", action="store_true",
                        help="'auto' resolves as on a CPU without native bfloat16 (OpenVINO "
                             "int8), on this one")
    args = parser.parse_args()
    if args.competitor:
        competitor()
    if args.child:
        print(json.dumps(fit(args.n, args.head, args.marker, args.predict,
                             args.as_without_bf16)))
        return
    sys.path.insert(0, str(HERE))
    from machine import describe

    print(describe())
    during = ("" if args.ends_after is None else
              f" until {args.ends_after:g} s into the head's fit")
    print(f"\nthe quickstart's fit on {args.n} GoEmotions texts, seconds; busy: beside a "
          f"2-thread torch job{during}\n")
    stages = ("stack", "head", "fit") + (("calls of 16", "one call") if args.predict else ())
    names = " / ".join(stages)
    print(f"| round | configuration | quiet {names} | busy {names} | slowdown {names} | "
          "load before quiet / busy |\n|---|---|---|---|---|---|")
    for r in range(args.rounds):
        for config in args.only:
            load_quiet = os.getloadavg()[0]  # 1 minute: others' jobs, part of our last run
            quiet = child(config, args.n, busy=False, predict=args.predict,
                          as_without_bf16=args.as_without_bf16)
            load_busy = os.getloadavg()[0]
            busy = child(config, args.n, busy=True, ends_after=args.ends_after,
                         predict=args.predict, as_without_bf16=args.as_without_bf16)
            cells = [" / ".join(f"{run[k]:.1f}" for k in stages) for run in (quiet, busy)]
            ratio = " / ".join(f"{busy[k] / quiet[k]:.2f}x" for k in stages)
            print(f"| {r + 1} | {config} | {cells[0]} | {cells[1]} | {ratio} | "
                  f"{load_quiet:.1f} / {load_busy:.1f} |", flush=True)


if __name__ == "__main__":
    main()
