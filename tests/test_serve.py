"""``coevofold serve``: the JSON API against ``predict``, the limits, and the page in a real browser.

The server runs the small real model of conftest.py (prepared for homology transfer) under
uvicorn in a thread on a free localhost port; the browser is Debian's Chromium, headless,
driven by selenium through chromium-driver. In CI (``CI=true``) a missing browser fails the
test instead of skipping it.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import numpy as np

from coevofold import prediction
from coevofold.app import cli
from coevofold.app.serve import ServeConfig, Service, create_app
from coevofold.system.calibration import ALIGNMENT_FEATURES, MODEL_FEATURES, MODEL_ONLY_FEATURES, Calibration, LogisticMap

SCREENSHOT = Path(__file__).resolve().parents[1] / "docs" / "serve_screenshot.png"
CONFIG = ServeConfig(max_sequences=4, max_residues=400, max_bytes=20_000)


@pytest.fixture(scope="module")
def calibrated(prepared: Path, tmp_path_factory) -> Path:
    """The small model folder with a calibration: model answers 0.6 (medium), alignment ones 0.95 (high)."""
    folder = shutil.copytree(prepared, tmp_path_factory.mktemp("serve") / "model")

    def constant(names: list[str], p: float) -> LogisticMap:
        return LogisticMap(names, [0.0] * len(names), float(np.log(p / (1 - p))))

    Calibration(1.0, json.loads((folder / "homology.json").read_text())["min_score"],
                constant(MODEL_FEATURES, 0.6), constant(MODEL_ONLY_FEATURES, 0.6),
                constant(ALIGNMENT_FEATURES, 0.95), []).save(folder)
    return folder


@pytest.fixture(scope="module")
def service(calibrated: Path, plm) -> Service:
    return Service(prediction.load_predictor(calibrated, plm, n_jobs=1), CONFIG)


@pytest.fixture(scope="module")
def client(service: Service):
    from fastapi.testclient import TestClient

    return TestClient(create_app(service))


@pytest.fixture(scope="module")
def domains(small_run) -> pd.DataFrame:
    """Real DeepSF domains: a held-out member of each small-model fold."""
    table = small_run[2]
    return table[table["split"] == "test_family"].drop_duplicates("fold")


def _fasta(rows: pd.DataFrame) -> str:
    return "".join(f">{r.id}\n{r.sequence}\n" for r in rows.itertuples())


def test_api_returns_what_predict_writes(client, domains: pd.DataFrame, calibrated: Path, plm, tmp_path: Path):
    response = client.post("/api/predict", json={"fasta": _fasta(domains), "top_k": 2})
    assert response.status_code == 200
    frame = prediction.predict(domains[["id", "sequence"]], calibrated, top_k=2, model=plm, progress=False)
    prediction.write_predictions(frame, tmp_path / "predict.json", "json")
    assert response.json() == json.loads((tmp_path / "predict.json").read_text())
    assert response.json()["plm"] == {"label": plm.label, "weights_sha256": plm.weights_sha256}
    records = response.json()["predictions"]
    assert {r["source"] for r in records} <= {"alignment", "model"}
    assert {r["confidence"] for r in records if r["rank"] == 1} <= {"high", "medium"}


def test_serve_command_passes_device_and_threads(service: Service, calibrated: Path, monkeypatch, capsys):
    """`coevofold serve --device cpu --threads 1`: the predictor loads on that device, torch uses
    that many threads, and the start-up line names the pLM (uvicorn itself is not started here)."""
    import torch
    import uvicorn

    asked = {}

    def load(checkpoint, model, use_homology, device="auto", templates_in_memory=False):
        asked.update(checkpoint=checkpoint, device=device, templates_in_memory=templates_in_memory)
        return service.predictor

    monkeypatch.setattr(prediction, "load_predictor", load)
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: asked.update(served=kwargs["port"]))
    before = torch.get_num_threads()
    try:
        assert cli.main(["serve", "--checkpoint", str(calibrated), "--device", "cpu", "--threads", "1", "--port", "8765"]) == 0
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    assert asked == {"checkpoint": str(calibrated), "device": "cpu", "served": 8765, "templates_in_memory": True}
    assert f"pLM {service.predictor.plm.label})" in capsys.readouterr().out


def test_page_and_health_name_the_plm_loaded(client, plm):
    assert plm.label.startswith("offline copy ") and "(stand-in for facebook/esm2_t6_8M_UR50D)" in plm.label
    assert f'<p id="plm">pLM: {plm.label}</p>' in client.get("/").text
    assert client.get("/api/health").json()["plm"] == {"label": plm.label, "weights_sha256": plm.weights_sha256}


def test_api_refusals(client, domains: pd.DataFrame, calibrated: Path, write_fasta, capsys, monkeypatch):
    bad = ">ok\nMKVLA\n>bad\nMKV*LA\n"
    response = client.post("/api/predict", json={"fasta": bad})
    assert response.status_code == 400
    # the line the command line prints for a file of the same name
    monkeypatch.chdir(write_fasta(bad, name="pasted FASTA").parent)
    assert cli.main(["predict", "pasted FASTA", "--checkpoint", str(calibrated)]) == 1
    assert capsys.readouterr().err.strip() == f"coevofold: error: {response.json()['error']}"

    many = _fasta(pd.concat([domains.assign(id=domains["id"] + f"_{i}") for i in range(2)]))
    cases = {
        "at most 4 per request": {"fasta": many},
        "at most 400 per sequence": {"fasta": ">long\n" + "A" * 401 + "\n"},
        "request too large": {"fasta": ">big\n" + "A" * 30_000 + "\n"},
        "top_k must be between 1 and 20": {"fasta": _fasta(domains), "top_k": 0},
        "expected a JSON object": {"sequence": "MKV"},
        "empty file": {"fasta": ""},
    }
    for message, payload in cases.items():
        response = client.post("/api/predict", json=payload)
        assert 400 <= response.status_code < 500 and message in response.json()["error"], (message, response.text)
    response = client.post("/api/predict", content=b"not json", headers={"content-type": "application/json"})
    assert response.status_code == 400 and "not JSON" in response.json()["error"]


def test_page_refusal_shows_the_message(client):
    response = client.post("/", data={"fasta": ">long\n" + "A" * 401 + "\n", "top_k": "3"})
    assert response.status_code == 413
    assert "at most 400 per sequence" in response.text and 'id="error"' in response.text


# ------------------------------------------------------------------------------- browser


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def _serving(service: Service):
    """uvicorn serving the app on a free 127.0.0.1 port, in a thread; yields its URL.

    ``log_config=None``: uvicorn leaves logging alone, so its records reach pytest's caplog.
    """
    import uvicorn

    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(service), host="127.0.0.1", port=port, log_level="warning",
                                           log_config=None))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def server(service: Service):
    """The module's service under uvicorn (the browser and the load test)."""
    with _serving(service) as url:
        yield url


