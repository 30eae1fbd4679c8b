"""Homology-transfer baseline on DeepSF: Smith-Waterman nearest neighbour against the training split.

Prints top-1 / top-5 fold accuracy with bootstrap 95 % intervals on the three test levels, next to
the published anchors, plus the identity of the nearest training protein and the wall time.

    python benchmarks/alignment_baseline.py [--out results/alignment_nn.json] [--jobs -1]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from coevofold import metrics
from coevofold.data import tables
from coevofold.data.splits import TEST_SPLITS
from coevofold.models.baselines import AlignmentNearestNeighbour

MODEL_NAME = "Smith-Waterman nearest neighbour"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", help="also write the results as JSON here")
    parser.add_argument("--jobs", type=int, default=-1, help="worker processes (-1: all cores)")
    parser.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples")
    args = parser.parse_args()

    table = tables.load("deepsf")
    train = table[table["split"] == "train"]
    tests = {level: table[table["split"] == level] for level in TEST_SPLITS}
    queries = [s for part in tests.values() for s in part["sequence"]]
    print(f"{len(train)} training and {len(queries)} test proteins: {len(train) * len(queries):,} alignments")

    start = time.perf_counter()
    model = AlignmentNearestNeighbour(n_jobs=args.jobs).fit(train["sequence"].tolist(), train["fold"].tolist())
    hits = model.search(queries)
    wall = time.perf_counter() - start

    bounds = np.cumsum([0, *(len(part) for part in tests.values())])
    rows = {level: slice(bounds[i], bounds[i + 1]) for i, level in enumerate(tests)}
    results = metrics.evaluate_table({level: hits.scores[rows[level]] for level in tests}, table, model.classes_,
                                        n_boot=args.n_boot)
    print()
    print(metrics.results_markdown({MODEL_NAME: results}))
    for level, result in results.items():
        macro = result["metrics"]["macro_top1"]
        identity = np.percentile(hits.nearest_identity[rows[level]], [25, 50, 75])
        print(
            f"{level}: n={result['n_proteins']}, macro top-1 {100 * macro['value']:.1f} "
            f"[{100 * macro['ci_low']:.1f}–{100 * macro['ci_high']:.1f}], nearest-hit identity "
            f"median {100 * identity[1]:.1f} % (IQR {100 * identity[0]:.1f}–{100 * identity[2]:.1f})"
        )
    print(f"wall time {wall:.0f} s ({len(train) * len(queries) / wall:,.0f} alignments/s)")
    if args.out:
        metrics.write_results_json({MODEL_NAME: results, "wall_time_s": wall}, args.out)


if __name__ == "__main__":
    main()
