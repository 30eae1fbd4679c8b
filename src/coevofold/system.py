"""The system ``predict`` answers with: classifier + template search + Smith-Waterman, combined, calibrated.

Preparing a trained ensemble's folder (:func:`fit_templates`, then :func:`fit_system`):

1. ``templates.npz`` / ``templates_vectors.npy``: the model's training domains as templates
   (:mod:`coevofold.templates`).
2. A *proxy* of the model (the same recipes, :data:`PROXY_SEEDS` seeds each, trained without the calibration split's held-out
   superfamilies, families and members, :func:`coevofold.splits.calibration_split`) with its
   own templates (the proxy's training rows only), so that the held-out rows meet classifier and
   searches exactly as remote queries meet the final model.
3. ``combiner.json``: the combiner's regression fitted on the held-out rows
   (:mod:`coevofold.combiner`), never on valid or test.
4. ``calibration.json``: the calibration maps fitted on *cross-fitted* combined probabilities of
   the same rows (each row scored by a combiner fitted without its superfamily), so the maps see
   the combiner's out-of-sample behaviour.

Homology transfer (a significant Smith-Waterman hit decides, :func:`coevofold.baselines.homology_first`)
stays on top: its threshold is the model folder's ``homology.json``.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from coevofold import baselines, calibration, combiner, evaluation, splits, store, templates
from coevofold.errors import CoevofoldError
from coevofold.files import cache_dir

#: Where :func:`fit_system` trains the proxy, inside the model folder it prepares.
PROXY_DIR = "calibration_proxy"
#: Seeds per recipe the proxy trains (the default has 8 MLP and 3 attention seeds): the proxy
#: only has to answer like the model on held-out rows, and its temperature on ``valid`` puts its
#: probabilities on the model's scale; 2 seeds per recipe cost 5 of the 12 trainings.
PROXY_SEEDS = 2


def proxy_members(members: dict) -> dict:
    """The first :data:`PROXY_SEEDS` members of each seed group (:func:`coevofold.training.seed_groups`)."""
    from coevofold import training

    keep = {name for group in training.seed_groups(members) for name in group[:PROXY_SEEDS]}
    return {name: config for name, config in members.items() if name in keep}


def fit_templates(folder: str | os.PathLike, store_path: str | os.PathLike, table: pd.DataFrame) -> templates.Templates:
    """Build and save the templates of ``table``'s train rows into ``folder``."""
    train = table[table["split"] == "train"]
    rows = store.read_rows(store_path, train["id"].tolist(), residues=True)
    built = templates.build_templates(rows, train["fold"].tolist())
    built.save(folder)
    return built


def cached_hits(folder: str | os.PathLike, store_path: str | os.PathLike, table: pd.DataFrame, split: str,
                config: templates.SearchConfig | None = None, progress: bool = True) -> templates.Hits:
    """The template search of ``split``'s rows against ``folder``'s templates, cached.

    Keyed on the templates' ids, the queries' ids and sequences, and the search settings: the
    search takes minutes for DeepSF's valid and test sets, and re-runs of quickstart reuse it.
    """
    config = config or templates.SearchConfig()
    rows = table[table["split"] == split]
    found = templates.load_templates(folder)
    key = hashlib.sha1("\n".join([*found.ids.tolist(), "|", *rows["id"], *rows["sequence"], repr(config),
                                  str(store_path)]).encode()).hexdigest()[:12]
    path = cache_dir() / "template_hits" / f"{split}-{key}.npz"
    if path.exists():
        return templates.Hits.load(path)
    queries = store.read_rows(store_path, rows["id"].tolist(), residues=True)
    hits = templates.TemplateSearch(found, config).search(queries, progress)
    hits.save(path)
    return hits


def evidence_of(probs: np.ndarray, hits: templates.Hits, alignment: np.ndarray, found: templates.Templates,
                classes: list[str]) -> combiner.Evidence:
    """Class-level evidence of a model's raw ``probs``, template ``hits`` and Smith-Waterman class scores."""
    codes = evaluation.encode_labels(found.folds, classes)
    best_z, _, overlap = hits.class_best(codes, len(classes))
    fold_size = np.bincount(codes, minlength=len(classes))
    return combiner.Evidence(np.asarray(probs, dtype=np.float64), best_z, overlap, np.asarray(alignment), fold_size)


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


def held_out(model_dir: str | os.PathLike, store_path: str | os.PathLike, table: pd.DataFrame, members: dict,
             held_out_alignment: dict[str, np.ndarray] | None = None, progress: bool = True) -> HeldOut:
    """Train (or reuse) the proxy and its templates, and gather its evidence on the held-out rows."""
    from coevofold import training

    table = table[table["split"] != "excluded"]
    model_dir = Path(model_dir)
    carved = splits.calibration_split(table)
    kinds = [s for s in splits.CALIBRATION_SPLITS if (carved["split"] == s).any()]
    if not kinds:
        raise CoevofoldError("calibration: the training set is too small to hold out superfamilies, families or members")
    proxy = Path(training.train_ensemble(store_path, carved, model_dir / PROXY_DIR, proxy_members(members)))
    meta, probs, targets = evaluation.model_scores(proxy, store_path, carved, (*kinds, "valid"))
    final_meta, final_probs, final_targets = evaluation.model_scores(model_dir, store_path, table, ("valid",))
    if meta["classes"] != final_meta["classes"]:
        raise CoevofoldError(f"{model_dir}: the calibration proxy's folds are not the model's")
    if not templates.has_templates(proxy):
        fit_templates(proxy, store_path, carved)
    if held_out_alignment is None:
        held_out_alignment = baselines.alignment_scores(carved, kinds, progress=progress)[1]
    proxy_temperature = calibration.top1_temperature(probs["valid"], targets["valid"])
    found = templates.load_templates(proxy)
    parts = [evidence_of(calibration.tempered(probs[s], proxy_temperature), cached_hits(proxy, store_path, carved, s,
                                                                                          progress=progress),
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
    from coevofold import homology

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


def system_scores(model_dir: str | os.PathLike, store_path: str | os.PathLike, table: pd.DataFrame,
                  alignment: dict[str, np.ndarray], scored: evaluation.Scored,
                  progress: bool = True) -> evaluation.Scored:
    """The combined probabilities of every split in ``scored`` (the model's own scores), as
    :func:`coevofold.evaluation.model_scores` returns them, so every evaluation reads them alike."""
    meta, probs, targets = scored
    found = templates.load_templates(model_dir)
    fitted = combiner.load_combiner(model_dir)
    combined = {}
    for split, split_probs in probs.items():
        hits = cached_hits(model_dir, store_path, table, split, progress=progress)
        evidence = evidence_of(split_probs, hits, alignment[split], found, meta["classes"])
        combined[split] = fitted.probabilities(evidence.probs, evidence.template_z, evidence.overlap,
                                               evidence.alignment, evidence.fold_size)
    return meta, combined, targets
