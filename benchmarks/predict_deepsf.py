"""``predict`` on the DeepSF test levels: how often it transfers from the alignment, how accurate
each source is, and whether its top-1 equals the benchmark's homology-first row.

Run after ``coevofold quickstart``: ``python benchmarks/predict_deepsf.py [--checkpoint DIR]``.
If the model folder has no homology files it prepares them first (``homology.fit_homology`` on
the cached DeepSF features; the threshold is chosen on valid). Then it runs the real ``predict``
(features computed from the sequences, homology search included) on every test level, and the
benchmark's ``homology_first_results`` on the stored features, and prints both per level. The
two top-1 numbers must be equal: same threshold, same ``baselines.homology_first``. On 2 CPU
cores expect about half an hour (features of 3,244 domains and two searches against 12,312).
"""

from __future__ import annotations

import argparse
import time

import pandas as pd

from coevofold import baselines, benchmark, data, features, homology, prediction, pretrained
from coevofold.splits import TEST_SPLITS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=str(prediction.default_model_dir()), help="model folder")
    parser.add_argument("--limit", type=int, default=0, help="first N proteins per level (0: all; quick look)")
    args = parser.parse_args()
    started = time.perf_counter()
    table = data.load("deepsf")
    plm = pretrained.load(None)
    store_path = features.cached_store("deepsf", plm, features.FeatureConfig())
    if not homology.has_homology(args.checkpoint):
        settings = homology.fit_homology(args.checkpoint, store_path, table)
        print(f"prepared {args.checkpoint}: threshold -log10 E >= {settings.min_score:g}")
    levels = {s: table[table["split"] == s] for s in TEST_SPLITS}
    if args.limit:
        levels = {s: rows.head(args.limit) for s, rows in levels.items()}
    predictor = prediction.load_predictor(args.checkpoint, plm)
    rows = []
    for level, queries in levels.items():
        frame = predictor.predict(queries[["id", "sequence"]], top_k=1)
        correct = frame["fold"].to_numpy() == queries["fold"].to_numpy()
        from_alignment = (frame["source"] == "alignment").to_numpy()
        rows.append({"level": level, "proteins": len(queries), "source=alignment": f"{100 * from_alignment.mean():.1f} %",
                     "alignment top-1": f"{100 * correct[from_alignment].mean():.1f} %" if from_alignment.any() else "–",
                     "model top-1": f"{100 * correct[~from_alignment].mean():.1f} %" if (~from_alignment).any() else "–",
                     "predict top-1": 100 * correct.mean()})
    subset = pd.concat([table[table["split"] == "valid"], *levels.values()])
    train = table[table["split"] == "train"]
    search = baselines.AlignmentNearestNeighbour().fit(train["sequence"].tolist(), train["fold"].tolist())
    scores = {s: search.predict_proba(subset.loc[subset["split"] == s, "sequence"].tolist()) for s in ("valid", *TEST_SPLITS)}
    threshold, results = benchmark.homology_first_results(prediction.model_folder(args.checkpoint), store_path,
                                                          pd.concat([train, subset]), scores)
    for row in rows:
        row["benchmark homology-first top-1"] = 100 * results[row["level"]]["metrics"]["top1"]["value"]
        row["equal"] = abs(row["predict top-1"] - row["benchmark homology-first top-1"]) < 1e-9
    report = pd.DataFrame(rows).set_index("level")
    print(report.to_string(float_format=lambda v: f"{v:.1f}"))
    print(f"benchmark threshold: -log10 E >= {threshold:g}; stored: {predictor.search.settings.min_score:g}; "
          f"{time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
