"""Where one epoch of the default MLP goes, and what the fused optimizer and larger batches save.

After ``coevofold quickstart`` (it reads its DeepSF store). One seed of the default recipe's MLP
(``recipe.default_members()["mlp"]``: every layer's mean embedding, fold + superfamily + family
heads, 3.7 M weights) over the 12,312 training domains, one epoch per setting, in one run: the
batch's gathering, the forward and backward pass with the training loss, and AdamW's step, for
batches of 64 (the default) and 256, with PyTorch's loop-over-tensors AdamW ("foreach") and its
fused one. A plain PyTorch loop over training's own batches (``trainer._Collate``) and loss
(``trainer.training_loss``), not ``trainer.train`` (Lightning's validation and checkpoints are
the same in every setting and would blur the parts). The printed ratios compare settings of
this run only.

Run from the repository root:  python benchmarks/training_step.py
"""

from __future__ import annotations

import time

import torch

from coevofold.app import runs
from coevofold.training import recipe, trainer
from coevofold.training.checkpoint import load_split


def epoch_parts(classifier, data, targets: torch.Tensor, weights: torch.Tensor, config: trainer.TrainConfig,
                batch_size: int, fused: bool) -> dict[str, float]:
    """Seconds of one epoch's batch gathering, forward + backward, and optimizer steps."""
    torch.manual_seed(0)
    optimizer = torch.optim.AdamW(classifier.parameters(), lr=config.lr, weight_decay=config.weight_decay, fused=fused)
    collate = trainer._Collate(data, classifier.uses)  # the batches training's loader builds
    order = torch.randperm(len(data)).tolist()
    parts = {"batch": 0.0, "forward + backward": 0.0, "optimizer": 0.0}
    for start in range(0, len(data), batch_size):
        began = time.perf_counter()
        inputs, labels, levels = collate(order[start:start + batch_size])
        gathered = time.perf_counter()
        loss = trainer.training_loss(classifier.forward_levels(inputs), labels, levels, targets, weights, config)
        optimizer.zero_grad()
        loss.backward()
        backward = time.perf_counter()
        optimizer.step()
        parts["batch"] += gathered - began
        parts["forward + backward"] += backward - gathered
        parts["optimizer"] += time.perf_counter() - backward
    return parts


def main() -> None:
    table, store_path = runs.cached_deepsf()
    config = recipe.default_members(False)["mlp"]
    train = table[table["split"] == "train"]
    classes = sorted(train["fold"].unique())
    level_classes = {level: sorted(train[level].dropna().unique()) for level in config.model.levels[1:]}
    data = load_split(store_path, train, classes, level_classes)
    sizes = {"fold": len(classes), **{level: len(names) for level, names in level_classes.items()}}
    classifier = trainer.build_classifier(config.model, sizes, data)
    classifier.fit_normalization(data)
    targets = trainer.smoothing_matrix(classes, config.label_smoothing, config.smoothing_target)
    weights = trainer.class_weights(data.labels, len(classes), config.class_weight_power)
    print(f"one epoch of the default MLP ({sum(p.numel() for p in classifier.parameters()):,} weights) over "
          f"{len(data):,} domains, {torch.get_num_threads()} threads")
    baseline = None
    for batch_size in (64, 256):
        for fused in (False, True):
            parts = epoch_parts(classifier, data, targets, weights, config, batch_size, fused)
            total = sum(parts.values())
            baseline = baseline or total
            described = ", ".join(f"{name} {seconds:.2f} s" for name, seconds in parts.items())
            print(f"batch {batch_size:3d}, AdamW {'fused  ' if fused else 'foreach'}: {total:.2f} s ({described}); "
                  f"{baseline / total:.2f}x the default's foreach batch-64 epoch")


if __name__ == "__main__":
    main()
