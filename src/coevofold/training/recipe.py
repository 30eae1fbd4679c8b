"""The default recipe: the members ``quickstart`` trains and ``predict`` answers with."""

from __future__ import annotations

from dataclasses import replace

from coevofold.models.registry import ModelConfig
from coevofold.training.trainer import TrainConfig


def default_members(progress: bool = True) -> dict[str, TrainConfig]:
    """The default model's members: what ``quickstart`` trains and ``predict`` uses.

    A linear probe on every hidden layer's mean embedding fitted to convergence, eight seeds of
    an MLP on the same inputs with superfamily and family heads in its loss and no class
    weights, and three seeds of the same MLP with light attention over the segment embeddings;
    one mixture weight per recipe, fitted on ``valid`` and shared equally by its seeds
    (:func:`coevofold.training.mixture.seed_groups`). Chosen on held-out data only (README, Results): single MLP seeds
    differ by up to 3 points on held-out fold-like proteins, and averaging eight of them (three
    of the attention MLP) lifted a proxy of the model from 34.1 to 35.8 % on the fold-like
    proteins held out of training (:func:`coevofold.data.splits.calibration_split`) and from 39.9
    to 41.0 % on ``valid``. Offered as a sixth member of the previous five-member default, the
    co-evolution maps CNN got weight 0 on ``valid``. Every AdamW member trains on
    :class:`~coevofold.training.trainer.TrainConfig`'s fixed budget (12 epochs, cosine decay):
    the twelve in 12 min on 2 cores against 24 min with early stopping, and the default system's
    test table equal within a tenth of a point (docs/research.md, issue 19).
    """
    hierarchy = ("fold", "superfamily", "family")
    mlp = TrainConfig(model=ModelConfig(name="layers", levels=hierarchy), class_weight_power=0.0, progress=progress)
    attention = replace(mlp, model=ModelConfig(name="attention", levels=hierarchy))
    return {
        "probe": TrainConfig(model=ModelConfig(name="probe"), solver="lbfgs", progress=progress),
        **{("mlp" if seed == 0 else f"mlp_seed{seed}"): replace(mlp, seed=seed) for seed in range(8)},
        **{("attention" if seed == 0 else f"attention_seed{seed}"): replace(attention, seed=seed) for seed in range(3)},
    }
