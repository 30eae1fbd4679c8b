"""The feature science on inputs small enough to check by hand, and the fast APC against the slow one."""

from __future__ import annotations

import pytest
import torch

from coevofold.features.coevolution import (
    Stitcher,
    average_product_correct,
    coevolution_maps,
    pool_grid,
    pool_positions,
    symmetrize,
    window_starts,
)

A = torch.tensor([[1.0, 2.0, 0.0], [0.0, 1.0, 3.0], [4.0, 0.0, 1.0]])


def test_symmetrize_adds_the_transpose():
    assert torch.equal(symmetrize(A), torch.tensor([[2.0, 2.0, 4.0], [2.0, 2.0, 3.0], [4.0, 3.0, 2.0]]))


def test_apc_subtracts_row_sum_times_column_sum_over_total():
    # symmetrize(A) has row (= column) sums 8, 7, 9 and total 24; APC_ij = S_ij - r_i r_j / 24,
    # e.g. APC_00 = 2 - 64/24 = -2/3 and APC_12 = 3 - 63/24 = 3/8.
    expected = torch.tensor([
        [-2 / 3, -1 / 3, 1.0],
        [-1 / 3, -1 / 24, 3 / 8],
        [1.0, 3 / 8, -11 / 8],
    ])
    assert torch.allclose(average_product_correct(symmetrize(A)), expected)


def _slow_maps(attentions: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """The definition coevolution_maps must equal: one corrected map per head, then weighted sums."""
    heads = average_product_correct(symmetrize(attentions[:, 1:-1, 1:-1]))
    return torch.stack([sum(w * head for w, head in zip(row, heads)) for row in weights])


def test_coevolution_maps_equal_the_weighted_sum_of_per_head_apc_maps():
    generator = torch.Generator().manual_seed(0)
    attentions = torch.rand(6, 12, 12, generator=generator).softmax(-1)  # 6 heads, L = 10
    weights = torch.randn(3, 6, generator=generator)
    fast = coevolution_maps(attentions, weights)
    assert fast.shape == (3, 10, 10) and fast.dtype == torch.float32
    assert torch.allclose(fast, _slow_maps(attentions, weights), atol=1e-6)
    assert torch.allclose(fast, fast.transpose(-1, -2), atol=1e-6)


def test_coevolution_maps_ignore_the_special_tokens():
    generator = torch.Generator().manual_seed(1)
    attentions = torch.rand(4, 9, 9, generator=generator)
    weights = torch.rand(2, 4, generator=generator)
    changed = attentions.clone()
    changed[:, 0, :] = changed[:, -1, :] = changed[:, :, 0] = changed[:, :, -1] = 100.0
    assert torch.equal(coevolution_maps(changed, weights), coevolution_maps(attentions, weights))


def test_pool_grid_averages_blocks_and_repeats_short_maps_up():
    maps = torch.arange(16.0).reshape(1, 4, 4)
    assert torch.equal(pool_grid(maps, 2), torch.tensor([[[2.5, 4.5], [10.5, 12.5]]]))
    small = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])
    assert torch.equal(pool_grid(small, 4), torch.tensor([[
        [1.0, 1.0, 2.0, 2.0], [1.0, 1.0, 2.0, 2.0], [3.0, 3.0, 4.0, 4.0], [3.0, 3.0, 4.0, 4.0]]]))
    assert torch.equal(pool_grid(maps, 4), maps)  # grid = L: unpooled


def test_pool_positions_averages_contiguous_segments_per_dimension():
    profile = torch.tensor([[0.0, 10.0], [1.0, 11.0], [2.0, 12.0], [3.0, 13.0]])
    assert torch.equal(pool_positions(profile, 2), torch.tensor([[0.5, 10.5], [2.5, 12.5]]))
    # 3 residues into 2 bins: adaptive pooling lets the middle residue count in both
    assert torch.equal(pool_positions(profile[:3], 2), torch.tensor([[0.5, 10.5], [1.5, 11.5]]))
    assert torch.equal(pool_positions(profile, 1), profile.mean(0, keepdim=True))


def test_window_starts_hand_cases():
    assert window_starts(100, 1022, 511) == [0]
    assert window_starts(1022, 1022, 511) == [0]
    assert window_starts(10, 4, 3) == [0, 3, 6]  # 6 + 4 = 10 reaches the end already
    assert window_starts(11, 4, 3) == [0, 3, 6, 7]  # the last window is aligned to the end
    assert window_starts(1023, 1022, 511) == [0, 1]


@pytest.mark.parametrize("window,stride", [(4, 1), (4, 3), (4, 4), (40, 20), (1022, 511)])
def test_window_starts_cover_every_residue_and_end_at_the_end(window, stride):
    for length in range(1, 3 * window + 2):
        starts = window_starts(length, window, stride)
        covered = set().union(*(range(s, min(s + window, length)) for s in starts))
        assert covered == set(range(length))
        assert starts[0] == 0 and starts == sorted(set(starts))
        if length > window:
            assert starts[-1] + window == length
            assert all(b - a <= stride for a, b in zip(starts, starts[1:]))


@pytest.mark.parametrize("window,stride", [(0, 1), (4, 0), (4, 5), (-1, -1)])
def test_window_starts_refuses_bad_arguments(window, stride):
    with pytest.raises(ValueError, match="stride <= window"):
        window_starts(10, window, stride)


def test_stitcher_averages_overlaps_and_leaves_unshared_pairs_zero():
    stitcher = Stitcher(length=4, channels=1, dim=1)
    stitcher.add(0, torch.full((1, 3, 3), 2.0), torch.tensor([[1.0], [1.0], [1.0]]))
    stitcher.add(1, torch.full((1, 3, 3), 4.0), torch.tensor([[3.0], [3.0], [3.0]]))
    maps, profile = stitcher.result()
    assert torch.equal(maps[0], torch.tensor([
        [2.0, 2.0, 2.0, 0.0],
        [2.0, 3.0, 3.0, 4.0],
        [2.0, 3.0, 3.0, 4.0],
        [0.0, 4.0, 4.0, 4.0],
    ]))
    assert torch.equal(profile, torch.tensor([[1.0], [2.0], [2.0], [3.0]]))



