"""``coevofold serve``: a local web page and JSON API over :func:`coevofold.prediction.predict`.

DeepSF was served as a web page; a biologist should not need a terminal either. The page takes
pasted or uploaded FASTA and shows, per sequence, the top-k folds with names and probability
bars, the evidence (alignment hit or model), the predicted contact map, and downloads of the same
TSV/JSON ``predict`` writes. ``POST /api/predict`` with ``{"fasta": "...", "top_k": 5}`` returns
exactly what ``predict --format json`` writes for that input.

Design choices:

* The model folder, pLM and homology search load once at start-up (:class:`Predictor`); a
  request pays only for features and the search.
* Predictions run in a worker thread, one at a time (a lock): the event loop stays free for
  other pages, and two requests never compete for the same 2 cores and model.
* Limits on request bytes, sequences per request and residues per sequence are checked before
  any work, refused with one line in the page and a 4xx JSON ``{"error": ...}`` in the API.
* Bad FASTA gives the line the command line prints (the same checks, see
  :func:`coevofold.data.read_fasta_bytes`), naming the upload or "pasted FASTA".
* It binds to 127.0.0.1 unless told otherwise: it is one user's tool, not a public service.

The model stack (torch) is imported only when the app is built, so ``coevofold --help`` stays quick.
"""

from __future__ import annotations

import base64
import json
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from anyio import to_thread
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.templating import Jinja2Templates

from coevofold import data
from coevofold.errors import CoevofoldError

if TYPE_CHECKING:
    from coevofold import prediction

TEMPLATES = Path(__file__).with_name("templates")
PASTED = "pasted FASTA"


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


class RequestError(CoevofoldError):
    """A request the server refuses before any work, with its HTTP status."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def parse_request(raw: bytes, name: str, top_k: int, config: ServeConfig) -> pd.DataFrame:
    """The validated table of a request's FASTA, or a :class:`RequestError` saying what is wrong."""
    if len(raw) > config.max_bytes:
        raise RequestError(f"request too large: {len(raw):,} bytes, at most {config.max_bytes:,}", 413)
    if not 1 <= top_k <= config.max_top_k:
        raise RequestError(f"top_k must be between 1 and {config.max_top_k}, not {top_k}")
    table = data.read_fasta_bytes(raw, name)
    if len(table) > config.max_sequences:
        raise RequestError(f"{name}: {len(table)} sequences, at most {config.max_sequences} per request", 413)
    long = table[table["length"] > config.max_residues]
    if not long.empty:
        record = long.iloc[0]
        raise RequestError(f"{name}: record '{record['id']}' has {record['length']:,} residues, "
                           f"at most {config.max_residues:,} per sequence", 413)
    return table


class Service:
    """The loaded predictor and the one-at-a-time lock around it."""

    def __init__(self, predictor: prediction.Predictor, config: ServeConfig) -> None:
        self.predictor = predictor
        self.config = config
        self._lock = threading.Lock()

    def run(self, table: pd.DataFrame, top_k: int, contacts: dict | None = None) -> pd.DataFrame:
        with self._lock:
            return self.predictor.predict(table, top_k, progress=False, contacts=contacts)


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
            })
        top = shown[0]
        if top["source"] == "alignment":
            evidence = (f"homology transfer: best hit {top['hit']} (E = {top['evalue']}, identity {top['identity']}; "
                        f"superfamily {top['superfamily']}, family {top['family']})")
        elif top["hit"]:
            evidence = (f"fold classifier: no training domain passes the E-value threshold "
                        f"(best in this fold: {top['hit']}, E = {top['evalue']})")
        else:
            evidence = "fold classifier (model only)"
        cards.append({"id": seq_id, "length": length, "rows": shown, "evidence": evidence,
                      "contact_map": contacts.get(seq_id, "")})
    return cards


