"""The model folder: what a trained model is on disk, and how it is read back.

A model folder holds :data:`MODEL_WEIGHTS` (safetensors) and :data:`MODEL_META` (JSON: model
config, classes, feature settings), written by :func:`save_model` and read by
:func:`load_model`, never a pickle. Evaluation adds :data:`RESULTS_JSON`, :data:`RESULTS_MD` and
:data:`PREDICTIONS`; training adds :data:`METRICS`. :class:`SplitData` is a split's features in
memory (from the store), what :func:`predict_proba` scores.

Training, evaluation, prediction, reports and the web server depend on this module; it does not
depend on the fit loop (:mod:`coevofold.training`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from coevofold.errors import CoevofoldError
from coevofold.features import store
from coevofold.files import atomic_path, write_text
from coevofold.metrics import encode_labels
from coevofold.models.ensemble import Ensemble
from coevofold.models.registry import Batch, EMBEDDING_INPUTS, FoldClassifier, ModelConfig

MODEL_WEIGHTS = "model.safetensors"
MODEL_META = "model.json"
#: what evaluation writes beside the model (evaluation.evaluate_and_write)
RESULTS_JSON = "results.json"
RESULTS_MD = "results.md"
PREDICTIONS = "predictions.tsv"
#: learning curves written by training (Lightning's CSV logger)
METRICS = "metrics.csv"
#: an ensemble's folder keeps each member's model folder under this subfolder.
ENSEMBLE_MEMBERS = "members"


def is_ensemble(folder: str | os.PathLike) -> bool:
    """Whether ``folder`` is an ensemble's: its members' model folders live in :data:`ENSEMBLE_MEMBERS`."""
    return (Path(folder) / ENSEMBLE_MEMBERS).is_dir()


def has_model(folder: str | os.PathLike) -> bool:
    """Whether ``folder`` holds a saved model: :data:`MODEL_META` with :data:`MODEL_WEIGHTS`, or
    an ensemble's :data:`MODEL_META` (see :func:`is_ensemble`)."""
    folder = Path(folder)
    if not (folder / MODEL_META).is_file():
        return False
    return (folder / MODEL_WEIGHTS).is_file() or is_ensemble(folder)


def read_meta(path: Path) -> dict:
    """A model description (``model.json``), with one clear line if it cannot be read."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise CoevofoldError(f"{path}: unreadable model description ({exc})") from None



@dataclass
class SplitData:
    """One split's inputs in memory, row-aligned with its labels (-1: fold unseen in training)."""

    ids: list[str]
    sequences: list[str]
    maps: torch.Tensor
    embedding: torch.Tensor
    mean: torch.Tensor
    layers: torch.Tensor
    labels: torch.Tensor
    #: labels of the auxiliary levels (superfamily, family), -1 where unseen in training.
    level_labels: dict[str, torch.Tensor] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def from_rows(cls, rows: store.FeatureRows, labels: torch.Tensor | None = None,
                  level_labels: dict[str, torch.Tensor] | None = None) -> SplitData:
        """Split data from store rows; no labels: all -1 (proteins to predict)."""
        if labels is None:
            labels = torch.full((len(rows),), -1, dtype=torch.long)
        return cls(rows.ids, rows.sequences, torch.from_numpy(rows.maps), torch.from_numpy(rows.embedding),
                   torch.from_numpy(rows.mean), torch.from_numpy(rows.layers), labels, level_labels or {})

    def batch(self, index: list[int] | torch.Tensor, uses: tuple[str, ...]) -> Batch:
        index = torch.as_tensor(index)
        batch = Batch()
        if "maps" in uses:
            batch.maps = self.maps[index].float()
        if EMBEDDING_INPUTS & set(uses):
            batch.embedding = self.embedding[index].float()
        if "layers" in uses:
            batch.layers = self.layers[index].float()
        return batch


def _labels(values: pd.Series, classes: list[str]) -> torch.Tensor:
    """Class indices of ``values`` in ``classes`` (:data:`coevofold.metrics.UNSEEN` for others), as a tensor."""
    return torch.from_numpy(encode_labels(values, classes))


