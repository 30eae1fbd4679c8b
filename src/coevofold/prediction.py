"""Fold predictions for new sequences with a trained model folder.

Features are computed in memory (nothing is cached: a user's FASTA is usually small and seen
once) with exactly the settings the model was trained on, read from its ``model.json``. A pLM
whose weights or window differ would produce features the classifier never saw, and its
predictions would look plausible while meaning nothing, so such a pair is refused outright.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from coevofold import metrics
from coevofold import devices
from coevofold.data import tables
from coevofold.data import names as fold_naming
from coevofold.errors import CoevofoldError
from coevofold.features import extraction, pretrained, store
from coevofold.models import baselines
from coevofold.files import cache_dir, write_text
from coevofold.system import calibration as calibrating
from coevofold.system import combiner as combining
from coevofold.system import homology, preparation, templates
from coevofold.training import checkpoint as model_files

#: Columns of :func:`predict`'s table and of both output formats, in order. ``probability`` is
#: calibrated where the model folder has a calibration (:mod:`coevofold.system.calibration`) and
#: ``confidence`` its band (high / medium / low; empty without a calibration); the rest is the
#: evidence: ``source`` (alignment: homology transfer; combined: the combiner over the model and the
#: searches; model: the classifier alone), the training domain that best supports the row's fold
#: (``hit``, its ``identity`` and pairwise ``evalue``), and, where that hit itself passes the
#: E-value threshold (a transfer), its superfamily and family.
#: ``template`` is the training domain of the row's fold that the template search aligned best
#: (residue embeddings, :mod:`coevofold.system.templates`), ``template_z`` its z-score against the
#: query's own decoys, ``query_region`` / ``template_region`` the aligned residues (1-based).
PREDICTION_COLUMNS = ["id", "rank", "fold", "probability", "confidence", "name",
                      "source", "hit", "identity", "evalue", "hit_superfamily", "hit_family",
                      "template", "template_z", "query_region", "template_region"]
FORMATS = ("tsv", "json")
#: What ``predict`` says when a model folder cannot do homology transfer.
MODEL_ONLY_NOTE = ("{folder} has no homology files (homology.fit_homology prepares them); "
                   "predictions are the model's alone")
#: What ``predict`` says when a model folder has homology files but no template search / combiner.
NO_TEMPLATES_NOTE = ("{folder} is not prepared for the combined system (templates, combiner; `coevofold train "
                     "--calibrate` or quickstart prepares it); predictions are the model's behind homology transfer")


def default_model_dir() -> Path:
    """Where ``coevofold quickstart`` leaves the model that ``predict`` uses by default."""
    return cache_dir() / "models" / "default"


def model_folder(checkpoint: str | os.PathLike | None) -> Path:
    """The model folder to use, refused with what to run when it holds no trained model."""
    folder = Path(checkpoint) if checkpoint is not None else default_model_dir()
    if not model_files.has_model(folder):
        raise CoevofoldError(
            f"{folder}: no trained model ({model_files.MODEL_WEIGHTS} and {model_files.MODEL_META}); "
            "run `coevofold quickstart` first (see README) or pass --checkpoint MODEL_DIR"
        )
    return folder


def _load_checkpoint(checkpoint: str | os.PathLike | None):
    folder = model_folder(checkpoint)
    classifier, meta = model_files.load_model(folder)
    return folder, classifier, meta


def feature_config(folder: Path, meta: dict) -> extraction.FeatureConfig:
    """The feature settings a model was trained on, from its ``model.json``."""
    try:
        stored = meta["feature_settings"]
        return extraction.FeatureConfig(maps=stored["maps"], grid=stored["grid"], embedding_layer=stored["embedding_layer"],
                                      embedding_bins=stored["embedding_bins"], stride=stored["stride"],
                                      residue_layer=stored["residue_layer"],
                                      precision=stored.get("precision", extraction.UNRECORDED_PRECISION))
    except (KeyError, TypeError) as exc:
        raise CoevofoldError(f"{folder / model_files.MODEL_META}: no usable feature_settings ({exc!r} missing)") from None


def check_compatible(folder: Path, meta: dict, plm: pretrained.ProteinLM, config: extraction.FeatureConfig) -> None:
    """Refuse a pLM whose features would differ from those the checkpoint was trained on."""
    trained, now = meta["feature_settings"], extraction.settings_of(plm, config)
    if trained == now:
        return
    old, new = str(trained.get("weights_sha256")), now["weights_sha256"]
    if old != new:
        raise CoevofoldError(
            f"checkpoint {folder} was trained on features of weights {old[:12]}…, model '{plm.source or plm.name}' has "
            f"{new[:12]}…; pass the model it was trained with via --model"
        )
    diffs = [f"{key}={trained.get(key)!r} there, {now.get(key)!r} now"
             for key in sorted(set(trained) | set(now)) if trained.get(key) != now.get(key)]
    raise CoevofoldError(
        f"checkpoint {folder} was trained on other features ({'; '.join(diffs)}); "
        "pass the model it was trained with via --model"
    )


@dataclass
class Predictor:
    """A model folder loaded once (classifier, pLM, homology search), ready for many requests.

    ``predict`` builds one per call; ``serve`` keeps one for its lifetime, so a request costs
    only the features and the search.
    """

    folder: Path
    classifier: torch.nn.Module
    meta: dict
    plm: pretrained.ProteinLM
    config: extraction.FeatureConfig
    search: homology.HomologySearch | None
    #: the folder's probability calibration, None when it has none (probabilities are then raw).
    calibration: calibrating.Calibration | None = None
    #: why predictions are model-only ("" when homology transfer is on).
    note: str = ""
    #: the template search and the combiner, None unless the folder is prepared for them.
    templates: templates.TemplateSearch | None = None
    combiner: combining.Combiner | None = None

    def predict(self, table: pd.DataFrame, top_k: int = 5, run: extraction.RunConfig | None = None,
                progress: bool = True, contacts: dict[str, np.ndarray] | None = None,
                hits: list[pd.DataFrame] | None = None) -> pd.DataFrame:
        """:func:`predict` for a validated ``table`` (``id``, ``sequence``).

        ``contacts``, when given, receives each sequence's full-resolution contact map (the
        features' channel 0, symmetric, in [0, 1]) by id; the pass then computes attention maps
        whatever the model was trained on (its other features are the same, to float rounding).
        ``hits``, when given, receives the :func:`hit_table` of the answer (empty without a search).
        """
        check_top_k(top_k)
        run = run or extraction.RunConfig()
        if table.empty:
            raise CoevofoldError("no sequences to predict")
        extraction.check_lengths(table)
        devices.set_threads(run.threads)
        ids, sequences = table["id"].tolist(), table["sequence"].tolist()
        probs = np.zeros((len(ids), len(self.meta["classes"])), dtype=np.float32)
        residues: list[np.ndarray] = [np.zeros(0)] * len(ids)
        config = self.config if contacts is None or self.config.maps != "none" else replace(self.config, maps="layers")
        batches = extraction.make_batches([len(s) for s in sequences], self.plm.window, self.config.stride,
                                        run.max_tokens, run.max_pairs)
        with tqdm(total=len(ids), unit="protein", desc="predict", disable=not progress, dynamic_ncols=True) as bar:
            for batch in batches:
                rows = extraction.compute(self.plm, config, [ids[i] for i in batch], [sequences[i] for i in batch],
                                        run.max_pairs)
                split = model_files.SplitData.from_rows(rows)
                probs[batch] = model_files.predict_proba(self.classifier, split)
                for i, residue in zip(batch, rows.residues):
                    residues[i] = residue
                if contacts is not None:
                    for row_id, sequence, triangle in zip(rows.ids, rows.sequences, rows.contacts):
                        contacts[row_id] = store.triangle_to_map(triangle, len(sequence))
                bar.update(len(batch))
        evidence = self.search.evidence(sequences, progress) if self.search is not None else None
        combined = None
        if evidence is not None and self.templates is not None and self.combiner is not None:
            found = self.templates.search(residues, progress)
            combined = preparation.evidence_of(probs, found, evidence.scores, self.templates.templates, self.meta["classes"])
            probs = self.combiner.probabilities(combined)
        frame = _top_folds(ids, sequences, probs, self.meta, top_k, evidence, self.search, self.calibration,
                           "combined" if combined is not None else "model")
        _template_columns(frame, combined, residues, self.templates, self.meta["classes"])
        frame.attrs["note"] = self.note
        frame.attrs["plm"] = plm_record(self.plm)
        if hits is not None:
            hits.append(hit_table(frame, dict(zip(ids, sequences)), self.search) if self.search is not None
                        else pd.DataFrame(columns=HIT_COLUMNS))
        return frame


def _template_columns(frame: pd.DataFrame, combined: combining.Evidence | None, residues: list[np.ndarray],
                      search: templates.TemplateSearch | None, classes: list[str]) -> None:
    """Fill each row's best template of its fold, its z-score and the aligned regions (in place)."""
    frame["template"], frame["template_z"], frame["query_region"], frame["template_region"] = "", np.nan, "", ""
    if combined is None:
        return
    class_of = {fold: n for n, fold in enumerate(classes)}
    query_of = {query_id: n for n, query_id in enumerate(dict.fromkeys(frame["id"]))}
    for row in range(len(frame)):
        q = query_of[frame["id"].iat[row]]
        c = class_of[frame["fold"].iat[row]]
        t = int(combined.best_template[q, c])
        if t < 0:
            continue
        _, pairs = search.align(residues[q], t)
        frame.iat[row, frame.columns.get_loc("template")] = search.templates.ids[t]
        frame.iat[row, frame.columns.get_loc("template_z")] = float(combined.template_z[q, c])
        if len(pairs):
            frame.iat[row, frame.columns.get_loc("query_region")] = f"{pairs[0, 0] + 1}-{pairs[-1, 0] + 1}"
            frame.iat[row, frame.columns.get_loc("template_region")] = f"{pairs[0, 1] + 1}-{pairs[-1, 1] + 1}"


