"""Seeds of one recipe trained together: their weights stacked, one pass of ``torch.func.vmap``.

The default model trains eight seeds of one MLP and three of another (:mod:`coevofold.training.recipe`).
Trained one after another, each is a Lightning run of small matrix products (64 proteins at a
step); stacked, each step multiplies all seeds' weights at once, so the per-step overhead is paid
once and the products are larger. Each seed keeps what makes it a seed: its own initial weights
(drawn from its seed, as :func:`coevofold.training.trainer.train` draws them), its own order of
the training rows each epoch, its own dropout masks, its own AdamW state (AdamW is elementwise,
so one optimizer over stacked weights is one per seed), and its own early stopping: the weights
of its best validation epoch are kept, and it stops counting once ``patience`` epochs pass
without improvement. The stack stops when every seed has stopped.

A stack is trained in one go and saved seed by seed as ordinary model folders; there is no
per-epoch checkpoint (the stack's minutes are cheaper to repeat than to write and guard a resumable
state for), so a run killed mid-stack starts the stack again, while finished folders are reused.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.func import functional_call, stack_module_state, vmap

from coevofold.errors import CoevofoldError
from coevofold.files import writable_dir, write_text
from coevofold.models.registry import MODELS, Batch, FoldClassifier
from coevofold.training.checkpoint import METRICS, SplitData, save_model
from coevofold.training.trainer import (
    Setup,
    TrainConfig,
    _epoch_seed,
    check_finite,
    plot_curves,
    prepare,
    training_loss,
)


@dataclass
class SeedBest:
    """One seed's early stopping: its best validation accuracy so far, when, and its weights then."""

    accuracy: float = -1.0
    epoch: int = -1
    wait: int = 0
    state: dict[str, torch.Tensor] | None = None


class _Levels(torch.nn.Module):
    """``forward_levels`` as a plain call on tensors, the form ``functional_call`` under ``vmap`` wants."""

    def __init__(self, classifier: FoldClassifier) -> None:
        super().__init__()
        self.classifier = classifier

    def forward(self, layers: torch.Tensor | None, embedding: torch.Tensor | None) -> dict[str, torch.Tensor]:
        return self.classifier.forward_levels(Batch(layers=layers, embedding=embedding))


def stackable(configs: list[TrainConfig]) -> bool:
    """Whether ``configs`` can train as one stack: mini-batch recipes that differ only in their seed,
    on embedding inputs (the maps CNN is not stacked)."""
    first = replace(configs[0], seed=0)
    return (len(configs) > 1 and all(replace(c, seed=0) == first for c in configs) and first.solver == "adamw"
            and "maps" not in MODELS[first.model.name] and len({c.seed for c in configs}) == len(configs))


def _inputs(split: SplitData, index: torch.Tensor, uses: tuple[str, ...]) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Layer means and (for the attention models) segment embeddings of ``index`` [seeds, rows]."""
    batch = split.batch(index.flatten(), uses)
    shape = tuple(index.shape)
    layers = batch.layers.reshape(*shape, *batch.layers.shape[1:])
    embedding = None if batch.embedding is None else batch.embedding.reshape(*shape, *batch.embedding.shape[1:])
    return layers, embedding


def train_seeds(store_path: str | os.PathLike, table: pd.DataFrame, run_dirs: dict[str, str | os.PathLike],
                configs: dict[str, TrainConfig], fold_names: dict[str, str] | None = None) -> dict[str, Path]:
    """Train ``configs`` (one recipe, several seeds; :func:`stackable`) as one stack, saving each
    seed's model to its ``run_dirs`` folder as :func:`coevofold.training.trainer.train` would."""
    names = list(configs)
    if not stackable([configs[n] for n in names]):
        raise CoevofoldError(f"members {', '.join(names)} are not seeds of one mini-batch recipe: train them one by one")
    config = configs[names[0]]
    setup = prepare(store_path, table, config, fold_names)
    seeds = [configs[n].seed for n in names]
    folders = {name: writable_dir(run_dirs[name]) for name in names}
    classifiers = [setup.classifier(seed) for seed in seeds]
    bests, history = _fit(setup, classifiers, seeds)
    for name, classifier, best, seed in zip(names, classifiers, bests, seeds):
        classifier.load_state_dict(best.state)
        rows = history[history["seed"] == seed].drop(columns="seed")
        write_text(folders[name] / METRICS, rows.to_csv(index=False))
        meta = {**setup.meta, "train": {**setup.meta["train"], "seed": seed}, "best_val_acc": best.accuracy,
                "epochs": int(history["epoch"].max()) + 1, "stacked_with": names}
        save_model(folders[name], classifier.eval(), meta)
        plot_curves(folders[name])
    return folders