def load_split(store_path: str | os.PathLike, table: pd.DataFrame, classes: list[str],
               level_classes: dict[str, list[str]] | None = None) -> SplitData:
    """Features of ``table``'s proteins from the store, with fold labels indexed by ``classes``
    (and auxiliary levels' labels by ``level_classes``).

    Non-finite features are refused: in training they end in a NaN loss, but in validation or
    test they would silently score as predictions.
    """
    rows = store.read_rows(store_path, table["id"].tolist())
    finite = (np.isfinite(rows.maps).all(axis=(1, 2, 3)) & np.isfinite(rows.embedding).all(axis=(1, 2))
              & np.isfinite(rows.mean).all(axis=1) & np.isfinite(rows.layers).all(axis=(1, 2)))
    if not finite.all():
        raise CoevofoldError(
            f"{store_path}: features of '{rows.ids[int(np.argmin(finite))]}' are NaN or infinite "
            f"({int((~finite).sum())} of {len(finite)} proteins); delete the store and extract again"
        )
    levels = {level: _labels(table[level], names) for level, names in (level_classes or {}).items()}
    return SplitData.from_rows(rows, _labels(table["fold"], classes), levels)


# ------------------------------------------------------------------------- saving & loading


def save_model(folder: str | os.PathLike, classifier: FoldClassifier, meta: dict) -> None:
    """Weights as safetensors and everything else as JSON: loading never runs pickled code."""
    folder = Path(folder)
    with atomic_path(folder / MODEL_WEIGHTS) as tmp:
        save_file({k: v.contiguous() for k, v in classifier.state_dict().items()}, str(tmp))
    write_text(folder / MODEL_META, json.dumps(meta, indent=1))


def load_model(folder: str | os.PathLike) -> tuple[FoldClassifier | Ensemble, dict]:
    """Rebuild a saved classifier (or ensemble of them) from JSON descriptions and safetensors weights."""
    folder = Path(folder)
    weights, meta_path = folder / MODEL_WEIGHTS, folder / MODEL_META
    if not has_model(folder):
        raise CoevofoldError(f"{folder}: not a trained coevofold model (needs {MODEL_WEIGHTS} and {MODEL_META})")
    if not weights.is_file():  # has_model: then it is an ensemble
        meta = read_meta(meta_path)
        try:
            names = list(meta["ensemble"]["weights"])
            members = {name: load_model(folder / ENSEMBLE_MEMBERS / name)[0] for name in names}
            return Ensemble(members, meta["ensemble"]["weights"]).eval(), meta
        except (KeyError, TypeError, ValueError) as exc:
            raise CoevofoldError(f"{folder}: damaged ensemble description ({type(exc).__name__}: {exc})") from None
    try:
        meta = json.loads(meta_path.read_text())
        state = load_file(str(weights))
        channels, grid, _ = meta["shapes"]["maps"]
        bins, dim = meta["shapes"]["embedding"]
        sizes = {"fold": len(meta["classes"]), **{k: len(v) for k, v in meta.get("level_classes", {}).items()}}
        classifier = FoldClassifier(ModelConfig(**meta["model"]), sizes, channels, grid, bins, dim,
                                    n_layers=meta["shapes"]["layers"][0])
        classifier.load_state_dict(state)
    except (OSError, ValueError, KeyError, RuntimeError, TypeError, SafetensorError) as exc:
        raise CoevofoldError(f"{folder}: damaged model files ({type(exc).__name__}: {str(exc).splitlines()[0][:120]})") from None
    return classifier.eval(), meta


@torch.inference_mode()
def predict_proba(classifier: FoldClassifier | Ensemble, split: SplitData, batch_size: int = 256) -> np.ndarray:
    """Class probabilities [N, n_classes] for every protein of ``split``."""
    uses = classifier.uses
    classifier.eval()
    out = [torch.softmax(classifier(split.batch(list(range(i, min(i + batch_size, len(split)))), uses)), -1)
           for i in range(0, len(split), batch_size)]
    return torch.cat(out).numpy() if out else np.zeros((0, classifier.n_classes), np.float32)
