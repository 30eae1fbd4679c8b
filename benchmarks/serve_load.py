"""``coevofold serve`` under load: throughput, latency and the server's resident memory, beside
``predict`` on the same sequences in one process.

Run after ``coevofold quickstart``: ``python benchmarks/serve_load.py [--clients 12] [--requests 3]
[--per-request 4] [--checkpoint DIR]``. It starts the real ``coevofold serve`` (this Python, so
``PYTHONPATH=src`` serves the working tree) on a free 127.0.0.1 port, sends ``--clients``
concurrent clients x ``--requests`` requests of ``--per-request`` distinct DeepSF
test_superfamily domains each (the issue's load: 12 x 3 x 4), samples the server's resident
memory (its children included) every 0.1 s from start-up through the load and ``--after``
seconds past it, and then runs ``Predictor.predict`` on all the same sequences in this process
once the server is gone (the two never share the cores): all at once, as ``coevofold predict``
does, and as the server's requests, one call each (the difference between the two is what
small batches cost, the rest is what HTTP and the queue cost). Every answer must be 200 with its own
ids, equal to ``predict``'s (folds and rounded probabilities) up to the last digit that
batching can move. It prints the machine's load, since a shared machine changes the numbers,
and what model folder it measured (its members, homology, calibration and a digest of its
files' names, sizes and times), since the default model's system changes as the project does:
rerun it after each change and compare like with like.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import psutil

from coevofold import prediction
from coevofold.data import tables


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rss(process: psutil.Process) -> int:
    """Resident bytes of ``process`` and its children (the search's worker processes, if any)."""
    total = 0
    for proc in [process, *process.children(recursive=True)]:
        try:
            total += proc.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


class Sampler(threading.Thread):
    """Peak resident memory of the server in each phase ('load', 'after'), sampled every 0.1 s."""

    def __init__(self, process: psutil.Process) -> None:
        super().__init__(daemon=True)
        self.process, self.phase, self.peak, self.last = process, "load", {}, 0
        self.loads: list[float] = []  # the machine's 1-min load average during the load
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.1):
            self.last = rss(self.process)
            self.peak[self.phase] = max(self.peak.get(self.phase, 0), self.last)
            if self.phase == "load":
                self.loads.append(os.getloadavg()[0])


def describe(predictor: prediction.Predictor) -> str:
    """One line naming the model folder measured: what it holds and a digest that changes with it."""
    folder = Path(predictor.folder)
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    digest = hashlib.sha1("\n".join(f"{p.relative_to(folder)}\t{p.stat().st_size}\t{p.stat().st_mtime_ns}"
                                     for p in files).encode()).hexdigest()[:10]
    members = len(predictor.meta.get("ensemble", {}).get("members", [])) or 1
    newest = time.strftime("%Y-%m-%d %H:%M", time.localtime(max(p.stat().st_mtime for p in files)))
    return (f"model folder {folder} ({predictor.meta['model']['name']}, {members} member(s), "
            f"{len(predictor.meta['classes'])} folds, homology {'on' if predictor.search else 'off'}, "
            f"calibration {'yes' if predictor.calibration else 'no'}; {len(files)} files, newest {newest}, "
            f"digest {digest})")