def check_top_k(top_k: int) -> None:
    if top_k < 1:
        raise CoevofoldError(f"--top-k must be at least 1, not {top_k}")


def plm_record(plm: pretrained.ProteinLM) -> dict[str, str]:
    """What the JSON output says about the pLM that made its features (never the hub id alone)."""
    return {"label": plm.label, "weights_sha256": plm.weights_sha256}


def load_predictor(checkpoint: str | os.PathLike | None = None,
                   model: str | os.PathLike | pretrained.ProteinLM | None = None,
                   use_homology: bool = True, n_jobs: int = -1, device: str = "auto",
                   templates_in_memory: bool = False) -> Predictor:
    """Load a model folder, its pLM (checked compatible, on ``device``) and, if prepared, its
    homology search and templates (memory-mapped unless ``templates_in_memory``).

    Without homology files, or with ``use_homology=False``, predictions are the model's alone
    and :attr:`Predictor.note` says why. The classifier stays on the CPU (it is small); the pLM
    runs on ``device`` (:func:`coevofold.devices.resolve`).
    """
    where = devices.resolve(device)  # before anything loads: a missing GPU is one line
    folder, classifier, meta = _load_checkpoint(checkpoint)
    plm = model if isinstance(model, pretrained.ProteinLM) else pretrained.load(
        None if model is None else os.fspath(model), device=where.torch)
    config = feature_config(folder, meta)
    check_compatible(folder, meta, plm, config)
    search, note = None, ""
    if not use_homology:
        note = "homology transfer off (--no-homology); predictions are the model's alone"
    elif homology.has_homology(folder):
        search = homology.HomologySearch(folder, meta["classes"], n_jobs=n_jobs)
    else:
        note = MODEL_ONLY_NOTE.format(folder=folder)
    calibration = calibrating.load_calibration(folder) if calibrating.has_calibration(folder) else None
    if search is None and preparation.is_prepared(folder):  # its maps read the combiner's probabilities, not the model's
        calibration = None
        note += " (probabilities uncalibrated: the folder's calibration is the combined system's)"
    search_templates, fitted = None, None
    if search is not None and preparation.is_prepared(folder):
        search_templates = templates.TemplateSearch(templates.load_templates(folder, templates_in_memory))
        fitted = combining.load_combiner(folder)
    elif search is not None:
        note = NO_TEMPLATES_NOTE.format(folder=folder)
    return Predictor(folder, classifier, meta, plm, config, search, calibration, note, search_templates, fitted)