def create_app(service: Service) -> FastAPI:
    """The FastAPI application over a loaded :class:`Service` (tests build it directly)."""
    from coevofold import prediction

    config = service.config
    app = FastAPI(title="coevofold", description=__doc__.split("\n\n")[0])
    templates = Jinja2Templates(directory=str(TEMPLATES))
    meta = service.predictor.meta

    def page(request: Request, status: int = 200, **context) -> HTMLResponse:
        context = {"config": config, "note": service.predictor.note, "model": meta["model"]["name"],
                   "plm": service.predictor.plm.label,
                   "n_classes": len(meta["classes"]), "fasta": "", "top_k": config.top_k, "error": "",
                   "cards": [], **context}
        return templates.TemplateResponse(request, "index.html", context, status_code=status)

    async def body(request: Request) -> bytes:
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > config.max_bytes:
            raise RequestError(f"request too large: {int(declared):,} bytes, at most {config.max_bytes:,}", 413)
        raw = await request.body()
        if len(raw) > config.max_bytes:
            raise RequestError(f"request too large: {len(raw):,} bytes, at most {config.max_bytes:,}", 413)
        return raw

    @app.get("/", response_class=HTMLResponse)
    async def index(request: Request) -> HTMLResponse:
        return page(request)

    @app.post("/", response_class=HTMLResponse)
    async def submit(request: Request) -> HTMLResponse:
        fasta, top_k = "", config.top_k
        try:
            await body(request)
            form = await request.form()
            fasta = str(form.get("fasta") or "")
            upload = form.get("file")
            try:
                top_k = int(form.get("top_k") or config.top_k)
            except ValueError:
                raise RequestError(f"top_k must be a whole number, not '{form.get('top_k')}'") from None
            if upload is not None and getattr(upload, "filename", ""):
                raw, name = await upload.read(), Path(upload.filename).name
            else:
                raw, name = fasta.encode(), PASTED
            table = parse_request(raw, name, top_k, config)
            maps: dict[str, np.ndarray] = {}
            frame = await to_thread.run_sync(service.run, table, top_k, maps)
            images = await to_thread.run_sync(
                lambda: {i: _contact_png(m, f"{i}: predicted contacts") for i, m in maps.items()})
        except RequestError as exc:
            return page(request, exc.status, fasta=fasta, top_k=top_k, error=str(exc))
        except CoevofoldError as exc:
            return page(request, 400, fasta=fasta, top_k=top_k, error=str(exc))
        return page(request, fasta=fasta, top_k=top_k, cards=_cards(frame, table, images),
                    tsv=_download(prediction.predictions_text(frame, "tsv"), "text/tab-separated-values"),
                    json_file=_download(prediction.predictions_text(frame, "json"), "application/json"),
                    note=frame.attrs.get("note", ""))

    @app.post("/api/predict")
    async def api_predict(request: Request) -> JSONResponse:
        try:
            raw = await body(request)
            try:
                payload = json.loads(raw)
            except (ValueError, UnicodeDecodeError) as exc:
                raise RequestError(f"request body is not JSON ({exc})") from None
            if not isinstance(payload, dict) or not isinstance(payload.get("fasta"), str):
                raise RequestError('expected a JSON object {"fasta": "<FASTA text>", "top_k": 5}')
            top_k = payload.get("top_k", config.top_k)
            if not isinstance(top_k, int) or isinstance(top_k, bool):
                raise RequestError(f"top_k must be a whole number, not {top_k!r}")
            table = parse_request(payload["fasta"].encode(), PASTED, top_k, config)
            frame = await to_thread.run_sync(service.run, table, top_k)
        except RequestError as exc:
            return JSONResponse({"error": str(exc)}, status_code=exc.status)
        except CoevofoldError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse(json.loads(prediction.predictions_text(frame, "json")))

    @app.get("/api/health")
    async def health() -> dict:
        return {"status": "ok", "model": str(service.predictor.folder), "classes": len(meta["classes"]),
                "homology": service.predictor.search is not None,
                "plm": prediction.plm_record(service.predictor.plm)}

    return app


def load_service(config: ServeConfig) -> Service:
    """Load the model folder, pLM and homology search once, as ``serve`` does at start-up."""
    from coevofold import devices, prediction

    devices.set_threads(config.threads)
    return Service(prediction.load_predictor(config.checkpoint, config.model, config.use_homology,
                                             device=config.device), config)


def serve(config: ServeConfig) -> None:
    """Load the model, then serve until interrupted."""
    import uvicorn

    service = load_service(config)
    if service.predictor.note:
        print(f"coevofold: note: {service.predictor.note}")
    print(f"coevofold serve: http://{config.host}:{config.port}/ (model {service.predictor.folder}; "
          f"pLM {service.predictor.plm.label}); Ctrl-C stops")
    uvicorn.run(create_app(service), host=config.host, port=config.port, log_level="warning")
