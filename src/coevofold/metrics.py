"""Metrics of fold predictions: top-k accuracy with bootstrap intervals, calibration error,
confidence bands, and the report tables. Pure functions of scores and targets.

Every metric is computed from one vector of per-protein correctness (torchmetrics decides, for
each protein, whether its fold is among the top k scores), so the point estimate and its
bootstrap distribution are the same statistic on the original sample and on resamples of
proteins. A test protein of a fold the model never saw counts as wrong: dropping it would
flatter the model, and its fold cannot be predicted by construction.

The published anchors let a results table show at a glance where a run sits against the
literature on the same DeepSF/TAPE splits.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torchmetrics.functional.classification import multiclass_accuracy

from coevofold.data.splits import TEST_SPLITS
from coevofold.errors import CoevofoldError
from coevofold.files import write_text

#: Target code of a protein whose fold has no column in the scores (unseen in training).
UNSEEN = -1
#: Column heading of each test level in :func:`results_markdown`.
LEVEL_NAMES = {"test_fold": "Fold", "test_superfamily": "Superfamily", "test_family": "Family", "pooled": "Pooled"}
#: The three test levels together (3,244 proteins on DeepSF): papers that pool them report one number.
POOLED = "pooled"


@dataclass(frozen=True)
class Anchor:
    """A published result on the DeepSF/TAPE splits: percent accuracy by metric, then level."""

    source: str
    values: dict[str, dict[str, float]]


#: Published accuracies (%) on the same splits; absent levels were not reported by the source.
PUBLISHED: dict[str, Anchor] = {
    "DeepSF": Anchor(
        "Hou, Adhikari & Cheng 2018, Bioinformatics 34:1295",
        {
            "top1": {"test_fold": 40.9, "test_superfamily": 50.7, "test_family": 76.2},
            "top5": {"test_fold": 70.5, "test_superfamily": 77.7, "test_family": 94.5},
        },
    ),
    "TAPE LSTM": Anchor("Rao et al. 2019, NeurIPS (TAPE)", {"top1": {"test_fold": 26.0}}),
    "PEER ESM-1b (frozen)": Anchor("Xu et al. 2022, NeurIPS (PEER)", {"top1": {"test_fold": 29.95}}),
    "PEER ESM-1b + contact": Anchor("Xu et al. 2022, NeurIPS (PEER), multi-task", {"top1": {"test_fold": 32.10}}),
}


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of paired vectors along the last axis, in float64 (features are stored
    as float16, whose products would round away the differences being measured)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return (a * b).sum(-1) / np.maximum(np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1), 1e-12)


def encode_labels(labels: Iterable[str], classes: Sequence[str]) -> np.ndarray:
    """Column index of each label in ``classes`` (a model's ``classes_``), :data:`UNSEEN` if absent.

    Encoding against the model's own column order is what keeps targets and scores aligned.
    """
    column = {label: index for index, label in enumerate(classes)}
    return np.array([column.get(label, UNSEEN) for label in labels], dtype=np.int64)


def _correct_at(probs: np.ndarray, targets: np.ndarray, k: int) -> np.ndarray:
    """Whether each protein's target is among its top ``k`` scores (unseen targets: never).

    torchmetrics' samplewise mode on an ``[N, C, 1]`` view yields the per-protein decision.
    """
    correct = np.zeros(len(targets), dtype=bool)
    seen = targets != UNSEEN
    if seen.any():
        decided = multiclass_accuracy(
            torch.from_numpy(probs[seen])[..., None],
            torch.from_numpy(targets[seen])[:, None],
            num_classes=probs.shape[1],
            top_k=k,
            average="micro",
            multidim_average="samplewise",
        )
        correct[seen] = decided.numpy() == 1.0
    return correct


def _macro(correct: np.ndarray, codes: np.ndarray, n_present: int, resamples: np.ndarray) -> np.ndarray:
    """Mean per-class accuracy over the classes present in each resample.

    ``codes`` numbers the classes present in the targets ``0..n_present-1`` (unseen proteins get
    ``n_present`` and are left out); one bincount over (resample, class) does all resamples.
    """
    n_boot = len(resamples)
    width = n_present + 1
    cells = (np.arange(n_boot)[:, None] * width + codes[resamples]).ravel()
    size = n_boot * width
    members = np.bincount(cells, minlength=size).reshape(n_boot, width)[:, :n_present]
    hits = np.bincount(cells, weights=correct[resamples].ravel(), minlength=size).reshape(n_boot, width)[:, :n_present]
    accuracy = hits / np.maximum(members, 1)
    with np.errstate(invalid="ignore"):  # a resample of unseen proteins only has no macro accuracy
        return accuracy.sum(axis=1) / (members > 0).sum(axis=1)


def score(
    probs: np.ndarray,
    targets: np.ndarray,
    ks: Sequence[int] = (1, 5),
    n_boot: int = 1000,
    seed: int = 0,
) -> dict:
    """Top-k accuracy (micro; top-1 always), macro top-1 accuracy, 95 % bootstrap intervals.

    ``probs`` is ``[N, C]`` (any scores whose order ranks the classes), ``targets`` the column of
    each protein's fold or :data:`UNSEEN`. Macro accuracy averages over the classes present in
    the targets only, since a class with no test protein has no accuracy. Proteins are resampled
    with ``seed`` so intervals are reproducible. Fractions, not percent.
    """
    probs = np.asarray(probs, dtype=np.float64)
    targets = np.asarray(targets, dtype=np.int64)
    if probs.ndim != 2 or targets.shape != (len(probs),):
        raise ValueError(f"probs must be [N, C] and targets [N]; got {probs.shape} and {targets.shape}")
    if len(targets) == 0:
        raise CoevofoldError("no proteins to score")
    n_classes = probs.shape[1]
    if targets.min() < UNSEEN or targets.max() >= n_classes:
        raise ValueError(f"targets must be in [{UNSEEN}, {n_classes - 1}]")
    if max(ks) > n_classes:
        raise ValueError(f"top-{max(ks)} accuracy needs at least {max(ks)} classes, not {n_classes}")

    correct = {k: _correct_at(probs, targets, k) for k in sorted({1, *ks})}
    seen = targets != UNSEEN
    present, codes_seen = np.unique(targets[seen], return_inverse=True)
    codes = np.full(len(targets), len(present))
    codes[seen] = codes_seen

    rng = np.random.default_rng(seed)
    samples = {"original": np.arange(len(targets))[None, :], "boot": rng.integers(0, len(targets), (n_boot, len(targets)))}
    stats = {
        name: {
            **{f"top{k}": hits[resamples].mean(axis=1) for k, hits in correct.items()},
            "macro_top1": _macro(correct[1], codes, len(present), resamples),
        }
        for name, resamples in samples.items()
    }
    metrics = {
        metric: {
            "value": float(value[0]),
            "ci_low": float(np.percentile(stats["boot"][metric], 2.5)),
            "ci_high": float(np.percentile(stats["boot"][metric], 97.5)),
        }
        for metric, value in stats["original"].items()
    }
    return {
        "n_proteins": int(len(targets)),
        "n_unseen": int((~seen).sum()),
        "n_classes_present": int(len(present)),
        "n_boot": n_boot,
        "seed": seed,
        "metrics": metrics,
    }


def paired_difference(probs_a: np.ndarray, probs_b: np.ndarray, targets: np.ndarray, n_boot: int = 1000,
                      seed: int = 0) -> dict[str, float]:
    """Top-1 accuracy of A minus B on the same proteins, with a paired bootstrap 95 % interval.

    Resampling proteins once for both systems keeps what they share (the hard proteins are hard
    for both) out of the interval, which two separate intervals would double-count.
    """
    return paired_bootstrap(_correct_at(np.asarray(probs_a, dtype=np.float64), np.asarray(targets), 1),
                            _correct_at(np.asarray(probs_b, dtype=np.float64), np.asarray(targets), 1), n_boot, seed)


def paired_bootstrap(right_a: np.ndarray, right_b: np.ndarray, n_boot: int = 1000, seed: int = 0) -> dict[str, float]:
    """Mean of ``right_a - right_b`` (per protein, 1 = right) with a paired bootstrap 95 % interval."""
    a, b = np.asarray(right_a, dtype=np.float64), np.asarray(right_b, dtype=np.float64)
    if a.shape != b.shape or len(a) == 0:
        raise ValueError(f"need the same non-empty proteins for both systems, got {a.shape} and {b.shape}")
    resamples = np.random.default_rng(seed).integers(0, len(a), (n_boot, len(a)))
    boot = (a - b)[resamples].mean(axis=1)
    return {"difference": float((a - b).mean()), "ci_low": float(np.percentile(boot, 2.5)),
            "ci_high": float(np.percentile(boot, 97.5))}


def evaluate_levels(
    probs_by_split: Mapping[str, np.ndarray],
    targets_by_split: Mapping[str, np.ndarray],
    ks: Sequence[int] = (1, 5),
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, dict]:
    """:func:`score` for each test level given, in the benchmark's fold/superfamily/family order,
    and :data:`POOLED` (all three together) when all three are given."""
    unknown = sorted(set(probs_by_split) - set(TEST_SPLITS))
    if unknown:
        raise ValueError(f"not a test level: {unknown[0]} (levels: {', '.join(TEST_SPLITS)})")
    missing = sorted(set(probs_by_split) - set(targets_by_split))
    if missing:
        raise ValueError(f"no targets for {missing[0]}")
    results = {
        level: score(probs_by_split[level], targets_by_split[level], ks=ks, n_boot=n_boot, seed=seed)
        for level in TEST_SPLITS
        if level in probs_by_split
    }
    if len(results) == len(TEST_SPLITS):
        results[POOLED] = score(np.concatenate([probs_by_split[s] for s in TEST_SPLITS]),
                                np.concatenate([targets_by_split[s] for s in TEST_SPLITS]), ks=ks, n_boot=n_boot, seed=seed)
    return results


def evaluate_table(scores_by_split: Mapping[str, np.ndarray], table, classes: Sequence[str],
                   n_boot: int = 1000) -> dict[str, dict]:
    """:func:`evaluate_levels` of class scores on ``table``'s test levels (rows in table order),
    targets from its ``fold`` column against ``classes``; top-5 only with more than 5 classes."""
    levels = [level for level in TEST_SPLITS if level in scores_by_split]
    targets = {level: encode_labels(table.loc[table["split"] == level, "fold"], list(classes)) for level in levels}
    return evaluate_levels({level: scores_by_split[level] for level in levels}, targets,
                           ks=topk_for(len(classes)), n_boot=n_boot)


def write_results_json(results: Mapping, path: str | os.PathLike) -> None:
    """Write results as indented JSON, atomically (a crashed run leaves no half file)."""
    write_text(path, json.dumps(results, indent=2) + "\n")


def _cell(result: Mapping | None, metric: str) -> str:
    if result is None or metric not in result["metrics"]:
        return "–"
    m = result["metrics"][metric]
    return f"{100 * m['value']:.1f} [{100 * m['ci_low']:.1f}–{100 * m['ci_high']:.1f}]"


def results_markdown(results_by_model: Mapping[str, Mapping[str, Mapping]], published: bool = True) -> str:
    """A Markdown table: one row per model, then the published anchors, top-1 and top-5 by level.

    Cells are percent with the bootstrap 95 % interval; published rows have no interval because
    the sources give none. ``results_by_model`` maps a model name to :func:`evaluate_levels` output.
    """
    columns = [(metric, level) for metric in ("top1", "top5") for level in TEST_SPLITS]
    if any(POOLED in levels for levels in results_by_model.values()):
        columns.insert(len(TEST_SPLITS), ("top1", POOLED))
    header = ["Model", *(f"{LEVEL_NAMES[level]} {metric[:3]}-{metric[3:]}" for metric, level in columns)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for model, levels in results_by_model.items():
        cells = [_cell(levels.get(level), metric) for metric, level in columns]
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    for model, anchor in PUBLISHED.items() if published else ():
        cells = [
            f"{anchor.values[metric][level]:g}" if level in anchor.values.get(metric, {}) else "–"
            for metric, level in columns
        ]
        lines.append(f"| {model} (published) | " + " | ".join(cells) + " |")
    sources = "; ".join(f"{model}: {anchor.source}" for model, anchor in PUBLISHED.items())
    cited = f" Published (same DeepSF/TAPE splits): {sources}." if published else ""
    return "\n".join(lines) + f"\n\nAccuracy in %, bootstrap 95 % interval in brackets.{cited}\n"


def topk_for(n_classes: int) -> tuple[int, ...]:
    """Top-1 and top-5, or top-1 alone when there are too few classes for top-5 to mean anything."""
    return (1, 5) if n_classes > 5 else (1,)


#: What :func:`coevofold.system.evaluation.evaluate_calibration` writes beside the model: the reliability diagram.
RELIABILITY_PNG = "reliability.png"
#: Equal-width bins of expected calibration error (the issue's and most papers' choice).
ECE_BINS = 10
#: Confidence bands on the calibrated probability of a row: (name, lowest probability).
BANDS = (("high", 0.9), ("medium", 0.5), ("low", 0.0))


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, n_bins: int = ECE_BINS) -> float:
    """Mean |accuracy - confidence| over equal-width confidence bins, weighted by bin size.

    torchmetrics' binary calibration error on (confidence, correct) is exactly the top-1 ECE of
    a classifier when ``confidence`` is its top-1 probability and ``correct`` whether it was right.
    """
    import torch
    from torchmetrics.functional.classification import binary_calibration_error

    confidence = np.nan_to_num(np.asarray(confidence, dtype=np.float64), nan=0.0)
    if len(confidence) == 0:
        raise ValueError("no predictions to measure")
    return float(binary_calibration_error(torch.from_numpy(confidence).float(),
                                          torch.from_numpy(np.asarray(correct, dtype=np.int64)), n_bins=n_bins))


def band_of(probability: np.ndarray) -> np.ndarray:
    """The :data:`BANDS` name of each probability (missing probability: low)."""
    probability = np.nan_to_num(np.asarray(probability, dtype=np.float64), nan=0.0)
    names = np.full(probability.shape, BANDS[-1][0], dtype=object)
    for name, lowest in reversed(BANDS[:-1]):
        names[probability >= lowest] = name
    return names


def calibration_levels(probability: Mapping[str, np.ndarray], correct: Mapping[str, np.ndarray],
                       bands: bool = False, n_boot: int = 200, seed: int = 0) -> dict[str, dict]:
    """Top-1 ECE (with a bootstrap 95 % interval), mean stated probability, accuracy and proteins per
    level and all levels pooled; with ``bands``, proteins and precision per confidence band."""
    levels = {**{level: (probability[level], correct[level]) for level in probability},
              "pooled": (np.concatenate(list(probability.values())), np.concatenate(list(correct.values())))}
    rng = np.random.default_rng(seed)
    out = {}
    for level, (p, c) in levels.items():
        p, c = np.asarray(p, dtype=np.float64), np.asarray(c, dtype=bool)
        boot = [expected_calibration_error(p[i], c[i]) for i in rng.integers(0, len(c), (n_boot, len(c)))]
        out[level] = {"ece": expected_calibration_error(p, c), "ece_ci_low": float(np.percentile(boot, 2.5)),
                      "ece_ci_high": float(np.percentile(boot, 97.5)), "confidence": float(np.nanmean(p)),
                      "accuracy": float(np.mean(c)), "proteins": int(len(c))}
        if bands:
            names = band_of(p)
            out[level]["bands"] = {name: {"proteins": int((names == name).sum()),
                                          "precision": float(c[names == name].mean()) if (names == name).any() else None}
                                   for name, _ in BANDS}
    return out


def calibration_markdown(result: Mapping[str, dict]) -> str:
    """:func:`coevofold.system.evaluation.evaluate_calibration`'s result as Markdown: mean stated probability and ECE before and
    after calibration per level, and, when calibrated, each confidence band's proteins and precision."""
    whens = [when for when in ("before", "after") if when in result]
    header = ["Level", "proteins", "top-1 right", *(f"{col} {when}" for when in whens for col in ("stated p", "ECE"))]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for level, first in result[whens[0]].items():
        cells = [LEVEL_NAMES.get(level, level), str(first["proteins"]), f"{first['accuracy']:.3f}"]
        for when in whens:
            m = result[when][level]
            cells += [f"{m['confidence']:.3f}", f"{m['ece']:.3f} [{m['ece_ci_low']:.3f}–{m['ece_ci_high']:.3f}]"]
        lines.append("| " + " | ".join(cells) + " |")
    what = "system (homology transfer first, as predict answers)" if result.get("system") else "model alone"
    text = "\n".join(lines) + (f"\n\nTop-1 of the {what}; ECE over 10 equal-width bins with a bootstrap 95 % "
                               "interval; before = raw, after = calibrated.\n")
    if "after" in result:
        bands = ["| Level | " + " | ".join(f"{name} (proteins, precision)" for name, _ in BANDS) + " |",
                 "|---|" + "---|" * len(BANDS)]
        for level, m in result["after"].items():
            cells = [f"{v['proteins']}, {v['precision']:.3f}" if v["precision"] is not None else "0, –"
                     for v in m["bands"].values()]
            bands.append(f"| {LEVEL_NAMES.get(level, level)} | " + " | ".join(cells) + " |")
        cuts = ", ".join(f"{name} >= {lowest:g}" for name, lowest in BANDS[:-1])
        text += ("\n" + "\n".join(bands) + f"\n\nConfidence bands of the calibrated top-1 probability: {cuts}, "
                 f"{BANDS[-1][0]} below; precision = fraction of the band's top-1 answers that are right.\n")
    return text
