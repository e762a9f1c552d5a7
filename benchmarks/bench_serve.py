"""A load test of ``skstack serve`` on loopback, against calling the model directly.

    python benchmarks/bench_serve.py                              # about 3 min on 2 cores
    python benchmarks/bench_serve.py --clients 32 --requests 800 --texts-per-request 2
    python benchmarks/bench_serve.py --as-without-bf16     # the encoder on OpenVINO int8
    python benchmarks/bench_serve.py --cheap-model         # what the server itself costs

The quickstart pipeline is fitted on the bundled sample (no cache: every text is encoded
where it is predicted) and saved as a ``.skstack`` file. The requests are the first
``--requests`` x ``--texts-per-request`` GoEmotions test texts, all distinct. Timed, in turn:

- ``predict_proba`` called directly in this process: once for all texts (the ceiling), in
  batches of ``--clients`` requests (the largest batch the server can form when each client
  has one request in flight), and once per request, one after another (what a hand-written
  loop in a web handler does);
- ``skstack serve`` started as its own process, answering ``--clients`` concurrent clients
  (threads with keep-alive connections) that share the requests, with micro-batching on
  (``--max-batch 64``, ``--max-wait-ms`` 5 by default, or each of ``--waits``) and off
  (``--max-batch 1``); the server's ``/metrics`` give the mean texts per model call and
  seconds per call of each run.

``--threads-rule`` adds a run with micro-batching and one without whose servers move their
predictions to one torch thread while their threads wait for a core
(``SKSTACK_ADAPT_THREADS=1``; ``skstack serve`` keeps its threads otherwise, since a text's
last bits follow the thread count; here the 16 clients share the server's 2 cores).

``--cheap-model`` serves a model that costs almost nothing to call (hashed words and a small
MLP, ``models.fitted_cheap``) instead: its served texts/s are the server's own ceiling on
this machine, what HTTP, JSON, the queue and 16 clients cost with no model to wait for.

``--profile`` profiles the in-process calls of ``--clients`` texts instead (cProfile) and
stops; ``--parts`` times, in-process, a call of 1, 4, 16 and 64 texts and each of its parts
(every stack member, the meta-learner, the head; the call also with the encoder's weights
not packed and the meta-learner label by label, as before packing), to separate what a call
costs whatever its size from what each text adds, and stops. Every run reports texts/s (and
its share of the ceiling) and the CPU time a text cost: this process's, or for a server run
the server process's and this process's client threads' (Linux's ``/proc``). Each server
run also reports the p50 / p99 latency of a request as its client saw it, and checks every
answer by content: its probabilities within 1e-6 of the one-call ones for the same texts
(no request lost, none answered with another's labels, none moved by the texts it was
batched with). The encoders run in ``--dtype auto`` (bfloat16 where native), as the
quickstart does. Bounded: each run stops after its requests or ``--timeout`` seconds.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from bench_encode import DATA
from machine import describe, pretend_without_bf16
from models import fitted_cheap, fitted_quickstart

from skstack import load, load_goemotions, save


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model: Path, port: int, max_batch: int, max_wait_ms: float,
                 env: dict | None = None, workers: int = 1) -> subprocess.Popen:
    server = subprocess.Popen(
        [sys.executable, "-m", "skstack", "serve", str(model), "--port", str(port),
         "--max-batch", str(max_batch), "--max-wait-ms", str(max_wait_ms), "--max-texts",
         "64", "--workers", str(workers)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, **(env or {})})
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/health")
            if conn.getresponse().status == 200:
                return server
        except OSError:
            time.sleep(0.2)
    server.kill()
    raise SystemExit("the server did not start in 120 s")


def cpu_seconds(pid: int | None = None) -> float:
    """User + system CPU seconds, all threads: of another process and the processes it
    started (a server's workers) from Linux's ``/proc``; of this one from ``os.times``."""
    if pid is None:
        times = os.times()
        return times.user + times.system
    ticks = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # a process that ended meanwhile
            continue
        if stat.parent.name == str(pid) or fields[1] == str(pid):  # itself or a child
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def model_calls(port: int) -> tuple[float, float]:
    """The server's mean texts per model call and mean seconds per call, from ``/metrics``."""
    from prometheus_client.parser import text_string_to_metric_families

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/metrics")
    samples = {sample.name: sample.value
               for family in text_string_to_metric_families(conn.getresponse().read().decode())
               for sample in family.samples}
    calls = samples["skstack_batch_texts_count"]
    return (samples["skstack_batch_texts_sum"] / calls,
            samples["skstack_model_call_seconds_sum"] / calls)


def load_test(port: int, requests: list[list[str]], clients: int, timeout: float) -> dict:
    """Send ``requests`` from ``clients`` threads; (request index -> (status, answer,
    seconds)) and the wall time."""
    results, lock, next_one = {}, threading.Lock(), iter(range(len(requests)))
    deadline = time.monotonic() + timeout

    def client():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        while time.monotonic() < deadline:
            with lock:
                i = next(next_one, None)
            if i is None:
                return
            body = json.dumps({"texts": requests[i]})
            start = time.perf_counter()
            try:
                conn.request("POST", "/predict", body, {"content-type": "application/json"})
                answer = conn.getresponse()
                status, data = answer.status, json.loads(answer.read())
            except (OSError, http.client.HTTPException, ValueError) as exc:
                status, data = -1, repr(exc)
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
            results[i] = (status, data, time.perf_counter() - start)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"results": results, "wall": time.perf_counter() - start}


