"""Fold classifiers: small PyTorch modules over the stored features, plus a registry.

Every model takes a :class:`Batch` and returns logits over the training folds, so training,
evaluation and prediction treat them alike. Inputs are standardized inside the model with
statistics fitted on the training set (buffers saved with the weights), so a checkpoint carries
everything prediction needs.

* ``deepsf1d``: DeepSF's design (Hou et al. 2018: 1D convolutions, k-max pooling, dense layer)
  over pLM embeddings pooled to segments;
* ``onehot1d``: the same over one-hot residues, the no-pLM baseline;
* ``maps2d``: a 2D CNN over the stacked co-evolution maps, the original study's idea;
* ``fused``: both branches plus the mean embedding;
* ``linear``: logistic regression on the mean embedding, the simplest pLM model;
* ``probe``: logistic regression on the mean embedding of every hidden layer (the linear probe
  a new model must beat);
* ``layers``: an MLP on the mean embedding of every hidden layer;
* ``attention``: ``layers`` plus light-attention pooling (Stärk et al. 2021) over the segments;
* ``coevo``: ``layers`` plus the 2D CNN over the co-evolution maps;
* ``topo``: ``layers`` plus topology descriptors of the full-resolution contact map;
* ``graph``: ``layers`` plus a graph network over the full-resolution contact map (residues as
  nodes carrying their amino acid and their segment's embedding; chain neighbours and the
  strongest predicted contacts as edges: :func:`coevofold.coevolution.contact_graph`).

Any model can also predict the superfamily and family (``ModelConfig.levels``): auxiliary heads
on the shared trunk that make the SCOP hierarchy part of the loss; the fold head predicts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from coevofold.coevolution import TOPOLOGY_FEATURES
from coevofold.data import STANDARD_RESIDUES

#: one-hot alphabet: the 20 standard residues, everything else (X, B, Z, U, O) as the 21st.
ONEHOT_SIZE = len(STANDARD_RESIDUES) + 1
_RESIDUE_INDEX = {r: i for i, r in enumerate(STANDARD_RESIDUES)}
#: one-hot inputs are cropped to this many residues (the pLM window): longer chains are rare.
ONEHOT_MAX_LENGTH = 1022


@dataclass
class Graphs:
    """A batch of residue graphs as one disjoint graph (node indices offset per protein)."""

    residues: torch.Tensor  # [N] residue codes (one-hot alphabet index)
    protein: torch.Tensor  # [N] which protein of the batch each node belongs to
    segment: torch.Tensor  # [N] the embedding segment each residue was pooled into
    edges: torch.Tensor  # [2, E] source, target
    weights: torch.Tensor  # [E]


@dataclass
class Batch:
    """The inputs a model reads; only those its registry entry names are filled in."""

    maps: torch.Tensor | None = None  # [B, C, P, P]
    embedding: torch.Tensor | None = None  # [B, S, D]
    mean: torch.Tensor | None = None  # [B, D]
    layers: torch.Tensor | None = None  # [B, H, D]
    topology: torch.Tensor | None = None  # [B, T] contact-map topology descriptors
    onehot: torch.Tensor | None = None  # [B, 21, L]
    onehot_mask: torch.Tensor | None = None  # [B, L] True on residues
    graphs: Graphs | None = None


def onehot_codes(sequence: str, max_length: int = ONEHOT_MAX_LENGTH) -> np.ndarray:
    """Residue codes of the one-hot alphabet (non-standard residues: the last), cropped."""
    return np.array([_RESIDUE_INDEX.get(r, ONEHOT_SIZE - 1) for r in sequence[:max_length]], dtype=np.int64)


def onehot(sequences: list[str], max_length: int = ONEHOT_MAX_LENGTH) -> tuple[torch.Tensor, torch.Tensor]:
    """One-hot [B, 21, L] and residue mask [B, L], padded to the longest (cropped) sequence."""
    length = min(max(len(s) for s in sequences), max_length)
    codes = torch.full((len(sequences), length), -1, dtype=torch.long)
    for row, seq in enumerate(sequences):
        codes[row, : min(len(seq), max_length)] = torch.from_numpy(onehot_codes(seq, max_length))
    mask = codes >= 0
    x = torch.zeros(len(sequences), ONEHOT_SIZE, length)
    x.scatter_(1, codes.clamp(min=0).unsqueeze(1), mask.unsqueeze(1).float())
    return x, mask


def kmax_pool(x: torch.Tensor, k: int, mask: torch.Tensor | None = None) -> torch.Tensor:
    """DeepSF's k-max pooling: the k largest values per channel, kept in sequence order.

    It turns any length into k positions while keeping where the strongest motifs occur
    relative to each other. Masked (padding) positions never win; chains shorter than k are
    padded with zeros.
    """
    if mask is not None:
        x = x.masked_fill(~mask.unsqueeze(1), float("-inf"))
    if x.shape[-1] < k:
        x = nn.functional.pad(x, (0, k - x.shape[-1]), value=float("-inf"))
    idx = x.topk(k, dim=-1).indices.sort(dim=-1).values
    return x.gather(-1, idx).nan_to_num(neginf=0.0)


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


class Conv1DBranch(nn.Module):
    """DeepSF-style: stacked 1D convolutions, k-max pooling, flatten."""

    def __init__(self, in_dim: int, channels: int, kmax: int, kernel: int = 5, layers: int = 2) -> None:
        super().__init__()
        blocks: list[nn.Module] = []
        for i in range(layers):
            blocks += [nn.Conv1d(in_dim if i == 0 else channels, channels, kernel, padding=kernel // 2),
                       nn.BatchNorm1d(channels), nn.ReLU()]
        self.convs = nn.Sequential(*blocks)
        self.kmax = kmax
        self.out_dim = channels * kmax

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return kmax_pool(self.convs(x), self.kmax, mask).flatten(1)


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


class GraphBranch(nn.Module):
    """Message passing over residue graphs, then mean and max over each protein's residues.

    Each layer adds to a residue the weighted mean of its neighbours' states (GraphSAGE-like, with
    a residual connection), so after ``layers`` rounds a residue has seen what its predicted
    contacts carry: the full-resolution contact topology, which the 32 x 32 grid blurs.
    """

    def __init__(self, dim: int, channels: int, layers: int = 3, residue_dim: int = 16) -> None:
        super().__init__()
        self.residue = nn.Embedding(ONEHOT_SIZE, residue_dim)
        self.inp = nn.Linear(dim + residue_dim, channels)
        self.self_weights = nn.ModuleList(nn.Linear(channels, channels) for _ in range(layers))
        self.neighbour_weights = nn.ModuleList(nn.Linear(channels, channels, bias=False) for _ in range(layers))
        self.norms = nn.ModuleList(nn.LayerNorm(channels) for _ in range(layers))
        self.out_dim = 2 * channels

    def forward(self, graphs: Graphs, embedding: torch.Tensor) -> torch.Tensor:
        """``embedding``: the batch's standardized segment embeddings [B, S, D]."""
        h = torch.relu(self.inp(torch.cat([embedding[graphs.protein, graphs.segment],
                                           self.residue(graphs.residues)], dim=1)))
        src, dst = graphs.edges
        degree = torch.zeros(len(h)).index_add_(0, dst, graphs.weights).clamp(min=1e-6).unsqueeze(1)
        for self_w, neighbour_w, norm in zip(self.self_weights, self.neighbour_weights, self.norms):
            messages = torch.zeros_like(h).index_add_(0, dst, h[src] * graphs.weights.unsqueeze(1)) / degree
            h = h + torch.relu(norm(self_w(h) + neighbour_w(messages)))
        n = int(graphs.protein.max()) + 1 if len(h) else 0
        index = graphs.protein.unsqueeze(1).expand_as(h)
        mean = torch.zeros(n, h.shape[1]).scatter_reduce_(0, index, h, "mean", include_self=False)
        peak = torch.full((n, h.shape[1]), -torch.inf).scatter_reduce_(0, index, h, "amax", include_self=False)
        return torch.cat([mean, peak], dim=1)


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
        if "embedding" in uses:
            self.emb_branch = Conv1DBranch(dim, config.channels_1d, config.kmax)
            width += self.emb_branch.out_dim
        if "segments" in uses:
            self.emb_branch = LightAttention(dim, config.channels_1d)
            width += self.emb_branch.out_dim
        if "graph" in uses:
            self.graph_branch = GraphBranch(dim, config.channels_1d)
            width += self.graph_branch.out_dim
        if "layers" in uses:
            self.layers_norm = Standardize((n_layers, dim))
            width += n_layers * dim
        if "topology" in uses:
            self.topology_norm = Standardize((len(TOPOLOGY_FEATURES),))
            width += len(TOPOLOGY_FEATURES)
        if "mean" in uses:
            self.mean_norm = Standardize((dim,))
            width += dim
        if "onehot" in uses:
            self.onehot_branch = Conv1DBranch(ONEHOT_SIZE, config.channels_1d, config.kmax, kernel=9, layers=3)
            width += self.onehot_branch.out_dim
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
        only those of the inputs this model reads are touched, so derived ones that cost time
        to compute (the contact topology) stay uncomputed for the other models.
        """
        if "maps" in self.uses:
            self.maps_norm.fit(features.maps, (0, 2, 3))
        if EMBEDDING_INPUTS & set(self.uses):
            self.emb_norm.fit(features.embedding, (0, 1))
        if "mean" in self.uses:
            self.mean_norm.fit(features.mean, (0,))
        if "layers" in self.uses:
            self.layers_norm.fit(features.layers, (0,))
        if "topology" in self.uses:
            self.topology_norm.fit(features.topology, (0,))

    def represent(self, batch: Batch) -> torch.Tensor:
        """The trunk's output: what every level's head reads."""
        parts = []
        if "maps" in self.uses:
            parts.append(self.maps_branch(self.maps_norm(batch.maps)))
        if "embedding" in self.uses or "segments" in self.uses:
            parts.append(self.emb_branch(self.emb_norm(batch.embedding).transpose(1, 2)))
        if "graph" in self.uses:
            parts.append(self.graph_branch(batch.graphs, self.emb_norm(batch.embedding)))
        if "mean" in self.uses:
            parts.append(self.mean_norm(batch.mean))
        if "layers" in self.uses:
            parts.append(self.layers_norm(batch.layers).flatten(1))
        if "topology" in self.uses:
            parts.append(self.topology_norm(batch.topology))
        if "onehot" in self.uses:
            parts.append(self.onehot_branch(batch.onehot, batch.onehot_mask))
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
    "fused": ("maps", "embedding", "mean"),
    "maps2d": ("maps",),
    "deepsf1d": ("embedding",),
    "onehot1d": ("onehot",),
    "linear": ("mean",),
    "probe": ("layers",),
    "layers": ("layers",),
    "attention": ("layers", "segments"),
    "coevo": ("layers", "maps"),
    "topo": ("layers", "topology"),
    "graph": ("layers", "graph"),
}
#: models without a hidden layer.
LINEAR = ("linear", "probe")
#: inputs that read the segment embeddings (``Batch.embedding``, one standardizer for all).
EMBEDDING_INPUTS = frozenset({"embedding", "segments", "graph"})
