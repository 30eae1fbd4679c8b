"""Probabilities a user can read as "how likely is this fold right", and confidence bands.

The default system's raw numbers are not that: the ensemble's softmax over ~1,200 folds spreads
its mass thin where it is right (family level: mean top-1 probability 0.40 at 86 % accuracy),
and alignment rows reported the hit rate of the ``valid`` split, which holds close relatives
only. A calibration map fixes both, and it must be fitted on proteins that look like what users
send: as remote from training as each test level, which ``valid`` is not.

How the map is fitted (:func:`coevofold.system.preparation.fit_system` calls :func:`fit`), and why:

* :func:`coevofold.data.splits.calibration_split` holds out whole superfamilies, whole families and
  family members of the training set; a *proxy* of the model (the same recipe, trained on the
  rest) scores them, and its homology search runs against the rest only. The map learnt from
  the proxy's answers is applied to the model trained on everything: one extra training, where
  cross-fitting would need one per fold of the data.
* Proxy and final model differ in sharpness (on ``valid``, which neither trained on, the final
  model states 0.44 on average at 42.0 % top-1, the proxy 0.39 at 41.0 %), so each model's
  probabilities are first put on one scale: a temperature per model that makes its mean top-1
  probability on ``valid`` equal its top-1 accuracy there (:func:`top1_temperature`).
* Model-sourced answers: logistic regression of "top-1 is right" on the log top-1 probability,
  the log margin to the runner-up, the best alignment score to any training domain and the
  alignment score of the top-1 fold's best member (nearest-neighbour similarity), fitted on the
  fold-like held-out rows only. A query with no significant hit is best read as a remote one,
  and maps do not carry to harder levels: fitted on the superfamily- and family-like rows, the
  map states 0.43 on the fold-like rows, which are right 35 % of the time. Without a homology
  search (``--no-homology``) a second map uses the two probability features alone.
* Alignment-sourced answers (homology transfer): logistic regression on the best hit's score
  (-log10 E), its margin over the next fold's best hit and the model's probability for the
  transferred fold, fitted on every held-out kind's rows whose best hit passes the threshold
  (:data:`ALIGNMENT_MAP_LEVELS`). Fitted on the fold- and superfamily-like ones alone (the
  earlier design: a family-like map alone states 0.998 on fold-like rows right 62 % of the
  time) it understated the family-like transfers, nearly all right: cross-fitted on the held-out
  rows, ECE 0.040 / 0.071 / 0.046 / pooled 0.037 (fold- / superfamily- / family-like) against
  0.039 / 0.064 / 0.022 / 0.029 on every kind (docs/research.md, issue 18).
* Every map weighs each held-out unit the same (:func:`unit_weights`): a held-out superfamily
  of ten proteins, on which the proxy does best, counts as much as one of a single protein, like
  most of DeepSF's fold-level test superfamilies.
* Runners-up: the calibrated top-1 probability leaves ``1 - p1`` for the other folds, shared as
  the scaled model shares them or, for alignment rows, as the held-out hit rates of ranks 2,
  3, ... do. A cumulative minimum keeps ranks in order, so probabilities still sum to at most 1
  and the ranking is the uncalibrated one.

Temperature scaling alone (one temperature fitted by log-loss on the held-out rows,
:func:`fit_temperature`) is the baseline ``benchmarks/calibration.py`` compares against.

Confidence bands (:data:`coevofold.metrics.BANDS`) cut the calibrated top-1 probability; their measured precision
is in the README and ``coevofold predict --help``.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from coevofold.errors import CoevofoldError
from coevofold.files import read_json, write_text
from coevofold.system.homology import rank_hit_rates, ranking

CALIBRATION_FILE = "calibration.json"
#: What a refused system file (calibration.json, combiner.json) tells the user to do.
PREPARE_AGAIN = "re-run the system's preparation"
_EPS = 1e-12


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


def top1_temperature(probs: np.ndarray, targets: np.ndarray) -> float:
    """The temperature at which the mean top-1 probability equals the top-1 accuracy.

    Puts two models' probabilities on one scale from data both were not trained on; the
    ranking is unchanged. Clipped to [e^-3, e^3] where no temperature in between matches.
    """
    from scipy.optimize import brentq

    accuracy = float((np.asarray(probs).argmax(axis=1) == targets).mean())

    def gap(log_t: float) -> float:
        return float(tempered(probs, np.exp(log_t)).max(axis=1).mean() - accuracy)

    if gap(-3.0) * gap(3.0) > 0:
        return float(np.exp(-3.0 if abs(gap(-3.0)) < abs(gap(3.0)) else 3.0))
    return float(np.exp(brentq(gap, -3.0, 3.0)))


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


def standardisation(x: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weighted mean and spread (+ 1e-9) of each feature column: a regression on (x - mean) / spread
    is penalised alike in every feature, whatever its units."""
    mean = np.average(x, axis=0, weights=weights)
    return mean, np.sqrt(np.average((x - mean) ** 2, axis=0, weights=weights)) + 1e-9


