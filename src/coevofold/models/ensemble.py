"""The default model's form: a weighted mean of member classifiers."""

from __future__ import annotations

import torch
from torch import nn

from coevofold.models.registry import Batch


class Ensemble(nn.Module):
    """A weighted mean of member models' fold probabilities, weights chosen on ``valid``.

    Members that read different inputs or were fitted differently (a converged linear probe, an
    MLP with the hierarchy in its loss) make different mistakes; their mean is right more often
    than either. ``forward`` returns log-probabilities, so a softmax over them gives the mean.
    """

    def __init__(self, members: dict[str, nn.Module], weights: dict[str, float]) -> None:
        super().__init__()
        if set(members) != set(weights):
            raise ValueError(f"weights for {sorted(weights)} but members {sorted(members)}")
        sizes = {m.n_classes for m in members.values()}
        if len(sizes) != 1:
            raise ValueError(f"members predict different numbers of classes: {sorted(sizes)}")
        self.members = nn.ModuleDict(members)
        self.weights = dict(weights)
        self.uses = tuple(sorted({u for m in members.values() for u in m.uses}))

    @property
    def n_classes(self) -> int:
        return next(iter(self.members.values())).n_classes

    def forward(self, batch: Batch) -> torch.Tensor:
        mixed = sum(w * torch.softmax(self.members[name](batch), -1) for name, w in self.weights.items())
        return torch.log(mixed.clamp(min=1e-12))
