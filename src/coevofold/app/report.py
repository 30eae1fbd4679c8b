"""A self-contained HTML report of a trained and evaluated model folder.

The report is one ``index.html`` with its PNGs beside it, inline CSS, no JavaScript and no
network access, so it can be zipped, mailed or opened from a laptop without a server. It reads
only files the pipeline writes (``model.json``, ``metrics.csv``, ``results.json``,
``predictions.tsv``) and, for the example proteins, the feature store.

:func:`screenshot` renders the report with headless Chromium: the only way to know that a
page a person will open actually looks right.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pandas as pd

from coevofold import __version__, plots
from coevofold.data import names as fold_naming
from coevofold.errors import CoevofoldError
from coevofold.features import store
from coevofold.files import write_text
from coevofold.metrics import LEVEL_NAMES, RELIABILITY_PNG, calibration_markdown, results_markdown
from coevofold.training.checkpoint import ENSEMBLE_MEMBERS, METRICS, MODEL_META, PREDICTIONS, RESULTS_JSON, is_ensemble

#: Files of a model folder the report reads, and the step that writes each.
RUN_FILES = {
    MODEL_META: "training",
    METRICS: "training",
    RESULTS_JSON: "evaluation",
    PREDICTIONS: "evaluation",
}
#: Residues per line of a printed sequence.
SEQUENCE_LINE = 60

_CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: #222; margin: 0;
       background: #f6f7f9; }
main { max-width: 1120px; margin: 0 auto; padding: 24px 32px 48px; background: #fff; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 20px; border-bottom: 2px solid #3b6ea5; padding-bottom: 4px; margin-top: 36px; }
h3 { font-size: 16px; margin: 0 0 6px; }
p.lead { color: #555; margin-top: 0; }
figure { margin: 12px 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #e3e3e3; }
figcaption { font-size: 13px; color: #555; margin-top: 4px; }
table { border-collapse: collapse; font-size: 13px; margin: 8px 0; }
th, td { border: 1px solid #d6d9de; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #eef2f7; }
tr.published td { color: #666; background: #fafafa; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.protein { display: flex; gap: 20px; align-items: flex-start; border: 1px solid #e3e3e3; padding: 12px;
           margin: 14px 0; border-radius: 4px; }
.protein figure { flex: 0 0 440px; margin: 0; }
.protein .details { flex: 1; min-width: 0; }
.ok { color: #1b7a3d; font-weight: 600; }
.wrong { color: #b3261e; font-weight: 600; }
pre.sequence { font-family: "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: 12px; background: #f4f5f7;
               padding: 8px; white-space: pre; overflow-x: auto; }
footer { margin-top: 40px; font-size: 12px; color: #777; }
"""


def _read_run(run_dir: Path) -> tuple[dict, pd.DataFrame | None, dict, str, pd.DataFrame]:
    """model.json, metrics.csv, results.json (and its table as Markdown) and predictions.tsv of a model folder."""
    ensemble = is_ensemble(run_dir)  # members keep their own learning curves
    for name, step in RUN_FILES.items():
        if not (run_dir / name).is_file() and not (ensemble and name == METRICS):
            raise CoevofoldError(f"{run_dir}: no {name}; a report needs a model folder after {step}")
    try:
        meta = json.loads((run_dir / MODEL_META).read_text())
        results = json.loads((run_dir / RESULTS_JSON).read_text())
        metrics = pd.read_csv(run_dir / METRICS) if (run_dir / METRICS).is_file() else None
        predictions = pd.read_csv(run_dir / PREDICTIONS, sep="\t", dtype={"id": str, "fold": str, "predicted": str})
    except (ValueError, pd.errors.ParserError) as exc:
        raise CoevofoldError(f"{run_dir}: unreadable run file ({type(exc).__name__}: {str(exc).splitlines()[0][:120]})") from None
    missing = [c for c in ("id", "split", "fold", "predicted", "probability", "correct") if c not in predictions]
    if missing:
        raise CoevofoldError(f"{run_dir / PREDICTIONS}: missing column(s) {', '.join(missing)}")
    predictions["correct"] = predictions["correct"].astype(str).str.lower() == "true"
    # the table evaluation writes to results.md, rebuilt from results.json
    markdown = results_markdown({results.get("model", ""): results.get("levels") or {}})
    return meta, metrics, results, markdown, predictions


def example_proteins(predictions: pd.DataFrame, available: set[str], n: int = 3) -> list[str]:
    """Test proteins worth looking at: the most confident correct, the most confident wrong, a typical one.

    Only proteins the store holds are eligible; fewer than ``n`` come back when it holds fewer.
    """
    pool = predictions[predictions["id"].isin(available)].sort_values(["probability", "id"], ascending=[False, True])
    chosen: list[str] = []
    for subset in (pool[pool["correct"]], pool[~pool["correct"]]):
        if not subset.empty:
            chosen.append(subset["id"].iloc[0])
    rest = pool[~pool["id"].isin(chosen)]
    while len(chosen) < n and not rest.empty:
        typical = (rest["probability"] - rest["probability"].median()).abs().idxmin()
        chosen.append(rest.at[typical, "id"])
        rest = rest.drop(index=typical)
    return chosen