def _chromium() -> tuple[str, str] | None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    found = _chromium()
    if found is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("chromium and chromium-driver are required in CI (apt-get install chromium chromium-driver)")
        pytest.skip("headless browser test needs chromium and chromium-driver (apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service as DriverService

    options = webdriver.ChromeOptions()
    options.binary_location = found[0]
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run", "--window-size=1280,1000",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=DriverService(executable_path=found[1]), options=options)
    driver.set_page_load_timeout(300)
    yield driver
    driver.quit()


def test_browser_paste_submit_see_results_and_errors(server: str, browser, domains: pd.DataFrame, small_run,
                                                     write_fasta, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 300)
    browser.get(server + "/")
    assert "coevofold" in browser.title
    assert browser.find_element(By.ID, "plm").text.startswith("pLM: offline copy ")  # what was loaded, named
    # two real domains: a held-out family member and a training domain's own sequence (alignment)
    train = small_run[2][small_run[2]["split"] == "train"].iloc[[0]]
    fasta = _fasta(pd.concat([domains.head(1), train.assign(id="my_domain")]))
    browser.find_element(By.ID, "fasta").send_keys(fasta)
    top_k = browser.find_element(By.ID, "top_k")
    top_k.clear()
    top_k.send_keys("3")
    browser.find_element(By.ID, "submit").click()
    wait.until(ready.presence_of_element_located((By.CSS_SELECTOR, "table.folds")))
    cards = browser.find_elements(By.CSS_SELECTOR, "section.card")
    assert len(cards) == 2
    rows = cards[1].find_elements(By.CSS_SELECTOR, "table.folds tr")
    assert len(rows) == 1 + 3  # header + top-3
    assert "alignment" in rows[1].text and train["id"].iat[0] in rows[1].text
    assert "confidence" in rows[0].text and "high" in rows[1].text  # the calibrated band, shown
    assert "homology transfer" in cards[1].find_element(By.CSS_SELECTOR, ".evidence").text
    images = browser.find_elements(By.CSS_SELECTOR, "img.contact-map")
    assert len(images) == 2
    assert all(browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 100", i)
               for i in images)
    assert browser.find_element(By.ID, "download-tsv").get_attribute("download") == "coevofold_predictions.tsv"
    # the README's screenshot is refreshed on request only: a test run must not rewrite tracked files
    target = SCREENSHOT if os.environ.get("COEVOFOLD_UPDATE_SCREENSHOT") else tmp_path / "serve.png"
    height = browser.execute_script("return document.body.scrollHeight")
    browser.set_window_size(1280, min(max(height + 40, 800), 2400))
    browser.save_screenshot(str(target))
    assert target.read_bytes()[:4] == b"\x89PNG"
    browser.set_window_size(1280, 1000)

    # bad input: the same one-line error the command line prints, in the page
    browser.get(server + "/")
    browser.find_element(By.ID, "file").send_keys(str(write_fasta(">ok\nMKVLA\n>bad\nMKV*LA\n", name="mine.fa")))
    browser.find_element(By.ID, "submit").click()
    error = wait.until(ready.presence_of_element_located((By.ID, "error")))
    assert error.text.startswith("mine.fa: record 'bad': invalid residue '*'")
    assert not browser.find_elements(By.CSS_SELECTOR, "table.folds")


def test_page_escapes_what_the_user_sent(client, domains: pd.DataFrame):
    sequence = domains["sequence"].iat[0]
    response = client.post("/", data={"fasta": f"><script>alert(1)</script>\n{sequence}\n", "top_k": "1"})
    assert response.status_code == 200 and "table" in response.text
    assert "<script>alert(1)</script>" not in response.text and "&lt;script&gt;alert(1)&lt;/script&gt;" in response.text


# ------------------------------------------------------- load and abuse (a real uvicorn on 127.0.0.1)


@pytest.fixture(scope="module")
def guarded(service: Service):
    """The same model behind tight limits: 1 request may wait, bodies up to 300 kB arriving within 1.5 s."""
    hostile = Service(service.predictor, ServeConfig(max_sequences=4, max_residues=400, max_bytes=300_000,
                                                     max_queue=1, body_timeout=1.5))
    with _serving(hostile) as url:
        yield hostile, url
    hostile.close()


def _until(condition, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.02)


def _open(url: str, head: bytes, body: bytes = b"") -> socket.socket:
    """A raw connection that has sent ``head`` and ``body`` (maybe less than it declared)."""
    sock = socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])), timeout=10)
    sock.sendall(head + body)
    return sock