def _fit(setup: Setup, classifiers: list[FoldClassifier], seeds: list[int]) -> tuple[list[SeedBest], pd.DataFrame]:
    """The stacked training loop: each epoch every seed's own shuffle, then validation and early
    stopping per seed. Returns each seed's best and the learning curves (one row per seed and epoch)."""
    from tqdm.auto import tqdm

    config, train, valid = setup.config, setup.train_data, setup.valid_data
    uses = MODELS[config.model.name]
    device = setup.device.torch
    params, buffers = stack_module_state(classifiers)
    params = {k: v.detach().to(device).requires_grad_(True) for k, v in params.items()}
    buffers = {k: v.to(device) for k, v in buffers.items()}
    base = _Levels(copy.deepcopy(classifiers[0]).to("meta"))

    def levels(p: dict, b: dict, layers: torch.Tensor, embedding: torch.Tensor | None) -> dict[str, torch.Tensor]:
        return functional_call(base, ({f"classifier.{k}": v for k, v in p.items()},
                                      {f"classifier.{k}": v for k, v in b.items()}), (layers, embedding))

    stacked = vmap(levels, in_dims=(0, 0, 0, None if EMBEDDINGS.isdisjoint(uses) else 0), randomness="different")
    optimizer = torch.optim.AdamW(params.values(), lr=config.lr, weight_decay=config.weight_decay)
    class_weight, soft_targets = setup.class_weight.to(device), setup.soft_targets.to(device)
    n, k = len(train), len(seeds)
    bests, rows = [SeedBest() for _ in seeds], []
    seen = valid.labels >= 0
    epochs = tqdm(range(config.max_epochs), desc=f"{config.model.name} x {k} seeds", unit="epoch",
                  disable=not config.progress)
    for epoch in epochs:
        base.train()
        torch.manual_seed(_epoch_seed(seeds[0], epoch))  # dropout: a function of (seeds, epoch) alone
        orders = torch.stack([torch.randperm(n, generator=torch.Generator().manual_seed(_epoch_seed(s, epoch)))
                              for s in seeds])
        losses = torch.zeros(k)
        for step, start in enumerate(range(0, n, config.batch_size)):
            index = orders[:, start:start + config.batch_size]
            layers, embedding = _inputs(train, index, uses)
            logits = stacked(params, buffers, layers.to(device), None if embedding is None else embedding.to(device))
            loss = torch.stack([
                training_loss({level: out[s] for level, out in logits.items()}, train.labels[index[s]].to(device),
                              {level: labels[index[s]].to(device) for level, labels in train.level_labels.items()},
                              class_weight, soft_targets, config)
                for s in range(k)])
            check_finite(loss, epoch, step)
            optimizer.zero_grad(set_to_none=True)
            loss.sum().backward()
            optimizer.step()
            losses += loss.detach().cpu() * index.shape[1]
        base.eval()
        accuracy, valid_loss = _validate(stacked, params, buffers, valid, uses, device)
        for s, seed in enumerate(seeds):
            best = bests[s]
            rows.append({"seed": seed, "epoch": epoch, "train_loss": float(losses[s] / n),
                         "val_loss": float(valid_loss[s]) if seen.any() else np.nan, "val_acc": float(accuracy[s])})
            if best.wait >= config.patience:
                continue  # stopped: later epochs of this seed are not looked at
            if accuracy[s] > best.accuracy:
                best.accuracy, best.epoch, best.wait = float(accuracy[s]), epoch, 0
                best.state = {name: value[s].detach().cpu().clone() for name, value in {**params, **buffers}.items()}
            else:
                best.wait += 1
        epochs.set_postfix(val_acc=f"{100 * max(b.accuracy for b in bests):.1f}%",
                           running=sum(b.wait < config.patience for b in bests))
        if all(b.wait >= config.patience for b in bests):
            break
    return bests, pd.DataFrame(rows)


#: inputs a model reads from the segment embeddings (the attention branch).
EMBEDDINGS = frozenset({"segments"})


@torch.inference_mode()
def _validate(stacked: Callable, params: dict, buffers: dict, valid: SplitData, uses: tuple[str, ...],
              device: torch.device, batch_size: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """Each seed's validation top-1 (over proteins of training folds) and cross-entropy (the caller
    puts the model in eval mode: no dropout)."""
    k = next(iter(params.values())).shape[0]
    labels, seen = valid.labels, valid.labels >= 0
    correct, loss = torch.zeros(k), torch.zeros(k)
    for start in range(0, len(valid), batch_size):
        index = torch.arange(start, min(start + batch_size, len(valid))).expand(k, -1)
        layers, embedding = _inputs(valid, index, uses)
        fold = stacked(params, buffers, layers.to(device), None if embedding is None else embedding.to(device))["fold"].cpu()
        mask = seen[index[0]]
        target = labels[index[0]]
        correct += (fold.argmax(-1) == target).logical_and(mask).sum(-1)
        if mask.any():
            loss += torch.stack([torch.nn.functional.cross_entropy(fold[s][mask], target[mask], reduction="sum")
                                 for s in range(k)])
    total = max(int(seen.sum()), 1)
    return correct / total, loss / total
