"""Probabilities a user can read as "how likely is this fold right", and confidence bands.

The default system's raw numbers are not that: the ensemble's softmax over ~1,200 folds spreads
its mass thin where it is right (family level: mean top-1 probability 0.40 at 86 % accuracy),
and alignment rows reported the hit rate of the ``valid`` split, which holds close relatives
only. A calibration map fixes both, and it must be fitted on proteins that look like what users
send: as remote from training as each test level, which ``valid`` is not.

How the map is fitted (:func:`fit_calibration`), and why:

* :func:`coevofold.splits.calibration_split` holds out whole superfamilies, whole families and
  family members of the training set; a *proxy* of the model (the same recipe, trained on the
  rest) scores them, and its homology search runs against the rest only. The map learnt from
  the proxy's answers is applied to the model trained on everything. One extra training, where
  cross-fitting would need one per fold of the data; the proxy, with 83 % of the training set,
  is slightly less accurate than the final model, so the map errs on the modest side.
* Model-sourced answers: logistic regression of "top-1 is right" on the log top-1 probability,
  the log margin to the runner-up, the best alignment score to any training domain and the
  alignment score of the top-1 fold's best member (nearest-neighbour similarity: a remote query
  has no relative at all, a family-level one has, and whether the relative agrees with the
  model matters most). Without a homology search (``--no-homology``) a second map uses the two
  probability features alone.
* Alignment-sourced answers (homology transfer): logistic regression on the best hit's score
  (-log10 E), its margin over the next fold's best hit and the model's probability for the
  transferred fold.
* Runners-up: the calibrated top-1 probability leaves ``1 - p1`` for the other folds, shared as
  the temperature-scaled model (temperature scaling is the baseline calibrator) or, for
  alignment rows, as the held-out hit rates of ranks 2, 3, ... share it. A cumulative minimum
  keeps ranks in order, so probabilities still sum to at most 1 and the ranking is unchanged.

Confidence bands (:data:`BANDS`) cut the calibrated top-1 probability; their measured precision
is in the README and ``coevofold predict --help``.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from coevofold.errors import CoevofoldError
from coevofold.files import write_text

CALIBRATION_FILE = "calibration.json"
#: Equal-width bins of expected calibration error (the issue's and most papers' choice).
ECE_BINS = 10
#: Confidence bands on the calibrated probability of a row: (name, lowest probability).
BANDS = (("high", 0.9), ("medium", 0.5), ("low", 0.0))
_EPS = 1e-12


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


def fit_temperature(probs: np.ndarray, targets: np.ndarray) -> float:
    """The temperature T minimising the log-loss of softmax(log p / T) on held-out rows."""
    from scipy.optimize import minimize_scalar

    logp = np.log(np.clip(probs, _EPS, 1.0))
    rows = np.arange(len(targets))

    def loss(log_t: float) -> float:
        z = logp / np.exp(log_t)
        z = z - z.max(axis=1, keepdims=True)
        return float(-(z[rows, targets] - np.log(np.exp(z).sum(axis=1))).mean())

    return float(np.exp(minimize_scalar(loss, bounds=(-3.0, 3.0), method="bounded").x))


def tempered(probs: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(log p / T): the same ranking, sharper (T < 1) or flatter (T > 1)."""
    z = np.log(np.clip(probs, _EPS, 1.0)) / temperature
    z = np.exp(z - z.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


@dataclass(frozen=True)
class LogisticMap:
    """P(top-1 right) = sigmoid(features @ coef + intercept), stored as plain numbers (JSON)."""

    features: list[str]
    coef: list[float]
    intercept: float

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-(np.asarray(x, dtype=np.float64) @ np.asarray(self.coef) + self.intercept)))


def fit_logistic(x: np.ndarray, correct: np.ndarray, names: list[str], C: float = 1.0) -> LogisticMap:
    """scikit-learn's logistic regression on standardised features, folded back to raw features."""
    from sklearn.linear_model import LogisticRegression

    x = np.asarray(x, dtype=np.float64)
    if len(set(np.asarray(correct).tolist())) < 2:
        raise CoevofoldError(f"calibration needs both right and wrong answers among {len(x)} held-out rows")
    mean, scale = x.mean(axis=0), x.std(axis=0) + 1e-9
    fitted = LogisticRegression(C=C, max_iter=1000).fit((x - mean) / scale, correct)
    coef = fitted.coef_[0] / scale
    return LogisticMap(list(names), coef.tolist(), float(fitted.intercept_[0] - coef @ mean))


MODEL_FEATURES = ["log p1", "log p1 - log p2", "best alignment score", "alignment score of top-1 fold"]
MODEL_ONLY_FEATURES = MODEL_FEATURES[:2]
ALIGNMENT_FEATURES = ["best alignment score", "score margin to next fold", "log model p of that fold"]


