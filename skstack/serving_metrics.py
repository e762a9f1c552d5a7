"""What ``skstack serve`` exposes at ``GET /metrics``, in Prometheus' text format.

Requests by route and status, their latency, the texts per model call (the micro-batches),
the model calls' seconds, the texts scored and the requests waiting. Each application has
a registry of its own (a process may run several, as the tests do). With several uvicorn
workers (``--workers N``) the workers' values are merged through ``prometheus_client``'s
multiprocess mode: :func:`share_between_workers` names a folder for them before the workers
start, and every worker's ``/metrics`` answers for all of them.

Import rule: the standard library; ``prometheus_client`` inside the functions.
"""

from __future__ import annotations

import os
import tempfile

_FOLDER_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"  # prometheus_client's own setting
ROUTES = ("/predict", "/explain", "/", "/health", "/labels", "/card", "/metrics")


def share_between_workers() -> str:
    """Set up the multiprocess mode for worker processes about to start (each inherits the
    folder through the environment); returns the folder."""
    folder = os.environ.get(_FOLDER_VARIABLE) or tempfile.mkdtemp(prefix="skstack-metrics-")
    os.environ[_FOLDER_VARIABLE] = folder
    return folder


class ServerMetrics:
    """The server's counters and histograms (see the module's notes)."""

    def __init__(self):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.shared = bool(os.environ.get(_FOLDER_VARIABLE))
        # in multiprocess mode values live in the shared folder, not in a registry
        registry = None if self.shared else CollectorRegistry()
        self.registry = registry
        self.requests = Counter("skstack_requests", "Requests answered, by route and status",
                                ["route", "status"], registry=registry)
        self.latency = Histogram("skstack_request_seconds", "Seconds to answer a request",
                                 ["route"], registry=registry)
        self.batch = Histogram("skstack_batch_texts", "Texts per model call",
                               buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
                               registry=registry)
        self.model_seconds = Histogram("skstack_model_call_seconds",
                                       "Seconds per model call", registry=registry)
        self.texts = Counter("skstack_texts", "Texts scored by the model", registry=registry)
        self.waiting = Gauge("skstack_queue_depth", "Requests waiting for a model call",
                             registry=registry, multiprocess_mode="livesum")

    def request(self, path: str, status: int, seconds: float) -> None:
        route = path if path in ROUTES else "other"
        self.requests.labels(route, str(status)).inc()
        self.latency.labels(route).observe(seconds)

    def model_call(self, n_texts: int, seconds: float) -> None:
        self.batch.observe(n_texts)
        self.model_seconds.observe(seconds)
        self.texts.inc(n_texts)

    def queue_depth(self, n: int) -> None:
        self.waiting.set(n)

    def exposition(self) -> tuple[bytes, str]:
        """The text ``/metrics`` answers, and its content type."""
        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
        from prometheus_client.multiprocess import MultiProcessCollector

        registry = self.registry
        if self.shared:
            registry = CollectorRegistry()
            MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
