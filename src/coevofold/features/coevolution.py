"""The science of the features: attention -> contact-like maps -> compact fixed-size arrays.

Pure tensor functions, no I/O, no model: each is tested against hand-computed values.

* Symmetrization and average product correction (APC) are ESM's own functions from
  ``transformers``; :func:`coevolution_maps` applies them per head after dropping the special
  tokens, which is how Rao et al. (2021) turned attention into contact predictors.
* :func:`pool_grid` / :func:`pool_positions` shrink an L x L map / an L x D profile to a fixed
  size so that proteins of any length share one array shape, which is what makes the store
  compact and training fast.
* :func:`window_starts` and :class:`Stitcher` handle sequences longer than the model's window.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers.models.esm.modeling_esm import average_product_correct, symmetrize

__all__ = [
    "Stitcher",
    "average_product_correct",
    "coevolution_maps",
    "pool_grid",
    "pool_positions",
    "symmetrize",
    "window_starts",
]


def coevolution_maps(attentions: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Weighted sums of per-head APC-corrected symmetric maps, in one pass over the attention.

    ``attentions``: [heads, L + 2, L + 2] (all layers' heads flattened) with one special token at
    each end, which is dropped first: BOS/EOS attract much attention and would dominate the APC
    means. ``weights``: [C, heads]. Returns [C, L, L] float32 equal to
    ``sum_h weights[c, h] * average_product_correct(symmetrize(A_h))``.

    Why not that formula: it materialises 120 corrected L x L maps per protein and made
    extraction 10x slower. Symmetrization is linear, and the APC term of head h is the outer
    product r_h r_h^T / s_h of its row sums, so the weighted sum is one matrix product over the
    attention plus a rank-``heads`` correction.
    """
    a = attentions[..., 1:-1, 1:-1].float()
    rows = a.sum(-1) + a.sum(-2)  # row sums of each symmetrized head, [heads, L]
    total = rows.sum(-1, keepdim=True)  # [heads, 1]
    mixed = torch.einsum("ch,hij->cij", weights, a)
    corrected = mixed + mixed.transpose(-1, -2)
    scaled = weights.unsqueeze(-1) * (rows / total).unsqueeze(0)  # [C, heads, L]
    return corrected - torch.einsum("chi,hj->cij", scaled, rows)


def pool_grid(maps: torch.Tensor, size: int) -> torch.Tensor:
    """Average-pool [C, L, L] maps to [C, size, size].

    Each grid cell averages a block of residue pairs, so the grid keeps where along the chain
    contacts lie (the fold's topology) at 1/size resolution. Shorter chains are repeated up.
    """
    return F.adaptive_avg_pool2d(maps.unsqueeze(0), size).squeeze(0)


def pool_positions(profile: torch.Tensor, bins: int) -> torch.Tensor:
    """Average-pool an [L, D] per-residue profile to [bins, D] contiguous segments."""
    return F.adaptive_avg_pool1d(profile.T.unsqueeze(0), bins).squeeze(0).T


def window_starts(length: int, window: int, stride: int) -> list[int]:
    """Start positions of windows covering ``length`` residues.

    Windows are ``window`` long and start every ``stride`` residues; the last one is aligned to
    the end so no residue is left out. A chain that fits gets the single start 0.
    """
    if window <= 0 or stride <= 0 or stride > window:
        raise ValueError(f"need 0 < stride <= window, got window={window}, stride={stride}")
    if length <= window:
        return [0]
    starts = list(range(0, length - window + 1, stride))
    if starts[-1] + window < length:
        starts.append(length - window)
    return starts


class Stitcher:
    """Accumulates per-window pair maps [C, l, l] and residue profiles [l, D] into a whole chain.

    Overlapping windows are averaged. Residue pairs that never share a window (far apart in a
    very long chain) stay zero: the model never saw them together, so there is no evidence.
    """

    def __init__(self, length: int, channels: int, dim: int) -> None:
        self.maps = torch.zeros(channels, length, length)
        # pair counts only where there are maps: L x L floats for nothing otherwise (400 MB at 10,000)
        self.map_count = torch.zeros(length, length) if channels else None
        self.profile = torch.zeros(length, dim)
        self.profile_count = torch.zeros(length, 1)

    def add(self, start: int, maps: torch.Tensor, profile: torch.Tensor) -> None:
        end = start + profile.shape[0]
        if self.map_count is not None:
            self.maps[:, start:end, start:end] += maps
            self.map_count[start:end, start:end] += 1
        self.profile[start:end] += profile
        self.profile_count[start:end] += 1

    def result(self) -> tuple[torch.Tensor, torch.Tensor]:
        maps = self.maps / self.map_count.clamp(min=1) if self.map_count is not None else self.maps
        return maps, self.profile / self.profile_count.clamp(min=1)
