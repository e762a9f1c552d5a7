"""How much this process waits for a CPU, and the torch threads that suit a crowded machine.

Linux counts, per thread, the time it spent runnable but waiting for a core
(``/proc/self/task/<tid>/schedstat``, second field, nanoseconds). On a quiet machine that
wait stays near zero; beside another job that keeps the cores busy, each of our threads waits
about half the time. Small torch operations on several OpenMP threads then stall on the one
that is descheduled (the others spin or wait for it), so the Bi-LSTM head ran 4-56x slower
beside a 2-thread torch job, where one thread ran it 1.4x slower (docs/benchmarks.md, "A
busy machine"). :class:`WaitProbe` measures that wait over a stretch of work.

A process should also run its torch work on one thread (:func:`torch_thread`): every thread
that starts torch work gets OpenMP threads of its own, and once a process holds more OpenMP
threads than cores, GNU OpenMP stops letting idle ones spin before they sleep, so each
parallel region waits for its threads to wake. A model loaded on the main thread and called
on an executor's thread answered calls of 16 texts in 97 ms, against 48 ms with both on one
thread (docs/benchmarks.md, "One thread for torch").

Predictions suffer the same: beside a 2-thread fine-tuning, a server-sized call of the
quickstart pipeline (16 texts) took 2.9 s on 2 threads and 0.17 s on one (0.08 s quiet).
:func:`prediction_threads` runs them on one thread while the cores are found crowded; the
head's training has its own rule (``skstack.nets._ThreadsForTheMachine``).

Import rule: the standard library, torch and ``skstack._config``.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import torch

from skstack._config import get_config

# above this share of the wall time spent waiting for a core, per thread, the machine is
# crowded: quiet runs measure under 0.02, runs beside a 2-thread job 0.3-0.5
CROWDED = 0.15
# how long a crowded verdict holds for work that does not measure for itself: a net's
# predictions and the next fit right after a crowded fit (a rule's fold nets), seconds
REMEMBER = 10.0
# how old a measured verdict may be for a fit to start on it without measuring again:
# short fits pass a verdict on from one to the next, but not for longer than this, seconds
MEASURE_AGAIN = 60.0

# predictions are judged on their own waits, summed over calls until this many seconds were
# measured on one thread count: a server's calls last tens of milliseconds, too short to
# judge one by one, and a long call is judged batch by batch
WINDOW = 0.25

# when the last crowded verdict lapses, and when it was last measured (time.monotonic());
# process-wide, as the cores are
_crowded_until = 0.0
_measured_at = 0.0
# the last reading of the threads' times a probe took (time.perf_counter(), the times): any
# probe started within a millisecond starts from it, as the next fold net's does
_last_reading: tuple[float, dict[str, tuple[int, int]] | None] | None = None


def _thread_times() -> dict[str, tuple[int, int]] | None:
    """Each of this process's threads' nanoseconds on a core and waiting for one; ``None``
    where the kernel does not say (not Linux, or schedstat missing)."""
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return None
    times = {}
    for tid in tasks:
        try:
            with open(f"/proc/self/task/{tid}/schedstat") as f:
                ran, waited = f.read().split()[:2]
            times[tid] = (int(ran), int(waited))
        except (OSError, ValueError):
            continue  # a thread that ended in between
    return times


class WaitProbe:
    """The share of wall time the ``threads`` busiest threads waited for a core since
    :meth:`restart`.

    Only the busiest: they are torch's, doing the work. A helper pool that woke for a
    moment (numpy's BLAS, a tokenizer's) can wait behind them for most of a window while
    running almost nothing, on a quiet machine too; counted, it made a quiet machine look
    crowded."""

    def __init__(self) -> None:
        self.restart()

    def restart(self) -> None:
        """Measure from now on; within a millisecond of any probe's :meth:`share`, from the
        reading it made (each reading opens a file per thread: a third of what the probe
        cost a short call)."""
        last, now = _last_reading, time.perf_counter()
        fresh = last is not None and now - last[0] < 1e-3
        self._wall, self._times = last if fresh else (now, _thread_times())

    def seconds(self) -> float:
        """Wall seconds since :meth:`restart`."""
        return time.perf_counter() - self._wall

    def share(self, threads: int) -> float | None:
        """Waited seconds per thread per wall second, over the ``threads`` threads that ran
        longest; ``None`` where it cannot be measured."""
        global _last_reading
        times, wall = _thread_times(), self.seconds()
        _last_reading = (time.perf_counter(), times)
        if times is None or self._times is None or wall <= 0:
            return None
        deltas = sorted(((ran - self._times.get(tid, (0, 0))[0],
                          waited - self._times.get(tid, (0, 0))[1])
                         for tid, (ran, waited) in times.items()), reverse=True)
        busiest = deltas[: max(threads, 1)]
        return sum(waited for _, waited in busiest) / 1e9 / wall / max(threads, 1)

    def crowded(self, threads: int) -> bool:
        share = self.share(threads)
        return share is not None and share > CROWDED


def note_crowded(measured: bool = True) -> None:
    """Remember, for :data:`REMEMBER` seconds, that the cores were found crowded now
    (``measured``) or that work ran on one thread on an earlier verdict."""
    global _crowded_until, _measured_at
    now = time.monotonic()
    _crowded_until = now + REMEMBER
    if measured:
        _measured_at = now


def crowded_lately(max_age: float | None = None) -> bool:
    """Whether a crowded verdict was noted in the last :data:`REMEMBER` seconds (and, with
    ``max_age``, measured in the last ``max_age`` seconds)."""
    now = time.monotonic()
    return now < _crowded_until and (max_age is None or now - _measured_at < max_age)


def _set_threads(threads: int) -> None:
    """``torch.set_num_threads``, only when the count changes: from a server's worker thread,
    setting it on every call slowed each model call (125 ms to 200 ms for 11-14 texts in
    ``bench_serve.py``)."""
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def torch_thread() -> ThreadPoolExecutor:
    """An executor of one thread, for all of a process's torch work (loading a model and
    every call to it), so that one OpenMP team serves it (module docstring)."""
    return ThreadPoolExecutor(1, thread_name_prefix="skstack-torch")


@contextmanager
def own_threads() -> Iterator[None]:
    """The process's torch threads as they were, however the work inside ends."""
    threads = torch.get_num_threads()
    try:
        yield
    finally:
        _set_threads(threads)


