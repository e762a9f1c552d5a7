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

# when the last crowded verdict lapses (time.monotonic()); process-wide, as the cores are
_crowded_until = 0.0


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


def note_crowded() -> None:
    """Remember, for :data:`REMEMBER` seconds, that the cores were found crowded now."""
    global _crowded_until
    _crowded_until = time.monotonic() + REMEMBER


def crowded_lately() -> bool:
    """Whether a crowded verdict was noted in the last :data:`REMEMBER` seconds."""
    return time.monotonic() < _crowded_until
