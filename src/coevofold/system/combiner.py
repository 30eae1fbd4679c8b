"""The learned combiner: one probability per candidate fold from every piece of evidence.

The classifier, the template search and Smith-Waterman disagree where it matters: on remote
homologues the classifier's top fold and the best embedding alignment are right on different
queries. Per query, each candidate fold (the union of the top folds of each source) gets the
features of :data:`FEATURE_GROUPS`, a linear score of them, and a softmax over a query's
candidates gives its probabilities (folds outside the candidates get 0). The weights are a
conditional logit (:func:`fit_conditional_logit`) fitted on the calibration split's held-out
training rows, never on valid or test. The probabilities then go through
:mod:`coevofold.system.calibration` like the model's did.

Inputs are put on one scale before they meet the regression: the model's probabilities by its
own temperature on ``valid`` (the proxy the combiner is fitted on is less sharp than the final
model), the searches' scores are already z-scores and -log10 E-values.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from coevofold.errors import CoevofoldError
from coevofold.files import read_json, write_text
from coevofold.system.calibration import PREPARE_AGAIN, LogisticMap, standardisation, tempered

COMBINER_FILE = "combiner.json"
#: Candidate folds per source: the model's top 10, the template search's top 10, Smith-Waterman's
#: top 5 (on held-out rows the true fold is among them for ~90 % of fold-like queries).
CANDIDATES = {"model": 10, "templates": 10, "alignment": 5}
#: The template search's best hits counted per fold ("log top-10 hits": several templates of one
#: fold among the best is evidence a single best z does not carry).
TOP_HITS = 10
#: Each source's features (the ablation drops a group at a time).
FEATURE_GROUPS = {
    "model": ["log model p", "log model rank", "log fold size"],
    "templates": ["best template z", "log template rank", "log top-10 hits"],
    "alignment": ["Smith-Waterman -log10 E"],
}
FEATURES = [name for group in FEATURE_GROUPS.values() for name in group]
_EPS = 1e-8
#: The conditional logit's L2 penalty on standardised weights (:func:`fit_conditional_logit`).
L2 = 1e-3


@dataclass(frozen=True)
class Evidence:
    """Class-level evidence per query, every array [N, n_classes] (rows: queries, columns: the model's folds)."""

    probs: np.ndarray  # the model's probabilities (on the common scale where the regression reads them)
    template_z: np.ndarray  # best template z-score per fold
    template_hits: np.ndarray  # how many of the search's TOP_HITS best hits are of the fold
    alignment: np.ndarray  # Smith-Waterman -log10 E of the fold's best member
    fold_size: np.ndarray  # [n_classes] training domains per fold
    #: the template row behind ``template_z`` (-1: none aligned), what ``predict`` names; None if not kept.
    best_template: np.ndarray | None = None

    def _per_query(self) -> list[str]:
        return [name for name in _PER_QUERY if getattr(self, name) is not None]

    def select(self, rows: np.ndarray) -> Evidence:
        return replace(self, **{name: getattr(self, name)[rows] for name in self._per_query()})

    @staticmethod
    def concat(parts: list[Evidence]) -> Evidence:
        return replace(parts[0], **{name: np.concatenate([getattr(p, name) for p in parts])
                                    for name in parts[0]._per_query()})


#: :class:`Evidence`'s arrays with a row per query.
_PER_QUERY = ("probs", "template_z", "template_hits", "alignment", "best_template")


def _ranks(scores: np.ndarray) -> np.ndarray:
    """Rank (0 = best) of every class per row."""
    order = np.argsort(-scores, axis=1, kind="stable")
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.arange(scores.shape[1])[None, :].repeat(len(scores), 0), axis=1)
    return ranks


def candidates(evidence: Evidence) -> tuple[np.ndarray, np.ndarray]:
    """(query, class) pairs to score: each source's top classes, deduplicated, query by query."""
    picked = np.zeros(evidence.probs.shape, dtype=bool)
    for source, scores in (("model", evidence.probs), ("templates", evidence.template_z), ("alignment", evidence.alignment)):
        top = np.argsort(-scores, axis=1, kind="stable")[:, : CANDIDATES[source]]
        np.put_along_axis(picked, top, True, axis=1)
    return np.nonzero(picked)


