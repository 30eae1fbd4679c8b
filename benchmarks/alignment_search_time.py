"""Time of predict's homology search: 300 DeepSF test queries against all 12,312 training domains.

Run: ``python benchmarks/alignment_search_time.py [--n 300] [--jobs -1]``. It times exactly what
``predict`` runs (:class:`coevofold.system.homology.HomologySearch` goes through
``AlignmentNearestNeighbour.search``: exhaustive striped Smith-Waterman, query chunks over
processes) and prints the machine's load, since a shared machine changes the number.
"""

from __future__ import annotations

import argparse
import os
import time

import joblib

from coevofold.data import tables
from coevofold.data.splits import TEST_SPLITS
from coevofold.models import baselines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=300, help="test queries (random, seed 0, all three levels)")
    parser.add_argument("--jobs", type=int, default=-1, help="processes (joblib convention, -1 = all cores)")
    args = parser.parse_args()
    table = tables.load("deepsf")
    train = table[table["split"] == "train"]
    queries = table[table["split"].isin(TEST_SPLITS)].sample(args.n, random_state=0)
    search = baselines.AlignmentNearestNeighbour(n_jobs=args.jobs, progress=False)
    search.fit(train["sequence"].tolist(), train["fold"].tolist())
    load_before = os.getloadavg()
    started = time.perf_counter()
    hits = search.search(queries["sequence"].tolist())
    seconds = time.perf_counter() - started
    correct = (search.classes_[hits.scores.argmax(1)] == queries["fold"].to_numpy()).mean()
    print(f"{args.n} queries x {len(train)} training domains ({queries['length'].sum():,} x "
          f"{train['length'].sum():,} residues): {seconds:.1f} s, {seconds / args.n:.3f} s per query, "
          f"{joblib.effective_n_jobs(args.jobs)} processes on {os.cpu_count()} cores")
    print(f"load average before: {load_before[0]:.2f}, after: {os.getloadavg()[0]:.2f}; "
          f"best-hit fold top-1 on these queries: {100 * correct:.1f} %")


if __name__ == "__main__":
    main()
