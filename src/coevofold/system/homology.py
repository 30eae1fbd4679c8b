"""Homology transfer for prediction: what a model folder needs, and the evidence it gives.

On DeepSF, trusting a significant Smith-Waterman hit to the training set and asking the model
only for the rest beats either alone (family level 96.5 % against 84.2 % for the model; see the
README). :func:`fit_homology` stores what ``predict`` needs for that in the model folder:

* ``homology_train.tsv``: the model's training domains (id, sequence, fold, superfamily, family),
  the search database, so a prediction can name its nearest training domain;
* ``homology.json``: the E-value threshold chosen on the ``valid`` split with the model's own
  scores (:func:`choose_min_score` through :func:`transfer`, as the benchmark's homology-first row),
  and the probabilities alignment-sourced rows report.

What "probability" means on an alignment row: among ``valid`` proteins whose best hit passed
the threshold, the fraction whose true fold was the alignment's fold at that rank. It is an
empirical hit rate (so a sequence's probabilities still sum to at most 1), measured on proteins
with close relatives in training; for remote homologues it is optimistic. Where no validation
protein passed the threshold there is no such rate, and the probability is missing (NaN / null).

The ranking itself is :func:`homology_first`, the function the benchmark
scores, so ``predict``'s top-1 per test level is the benchmark's homology-first row.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from coevofold.errors import CoevofoldError
from coevofold.files import atomic_path, write_text
from coevofold.models import baselines

TRAIN_FILE = "homology_train.tsv"
META_FILE = "homology.json"
TRAIN_COLUMNS = ["id", "sequence", "fold", "superfamily", "family"]
#: Ranks whose validation hit rate is stored (predict's --top-k beyond this reports 0 for them).
MAX_RANKS = 20


@dataclass(frozen=True)
class HomologySettings:
    """``homology.json``: the threshold and what alignment rows report (see the module docstring)."""

    #: trust the alignment where the best hit has -log10 E >= min_score (E <= 10^-min_score).
    min_score: float
    #: validation hit rate of the alignment's fold at rank 1, 2, ... for queries above the threshold.
    rank_probability: list[float]
    valid_proteins: int
    valid_above_threshold: int
    valid_top1_model: float
    valid_top1_hybrid: float


@dataclass(frozen=True)
class Evidence:
    """Per query: each class's best hit and its score (the ranking is :func:`coevofold.system.calibration.stated`'s)."""

    scores: np.ndarray  # [N, n_classes] -log10 E of each class's best member
    class_best: np.ndarray  # [N, n_classes] row of the training table
    settings: HomologySettings


def has_homology(model_dir: str | os.PathLike) -> bool:
    """Whether :func:`fit_homology` has prepared this model folder."""
    return (Path(model_dir) / TRAIN_FILE).is_file() and (Path(model_dir) / META_FILE).is_file()


def read_settings(model_dir: str | os.PathLike) -> HomologySettings:
    """A prepared folder's ``homology.json``, refused in one line when unreadable."""
    path = Path(model_dir) / META_FILE
    try:
        return HomologySettings(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError) as exc:
        raise CoevofoldError(f"{path}: unreadable homology settings ({exc}); re-run fit_homology") from None


def homology_first(model_scores: np.ndarray, alignment_scores: np.ndarray, min_score: float) -> np.ndarray:
    """Homology transfer where the alignment is confident, the model's ranking everywhere else.

    What a bioinformatician does by hand: trust a significant Smith-Waterman hit (best class
    score, -log10 E-value, at least ``min_score``) and fall back to the fold classifier for
    queries without one. Both score matrices must share the same class columns. Returned rows
    rank classes by alignment for confident queries (shifted above every probability) and by
    the model otherwise, so top-k reads from the result as from either input.
    """
    if model_scores.shape != alignment_scores.shape:
        raise ValueError(f"score shapes differ: {model_scores.shape} vs {alignment_scores.shape}")
    confident = alignment_scores.max(axis=1) >= min_score
    shifted = alignment_scores - alignment_scores.min() + model_scores.max() + 1.0
    return np.where(confident[:, None], shifted, model_scores)


def choose_min_score(model_scores: np.ndarray, alignment_scores: np.ndarray, targets: np.ndarray,
                     grid: Sequence[float] = tuple(range(0, 41))) -> float:
    """The confidence threshold of :func:`homology_first` with the best validation top-1.

    Chosen on the validation split only, so the test levels stay untouched; ties go to the
    strictest threshold (trust the alignment least).
    """
    def top1(threshold: float) -> float:
        return float((homology_first(model_scores, alignment_scores, threshold).argmax(1) == targets).mean())

    return max(reversed(list(grid)), key=top1)

def transfer(probs: dict[str, np.ndarray], alignment: dict[str, np.ndarray], targets: dict[str, np.ndarray],
             threshold: float | None = None) -> tuple[float, dict[str, np.ndarray]]:
    """Homology transfer over every split of ``probs``: the E-value threshold (chosen on the
    ``valid`` split with :func:`choose_min_score` unless given) and each split's ranking by
    :func:`homology_first`. The one place the threshold is chosen: :func:`fit_homology` and the
    benchmark's homology-first rows both come through here."""
    if threshold is None:
        threshold = choose_min_score(probs["valid"], alignment["valid"], targets["valid"])
    return float(threshold), {s: homology_first(p, alignment[s], threshold) for s, p in probs.items()}


