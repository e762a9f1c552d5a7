"""A fitted model behind HTTP (``skstack serve``), requests micro-batched into one
``predict_proba`` call.

    POST /predict  {"texts": ["thank you!", ...]}
                   -> {"predictions": [{"labels": [...], "probabilities": {...}}, ...],
                       "thresholds": {...}}
    POST /explain  {"texts": [...], "labels": [...] (optional)}
                   -> {"explanations": [Explanation.to_dict(), ...]}
    GET  /         the demo page      GET /health   GET /labels   GET /card
    GET  /metrics  Prometheus metrics (skstack.serving_metrics)
    GET  /openapi.json  the OpenAPI 3 description (skstack.serving_schema)

Built on Starlette, a small, well-kept ASGI toolkit (FastAPI is built on it; five routes and
JSON need no schema layer above it), run by uvicorn, its reference server. Requests wait in
a bounded queue; one task takes up to ``max_batch`` texts from it, waiting at most
``max_wait_ms`` for more after the first (and no longer once it holds as many requests as
the last call answered plus those that queued meanwhile: the clients due back), and runs
them through the model in one call on the model's own thread, so the event loop keeps
accepting requests meanwhile. That thread loads the model too, and does all of the process's
torch work: a model loaded on the main thread and called on another ran calls of 16 texts 2x
slower (``skstack._threads.torch_thread``). ``max_batch=1`` turns micro-batching off (each
request alone). A bad request gets a 4xx answer with a one-line reason in
``{"error": ...}``; nothing it sent reaches the model.

One request never fails another: every text is checked before it joins a batch (a string,
valid Unicode, within the size limits; the body's JSON within a nesting depth), the body is
counted while it streams in and refused once past what the limits allow, and when a batched
model call still fails, each request of that batch is run again on its own, so each gets its
own answer or its own error. A model whose decision rule is invalid (thresholds outside
[0, 1], limits that contradict each other) is refused before the port opens; so is one that
fails to predict :data:`WARM_UP_TEXT`, which every model answers once first, so that no
request waits for what a first call builds.

``/explain`` sends its occluded texts (:func:`~skstack.explanations.occluded_texts`: one row
per word) through the same queue, so explanations are batched with predictions.

Import rule: ``_validation``, ``_version``, ``cards``, ``explanations``, ``labels``,
``parts``, ``persistence``, ``rules``, ``serving_metrics``, ``serving_schema`` and
``_threads``;
starlette and uvicorn are imported by :func:`make_app` and :func:`run`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import asdict, dataclass
from importlib.resources import files

import numpy as np

from skstack._threads import torch_thread
from skstack._validation import blank_rows, unwrap_search
from skstack._version import __version__
from skstack.cards import model_card
from skstack.explanations import (
    MAX_WORDS,
    explained_columns,
    explanations_from,
    occluded_texts,
)
from skstack.labels import label_names
from skstack.parts import final_step
from skstack.persistence import load_model
from skstack.rules import check_rule, decide, decision_rule
from skstack.serving_metrics import ServerMetrics, share_between_workers
from skstack.serving_schema import openapi

_SETTINGS_VARIABLE = "SKSTACK_SERVE_SETTINGS"  # how uvicorn's worker processes get them
_MAX_DEPTH = 32  # JSON nesting a request may have ({"texts": [...]} needs 2)
WARM_UP_TEXT = "Thank you!"  # the text a server predicts once before its port opens


@dataclass(frozen=True)
class ServeSettings:
    """What ``skstack serve`` was started with (the limits a request is checked against)."""

    model: str
    trust_joblib: bool = False
    max_batch: int = 64
    max_wait_ms: float = 5.0
    max_texts: int = 256
    max_chars: int = 10_000
    max_queue: int = 1024
    max_explain_words: int = MAX_WORDS  # /explain scores one extra text per word
    api_key_file: str | None = None  # keys, one a line; else $SKSTACK_API_KEYS; else open
    examples: tuple[str, ...] = ()  # the demo page's texts (--examples); else its own


KEYS_VARIABLE = "SKSTACK_API_KEYS"  # API keys separated by commas or white space
_OPEN_ROUTES = frozenset({"/", "/examples", "/health"})  # the demo page and the health check


def api_keys(settings: ServeSettings) -> tuple[str, ...]:
    """The keys a request may bear (``Authorization: Bearer <key>``): the lines of
    ``api_key_file`` (blank lines and ``#`` comments skipped), else those in
    ``$SKSTACK_API_KEYS``; none means the server is open. A key file that holds no key is
    an error, not an open server."""
    if settings.api_key_file is not None:
        try:
            text = open(settings.api_key_file, encoding="utf-8").read()
        except OSError as exc:
            raise ValueError(f"--api-key-file {settings.api_key_file}: {exc.strerror}.") from None
        keys = tuple(line.strip() for line in text.splitlines()
                     if line.strip() and not line.strip().startswith("#"))
        if not keys:
            raise ValueError(f"--api-key-file {settings.api_key_file} holds no key (one a "
                             "line).")
        return keys
    return tuple(os.environ.get(KEYS_VARIABLE, "").replace(",", " ").split())


def authorized(header: str | None, keys: tuple[str, ...]) -> bool:
    """Whether an ``Authorization`` header bears one of ``keys``, compared in constant time
    (every key is compared, so the time says nothing of which came close)."""
    scheme, _, given = (header or "").partition(" ")
    if scheme.lower() != "bearer" or not given:
        return False
    given_bytes = given.strip().encode()
    return any([hmac.compare_digest(given_bytes, key.encode()) for key in keys])


class BadRequest(Exception):
    """A request the server refuses, with the HTTP status to answer."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status


class Predictor:
    """Probabilities, decisions and names of a fitted multi-label model, for serving."""

    def __init__(self, model):
        self.model = model = unwrap_search(model, "serve")
        self.labels = [str(n) for n in label_names(model)]
        kind = getattr(final_step(model), "target_type_", "multilabel")
        if kind != "multilabel":
            raise ValueError(f"skstack serve needs a multi-label model; this one was fitted "
                             f"on a {kind} target.")
        try:
            rule = decision_rule(model)
            self.min_labels, self.max_labels = rule.min_labels, rule.max_labels
            self.thresholds = check_rule("the served model", rule.thresholds, rule.min_labels,
                                         rule.max_labels, len(self.labels))
        except (ValueError, TypeError) as exc:
            raise ValueError(f"the model's decision rule cannot be served: {exc}") from None
        self.calls = 0  # predict_proba calls, for tests and the load benchmark

    def __call__(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        self.calls += 1
        proba = np.asarray(self.model.predict_proba(texts), dtype=float)
        return proba, decide(proba, self.thresholds, self.min_labels, self.max_labels)

    def answer(self, proba: np.ndarray, pred: np.ndarray) -> list[dict]:
        return [{"labels": [n for n, on in zip(self.labels, row, strict=True) if on],
                 "probabilities": {n: round(float(p), 6)
                                   for n, p in zip(self.labels, probs, strict=True)}}
                for probs, row in zip(proba, pred, strict=True)]


class MicroBatcher:
    """Requests' texts gathered into batches for one ``predict`` call each."""

    def __init__(self, predict: Callable[[list[str]], tuple], max_batch: int,
                 max_wait_ms: float, max_queue: int, metrics: ServerMetrics | None = None,
                 executor: Executor | None = None):
        self.predict, self.max_batch = predict, max_batch
        self.executor = executor  # where predict runs (None: asyncio's default executor)
        self.max_wait, self.max_queue = max_wait_ms / 1000, max_queue
        self.metrics = metrics
        self.queue: asyncio.Queue | None = None
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        self.queue = asyncio.Queue()
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def submit(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        if self.queue.qsize() >= self.max_queue:
            raise BadRequest(503, f"the server is busy ({self.queue.qsize()} requests "
                                  "waiting); retry later.")
        done = asyncio.get_running_loop().create_future()
        self.queue.put_nowait((texts, done))
        if self.metrics is not None:
            self.metrics.queue_depth(self.queue.qsize())
        return await done

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        # the requests the last call answered plus those that queued meanwhile: clients that
        # send again once answered are that many, so a batch that holds that many stops
        # waiting (a lone client never waits --max-wait-ms for others that do not exist)
        due = 1
        while True:
            batch = [await self.queue.get()]
            size, deadline = len(batch[0][0]), loop.time() + self.max_wait
            while size < self.max_batch:
                if not self.queue.empty():  # what queued during the last call, at once
                    item = self.queue.get_nowait()
                elif len(batch) >= due:
                    break
                else:
                    try:
                        item = await asyncio.wait_for(self.queue.get(), deadline - loop.time())
                    except TimeoutError:
                        break
                batch.append(item)
                size += len(item[0])
            if self.metrics is not None:
                self.metrics.queue_depth(self.queue.qsize())
            await self._answer(batch)
            due = len(batch) + self.queue.qsize()

    async def _answer(self, batch: list[tuple[list[str], asyncio.Future]]) -> None:
        """Run ``batch`` in one model call; if that fails, each request alone, so that a
        text the model cannot take fails its own request only."""
        texts = [t for request, _ in batch for t in request]
        started = time.perf_counter()
        try:
            proba, pred = await asyncio.get_running_loop().run_in_executor(
                self.executor, self.predict, texts)
        except Exception as exc:
            if len(batch) == 1:
                if not batch[0][1].done():
                    batch[0][1].set_exception(exc)
                return
            for item in batch:
                await self._answer([item])
            return
        if self.metrics is not None:
            self.metrics.model_call(len(texts), time.perf_counter() - started)
        start = 0
        for request, done in batch:
            end = start + len(request)
            if not done.done():  # its client may have gone
                done.set_result((proba[start:end], pred[start:end]))
            start = end


def check_request(body: bytes, settings: ServeSettings) -> dict:
    """The parsed body of a ``/predict`` or ``/explain`` request, its ``"texts"`` checked;
    :class:`BadRequest` naming what is wrong."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(400, f"the body is not JSON ({exc}).") from None
    except RecursionError:
        raise BadRequest(400, f"the body's JSON is nested deeper than {_MAX_DEPTH} "
                              "levels.") from None
    if _depth(data) > _MAX_DEPTH:
        raise BadRequest(400, f"the body's JSON is nested deeper than {_MAX_DEPTH} levels.")
    if not isinstance(data, dict) or "texts" not in data:
        got = "an object without texts" if isinstance(data, dict) else type(data).__name__
        raise BadRequest(400, f'expected a JSON object {{"texts": ["...", ...]}}, got {got}.')
    texts = data["texts"]
    if not isinstance(texts, list):
        raise BadRequest(400, f'"texts" must be a list of strings, got {type(texts).__name__}.')
    if len(texts) > settings.max_texts:
        raise BadRequest(413, f"{len(texts)} texts in one request; at most "
                              f"{settings.max_texts} (--max-texts).")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise BadRequest(400, f"texts[{i}] is {type(text).__name__}, expected a string.")
        if blank_rows([text]):
            raise BadRequest(400, f"texts[{i}] is empty or only white space: there are no words "
                                  "to classify.")
        if len(text) > settings.max_chars:
            raise BadRequest(413, f"texts[{i}] has {len(text):,} characters; at most "
                                  f"{settings.max_chars:,} (--max-chars).")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:  # a lone surrogate: legal JSON, not Unicode text
            raise BadRequest(400, f"texts[{i}] is not valid Unicode: a lone surrogate "
                                  f"{text[exc.start]!r} at character {exc.start}.") from None
    return data


def _depth(value, limit: int = _MAX_DEPTH) -> int:
    """How deep ``value`` (parsed JSON) nests lists and objects, counted to ``limit + 1`` at
    most (so a deep body costs no more than a shallow one to measure)."""
    depth, level = 0, [value] if isinstance(value, (list, dict)) else []
    while level and depth <= limit:
        depth += 1
        level = [x for v in level for x in (v.values() if isinstance(v, dict) else v)
                 if isinstance(x, (list, dict))]
    return depth


async def read_request(request, settings: ServeSettings) -> dict:
    """The checked body of a ``/predict`` or ``/explain`` request (:func:`check_request`),
    read chunk by chunk and refused (413) once past what the limits allow, whether or not it
    declares its length."""
    # a body larger than this cannot pass the limits
    max_body = settings.max_texts * (settings.max_chars * 6 + 16) + 1024
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > max_body:
        raise BadRequest(413, f"the body has {int(length):,} bytes; at most {max_body:,}.")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_body:
            raise BadRequest(413, f"the body has more than {max_body:,} bytes; at most "
                                  f"{max_body:,}.")
    return check_request(bytes(body), settings)


def make_app(model, settings: ServeSettings, executor: Executor | None = None):
    """The Starlette application serving ``model`` (fitted) under ``settings``; the model
    runs on ``executor``, the thread that loaded it (a new :func:`torch_thread` if
    ``None``), and has answered one text there before this returns."""
    from starlette.applications import Starlette
    from starlette.datastructures import Headers
    from starlette.middleware import Middleware
    from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
    from starlette.routing import Route

    predictor = Predictor(model)
    executor = executor or torch_thread()
    # one call before the port opens: the first builds what later calls reuse (an OpenVINO
    # encoder compiles its model), and the first requests waited for it: a served p99 of
    # about 470 ms on OpenVINO int8 (docs/benchmarks.md, "OpenVINO on streams")
    try:
        executor.submit(predictor.model.predict_proba, [WARM_UP_TEXT]).result()
    except Exception as exc:
        raise ValueError(f"the model failed on a first prediction of {WARM_UP_TEXT!r} "
                         f"({type(exc).__name__}: {exc}); the server did not start.") from exc
    metrics = ServerMetrics()
    batcher = MicroBatcher(predictor, settings.max_batch, settings.max_wait_ms,
                           settings.max_queue, metrics, executor)
    thresholds = dict(zip(predictor.labels, predictor.thresholds.round(6).tolist(),
                          strict=True))

    def error(status: int, reason: str) -> JSONResponse:
        return JSONResponse({"error": reason}, status_code=status)

    keys = api_keys(settings)

    refused = JSONResponse({"error": "missing or wrong API key: send 'Authorization: Bearer "
                                     "<key>'."}, status_code=401,
                           headers={"WWW-Authenticate": "Bearer"})

    def checked_and_counted(app):
        """``app`` behind the API keys, each request counted in the metrics with its status
        and seconds. Plain ASGI: Starlette's ``BaseHTTPMiddleware`` streamed every response
        through a task group of its own, a third of the event loop's time a request
        (docs/benchmarks.md, "The server's own cost")."""
        async def guarded(scope, receive, send):
            if scope["type"] != "http":
                return await app(scope, receive, send)
            started, path, status = time.perf_counter(), scope["path"], 500

            async def counted(message):
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                await send(message)
            try:
                if keys and path not in _OPEN_ROUTES and not authorized(
                        Headers(scope=scope).get("authorization"), keys):
                    await refused(scope, receive, counted)
                else:
                    await app(scope, receive, counted)
            finally:
                metrics.request(path, status, time.perf_counter() - started)
        return guarded

    document = openapi(predictor.labels, max_texts=settings.max_texts,
                       max_chars=settings.max_chars,
                       max_explain_words=settings.max_explain_words, secured=bool(keys),
                       version=__version__)

    async def schema(request):
        return JSONResponse(document)

    async def prometheus(request):
        body, kind = metrics.exposition()
        return Response(body, media_type=kind)

    async def scored(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        if not texts:
            return (np.empty((0, len(predictor.labels))),) * 2
        return await batcher.submit(texts)

    def answered(handler):
        """``handler``'s JSON answer, or the 4xx/500 error its request earned."""
        async def endpoint(request):
            try:
                return JSONResponse(await handler(await read_request(request, settings)))
            except BadRequest as exc:
                return error(exc.status, str(exc))
            except Exception as exc:  # the model failed: say how, in one line
                return error(500, f"the model failed on this request ({type(exc).__name__}: "
                                  f"{str(exc)[:200]}).")
        return endpoint

    async def predict(data: dict) -> dict:
        proba, pred = await scored(data["texts"])
        return {"predictions": predictor.answer(proba, pred), "thresholds": thresholds}

    async def explain(data: dict) -> dict:
        try:
            columns = explained_columns(predictor.labels, data.get("labels"))
        except (ValueError, TypeError) as exc:
            raise BadRequest(400, f'"labels": {exc}') from None
        rows, spans = occluded_texts(data["texts"])
        if len(rows) - len(spans) > settings.max_explain_words:
            raise BadRequest(413, f"the texts have {len(rows) - len(spans):,} words in all; "
                                  f"/explain takes at most {settings.max_explain_words:,} "
                                  "(each word is one more text for the model).")
        proba, _ = await scored(rows)
        return {"explanations": [e.to_dict() for e in explanations_from(
            data["texts"], spans, proba, predictor.labels, columns)]}

    async def health(request):
        return JSONResponse({"status": "ok", "model": os.path.basename(settings.model),
                             "labels": len(predictor.labels), "skstack": __version__,
                             "waiting": batcher.queue.qsize() if batcher.queue else 0})

    async def labels(request):
        return JSONResponse({"labels": predictor.labels, "thresholds": thresholds,
                             "min_labels": predictor.min_labels,
                             "max_labels": predictor.max_labels})

    async def demo(request):
        return HTMLResponse(files("skstack").joinpath("data/demo.html").read_text("utf-8"))

    async def examples(request):
        return JSONResponse({"examples": list(settings.examples)})

    async def card(request):
        return PlainTextResponse(model_card(model, title=os.path.basename(settings.model)),
                                 media_type="text/markdown")

    @contextlib.asynccontextmanager
    async def lifespan(app):
        await batcher.start()
        yield
        await batcher.stop()

    app = Starlette(routes=[Route("/predict", answered(predict), methods=["POST"]),
                            Route("/explain", answered(explain), methods=["POST"]),
                            Route("/", demo), Route("/health", health),
                            Route("/labels", labels), Route("/card", card),
                            Route("/metrics", prometheus),
                            Route("/openapi.json", schema), Route("/examples", examples)],
                    lifespan=lifespan, middleware=[Middleware(checked_and_counted)])
    app.state.predictor = predictor
    return app


def loaded_on_own_thread(load: Callable, *args) -> tuple[object, Executor]:
    """``load(*args)`` (a model) run on a new :func:`torch_thread`, and that thread, which
    is then to run every call to the model (the module's notes)."""
    executor = torch_thread()
    return executor.submit(load, *args).result(), executor


def app_from_environment():
    """The application for one of uvicorn's worker processes (``--workers N``)."""
    settings = ServeSettings(**json.loads(os.environ[_SETTINGS_VARIABLE]))
    model, executor = loaded_on_own_thread(load_model, settings.model, settings.trust_joblib)
    return make_app(model, settings, executor)


def run(settings: ServeSettings, host: str = "127.0.0.1", port: int = 8000,
        workers: int = 1, model=None, drain_seconds: float = 30.0,
        executor: Executor | None = None) -> None:
    """Serve until SIGINT or SIGTERM, then drain: stop accepting connections, answer every
    request already received (the batcher runs until the last one is answered), and exit
    within ``drain_seconds``. ``model``: the loaded model (loaded here if ``None``) and
    ``executor``, the :func:`torch_thread` that loaded it; with several ``workers`` each
    worker process loads its own."""
    import uvicorn

    # uvicorn drains, puts this handler back and raises the signal again: a drained
    # SIGTERM (what a container runtime sends) then ends the process with status 0
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    if workers > 1:
        share_between_workers()  # one /metrics for all the workers
        os.environ[_SETTINGS_VARIABLE] = json.dumps(asdict(settings))
        uvicorn.run("skstack.serving:app_from_environment", factory=True, host=host,
                    port=port, workers=workers, timeout_graceful_shutdown=drain_seconds)
        return
    if model is None:
        model, executor = loaded_on_own_thread(load_model, settings.model, settings.trust_joblib)
    app = make_app(model, settings, executor)  # checks the model's rule before the port opens
    uvicorn.run(app, host=host, port=port, timeout_graceful_shutdown=drain_seconds)