def _markdown_table(markdown: str) -> str:
    """A results_markdown pipe table as HTML (published rows greyed), its trailing note as a paragraph."""
    lines = markdown.strip().splitlines()
    rows = [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in lines if line.startswith("|")]
    note = " ".join(line for line in lines if line.strip() and not line.startswith("|"))
    if len(rows) < 2:
        return f"<pre>{html.escape(markdown)}</pre>"
    header, body = rows[0], rows[2:]
    out = ["<table>", "<tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in header) + "</tr>"]
    for row in body:
        css = ' class="published"' if row[0].endswith("(published)") else ""
        cells = [f"<td>{html.escape(row[0])}</td>", *(f'<td class="num">{html.escape(c)}</td>' for c in row[1:])]
        out.append(f"<tr{css}>" + "".join(cells) + "</tr>")
    out.append("</table>")
    return "\n".join(out) + (f"\n<p class=\"lead\">{html.escape(note)}</p>" if note else "")


def _figure(src: str, caption: str) -> str:
    return (f'<figure><img src="{html.escape(src)}" alt="{html.escape(caption)}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def _wrapped(sequence: str) -> str:
    """Sequence in numbered lines of :data:`SEQUENCE_LINE` residues, as in a FASTA viewer."""
    width = len(str(len(sequence)))
    return "\n".join(f"{start + 1:>{width}} {sequence[start:start + SEQUENCE_LINE]}"
                     for start in range(0, len(sequence), SEQUENCE_LINE))


def _fold_label(fold: object, names: dict[str, str]) -> str:
    name = names.get(str(fold), "")
    return f"{fold} ({name})" if name else str(fold)


def _protein_sections(store_path: Path, ids: list[str], predictions: pd.DataFrame, names: dict[str, str], out: Path) -> list[str]:
    """One card per protein: the stored contact map, true vs predicted fold, the sequence."""
    rows = store.read_rows(store_path, ids)
    by_id = predictions.drop_duplicates("id").set_index("id")
    cards = []
    for number, (record_id, sequence, triangle) in enumerate(zip(rows.ids, rows.sequences, rows.contacts), start=1):
        if triangle.size:
            image = f"contact_{number}_{re.sub(r'[^A-Za-z0-9_.-]', '_', record_id)}.png"
            plots.contact_map(store.triangle_to_map(triangle, len(sequence)), out / image,
                              title=f"{record_id}: contact map ({len(sequence)} residues)")
            figure = _figure(image, f"Contact map of {record_id}")
        else:
            figure = "<p>no contact map: the store was extracted without maps (<code>--maps layers</code> adds them)</p>"
        if record_id in by_id.index:
            hit = by_id.loc[record_id]
            verdict = '<span class="ok">correct</span>' if hit["correct"] else '<span class="wrong">wrong</span>'
            facts = (f"<tr><th>split</th><td>{html.escape(str(hit['split']))}</td></tr>"
                     f"<tr><th>true fold</th><td>{html.escape(_fold_label(hit['fold'], names))}</td></tr>"
                     f"<tr><th>predicted</th><td>{html.escape(_fold_label(hit['predicted'], names))} "
                     f"(p = {hit['probability']:.3f}) {verdict}</td></tr>")
        else:
            facts = "<tr><th>prediction</th><td>not a test protein of this run</td></tr>"
        cards.append(
            f'<div class="protein">{figure}'
            f'<div class="details"><h3>{html.escape(record_id)}</h3><table>'
            f"<tr><th>length</th><td>{len(sequence)}</td></tr>{facts}</table>"
            f'<pre class="sequence">{html.escape(_wrapped(sequence))}</pre></div></div>'
        )
    return cards


def _summary(run_dir: Path, meta: dict) -> str:
    settings = meta.get("feature_settings", {})
    facts = {
        "model folder": str(run_dir.resolve()),
        "architecture": meta.get("model", {}).get("name", "?"),
        "folds (classes)": len(meta.get("classes", [])),
        "training proteins": sum(meta.get("train_counts", [])),
        "epochs": meta.get("epochs", "?"),
        "best validation accuracy": (f"{100 * meta['best_val_acc']:.1f} %" if meta.get("best_val_acc") is not None else "–"),
        "pLM weights (sha256)": str(settings.get("weights_sha256", "?"))[:16] + "…",
        "features": ", ".join(f"{k}={settings[k]}" for k in ("maps", "grid", "embedding_bins", "window", "stride") if k in settings),
    }
    return "<table>" + "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in facts.items()) + "</table>"


def write_report(
    run_dir: str | os.PathLike,
    store_path: str | os.PathLike | None = None,
    proteins: list[str] | None = None,
    out: str | os.PathLike | None = None,
) -> Path:
    """Write ``index.html`` and its figures into ``out`` (default ``run_dir/report``); returns the HTML path.

    ``store_path`` is the feature store holding the test proteins; with it the report shows
    their contact maps and sequences (``proteins``, default :func:`example_proteins`).
    """
    run_dir = Path(run_dir)
    out = Path(out) if out is not None else run_dir / "report"
    if proteins and store_path is None:
        raise CoevofoldError("showing proteins needs the feature store that holds them (--store)")
    meta, metrics, results, markdown, predictions = _read_run(run_dir)
    names = fold_naming.model_fold_names(meta)
    levels = results.get("levels", {})
    if not levels:
        raise CoevofoldError(f"{run_dir / RESULTS_JSON}: no test levels")

    plots.accuracy_by_level(levels, out / "accuracy.png", labels=LEVEL_NAMES)
    if metrics is not None:
        plots.learning_curves(metrics, out / "learning_curves.png")
        curves = _figure("learning_curves.png", "Training and validation loss, validation top-1 accuracy per epoch (metrics.csv).")
    else:
        weights = ", ".join(f"{html.escape(k)} {v:.1f}" for k, v in meta.get("ensemble", {}).get("weights", {}).items())
        curves = (f"<p>An ensemble (weights fitted on valid: {weights}); each trained member's learning curves "
                  f"are in <code>{ENSEMBLE_MEMBERS}/NAME/learning_curves.png</code>.</p>")
    plots.confusion_matrix(predictions["fold"], predictions["predicted"], out / "confusion.png")
    plots.accuracy_vs_train_size(predictions, dict(zip(meta["classes"], meta["train_counts"])),
                                 out / "accuracy_vs_train_size.png")
    if store_path is None:
        cards = ["<p>Run <code>coevofold report RUN_DIR --store STORE</code> with the feature store of the "
                 "test proteins to see their contact maps here.</p>"]
    else:
        ids = proteins or example_proteins(predictions, set(store.read_ids(store_path)))
        cards = _protein_sections(Path(store_path), ids, predictions, names, out) or [
            f"<p>{html.escape(str(store_path))} holds none of the test proteins.</p>"]

    calibrated = []
    if "calibration" in results and (run_dir / RELIABILITY_PNG).is_file():
        out.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(run_dir / RELIABILITY_PNG, out / RELIABILITY_PNG)
        calibrated = ["<h2>Calibration</h2>", _markdown_table(calibration_markdown(results["calibration"])),
                      _figure(RELIABILITY_PNG, "Fraction right against the stated top-1 probability, 10 bins per "
                              "test level and pooled; the dashed diagonal is perfect calibration, marker area the "
                              "bin's share of proteins; before = raw probabilities, after = calibrated.")]
    n_test = ", ".join(f"{LEVEL_NAMES.get(k, k)} {v['n_proteins']}" for k, v in levels.items())
    title = f"coevofold report: {results.get('model', meta.get('model', {}).get('name', ''))}"
    body = [
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="lead">Fold classification on held-out proteins at three levels of homology ({html.escape(n_test)} test proteins).</p>',
        _summary(run_dir, meta),
        "<h2>Test accuracy</h2>",
        _markdown_table(markdown),
        _figure("accuracy.png", "Top-1 and top-5 accuracy per test level; error bars: bootstrap 95 % intervals over proteins."),
        *calibrated,
        "<h2>Learning curves</h2>",
        curves,
        "<h2>Confusion matrix</h2>",
        _figure("confusion.png", "Rows: the most frequent true folds among all test proteins, normalised to 100 %; "
                "predictions outside the shown folds are pooled as 'other'."),
        "<h2>Accuracy vs training-set size</h2>",
        _figure("accuracy_vs_train_size.png", "Per-fold top-1 accuracy against the number of training proteins of the fold."),
        "<h2>Example proteins</h2>",
        *cards,
        f"<footer>coevofold {html.escape(__version__)} · {html.escape(str(run_dir))}</footer>",
    ]
    page = ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{html.escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n"
            "<body><main>\n" + "\n".join(body) + "\n</main></body>\n</html>\n")
    index = out / "index.html"
    write_text(index, page)
    return index


def find_chromium() -> Path | None:
    """Debian's ``chromium`` (``apt-get install chromium``), or another Chromium/Chrome on PATH."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return Path(found)
    return None


def screenshot(index: str | os.PathLike, png: str | os.PathLike, size: tuple[int, int] = (1280, 2400),
               chromium: str | os.PathLike | None = None, timeout: float = 120) -> Path:
    """Render ``index`` with headless Chromium into ``png``, offline and with a throw-away profile.

    The flags switch off everything that would reach the network or touch the user's profile.
    """
    browser = Path(chromium) if chromium else find_chromium()
    if browser is None or not browser.is_file():
        raise CoevofoldError("no Chromium found: install it (Debian: apt-get install chromium) or pass its path")
    png = Path(png).resolve()
    png.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="coevofold-chromium-") as profile:
        command = [str(browser), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                   "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
                   f"--user-data-dir={profile}", f"--screenshot={png}", f"--window-size={size[0]},{size[1]}",
                   Path(index).resolve().as_uri()]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise CoevofoldError(f"{browser}: no screenshot after {timeout:.0f} s") from None
    if done.returncode != 0 or not png.is_file():
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise CoevofoldError(f"{browser}: screenshot failed (exit {done.returncode}: {last[:160]})")
    return png