def ranking(probs: np.ndarray, scores: np.ndarray | None, min_score: float | None,
            k: int) -> tuple[np.ndarray, np.ndarray]:
    """The system's top-``k`` classes per query and which queries the alignment ranks: homology
    transfer (:func:`homology_first`) where ``scores`` pass ``min_score``, the
    model's order elsewhere and everywhere when ``scores`` is None."""
    if scores is None:
        return np.argsort(-probs, axis=1, kind="stable")[:, :k], np.zeros(len(probs), dtype=bool)
    order = np.argsort(-homology_first(probs, scores, min_score), axis=1, kind="stable")[:, :k]
    return order, scores.max(axis=1) >= min_score


def rank_hit_rates(alignment_scores: np.ndarray, targets: np.ndarray, min_score: float,
                   ranks: int = MAX_RANKS) -> list[float]:
    """Fraction of queries above ``min_score`` whose target is the alignment's class at each rank."""
    confident = alignment_scores.max(axis=1) >= min_score
    if not confident.any():
        return []  # no validation protein passed: no hit rate to report (rows say NaN, not 0)
    order = np.argsort(-alignment_scores[confident], axis=1, kind="stable")[:, :ranks]
    return [float(x) for x in (order == targets[confident, None]).mean(axis=0)]


def fit_homology(model_dir: str | os.PathLike, store_path: str | os.PathLike, table: pd.DataFrame,
                 valid_alignment: np.ndarray | None = None, n_jobs: int = -1, progress: bool = True) -> HomologySettings:
    """Prepare ``model_dir`` for homology-first prediction; returns what it wrote to ``homology.json``.

    ``table`` is the labelled table the model was trained on (its ``train`` rows become the
    search database, its ``valid`` rows choose the threshold) and ``store_path`` the feature
    store holding the valid proteins. ``valid_alignment`` takes the valid split's alignment
    scores when the caller has them already (the benchmark does), saving the search.
    """
    from coevofold.training import scoring

    model_dir = Path(model_dir)
    train = table[table["split"] == "train"]
    if train.empty or (table["split"] == "valid").sum() == 0:
        raise CoevofoldError("fit_homology needs the model's train and valid rows (split column)")
    meta, probs, targets = scoring.model_scores(model_dir, store_path, table, ("valid",))
    if sorted(set(train["fold"])) != list(meta["classes"]):
        raise CoevofoldError(f"{model_dir}: the table's training folds are not the model's classes; "
                             "pass the table the model was trained on")
    if valid_alignment is None:
        valid_alignment = baselines.alignment_scores(table, ("valid",), n_jobs, progress)[1]["valid"]
    model_valid, target_valid = probs["valid"], targets["valid"]
    threshold, ranked = transfer({"valid": model_valid}, {"valid": valid_alignment}, {"valid": target_valid})
    hybrid = ranked["valid"]
    settings = HomologySettings(
        min_score=float(threshold),
        rank_probability=rank_hit_rates(valid_alignment, target_valid, threshold),
        valid_proteins=len(target_valid),
        valid_above_threshold=int((valid_alignment.max(axis=1) >= threshold).sum()),
        valid_top1_model=float((model_valid.argmax(1) == target_valid).mean()),
        valid_top1_hybrid=float((hybrid.argmax(1) == target_valid).mean()),
    )
    database = train[TRAIN_COLUMNS].astype(object).where(train[TRAIN_COLUMNS].notna(), "")
    with atomic_path(model_dir / TRAIN_FILE) as tmp:
        database.to_csv(tmp, sep="\t", index=False)
    write_text(model_dir / META_FILE, json.dumps(asdict(settings), indent=1) + "\n")
    return settings


class HomologySearch:
    """A model folder's training domains, ready to search (loaded once, e.g. by ``serve``)."""

    def __init__(self, model_dir: str | os.PathLike, classes: list[str], n_jobs: int = -1) -> None:
        model_dir = Path(model_dir)
        try:
            self.train = pd.read_csv(model_dir / TRAIN_FILE, sep="\t", dtype=str, keep_default_na=False)
        except (OSError, ValueError, TypeError, pd.errors.ParserError) as exc:
            raise CoevofoldError(f"{model_dir}: unreadable homology files ({exc}); re-run fit_homology") from None
        self.settings = read_settings(model_dir)
        missing = [c for c in TRAIN_COLUMNS if c not in self.train.columns]
        if missing:
            raise CoevofoldError(f"{model_dir / TRAIN_FILE}: missing column(s) {', '.join(missing)}")
        self.search_model = baselines.AlignmentNearestNeighbour(n_jobs=n_jobs, progress=False)
        self.search_model.fit(self.train["sequence"].tolist(), self.train["fold"].tolist())
        if self.search_model.classes_.tolist() != list(classes):
            raise CoevofoldError(f"{model_dir / TRAIN_FILE}: its folds are not the model's classes; re-run fit_homology")

    def evidence(self, sequences: list[str], progress: bool = False) -> Evidence:
        """Search ``sequences`` against the training domains."""
        self.search_model.progress = progress
        hits = self.search_model.search(sequences)
        return Evidence(
            scores=hits.scores,
            class_best=hits.class_best,
            settings=self.settings,
        )

    def identity(self, query: str, row: int) -> float:
        """Identity of ``query`` to training row ``row`` (:func:`baselines.percent_identity`)."""
        return baselines.percent_identity(query, self.train["sequence"].iat[row])
