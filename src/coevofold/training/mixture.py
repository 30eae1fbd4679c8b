"""Ensembles of trained members: one mixture weight per recipe, fitted on ``valid``; whether a
folder already holds a given ensemble."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pandas as pd

from coevofold.errors import CoevofoldError
from coevofold.features import store
from coevofold.files import writable_dir, write_text
from coevofold.training.checkpoint import (
    ENSEMBLE_MEMBERS,
    MODEL_META,
    MODEL_WEIGHTS,
    load_model,
    load_split,
    predict_proba,
    read_meta,
)
from coevofold.training.trainer import TrainConfig, plm_label, train


def seed_groups(members: dict[str, TrainConfig]) -> list[list[str]]:
    """Members that differ only in their seed (or progress, threads and device), in order of first appearance.

    An ensemble fits one weight per group, shared equally by its seeds: a weight per seed would
    let ``valid`` pick lucky seeds, and the grid search grows as (steps + 1) ** groups.
    """
    groups: dict[str, list[str]] = {}
    for name, config in members.items():
        groups.setdefault(json.dumps(_recipe(asdict(replace(config, seed=0))), sort_keys=True), []).append(name)
    return list(groups.values())


def _recipe(described: dict) -> dict:
    """A member's configuration without what does not change the model (progress, threads, device)."""
    return {k: v for k, v in described.items() if k not in ("progress", "threads", "device")}


def trained_as(folder: str | os.PathLike, members: dict[str, TrainConfig], settings: dict) -> bool:
    """Whether ``folder`` holds the ensemble of ``members`` trained on features of ``settings``.

    Progress, thread and device settings do not change a model, so they are not compared.
    """
    path = Path(folder) / MODEL_META
    if not path.is_file():
        return False
    meta = read_meta(path)
    stored = meta.get("ensemble", {}).get("members", {})
    return meta.get("feature_settings") == settings and set(stored) == set(members) and all(
        _recipe(stored[name]) == _recipe(json.loads(json.dumps(asdict(config)))) for name, config in members.items())


def simplex_grid(n: int, steps: int = 10) -> np.ndarray:
    """Every mixture of ``n`` weights on a 1/``steps`` grid that sums to 1, one per row."""
    grid = np.arange(steps + 1) / steps
    combos = np.array(np.meshgrid(*[grid] * n, indexing="ij")).reshape(n, -1).T
    return combos[np.isclose(combos.sum(axis=1), 1.0)]


def fit_ensemble_weights(probs: list[np.ndarray], targets: np.ndarray, steps: int = 10) -> np.ndarray:
    """Mixture weights on a 1/``steps`` grid of the simplex with the best top-1 on ``targets``,
    ties broken by log-loss (then by the earlier grid point)."""
    seen = targets >= 0
    best, best_key = None, None
    for combo in simplex_grid(len(probs), steps):
        mixed = sum(w * p for w, p in zip(combo, probs))[seen]
        key = (float((mixed.argmax(1) == targets[seen]).mean()),
               float(np.log(mixed[np.arange(len(mixed)), targets[seen]] + 1e-12).mean()))
        if best_key is None or key > best_key:
            best, best_key = combo, key
    return best


def _member_done(folder: Path, config: TrainConfig, settings: dict, init_from: Path | None) -> bool:
    """Whether ``folder`` holds this member finished: the same recipe, features and warm start."""
    if not (folder / MODEL_WEIGHTS).is_file() or not (folder / MODEL_META).is_file():
        return False
    meta = read_meta(folder / MODEL_META)
    asked = json.loads(json.dumps(asdict(config)))
    return (meta.get("feature_settings") == settings and meta.get("model") == asked.pop("model")
            and _recipe(meta.get("train", {})) == _recipe(asked)
            and (meta.get("warm_start") is None) == (init_from is None))


def train_ensemble(store_path: str | os.PathLike, table: pd.DataFrame, run_dir: str | os.PathLike,
                   members: dict[str, TrainConfig], fold_names: dict[str, str] | None = None,
                   warm_from: str | os.PathLike | None = None) -> Path:
    """Train each member (or reuse a finished one) and fit the mixture weights on ``valid``,
    one per :func:`seed_groups` group.

    ``run_dir/members/NAME`` holds each member's ordinary model folder; ``run_dir/model.json``
    the weights and every member's configuration. Loading it with :func:`load_model` gives an
    :class:`~coevofold.models.ensemble.Ensemble`. ``warm_from``: an ensemble of the same members
    (the calibration proxy) whose members each member starts from (:func:`~coevofold.training.trainer.warm_start`).
    A member folder left by an interrupted run resumes; one of another recipe is trained afresh.
    """
    run_dir = writable_dir(run_dir)
    settings = store.read_settings(store_path)
    loaded = {}
    for name, config in members.items():
        folder = run_dir / ENSEMBLE_MEMBERS / name
        init_from = None if warm_from is None else Path(warm_from) / ENSEMBLE_MEMBERS / name
        if not _member_done(folder, config, settings, init_from):
            if (folder / MODEL_META).is_file():  # finished, but another recipe: not a run to resume
                shutil.rmtree(folder)
            train(store_path, table, folder, config, fold_names, init_from)
        loaded[name] = load_model(folder)
    metas = [meta for _, meta in loaded.values()]
    if any(meta["classes"] != metas[0]["classes"] for meta in metas):
        raise CoevofoldError(f"{run_dir}: members were trained on different folds")
    valid = load_split(store_path, table[table["split"] == "valid"], metas[0]["classes"])
    probs = dict(zip(members, (predict_proba(model, valid) for model, _ in loaded.values())))
    groups = seed_groups(members)
    group_weights = fit_ensemble_weights([np.mean([probs[name] for name in group], axis=0) for group in groups],
                                         valid.labels.numpy())
    shared = {name: weight / len(group) for group, weight in zip(groups, group_weights) for name in group}
    weights = [shared[name] for name in members]
    mixed = sum(w * probs[name] for w, name in zip(weights, members))
    meta = {key: metas[0][key] for key in ("classes", "shapes", "fold_names", "train_counts", "feature_settings")}
    meta["plm"] = plm_label(store_path)
    if fold_names:
        meta["fold_names"] = {c: fold_names.get(c, "") for c in meta["classes"]}
    meta.update(
        model={"name": "ensemble"},
        level_classes={},
        ensemble={"weights": {name: float(w) for name, w in zip(members, weights)},
                  "members": {name: json.loads(json.dumps(asdict(config))) for name, config in members.items()}},
        best_val_acc=float((mixed.argmax(1) == valid.labels.numpy()).mean()),
        epochs=sum(meta["epochs"] for meta in metas),
        warm_start=None if warm_from is None else str(warm_from),
    )
    write_text(run_dir / MODEL_META, json.dumps(meta, indent=1))
    return run_dir
