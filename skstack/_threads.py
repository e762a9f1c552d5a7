"""How much this process waits for a CPU, and the torch threads that suit a crowded machine.

Linux counts, per thread, the time it spent runnable but waiting for a core
(``/proc/self/task/<tid>/schedstat``, second field, nanoseconds). On a quiet machine that
wait stays near zero; beside another job that keeps the cores busy, each of our threads waits
about half the time. Small torch operations on several OpenMP threads then stall on the one
that is descheduled (the others spin or wait for it), so the Bi-LSTM head ran 4-56x slower
beside a 2-thread torch job, where one thread ran it 1.4x slower (docs/benchmarks.md, "A
busy machine"). :class:`WaitProbe` measures that wait over a stretch of work.

Import rule: the standard library only (a leaf).
"""

from __future__ import annotations

import os
import time

# above this share of the wall time spent waiting for a core, per thread, the machine is
# crowded: quiet runs measure under 0.02, runs beside a 2-thread job 0.3-0.5
CROWDED = 0.15
# how long a crowded verdict holds for work that does not measure for itself: a net's
# predictions and the next fit right after a crowded fit (a rule's fold nets), seconds
REMEMBER = 10.0
# how old a measured verdict may be for a fit to start on it without measuring again:
# short fits pass a verdict on from one to the next, but not for longer than this, seconds
MEASURE_AGAIN = 60.0

# when the last crowded verdict lapses, and when it was last measured (time.monotonic());
# process-wide, as the cores are
_crowded_until = 0.0
_measured_at = 0.0


def _waited_seconds() -> float | None:
    """Seconds this process's threads have waited for a core, summed; ``None`` where the
    kernel does not say (not Linux, or schedstat missing)."""
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return None
    total = 0
    for tid in tasks:
        try:
            with open(f"/proc/self/task/{tid}/schedstat") as f:
                total += int(f.read().split()[1])
        except (OSError, IndexError, ValueError):
            continue  # a thread that ended in between
    return total / 1e9


class WaitProbe:
    """The share of wall time each of ``threads`` threads waited for a core since
    :meth:`restart`."""

    def __init__(self) -> None:
        self.restart()

    def restart(self) -> None:
        self._wall, self._waited = time.perf_counter(), _waited_seconds()

    def seconds(self) -> float:
        """Wall seconds since :meth:`restart`."""
        return time.perf_counter() - self._wall

    def share(self, threads: int) -> float | None:
        """Waited seconds per thread per wall second; ``None`` where it cannot be measured."""
        waited, wall = _waited_seconds(), self.seconds()
        if waited is None or self._waited is None or wall <= 0:
            return None
        return (waited - self._waited) / wall / max(threads, 1)

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
