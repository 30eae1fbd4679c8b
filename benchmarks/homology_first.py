"""The default model behind homology transfer on DeepSF: top-1/top-5 per test level with CIs.

Run: ``python benchmarks/homology_first.py`` after ``coevofold quickstart`` (it reads the
default model and the cached DeepSF features). Smith-Waterman scores of the valid and test
proteins against all 12,312 training sequences take about 4 minutes on 2 idle cores; the
E-value threshold is chosen on valid (``baselines.choose_min_score``), the tests stay untouched.
"""

from __future__ import annotations

import time

from coevofold import baselines, benchmark, metrics, prediction, system_evaluation
from coevofold.splits import TEST_SPLITS


def main() -> None:
    started = time.perf_counter()
    table, store_path = benchmark.cached_deepsf()
    scores = baselines.alignment_scores(table, ("valid", *TEST_SPLITS))[1]
    threshold, results = system_evaluation.homology_first_results(prediction.default_model_dir(), store_path, table, scores)
    print(metrics.results_markdown({f"coevofold fused, homology transfer where E <= 1e-{threshold:g}": results}))
    print(f"threshold chosen on valid: E <= 1e-{threshold:g}; {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
