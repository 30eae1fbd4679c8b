"""Calibration of the default system on DeepSF: baselines beside the default map, band precision.

Run after ``coevofold quickstart`` (it reuses the default model, its calibration proxy and the
cached alignments; ~2 min on 2 cores)::

    python benchmarks/calibration.py

Prints, for the top-1 answer of the default system (homology transfer first, as ``predict``):

1. ECE (10 bins, bootstrap 95 % interval) per DeepSF test level and pooled for: the raw
   statement; temperature scaling alone (one temperature fitted by log-loss on every held-out
   row; alignment rows keep the validation hit rate); isotonic regression of the top-1
   probability (scikit-learn, on the rows the default's model map uses, weighted alike); the default's logistic
   maps fitted on every held-out row (no choice of level); the default calibration.
   Every map weighs each held-out unit (superfamily, family, member) the same:
   ``calibration.unit_weights``.
2. Precision of the confidence bands on each test level, and on the fold-like held-out rows with
   the maps cross-fitted (5 folds grouped by superfamily: each row's map never saw its superfamily);
   then the logistic and isotonic maps compared on the held-out rows alone (how the map was chosen).
3. The cross-level checks ``coevofold/system/calibration.py`` cites: maps fitted on the less remote
   held-out rows, applied to the fold-like ones.
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
from coevofold.system import calibration, homology, preparation
from coevofold.training import scoring


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model-dir", default=str(default_model_dir()), help="calibrated default model folder")
    args = parser.parse_args()
    model_dir = Path(args.model_dir)
    table, store_path = runs.cached_deepsf()
    carved = splits.calibration_split(table)
    held_alignment = preparation.cached_alignment("deepsf", carved, False, CALIBRATION_SPLITS)
    test_alignment = preparation.cached_alignment("deepsf", table, False)
    settings = homology.read_settings(model_dir)
    default = calibration.load_calibration(model_dir)
    _, proxy_probs, proxy_targets = scoring.model_scores(model_dir / preparation.PROXY_DIR, store_path, carved,
                                                            (*CALIBRATION_SPLITS, "valid"))
    _, probs, targets = scoring.model_scores(model_dir, store_path, table, TEST_SPLITS)
    proxy_t = calibration.top1_temperature(proxy_probs["valid"], proxy_targets["valid"])
    held = {
        "probs": calibration.tempered(np.concatenate([proxy_probs[s] for s in CALIBRATION_SPLITS]), proxy_t),
        "raw": np.concatenate([proxy_probs[s] for s in CALIBRATION_SPLITS]),
        "scores": np.concatenate([held_alignment[s] for s in CALIBRATION_SPLITS]),
        "targets": np.concatenate([proxy_targets[s] for s in CALIBRATION_SPLITS]),
        "levels": np.concatenate([np.full(len(proxy_targets[s]), s) for s in CALIBRATION_SPLITS]),
        "weights": calibration.unit_weights(carved, CALIBRATION_SPLITS),
    }
    held_rows = carved[carved["split"].isin(CALIBRATION_SPLITS)]
    held["superfamily"] = np.concatenate([held_rows.loc[held_rows["split"] == s, "superfamily"].to_numpy()
                                          for s in CALIBRATION_SPLITS])
    ms = settings.min_score

    def stated(fitted, level: str, k: int = 1):
        return calibration.stated(probs[level], test_alignment[level], ms, settings.rank_probability, fitted, k)

    correct = {level: stated(None, level)[0][:, 0] == targets[level] for level in TEST_SPLITS}

    # 1. baselines beside the default
    nll_t = calibration.fit_temperature(held["raw"], held["targets"])
    fold_like = held["levels"] == "calibration_fold"
    model_rows = fold_like & (held["scores"].max(1) < ms)
    isotonic = IsotonicRegression(out_of_bounds="clip", y_min=0, y_max=1).fit(
        held["probs"][model_rows].max(1), held["probs"][model_rows].argmax(1) == held["targets"][model_rows],
        sample_weight=held["weights"][model_rows])
    pooled_maps = calibration.fit(held["probs"], held["scores"], held["targets"],
                                  np.full(len(held["targets"]), "calibration_fold"), ms, default.temperature,
                                  weights=held["weights"])
    methods = {}
    for level in TEST_SPLITS:
        order, before, from_alignment = stated(None, level)
        t_scaled = calibration.tempered(probs[level], nll_t)[np.arange(len(order)), order[:, 0]]
        iso = isotonic.predict(calibration.tempered(probs[level], default.temperature).max(1))
        after = stated(default, level)[1][:, 0]
        methods.setdefault("raw (what predict stated before)", {})[level] = before[:, 0]
        methods.setdefault(f"temperature scaling alone (T = {nll_t:.2f}, log-loss on held-out rows)", {})[level] = \
            np.where(from_alignment, before[:, 0], t_scaled)
        methods.setdefault("isotonic on top-1 p (fold-like rows); default alignment map", {})[level] = \
            np.where(from_alignment, after, iso)
        methods.setdefault("logistic maps fitted on every held-out row", {})[level] = stated(pooled_maps, level)[1][:, 0]
        methods.setdefault("default calibration (coevofold.system.calibration)", {})[level] = after
    header = "| Method | " + " | ".join(metrics.LEVEL_NAMES[level] for level in TEST_SPLITS) + " | pooled |"
    print("## ECE of the default system's top-1 on the DeepSF test levels (10 bins, bootstrap 95 % interval)\n")
    print(header + "\n|" + "---|" * (len(TEST_SPLITS) + 2))
    for name, stated_p in methods.items():
        levels = metrics.calibration_levels(stated_p, correct)
        print(f"| {name} | " + " | ".join(
            f"{levels[k]['ece']:.3f} [{levels[k]['ece_ci_low']:.3f}–{levels[k]['ece_ci_high']:.3f}]"
            for k in (*TEST_SPLITS, "pooled")) + " |")

    # 2. bands: test levels, and fold-like held-out rows with cross-fitted maps
    print("\n## Confidence bands: proteins and precision of the top-1 answer\n")
    print("| Data | high (>= 0.9) | medium (>= 0.5) | low |\n|---|---|---|---|")
    cross, cross_iso = np.zeros(len(held["targets"])), np.zeros(len(held["targets"]))
    aligned_rows = held["scores"].max(1) >= ms
    for train_i, test_i in GroupKFold(n_splits=5).split(held["probs"], groups=held["superfamily"]):
        fitted = calibration.fit(held["probs"][train_i], held["scores"][train_i], held["targets"][train_i],
                                 held["levels"][train_i], ms, 1.0, weights=held["weights"][train_i])
        order, p, _ = fitted.top_k(held["probs"][test_i], held["scores"][test_i], 1)
        cross[test_i] = p[:, 0]
        rows_ = train_i[(held["levels"][train_i] == "calibration_fold") & ~aligned_rows[train_i]]
        iso = IsotonicRegression(out_of_bounds="clip", y_min=0, y_max=1).fit(
            held["probs"][rows_].max(1), held["probs"][rows_].argmax(1) == held["targets"][rows_],
            sample_weight=held["weights"][rows_])
        cross_iso[test_i] = np.where(aligned_rows[test_i], p[:, 0], iso.predict(held["probs"][test_i].max(1)))
    order, _, _ = calibration.Calibration(1.0, ms, default.model, default.model_only, default.alignment,
                                          []).top_k(held["probs"], held["scores"], 1)
    held_right = order[:, 0] == held["targets"]
    rows = {f"DeepSF {metrics.LEVEL_NAMES[level]}": (methods["default calibration (coevofold.system.calibration)"][level],
                                                        correct[level]) for level in TEST_SPLITS}
    rows["held-out fold-like rows (calibration_fold), cross-fitted maps"] = (cross[fold_like], held_right[fold_like])
    for name, (p, c) in rows.items():
        bands = metrics.band_of(p)
        cells = [f"{(bands == b).sum()}, {c[bands == b].mean():.3f}" if (bands == b).any() else "0, –"
                 for b in ("high", "medium", "low")]
        print(f"| {name} | " + " | ".join(cells) + " |")

    print("\n## Logistic or isotonic map, judged on held-out rows only (cross-fitted as above)\n")
    print("| Map for model rows | " + " | ".join(CALIBRATION_SPLITS) + " | log-loss, fold-like model rows |\n|---|---|---|---|---|")
    fold_model = fold_like & ~aligned_rows
    for name, p in (("logistic (default)", cross), ("isotonic on top-1 p", cross_iso)):
        eces = [metrics.expected_calibration_error(p[held["levels"] == s], held_right[held["levels"] == s])
                for s in CALIBRATION_SPLITS]
        q = np.clip(np.where(held_right, p, 1 - p)[fold_model], 1e-6, 1)
        print(f"| {name} | " + " | ".join(f"{e:.3f}" for e in eces) + f" | {-np.log(q).mean():.3f} |")

    # 3. cross-level checks
    print("\n## Maps do not carry to harder levels (held-out rows only)\n")
    less_remote = ~fold_like
    fitted = calibration.fit(held["probs"][less_remote], held["scores"][less_remote], held["targets"][less_remote],
                             np.full(less_remote.sum(), "calibration_fold"), ms, 1.0, weights=held["weights"][less_remote])
    order, p, _ = fitted.top_k(held["probs"][model_rows], held["scores"][model_rows], 1)
    print(f"model map fitted on superfamily- and family-like rows, on fold-like model rows: states "
          f"{p[:, 0].mean():.3f}, right {(order[:, 0] == held['targets'][model_rows]).mean():.3f}")
    aligned = held["scores"].max(1) >= ms
    family = aligned & (held["levels"] == "calibration_family")
    amap = calibration._fit_map(calibration.alignment_features(held["probs"][family], held["scores"][family]),
                                held["scores"][family].argmax(1) == held["targets"][family], calibration.ALIGNMENT_FEATURES,
                                held["weights"][family])
    for level in CALIBRATION_SPLITS:
        rows_ = aligned & (held["levels"] == level)
        right = held["scores"][rows_].argmax(1) == held["targets"][rows_]
        p = amap(calibration.alignment_features(held["probs"][rows_], held["scores"][rows_]))
        print(f"alignment rows of {level}: {rows_.sum()}, right {right.mean():.3f}; "
              f"the family-fitted alignment map states {p.mean():.3f}")
    print(f"\nscale: proxy temperature {proxy_t:.3f}, final model {default.temperature:.3f} (top-1 matched on valid)")


if __name__ == "__main__":
    main()
