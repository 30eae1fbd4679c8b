"""``coevofold serve``: a local web page and JSON API over :func:`coevofold.prediction.predict`.

DeepSF was served as a web page; a biologist should not need a terminal either. The page takes
pasted or uploaded FASTA and shows, per sequence, the top-k folds with names and probability
bars, the evidence (alignment hit or model), the predicted contact map, and downloads of the same
TSV/JSON ``predict`` writes. ``POST /api/predict`` with ``{"fasta": "...", "top_k": 5}`` returns
exactly what ``predict --format json`` writes for that input.

Design choices:

* The model folder, pLM and homology search load once at start-up (:class:`Predictor`); a
  request pays only for features and the search.
* Predictions run one at a time on one dedicated thread (:class:`Service`): the event loop stays
  free for other pages, two requests never compete for the same 2 cores and model, pyplot (not
  thread-safe) draws the page's contact maps there too, and a waiting request holds no thread.
* At most ``max_queue`` requests wait behind the running one; beyond that the answer is 503
  with ``Retry-After``. A waiting request whose client has gone is dropped without work.
* Memory stays near start-up under load. It had grown from 0.59 to 3.9 GB under 12 clients x 3
  requests of 4 domains (a small model with the default pLM; 3.5 GB 20 s later). What grew was
  per-request tensors: attention passes of up to 2M residue pairs (now ``max_pairs``, 128K),
  all layers' attention concatenated for the maps (now summed per layer, see
  :func:`coevofold.features.extraction._chunk_features`), and glibc keeping freed blocks resident
  (:func:`_tune_malloc`). With all three fixed: peak 1.42x start-up, 0.65 GB after; undoing one
  at a time gives 2.34x, 1.75x and 1.64x (0.94 GB after). A thread per request instead of one
  made no difference to the peak then (1.42x), 50 MB more after. With the default model
  (benchmarks/serve_load.py, README): 734 MB at start-up, peak 981 MB (1.34x), 791 MB after.
* Bodies are counted as they arrive (:class:`_BodyLimit`): refused at the first byte past
  ``max_bytes`` (413) whatever the transfer encoding, or after ``body_timeout`` seconds (408).
  Limits on sequences per request and residues per sequence are checked before any work.
* Every refusal is one line: a 4xx JSON ``{"error": ...}`` in the API (unknown routes and wrong
  methods too), the message in the page. A client that leaves is logged in one line at most
  (INFO); an unexpected exception is a JSON 500 and one logged traceback (:class:`_Unexpected`).
* Bad FASTA gives the line the command line prints (the same checks, see
  :func:`coevofold.data.tables.read_fasta_bytes`), naming the upload or "pasted FASTA".
* No ``/docs``: FastAPI's Swagger page loads its scripts from a CDN, useless offline; the API
  is one route, described here, in the README and in the page's footer.
* It binds to 127.0.0.1 unless told otherwise: it is one user's tool, not a public service.

The model stack (torch) is imported only when the app is built, so ``coevofold --help`` stays quick.
"""

from __future__ import annotations

import asyncio
import base64
import ctypes
import ctypes.util
import json
import logging
import math
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import numpy as np
import pandas as pd
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from coevofold.data import tables
from coevofold.errors import CoevofoldError

if TYPE_CHECKING:
    from coevofold import prediction

TEMPLATES = Path(__file__).with_name("templates")
PASTED = "pasted FASTA"
LOG = logging.getLogger("coevofold.app.serve")


@dataclass(frozen=True)
class ServeConfig:
    """Where the server listens, what it loads, and what one request may ask for."""

    host: str = "127.0.0.1"
    port: int = 8000
    #: model folder (None: the default model made by ``coevofold quickstart``).
    checkpoint: str | None = None
    #: pLM the checkpoint was trained with (None: resolved as for ``predict``).
    model: str | None = None
    use_homology: bool = True
    top_k: int = 5
    max_top_k: int = 20
    max_sequences: int = 20
    max_residues: int = 2000
    max_bytes: int = 1_000_000
    #: where the pLM runs (:func:`coevofold.devices.resolve`) and torch's CPU threads (None: all cores).
    device: str = "auto"
    threads: int | None = None
    #: requests waiting behind the running one before 503. 16: the issue's 12 concurrent
    #: clients all wait their turn, and at the 0.84 s per 4-domain request measured with the
    #: default model on 2 idle cores (README, benchmarks/serve_load.py) the last of a full
    #: queue waits ~14 s rather than minutes.
    max_queue: int = 16
    #: seconds a client may take to send its request body (then 408).
    body_timeout: float = 30.0
    #: attention residue pairs per pLM pass (batch x length^2; ~0.5 KB each): bounds a
    #: request's memory. A chain longer than this allows still runs, alone in its pass.
    max_pairs: int = 1 << 17

    def __post_init__(self) -> None:
        if self.max_queue < 0 or self.max_pairs < 1 or not self.body_timeout > 0:
            raise CoevofoldError("--max-queue must be >= 0, --max-pairs >= 1 and --body-timeout > 0")