def predict(
    source: str | os.PathLike | pd.DataFrame,
    checkpoint: str | os.PathLike | None = None,
    top_k: int = 5,
    model: str | os.PathLike | pretrained.ProteinLM | None = None,
    run: extraction.RunConfig | None = None,
    progress: bool = True,
    use_homology: bool = True,
    hits: list[pd.DataFrame] | None = None,
) -> pd.DataFrame:
    """The ``top_k`` most probable folds of every sequence in ``source``, with their evidence.

    ``source`` is a FASTA/table path (validated by :func:`coevofold.data.tables.load`) or a table with
    ``id`` and ``sequence``; ``checkpoint`` a model folder (default :func:`default_model_dir`);
    ``model`` the pLM (hub id, folder or loaded :class:`~coevofold.features.pretrained.ProteinLM`; default
    resolved as for extraction); ``run`` sets batching and threads. With ``use_homology`` and a
    model folder prepared by :func:`coevofold.system.homology.fit_homology`, sequences whose best
    Smith-Waterman hit to the training domains passes the stored threshold take the alignment's
    ranking (``source`` = alignment), the others the model's. Returns one row per (sequence,
    rank) with the columns :data:`PREDICTION_COLUMNS`, rank 1 first, in input order; the frame's
    ``attrs["note"]`` says when predictions are model-only and ``attrs["plm"]`` which pLM made
    the features (:func:`plm_record`). ``run.device`` is where the pLM runs. ``hits``, when
    given, receives the evidence as a hit table (:func:`hit_table`).
    """
    check_top_k(top_k)
    model_folder(checkpoint)  # a missing model is the first thing to say
    table = tables.as_table(source)
    if table.empty:
        raise CoevofoldError("no sequences to predict")
    extraction.check_lengths(table)
    run = run or extraction.RunConfig()
    return load_predictor(checkpoint, model, use_homology, device=run.device).predict(table, top_k, run, progress,
                                                                                  hits=hits)


