"""Could a pooled-embedding prefilter stand in front of the Smith-Waterman search? Its recall, measured.

The system aligns every valid and test query (and the proxy's held-out rows) to every training
domain with Smith-Waterman (BLOSUM62, BLAST's gaps): 3,980 x 12,312 pairs, ~4 min of the main job
on 2 cores. Aligning only the N training domains nearest by pooled cosine (the template search's
pooled vectors) would cost N / 12,312 of it, if it kept the hits that matter: the exhaustive
search's best hit wherever that hit passes the homology threshold (what ``predict`` transfers).

Run after ``coevofold quickstart`` (~2 min on 2 cores)::

    python benchmarks/alignment_prefilter.py [--queries 300]

Prints, for random valid + test queries, per prefilter and N: the share of queries whose
exhaustive best hit passes the threshold and is kept by the prefilter (recall), the share whose
transferred fold and decision are unchanged, and the time of both searches measured in this run.
Three prefilters: pooled cosine; a sequence one, FASTA's ktup idea (per training domain, the most
exact 3-mer matches on one diagonal); and their union, N / 2 from each. Nothing here changes the
system; it is the measurement a prefilter would have to pass (>= 99 % recall, issue 19).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pyopal

from coevofold.app import runs
from coevofold.data.splits import TEST_SPLITS
from coevofold.features import store
from coevofold.models.baselines import pair_log_evalues
from coevofold.prediction import default_model_dir
from coevofold.system import homology, templates


_AMINO = "ACDEFGHIKLMNPQRSTVWY"


def _words(sequence: str) -> np.ndarray:
    """Overlapping 3-mers as integers in [0, 21^3) (anything outside the 20 amino acids is a 21st letter)."""
    letters = np.array([_AMINO.find(a) if a in _AMINO else 20 for a in sequence], dtype=np.int64)
    return letters[:-2] * 441 + letters[1:-1] * 21 + letters[2:] if len(letters) >= 3 else np.zeros(0, np.int64)


class DiagonalWords:
    """Exact 3-mer matches per (training domain, diagonal), from an index of every training 3-mer."""

    def __init__(self, train: list[str]) -> None:
        words = [_words(s) for s in train]
        word = np.concatenate(words)
        order = np.argsort(word, kind="stable")
        self.target = np.concatenate([np.full(len(w), t, np.int64) for t, w in enumerate(words)])[order]
        self.position = np.concatenate([np.arange(len(w)) for w in words])[order]
        self.starts = np.searchsorted(word[order], np.arange(21**3 + 1))
        self.size = len(train)

    def scores(self, query: str) -> np.ndarray:
        """[T]: per training domain, the most 3-mer matches on one diagonal."""
        spans = [(self.starts[w], self.starts[w + 1], i) for i, w in enumerate(_words(query))]
        best = np.zeros(self.size)
        if not spans:
            return best
        hit = np.concatenate([np.arange(a, b) for a, b, _ in spans])
        at = np.concatenate([np.full(b - a, i) for a, b, i in spans])
        key = self.target[hit] * 8192 + (self.position[hit] - at + 4096)
        cells, counts = np.unique(key, return_counts=True)
        np.maximum.at(best, cells // 8192, counts)
        return best


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
    pooled = np.stack([templates.pooled_unit(found.unit(r)) for r in queries.residues])
    cosine = pooled @ found.pooled.T
    started = time.perf_counter()
    database = pyopal.Database(train)  # encoded once, as the search does
    exhaustive = np.stack([pair_log_evalues(q, database, lengths) for q in picked["sequence"]])
    seconds = (time.perf_counter() - started) / args.queries
    best = exhaustive.argmax(1)
    passes = exhaustive.max(1) >= min_score
    print(f"{args.queries} random valid + test queries against {len(train)} training domains; exhaustive "
          f"Smith-Waterman {seconds:.3f} s a query (this run); {passes.sum()} queries' best hit passes E <= 1e-{min_score:g}\n")
    print("| prefilter | N | best passing hit kept | transferred fold and decision unchanged | time a query (est.) |\n"
          "|---|---|---|---|---|")
    diagonal = DiagonalWords(train)
    started = time.perf_counter()
    words = np.stack([diagonal.scores(q) for q in picked["sequence"]])
    word_seconds = (time.perf_counter() - started) / args.queries
    ranks = {"pooled cosine": np.argsort(-cosine, axis=1), "3-mer diagonal": np.argsort(-words, axis=1, kind="stable")}
    for name in ("pooled cosine", "3-mer diagonal", "union"):
        for n in (250, 500, 1000, 2000, 4000):
            kept = np.zeros((args.queries, len(train)), dtype=bool)
            for source, rank in ranks.items():
                if name in (source, "union"):
                    np.put_along_axis(kept, rank[:, : (n // 2 if name == "union" else n)], True, axis=1)
            recall = kept[np.arange(args.queries), best][passes].mean()
            filtered = np.where(kept, exhaustive, -np.inf)
            same = (filtered.max(1) >= min_score) == passes
            same &= ~passes | (found.folds[filtered.argmax(1)] == found.folds[best])
            started = time.perf_counter()
            for q, row in zip(picked["sequence"].iloc[:50], kept[:50]):
                pair_log_evalues(q, [t for t, keep in zip(train, row) if keep], lengths[row])
            per_query = (time.perf_counter() - started) / 50 + (word_seconds if name != "pooled cosine" else 0.0)
            print(f"| {name} | {n} | {100 * recall:.1f} % | {100 * same.mean():.1f} % | {per_query:.3f} s "
                  f"({seconds / per_query:.0f}x faster) |")


if __name__ == "__main__":
    main()
