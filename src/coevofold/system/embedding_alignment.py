"""Compiled kernel of embedding-based local alignment (as in EBA / pLM-BLAST).

Why residues and not one vector per protein: pooling a protein's per-residue pLM embeddings
averages away the few conserved segments that remote homologues share, so two folds that match
only over a core motif look unrelated. Aligning residue against residue keeps those segments:
a local alignment over the query-by-template cosine-similarity matrix scores the best run of
similar residues and ignores the rest.

Why z-score by rows and by columns: raw cosine similarities carry each residue's own level
(some residues are similar to almost everything, some proteins' embeddings sit closer together
than others'). Subtracting each row's and each column's mean and dividing by its spread removes
that level, so a score of 10 means the same thing whichever query and template it came from, and
scores can be ranked across a whole template library.

Why a linear gap penalty: with one penalty per gap step the dynamic programme needs a single
matrix (a single row when only the score is wanted) instead of the three that affine gaps need,
which keeps the work per template small when a query meets a whole library.

All arithmetic is float32 without fastmath, so results do not depend on thread count or on
whether a kernel runs alone or inside :func:`block_scores`. Inputs are C-contiguous float32, or
int32 (the template search's int8 products: z-scores are the same at any scale of the similarity).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

#: Added to every standard deviation so that a constant row or column z-scores to 0, not NaN.
EPS = np.float32(1e-6)


#: independent partial sums per row: without fastmath a float sum is one dependent chain (~4
#: cycles an element); eight chains let the compiler fill a vector register.
_CHAINS = 8


@njit(cache=True)
def _row_sums(x: np.ndarray, shift: np.ndarray, squared: bool, out: np.ndarray) -> None:
    """out[i] = sum over j of (x[i, j] - shift[i]), squared or not, in :data:`_CHAINS` partial sums."""
    m, n = x.shape
    head = n - n % _CHAINS
    acc = np.zeros(_CHAINS, np.float32)
    for i in range(m):
        acc[:] = np.float32(0.0)
        for j in range(0, head, _CHAINS):
            for c in range(_CHAINS):
                d = x[i, j + c] - shift[i]
                acc[c] += d * d if squared else d
        total = np.float32(0.0)
        for j in range(head, n):
            d = x[i, j] - shift[i]
            total += d * d if squared else d
        for c in range(_CHAINS):
            total += acc[c]
        out[i] = total


@njit(cache=True)
def zscore_into(sim: np.ndarray, out: np.ndarray) -> None:
    """Write (row_z + col_z) / 2 of a [m, n] similarity matrix into ``out`` [m, n] (population
    std, plus EPS); ``out`` may be a strided view (a lane of :func:`block_scores`' layout).

    Averaging both directions makes the result symmetric in query and template: neither
    protein's background level decides the score alone. The passes run over a contiguous float32
    copy; only the last one writes ``out``.
    """
    m, n = sim.shape
    x = np.empty((m, n), np.float32)
    col_mean = np.zeros(n, np.float32)
    for i in range(m):
        for j in range(n):
            v = np.float32(sim[i, j])
            x[i, j] = v
            col_mean[j] += v
    col_mean /= np.float32(m)
    row_mean = np.empty(m, np.float32)
    _row_sums(x, np.zeros(m, np.float32), False, row_mean)
    row_mean /= np.float32(n)
    row_var = np.empty(m, np.float32)
    _row_sums(x, row_mean, True, row_var)
    col_var = np.zeros(n, np.float32)
    for i in range(m):
        for j in range(n):
            e = x[i, j] - col_mean[j]
            col_var[j] += e * e
    # Halves folded into reciprocal spreads: one multiply per element instead of two divisions.
    row_half_inv = np.float32(0.5) / (np.sqrt(row_var / np.float32(n)) + EPS)
    col_half_inv = np.float32(0.5) / (np.sqrt(col_var / np.float32(m)) + EPS)
    for i in range(m):
        for j in range(n):
            v = x[i, j]
            out[i, j] = (v - row_mean[i]) * row_half_inv[i] + (v - col_mean[j]) * col_half_inv[j]


@njit(cache=True)
def zscore(sim: np.ndarray) -> np.ndarray:
    """:func:`zscore_into` a new float32 [m, n] array."""
    out = np.empty(sim.shape, np.float32)
    zscore_into(sim, out)
    return out


@njit(cache=True)
def local_score(z: np.ndarray, gap: float) -> float:
    """Best Smith-Waterman score over z with a linear gap penalty, in one row of memory.

    Ranking templates needs only the score, so the full matrix (and its traceback) is skipped.
    """
    g = np.float32(gap)
    zero = np.float32(0.0)
    m, n = z.shape
    h = np.zeros(n + 1, np.float32)  # h[j + 1] holds H[i - 1, j] until overwritten by H[i, j]
    best = zero
    for i in range(m):
        diag = zero  # H[i - 1, j - 1]
        left = zero  # H[i, j - 1]
        for j in range(n):
            up = h[j + 1]
            v = max(zero, diag + z[i, j], up - g, left - g)
            diag = up
            h[j + 1] = v
            left = v
            if v > best:
                best = v
    return best


@njit(cache=True)
def local_alignment(z: np.ndarray, gap: float) -> tuple[float, np.ndarray]:
    """Best local score and its aligned (i, j) pairs, int64 [k, 2] in increasing order.

    Traceback starts at the first maximum in row-major order and prefers diagonal, then up, then
    left, so the answer is deterministic. Because the first maximum cannot be reached by a gap
    (its predecessor would be at least as large and come earlier), the alignment starts and ends
    with a match, and the score is the sum of z over the pairs minus gap per gap step.
    """
    g = np.float32(gap)
    zero = np.float32(0.0)
    m, n = z.shape
    h = np.zeros((m + 1, n + 1), np.float32)
    best, bi, bj = zero, 0, 0
    for i in range(1, m + 1):
        for j in range(1, n + 1):
            v = max(zero, h[i - 1, j - 1] + z[i - 1, j - 1], h[i - 1, j] - g, h[i, j - 1] - g)
            h[i, j] = v
            if v > best:
                best, bi, bj = v, i, j
    pairs = np.empty((min(m, n), 2), np.int64)
    k, i, j = 0, bi, bj
    while h[i, j] > zero:
        if h[i, j] == h[i - 1, j - 1] + z[i - 1, j - 1]:
            i, j = i - 1, j - 1
            pairs[k, 0], pairs[k, 1] = i, j
            k += 1
        elif h[i, j] == h[i - 1, j] - g:
            i -= 1
        else:
            j -= 1
    return best, pairs[:k][::-1].copy()


#: templates aligned side by side in SIMD lanes (a vector register of float32 on AVX2; 16 on
#: AVX-512 would need lanes of similar length twice as often).
LANES = 8


@njit(cache=True)
def _lane_scores(z: np.ndarray, gap: np.float32) -> np.ndarray:
    """:func:`local_score` of LANES matrices at once, interleaved as z [m, n, LANES].

    The same recurrence and order of operations per lane as :func:`local_score`, so each lane's
    score is identical to it; the loop over lanes is what the compiler vectorises (one matrix's
    cells depend on their left neighbour, so a single alignment runs one cell at a time: 2.2x
    slower). A lane with fewer rows than ``m`` is padded with -inf: padded cells are reached only
    by gaps, which lower a score, so they never hold a lane's best.
    """
    m, n, lanes = z.shape
    zero = np.float32(0.0)
    h = np.zeros((n + 1, lanes), np.float32)
    best = np.zeros(lanes, np.float32)
    diag = np.empty(lanes, np.float32)
    left = np.empty(lanes, np.float32)
    for i in range(m):
        diag[:] = zero
        left[:] = zero
        for j in range(n):
            for w in range(lanes):
                up = h[j + 1, w]
                v = max(zero, diag[w] + z[i, j, w], up - gap, left[w] - gap)
                diag[w] = up
                h[j + 1, w] = v
                left[w] = v
                if v > best[w]:
                    best[w] = v
    return best


@njit(cache=True, parallel=True)
def block_scores(sim: np.ndarray, offsets: np.ndarray, gap: float) -> np.ndarray:
    """local_score of the z-scored block of each template, float32 [K], LANES templates at a time.

    sim [N, m] holds all templates' residues against the query's m residues, templates stacked
    by rows: rows offsets[k]:offsets[k + 1] belong to template k, so each block is contiguous
    (z-scores on strided column blocks ran at half the speed). A local score and the z-scores are
    the same for a matrix and its transpose, so which protein runs along the rows does not
    matter. Each block is z-scored on its own, so a template's score does not depend on which
    others share the batch. Templates are grouped by length, LANES to a group (least padding),
    and groups run in parallel.
    """
    g = np.float32(gap)
    n_blocks = offsets.shape[0] - 1
    m = sim.shape[1]
    lengths = offsets[1:] - offsets[:-1]
    order = np.argsort(lengths)
    out = np.empty(n_blocks, np.float32)
    n_groups = (n_blocks + LANES - 1) // LANES
    for turn in prange(n_groups):
        # short and long groups alternate: prange hands each thread one contiguous range
        group = turn // 2 if turn % 2 == 0 else n_groups - 1 - turn // 2
        members = order[group * LANES : min((group + 1) * LANES, n_blocks)]
        interleaved = np.full((lengths[members].max(), m, LANES), -np.inf, np.float32)
        for w in range(len(members)):
            k = members[w]
            zscore_into(sim[offsets[k] : offsets[k + 1]], interleaved[: lengths[k], :, w])
        scores = _lane_scores(interleaved, g)
        for w in range(len(members)):
            out[members[w]] = scores[w]
    return out


def normalized(scores: np.ndarray, query_length: int, template_lengths: np.ndarray) -> np.ndarray:
    """score / sqrt(query_length * template_length), float32.

    A longer template offers more places for a high-scoring run by chance; dividing by the
    geometric mean length keeps long templates from winning by length alone.
    """
    lengths = np.asarray(template_lengths, dtype=np.float64)
    return (np.asarray(scores, dtype=np.float64) / np.sqrt(float(query_length) * lengths)).astype(
        np.float32
    )