def checked(run: dict, requests: list[list[str]], expected: dict[str, np.ndarray],
            labels: list[str], tolerance: float) -> dict:
    """Throughput, latencies, and how many answers match their own texts."""
    lost = wrong = 0
    worst = 0.0
    for i, texts in enumerate(requests):
        status, data, _ = run["results"].get(i, (None, None, None))
        if status != 200:
            if not lost:
                print(f"request {i}: {status} {str(data)[:200]}", file=sys.stderr)
            lost += 1
            continue
        got = np.array([[p["probabilities"][n] for n in labels] for p in data["predictions"]])
        want = np.array([expected[t] for t in texts])
        diff = float(np.abs(got - want).max()) if got.shape == want.shape else np.inf
        worst = max(worst, diff)
        wrong += diff > tolerance
    seconds = sorted(r[2] for r in run["results"].values() if r[0] == 200)
    n_texts = sum(len(requests[i]) for i, r in run["results"].items() if r[0] == 200)
    return {"texts/s": n_texts / run["wall"],
            "p50 ms": 1000 * float(np.percentile(seconds, 50)) if seconds else np.nan,
            "p99 ms": 1000 * float(np.percentile(seconds, 99)) if seconds else np.nan,
            "lost": lost, "wrong": wrong, "max diff": worst}