def _head(path: str, length: int | None, kind: str = "application/json") -> bytes:
    size = f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked"
    return f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {kind}\r\n{size}\r\n\r\n".encode()


def _response(sock: socket.socket, as_json: bool = True) -> tuple[int, Any]:
    """Status and body (JSON, or text) of the answer on a raw connection."""
    import http.client

    answer = http.client.HTTPResponse(sock)
    answer.begin()
    body = answer.read()
    return answer.status, json.loads(body) if as_json else body.decode()


def _no_tracebacks(caplog, capfd) -> None:
    assert not [r.getMessage() for r in caplog.records if r.exc_info]
    assert "Traceback" not in capfd.readouterr().err


def test_concurrent_clients_each_get_their_own_answer(server: str, service: Service, small_run, caplog, capfd):
    """6 clients x 2 requests of 1-3 real domains: every answer is predict's for what that client
    sent, and the process's resident memory stays within 1.5x of what it was before."""
    import httpx
    import psutil

    table = small_run[2]
    rng = np.random.default_rng(0)
    sent = [table.iloc[rng.choice(len(table), k, replace=False)] for k in [1, 2, 3] * 4]
    expected = [json.loads(prediction.predictions_text(service.predictor.predict(rows, 2, progress=False), "json"))
                for rows in sent]
    process = psutil.Process()
    before, peak, done = process.memory_info().rss, [0], threading.Event()

    def sample() -> None:
        while not done.wait(0.02):
            peak[0] = max(peak[0], process.memory_info().rss)

    def client(first: int) -> list:
        with httpx.Client(base_url=server, timeout=120) as http:
            return [(n, http.post("/api/predict", json={"fasta": _fasta(sent[n]), "top_k": 2}))
                    for n in range(first, len(sent), 6)]

    threading.Thread(target=sample, daemon=True).start()
    with ThreadPoolExecutor(6) as pool:
        answers = [answer for part in pool.map(client, range(6)) for answer in part]
    done.set()
    assert sorted(n for n, _ in answers) == list(range(len(sent)))
    for n, response in answers:
        assert response.status_code == 200 and response.json() == expected[n], n
    assert peak[0] <= 1.5 * before, (before, peak[0])
    _no_tracebacks(caplog, capfd)