def fit_logistic(x: np.ndarray, correct: np.ndarray, names: list[str], C: float = 1.0,
                 weights: np.ndarray | None = None) -> LogisticMap:
    """scikit-learn's logistic regression on standardised features (rows weighted by ``weights``),
    folded back to raw features."""
    from sklearn.linear_model import LogisticRegression

    x = np.asarray(x, dtype=np.float64)
    if len(set(np.asarray(correct).tolist())) < 2:
        raise CoevofoldError(f"calibration needs both right and wrong answers among {len(x)} held-out rows")
    w = np.ones(len(x)) if weights is None else np.asarray(weights, dtype=np.float64)
    mean, scale = standardisation(x, w)
    fitted = LogisticRegression(C=C, max_iter=1000).fit((x - mean) / scale, correct, sample_weight=w)
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

    #: the final model's :func:`top1_temperature` on ``valid``, applied to its probabilities first.
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
        probs = tempered(np.asarray(probs, dtype=np.float64), self.temperature)  # float64: shares sum to <= 1
        order, from_alignment = ranking(probs, scores, self.min_score, k)
        k = order.shape[1]
        if scores is None:
            top1 = self.model_only(model_features(probs, None))
        else:
            top1 = self.model(model_features(probs, scores))
            if from_alignment.any():
                top1[from_alignment] = self.alignment(alignment_features(probs[from_alignment], scores[from_alignment]))
        left = np.clip(1.0 - probs[np.arange(len(probs)), order[:, 0], None], _EPS, None)  # mass beside top-1
        share = np.take_along_axis(probs, order, axis=1)[:, 1:] / left
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
    """Whether :func:`coevofold.system.preparation.fit_system` has calibrated this model folder."""
    return (Path(model_dir) / CALIBRATION_FILE).is_file()


def load_calibration(model_dir: str | os.PathLike) -> Calibration:
    """A model folder's :class:`Calibration`, refused in one line when unreadable."""
    def build(stored: dict) -> Calibration:
        maps = {key: LogisticMap(**stored[key]) for key in ("model", "model_only", "alignment")}
        return Calibration(**{**stored, **maps})

    return read_json(Path(model_dir) / CALIBRATION_FILE, build, "calibration", PREPARE_AGAIN)


