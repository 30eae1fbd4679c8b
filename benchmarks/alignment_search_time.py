"""Time of predict's homology search: 300 DeepSF test queries against all 12,312 training domains.

Run: ``python benchmarks/alignment_search_time.py [--n 300] [--jobs -1]``. It times exactly what
``predict`` runs (:class:`coevofold.system.homology.HomologySearch` goes through
``AlignmentNearestNeighbour.search``: exhaustive Smith-Waterman by Opal, query chunks over
threads) and prints the machine's load, since a shared machine changes the number. Then, in one
process, the ratio of Opal's score-only search to parasail's striped search against a query profile
(what the search ran before) on the first ``--ratio-queries`` queries, and whether the scores agree.
"""

from __future__ import annotations

import argparse
import os
import time

import joblib
import numpy as np
import parasail
import pyopal

from coevofold.data import tables
from coevofold.data.splits import TEST_SPLITS
from coevofold.models import baselines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=300, help="test queries (random, seed 0, all three levels)")
    parser.add_argument("--ratio-queries", type=int, default=40, help="queries for the Opal / parasail ratio")
    parser.add_argument("--jobs", type=int, default=-1, help="threads (joblib convention, -1 = all cores)")
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
          f"{joblib.effective_n_jobs(args.jobs)} threads on {os.cpu_count()} cores")
    print(f"load average before: {load_before[0]:.2f}, after: {os.getloadavg()[0]:.2f}; "
          f"best-hit fold top-1 on these queries: {100 * correct:.1f} %")
    sequences = train["sequence"].tolist()
    lengths = train["length"].to_numpy(dtype=np.float64)
    database = pyopal.Database(sequences)
    few = queries["sequence"].tolist()[: args.ratio_queries]
    started = time.perf_counter()
    opal = [baselines.pair_log_evalues(q, database, lengths) for q in few]
    opal_seconds = time.perf_counter() - started
    started = time.perf_counter()
    striped = []
    for query in few:
        profile = parasail.profile_create_sat(query, parasail.blosum62)
        striped.append([parasail.sw_striped_profile_sat(profile, t, baselines.GAP_OPEN, baselines.GAP_EXTEND).score
                        for t in sequences])
    striped_seconds = time.perf_counter() - started
    raw = [np.rint((o * np.log(10) + np.log(baselines.KARLIN_K * len(q) * lengths)) / baselines.KARLIN_LAMBDA)
           for o, q in zip(opal, few)]
    same = all(np.array_equal(r, np.array(p, dtype=np.float64)) for r, p in zip(raw, striped))
    print(f"one process, {len(few)} queries: Opal {opal_seconds / len(few):.3f} s a query, parasail striped "
          f"{striped_seconds / len(few):.3f} s ({striped_seconds / opal_seconds:.2f}x); identical raw scores: {same}")


if __name__ == "__main__":
    main()
