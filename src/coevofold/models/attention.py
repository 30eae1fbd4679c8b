"""``attention``'s branch: light-attention pooling over the segment embeddings."""

from __future__ import annotations

import torch
from torch import nn


class LightAttention(nn.Module):
    """Light attention (Stärk et al. 2021): per-channel softmax attention over positions plus max.

    Unlike k-max pooling over fixed segments, it learns which positions speak for the fold, with
    one attention distribution per feature channel.
    """

    def __init__(self, in_dim: int, channels: int, kernel: int = 3) -> None:
        super().__init__()
        self.values = nn.Conv1d(in_dim, channels, kernel, padding=kernel // 2)
        self.scores = nn.Conv1d(in_dim, channels, kernel, padding=kernel // 2)
        self.out_dim = 2 * channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        values = self.values(x)
        weights = torch.softmax(self.scores(x), dim=-1)
        return torch.cat([(weights * values).sum(-1), values.amax(-1)], dim=1)
