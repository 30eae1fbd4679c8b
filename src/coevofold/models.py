"""Fold classifiers: small PyTorch modules over the stored features, plus a registry.

Every model takes a :class:`Batch` and returns logits over the training folds, so training,
evaluation and prediction treat them alike. Inputs are standardized inside the model with
statistics fitted on the training set (buffers saved with the weights), so a checkpoint carries
everything prediction needs.

* ``maps2d``: a 2D CNN over the stacked co-evolution maps, the original study's idea (kept
  runnable, and in ``coevofold benchmark``, as the reference the pLM models are measured against);
* ``probe``: logistic regression on the mean embedding of every hidden layer (the linear probe
  a new model must beat);
* ``layers``: an MLP on the mean embedding of every hidden layer;
* ``attention``: ``layers`` plus light-attention pooling (Stärk et al. 2021) over the segments.

``probe``, ``layers`` and ``attention`` are the default ensemble's members
(:func:`coevofold.training.default_members`). The other model types studied (``deepsf1d``,
``onehot1d``, ``fused``, ``linear``, ``coevo``, ``topo``, ``graph``) are recorded, with the commit
that last had their code, in ``docs/research.md``.

Any model can also predict the superfamily and family (``ModelConfig.levels``): auxiliary heads
on the shared trunk that make the SCOP hierarchy part of the loss; the fold head predicts.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class Batch:
    """The inputs a model reads; only those its registry entry names are filled in."""

    maps: torch.Tensor | None = None  # [B, C, P, P]
    embedding: torch.Tensor | None = None  # [B, S, D]
    layers: torch.Tensor | None = None  # [B, H, D]


class Standardize(nn.Module):
    """Per-feature standardization with statistics fitted on the training set."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(shape))
        self.register_buffer("std", torch.ones(shape))

    def fit(self, x: torch.Tensor, dims: tuple[int, ...]) -> None:
        self.mean.copy_(x.float().mean(dims).reshape(self.mean.shape))
        self.std.copy_(x.float().std(dims).reshape(self.std.shape).clamp(min=1e-6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x.float() - self.mean) / self.std


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


@dataclass(frozen=True)
class ModelConfig:
    """Architecture hyper-parameters (saved with the weights)."""

    #: "layers" measured best of the single models on DeepSF valid (README, ablation).
    name: str = "layers"
    channels_1d: int = 128
    #: read by no kept model (the 1D CNNs' k-max pooling); kept so model.json files stay identical.
    kmax: int = 8
    channels_2d: int = 64
    hidden: int = 512
    dropout: float = 0.3
    #: SCOP levels predicted by their own heads; the first must be "fold" (it predicts).
    levels: tuple[str, ...] = ("fold",)

    def __post_init__(self) -> None:
        if not self.levels or self.levels[0] != "fold" or not set(self.levels) <= set(LEVELS):
            raise ValueError(f"levels must start with 'fold' and come from {LEVELS}, not {self.levels}")
        object.__setattr__(self, "levels", tuple(self.levels))  # JSON round trips give lists


#: the SCOP levels a model may be trained on, coarse to fine.
LEVELS = ("fold", "superfamily", "family")

class FoldClassifier(nn.Module):
    """One module for every registered architecture; branches are switched on by ``name``."""

    def __init__(self, config: ModelConfig, n_classes: int | dict[str, int], map_channels: int, grid: int, bins: int,
                 dim: int, n_layers: int = 1) -> None:
        super().__init__()
        sizes = n_classes if isinstance(n_classes, dict) else {"fold": n_classes}
        if set(sizes) != set(config.levels):
            raise ValueError(f"class counts for {sorted(sizes)} but the config predicts {config.levels}")
        if config.name not in MODELS:
            raise ValueError(f"unknown model '{config.name}' (known: {', '.join(MODELS)})")
        self.config = config
        uses = MODELS[config.name]
        width = 0
        if "maps" in uses:
            self.maps_norm = Standardize((map_channels, 1, 1))
            self.maps_branch = Conv2DBranch(map_channels, config.channels_2d)
            width += self.maps_branch.out_dim
        if EMBEDDING_INPUTS & set(uses):
            self.emb_norm = Standardize((dim,))
        if "segments" in uses:
            self.emb_branch = LightAttention(dim, config.channels_1d)
            width += self.emb_branch.out_dim
        if "layers" in uses:
            self.layers_norm = Standardize((n_layers, dim))
            width += n_layers * dim
        self.uses = uses
        if config.name in LINEAR:  # multinomial logistic regression, trained like the others
            self.trunk: nn.Module = nn.Identity()
        else:
            self.trunk = nn.Sequential(nn.Dropout(config.dropout), nn.Linear(width, config.hidden), nn.ReLU(),
                                       nn.Dropout(config.dropout))
            width = config.hidden
        self.heads = nn.ModuleDict({level: nn.Linear(width, sizes[level]) for level in config.levels})

    @property
    def n_classes(self) -> int:
        return self.heads["fold"].out_features

    def fit_normalization(self, features) -> None:
        """Fit the input standardizers on training-set features (before training).

        ``features`` has the arrays of :class:`coevofold.checkpoint.SplitData` as attributes;
        only those of the inputs this model reads are touched.
        """
        if "maps" in self.uses:
            self.maps_norm.fit(features.maps, (0, 2, 3))
        if EMBEDDING_INPUTS & set(self.uses):
            self.emb_norm.fit(features.embedding, (0, 1))
        if "layers" in self.uses:
            self.layers_norm.fit(features.layers, (0,))

    def represent(self, batch: Batch) -> torch.Tensor:
        """The trunk's output: what every level's head reads."""
        parts = []
        if "maps" in self.uses:
            parts.append(self.maps_branch(self.maps_norm(batch.maps)))
        if "segments" in self.uses:
            parts.append(self.emb_branch(self.emb_norm(batch.embedding).transpose(1, 2)))
        if "layers" in self.uses:
            parts.append(self.layers_norm(batch.layers).flatten(1))
        return self.trunk(torch.cat(parts, dim=1))

    def forward_levels(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Logits of every level the model predicts."""
        h = self.represent(batch)
        return {level: head(h) for level, head in self.heads.items()}

    def forward(self, batch: Batch) -> torch.Tensor:
        """Fold logits."""
        return self.heads["fold"](self.represent(batch))


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


#: model name -> the inputs it reads.
MODELS: dict[str, tuple[str, ...]] = {
    "maps2d": ("maps",),
    "probe": ("layers",),
    "layers": ("layers",),
    "attention": ("layers", "segments"),
}
#: models without a hidden layer.
LINEAR = ("probe",)
#: inputs that read the segment embeddings (``Batch.embedding``, one standardizer for all).
EMBEDDING_INPUTS = frozenset({"segments"})
