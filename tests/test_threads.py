"""Predictions on one torch thread while other work crowds the cores (skstack._threads)."""

import os
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from conftest import FIXTURE_TEXTS
from skstack import EncoderEmbedder, _config, _threads, config_context


class _Probe:
    """A stand-in for the wait probe: each stretch lasts ``wall`` seconds, and each thread
    waited ``share`` of it, by decree."""

    share_now, wall = 0.0, 0.1

    def __init__(self):
        pass

    def restart(self):
        pass

    def seconds(self):
        return self.wall

    def share(self, threads):
        return self.share_now


@pytest.fixture
def two_threads(monkeypatch):
    """Two torch threads, predictions that adapt, no verdict or half-judged window from
    an earlier test; the process's threads afterwards as before."""
    monkeypatch.setitem(_config._CONFIG, "adapt_threads", True)
    monkeypatch.setattr(_threads, "_crowded_until", 0.0)
    monkeypatch.setattr(_threads, "_window", {"threads": 0, "wall": 0.0, "waited": 0.0})
    monkeypatch.setattr(_threads, "_open", {"scopes": 0, "threads": 0})
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def _decree(monkeypatch, share: float) -> None:
    monkeypatch.setattr(_threads, "WaitProbe", type("P", (_Probe,), {"share_now": share}))


def _threads_after_ticks(n: int) -> list[int]:
    seen = []
    with _threads.prediction_threads() as threads:
        seen.append(torch.get_num_threads())
        for _ in range(n):
            threads.tick()
            seen.append(torch.get_num_threads())
    return seen


@pytest.mark.parametrize("share", [0.0, 0.4])
def test_predictions_go_to_one_thread_once_a_window_of_them_waited(two_threads, monkeypatch,
                                                                   share):
    _decree(monkeypatch, share)
    # 0.1 s a batch: the third tick completes a 0.25 s window and judges it
    seen = _threads_after_ticks(4)
    assert seen == ([2, 2, 2, 1, 1] if share else [2] * 5)
    assert torch.get_num_threads() == 2  # the process's threads, after the work
    assert _threads.crowded_lately() == bool(share)
    # the next call starts on the verdict
    assert _threads_after_ticks(0) == ([1] if share else [2])


def test_short_calls_are_judged_together(two_threads, monkeypatch):
    _decree(monkeypatch, 0.4)
    for _ in range(2):  # a server's calls: each 0.1 s, one measurement at its end
        assert _threads_after_ticks(0) == [2]
    assert not _threads.crowded_lately()  # 0.2 s measured: not yet a window
    assert _threads_after_ticks(0) == [2]
    assert _threads.crowded_lately() and _threads_after_ticks(0) == [1]


@pytest.mark.parametrize("share", [0.0, 0.4])
def test_one_thread_renews_the_verdict_only_while_it_still_waits(two_threads, monkeypatch,
                                                                 share):
    _threads.note_crowded()
    until = _threads._crowded_until
    _decree(monkeypatch, share)
    assert set(_threads_after_ticks(5)) == {1}
    # waiting even on one thread: more threads would wait more, so the verdict is renewed;
    # a quiet thread lets it lapse, and the work after it tries every thread
    assert (_threads._crowded_until > until) == bool(share)
    monkeypatch.setattr(_threads, "_crowded_until", 0.0)
    assert _threads_after_ticks(0) == [2]


def test_overlapping_calls_give_the_process_its_threads_back_when_the_last_ends(
        two_threads, monkeypatch):
    _decree(monkeypatch, 0.0)
    _threads.note_crowded()
    # two threads of a Dask worker: torch's thread count is one for the process
    first = _threads.prediction_threads()
    first.__enter__()
    second = _threads.prediction_threads()
    second.__enter__()
    assert torch.get_num_threads() == 1
    first.__exit__(None, None, None)
    assert torch.get_num_threads() == 1  # the second call still runs
    second.__exit__(None, None, None)
    assert torch.get_num_threads() == 2  # not the one thread the second call began on


def test_predictions_keep_their_threads_when_told_to(two_threads, monkeypatch):
    _decree(monkeypatch, 0.4)
    _threads.note_crowded()
    with config_context(adapt_threads=False):
        assert set(_threads_after_ticks(5)) == {2}
    with _threads.prediction_threads(adapt=False) as threads:
        threads.tick(last=True)
        assert torch.get_num_threads() == 2
    torch.set_num_threads(1)  # nothing to choose from one thread
    assert _threads_after_ticks(3) == [1] * 4
    with pytest.raises(TypeError, match="adapt_threads must be a bool, got 'no'"):
        _config.set_config(adapt_threads="no")


def test_the_encoder_encodes_on_one_thread_while_the_cores_are_crowded(tiny_bert, two_threads,
                                                                       monkeypatch):
    emb = EncoderEmbedder(tiny_bert, cache=None, batch_size=4).fit(FIXTURE_TEXTS)
    seen = []
    emb.model_.embeddings.register_forward_hook(  # once per forward pass
        lambda *_: seen.append(torch.get_num_threads()))
    _decree(monkeypatch, 0.0)
    quiet = emb.transform(FIXTURE_TEXTS)
    assert set(seen) == {2}
    seen.clear()
    _threads.note_crowded()  # say, a fit just found the cores busy
    crowded = emb.transform(FIXTURE_TEXTS)
    assert set(seen) == {1}
    assert torch.get_num_threads() == 2
    np.testing.assert_allclose(crowded, quiet, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("value, adapt", [("0", False), ("off", False), ("1", True)])
def test_the_environment_sets_the_default_for_a_process(value, adapt):
    code = "import skstack; print(skstack.get_config()['adapt_threads'])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "SKSTACK_ADAPT_THREADS": value}, check=True)
    assert out.stdout.strip() == str(adapt)


def test_the_probe_counts_the_waits_of_the_threads_doing_the_work(monkeypatch):
    ms = 1_000_000
    # two torch threads ran 90 ms and waited 10 ms each; a helper pool's thread woke, ran
    # 2 ms and waited 100 ms behind them (on a quiet machine too); one thread was idle
    samples = iter([{"1": (0, 0), "2": (0, 0), "3": (0, 0), "4": (5 * ms, 0)},
                    {"1": (90 * ms, 10 * ms), "2": (90 * ms, 10 * ms),
                     "3": (2 * ms, 100 * ms), "4": (5 * ms, 0), "5": (1 * ms, 0)}])
    monkeypatch.setattr(_threads, "_thread_times", lambda: next(samples))
    probe = _threads.WaitProbe()
    monkeypatch.setattr(probe, "seconds", lambda: 0.1)
    assert probe.share(2) == pytest.approx(0.1)  # not (10 + 10 + 100) / 100 / 2


def test_a_probe_started_right_after_a_measurement_starts_from_its_reading(monkeypatch):
    ms = 1_000_000
    readings = []

    def read():
        readings.append(len(readings))
        return {"1": (len(readings) * 10 * ms, len(readings) * ms)}

    monkeypatch.setattr(_threads, "_thread_times", read)
    monkeypatch.setattr(_threads, "_last_reading", None)
    probe = _threads.WaitProbe()
    probe.share(1)
    probe.restart()  # the share's reading is the new start: no third reading
    assert len(readings) == 2
    assert probe._times == {"1": (20 * ms, 2 * ms)}
    # so does the next prediction's probe (the next fold net's)
    assert _threads.WaitProbe()._times == {"1": (20 * ms, 2 * ms)} and len(readings) == 2
    _threads._last_reading = (time.perf_counter() - 1.0, {"1": (0, 0)})  # a second old
    probe.restart()
    assert len(readings) == 3