def _top_folds(ids: list[str], sequences: list[str], probs: np.ndarray, meta: dict, top_k: int,
               evidence: homology.Evidence | None, search: homology.HomologySearch | None,
               calibration: calibrating.Calibration | None, source: str = "model") -> pd.DataFrame:
    """Long table of the ``top_k`` best-ranked classes per protein, with their evidence.

    Probabilities are :func:`coevofold.system.calibration.stated`'s: calibrated where the folder has a
    calibration, else the model's and, on alignment rows, the validation hit rate of their rank.
    Every row with a search names its fold's best hit, and that hit's superfamily and family
    where the hit passes the threshold.
    """
    scores = evidence.scores if evidence is not None else None
    settings = evidence.settings if evidence is not None else None
    order, probability, from_alignment = calibrating.stated(
        probs, scores, settings.min_score if settings else None, settings.rank_probability if settings else [],
        calibration, top_k)
    k = order.shape[1]
    classes = np.asarray(meta["classes"])
    names = fold_naming.model_fold_names(meta)
    folds = classes[order].ravel()
    n = len(ids) * k
    columns: dict[str, list] = {"source": [source] * n, "hit": [""] * n, "identity": [np.nan] * n,
                                "evalue": [np.nan] * n, "hit_superfamily": [""] * n, "hit_family": [""] * n}
    if evidence is not None and search is not None:
        train = search.train
        for query in range(len(ids)):
            transferred = bool(from_alignment[query])
            for rank, klass in enumerate(order[query]):
                row, index = query * k + rank, int(evidence.class_best[query, klass])
                columns["hit"][row] = train["id"].iat[index]
                columns["identity"][row] = search.identity(sequences[query], index)
                columns["evalue"][row] = float(10.0 ** -evidence.scores[query, klass])
                if transferred:
                    columns["source"][row] = "alignment"
                if evidence.scores[query, klass] >= evidence.settings.min_score:  # this row's own hit passes
                    columns["hit_superfamily"][row] = train["superfamily"].iat[index]
                    columns["hit_family"][row] = train["family"].iat[index]
    return pd.DataFrame({
        "id": np.repeat(ids, k),
        "rank": np.tile(np.arange(1, k + 1), len(ids)),
        "fold": folds,
        "probability": probability.ravel(),
        "confidence": metrics.band_of(probability.ravel()) if calibration is not None else [""] * n,
        "name": [names.get(fold, "") for fold in folds],
        **columns,
    }, columns=PREDICTION_COLUMNS)


def _rounded_evidence(frame: pd.DataFrame) -> pd.DataFrame:
    """The evidence's numbers as every output carries them: identity to 3 decimals, E-value to 3
    digits, template z to 2 (the predictions and the hit table agree to the last digit)."""
    evalue = frame["evalue"].map(lambda v: float(f"{v:.2e}") if pd.notna(v) else np.nan)
    return frame.assign(identity=frame["identity"].astype(float).round(3), evalue=evalue,
                        template_z=frame["template_z"].astype(float).round(2))


def _rounded(frame: pd.DataFrame) -> pd.DataFrame:
    """The numbers both formats carry: probability to 4 decimals, the evidence as :func:`_rounded_evidence`."""
    return _rounded_evidence(frame[PREDICTION_COLUMNS]).assign(probability=frame["probability"].round(4))


