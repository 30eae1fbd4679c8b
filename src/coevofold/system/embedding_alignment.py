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


@njit(cache=True)
def zscore(sim: np.ndarray) -> np.ndarray:
    """(row_z + col_z) / 2 of a [m, n] similarity matrix (population std, plus EPS).

    Averaging both directions makes the result symmetric in query and template: neither
    protein's background level decides the score alone.
    """
    m, n = sim.shape
    row_mean = np.empty(m, np.float32)
    col_mean = np.zeros(n, np.float32)
    for i in range(m):
        total = np.float32(0.0)  # a register, not row_mean[i]: no store-load chain per element
        for j in range(n):
            x = np.float32(sim[i, j])
            total += x
            col_mean[j] += x
        row_mean[i] = total / np.float32(n)
    col_mean /= np.float32(m)
    # Halves folded into reciprocal spreads: one multiply per element instead of two divisions.
    row_half_inv = np.empty(m, np.float32)
    col_var = np.zeros(n, np.float32)
    for i in range(m):
        var = np.float32(0.0)
        for j in range(n):
            x = np.float32(sim[i, j])
            d = x - row_mean[i]
            e = x - col_mean[j]
            var += d * d
            col_var[j] += e * e
        row_half_inv[i] = np.float32(0.5) / (np.sqrt(var / np.float32(n)) + EPS)
    col_half_inv = np.float32(0.5) / (np.sqrt(col_var / np.float32(m)) + EPS)
    out = np.empty((m, n), np.float32)
    for i in range(m):
        for j in range(n):
            x = np.float32(sim[i, j])
            out[i, j] = (x - row_mean[i]) * row_half_inv[i] + (x - col_mean[j]) * col_half_inv[j]
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


@njit(cache=True, parallel=True)
def block_scores(sim: np.ndarray, offsets: np.ndarray, gap: float) -> np.ndarray:
    """local_score of the z-scored block of each template, float32 [K], templates in parallel.

    sim [m, N] is the query against all templates' residues side by side; columns
    offsets[k]:offsets[k + 1] belong to template k. Each block is z-scored on its own, so a
    template's score does not depend on which others share the batch; the z-scored block is the
    only block-sized buffer a template allocates.
    """
    g = np.float32(gap)
    n_blocks = offsets.shape[0] - 1
    out = np.empty(n_blocks, np.float32)
    for k in prange(n_blocks):
        out[k] = local_score(zscore(sim[:, offsets[k] : offsets[k + 1]]), g)
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
