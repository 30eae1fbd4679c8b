"""Scoring the system ``predict`` answers with: the combined probabilities, homology transfer on
top of any scores, and the calibration of what is stated (results.json, reliability diagram)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from coevofold import metrics, plots
from coevofold.data.splits import TEST_SPLITS
from coevofold.system import calibration, homology, preparation, templates
from coevofold.system import combiner as combining
from coevofold.training import scoring
from coevofold.training.checkpoint import RESULTS_JSON


def system_scores(model_dir: str | os.PathLike, store_path: str | os.PathLike, table: pd.DataFrame,
                  alignment: dict[str, np.ndarray], scored: scoring.Scored,
                  progress: bool = True) -> scoring.Scored:
    """The combined probabilities of every split in ``scored`` (the model's own scores), as
    :func:`coevofold.training.scoring.model_scores` returns them, so every evaluation reads them alike."""
    meta, probs, targets = scored
    found = templates.load_templates(model_dir)
    fitted = combining.load_combiner(model_dir)
    combined = {}
    for split, split_probs in probs.items():
        hits = preparation.cached_hits(found, store_path, table, split, progress=progress)
        combined[split] = fitted.probabilities(preparation.evidence_of(split_probs, hits, alignment[split], found,
                                                                       meta["classes"]))
    return meta, combined, targets


def homology_first_results(run_dir: Path, store_path: Path, table: pd.DataFrame, alignment: dict[str, np.ndarray],
                           scored: scoring.Scored | None = None,
                           threshold: float | None = None) -> tuple[float, dict]:
    """A trained model (or ``scored``, any scores of it) behind homology transfer, with the E-value
    threshold chosen on valid unless given."""
    meta, probs, targets = scoring.scores_for(run_dir, store_path, table, ("valid", *TEST_SPLITS), scored)
    threshold, ranked = homology.transfer(probs, alignment, targets, threshold)
    levels = [s for s in TEST_SPLITS if s in ranked]
    return threshold, metrics.evaluate_levels({s: ranked[s] for s in levels}, {s: targets[s] for s in levels},
                                                 ks=metrics.topk_for(len(meta["classes"])))


def evaluate_calibration(model_dir: str | os.PathLike, store_path: str | os.PathLike, table,
                         alignment: Mapping[str, np.ndarray] | None = None,
                         scored: scoring.Scored | None = None) -> dict[str, dict]:
    """How well the top-1 probability ``predict`` states matches how often it is right, per test level.

    ``alignment``: the test levels' alignment class scores against the model's training set;
    given, and with the folder's homology files, this measures the system (homology transfer
    first) as ``predict`` answers, else the model alone. ``before`` is the raw statement (model
    probability, validation hit rate on alignment rows), ``after`` the folder's calibration
    where it has one. Adds ``calibration`` to ``results.json`` and draws :data:`metrics.RELIABILITY_PNG`.
    ``scored``: the model's :func:`coevofold.training.scoring.model_scores` when the caller has them.
    """
    model_dir = Path(model_dir)
    _, probs, targets = scoring.scores_for(model_dir, store_path, table, TEST_SPLITS, scored)
    settings = homology.read_settings(model_dir) if alignment is not None and homology.has_homology(model_dir) else None
    fitted = calibration.load_calibration(model_dir) if calibration.has_calibration(model_dir) else None
    stated: dict[str, dict[str, np.ndarray]] = {"before": {}, "after": {}}
    correct: dict[str, np.ndarray] = {}
    for level, level_probs in probs.items():
        scores = alignment[level] if settings is not None else None
        args = (level_probs, scores, settings.min_score if settings else None,
                settings.rank_probability if settings else [])
        order, before, _ = calibration.stated(*args, None, 1)
        correct[level] = order[:, 0] == targets[level]
        stated["before"][level] = before[:, 0]
        if fitted is not None:
            stated["after"][level] = calibration.stated(*args, fitted, 1)[1][:, 0]
    result = {"system": settings is not None,
              **{when: metrics.calibration_levels(values, correct, bands=when == "after") for when, values in stated.items() if values}}
    path = model_dir / RESULTS_JSON
    stored = json.loads(path.read_text()) if path.is_file() else {}
    metrics.write_results_json({**stored, "calibration": result}, path)
    panels = {metrics.LEVEL_NAMES[level]: level for level in correct}
    curves = {title: {when: (values[level], correct[level]) for when, values in stated.items() if values}
              for title, level in panels.items()}
    curves["pooled"] = {when: (np.concatenate(list(values.values())), np.concatenate(list(correct.values())))
                        for when, values in stated.items() if values}
    plots.reliability_diagram(curves, model_dir / metrics.RELIABILITY_PNG)
    return result