def predictions_text(frame: pd.DataFrame, fmt: str = "tsv") -> str:
    """:func:`predict`'s table as the TSV or JSON text ``predict`` writes (and ``serve`` offers).

    Missing evidence is an empty TSV field and a JSON null. JSON is one object,
    ``{"plm": {"label", "weights_sha256"}, "predictions": [one record per row]}``: a file read
    months later still says which pLM made the features (the offline copy stands in for the hub
    model on machines without the hub, and its answers differ). TSV stays a plain table, one row
    per sequence and rank; ``predict`` says the pLM on stderr.
    """
    if fmt not in FORMATS:
        raise CoevofoldError(f"--format must be one of {', '.join(FORMATS)}, not '{fmt}'")
    plm = frame.attrs.get("plm")
    frame = _rounded(frame)
    if fmt == "tsv":
        tsv = frame.assign(probability=frame["probability"].map(lambda v: "" if pd.isna(v) else f"{v:.4f}"),
                           identity=frame["identity"].map(lambda v: "" if pd.isna(v) else f"{v:.3f}"),
                           evalue=frame["evalue"].map(lambda v: "" if pd.isna(v) else f"{v:.2e}"),
                           template_z=frame["template_z"].map(lambda v: "" if pd.isna(v) else f"{v:.2f}"))
        return tsv.to_csv(sep="\t", index=False)
    records = frame.astype(object).where(frame.notna(), None).to_dict(orient="records")
    return json.dumps({"plm": plm, "predictions": records}, indent=1, ensure_ascii=False) + "\n"


#: ``predict --hits``: one row per prediction row and evidence (its fold's best Smith-Waterman hit,
#: its best template), what :func:`hit_table` documents column by column.
HIT_COLUMNS = ["query", "rank", "fold", "source", "target", "target_fold", "target_superfamily", "target_family",
               "identity", "alignment_length", "query_start", "query_end", "target_start", "target_end", "evalue",
               "bitscore", "template_z"]


def hit_table(frame: pd.DataFrame, sequences: dict[str, str], search: homology.HomologySearch) -> pd.DataFrame:
    """The evidence behind :func:`predict`'s rows as a BLAST-like hit table (:data:`HIT_COLUMNS`).

    Per prediction row (``query``, ``rank``, ``fold``): a ``smith-waterman`` row for the fold's best
    hit (the row's ``hit``; ``evalue`` is the prediction's, ``identity`` too; coordinates, length and
    bit score from the alignment's traceback, 1-based, inclusive) and a ``template`` row for its best
    template (``template_z``; the embedding alignment's regions; no E-value, bit score or identity:
    it is not a sequence alignment). Folders without the search give no rows.
    """
    train = search.train.set_index("id")
    out: list[dict] = []
    for row in frame.itertuples(index=False):
        base = {"query": row.id, "rank": row.rank, "fold": row.fold}
        if row.hit:
            hit = baselines.align(sequences[row.id], train.at[row.hit, "sequence"])
            out.append({**base, "source": "smith-waterman", "target": row.hit, "identity": row.identity,
                        "alignment_length": hit.length, "query_start": hit.query_start, "query_end": hit.query_end,
                        "target_start": hit.target_start, "target_end": hit.target_end, "evalue": row.evalue,
                        "bitscore": hit.bits})
        if row.template:
            (query_start, query_end), (target_start, target_end) = (
                map(int, region.split("-")) if region else (None, None)
                for region in (row.query_region, row.template_region))
            out.append({**base, "source": "template", "target": row.template, "query_start": query_start,
                        "query_end": query_end, "target_start": target_start, "target_end": target_end,
                        "template_z": row.template_z})
    hits = pd.DataFrame(out, columns=HIT_COLUMNS)
    for level in ("fold", "superfamily", "family"):
        hits[f"target_{level}"] = hits["target"].map(train[level])
    return hits


def hits_text(hits: pd.DataFrame) -> str:
    """The hit table as ``--hits`` writes it: TSV with a header; the numbers rounded as predict rounds them."""
    rounded = _rounded_evidence(hits).assign(bitscore=hits["bitscore"].astype(float).round(1))
    for column in ("alignment_length", "query_start", "query_end", "target_start", "target_end"):
        rounded[column] = rounded[column].astype("Int64")
    return rounded.to_csv(sep="\t", index=False)


def write_predictions(frame: pd.DataFrame, out: str | os.PathLike | None, fmt: str = "tsv") -> None:
    """Write :func:`predict`'s table as TSV or JSON to ``out`` (atomically) or stdout (None/"-").

    Both formats carry the same rounded numbers (:func:`predictions_text`).
    """
    text = predictions_text(frame, fmt)
    if out is None or os.fspath(out) == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        write_text(out, text)