def _gated(service: Service, monkeypatch) -> tuple[threading.Event, list, object]:
    """Hold every model run until the returned event is set (the runs' ids go into the list):
    a request stays running for as long as a test needs. Also returns the real ``predict``."""
    gate, calls, real = threading.Event(), [], service.predict

    def gated(table, top_k, contacts=None):
        calls.append(table["id"].tolist())
        assert gate.wait(60)
        return real(table, top_k, contacts)

    monkeypatch.setattr(service, "predict", gated)
    return gate, calls, real


def test_a_full_queue_answers_503_and_a_vanished_client_is_dropped(guarded, domains: pd.DataFrame, monkeypatch,
                                                                   caplog, capfd):
    import httpx

    service, url = guarded
    gate, calls, _ = _gated(service, monkeypatch)
    body = json.dumps({"fasta": _fasta(domains.head(1)), "top_k": 1}).encode()
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(httpx.post, url + "/api/predict", content=body, timeout=60)
        _until(lambda: len(calls) == 1)
        waiting = _open(url, _head("/api/predict", len(body)), body)  # queued behind it
        _until(lambda: service.in_progress == 2)
        full = httpx.post(url + "/api/predict", content=body, timeout=30)
        assert full.status_code == 503 and full.headers["retry-after"].isdigit()
        assert full.json()["error"].startswith("busy: 1 requests are already waiting")
        page = httpx.post(url + "/", data={"fasta": _fasta(domains.head(1)), "top_k": "1"}, timeout=30)
        assert page.status_code == 503 and "busy: 1 requests" in page.text and 'id="error"' in page.text
        waiting.close()
        _until(lambda: service.in_progress == 1)  # the vanished client's request left the queue
        gate.set()
        assert running.result().status_code == 200
    assert len(calls) == 1  # ... without work
    assert httpx.post(url + "/api/predict", content=body, timeout=60).status_code == 200 and len(calls) == 2
    _no_tracebacks(caplog, capfd)


def test_hostile_requests_get_a_one_line_4xx_json_error(guarded, caplog, capfd):
    import httpx

    _, url = guarded
    json_type = {"content-type": "application/json"}
    cases = {  # body: (status, words of the error)
        b'{"fasta": ' + b"[" * 100_000 + b"]" * 100_000 + b"}": (400, "nested too deeply"),
        b'{"fasta": "\xff\xfe MKV"}': (400, "not JSON"),
        b"\xff\xfe\x00\x00garbage": (400, "not JSON"),
        b'{"fasta": "\\ud800"}': (400, "not valid Unicode"),
        b'{"fasta": 5}': (400, "expected a JSON object"),
        b"[1, 2]": (400, "expected a JSON object"),
        b"null": (400, "expected a JSON object"),
        b'{"fasta": ">a\\nMKV\\n", "top_k": "3"}': (400, "whole number"),
        b'{"fasta": ">a\\nMKV\\n", "top_k": 2.5}': (400, "whole number"),
        b'{"fasta": ">a\\nMKV\\n", "top_k": 1' + b"0" * 100 + b"}": (400, "between 1 and 20"),
        b'{"fasta": ">a\\nMKV\\n", "top_k": 1' + b"0" * 5000 + b"}": (400, "not JSON"),
        b'{"fasta": "' + b"A" * 400_000 + b'"}': (413, "request too large: 400,0"),
    }
    with httpx.Client(base_url=url, timeout=30) as http:
        for body, (status, words) in cases.items():
            response = http.post("/api/predict", content=body, headers=json_type)
            error = response.json()["error"]
            assert response.status_code == status and words in error and "\n" not in error, (body[:30], response.text)
        for method, path, status in [("GET", "/api/predict", 405), ("PUT", "/", 405), ("DELETE", "/api/health", 405),
                                     ("GET", "/nope", 404), ("POST", "/api/nope", 404), ("GET", "/docs", 404),
                                     ("GET", "/openapi.json", 404)]:
            response = http.request(method, path)
            assert response.status_code == status and path in response.json()["error"], (method, path, response.text)
        # the page answers in the page: too many fields, a broken multipart body, an upload over the limit
        for response, status in [
            (http.post("/", data={f"field{i}": "x" for i in range(20)}), 400),
            (http.post("/", content=b"--x\r\nbroken", headers={"content-type": "multipart/form-data; boundary=x"}), 400),
            (http.post("/", files={"file": ("big.fa", b">big\n" + b"A" * 400_000)}), 413),
        ]:
            assert response.status_code == status and 'id="error"' in response.text, response.text[-300:]
    _no_tracebacks(caplog, capfd)