def features(evidence: Evidence, query: np.ndarray, klass: np.ndarray) -> np.ndarray:
    """:data:`FEATURES` of each (query, class) candidate."""
    model_rank = _ranks(evidence.probs)[query, klass]
    template_rank = _ranks(evidence.template_z)[query, klass]
    columns = {
        "log model p": np.log(np.clip(evidence.probs[query, klass], _EPS, 1.0)),
        "log model rank": np.log1p(model_rank),
        "log fold size": np.log(np.maximum(evidence.fold_size[klass], 1)),
        "best template z": evidence.template_z[query, klass],
        "log template rank": np.log1p(template_rank),
        "log top-10 hits": np.log1p(evidence.template_hits[query, klass]),
        "Smith-Waterman -log10 E": np.clip(evidence.alignment[query, klass], 0.0, 300.0),
    }
    return np.column_stack([columns[name] for name in FEATURES]).astype(np.float64)


@dataclass(frozen=True)
class Combiner:
    """``combiner.json``: the regression and the model temperature its inputs assume."""

    #: the final model's temperature on ``valid`` (:func:`coevofold.system.calibration.top1_temperature`).
    model_temperature: float
    weights: LogisticMap
    fitted_on: dict = field(default_factory=dict)

    def probabilities(self, evidence: Evidence) -> np.ndarray:
        """The system's fold probabilities [N, n_classes] from ``evidence`` holding a model's raw
        probabilities (put on the common scale here) and the searches' scores."""
        tempered_probs = tempered(np.asarray(evidence.probs, dtype=np.float64), self.model_temperature)
        return combine(self.weights, replace(evidence, probs=tempered_probs))

    def save(self, folder: str | os.PathLike) -> None:
        write_text(Path(folder) / COMBINER_FILE, json.dumps(asdict(self), indent=1) + "\n")


def _softmax_by_query(logit: np.ndarray, query: np.ndarray, n_queries: int) -> tuple[np.ndarray, np.ndarray]:
    """Each candidate's softmax share among its query's candidates, and its log-share
    (``query`` in 0 .. ``n_queries`` - 1; the peak subtracted first, so no exp overflows)."""
    peak = np.full(n_queries, -np.inf)
    np.maximum.at(peak, query, logit)
    value = np.exp(logit - peak[query])
    total = np.bincount(query, weights=value, minlength=n_queries)
    return value / total[query], logit - peak[query] - np.log(total[query])


def combine(weights: LogisticMap, evidence: Evidence) -> np.ndarray:
    """Softmax over each query's candidates of the regression's logit; 0 elsewhere."""
    query, klass = candidates(evidence)
    x = features(evidence, query, klass)
    used = [FEATURES.index(name) for name in weights.features]
    logit = x[:, used] @ np.asarray(weights.coef) + weights.intercept
    out = np.zeros(evidence.probs.shape, dtype=np.float64)
    out[query, klass] = _softmax_by_query(logit, query, len(out))[0]
    return out


def fit_weights(evidence: Evidence, targets: np.ndarray, weights: np.ndarray | None = None,
                groups: tuple[str, ...] = tuple(FEATURE_GROUPS)) -> LogisticMap:
    """The conditional logit over the candidates of held-out rows; ``weights`` per query, ``groups``
    the feature groups to use (the ablation leaves some out)."""
    query, klass = candidates(evidence)
    names = [name for group in groups for name in FEATURE_GROUPS[group]]
    x = features(evidence, query, klass)[:, [FEATURES.index(name) for name in names]]
    return fit_conditional_logit(x, query, klass == np.asarray(targets)[query], names, weights)


