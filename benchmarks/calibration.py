"""Calibration of the default system on DeepSF: held-out rows, baselines on test, band precision.

Run after ``coevofold quickstart`` (it reuses the default model, its calibration proxy and every
cached search; ~3 min on 2 cores)::

    python benchmarks/calibration.py

Everything here calibrates the combined system's top-1 answer (homology transfer first, as
``predict``). The maps are fitted on the proxy's held-out rows, whose combined probabilities are
cross-fitted (each row scored by a combiner fitted without its superfamily). Prints:

1. On held-out rows only: ECE (10 bins) per held-out kind and pooled of the default maps, each
   row's maps fitted without its superfamily (5 folds grouped by superfamily).
2. ECE (bootstrap 95 % interval) per DeepSF test level and pooled for: the raw statement
   (combiner output; alignment rows the validation hit rate); temperature scaling alone (one
   temperature fitted by log-loss on the held-out rows); isotonic regression of the top-1
   probability (fold-like model rows, weighted alike) with the default alignment map; the
   default's maps fitted on every held-out row; the default. Scored for the record: nothing is
   chosen on test rows.
3. Precision of the confidence bands on each test level and on the cross-fitted held-out rows.
4. The cross-level check ``coevofold/system/calibration.py`` cites: a model map fitted on the less
   remote held-out rows, applied to the fold-like ones.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from sklearn.isotonic import IsotonicRegression
from sklearn.model_selection import GroupKFold

from coevofold import metrics
from coevofold.app import runs
from coevofold.data import splits
from coevofold.data.splits import CALIBRATION_SPLITS, TEST_SPLITS
from coevofold.prediction import default_model_dir
from coevofold.system import calibration, combiner, evaluation, homology, preparation
from coevofold.training import recipe, scoring

def _ece_cells(stated: dict, correct: dict, keys) -> list[str]:
    levels = metrics.calibration_levels(stated, correct)
    return [f"{levels[k]['ece']:.3f} [{levels[k]['ece_ci_low']:.3f}–{levels[k]['ece_ci_high']:.3f}]" for k in keys]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model-dir", default=str(default_model_dir()), help="calibrated default model folder")
    parser.add_argument("--held-out-only", action="store_true", help="print 1. alone; no test rows are read")
    args = parser.parse_args()
    model_dir = Path(args.model_dir)
    table, store_path = runs.cached_deepsf()
    held_alignment = preparation.cached_alignment("deepsf", splits.calibration_split(table), False, CALIBRATION_SPLITS)
    settings = homology.read_settings(model_dir)
    ms = settings.min_score
    rows = preparation.held_out(model_dir, store_path, table, recipe.default_members(False), held_alignment, False)
    crossed = combiner.cross_fitted(rows.evidence, rows.targets, rows.superfamilies, rows.weights)
    held_scores, levels, weights = rows.evidence.alignment, rows.levels, rows.weights

    def fit(chosen: np.ndarray | slice = slice(None), as_levels: np.ndarray | None = None) -> calibration.Calibration:
        return calibration.fit(crossed[chosen], held_scores[chosen], rows.targets[chosen],
                               levels[chosen] if as_levels is None else as_levels, ms, 1.0, weights=weights[chosen])

    held_order, _, held_from_alignment = calibration.stated(crossed, held_scores, ms, [], None, 1)
    held_right = held_order[:, 0] == rows.targets
    cross = np.zeros(len(rows.targets))
    for train_i, test_i in GroupKFold(n_splits=5).split(crossed, groups=rows.superfamilies):
        cross[test_i] = fit(train_i).top_k(crossed[test_i], held_scores[test_i], 1)[1][:, 0]
    print("## 1. The default maps on the held-out rows (ECE, 10 bins; maps cross-fitted by superfamily)\n")
    print("| " + " | ".join(f"{k[12:]}-like ({(levels == k).sum()})" for k in CALIBRATION_SPLITS)
          + " | pooled |\n|---|---|---|---|")
    cells = [metrics.expected_calibration_error(cross[levels == k], held_right[levels == k]) for k in CALIBRATION_SPLITS]
    print("| " + " | ".join(f"{c:.3f}" for c in (*cells, metrics.expected_calibration_error(cross, held_right))) + " |")

    if args.held_out_only:
        return
    # 2. the test levels, for the record
    alignment = preparation.cached_alignment("deepsf", table, False)
    scored = scoring.model_scores(model_dir, store_path, table, TEST_SPLITS)
    _, probs, targets = evaluation.system_scores(model_dir, store_path, table, alignment, scored, False)
    default = calibration.load_calibration(model_dir)

    def stated(fitted, level: str):
        return calibration.stated(probs[level], alignment[level], ms, settings.rank_probability, fitted, 1)

    correct = {level: stated(None, level)[0][:, 0] == targets[level] for level in TEST_SPLITS}
    nll_t = calibration.fit_temperature(crossed, rows.targets)
    model_rows = (levels == "calibration_fold") & ~held_from_alignment
    isotonic = IsotonicRegression(out_of_bounds="clip", y_min=0, y_max=1).fit(
        crossed[model_rows].max(1), held_right[model_rows], sample_weight=weights[model_rows])
    every_row = fit(as_levels=np.full(len(levels), "calibration_fold"))
    methods: dict[str, dict] = {}
    for level in TEST_SPLITS:
        order, before, from_alignment = stated(None, level)
        after = stated(default, level)[1][:, 0]
        t_scaled = calibration.tempered(probs[level], nll_t)[np.arange(len(order)), order[:, 0]]
        methods.setdefault("raw (the combiner's output; alignment rows: validation hit rate)", {})[level] = before[:, 0]
        methods.setdefault(f"temperature scaling alone (T = {nll_t:.2f}, log-loss on held-out rows)", {})[level] = \
            np.where(from_alignment, before[:, 0], t_scaled)
        methods.setdefault("isotonic on top-1 p (fold-like rows); default alignment map", {})[level] = \
            np.where(from_alignment, after, isotonic.predict(probs[level][np.arange(len(order)), order[:, 0]]))
        methods.setdefault("the default's maps fitted on every held-out row", {})[level] = stated(every_row, level)[1][:, 0]
        methods.setdefault("**default calibration**", {})[level] = after
    print("\n## 2. ECE of the default system's top-1 on the DeepSF test levels (bootstrap 95 % interval)\n")
    print("| Method | " + " | ".join(metrics.LEVEL_NAMES[level] for level in TEST_SPLITS) + " | pooled |\n|"
          + "---|" * (len(TEST_SPLITS) + 2))
    for name, stated_p in methods.items():
        print(f"| {name} | " + " | ".join(_ece_cells(stated_p, correct, (*TEST_SPLITS, "pooled"))) + " |")

    # 3. bands
    print("\n## 3. Confidence bands: proteins and precision of the top-1 answer\n")
    print("| Data | high (>= 0.9) | medium (>= 0.5) | low |\n|---|---|---|---|")
    band_rows = {f"DeepSF {metrics.LEVEL_NAMES[level]}": (methods["**default calibration**"][level], correct[level])
                 for level in TEST_SPLITS}
    for kind in CALIBRATION_SPLITS:
        band_rows[f"held-out {kind[12:]}-like rows, cross-fitted maps"] = (cross[levels == kind],
                                                                           held_right[levels == kind])
    for name, (p, c) in band_rows.items():
        bands = metrics.band_of(p)
        cells = [f"{(bands == b).sum()}, {c[bands == b].mean():.3f}" if (bands == b).any() else "0, –"
                 for b in ("high", "medium", "low")]
        print(f"| {name} | " + " | ".join(cells) + " |")

    # 4. cross-level check
    less_remote = levels != "calibration_fold"
    carried = fit(less_remote, np.full(less_remote.sum(), "calibration_fold"))
    p = carried.top_k(crossed[model_rows], held_scores[model_rows], 1)[1][:, 0]
    print(f"\n## 4. Maps do not carry to harder levels\n\nmodel map fitted on superfamily- and family-like rows, on "
          f"fold-like model rows: states {p.mean():.3f}, right {held_right[model_rows].mean():.3f}")


if __name__ == "__main__":
    main()
