"""``coevofold serve``: the JSON API against ``predict``, the limits, and the page in a real browser.

The server runs the small real model of conftest.py (prepared for homology transfer) under
uvicorn in a thread on a free localhost port; the browser is Debian's Chromium, headless,
driven by selenium through chromium-driver. In CI (``CI=true``) a missing browser fails the
test instead of skipping it.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

import numpy as np

from coevofold import cli, prediction
from coevofold.calibration import ALIGNMENT_FEATURES, MODEL_FEATURES, MODEL_ONLY_FEATURES, Calibration, LogisticMap
from coevofold.serve import ServeConfig, Service, create_app

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

    def load(checkpoint, model, use_homology, device="auto"):
        asked.update(checkpoint=checkpoint, device=device)
        return service.predictor

    monkeypatch.setattr(prediction, "load_predictor", load)
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: asked.update(served=kwargs["port"]))
    before = torch.get_num_threads()
    try:
        assert cli.main(["serve", "--checkpoint", str(calibrated), "--device", "cpu", "--threads", "1", "--port", "8765"]) == 0
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    assert asked == {"checkpoint": str(calibrated), "device": "cpu", "served": 8765}
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


@pytest.fixture(scope="module")
def server(service: Service):
    """uvicorn serving the app on a free 127.0.0.1 port, in a thread, for the module."""
    import uvicorn

    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(service), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


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