def stated(probs: np.ndarray, scores: np.ndarray | None, min_score: float | None, rank_probability: list[float],
           calibration: Calibration | None, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What the system states for each query: (order [N,k], probability [N,k], from_alignment [N]).

    With a ``calibration``, its :meth:`Calibration.top_k`; without one (a folder made before
    calibration existed, or a user's own uncalibrated model), the model's probabilities and, for alignment
    rows (``scores`` at or above ``min_score``), the stored validation hit rate of each rank.
    """
    if calibration is not None:
        return calibration.top_k(probs, scores, k)
    order, from_alignment = ranking(probs, scores if min_score is not None else None, min_score, k)
    k = order.shape[1]
    probability = np.take_along_axis(probs, order, axis=1).astype(float)
    rates = np.full(k, np.nan)
    rates[: len(rank_probability[:k])] = rank_probability[:k]
    probability[from_alignment] = rates
    return order, probability, from_alignment


#: Fewer held-out rows of a kind than this, or only right (or only wrong) ones: the map for that
#: kind is the smoothed hit rate (a constant), not a regression.
MIN_ROWS = 20


def _fit_map(x: np.ndarray, correct: np.ndarray, names: list[str], weights: np.ndarray | None = None) -> LogisticMap:
    correct = np.asarray(correct, dtype=bool)
    if len(x) >= MIN_ROWS and 0 < correct.sum() < len(correct):
        return fit_logistic(x, correct, names, weights=weights)
    weights = np.ones(len(correct)) if weights is None else np.asarray(weights, dtype=float)
    # Laplace on the weighted count (rows weigh 1 on average): never exactly 0 or 1
    rate = (len(correct) * np.average(correct, weights=weights) + 1.0) / (len(correct) + 2.0) if len(correct) else 0.5
    return LogisticMap(list(names), [0.0] * len(names), float(np.log(rate / (1.0 - rate))))


#: Held-out kinds each map is fitted on. The model map: the most remote kind, because it does not
#: carry to harder levels (module docstring). The alignment map: every kind, because users'
#: transfers come from every level and the few fold-like ones (21 on DeepSF, 13 right) are too few
#: to pull a map of their own; on the held-out rows it was the better map at every kind (module
#: docstring).
MODEL_MAP_LEVELS = ("calibration_fold",)
ALIGNMENT_MAP_LEVELS = ("calibration_fold", "calibration_superfamily", "calibration_family")


#: The unit each held-out kind holds out: fold-like rows come in whole superfamilies, superfamily-
#: like rows in whole families, family-like rows one by one (the split's design).
HELD_OUT_UNITS = {"calibration_fold": "superfamily", "calibration_superfamily": "family", "calibration_family": "id"}


def unit_weights(carved, kinds: tuple[str, ...]) -> np.ndarray:
    """Per held-out row of ``kinds`` (in their table order, kind after kind), one over the number
    of rows its unit (:data:`HELD_OUT_UNITS`) holds, scaled to mean 1.

    Each held-out superfamily is one remote family of proteins a user might send; weighted by
    rows, the few large ones (up to ten proteins, those the model does best on) would speak for
    most of them. Weighted per unit, the map learns from held-out superfamilies sized like
    remote ones (most of DeepSF's fold-level test superfamilies have one or two proteins).
    """
    weights = []
    for kind in kinds:
        rows = carved[carved["split"] == kind]
        weights.append(1.0 / rows.groupby(HELD_OUT_UNITS[kind])["id"].transform("size").to_numpy(dtype=float))
    weights = np.concatenate(weights) if weights else np.zeros(0)
    return weights / weights.mean() if len(weights) else weights


def fit(probs: np.ndarray, scores: np.ndarray, targets: np.ndarray, levels: np.ndarray, min_score: float,
        temperature: float = 1.0, fitted_on: dict | None = None, weights: np.ndarray | None = None) -> Calibration:
    """Fit every map of a :class:`Calibration` on held-out rows (never on test rows).

    ``probs``: a model's class probabilities, on the common scale, for proteins it was not
    trained on; ``scores``: their alignment class scores against the same model's training set;
    ``targets``: their fold codes; ``levels``: each row's held-out kind (a name of
    :data:`coevofold.data.splits.CALIBRATION_SPLITS`; maps fall back to every row where their kinds
    are missing); ``min_score``: the homology threshold, and ``temperature`` the scale, of the
    model folder the calibration will serve; ``weights``: each row's weight in the maps
    (:func:`unit_weights`; None: rows weigh the same).
    """

    probs, scores, targets, levels = np.asarray(probs), np.asarray(scores), np.asarray(targets), np.asarray(levels)
    weights = np.ones(len(targets)) if weights is None else np.asarray(weights, dtype=float)
    from_alignment = scores.max(axis=1) >= min_score

    def rows(kinds: tuple[str, ...], source: np.ndarray) -> np.ndarray:
        chosen = source & np.isin(levels, kinds)
        return chosen if chosen.any() else source

    model_right = probs.argmax(axis=1) == targets
    model, model_only = rows(MODEL_MAP_LEVELS, ~from_alignment), rows(MODEL_MAP_LEVELS, np.ones_like(from_alignment))
    aligned = rows(ALIGNMENT_MAP_LEVELS, from_alignment)
    hits = rank_hit_rates(scores[aligned], targets[aligned], min_score)  # [] without aligned rows
    return Calibration(
        temperature=float(temperature),
        min_score=float(min_score),
        model=_fit_map(model_features(probs[model], scores[model]), model_right[model], MODEL_FEATURES, weights[model]),
        model_only=_fit_map(model_features(probs[model_only], None), model_right[model_only], MODEL_ONLY_FEATURES,
                            weights[model_only]),
        alignment=_fit_map(alignment_features(probs[aligned], scores[aligned]),
                           scores[aligned].argmax(axis=1) == targets[aligned], ALIGNMENT_FEATURES, weights[aligned]),
        alignment_rank_share=[rate / max(1.0 - hits[0], _EPS) for rate in hits[1:]],
        fitted_on={"proteins": int(len(targets)), "model_rows": int(model.sum()),
                   "alignment_rows": int(aligned.sum()), **(fitted_on or {})},
    )
