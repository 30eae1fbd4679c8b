"""The system ``predict`` answers with: classifier + template search + Smith-Waterman, combined, calibrated.

Preparing a trained ensemble's folder (:func:`fit_templates`, then :func:`fit_system`):

1. ``templates.npz`` / ``templates_vectors.npy``: the model's training domains as templates
   (:mod:`coevofold.system.templates`).
2. A *proxy* of the model (the same members, trained without the calibration split's held-out
   superfamilies, families and members, :func:`coevofold.data.splits.calibration_split`) with its
   own templates (the proxy's training rows only), so that the held-out rows meet classifier and
   searches exactly as remote queries meet the final model.
3. ``combiner.json``: the combiner's regression fitted on the held-out rows
   (:mod:`coevofold.system.combiner`), never on valid or test.
4. ``calibration.json``: the calibration maps fitted on *cross-fitted* combined probabilities of
   the same rows (each row scored by a combiner fitted without its superfamily), so the maps see
   the combiner's out-of-sample behaviour.

Homology transfer (a significant Smith-Waterman hit decides, :func:`coevofold.system.homology.homology_first`)
stays on top: its threshold is the model folder's ``homology.json``.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from coevofold import metrics
from coevofold.data import splits
from coevofold.data.splits import TEST_SPLITS
from coevofold.errors import CoevofoldError
from coevofold.features import store
from coevofold.files import atomic_path, cache_dir
from coevofold.models import baselines
from coevofold.system import calibration, combiner, homology, templates
from coevofold.training import scoring

#: Where :func:`fit_system` trains the proxy, inside the model folder it prepares.
PROXY_DIR = "calibration_proxy"


def fit_templates(folder: str | os.PathLike, store_path: str | os.PathLike, table: pd.DataFrame) -> templates.Templates:
    """Build and save the templates of ``table``'s train rows into ``folder``."""
    train = table[table["split"] == "train"]
    rows = store.read_rows(store_path, train["id"].tolist(), residues=True)
    built = templates.build_templates(rows, train["fold"].tolist())
    built.save(folder)
    return built


def cached_hits(found: templates.Templates, store_path: str | os.PathLike, table: pd.DataFrame, split: str,
                config: templates.SearchConfig | None = None, progress: bool = True) -> templates.Hits:
    """The template search of ``split``'s rows against the templates ``found``, cached.

    Keyed on the templates' ids and how their vectors were made (centre, removed directions), the
    queries' ids and sequences, and the search settings: the
    search takes minutes for DeepSF's valid and test sets, and re-runs of quickstart reuse it.
    """
    config = config or templates.SearchConfig()
    rows = table[table["split"] == split]
    vectors = hashlib.sha1(found.center.tobytes() + found.removed.tobytes()).hexdigest()
    key = hashlib.sha1("\n".join([*found.ids.tolist(), "|", *rows["id"], *rows["sequence"], repr(config),
                                  str(store_path), vectors]).encode()).hexdigest()[:12]
    path = cache_dir() / "template_hits" / f"{split}-{key}.npz"
    if path.exists():
        return templates.Hits.load(path)
    queries = store.read_rows(store_path, rows["id"].tolist(), residues=True)
    hits = templates.TemplateSearch(found, config).search(queries.residues, progress)
    hits.save(path)
    return hits


def evidence_of(probs: np.ndarray, hits: templates.Hits, alignment: np.ndarray, found: templates.Templates,
                classes: list[str]) -> combiner.Evidence:
    """Class-level evidence of a model's ``probs``, template ``hits`` and Smith-Waterman class scores."""
    codes = metrics.encode_labels(found.folds, classes)
    best_z, best = hits.class_best(codes, len(classes))
    top_hits = hits.class_counts(codes, len(classes), combiner.TOP_HITS)
    fold_size = np.bincount(codes, minlength=len(classes))
    return combiner.Evidence(np.asarray(probs, dtype=np.float64), best_z, top_hits, np.asarray(alignment), fold_size,
                             best)


@dataclass(frozen=True)
class HeldOut:
    """The proxy's view of the held-out rows: what the combiner and the calibration are fitted on."""

    evidence: combiner.Evidence  # model probabilities already on the common scale (tempered)
    targets: np.ndarray
    levels: np.ndarray  # each row's calibration split
    superfamilies: np.ndarray
    weights: np.ndarray  # calibration.unit_weights
    final_temperature: float
    proxy_temperature: float