def fit_conditional_logit(x: np.ndarray, query: np.ndarray, correct: np.ndarray, names: list[str],
                          weights: np.ndarray | None = None, l2: float = L2) -> LogisticMap:
    """Weights maximising each query's log-probability of its true candidate under the softmax
    :func:`combine` applies (McFadden's conditional logit; ``weights`` per query, an L2 penalty
    ``l2`` on the standardised weights), folded back to raw features; the intercept is 0 (a
    softmax does not see it).

    Why not a logistic regression of "this candidate is right": it treats candidates as
    independent, so it spends its fit on telling easy queries' many wrong candidates apart,
    not on ranking each query's true fold first, which is what the softmax is then asked to do.
    Cross-fitted by superfamily on the held-out rows, top-1 43.3 / 70.4 / 97.1 % (fold- /
    superfamily- / family-like, the logistic regression) against 45.5 / 70.6 / 96.9 (this; L2 0 /
    1e-4 / 1e-3 / 1e-2 / 1e-1: 44.3 / 44.6 / 45.5 / 45.8 / 44.8 at fold-like rows) and, with
    "log top-10 hits", 45.6 / 71.2 / 96.9 (docs/research.md, issue 18). Queries whose true fold
    is not among their candidates tell nothing about the ranking and are left out.
    """
    from scipy.optimize import minimize

    x = np.asarray(x, dtype=np.float64)
    correct = np.asarray(correct, dtype=bool)
    ids, row_query = np.unique(query, return_inverse=True)
    query_weight = np.ones(len(ids)) if weights is None else np.asarray(weights, dtype=np.float64)[ids]
    query_weight = query_weight * (np.bincount(row_query, weights=correct, minlength=len(ids)) > 0)
    if not query_weight.any():
        raise CoevofoldError(f"the combiner needs held-out rows whose true fold is among their candidates ({len(ids)} had none)")
    row_weight = query_weight[row_query] / query_weight.sum()
    mean, scale = standardisation(x, row_weight)
    standard = (x - mean) / scale

    def loss(beta: np.ndarray) -> tuple[float, np.ndarray]:
        share, log_share = _softmax_by_query(standard @ beta, row_query, len(ids))
        log_likelihood = (row_weight * correct * log_share).sum()
        # gradient of the weighted log-likelihood: each query's true row minus its softmax average
        grad = standard.T @ (row_weight * (correct - share))
        return -log_likelihood + l2 * beta @ beta, -grad + 2 * l2 * beta

    beta = minimize(loss, np.zeros(x.shape[1]), jac=True, method="L-BFGS-B").x
    return LogisticMap(list(names), (beta / scale).tolist(), 0.0)


def cross_fitted(evidence: Evidence, targets: np.ndarray, groups_of_rows: np.ndarray, weights: np.ndarray | None = None,
                 feature_groups: tuple[str, ...] = tuple(FEATURE_GROUPS), n_splits: int = 5) -> np.ndarray:
    """Out-of-fold combined probabilities of held-out rows: each row scored by a regression fitted
    without its superfamily (``groups_of_rows``), so the calibration fitted on them sees what
    unseen queries get, not what the regression memorised."""
    from sklearn.model_selection import GroupKFold

    out = np.zeros(evidence.probs.shape, dtype=np.float64)
    n_splits = min(n_splits, len(set(groups_of_rows)))
    if n_splits < 2:
        raise CoevofoldError("the combiner needs held-out rows from at least two superfamilies")
    for train, held in GroupKFold(n_splits=n_splits).split(targets, groups=groups_of_rows):
        fitted = fit_weights(evidence.select(train), targets[train], None if weights is None else weights[train],
                             feature_groups)
        out[held] = combine(fitted, evidence.select(held))
    return out


def has_combiner(folder: str | os.PathLike) -> bool:
    return (Path(folder) / COMBINER_FILE).is_file()


def _known(weights: LogisticMap) -> LogisticMap:
    """The weights, if this coevofold computes every feature they name (an older combiner may
    name one since dropped)."""
    unknown = [name for name in weights.features if name not in FEATURES]
    if unknown:
        raise ValueError(f"feature '{unknown[0]}' is no longer computed")
    return weights


def load_combiner(folder: str | os.PathLike) -> Combiner:
    return read_json(Path(folder) / COMBINER_FILE, lambda stored: Combiner(
        model_temperature=float(stored["model_temperature"]), weights=_known(LogisticMap(**stored["weights"])),
        fitted_on=stored.get("fitted_on", {})), "combiner", PREPARE_AGAIN)