def start_server(args: argparse.Namespace, port: int, log: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "coevofold.app.cli", "serve", "--port", str(port)]
    if args.checkpoint:
        command += ["--checkpoint", args.checkpoint]
    command += args.serve_option
    server = subprocess.Popen(command, stdout=log.open("w"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and server.poll() is None:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=5).status_code == 200:
                return server
        except httpx.HTTPError:
            time.sleep(0.5)
    server.kill()
    sys.exit(f"serve did not start (see {log}):\n{log.read_text()[-2000:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--clients", type=int, default=12, help="concurrent clients")
    parser.add_argument("--requests", type=int, default=3, help="requests per client, one after another")
    parser.add_argument("--per-request", type=int, default=4, help="domains per request")
    parser.add_argument("--after", type=float, default=60, help="seconds to keep sampling memory after the load")
    parser.add_argument("--checkpoint", default=None, help="model folder (default: the quickstart's)")
    parser.add_argument("--serve-option", action="append", default=[],
                        help="extra argument for 'coevofold serve' (repeat: --serve-option=--max-queue --serve-option=4)")
    parser.add_argument("--log", default=str(Path(tempfile.gettempdir()) / "coevofold_serve_load.log"),
                        help="where the server's output goes")
    args = parser.parse_args()

    n = args.clients * args.requests * args.per_request
    table = tables.load("deepsf")
    rows = table[(table["split"] == "test_superfamily") & (table["length"] <= 2000)].sample(n, random_state=0)
    batches = [rows.iloc[i:i + args.per_request] for i in range(0, n, args.per_request)]
    port, log = free_port(), Path(args.log)
    load_before = os.getloadavg()[0]
    server = start_server(args, port, log)
    process = psutil.Process(server.pid)
    startup = rss(process)
    sampler = Sampler(process)
    sampler.start()
    url = f"http://127.0.0.1:{port}/api/predict"

    def client(index: int) -> list[tuple[int, float, int, object]]:
        answers = []
        with httpx.Client(timeout=900) as http:
            for number in range(index, len(batches), args.clients):
                fasta = "".join(f">{r.id}\n{r.sequence}\n" for r in batches[number].itertuples())
                started = time.perf_counter()
                response = http.post(url, json={"fasta": fasta, "top_k": 5})
                answers.append((number, time.perf_counter() - started, response.status_code, response.json()))
        return answers

    started = time.perf_counter()
    with ThreadPoolExecutor(args.clients) as pool:
        answers = [a for part in pool.map(client, range(args.clients)) for a in part]
    seconds = time.perf_counter() - started
    sampler.phase = "after"
    time.sleep(args.after)
    sampler.done.set()
    sampler.join()
    after = sampler.last
    server.terminate()
    server.wait(timeout=60)

    began = time.perf_counter()
    predictor = prediction.load_predictor(args.checkpoint)
    loaded = time.perf_counter() - began
    began = time.perf_counter()
    expected = prediction.predictions_text(predictor.predict(rows[["id", "sequence"]], 5, progress=False), "json")
    predict_seconds = time.perf_counter() - began
    began = time.perf_counter()  # the server's batches, one predict call each: what the API adds
    for batch in batches:
        predictor.predict(batch[["id", "sequence"]], 5, progress=False)
    batch_seconds = time.perf_counter() - began
    expected_rows = pd.DataFrame(json.loads(expected)["predictions"])

    ok = [a for a in answers if a[2] == 200]
    served = pd.concat([pd.DataFrame(a[3]["predictions"]) for a in ok]) if ok else pd.DataFrame(columns=expected_rows.columns)
    mixed = sum(set(pd.DataFrame(a[3]["predictions"])["id"]) != set(batches[a[0]]["id"]) for a in ok)
    merged = expected_rows.merge(served, on=["id", "rank"], suffixes=("", "_served"))
    differ = int((merged["fold"] != merged["fold_served"]).sum()
                 + (np.abs(merged["probability"].fillna(-1) - merged["probability_served"].fillna(-1)) > 2e-3).sum())
    latencies = np.array([a[1] for a in answers])
    log_text = log.read_text()
    mb = 1 / 2**20
    print(f"{len(answers)} requests ({args.clients} clients x {args.requests} x {args.per_request} test_superfamily "
          f"domains): {len(ok)} answered 200, {mixed} with other ids than sent, {differ} of {len(expected_rows)} "
          f"rows differ from predict's; server log: {log_text.count('Traceback')} tracebacks")
    print(f"| | figure |\n|---|---|\n"
          f"| serve throughput | {n / seconds:.2f} sequences/s ({seconds:.1f} s for {n}) |\n"
          f"| latency p50 / p95 | {np.percentile(latencies, 50):.1f} s / {np.percentile(latencies, 95):.1f} s |\n"
          f"| resident memory: start-up / peak during load / {args.after:.0f} s after | {startup * mb:,.0f} MB / "
          f"{sampler.peak.get('load', 0) * mb:,.0f} MB ({sampler.peak.get('load', 0) / startup:.2f}x) / "
          f"{after * mb:,.0f} MB |\n"
          f"| predict in one process, same sequences | {n / predict_seconds:.2f} sequences/s ({predict_seconds:.1f} s; "
          f"+ {loaded:.0f} s to load; serve/predict throughput = {predict_seconds / seconds:.2f}) |\n"
          f"| predict in one process, the same {len(batches)} requests one call each | {n / batch_seconds:.2f} "
          f"sequences/s ({batch_seconds:.1f} s; serve/this = {batch_seconds / seconds:.2f}) |")
    print(describe(predictor))
    loads = sampler.loads or [load_before]
    print(f"load average (1 min) before: {load_before:.2f}, during the load: {min(loads):.2f}-"
          f"{max(loads):.2f}, at the end: {os.getloadavg()[0]:.2f}; {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
