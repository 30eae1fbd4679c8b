"""Embedding-alignment kernels on hand-made matrices with a known optimum, and on each other."""

from __future__ import annotations

import numpy as np
import pytest

from coevofold.system.embedding_alignment import (
    LANES,
    block_scores,
    local_alignment,
    local_score,
    normalized,
    zscore,
)

F32 = np.float32


def _numpy_zscore(sim: np.ndarray) -> np.ndarray:
    row = (sim - sim.mean(1, keepdims=True)) / (sim.std(1, keepdims=True) + 1e-6)
    col = (sim - sim.mean(0, keepdims=True)) / (sim.std(0, keepdims=True) + 1e-6)
    return (row + col) / 2


def test_zscore_matches_the_formula_and_removes_row_and_column_levels():
    sim = np.random.default_rng(0).uniform(-1, 1, (6, 9)).astype(F32)
    z = zscore(sim)
    assert z.dtype == F32 and z.shape == sim.shape
    np.testing.assert_allclose(z, _numpy_zscore(sim.astype(np.float64)), atol=1e-5)
    # sim[i, j] = r_i + v_j, r = 0.2 * [0, 2] (mean 0.2, std 0.2), v = 0.2 * [0, 0, 3, 3]
    # (mean 0.3, std 0.3): the row part is (v - 0.3) / 0.3 = [-1, -1, 1, 1] in every row (each row
    # mean 0), the column part (r - 0.2) / 0.2 = [-1, 1] down every column (each column mean 0).
    hand = np.array([[0.0, 0.0, 0.6, 0.6], [0.4, 0.4, 1.0, 1.0]], F32)
    np.testing.assert_allclose(zscore(hand), [[-1, -1, 0, 0], [0, 0, 1, 1]], atol=1e-4)
    np.testing.assert_allclose(zscore(np.ascontiguousarray(sim.T)), z.T, atol=1e-6)


def test_local_score_finds_known_optima():
    diagonal = np.full((4, 4), -1, F32)
    np.fill_diagonal(diagonal, 2)
    assert local_score(diagonal, 1.0) == pytest.approx(8.0)
    # (0,0), (1,1), one gap step skipping column 2, then (2,3), (3,4): 3 + 3 - 1 + 3 + 3 = 11.
    shifted = np.full((4, 5), -5, F32)
    for i, j in [(0, 0), (1, 1), (2, 3), (3, 4)]:
        shifted[i, j] = 3
    assert local_score(shifted, 1.0) == pytest.approx(11.0)
    score, pairs = local_alignment(shifted, 1.0)
    assert score == pytest.approx(11.0)
    assert pairs.tolist() == [[0, 0], [1, 1], [2, 3], [3, 4]]
    negative = -np.random.default_rng(1).uniform(0.1, 1, (5, 7)).astype(F32)
    assert local_score(negative, 1.0) == 0.0
    score, pairs = local_alignment(negative, 1.0)
    assert score == 0.0 and pairs.shape == (0, 2) and pairs.dtype == np.int64


def test_local_alignment_breaks_ties_at_the_first_maximum():
    # Two separate single-pair alignments of score 2: the first in row-major order wins.
    z = np.full((3, 3), -5, F32)
    z[0, 0] = z[2, 2] = 2
    score, pairs = local_alignment(z, 1.0)
    assert score == pytest.approx(2.0) and pairs.tolist() == [[0, 0]]


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("shape", [(1, 7), (7, 1), (5, 9), (12, 12), (30, 17)])
@pytest.mark.parametrize("gap", [0.0, 0.7, 2.0])
def test_local_alignment_agrees_with_local_score_and_explains_it(seed, shape, gap):
    z = (np.random.default_rng(seed).normal(size=shape) - 0.3).astype(F32)
    score, pairs = local_alignment(z, gap)
    assert score == pytest.approx(local_score(z, gap), abs=1e-6)
    if len(pairs) == 0:
        assert score == 0.0
        return
    assert np.all(np.diff(pairs, axis=0) > 0)
    k = len(pairs)
    (i0, j0), (i1, j1) = pairs[0], pairs[-1]
    gaps = (i1 - i0 + 1 - k) + (j1 - j0 + 1 - k)
    explained = z[pairs[:, 0], pairs[:, 1]].astype(np.float64).sum() - gap * gaps
    assert explained == pytest.approx(score, rel=1e-5, abs=1e-5)


def test_block_scores_equals_scoring_each_block_alone():
    rng = np.random.default_rng(2)
    widths = [1, 5, 17, 9, 2, 30]
    offsets = np.concatenate([[0], np.cumsum(widths)]).astype(np.int64)
    sim = rng.uniform(-1, 1, (offsets[-1], 13)).astype(F32)
    scores = block_scores(sim, offsets, 0.8)
    assert scores.dtype == F32 and scores.shape == (len(widths),)
    # each template's block alone, in the query-by-template orientation: the same score exactly
    # (z-scores and local scores do not depend on which protein runs along the rows)
    expected = [local_score(zscore(np.ascontiguousarray(sim[a:b].T)), 0.8) for a, b in zip(offsets[:-1], offsets[1:])]
    np.testing.assert_array_equal(scores, np.array(expected, F32))
    # more templates than lanes, of mixed lengths, and int32 similarities (the search's products)
    widths = rng.integers(1, 40, 3 * LANES + 5)
    offsets = np.concatenate([[0], np.cumsum(widths)]).astype(np.int64)
    sim = rng.integers(-16000, 16000, (offsets[-1], 21)).astype(np.int32)
    expected = [local_score(zscore(sim[a:b]), 1.0) for a, b in zip(offsets[:-1], offsets[1:])]
    np.testing.assert_array_equal(block_scores(sim, offsets, 1.0), np.array(expected, F32))
    # the search's layout: columns past the query's are zero padding, and never read
    padded = np.zeros((len(sim), 64), np.int32)
    padded[:, :21] = sim
    np.testing.assert_array_equal(block_scores(padded, offsets, 1.0, 21), np.array(expected, F32))
    np.testing.assert_allclose(zscore(sim), zscore(sim.astype(F32) / 16000), atol=1e-5)  # scale-free


def test_a_protein_scores_higher_against_itself_than_against_a_shuffled_copy():
    rng = np.random.default_rng(3)
    query = rng.normal(size=(40, 32)).astype(F32)
    query /= np.linalg.norm(query, axis=1, keepdims=True)
    templates = np.concatenate([query, query[rng.permutation(40)]])
    sim = np.ascontiguousarray(templates @ query.T, dtype=F32)
    self_score, shuffled_score = block_scores(sim, np.array([0, 40, 80], np.int64), 1.0)
    assert self_score > 2 * shuffled_score


def test_normalized_divides_by_the_geometric_mean_length():
    result = normalized(np.array([8.0, 8.0], F32), 4, np.array([4, 16]))
    np.testing.assert_allclose(result, [2.0, 1.0])
    assert result.dtype == F32
