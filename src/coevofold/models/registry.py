"""The fold classifiers' registry: model names, their inputs, and the one module that builds them.

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
(:func:`coevofold.training.recipe.default_members`). The other model types studied (``deepsf1d``,
``onehot1d``, ``fused``, ``linear``, ``coevo``, ``topo``, ``graph``) are recorded, with the commit
that last had their code, in ``docs/research.md``.

Any model can also predict the superfamily and family (``ModelConfig.levels``): auxiliary heads
on the shared trunk that make the SCOP hierarchy part of the loss; the fold head predicts.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from coevofold.models.attention import LightAttention
from coevofold.models.maps import Conv2DBranch


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

        ``features`` has the arrays of :class:`coevofold.training.checkpoint.SplitData` as attributes;
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
