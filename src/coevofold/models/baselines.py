"""Classical baselines that a fold classifier must beat to be worth its GPU hours.

:class:`AlignmentNearestNeighbour` is homology transfer: each query takes the fold of the
training proteins it aligns to best. It answers "is this just sequence similarity?". The
embedding baselines answer "is this just the pLM's mean embedding?".

All share the scikit-learn interface: ``fit``, ``predict`` and ``predict_proba`` returning
``[N, len(classes_)]`` probabilities (rows sum to 1) whose column order is ``classes_`` and whose
argmax is ``predict``. The alignment baseline's evaluation reads its ranking from
:meth:`AlignmentNearestNeighbour.class_scores` (-log10 E-values), whose lower ranks do not
underflow as probabilities of far-apart E-values do.

Design choices of the alignment baseline, measured on DeepSF (250 random proteins each of
valid / test_fold / test_superfamily, every one aligned to all 12,312 training sequences):

* Neighbours are ranked by pairwise E-value, as BLAST ranks hits, not by percent identity.
  DeepSF proteins share < 40 % identity, so most best hits are in the twilight zone, where
  identity of a local alignment is noise. Best hit by matches / alignment length: 0.4 / 1.6 /
  0.4 % top-1 on valid / test_fold / test_superfamily; by matches / shorter length: 4.8 / 0.8 /
  3.2 %; by E-value: 18.8 / 7.2 / 21.6 %.
* Every query is aligned to every training sequence: score-only Smith-Waterman by Opal is fast
  enough (``benchmarks/alignment_search_time.py``). A 3-mer cosine prefilter keeping the top
  100 / 300 / 1000 candidates found the exhaustive best hit for only 10 / 19 / 35 % of queries and
  cut valid top-1 from 18.8 % to 11.2 / 15.2 / 16.8 %; neither pooled embeddings, nor 3-mer
  matches on one diagonal, nor both together keep 99 % of the best hits that pass the transfer
  threshold (``benchmarks/alignment_prefilter.py``): remote homologues share too few exact
  3-mers for a k-mer prefilter to be safe.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import joblib
import numpy as np
import parasail
import pyopal
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from tqdm.auto import tqdm

from coevofold.errors import CoevofoldError

#: Gap penalties in parasail's convention, where a gap of length k costs open + (k - 1) * extend:
#: 12 / 1 is BLAST's default "existence 11, extension 1" (a gap of length k costs 11 + k).
GAP_OPEN = 12
GAP_EXTEND = 1
#: Karlin-Altschul statistics NCBI BLAST uses for BLOSUM62 with gaps 11/1 (``blast_stat.c``).
KARLIN_LAMBDA = 0.267
KARLIN_K = 0.041
#: the search's aligner (parasail's sw_striped_profile_sat scores, gaps in the same convention).
_ALIGNER = pyopal.Aligner("BLOSUM62", gap_open=GAP_OPEN, gap_extend=GAP_EXTEND)


def _check_sequences(sequences: Sequence[str], action: str) -> list[str]:
    sequences = list(sequences)
    if not sequences:
        raise CoevofoldError(f"no sequences to {action}")
    for index, sequence in enumerate(sequences):
        if not sequence:
            raise CoevofoldError(f"sequence #{index + 1} is empty; nothing to align")
    return sequences


def percent_identity(a: str, b: str) -> float:
    """Identical residues in the Smith-Waterman alignment of ``a`` and ``b`` / the shorter length.

    Dividing by the shorter sequence (CD-HIT's definition) rather than by the alignment length
    (BLAST's pident) keeps a short, locally perfect alignment from reading as 100 % identity.
    A fraction in [0, 1]; a sequence, or a substring of it, has identity 1.0 to itself.
    """
    result = parasail.sw_stats_striped_sat(a, b, GAP_OPEN, GAP_EXTEND, parasail.blosum62)
    return result.matches / min(len(a), len(b))


@dataclass(frozen=True)
class Alignment:
    """One Smith-Waterman alignment as a hit table reports it (1-based inclusive coordinates)."""

    score: int  # raw BLOSUM62 score
    bits: float  # (lambda S - ln K) / ln 2, the score in bits (BLAST's bit score)
    length: int  # alignment columns, gaps included
    query_start: int
    query_end: int
    target_start: int
    target_end: int


def align(query: str, target: str) -> Alignment:
    """The local alignment :class:`AlignmentNearestNeighbour` scores, with its traceback: where it
    lies in both sequences (the search itself computes scores only, three times faster)."""
    result = parasail.sw_trace_striped_sat(query, target, GAP_OPEN, GAP_EXTEND, parasail.blosum62)
    trace = result.traceback
    in_query, in_target = len(trace.query) - trace.query.count("-"), len(trace.ref) - trace.ref.count("-")
    bits = (KARLIN_LAMBDA * result.score - math.log(KARLIN_K)) / math.log(2)
    return Alignment(int(result.score), bits, len(trace.comp), result.end_query - in_query + 2, result.end_query + 1,
                     result.end_ref - in_target + 2, result.end_ref + 1)


@dataclass(frozen=True)
class Hits:
    """What :meth:`AlignmentNearestNeighbour.search` finds for each query.

    ``scores`` is ``[N, n_classes]``: per class, -log10 of the best pairwise E-value among its
    training members. ``nearest`` indexes the sequences given to ``fit``; so does
    ``class_best`` ``[N, n_classes]``, each class's best-scoring member (the evidence a
    prediction of that class can show).
    """

    scores: np.ndarray
    nearest: np.ndarray
    nearest_score: np.ndarray
    nearest_identity: np.ndarray
    class_best: np.ndarray


def pair_log_evalues(query: str, train: Sequence[str] | pyopal.Database, train_lengths: np.ndarray) -> np.ndarray:
    """-log10 E of ``query`` against each of ``train`` (lengths ``train_lengths``, float64).

    E = K m n exp(-lambda S), the pair's own lengths as m and n. Score-only alignments by Opal,
    which aligns one query to many targets at once in SIMD lanes: 1.9x parasail's striped
    alignment against a query profile in one process, the same scores (tested). Pass a
    ``pyopal.Database`` to encode the targets once for many queries.
    """
    database = train if isinstance(train, pyopal.Database) else pyopal.Database(list(train))
    raw = np.fromiter((hit.score for hit in _ALIGNER.align(query, database)), dtype=np.float64, count=len(train_lengths))
    return (KARLIN_LAMBDA * raw - np.log(KARLIN_K * len(query) * train_lengths)) / math.log(10)


def _search_chunk(queries: list[str], database: pyopal.Database, train: list[str], train_lengths: np.ndarray,
                  starts: np.ndarray) -> Hits:
    """Align each query to every training sequence (sorted by class, classes begin at ``starts``).

    Score-only alignments are three times faster than ones that count matches, so identity is
    computed only for each query's nearest neighbour.
    """
    scores = np.empty((len(queries), len(starts)))
    nearest = np.empty(len(queries), dtype=np.int64)
    nearest_score = np.empty(len(queries))
    identity = np.empty(len(queries))
    class_best = np.empty((len(queries), len(starts)), dtype=np.int64)
    class_of = np.repeat(np.arange(len(starts)), np.diff(np.append(starts, len(train))))
    for row, query in enumerate(queries):
        log_evalue = pair_log_evalues(query, database, train_lengths)
        scores[row] = np.maximum.reduceat(log_evalue, starts)
        # first member reaching its class maximum (rows are grouped by class, so unique's first
        # occurrence is the lowest such index)
        at_max = np.flatnonzero(log_evalue == scores[row][class_of])
        class_best[row] = at_max[np.unique(class_of[at_max], return_index=True)[1]]
        nearest[row] = int(log_evalue.argmax())
        nearest_score[row] = log_evalue[nearest[row]]
        identity[row] = percent_identity(query, train[nearest[row]])
    return Hits(scores, nearest, nearest_score, identity, class_best)


class AlignmentNearestNeighbour:
    """Homology transfer by exhaustive Smith-Waterman search (BLOSUM62, BLAST's gaps 11/1).

    Each class scores -log10 of the best E-value among its training members, so ``predict``
    is the fold of the single best hit and lower ranks follow the next-best folds
    (:meth:`class_scores`); :meth:`predict_proba` turns them into probabilities. Queries are split in chunks of
    ``chunk_size`` over ``n_jobs`` threads (joblib's convention: -1 = all cores); Opal and parasail
    release the GIL, so threads share one encoded database where processes were sent the
    training sequences with every chunk.
    """

    def __init__(self, n_jobs: int = -1, chunk_size: int = 16, progress: bool = True) -> None:
        self.n_jobs = n_jobs
        self.chunk_size = chunk_size
        self.progress = progress

    def fit(self, sequences: Sequence[str], labels: Sequence[str]) -> AlignmentNearestNeighbour:
        """Remember the training sequences, grouped by class so per-class maxima are one reduceat."""
        sequences = _check_sequences(sequences, "fit on")
        labels = np.asarray(labels, dtype=object)
        if len(labels) != len(sequences):
            raise CoevofoldError(f"{len(sequences)} sequences but {len(labels)} labels")
        self.classes_, codes = np.unique(labels, return_inverse=True)
        self._order = np.argsort(codes, kind="stable")
        self._train = [sequences[i] for i in self._order]
        self._train_lengths = np.array([len(s) for s in self._train], dtype=np.float64)
        self._starts = np.searchsorted(codes[self._order], np.arange(len(self.classes_)))
        return self

    def search(self, sequences: Sequence[str]) -> Hits:
        """Per-class scores and the nearest training sequence (with its identity) of each query."""
        if not hasattr(self, "classes_"):
            raise CoevofoldError("AlignmentNearestNeighbour: call fit() before predicting")
        queries = _check_sequences(sequences, "predict")
        chunks = [queries[i : i + self.chunk_size] for i in range(0, len(queries), self.chunk_size)]
        n_jobs = min(joblib.effective_n_jobs(self.n_jobs), len(chunks))
        run = joblib.Parallel(n_jobs=n_jobs, prefer="threads", return_as="generator")
        database = pyopal.Database(self._train)
        parts = []
        with tqdm(total=len(queries), unit="query", desc="Smith-Waterman", disable=not self.progress) as bar:
            for part in run(
                joblib.delayed(_search_chunk)(chunk, database, self._train, self._train_lengths, self._starts)
                for chunk in chunks
            ):
                parts.append(part)
                bar.update(len(part.nearest))
        return Hits(
            scores=np.concatenate([p.scores for p in parts]),
            nearest=self._order[np.concatenate([p.nearest for p in parts])],
            nearest_score=np.concatenate([p.nearest_score for p in parts]),
            nearest_identity=np.concatenate([p.nearest_identity for p in parts]),
            class_best=self._order[np.concatenate([p.class_best for p in parts])],
        )

    def class_scores(self, sequences: Sequence[str]) -> np.ndarray:
        """``[N, len(classes_)]`` class scores (-log10 best E-value; higher is better); rank by these."""
        return self.search(sequences).scores

    def predict_proba(self, sequences: Sequence[str]) -> np.ndarray:
        """``[N, len(classes_)]`` probabilities: each class's 1 / best E-value, normalised per query.

        The order of :meth:`class_scores`, but classes far below the best hit underflow to 0:
        rank (top-k) by :meth:`class_scores`.
        """
        scores = self.class_scores(sequences) * np.log(10.0)
        weights = np.exp(scores - scores.max(axis=1, keepdims=True))
        return weights / weights.sum(axis=1, keepdims=True)

    def predict(self, sequences: Sequence[str]) -> np.ndarray:
        """The class of each query's best hit."""
        scores = self.class_scores(sequences)
        return self.classes_[scores.argmax(axis=1)]


def alignment_scores(table, splits: Sequence[str], n_jobs: int = -1,
                     progress: bool = True) -> tuple[AlignmentNearestNeighbour, dict[str, np.ndarray]]:
    """Homology transfer from ``table``'s train rows: the fitted search and, for each of
    ``splits``, its :meth:`~AlignmentNearestNeighbour.class_scores` (rows in table order)."""
    train = table[table["split"] == "train"]
    search = AlignmentNearestNeighbour(n_jobs=n_jobs, progress=progress).fit(train["sequence"].tolist(),
                                                                            train["fold"].tolist())
    return search, {s: search.class_scores(table.loc[table["split"] == s, "sequence"].tolist()) for s in splits}


def embedding_logistic_regression(C: float = 1.0, max_iter: int = 1000, seed: int = 0) -> Pipeline:
    """Multinomial logistic regression on standardised mean embeddings ``X [N, D]``.

    ``C`` is scikit-learn's default L2 strength, a starting point: with ~10 proteins per fold it
    should be chosen on the valid split. ``max_iter`` is raised from lbfgs' 100, which stops
    short of convergence on ~1,200 classes.
    """
    return make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=max_iter, random_state=seed))


def embedding_knn(n_neighbors: int = 10) -> Pipeline:
    """k nearest neighbours of mean embeddings by cosine distance, weighted by inverse distance.

    Cosine, because pLM embedding norms vary with length and composition rather than fold;
    inverse-distance weights keep the nearest neighbour dominant while the other neighbours
    still rank further classes for top-5.
    """
    return make_pipeline(KNeighborsClassifier(n_neighbors=n_neighbors, metric="cosine", weights="distance", algorithm="brute"))
