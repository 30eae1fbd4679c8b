"""A trained model folder scored on a table's splits: probabilities, targets, results files."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from coevofold.data.splits import TEST_SPLITS
from coevofold.errors import CoevofoldError
from coevofold.files import write_text
from coevofold.metrics import encode_labels, evaluate_levels, results_markdown, topk_for, write_results_json


def model_scores(model_dir: str | os.PathLike, store_path: str | os.PathLike, table,
                 splits: Sequence[str]) -> tuple[dict, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """A trained model's class probabilities and the target columns on each non-empty split.

    Returns the model's ``model.json`` description, probabilities and targets by split; the
    targets are encoded against the model's own classes, which keeps the two aligned.
    """
    from coevofold.training import checkpoint

    classifier, meta = checkpoint.load_model(model_dir)
    probs, targets = {}, {}
    for split in splits:
        rows = table[table["split"] == split]
        if rows.empty:
            continue
        probs[split] = checkpoint.predict_proba(classifier, checkpoint.load_split(store_path, rows, meta["classes"]))
        targets[split] = encode_labels(rows["fold"], meta["classes"])
    return meta, probs, targets


#: What :func:`model_scores` returns: the model's description, probabilities and targets by split.
Scored = tuple[dict, dict[str, np.ndarray], dict[str, np.ndarray]]


def scores_for(model_dir: str | os.PathLike, store_path: str | os.PathLike, table, splits: Sequence[str],
               scored: Scored | None = None) -> Scored:
    """:func:`model_scores` on ``splits``, or those splits of ``scored``, a result of it the caller
    already has (scoring an ensemble of twelve on the DeepSF test levels takes ~20 s on 2 cores)."""
    if scored is None:
        return model_scores(model_dir, store_path, table, splits)
    meta, probs, targets = scored
    return meta, {s: probs[s] for s in splits if s in probs}, {s: targets[s] for s in splits if s in targets}


def evaluate_model(model_dir: str | os.PathLike, store_path: str | os.PathLike, table, n_boot: int = 1000,
                   scored: Scored | None = None) -> dict:
    """Score a trained model on every test level of ``table``; write results and predictions.

    Writes ``results.json``, ``results.md`` and ``predictions.tsv`` (id, split, fold, predicted,
    probability, correct) into ``model_dir``, which the report reads.
    """
    import pandas as pd

    from coevofold.training.checkpoint import PREDICTIONS, RESULTS_JSON, RESULTS_MD

    meta, probs, targets = scores_for(model_dir, store_path, table, TEST_SPLITS, scored)
    if not probs:
        raise CoevofoldError("no test proteins (splits test_fold / test_superfamily / test_family) to evaluate")
    classes = np.asarray(meta["classes"])
    frames = []
    for level, level_probs in probs.items():
        rows = table[table["split"] == level]
        frames.append(pd.DataFrame({
            "id": rows["id"].to_numpy(), "split": level, "fold": rows["fold"].to_numpy(),
            "predicted": classes[level_probs.argmax(1)], "probability": level_probs.max(1).round(4),
        }))
    results = evaluate_levels(probs, targets, ks=topk_for(len(classes)), n_boot=n_boot)
    predictions = pd.concat(frames, ignore_index=True)
    predictions["correct"] = predictions["fold"] == predictions["predicted"]
    model_dir = os.fspath(model_dir)
    write_results_json({"model": meta["model"]["name"], "levels": results}, os.path.join(model_dir, RESULTS_JSON))
    write_text(os.path.join(model_dir, RESULTS_MD), results_markdown({meta["model"]["name"]: results}))
    write_text(os.path.join(model_dir, PREDICTIONS), predictions.to_csv(sep="\t", index=False))
    return results