def model_features(probs: np.ndarray, scores: np.ndarray | None) -> np.ndarray:
    """:data:`MODEL_FEATURES` per query (the first two alone when ``scores`` is None)."""
    order = np.argsort(-probs, axis=1, kind="stable")[:, :2]
    top = np.log(np.clip(np.take_along_axis(probs, order, axis=1), _EPS, 1.0))
    columns = [top[:, 0], top[:, 0] - top[:, 1]]
    if scores is not None:
        columns += [scores.max(axis=1), np.take_along_axis(scores, order[:, :1], axis=1)[:, 0]]
    return np.column_stack(columns)


def alignment_features(probs: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """:data:`ALIGNMENT_FEATURES` per query."""
    order = np.argsort(-scores, axis=1, kind="stable")[:, :2]
    best = np.take_along_axis(scores, order, axis=1)
    model_p = np.take_along_axis(probs, order[:, :1], axis=1)[:, 0]
    return np.column_stack([best[:, 0], best[:, 0] - best[:, 1], np.log(np.clip(model_p, _EPS, 1.0))])


@dataclass(frozen=True)
class Calibration:
    """``calibration.json``: the maps, and what they were fitted on (see the module docstring)."""

    temperature: float
    #: the homology threshold (-log10 E) that decides a row's source; the model folder's own.
    min_score: float
    model: LogisticMap
    model_only: LogisticMap
    alignment: LogisticMap
    #: P(rank r right | rank 1 wrong) for alignment rows, r = 2, 3, ...
    alignment_rank_share: list[float]
    #: held-out proteins per calibration split, and anything else worth keeping with the map.
    fitted_on: dict = field(default_factory=dict)

    def top_k(self, probs: np.ndarray, scores: np.ndarray | None, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The system's ranking and calibrated probabilities: (order [N,k], probability [N,k], from_alignment [N]).

        ``probs`` are the model's, ``scores`` the alignment class scores or None (model only).
        """
        from coevofold.baselines import homology_first

        probs = np.asarray(probs, dtype=np.float64)  # float32 shares can sum past 1 by rounding
        k = min(k, probs.shape[1])
        if scores is None:
            from_alignment = np.zeros(len(probs), dtype=bool)
            order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
            top1 = self.model_only(model_features(probs, None))
        else:
            from_alignment = scores.max(axis=1) >= self.min_score
            order = np.argsort(-homology_first(probs, scores, self.min_score), axis=1, kind="stable")[:, :k]
            top1 = self.model(model_features(probs, scores))
            if from_alignment.any():
                top1[from_alignment] = self.alignment(alignment_features(probs[from_alignment], scores[from_alignment]))
        share = tempered(probs, self.temperature)
        share = np.take_along_axis(share, order, axis=1)[:, 1:] / np.clip(1.0 - share[np.arange(len(probs)), order[:, 0], None], _EPS, None)
        if from_alignment.any():
            rank_share = np.zeros(k - 1)
            stored = self.alignment_rank_share[: k - 1]
            rank_share[: len(stored)] = stored
            share[from_alignment] = rank_share
        probability = np.column_stack([top1, (1.0 - top1)[:, None] * np.clip(share, 0.0, 1.0)])
        return order, np.minimum.accumulate(probability, axis=1), from_alignment

    def save(self, model_dir: str | os.PathLike) -> None:
        write_text(Path(model_dir) / CALIBRATION_FILE, json.dumps(asdict(self), indent=1) + "\n")


def has_calibration(model_dir: str | os.PathLike) -> bool:
    return (Path(model_dir) / CALIBRATION_FILE).is_file()


def load_calibration(model_dir: str | os.PathLike) -> Calibration:
    """A model folder's :class:`Calibration`, refused in one line when unreadable."""
    path = Path(model_dir) / CALIBRATION_FILE
    try:
        stored = json.loads(path.read_text())
        maps = {key: LogisticMap(**stored[key]) for key in ("model", "model_only", "alignment")}
        return Calibration(**{**stored, **maps})
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise CoevofoldError(f"{path}: unreadable calibration ({exc!r}); re-run fit_calibration") from None



def stated(probs: np.ndarray, scores: np.ndarray | None, min_score: float | None, rank_probability: list[float],
           calibration: Calibration | None, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What the system states for each query: (order [N,k], probability [N,k], from_alignment [N]).

    With a ``calibration``, its :meth:`Calibration.top_k`; without one (a folder calibrated
    before this existed, or a user's own model), the model's probabilities and, for alignment
    rows (``scores`` at or above ``min_score``), the stored validation hit rate of each rank.
    """
    from coevofold.baselines import homology_first

    if calibration is not None:
        return calibration.top_k(probs, scores, k)
    k = min(k, probs.shape[1])
    searched = scores is not None and min_score is not None
    ranking = homology_first(probs, scores, min_score) if searched else probs
    order = np.argsort(-ranking, axis=1, kind="stable")[:, :k]
    probability = np.take_along_axis(probs, order, axis=1).astype(float)
    from_alignment = scores.max(axis=1) >= min_score if searched else np.zeros(len(probs), dtype=bool)
    rates = np.full(k, np.nan)
    rates[: len(rank_probability[:k])] = rank_probability[:k]
    probability[from_alignment] = rates
    return order, probability, from_alignment

#: Fewer held-out rows of a kind than this, or only right (or only wrong) ones: the map for that
#: kind is the smoothed hit rate (a constant), not a regression.
MIN_ROWS = 20


def _fit_map(x: np.ndarray, correct: np.ndarray, names: list[str]) -> LogisticMap:
    correct = np.asarray(correct, dtype=bool)
    if len(x) >= MIN_ROWS and 0 < correct.sum() < len(correct):
        return fit_logistic(x, correct, names)
    rate = (correct.sum() + 1.0) / (len(correct) + 2.0)  # Laplace: never exactly 0 or 1
    return LogisticMap(list(names), [0.0] * len(names), float(np.log(rate / (1.0 - rate))))


def fit(probs: np.ndarray, scores: np.ndarray, targets: np.ndarray, min_score: float,
        fitted_on: dict | None = None) -> Calibration:
    """Fit every map of a :class:`Calibration` on held-out rows (never on test rows).

    ``probs``: a model's class probabilities on proteins it was not trained on; ``scores``: their
    alignment class scores against the same model's training set; ``targets``: their fold codes;
    ``min_score``: the homology threshold of the model folder the calibration will serve.
    """
    probs, scores, targets = np.asarray(probs), np.asarray(scores), np.asarray(targets)
    from_alignment = scores.max(axis=1) >= min_score
    model_right = probs.argmax(axis=1) == targets
    model = ~from_alignment
    aligned_order = np.argsort(-scores[from_alignment], axis=1, kind="stable")[:, :20]
    hits = (aligned_order == targets[from_alignment, None]).mean(axis=0) if from_alignment.any() else np.zeros(20)
    return Calibration(
        temperature=fit_temperature(probs, targets),
        min_score=float(min_score),
        model=_fit_map(model_features(probs[model], scores[model]), model_right[model], MODEL_FEATURES),
        model_only=_fit_map(model_features(probs, None), model_right, MODEL_ONLY_FEATURES),
        alignment=_fit_map(alignment_features(probs[from_alignment], scores[from_alignment]),
                           aligned_order[:, 0] == targets[from_alignment] if from_alignment.any() else np.zeros(0, bool),
                           ALIGNMENT_FEATURES),
        alignment_rank_share=(hits[1:] / max(1.0 - hits[0], _EPS)).tolist() if from_alignment.any() else [],
        fitted_on={"proteins": int(len(targets)), "alignment_rows": int(from_alignment.sum()), **(fitted_on or {})},
    )


#: Where :func:`fit_calibration` trains the proxy, inside the model folder it calibrates.
PROXY_DIR = "calibration_proxy"


def fit_calibration(model_dir: str | os.PathLike, store_path: str | os.PathLike, table,
                    members: dict, held_out_alignment: dict[str, np.ndarray] | None = None,
                    progress: bool = True) -> Calibration:
    """Calibrate ``model_dir`` (an ensemble of ``members`` with homology files) and save the map.

    ``table`` is the labelled table the model was trained on. A proxy of the same ``members``
    is trained on its training rows minus :func:`coevofold.splits.calibration_split`'s held-out
    rows (in ``model_dir/calibration_proxy``, reused when there), and :func:`fit` learns the map
    from the proxy's answers on those rows; test rows play no part. ``held_out_alignment`` takes
    the held-out rows' alignment class scores against the proxy's training rows when the caller
    has them (``quickstart`` caches them), by split of ``calibration_split(table)``.
    """
    from coevofold import baselines, checkpoint, evaluation, homology, splits, training

    table = table[table["split"] != "excluded"]
    model_dir = Path(model_dir)
    if not homology.has_homology(model_dir):
        raise CoevofoldError(f"{model_dir}: calibrate after homology.fit_homology (the map needs its threshold)")
    min_score = homology.read_settings(model_dir).min_score
    carved = splits.calibration_split(table)
    held_out = [s for s in splits.CALIBRATION_SPLITS if (carved["split"] == s).any()]
    if not held_out:
        raise CoevofoldError("calibration: the training set is too small to hold out superfamilies, families or members")
    proxy = training.train_ensemble(store_path, carved, model_dir / PROXY_DIR, members)
    meta, probs, targets = evaluation.model_scores(proxy, store_path, carved, held_out)
    if meta["classes"] != checkpoint.read_meta(model_dir / checkpoint.MODEL_META)["classes"]:
        raise CoevofoldError(f"{model_dir}: the calibration proxy's folds are not the model's")
    if held_out_alignment is None:
        held_out_alignment = baselines.alignment_scores(carved, held_out, progress=progress)[1]
    calibration = fit(np.concatenate([probs[s] for s in held_out]),
                      np.concatenate([held_out_alignment[s] for s in held_out]),
                      np.concatenate([targets[s] for s in held_out]), min_score,
                      fitted_on={s: int(len(targets[s])) for s in held_out})
    calibration.save(model_dir)
    return calibration