def test_a_200_mb_chunked_body_is_refused_at_the_limit(guarded, caplog, capfd):
    """Refused at the chunk that crosses 300 kB: the server stops reading, not after 200 MB."""
    _, url = guarded
    sock = _open(url, _head("/api/predict", None))
    chunk, sent = b"%x\r\n%s\r\n" % (1 << 16, b" " * (1 << 16)), 0
    try:
        while sent < 200 << 20 and not select.select([sock], [], [], 0)[0]:
            sock.sendall(chunk)
            sent += 1 << 16
    except OSError:  # the server closed the connection after its answer
        pass
    status, answer = _response(sock)
    sock.close()
    assert status == 413 and answer["error"] == "request too large: more than 300,000 bytes, at most 300,000"
    assert sent < 32 << 20, sent  # what the sockets' buffers held, not 200 MB
    _no_tracebacks(caplog, capfd)


def test_slow_and_vanishing_clients(guarded, domains: pd.DataFrame, caplog, capfd):
    """100 half-sent bodies (the issue's count), half to the API and half to the page: others are
    still answered; the 50 that vanish leave no traceback, the 50 that stay get a one-line 408."""
    import httpx

    _, url = guarded
    form = "multipart/form-data; boundary=x"
    slow = [(path, _open(url, _head(path, 1000, kind), start))
            for path, kind, start in [("/api/predict", "application/json", b'{"fasta": ">a'),
                                      ("/", form, b'--x\r\nContent-Disposition: form-data; name="fasta"\r\n\r\n>a')]
            for _ in range(50)]
    response = httpx.post(url + "/api/predict", json={"fasta": _fasta(domains.head(1)), "top_k": 1}, timeout=30)
    assert response.status_code == 200 and response.json()["predictions"][0]["id"] == domains["id"].iat[0]
    for _, sock in slow[:25] + slow[50:75]:
        sock.close()
    for path, sock in slow[25:50] + slow[75:]:
        status, text = _response(sock, as_json=False)
        sock.close()
        if path == "/":
            assert status == 408 and 'id="error"' in text and "request body not received within 1.5 s" in text
        else:
            assert status == 408 and json.loads(text) == {"error": "request body not received within 1.5 s"}
    time.sleep(0.3)  # the server sees the last connections go
    _no_tracebacks(caplog, capfd)


def test_a_client_that_leaves_while_its_request_runs(guarded, domains: pd.DataFrame, monkeypatch, caplog, capfd):
    """The running request finishes (a pass cannot be stopped), its answer goes nowhere, and the
    queue is free again: one INFO line is all that is logged."""
    import logging

    import httpx

    caplog.set_level(logging.INFO, "coevofold.app.serve")
    service, url = guarded
    gate, calls, real = _gated(service, monkeypatch)
    body = json.dumps({"fasta": _fasta(domains.head(1)), "top_k": 1}).encode()
    sock = _open(url, _head("/api/predict", len(body)), body)
    _until(lambda: len(calls) == 1)
    sock.close()
    time.sleep(0.2)
    gate.set()
    _until(lambda: service.in_progress == 0)
    monkeypatch.setattr(service, "predict", real)
    assert httpx.post(url + "/api/predict", content=body, timeout=60).status_code == 200
    assert [r.getMessage() for r in caplog.records if r.name == "coevofold.app.serve"] == [
        "POST /api/predict: the client went away; request dropped"]
    _no_tracebacks(caplog, capfd)


def test_an_unexpected_error_is_a_json_500_and_one_logged_traceback(guarded, domains: pd.DataFrame, monkeypatch,
                                                                    caplog):
    import httpx

    service, url = guarded

    def broken(*args, **kwargs):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(service, "predict", broken)
    response = httpx.post(url + "/api/predict", json={"fasta": _fasta(domains.head(1))}, timeout=30)
    assert response.status_code == 500
    assert response.json() == {"error": "internal error (ZeroDivisionError: division by zero); "
                                        "the server log has the traceback"}
    logged = [record for record in caplog.records if record.exc_info]
    assert len(logged) == 1 and logged[0].name == "coevofold.app.serve"
    assert logged[0].getMessage() == "POST /api/predict: unexpected error"
