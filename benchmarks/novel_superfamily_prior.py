"""A fold prior for proteins from unseen superfamilies: tried, not kept (README, Results).

Idea: a query from a superfamily the training set lacks is more likely to belong to a fold that
already holds many superfamilies (superfolds keep gaining them), while the classifier learnt
the training proportions. So multiply the model's fold probabilities by
``n_superfamilies(fold) ** a`` and renormalize, where the model answers (no homology hit).

Run after ``coevofold quickstart`` (it reuses the default model, its calibration proxy and the
cached alignments; ~1 min)::

    python benchmarks/novel_superfamily_prior.py

The exponent ``a`` is fitted on the calibration proxy's held-out rows, never on test: it
maximizes the mean over the held-out kinds (fold-, superfamily-, family-like) of the mean
log-probability of the true fold on the rows the model answers. Prints the proxy's system top-1
(homology transfer first) on ``valid`` and each held-out kind for a grid of exponents and the
fitted one, then the final model and system on ``valid`` and the DeepSF test levels with the
fitted prior, and with minus without (paired bootstrap 95 % interval).
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd
from scipy.optimize import minimize_scalar

from coevofold import baselines, benchmark, evaluation, homology, splits, system
from coevofold.prediction import default_model_dir
from coevofold.splits import CALIBRATION_SPLITS, TEST_SPLITS

GRID = (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5)


def log_superfamilies(table: pd.DataFrame, classes: list[str]) -> np.ndarray:
    """log of each fold's number of training superfamilies (at least one)."""
    counts = table[table["split"] == "train"].groupby("fold")["superfamily"].nunique()
    return np.log([max(int(counts.get(c, 0)), 1) for c in classes])


def reweighted(probs: np.ndarray, log_weights: np.ndarray) -> np.ndarray:
    weighted = probs * np.exp(log_weights - log_weights.max())
    return weighted / weighted.sum(axis=1, keepdims=True)


def mean_log_p(probs: np.ndarray, targets: np.ndarray, log_weights: np.ndarray) -> float:
    seen = targets >= 0
    adjusted = reweighted(probs[seen], log_weights)
    return float(np.log(adjusted[np.arange(seen.sum()), targets[seen]] + 1e-12).mean())


def main() -> None:
    argparse.ArgumentParser(description=__doc__.split("\n")[0]).parse_args()
    model_dir = default_model_dir()
    table, store_path = benchmark.cached_deepsf()
    carved = splits.calibration_split(table)
    min_score = homology.read_settings(model_dir).min_score
    meta, proxy, proxy_t = evaluation.model_scores(model_dir / system.PROXY_DIR, store_path, carved,
                                                   (*CALIBRATION_SPLITS, "valid"))
    classes = list(meta["classes"])
    alignment = benchmark.cached_alignment("deepsf", table, False)
    # valid's alignment is against the full training set, a little closer than the proxy's own;
    # it fills the proxy's valid column only, never the fit.
    proxy_alignment = {**benchmark.cached_alignment("deepsf", carved, False, CALIBRATION_SPLITS),
                       "valid": alignment["valid"]}
    proxy_log = log_superfamilies(carved, classes)
    answered = {k: proxy_alignment[k].max(1) < min_score for k in CALIBRATION_SPLITS}

    def held_out_log_p(a: float) -> float:
        return float(np.mean([mean_log_p(proxy[k][answered[k]], proxy_t[k][answered[k]], a * proxy_log)
                              for k in CALIBRATION_SPLITS]))

    fitted = float(minimize_scalar(lambda a: -held_out_log_p(a), bounds=(0.0, 2.0), method="bounded",
                                   options={"xatol": 1e-3}).x)

    def system(probs, scores):
        return baselines.homology_first(probs, scores, min_score)

    def top1(probs, targets):
        seen = targets >= 0
        return 100 * float((probs[seen].argmax(1) == targets[seen]).mean())

    kinds = ("valid", *CALIBRATION_SPLITS)
    print(f"Calibration proxy (trained without the held-out proteins); fitted exponent {fitted:.3f}\n")
    print("| exponent | " + " | ".join(f"system top-1 {k}" for k in kinds)
          + " | mean log p(true), model-answered held-out rows |\n|---|" + "---|" * (len(kinds) + 1))
    for a in sorted({*GRID, fitted}):
        cells = [f"{top1(system(reweighted(proxy[k], a * proxy_log), proxy_alignment[k]), proxy_t[k]):.1f}" for k in kinds]
        print(f"| {a:.3f}{' (fitted)' if a == fitted else ''} | " + " | ".join(cells) + f" | {held_out_log_p(a):.4f} |")

    levels = ("valid", *TEST_SPLITS)
    final_meta, without, targets = evaluation.model_scores(model_dir, store_path, table, levels)
    final_log = log_superfamilies(table, list(final_meta["classes"]))
    with_prior = {s: reweighted(p, fitted * final_log) for s, p in without.items()}
    print("\nFinal model, DeepSF, with the fitted prior: top-1 % [95 % CI; none on valid], "
          "and with minus without (paired bootstrap)\n")
    print("| | " + " | ".join(levels) + " |\n|---|" + "---|" * len(levels))
    for label, as_system in (("model", False), ("system (homology transfer first)", True)):
        row, diff = [], []
        for s in levels:
            a, b = with_prior[s], without[s]
            if as_system:
                a, b = system(a, alignment[s]), system(b, alignment[s])
            if s == "valid":
                row.append(f"{top1(a, targets[s]):.1f}")
            else:
                m = evaluation.evaluate_levels({s: a}, {s: targets[s]}, ks=(1,))[s]["metrics"]["top1"]
                row.append(f"{100 * m['value']:.1f} [{100 * m['ci_low']:.1f}–{100 * m['ci_high']:.1f}]")
            d = evaluation.paired_difference(a, b, targets[s])
            diff.append(f"{100 * d['difference']:+.1f} [{100 * d['ci_low']:+.1f}, {100 * d['ci_high']:+.1f}]")
        print(f"| {label}, with the prior | " + " | ".join(row) + " |")
        print(f"| {label}, with − without | " + " | ".join(diff) + " |")


if __name__ == "__main__":
    main()