def calibration_rows(table: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """``table`` carved for the proxy (:func:`coevofold.data.splits.calibration_split`, excluded rows
    dropped) and the calibration splits it holds out, refused when it holds none."""
    carved = splits.calibration_split(table[table["split"] != "excluded"])
    kinds = [s for s in splits.CALIBRATION_SPLITS if (carved["split"] == s).any()]
    if not kinds:
        raise CoevofoldError("calibration: the training set is too small to hold out superfamilies, families or members")
    return carved, kinds


def train_proxy(model_dir: str | os.PathLike, store_path: str | os.PathLike, carved: pd.DataFrame,
                members: dict) -> Path:
    """Train (or reuse) the calibration proxy of ``members`` on ``carved`` (:func:`calibration_rows`)
    in ``model_dir``'s :data:`PROXY_DIR`."""
    from coevofold.training import mixture

    return Path(mixture.train_ensemble(store_path, carved, Path(model_dir) / PROXY_DIR, members))


def train_model(model_dir: str | os.PathLike, store_path: str | os.PathLike, table: pd.DataFrame, members: dict,
                fold_names: dict[str, str] | None = None) -> Path:
    """Train the proxy first, then the model of ``members`` on every training row, each member
    starting from the proxy's (:func:`coevofold.training.trainer.warm_start`, ``warm_epochs``).

    The proxy has to be trained for the calibration anyway; the model fine-tuned from it costs a
    fraction of a second training from scratch (docs/research.md, issue 19).
    """
    from coevofold.training import mixture

    proxy = train_proxy(model_dir, store_path, calibration_rows(table)[0], members)
    return Path(mixture.train_ensemble(store_path, table, model_dir, members, fold_names, warm_from=proxy))


def held_out(model_dir: str | os.PathLike, store_path: str | os.PathLike, table: pd.DataFrame, members: dict,
             held_out_alignment: dict[str, np.ndarray] | None = None, progress: bool = True) -> HeldOut:
    """Train (or reuse) the proxy and its templates, and gather its evidence on the held-out rows."""
    table = table[table["split"] != "excluded"]
    carved, kinds = calibration_rows(table)
    proxy = train_proxy(model_dir, store_path, carved, members)
    meta, probs, targets = scoring.model_scores(proxy, store_path, carved, (*kinds, "valid"))
    final_meta, final_probs, final_targets = scoring.model_scores(model_dir, store_path, table, ("valid",))
    if meta["classes"] != final_meta["classes"]:
        raise CoevofoldError(f"{model_dir}: the calibration proxy's folds are not the model's")
    found = templates.load_templates(proxy) if templates.has_templates(proxy) else fit_templates(proxy, store_path, carved)
    if held_out_alignment is None:
        held_out_alignment = baselines.alignment_scores(carved, kinds, progress=progress)[1]
    proxy_temperature = calibration.top1_temperature(probs["valid"], targets["valid"])
    parts = [evidence_of(calibration.tempered(probs[s], proxy_temperature),
                         cached_hits(found, store_path, carved, s, progress=progress),
                         held_out_alignment[s], found, meta["classes"]) for s in kinds]
    rows = pd.concat([carved[carved["split"] == s] for s in kinds])
    return HeldOut(combiner.Evidence.concat(parts), np.concatenate([targets[s] for s in kinds]),
                   rows["split"].to_numpy(), rows["superfamily"].to_numpy(),
                   calibration.unit_weights(carved, tuple(kinds)),
                   calibration.top1_temperature(final_probs["valid"], final_targets["valid"]), proxy_temperature)


def fit_system(model_dir: str | os.PathLike, store_path: str | os.PathLike, table: pd.DataFrame, members: dict,
               held_out_alignment: dict[str, np.ndarray] | None = None,
               progress: bool = True) -> tuple[combiner.Combiner, calibration.Calibration]:
    """Fit and save the combiner and the calibration of ``model_dir`` (an ensemble of ``members``
    with homology files and templates) on the proxy's held-out rows; test rows play no part."""
    model_dir = Path(model_dir)
    if not homology.has_homology(model_dir):
        raise CoevofoldError(f"{model_dir}: prepare the system after homology.fit_homology (the maps need its threshold)")
    min_score = homology.read_settings(model_dir).min_score
    rows = held_out(model_dir, store_path, table, members, held_out_alignment, progress)
    weights = combiner.fit_weights(rows.evidence, rows.targets, rows.weights)
    fitted_on = {**{str(k): int((rows.levels == k).sum()) for k in np.unique(rows.levels)},
                 "proxy_temperature": rows.proxy_temperature}
    combined = combiner.Combiner(rows.final_temperature, weights, fitted_on)
    crossed = combiner.cross_fitted(rows.evidence, rows.targets, rows.superfamilies, rows.weights)
    calibrated = calibration.fit(crossed, rows.evidence.alignment, rows.targets, rows.levels, min_score,
                                 temperature=1.0, weights=rows.weights, fitted_on=fitted_on)
    combined.save(model_dir)
    calibrated.save(model_dir)
    return combined, calibrated


def is_prepared(model_dir: str | os.PathLike) -> bool:
    """Whether ``model_dir`` holds templates, a combiner and a calibration (the whole system)."""
    return (templates.has_templates(model_dir) and combiner.has_combiner(model_dir)
            and calibration.has_calibration(model_dir))


def cached_alignment(name: str, table: pd.DataFrame, progress: bool = True,
                     splits: tuple[str, ...] = ("valid", *TEST_SPLITS)) -> dict[str, np.ndarray]:
    """Smith-Waterman class scores of ``splits``' proteins against the training set, cached.

    They depend only on the sequences and training folds (not on any model), take ~10 min on 2
    cores for DeepSF's valid and test splits, and are what the homology-first rows,
    ``fit_homology`` and (on the calibration splits) ``fit_calibration`` need. The cache file is
    keyed on the table and holds every split searched so far: a call asking for a split it
    lacks (``prepare``'s ``valid`` after ``evaluate``'s test splits) searches only that
    split and adds it.
    """
    splits = [s for s in splits if (table["split"] == s).any()]
    train = table[table["split"] == "train"]
    key = hashlib.sha1("\n".join(f"{i}\t{q}\t{f}\t{s}" for i, q, f, s in
                                 zip(table["id"], table["sequence"], table["fold"], table["split"])).encode()).hexdigest()[:10]
    path = cache_dir() / "alignment" / f"{name}-{key}.npz"
    scores: dict[str, np.ndarray] = {}
    if path.exists():
        with np.load(path) as stored:
            scores = {split: stored[split] for split in stored.files}
    missing = [s for s in splits if s not in scores]
    if missing:
        started = time.perf_counter()
        found = baselines.alignment_scores(table, missing, progress=progress)[1]
        scores.update(found)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp, open(tmp, "wb") as handle:
            np.savez_compressed(handle, **scores)
        if progress:
            print(f"alignment of {sum(len(v) for v in found.values())} proteins ({', '.join(missing)}) against "
                  f"{len(train)} training domains: {time.perf_counter() - started:.0f} s (cached in {path})")
    return {split: scores[split] for split in splits}


def prepare(model_dir: Path, store_path: Path, table: pd.DataFrame, members: dict, name: str,
                   progress: bool = True) -> dict[str, np.ndarray]:
    """Make a trained ensemble of ``members`` the system ``predict`` answers with: homology files
    (threshold chosen on ``valid``), templates, and the combiner and calibration fitted on a
    proxy's held-out rows (below), each skipped when the folder has it. Returns
    the valid and test rows' Smith-Waterman scores (cached under ``name``, the data set's)."""
    alignment = cached_alignment(name, table, progress)
    if not homology.has_homology(model_dir):
        homology.fit_homology(model_dir, store_path, table, valid_alignment=alignment.get("valid"), progress=progress)
    if not templates.has_templates(model_dir):
        print("template search: the training domains' residue embeddings as templates (coevofold.system.templates)")
        fit_templates(model_dir, store_path, table)
    if not is_prepared(model_dir):
        print("combiner and calibration: a proxy of the model trained without held-out superfamilies, families "
              "and members, with its own templates (coevofold.system.preparation)")
        held_out = cached_alignment(name, splits.calibration_split(table), progress, splits.CALIBRATION_SPLITS)
        fit_system(model_dir, store_path, table, members, held_out, progress)
    return alignment
