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
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from coevofold import data, features, pretrained, training
from coevofold.errors import CoevofoldError
from coevofold.files import cache_dir, write_text

#: Columns of :func:`predict`'s table and of both output formats, in order.
PREDICTION_COLUMNS = ["id", "rank", "fold", "probability", "name"]
FORMATS = ("tsv", "json")


def default_model_dir() -> Path:
    """Where ``coevofold quickstart`` leaves the model that ``predict`` uses by default."""
    return cache_dir() / "models" / "default"


def _load_checkpoint(checkpoint: str | os.PathLike | None):
    folder = Path(checkpoint) if checkpoint is not None else default_model_dir()
    if not (folder / training.MODEL_WEIGHTS).is_file() or not (folder / training.MODEL_META).is_file():
        raise CoevofoldError(
            f"{folder}: no trained model ({training.MODEL_WEIGHTS} and {training.MODEL_META}); "
            "run `coevofold quickstart` first (see README) or pass --checkpoint MODEL_DIR"
        )
    classifier, meta = training.load_model(folder)
    return folder, classifier, meta


def feature_config(folder: Path, meta: dict) -> features.FeatureConfig:
    """The feature settings a model was trained on, from its ``model.json``."""
    try:
        stored = meta["feature_settings"]
        return features.FeatureConfig(maps=stored["maps"], grid=stored["grid"], embedding_layer=stored["embedding_layer"],
                                      embedding_bins=stored["embedding_bins"], stride=stored["stride"])
    except (KeyError, TypeError) as exc:
        raise CoevofoldError(f"{folder / training.MODEL_META}: no usable feature_settings ({exc!r} missing)") from None


def check_compatible(folder: Path, meta: dict, plm: pretrained.ProteinLM, config: features.FeatureConfig) -> None:
    """Refuse a pLM whose features would differ from those the checkpoint was trained on."""
    trained, now = meta["feature_settings"], features.settings_of(plm, config)
    if trained == now:
        return
    old, new = str(trained.get("weights_sha256")), now["weights_sha256"]
    if old != new:
        raise CoevofoldError(
            f"checkpoint {folder} was trained on features of weights {old[:12]}…, model '{plm.name}' has "
            f"{new[:12]}…; pass the model it was trained with via --model"
        )
    diffs = [f"{key}={trained.get(key)!r} there, {now.get(key)!r} now"
             for key in sorted(set(trained) | set(now)) if trained.get(key) != now.get(key)]
    raise CoevofoldError(
        f"checkpoint {folder} was trained on other features ({'; '.join(diffs)}); "
        "pass the model it was trained with via --model"
    )


def predict(
    source: str | os.PathLike | pd.DataFrame,
    checkpoint: str | os.PathLike | None = None,
    top_k: int = 5,
    model: str | os.PathLike | pretrained.ProteinLM | None = None,
    run: features.RunConfig | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """The ``top_k`` most probable folds of every sequence in ``source``.

    ``source`` is a FASTA/table path (validated by :func:`coevofold.data.load`) or a table with
    ``id`` and ``sequence``; ``checkpoint`` a model folder (default :func:`default_model_dir`);
    ``model`` the pLM (hub id, folder or loaded :class:`~coevofold.pretrained.ProteinLM`; default
    resolved as for extraction); ``run`` sets batching and threads. Returns one row per
    (sequence, rank) with the columns :data:`PREDICTION_COLUMNS`, rank 1 first, in input order.
    """
    if top_k < 1:
        raise CoevofoldError(f"--top-k must be at least 1, not {top_k}")
    run = run or features.RunConfig()
    folder, classifier, meta = _load_checkpoint(checkpoint)
    table = data.as_table(source)
    if table.empty:
        raise CoevofoldError("no sequences to predict")
    features.check_lengths(table)
    if run.threads:
        torch.set_num_threads(run.threads)
    plm = model if isinstance(model, pretrained.ProteinLM) else pretrained.load(None if model is None else os.fspath(model))
    config = feature_config(folder, meta)
    check_compatible(folder, meta, plm, config)

    ids, sequences = table["id"].tolist(), table["sequence"].tolist()
    probs = np.zeros((len(ids), len(meta["classes"])), dtype=np.float32)
    batches = features.make_batches([len(s) for s in sequences], plm.window, config.stride, run.max_tokens, run.max_pairs)
    with tqdm(total=len(ids), unit="protein", desc="predict", disable=not progress, dynamic_ncols=True) as bar:
        for batch in batches:
            rows = features.compute(plm, config, [ids[i] for i in batch], [sequences[i] for i in batch], run.max_pairs)
            split = training.SplitData.from_rows(rows)
            probs[batch] = training.predict_proba(classifier, split)
            bar.update(len(batch))
    return _top_folds(ids, probs, meta, top_k)


def _top_folds(ids: list[str], probs: np.ndarray, meta: dict, top_k: int) -> pd.DataFrame:
    """Long table of the ``top_k`` highest-probability classes per protein."""
    k = min(top_k, probs.shape[1])
    order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    classes = np.asarray(meta["classes"])
    names = meta.get("fold_names") or {}
    folds = classes[order].ravel()
    return pd.DataFrame({
        "id": np.repeat(ids, k),
        "rank": np.tile(np.arange(1, k + 1), len(ids)),
        "fold": folds,
        "probability": np.take_along_axis(probs, order, axis=1).ravel().astype(float),
        "name": [names.get(fold, "") for fold in folds],
    }, columns=PREDICTION_COLUMNS)


def write_predictions(frame: pd.DataFrame, out: str | os.PathLike | None, fmt: str = "tsv") -> None:
    """Write :func:`predict`'s table as TSV or JSON to ``out`` (atomically) or stdout (None/"-").

    Probabilities are rounded to 4 decimals in both formats, so the two carry the same numbers.
    """
    if fmt not in FORMATS:
        raise CoevofoldError(f"--format must be one of {', '.join(FORMATS)}, not '{fmt}'")
    frame = frame[PREDICTION_COLUMNS].assign(probability=frame["probability"].round(4))
    if fmt == "tsv":
        text = frame.to_csv(sep="\t", index=False, float_format="%.4f")
    else:
        text = json.dumps(frame.to_dict(orient="records"), indent=1, ensure_ascii=False) + "\n"
    if out is None or os.fspath(out) == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        write_text(out, text)
