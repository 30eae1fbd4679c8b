"""``predict`` on the DeepSF test levels: how often it transfers from the alignment, how accurate
each source is, and whether its top-1 equals the benchmark's homology-first row.

Run after ``coevofold quickstart``: ``python benchmarks/predict_deepsf.py [--checkpoint DIR]``.
If the model folder has no homology files it prepares them first (``homology.fit_homology`` on
the cached DeepSF features; the threshold is chosen on valid). Then it runs the real ``predict``
(features computed from the sequences, homology search included) on every test level, and the
benchmark's ``homology_first_results`` on the stored features, and prints both per level. The
two top-1 numbers must be equal: same threshold, same ``baselines.homology_first``. On 2 CPU
cores expect about half an hour (features of 3,244 domains and two searches against 12,312).

``--ci`` does the same on the minutes-long ``deepsf-ci`` preset (10 folds, 5 proteins per fold
and split) with a model it trains for 4 epochs into ``--out``: the code path at small scale.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd

from coevofold import prediction
from coevofold.app import runs
from coevofold.data import names, tables
from coevofold.data.splits import TEST_SPLITS
from coevofold.features import extraction, pretrained
from coevofold.models import baselines
from coevofold.system import evaluation, homology, preparation
from coevofold.training import trainer


def compare(model_dir: Path, store_path: Path, table: pd.DataFrame, plm: pretrained.ProteinLM,
            limit: int = 0) -> pd.DataFrame:
    """Per test level: share and accuracy of each source in ``predict``, beside the benchmark row."""
    if not homology.has_homology(model_dir):
        settings = homology.fit_homology(model_dir, store_path, table)
        print(f"prepared {model_dir}: threshold -log10 E >= {settings.min_score:g} "
              f"({settings.valid_above_threshold} of {settings.valid_proteins} valid proteins above it)")
    levels = {s: table[table["split"] == s] for s in TEST_SPLITS}
    if limit:
        levels = {s: rows.head(limit) for s, rows in levels.items()}
    predictor = prediction.load_predictor(model_dir, plm)
    rows = []
    for level, queries in levels.items():
        frame = predictor.predict(queries[["id", "sequence"]], top_k=1)
        correct = frame["fold"].to_numpy() == queries["fold"].to_numpy()
        from_alignment = (frame["source"] == "alignment").to_numpy()
        rows.append({"level": level, "proteins": len(queries), "source=alignment %": 100 * from_alignment.mean(),
                     "alignment top-1 %": 100 * correct[from_alignment].mean() if from_alignment.any() else float("nan"),
                     "model top-1 %": 100 * correct[~from_alignment].mean() if (~from_alignment).any() else float("nan"),
                     "predict top-1 %": 100 * correct.mean()})
    train = table[table["split"] == "train"]
    subset = pd.concat([train, table[table["split"] == "valid"], *levels.values()])
    if len(subset) == len(table):  # every protein: the search quickstart cached
        subset = table
        scores = preparation.cached_alignment("deepsf", table, progress=False)
    else:
        scores = baselines.alignment_scores(subset, ("valid", *TEST_SPLITS))[1]
    threshold, results = evaluation.homology_first_results(model_dir, store_path, subset, scores)
    for row in rows:
        row["benchmark homology-first top-1 %"] = 100 * results[row["level"]]["metrics"]["top1"]["value"]
        row["equal"] = abs(row["predict top-1 %"] - row["benchmark homology-first top-1 %"]) < 1e-9
    print(f"threshold: benchmark -log10 E >= {threshold:g}, stored in the model folder {predictor.search.settings.min_score:g}")
    return pd.DataFrame(rows).set_index("level")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=str(prediction.default_model_dir()), help="model folder")
    parser.add_argument("--limit", type=int, default=0, help="first N proteins per level (0: all; quick look)")
    parser.add_argument("--ci", action="store_true", help="train and check a small model on the deepsf-ci preset")
    parser.add_argument("--out", default="runs/predict_deepsf_ci", help="model folder for --ci")
    args = parser.parse_args()
    started = time.perf_counter()
    plm = pretrained.load(None)
    if args.ci:
        table = runs.benchmark_table(runs.BENCHMARKS["deepsf-ci"])
        store_path = runs.cached_features("deepsf-ci", table, plm, extraction.FeatureConfig(), progress=False)
        model_dir = trainer.train(store_path, table, args.out, trainer.TrainConfig(max_epochs=4, progress=False),
                                   fold_names=names.fold_names("deepsf"))
    else:
        table = tables.load("deepsf")
        store_path = extraction.cached_store("deepsf", plm, extraction.FeatureConfig())
        model_dir = prediction.model_folder(args.checkpoint)
    report = compare(Path(model_dir), store_path, table, plm, args.limit)
    print(report.to_string(float_format=lambda v: f"{v:.1f}"))
    print(f"{time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