class RequestError(CoevofoldError):
    """A request the server refuses before any work, with its HTTP status (and headers)."""

    def __init__(self, message: str, status: int = 400, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.headers = headers or {}


#: Sent with refusals of a body that was not read to its end: the rest is not worth reading.
CLOSE = {"Connection": "close"}


def too_large(size: str, limit: int) -> RequestError:
    return RequestError(f"request too large: {size} bytes, at most {limit:,}", 413, CLOSE)


def parse_request(raw: bytes, name: str, top_k: int, config: ServeConfig) -> pd.DataFrame:
    """The validated table of a request's FASTA, or a :class:`RequestError` saying what is wrong."""
    if len(raw) > config.max_bytes:
        raise too_large(f"{len(raw):,}", config.max_bytes)
    if not 1 <= top_k <= config.max_top_k:
        raise RequestError(f"top_k must be between 1 and {config.max_top_k}, not {top_k}")
    table = tables.read_fasta_bytes(raw, name)
    if len(table) > config.max_sequences:
        raise RequestError(f"{name}: {len(table)} sequences, at most {config.max_sequences} per request", 413)
    long = table[table["length"] > config.max_residues]
    if not long.empty:
        record = long.iloc[0]
        raise RequestError(f"{name}: record '{record['id']}' has {record['length']:,} residues, "
                           f"at most {config.max_residues:,} per sequence", 413)
    return table


#: glibc's mallopt parameter for the size from which blocks are mapped from the system.
M_MMAP_THRESHOLD = -3


def _tune_malloc() -> Callable[[], object]:
    """Keep large tensors out of glibc's heap; returns ``malloc_trim(0)``, to call after each request.

    glibc raises its mmap threshold to the largest block freed (up to 32 MiB), after which a
    long chain's attention (27 MB a layer at 576 residues) is carved from the heap, and freed
    heap stays resident. Fixed at glibc's initial 128 KiB, such blocks are mapped and returned
    to the system when freed; trimming gives back what small blocks freed. A no-op where the C
    library is not glibc (macOS, musl).
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
        trim, mallopt = libc.malloc_trim, libc.mallopt
    except (OSError, TypeError, AttributeError):
        return lambda: None
    mallopt(M_MMAP_THRESHOLD, 128 * 1024)
    return lambda: trim(0)


class Service:
    """The loaded predictor, the one thread that runs it, and the bounded queue in front of it."""

    def __init__(self, predictor: prediction.Predictor, config: ServeConfig) -> None:
        from coevofold.features import extraction

        self.predictor = predictor
        self.config = config
        self.run_config = extraction.RunConfig(max_pairs=config.max_pairs, progress=False)
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="coevofold-model")
        self._seconds = 1.0  # recent seconds per request, for Retry-After
        self._admitted, self._count_lock = 0, threading.Lock()  # the running request + those waiting
        self._trim = _tune_malloc()

    def predict(self, table: pd.DataFrame, top_k: int, contacts: dict | None = None) -> pd.DataFrame:
        """``Predictor.predict`` with the server's settings (call it through :meth:`submit`)."""
        return self.predictor.predict(table, top_k, self.run_config, progress=False, contacts=contacts)

    def submit(self, work: Callable[..., Any], *args: Any) -> Future:
        """Queue ``work(*args)`` for the model thread, or refuse with 503 when the queue is full."""
        with self._count_lock:
            full = self._admitted > self.config.max_queue
            if not full:
                self._admitted += 1
        if full:
            wait = max(1, math.ceil(self._seconds))
            raise RequestError(f"busy: {self.config.max_queue} requests are already waiting for the model; "
                               f"retry in {wait} s", 503, {"Retry-After": str(wait)})
        try:
            job = self._worker.submit(self._timed, work, *args)
        except BaseException:
            self._done(None)
            raise
        job.add_done_callback(self._done)
        return job

    def _done(self, job: Future | None) -> None:
        with self._count_lock:
            self._admitted -= 1

    @property
    def in_progress(self) -> int:
        """Requests admitted and not finished: the running one plus those waiting."""
        return self._admitted

    def _timed(self, work: Callable[..., Any], *args: Any) -> Any:
        started = time.perf_counter()
        try:
            return work(*args)
        finally:
            self._seconds = 0.7 * self._seconds + 0.3 * (time.perf_counter() - started)
            self._trim()

    def close(self) -> None:
        """Drop queued work; a running request finishes."""
        self._worker.shutdown(wait=False, cancel_futures=True)


async def _disconnected(receive: Receive) -> None:
    """Return when the client has gone (call once the body has been read)."""
    while (await receive())["type"] != "http.disconnect":
        pass


async def queued(service: Service, request: Request, work: Callable[..., Any], *args: Any) -> Any:
    """``work(*args)`` on the model thread after the requests ahead of it.

    If the client goes away first, a request still waiting is dropped without work (a running
    one finishes: the model cannot be stopped mid-pass) and :class:`ClientDisconnect` is raised.
    """
    job = service.submit(work, *args)
    answer = asyncio.wrap_future(job)
    gone = asyncio.ensure_future(_disconnected(request.receive))
    try:
        await asyncio.wait({answer, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
        if not answer.done():
            answer.cancel()  # cancels the job too, unless it is running
    if answer.cancelled():
        raise ClientDisconnect()
    return answer.result()


class _BodyLimit:
    """Counts each request body as it arrives and refuses it at the first byte past ``max_bytes``.

    A declared Content-Length over the limit is refused before reading; a chunked body at the
    chunk that crosses it, so a 200 MB body costs at most ``max_bytes`` of memory. A body still
    incomplete after ``timeout`` seconds is refused with 408. The refusal is a
    :class:`RequestError` raised where the route reads the body, so the API answers it in JSON
    and the page in HTML. (Starlette's own ``max_body_size`` answers a declared-too-large body
    in plain text, whatever the route would have said.)
    """

    def __init__(self, app: ASGIApp, max_bytes: int, timeout: float) -> None:
        self.app, self.max_bytes, self.timeout = app, max_bytes, timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        deadline = anyio.current_time() + self.timeout
        received, complete = 0, False

        async def limited() -> Message:
            nonlocal received, complete
            if complete:
                return await receive()
            if declared.isdigit() and int(declared) > self.max_bytes:
                raise too_large(f"{int(declared):,}", self.max_bytes)
            try:
                with anyio.fail_after(max(deadline - anyio.current_time(), 0)):
                    message = await receive()
            except TimeoutError:
                raise RequestError(f"request body not received within {self.timeout:g} s", 408, CLOSE) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise too_large(f"more than {self.max_bytes:,}", self.max_bytes)
                complete = not message.get("more_body", False)
            return message

        await self.app(scope, limited, send)


class _Unexpected:
    """A programming error becomes a one-line JSON 500 and one logged traceback (no re-raise,
    so neither Starlette nor uvicorn logs it a second time)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except Exception as exc:
            LOG.exception("%s %s: unexpected error", scope.get("method"), scope.get("path"))
            if scope["type"] == "http" and not started:
                line = (str(exc).splitlines() or [""])[0]
                await JSONResponse({"error": f"internal error ({type(exc).__name__}: {line}); "
                                             "the server log has the traceback"}, 500)(scope, receive, send)


def _contact_png(scores: np.ndarray, title: str) -> str:
    """A contact map as a data URI (the page is self-contained; nothing is kept on the server)."""
    from coevofold import plots

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "contacts.png"
        plots.contact_map(scores, path, title=title)
        return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


def _download(text: str, mime: str) -> str:
    return f"data:{mime};charset=utf-8;base64," + base64.b64encode(text.encode()).decode()


def _cards(frame: pd.DataFrame, table: pd.DataFrame, contacts: dict[str, str]) -> list[dict]:
    """Per sequence: its rows (with display strings) and its contact map, in input order."""
    cards = []
    for seq_id, rows in frame.groupby("id", sort=False):
        length = int(table.loc[table["id"] == seq_id, "length"].iloc[0])
        shown = []
        for row in rows.itertuples(index=False):
            shown.append({
                "rank": row.rank, "fold": row.fold, "name": row.name,
                "probability": "–" if pd.isna(row.probability) else f"{row.probability:.2f}",
                "percent": 0.0 if pd.isna(row.probability) else f"{100 * row.probability:.1f}",
                "confidence": row.confidence,
                "source": row.source, "hit": row.hit,
                "identity": "" if pd.isna(row.identity) else f"{100 * row.identity:.0f} %",
                "evalue": "" if pd.isna(row.evalue) else f"{row.evalue:.1e}",
                "superfamily": row.hit_superfamily, "family": row.hit_family,
                "template": row.template, "template_z": "" if pd.isna(row.template_z) else f"{row.template_z:.1f}",
                "query_region": row.query_region, "template_region": row.template_region,
            })
        top = shown[0]
        if top["source"] == "alignment":
            evidence = (f"homology transfer: best hit {top['hit']} (E = {top['evalue']}, identity {top['identity']}; "
                        f"superfamily {top['superfamily']}, family {top['family']})")
        elif top["source"] == "combined":
            evidence = (f"combined: fold classifier and template search (best template {top['template'] or 'none'}, "
                        f"z = {top['template_z'] or '–'}, residues {top['query_region'] or '–'} aligned to "
                        f"{top['template_region'] or '–'}); best Smith-Waterman hit in this fold: "
                        f"{top['hit']}, E = {top['evalue']}, below the transfer threshold")
        elif top["hit"]:
            evidence = (f"fold classifier: no training domain passes the E-value threshold "
                        f"(best in this fold: {top['hit']}, E = {top['evalue']})")
        else:
            evidence = "fold classifier (model only)"
        cards.append({"id": seq_id, "length": length, "rows": shown, "evidence": evidence,
                      "contact_map": contacts.get(seq_id, "")})
    return cards


def _page_work(service: Service, table: pd.DataFrame, top_k: int) -> tuple[pd.DataFrame, dict[str, str]]:
    """The page's predictions and contact-map images, both made on the model thread (pyplot is
    not thread-safe, and a figure per waiting request would be memory the queue does not bound)."""
    maps: dict[str, np.ndarray] = {}
    frame = service.predict(table, top_k, maps)
    return frame, {i: _contact_png(m, f"{i}: predicted contacts") for i, m in maps.items()}


def _json_payload(raw: bytes, config: ServeConfig) -> tuple[bytes, int]:
    """The FASTA bytes and top_k of an API body, or a :class:`RequestError` saying what is wrong."""
    try:
        payload = json.loads(raw)
    except (ValueError, RecursionError) as exc:  # RecursionError: nested thousands deep
        reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise RequestError(f"request body is not JSON ({reason})") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("fasta"), str):
        raise RequestError('expected a JSON object {"fasta": "<FASTA text>", "top_k": 5}')
    top_k = payload.get("top_k", config.top_k)
    if not isinstance(top_k, int) or isinstance(top_k, bool):
        raise RequestError(f"top_k must be a whole number, not {json.dumps(top_k)[:40]}")
    try:
        return payload["fasta"].encode(), top_k
    except UnicodeEncodeError as exc:  # a lone surrogate such as "\ud800"
        raise RequestError(f"fasta is not valid Unicode ({exc.reason} at character {exc.start})") from None


def create_app(service: Service) -> FastAPI:
    """The FastAPI application over a loaded :class:`Service` (tests build it directly)."""
    from coevofold import prediction

    config = service.config
    app = FastAPI(title="coevofold", description=__doc__.split("\n\n")[0],
                  docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(_BodyLimit, max_bytes=config.max_bytes, timeout=config.body_timeout)
    app.add_middleware(_Unexpected)  # outermost of ours: it also sees errors in _BodyLimit
    templates = Jinja2Templates(directory=str(TEMPLATES))
    meta = service.predictor.meta

    def page(request: Request, status: int = 200, headers: dict | None = None, **context) -> HTMLResponse:
        context = {"config": config, "note": service.predictor.note, "model": meta["model"]["name"],
                   "plm": service.predictor.plm.label,
                   "n_classes": len(meta["classes"]), "fasta": "", "top_k": config.top_k, "error": "",
                   "cards": [], **context}
        return templates.TemplateResponse(request, "index.html", context, status_code=status, headers=headers)

    @app.exception_handler(CoevofoldError)
    async def refused(request: Request, exc: CoevofoldError) -> JSONResponse:
        status, headers = (exc.status, exc.headers) if isinstance(exc, RequestError) else (400, None)
        return JSONResponse({"error": str(exc)}, status, headers)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        """Unknown routes (404), wrong methods (405), bad multipart (400): JSON like every refusal."""
        return JSONResponse({"error": f"{exc.detail}: {request.method} {request.url.path}"}, exc.status_code,
                            exc.headers)

    @app.exception_handler(ClientDisconnect)
    async def gone(request: Request, exc: ClientDisconnect) -> Response:
        LOG.info("%s %s: the client went away; request dropped", request.method, request.url.path)
        return Response(status_code=400)  # nobody reads it

    @app.get("/", response_class=HTMLResponse)
    async def index(request: Request) -> HTMLResponse:
        return page(request)

    @app.post("/", response_class=HTMLResponse)
    async def submit(request: Request) -> HTMLResponse:
        fasta, top_k = "", config.top_k
        try:
            await request.body()  # read (and limited) once; the form parses what was read
            async with request.form(max_files=1, max_fields=8, max_part_size=config.max_bytes) as form:
                fasta = str(form.get("fasta") or "")
                upload = form.get("file")
                try:
                    top_k = int(form.get("top_k") or config.top_k)
                except ValueError:
                    raise RequestError(f"top_k must be a whole number, not '{form.get('top_k')}'") from None
                if upload is not None and getattr(upload, "filename", ""):
                    raw, name = await upload.read(), Path(upload.filename).name
                else:
                    raw, name = fasta.encode(errors="replace"), PASTED
            table = parse_request(raw, name, top_k, config)
            frame, images = await queued(service, request, _page_work, service, table, top_k)
        except RequestError as exc:
            return page(request, exc.status, exc.headers, fasta=fasta, top_k=top_k, error=str(exc))
        except CoevofoldError as exc:
            return page(request, 400, fasta=fasta, top_k=top_k, error=str(exc))
        except HTTPException as exc:  # the form parser's refusals (too many fields, bad multipart)
            return page(request, exc.status_code, fasta=fasta, top_k=top_k, error=str(exc.detail))
        return page(request, fasta=fasta, top_k=top_k, cards=_cards(frame, table, images),
                    tsv=_download(prediction.predictions_text(frame, "tsv"), "text/tab-separated-values"),
                    json_file=_download(prediction.predictions_text(frame, "json"), "application/json"),
                    note=frame.attrs.get("note", ""))

    @app.post("/api/predict")
    async def api_predict(request: Request) -> JSONResponse:
        raw, top_k = _json_payload(await request.body(), config)
        table = parse_request(raw, PASTED, top_k, config)
        frame = await queued(service, request, service.predict, table, top_k)
        return JSONResponse(json.loads(prediction.predictions_text(frame, "json")))

    @app.get("/api/health")
    async def health() -> dict:
        return {"status": "ok", "model": str(service.predictor.folder), "classes": len(meta["classes"]),
                "homology": service.predictor.search is not None, "in_progress": service.in_progress,
                "max_queue": config.max_queue, "plm": prediction.plm_record(service.predictor.plm)}

    return app


def load_service(config: ServeConfig) -> Service:
    """Load the model folder, pLM and homology search once, as ``serve`` does at start-up."""
    from coevofold import devices, prediction

    devices.set_threads(config.threads)
    return Service(prediction.load_predictor(config.checkpoint, config.model, config.use_homology,
                                             device=config.device, templates_in_memory=True), config)


def serve(config: ServeConfig) -> None:
    """Load the model, then serve until interrupted (the log handler goes with the server)."""
    import uvicorn

    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("coevofold serve: %(levelname)s: %(message)s"))
    LOG.addHandler(handler)
    LOG.setLevel(logging.WARNING)  # quiet: refusals are answered, not logged; errors are logged once
    try:
        service = load_service(config)
        if service.predictor.note:
            print(f"coevofold: note: {service.predictor.note}")
        print(f"coevofold serve: http://{config.host}:{config.port}/ (model {service.predictor.folder}; "
              f"pLM {service.predictor.plm.label}); Ctrl-C stops", flush=True)
        try:
            uvicorn.run(create_app(service), host=config.host, port=config.port, log_level="warning")
        finally:
            service.close()
    finally:
        LOG.removeHandler(handler)
