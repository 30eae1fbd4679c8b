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

Sums are exact (integers) or float64 and the rest float32, without fastmath, so results do not
depend on thread count or on whether a kernel runs alone or inside :func:`block_scores`. Inputs are C-contiguous float32, or
int32 (the template search's int8 products: z-scores are the same at any scale of the similarity).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

#: Added to every standard deviation so that a constant row or column z-scores to 0, not NaN.
EPS = np.float32(1e-6)


@njit(cache=True)
def _moments(sim: np.ndarray, n: int, row_mean: np.ndarray, row_half_inv: np.ndarray, col_mean: np.ndarray,
             col_half_inv: np.ndarray) -> None:
    """Every row's and column's mean and 0.5 / (population std + EPS) of ``sim[:, :n]``, in one pass.

    Sums and sums of squares accumulate in integers for the search's int32 products: exact (the
    largest, 1,022 residues of 127^2 squared, stay below 2^53), so in any order, which lets the
    compiler vectorise a row's sum without fastmath. Float inputs accumulate in float64. The
    spread comes from (n sum(v^2) - sum(v)^2) / n^2, exact for integers, where a second pass
    over the centred values and a float32 copy had cost as much again (with 16 lanes, 1.35-1.55x
    the whole kernel on random blocks of 350 templates, queries of 90-300 residues; docs/research.md).
    """
    m = sim.shape[0]
    col_sum = np.zeros(n, np.float64)
    col_sq = np.zeros(n, np.float64)
    for i in range(m):
        total = 0
        squares = 0
        for j in range(n):
            v = sim[i, j]
            square = v * v
            total += v
            squares += square
            col_sum[j] += v
            col_sq[j] += square
        var = max((n * squares - total * total) / (n * n), 0.0)
        row_mean[i] = np.float32(total / n)
        row_half_inv[i] = np.float32(0.5) / (np.float32(np.sqrt(var)) + EPS)
    for j in range(n):
        var = max((m * col_sq[j] - col_sum[j] * col_sum[j]) / (m * m), 0.0)
        col_mean[j] = np.float32(col_sum[j] / m)
        col_half_inv[j] = np.float32(0.5) / (np.float32(np.sqrt(var)) + EPS)


@njit(cache=True)
def zscore_into(sim: np.ndarray, out: np.ndarray) -> None:
    """Write (row_z + col_z) / 2 of a similarity matrix into ``out`` [m, n] (population std, plus
    EPS); ``out`` may be a strided view (a lane of :func:`block_scores`' layout). ``sim`` [m, >= n]:
    columns past ``out``'s are padding, never read (a C-contiguous ``sim`` with padding compiles
    to unit-stride loops; the same matrix sliced to n columns would not, and ran 1.5-2.5x slower).

    Averaging both directions makes the result symmetric in query and template: neither
    protein's background level decides the score alone. Halves are folded into the reciprocal
    spreads: one multiply per element instead of two divisions.
    """
    m, n = out.shape
    row_mean, row_half_inv = np.empty(m, np.float32), np.empty(m, np.float32)
    col_mean, col_half_inv = np.empty(n, np.float32), np.empty(n, np.float32)
    _moments(sim, n, row_mean, row_half_inv, col_mean, col_half_inv)
    for i in range(m):
        for j in range(n):
            v = np.float32(sim[i, j])
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


#: templates aligned side by side in SIMD lanes: 16 float32, one AVX-512 register or two AVX2
#: ones (two independent chains); 1.05-1.15x the kernel with 8, padding included: 350 templates
#: sorted by length leave groups of 16 of similar lengths.
LANES = 16


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
def block_scores(sim: np.ndarray, offsets: np.ndarray, gap: float, columns: int = -1) -> np.ndarray:
    """local_score of the z-scored block of each template, float32 [K], LANES templates at a time.

    sim [N, >= m] holds all templates' residues against the query's m residues (``columns``;
    -1: all of sim's; the rest are padding, as :func:`zscore_into` reads it), templates stacked
    by rows: rows offsets[k]:offsets[k + 1] belong to template k, so each block is contiguous
    (z-scores on strided column blocks ran at half the speed). A local score and the z-scores are
    the same for a matrix and its transpose, so which protein runs along the rows does not
    matter. Each block is z-scored on its own, so a template's score does not depend on which
    others share the batch. Templates are grouped by length, LANES to a group (least padding),
    and groups run in parallel.
    """
    g = np.float32(gap)
    n_blocks = offsets.shape[0] - 1
    m = sim.shape[1] if columns < 0 else columns
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
