"""The science of the features: attention -> contact-like maps -> compact fixed-size arrays.

Pure tensor functions, no I/O, no model: each is tested against hand-computed values.

* Symmetrization and average product correction (APC) are ESM's own functions from
  ``transformers``; :func:`coevolution_maps` applies them per head after dropping the special
  tokens, which is how Rao et al. (2021) turned attention into contact predictors.
* :func:`pool_grid` / :func:`pool_positions` shrink an L x L map / an L x D profile to a fixed
  size so that proteins of any length share one array shape, which is what makes the store
  compact and training fast.
* :func:`window_starts` and :class:`Stitcher` handle sequences longer than the model's window.
* :func:`contact_topology` summarises a full-resolution contact map in a few length-independent
  numbers (contacts by sequence separation, contact order, helix and sheet pairing patterns)
  that the 32 x 32 grid blurs for long chains.
* :func:`contact_graph` keeps the full-resolution map as a residue graph (chain neighbours and
  the strongest predicted contacts), what the ``graph`` model passes messages over.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from transformers.models.esm.modeling_esm import average_product_correct, symmetrize

__all__ = [
    "Stitcher",
    "TOPOLOGY_FEATURES",
    "average_product_correct",
    "coevolution_maps",
    "contact_graph",
    "contact_topology",
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
        self.map_count = torch.zeros(length, length)
        self.profile = torch.zeros(length, dim)
        self.profile_count = torch.zeros(length, 1)

    def add(self, start: int, maps: torch.Tensor, profile: torch.Tensor) -> None:
        end = start + maps.shape[-1]
        self.maps[:, start:end, start:end] += maps
        self.map_count[start:end, start:end] += 1
        self.profile[start:end] += profile
        self.profile_count[start:end] += 1

    def result(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.maps / self.map_count.clamp(min=1), self.profile / self.profile_count.clamp(min=1)


#: Names of :func:`contact_topology`'s outputs, in order.
TOPOLOGY_FEATURES = (
    "contacts_sep6_11", "contacts_sep12_23", "contacts_sep24_47", "contacts_sep48_up",
    "relative_contact_order", "antiparallel_pairing", "parallel_pairing",
    "helix_i_i3", "helix_i_i4", "long_range_burial", "log_length",
)


def contact_topology(contacts: np.ndarray) -> np.ndarray:
    """Length-independent topology descriptors of a symmetric [L, L] contact-probability map.

    Per residue: expected contacts at sequence separations 6-11, 12-23, 24-47 and 48+ (the
    local-to-global balance that separates all-alpha from beta folds); relative contact order
    (mean separation of contacts / L, a known correlate of fold topology); antiparallel and
    parallel pairing, sum p(i, j) p(i+1, j-1) and p(i, j) p(i+1, j+1) over separations >= 3 / 6
    (beta ladders run one way or the other); mean p(i, i+3) and p(i, i+4) (helical turns); mean
    over residues of the strongest contact 12+ apart (burial); and log length.

    NumPy, not torch: it runs once per protein on small matrices, where torch's intra-op threads
    cost 10x more than the arithmetic on a busy machine.
    """
    p = np.asarray(contacts, dtype=np.float32)
    length = p.shape[0]
    sep = np.arange(length)[None, :] - np.arange(length)[:, None]  # j - i
    upper = np.triu(p, 1)
    bands = [(upper * ((sep >= low) & (sep < high))).sum() / length
             for low, high in ((6, 12), (12, 24), (24, 48), (48, length + 1))]
    far = upper * (sep >= 6)
    order = (far * sep).sum() / max(far.sum() * length, 1e-12)
    parallel = (p[:-1, :-1] * p[1:, 1:] * (sep[:-1, :-1] >= 6)).sum() / length  # p(i, j) p(i+1, j+1)
    antiparallel = (p[:-1, 1:] * p[1:, :-1] * (sep[:-1, 1:] >= 3)).sum() / length  # p(i, j) p(i+1, j-1)

    def diagonal(offset: int) -> float:
        band = np.diagonal(p, offset)
        return float(band.mean()) if band.size else 0.0

    burial = (p * (np.abs(sep) >= 12)).max(1).mean() if length else 0.0
    return np.array([*bands, order, antiparallel, parallel, diagonal(3), diagonal(4), burial, np.log(length)],
                    dtype=np.float32)


def contact_graph(triangle: np.ndarray, length: int, per_residue: float = 2.0,
                  min_separation: int = 6) -> tuple[np.ndarray, np.ndarray]:
    """A residue graph of a stored contact map: edges [2, E] in both directions and weights [E].

    Chain neighbours (i, i+1) weigh 1; the ``per_residue * length`` most probable contacts at
    least ``min_separation`` apart weigh their probability. A fixed budget per residue, not a
    threshold: the contact head's probabilities are lower on remote proteins, and a threshold
    would leave them without long-range edges. ``triangle`` is the store's uint8 upper triangle.
    """
    rows, cols = np.triu_indices(length, 1)
    p = np.asarray(triangle, dtype=np.float32) / 255.0
    far = np.flatnonzero(cols - rows >= min_separation)
    k = min(int(per_residue * length), len(far))
    top = far[np.argpartition(-p[far], k - 1)[:k]] if k > 0 else far[:0]
    chain = np.arange(length - 1)
    src = np.concatenate([chain, rows[top]])
    dst = np.concatenate([chain + 1, cols[top]])
    weight = np.concatenate([np.ones(len(chain), np.float32), p[top]])
    return np.stack([np.concatenate([src, dst]), np.concatenate([dst, src])]).astype(np.int64), np.tile(weight, 2)
