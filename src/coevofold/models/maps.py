"""``maps2d``'s branch, the original study's idea: a 2D CNN over the stacked co-evolution maps."""

from __future__ import annotations

import torch
from torch import nn


class Conv2DBranch(nn.Module):
    """A small 2D CNN over the P x P co-evolution maps: three conv blocks, then avg+max pooling."""

    def __init__(self, in_channels: int, channels: int) -> None:
        super().__init__()
        blocks: list[nn.Module] = []
        for i in range(3):
            blocks += [nn.Conv2d(in_channels if i == 0 else channels, channels, 3, padding=1),
                       nn.BatchNorm2d(channels), nn.ReLU()]
            if i < 2:
                blocks.append(nn.MaxPool2d(2))
        self.convs = nn.Sequential(*blocks)
        self.out_dim = 2 * channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.convs(x)
        return torch.cat([h.mean((-1, -2)), h.amax((-1, -2))], dim=1)
