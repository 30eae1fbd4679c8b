"""Could a pooled-embedding prefilter stand in front of the Smith-Waterman search? Its recall, measured.

The system aligns every valid and test query (and the proxy's held-out rows) to every training
domain with Smith-Waterman (BLOSUM62, BLAST's gaps): 3,980 x 12,312 pairs, ~4 min of the main job
on 2 cores. Aligning only the N training domains nearest by pooled cosine (the template search's
pooled vectors) would cost N / 12,312 of it, if it kept the hits that matter: the exhaustive
search's best hit wherever that hit passes the homology threshold (what ``predict`` transfers).

Run after ``coevofold quickstart`` (~2 min on 2 cores)::

    python benchmarks/alignment_prefilter.py [--queries 300]

Prints, for random valid + test queries, per N: the share of queries whose exhaustive best hit
passes the threshold and is kept by the prefilter (recall), the share whose transferred fold and
decision are unchanged, and the time of both searches measured in this run. Nothing here changes
the system; it is the measurement a prefilter would have to pass (>= 99 % recall, issue 19).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from coevofold.app import runs
from coevofold.data.splits import TEST_SPLITS
from coevofold.features import store
from coevofold.models.baselines import pair_log_evalues
from coevofold.prediction import default_model_dir
from coevofold.system import homology, templates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--queries", type=int, default=300, help="random valid + test queries")
    args = parser.parse_args()
    model_dir = default_model_dir()
    table, store_path = runs.cached_deepsf()
    found = templates.load_templates(model_dir)
    min_score = homology.read_settings(model_dir).min_score
    train = table.set_index("id").loc[found.ids, "sequence"].tolist()
    lengths = np.array([len(s) for s in train], dtype=np.float64)
    picked = table[table["split"].isin(("valid", *TEST_SPLITS))].sample(n=args.queries, random_state=0)
    queries = store.read_rows(store_path, picked["id"].tolist(), residues=True)
    pooled = np.stack([templates.pooled_unit(templates.unit_rows(r, found.center)) for r in queries.residues])
    cosine = pooled @ found.pooled.T
    started = time.perf_counter()
    exhaustive = np.stack([pair_log_evalues(q, train, lengths) for q in picked["sequence"]])
    seconds = (time.perf_counter() - started) / args.queries
    best = exhaustive.argmax(1)
    passes = exhaustive.max(1) >= min_score
    print(f"{args.queries} random valid + test queries against {len(train)} training domains; exhaustive "
          f"Smith-Waterman {seconds:.3f} s a query (this run); {passes.sum()} queries' best hit passes E <= 1e-{min_score:g}\n")
    print("| prefilter N | best passing hit kept | transferred fold and decision unchanged | time a query (est.) |\n"
          "|---|---|---|---|")
    rank = np.argsort(-cosine, axis=1)
    for n in (250, 500, 1000, 2000, 4000):
        kept = np.zeros((args.queries, len(train)), dtype=bool)
        np.put_along_axis(kept, rank[:, :n], True, axis=1)
        recall = kept[np.arange(args.queries), best][passes].mean()
        filtered = np.where(kept, exhaustive, -np.inf)
        same = (filtered.max(1) >= min_score) == passes
        same &= ~passes | (found.folds[filtered.argmax(1)] == found.folds[best])
        started = time.perf_counter()
        for q, row in zip(picked["sequence"].iloc[:50], rank[:50, :n]):
            pair_log_evalues(q, [train[i] for i in row], lengths[row])
        per_query = (time.perf_counter() - started) / 50
        print(f"| {n} | {100 * recall:.1f} % | {100 * same.mean():.1f} % | {per_query:.3f} s "
              f"({seconds / per_query:.0f}x faster) |")


if __name__ == "__main__":
    main()