# the prediction work measured so far and not yet judged: on how many threads, its wall
# seconds and its seconds of waiting per thread; and how many prediction scopes are open and
# the process's threads when the first opened (torch's thread count is process-wide, so
# concurrent scopes, a Dask worker's threads, restore it only when the last closes);
# process-wide, behind the lock
_lock = threading.Lock()
_window = {"threads": 0, "wall": 0.0, "waited": 0.0}
_open = {"scopes": 0, "threads": 0}


def _judge_prediction_work(threads: int, wall: float, waited: float) -> None:
    """Add a stretch of prediction work to the window; once it holds :data:`WINDOW`
    seconds, a crowded window is noted. On one thread that renews the verdict: even one
    thread waits, so more would wait more; a quiet one lets it lapse, and the work after
    tries every thread again."""
    with _lock:
        if _window["threads"] != threads:
            _window.update(threads=threads, wall=0.0, waited=0.0)
        _window["wall"] += wall
        _window["waited"] += waited
        if _window["wall"] < WINDOW:
            return
        if _window["waited"] / _window["wall"] > CROWDED:
            note_crowded()
        _window.update(wall=0.0, waited=0.0)


class PredictionThreads:
    """What :func:`prediction_threads` yields; call :meth:`tick` after each batch."""

    # batches closer together than this are measured together: each measurement reads every
    # thread's schedstat (about 0.02 ms a thread)
    TICK = 0.01

    def __init__(self, all_threads: int, adapt: bool) -> None:
        self.all_threads = all_threads
        self.adapt = adapt and self.all_threads > 1
        self.threads = self.all_threads
        if self.adapt:
            self._probe = WaitProbe()
            self._choose()

    def _choose(self) -> None:
        self.threads = 1 if crowded_lately() else self.all_threads
        _set_threads(self.threads)

    def tick(self, last: bool = False) -> None:
        """Judge the work since the last measurement and choose the threads for the work
        after (``last``: the work is over, measure what is left)."""
        if not self.adapt or (not last and self._probe.seconds() < self.TICK):
            return
        share, wall = self._probe.share(self.threads), self._probe.seconds()
        self._probe.restart()
        if share is not None:
            _judge_prediction_work(self.threads, wall, share * wall)
        self._choose()


@contextmanager
def prediction_threads(adapt: bool = True) -> Iterator[PredictionThreads]:
    """Torch threads for prediction work on the CPU: one while the cores were found crowded
    in the last :data:`REMEMBER` seconds (by this work, earlier predictions or a head's
    training), every thread otherwise; the work's own waits are measured for the next
    verdict. Not with ``adapt=False``, ``set_config(adapt_threads=False)`` or one thread.
    The process's threads are restored after the last open scope closes."""
    with _lock:
        if not _open["scopes"]:
            _open["threads"] = torch.get_num_threads()
        _open["scopes"] += 1
        all_threads = _open["threads"]
    try:
        threads = PredictionThreads(all_threads, adapt and get_config()["adapt_threads"])
        yield threads
        threads.tick(last=True)
    finally:
        with _lock:
            _open["scopes"] -= 1
            if not _open["scopes"]:
                _set_threads(_open["threads"])