def call_parts(model, texts: list[str], sizes=(1, 4, 16, 64), rounds: int = 3) -> None:
    """Milliseconds of a call of each size in ``sizes`` and of its parts (best of
    ``rounds`` passes over ``texts`` in calls of that size)."""
    from unittest import mock

    from skstack.stacking import _dense, _meta_predict_proba, _sentence

    embed, head = model.steps[0][1], model.steps[-1][1]

    def best(call, inputs) -> float:
        seconds = []
        for _ in range(rounds):
            start = time.perf_counter()
            for x in inputs:
                call(x)
            seconds.append((time.perf_counter() - start) / len(inputs))
        return 1000 * min(seconds)

    def unpacked(x):
        """The call with the encoder's weights not packed and the meta-learner predicting
        label by label (scikit-learn's own ``predict_proba``)."""
        with mock.patch("skstack._packed._packs_bfloat16_weights", lambda: False), \
                mock.patch("skstack.stacking._meta_predict_proba",
                           lambda meta, f: meta.predict_proba(f)):
            return model.predict_proba(x)

    names = [name for name, _ in embed.members_]
    print("| texts a call | whole call | weights not packed, meta-learner label by label | "
          + " | ".join(names) + " | meta-learner | label by label | head |\n|---|---|---|"
          + "---|" * (len(names) + 3))
    for n in sizes:
        batches = [texts[i:i + n] for i in range(0, len(texts), n)]
        outputs = [[_dense(m.transform(b)) for _, m in embed.members_] for b in batches]
        features = [np.hstack([_sentence(z) for z in out]) for out in outputs]
        row = [best(model.predict_proba, batches), best(unpacked, batches)]
        row += [best(m.transform, batches) for _, m in embed.members_]
        row.append(best(lambda f: _meta_predict_proba(embed.meta_learner_, f), features))
        row.append(best(embed.meta_learner_.predict_proba, features))
        row.append(best(head.predict_proba, [embed.transform(b) for b in batches]))
        print(f"| {n} | " + " | ".join(f"{ms:.1f} ms" for ms in row) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--texts-per-request", type=int, default=1)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--waits", type=float, nargs="*", default=[5.0],
                        help="--max-wait-ms of the micro-batching runs, one run each")
    parser.add_argument("--threads-rule", action="store_true",
                        help="also runs with and without micro-batching whose predictions go "
                             "to one torch thread while the cores are crowded "
                             "(SKSTACK_ADAPT_THREADS=1)")
    parser.add_argument("--workers", type=int, default=1,
                        help="the servers' --workers (each loads the model)")
    parser.add_argument("--server-threads", type=int, default=None,
                        help="torch threads in each server process (OMP_NUM_THREADS; "
                             "default: torch's own choice, one per core)")
    parser.add_argument("--profile", action="store_true",
                        help="only profile the in-process calls of --clients texts (cProfile, "
                             "the 30 largest cumulative entries) and stop")
    parser.add_argument("--parts", action="store_true",
                        help="only time in-process calls of 1, 4, 16 and 64 texts and their "
                             "parts, and stop")
    parser.add_argument("--dtype", default="auto", choices=("float32", "auto"),
                        help="the encoder's precision (auto, the default: bfloat16 where "
                             "native)")
    parser.add_argument("--as-without-bf16", action="store_true",
                        help="fit as on a CPU without native bfloat16: the encoder on "
                             "OpenVINO int8, kept by the saved model the server loads")
    parser.add_argument("--cheap-model", action="store_true",
                        help="serve a model that costs almost nothing to call (hashed words, "
                             "a small MLP): the server's own ceiling")
    args = parser.parse_args()
    print(describe())
    if args.as_without_bf16:
        pretend_without_bf16()
    pipe, labels = fitted_cheap() if args.cheap_model else fitted_quickstart(args.dtype)
    k = args.texts_per_request
    texts = list(dict.fromkeys(load_goemotions(DATA, "test").texts))[: args.requests * k]
    requests = [texts[i:i + k] for i in range(0, len(texts), k)]
    with tempfile.TemporaryDirectory() as tmp:
        path = save(pipe, Path(tmp) / "model.skstack", card=False)
        model = load(path)
        model.predict_proba(texts[:8])  # warm: first-call set-up is not throughput
        if args.parts:
            call_parts(model, texts)
            return
        per_text = 1000 / len(texts)  # CPU seconds of all texts -> ms a text
        start, cpu = time.perf_counter(), cpu_seconds()
        once = model.predict_proba(texts)
        ceiling = len(texts) / (time.perf_counter() - start)
        cpu_once = f"{(cpu_seconds() - cpu) * per_text:.1f}"
        expected = dict(zip(texts, once, strict=True))
        latencies, start, cpu = [], time.perf_counter(), cpu_seconds()
        for request in requests:
            t0 = time.perf_counter()
            model.predict_proba(request)
            latencies.append(time.perf_counter() - t0)
        loop = len(texts) / (time.perf_counter() - start)
        cpu_loop = f"{(cpu_seconds() - cpu) * per_text:.1f}"
        # the batches the server can form at best: as many texts as clients (each client has
        # one request in flight); what the model itself does at that size
        start, n, cpu = time.perf_counter(), args.clients * k, cpu_seconds()
        for i in range(0, len(texts), n):
            model.predict_proba(texts[i:i + n])
        in_batches = len(texts) / (time.perf_counter() - start)
        cpu_batches = f"{(cpu_seconds() - cpu) * per_text:.1f}"
        if args.profile:
            import cProfile
            import pstats

            profiler = cProfile.Profile()
            profiler.enable()
            for i in range(0, len(texts), n):
                model.predict_proba(texts[i:i + n])
            profiler.disable()
            print(f"{len(texts) // n} calls of {n} texts, {1000 * n / in_batches:.0f} ms each "
                  "unprofiled")
            pstats.Stats(profiler).sort_stats("cumulative").print_stats(30)
            return
        rows = [("`predict_proba` once for all texts, in-process", ceiling, None, None, "",
                 cpu_once, ""),
                (f"`predict_proba` in batches of {n} texts, in-process (the server's largest "
                 "batch)", in_batches, None, None, "", cpu_batches, ""),
                ("`predict_proba` per request, one after another, in-process", loop,
                 1000 * np.percentile(latencies, 50), 1000 * np.percentile(latencies, 99),
                 "", cpu_loop, "")]
        runs = [(f"on (--max-batch 64 --max-wait-ms {wait:g})", 64, wait, {})
                for wait in args.waits] + [("off (--max-batch 1)", 1, 0.0, {})]
        if args.threads_rule:
            runs.insert(1, ("on (--max-batch 64 --max-wait-ms 5), SKSTACK_ADAPT_THREADS=1",
                            64, 5.0, {"SKSTACK_ADAPT_THREADS": "1"}))
            runs.append(("off (--max-batch 1), SKSTACK_ADAPT_THREADS=1", 1, 0.0,
                         {"SKSTACK_ADAPT_THREADS": "1"}))
        for batching, max_batch, wait, env in runs:
            port = free_port()
            if args.server_threads:  # torch reads it when it loads
                env = {**env, "OMP_NUM_THREADS": str(args.server_threads)}
            server = start_server(path, port, max_batch, wait, env, args.workers)
            try:
                cpu, cpu_server = cpu_seconds(), cpu_seconds(server.pid)
                result = checked(load_test(port, requests, args.clients, args.timeout),
                                 requests, expected, labels, 1e-6)
                cpu = (f"{(cpu_seconds(server.pid) - cpu_server) * per_text:.1f} server, "
                       f"{(cpu_seconds() - cpu) * per_text:.1f} clients")
                batch, call = model_calls(port)
            finally:
                server.terminate()
                server.wait(30)
            layout = (f", {args.workers} workers" if args.workers > 1 else "") + (
                f", {args.server_threads} thread(s) each" if args.server_threads else "")
            rows.append((f"`skstack serve`, micro-batching {batching}{layout}, {args.clients} "
                         "clients", result["texts/s"], result["p50 ms"], result["p99 ms"],
                         f"{batch:.1f} texts, {1000 * call:.0f} ms", cpu,
                         f"{len(requests) - result['lost']}/{len(requests)} answered, "
                         f"{result['wrong']} wrong (max difference {result['max diff']:.1e})"))
    print(f"\n{len(requests)} requests of {k} text(s), {len(texts)} distinct texts, "
          f"threads {os.cpu_count()}\n")
    print("| run | texts/s | p50 latency | p99 latency | mean model call | CPU ms a text | "
          "answers checked by content |\n|---|---|---|---|---|---|---|")
    for name, speed, p50, p99, calls, cpu, note in rows:
        p50s = "" if p50 is None else f"{p50:.0f} ms"
        p99s = "" if p99 is None else f"{p99:.0f} ms"
        print(f"| {name} | {speed:.0f} ({speed / ceiling:.0%}) | {p50s} | {p99s} | {calls} | "
              f"{cpu} | {note} |")


if __name__ == "__main__":
    main()
