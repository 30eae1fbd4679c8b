"""Training fold classifiers on cached features with PyTorch Lightning.

One entry point, :func:`train`: features come from a store (extracted once), so an epoch over
the 12,312 DeepSF training domains is a pass over in-memory arrays, not a pLM run.

Reproducibility: every epoch reseeds the shuffling and dropout generators from (seed, epoch), so
a run killed and resumed from its last checkpoint repeats the uninterrupted run exactly.
Checkpoints for resuming are loaded with ``weights_only=True``; the finished model is saved as
safetensors plus a JSON description (:mod:`coevofold.training.checkpoint`), never a pickle.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from coevofold import devices
from coevofold.errors import CoevofoldError
from coevofold.features import store
from coevofold.files import writable_dir, write_text
from coevofold.logs import quiet_lightning
from coevofold.metrics import encode_labels
from coevofold.models.registry import LINEAR, MODELS, Batch, FoldClassifier, ModelConfig
from coevofold.training.checkpoint import METRICS, SplitData, load_model, load_split, predict_proba, save_model

@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings; defaults measured on the DeepSF validation split."""

    model: ModelConfig = field(default_factory=ModelConfig)
    seed: int = 0
    #: the epoch budget (an upper bound when ``patience`` is set). The default recipe (12 epochs,
    #: batches of 256, lr 2e-3, cosine decay, last epoch kept) against the previous one (batches
    #: of 64, lr 1e-3, early stopping with patience 6 from up to 40 epochs), one default MLP seed on
    #: DeepSF ``valid``: 38.5 against 38.0 % top-1 in 45 against 111 s (seed 1: 38.3 against 37.2);
    #: the light-attention MLP 38.2 against 36.8 % in 87 against 163 s; 8 epochs 37.9, 20 epochs
    #: 38.6, lr 1e-3 37.5 (docs/research.md, issue 19).
    max_epochs: int = 12
    #: the budget when the model starts from trained weights (``train``'s ``init_from``: the
    #: default model from its calibration proxy's members). On DeepSF ``valid``, from the proxy's:
    #: one MLP seed 38.6 % after 3 or 4 epochs, 37.4 after 6 (38.5 from scratch in 12); the light-
    #: attention MLP 37.0 after 3, 36.3 after 4 (38.2 from scratch); the default ensemble of four
    #: 39.4-39.8 against 39.7 from scratch, in 1:51 instead of 4:45 (docs/research.md, issue 19).
    warm_epochs: int = 3
    #: epochs without validation improvement before stopping, keeping the best epoch on ``valid``;
    #: ``None``: a fixed budget of ``max_epochs``, the learning rate decayed to 0 by a cosine
    #: over its steps and the last epoch kept.
    patience: int | None = None
    batch_size: int = 256
    lr: float = 2e-3
    weight_decay: float = 1e-2
    label_smoothing: float = 0.1
    #: where the smoothed mass goes: "uniform" (every fold) or "class" (the folds of the true
    #: fold's SCOP class, a/b/c/...: a near miss within the class costs less than across).
    smoothing_target: str = "uniform"
    #: weight of each auxiliary level's loss (superfamily, family) relative to the fold's.
    level_weight: float = 1.0
    #: "adamw": mini-batch training (every model); "lbfgs": linear models
    #: only, scikit-learn's LogisticRegression fitted to convergence (L2, inverse strength ``C``)
    #: and copied into the model. On DeepSF the converged probe generalizes to unseen
    #: superfamilies far better than the early-stopped one (see README, Results).
    solver: str = "adamw"
    C: float = 1.0
    #: class weights are count^-power: 0 ignores imbalance, 1 fully rebalances 1,195 folds
    #: whose sizes range from 1 to ~400. 0 measured best on DeepSF: the layers MLP reached
    #: 38.0 % valid top-1 without weights and 35.2 % with count^-0.5 (README, ablation).
    class_weight_power: float = 0.0
    threads: int | None = None
    #: where the classifier trains (:func:`coevofold.devices.resolve`). The CPU by default: these
    #: models over cached features train in minutes there, and runs repeat bit for bit (a GPU is
    #: deterministic only where its kernels are; Lightning warns where not).
    device: str = "cpu"
    progress: bool = True


def class_weights(labels: torch.Tensor, n_classes: int, power: float) -> torch.Tensor:
    """count^-power per class, scaled to mean 1 over training examples (so the lr means the same)."""
    counts = torch.bincount(labels, minlength=n_classes).float().clamp(min=1)
    weights = counts.pow(-power)
    return weights / (weights[labels].mean())


def smoothing_matrix(classes: list[str], epsilon: float, target: str) -> torch.Tensor:
    """Soft targets [n, n]: row c is what training asks the model to predict for fold c.

    (1 - epsilon) on the fold itself and epsilon spread evenly over every fold ("uniform", the
    usual label smoothing) or over the folds of the same SCOP class ("class": ids before the
    first dot, a.80 -> a).
    """
    n = len(classes)
    if target == "uniform":
        spread = torch.full((n, n), 1.0 / n)
    elif target == "class":
        group = [c.split(".")[0] for c in classes]
        same = torch.tensor([[g == h for h in group] for g in group], dtype=torch.float32)
        spread = same / same.sum(1, keepdim=True)
    else:
        raise CoevofoldError(f"smoothing target must be 'uniform' or 'class', not '{target}'")
    return (1 - epsilon) * torch.eye(n) + epsilon * spread


def training_loss(logits: dict[str, torch.Tensor], labels: torch.Tensor, level_labels: dict[str, torch.Tensor],
                  soft_targets: torch.Tensor, class_weight: torch.Tensor, config: TrainConfig) -> torch.Tensor:
    """The fold's cross-entropy against its smoothed targets (:func:`smoothing_matrix`) and class
    weights, plus each auxiliary level's (superfamily, family) smoothed cross-entropy times
    ``level_weight``; rows without a label at a level (-1) do not count there."""
    loss = torch.nn.functional.cross_entropy(logits["fold"], soft_targets[labels], weight=class_weight)
    for level, target in level_labels.items():
        loss = loss + config.level_weight * torch.nn.functional.cross_entropy(
            logits[level], target, label_smoothing=config.label_smoothing, ignore_index=-1)
    return loss


# --------------------------------------------------------------------------------- lightning


def _lightning_module():
    import lightning.pytorch as pl
    import torchmetrics

    class LitFold(pl.LightningModule):
        def __init__(self, classifier: FoldClassifier, weights: torch.Tensor, targets: torch.Tensor,
                     config: TrainConfig) -> None:
            super().__init__()
            self.classifier = classifier
            self.register_buffer("class_weight", weights)
            self.register_buffer("soft_targets", targets)
            self.config = config
            self.val_acc = torchmetrics.classification.MulticlassAccuracy(
                num_classes=len(weights), average="micro", ignore_index=-1)

        def on_train_epoch_start(self) -> None:
            # dropout depends only on (seed, epoch), as shuffling does (_EpochShuffle): resumed runs repeat exactly
            torch.manual_seed(_epoch_seed(self.config.seed, self.current_epoch))

        def training_step(self, batch: tuple[Batch, torch.Tensor, dict[str, torch.Tensor]], batch_idx: int) -> torch.Tensor:
            inputs, labels, level_labels = batch
            loss = training_loss(self.classifier.forward_levels(inputs), labels, level_labels, self.soft_targets,
                                 self.class_weight, self.config)
            if not torch.isfinite(loss):
                raise CoevofoldError(
                    f"training diverged: loss is {loss.item()} at epoch {self.current_epoch}, step {batch_idx}; "
                    "lower --lr or check the features for NaN"
                )
            self.log("train_loss", loss, on_step=False, on_epoch=True, batch_size=len(labels))
            return loss

        def validation_step(self, batch: tuple[Batch, torch.Tensor, dict[str, torch.Tensor]], batch_idx: int) -> None:
            inputs, labels, _ = batch
            logits = self.classifier(inputs)
            seen = labels >= 0
            if seen.any():
                loss = torch.nn.functional.cross_entropy(logits[seen], labels[seen])
                self.log("val_loss", loss, batch_size=int(seen.sum()))
            self.val_acc.update(logits, labels)
            self.log("val_acc", self.val_acc, on_step=False, on_epoch=True)

        def configure_optimizers(self):
            # fused: one kernel over all weights instead of a loop of per-tensor ops; on 2 CPU cores it
            # cut one default MLP seed's optimizer time per epoch 2.1-2.9x (1.32-1.78 s to 0.59-0.72 s;
            # the epoch 1.09-1.23x over three runs of benchmarks/training_step.py), with the same
            # weights to 2e-7 after 200 steps (docs/research.md, issue 19)
            optimizer = torch.optim.AdamW(self.parameters(), lr=self.config.lr, weight_decay=self.config.weight_decay,
                                          fused=self.device.type in ("cpu", "cuda"))
            if self.config.patience is not None:
                return optimizer
            decay = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=self.trainer.estimated_stepping_batches)
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": decay, "interval": "step"}}

    return pl, LitFold


def _epoch_seed(seed: int, epoch: int) -> int:
    return seed * 100_003 + epoch


class _EpochShuffle(torch.utils.data.Sampler[int]):
    """Each epoch's row order, a function of (seed, epoch) alone.

    Lightning creates an epoch's iterator before that epoch's hooks run (at the end of the
    previous epoch, or while resuming), too early for a hook to reseed a generator; so the
    sampler counts epochs itself, from the one training starts or resumes at.
    """

    def __init__(self, size: int, seed: int, first_epoch: int) -> None:
        self.size, self.seed, self.epoch = size, seed, first_epoch

    def __len__(self) -> int:
        return self.size

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(_epoch_seed(self.seed, self.epoch))
        self.epoch += 1
        return iter(torch.randperm(self.size, generator=generator).tolist())


class _Collate:
    """Builds (Batch, fold labels, auxiliary labels) from row indices of in-memory split data."""

    def __init__(self, split: SplitData, uses: tuple[str, ...]) -> None:
        self.split, self.uses = split, uses

    def __call__(self, index: list[int]) -> tuple[Batch, torch.Tensor, dict[str, torch.Tensor]]:
        rows = torch.as_tensor(index)
        return (self.split.batch(index, self.uses), self.split.labels[rows],
                {level: labels[rows] for level, labels in self.split.level_labels.items()})


def _loader(split: SplitData, uses: tuple[str, ...], batch_size: int,
            sampler: torch.utils.data.Sampler[int] | None = None) -> torch.utils.data.DataLoader:
    # a generator of its own: making an iterator then draws from it, not from dropout's global RNG
    return torch.utils.data.DataLoader(range(len(split)), batch_size=batch_size, sampler=sampler,
                                       collate_fn=_Collate(split, uses), generator=torch.Generator())


def build_classifier(config: ModelConfig, n_classes: int | dict[str, int], split: SplitData) -> FoldClassifier:
    _, channels, grid, _ = split.maps.shape
    if "maps" in MODELS[config.name] and channels == 0:
        raise CoevofoldError(f"model '{config.name}' reads attention maps, and this store has none: "
                             "extract with --maps layers (or heads)")
    _, bins, dim = split.embedding.shape
    return FoldClassifier(config, n_classes, channels, grid, bins, dim, n_layers=split.layers.shape[1])


def plm_label(store_path: str | os.PathLike) -> str:
    """The pLM that made a store's features, as ``model.json`` names it: the label extraction
    recorded (``ProteinLM.label``), or, for a store of an older coevofold that recorded only the
    name asked for, that name marked as such with the weights' sha256 (it may have been the
    offline copy standing in for the hub id)."""
    recorded = store.read_model(store_path)
    if ", sha256 " in recorded:
        return recorded
    sha = store.read_settings(store_path).get("weights_sha256", "unknown")
    return f"{recorded or 'unnamed pLM'} (as an older store named it), sha256 {sha}"


def train(
    store_path: str | os.PathLike,
    table: pd.DataFrame,
    run_dir: str | os.PathLike,
    config: TrainConfig | None = None,
    fold_names: dict[str, str] | None = None,
    init_from: str | os.PathLike | None = None,
) -> Path:
    """Train on ``table``'s ``train`` split (validating each epoch on ``valid``, early-stopping on it
    when ``config.patience`` is set); returns the model folder.

    ``run_dir`` receives ``metrics.csv`` (learning curves), ``learning_curves.png``,
    ``checkpoints/`` (best and last, for resuming) and the final :data:`MODEL_WEIGHTS` and
    :data:`MODEL_META`. Re-running an interrupted run resumes from ``checkpoints/last.ckpt``.

    ``init_from``: a trained model folder of the same architecture whose weights the model starts
    from (:func:`warm_start`), trained then for ``config.warm_epochs`` instead of ``max_epochs``.
    """
    from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger

    config = config or TrainConfig()
    if config.model.name not in MODELS:
        raise CoevofoldError(f"unknown model '{config.model.name}' (known: {', '.join(MODELS)})")
    if config.solver not in ("adamw", "lbfgs") or (config.solver == "lbfgs" and (
            config.model.name not in LINEAR or config.model.levels != ("fold",))):
        raise CoevofoldError(f"solver '{config.solver}': 'adamw' for any model, 'lbfgs' for the linear "
                             f"models ({', '.join(LINEAR)}) predicting the fold alone")
    train_rows, valid_rows = table[table["split"] == "train"], table[table["split"] == "valid"]
    if train_rows.empty or valid_rows.empty:
        raise CoevofoldError("training needs proteins in both the 'train' and 'valid' splits")
    device = devices.resolve(config.device)
    devices.set_threads(config.threads)
    run_dir = writable_dir(run_dir)
    classes = sorted(train_rows["fold"].unique())
    level_classes = {level: sorted(train_rows[level].dropna().unique()) for level in config.model.levels[1:]}
    quiet_lightning()
    pl, LitFold = _lightning_module()
    pl.seed_everything(config.seed, workers=True, verbose=False)
    train_data = load_split(store_path, train_rows, classes, level_classes)
    valid_data = load_split(store_path, valid_rows, classes)
    sizes = {"fold": len(classes), **{level: len(names) for level, names in level_classes.items()}}
    classifier = build_classifier(config.model, sizes, train_data)
    classifier.fit_normalization(train_data)
    if init_from is not None:
        warm_start(classifier, classes, level_classes, init_from)
    epochs = config.max_epochs if init_from is None else config.warm_epochs
    meta = {
        "model": asdict(config.model),
        "classes": classes,
        "level_classes": level_classes,
        "shapes": {"maps": list(train_data.maps.shape[1:]), "embedding": list(train_data.embedding.shape[1:]),
                   "layers": list(train_data.layers.shape[1:])},
        "fold_names": {c: (fold_names or {}).get(c, "") for c in classes},
        "train_counts": torch.bincount(train_data.labels, minlength=len(classes)).tolist(),
        "feature_settings": store.read_settings(store_path),
        "plm": plm_label(store_path),
        "train": {k: v for k, v in asdict(config).items() if k != "model"},
        "warm_start": None if init_from is None else str(init_from),
    }
    if config.solver == "lbfgs":
        _fit_lbfgs(classifier, train_data, config, warm=init_from is not None)
        valid_acc = float((predict_proba(classifier, valid_data).argmax(1) == valid_data.labels.numpy()).mean())
        save_model(run_dir, classifier, {**meta, "best_val_acc": valid_acc, "epochs": 0})
        return run_dir
    weights = class_weights(train_data.labels, len(classes), config.class_weight_power)
    targets = smoothing_matrix(classes, config.label_smoothing, config.smoothing_target)
    module = LitFold(classifier, weights, targets, config)
    uses = MODELS[config.model.name]
    checkpoints = run_dir / "checkpoints"
    if config.patience is not None:
        saving = ModelCheckpoint(dirpath=checkpoints, filename="best", monitor="val_acc", mode="max", save_last=True)
        callbacks = [saving, EarlyStopping(monitor="val_acc", mode="max", patience=config.patience)]
    else:
        # without a monitor, the one checkpoint kept is the latest epoch's (save_last with save_top_k=0
        # writes only at the end, leaving a killed run nothing to resume from)
        saving = ModelCheckpoint(dirpath=checkpoints, filename="last", enable_version_counter=False)
        callbacks = [saving]
    accelerator, device_ids = devices.lightning_devices(device)
    trainer = pl.Trainer(
        max_epochs=epochs,
        accelerator=accelerator,
        devices=device_ids,
        deterministic=True if device.type == "cpu" else "warn",
        logger=CSVLogger(run_dir, name="", version=""),
        callbacks=callbacks,
        enable_progress_bar=config.progress,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    last = checkpoints / "last.ckpt"
    resume = last if last.exists() else None
    shuffle = _EpochShuffle(len(train_data), config.seed, _epochs_trained(resume) if resume is not None else 0)
    metrics = run_dir / METRICS
    # Lightning's CSV logger starts metrics.csv afresh; keep the epochs logged before a kill.
    before = pd.read_csv(metrics) if resume is not None and metrics.exists() else None
    trainer.fit(
        module,
        _loader(train_data, uses, config.batch_size, shuffle),
        _loader(valid_data, uses, 256),
        ckpt_path=resume,
        weights_only=True,
    )
    if before is not None:
        after = pd.read_csv(metrics)
        merged = pd.concat([before[before["epoch"] < after["epoch"].min()], after], ignore_index=True)
        write_text(metrics, merged.to_csv(index=False))
    state = _read_checkpoint(Path(saving.best_model_path) if saving.best_model_path else last)["state_dict"]
    module.load_state_dict(state)
    # the kept epoch's valid top-1: the best epoch's under early stopping, else the last epoch's (learning curves)
    score = saving.best_model_score if config.patience is not None else pd.read_csv(metrics)["val_acc"].dropna().iloc[-1]
    meta["best_val_acc"] = float(score) if score is not None else None
    meta["epochs"] = trainer.current_epoch
    save_model(run_dir, classifier, meta)
    _plot_curves(run_dir)
    return run_dir


def _fit_lbfgs(classifier: FoldClassifier, train: SplitData, config: TrainConfig, warm: bool = False) -> None:
    """Fit a linear model's head with scikit-learn's L-BFGS logistic regression, in place.

    The model's standardizer (fitted on the same rows) feeds scikit-learn the very inputs the
    head will see, so copying ``coef_`` and ``intercept_`` gives identical probabilities.
    ``warm``: L-BFGS starts from the head's weights (scikit-learn's ``warm_start``) instead of 0.
    """
    from sklearn.linear_model import LogisticRegression

    uses = classifier.uses
    with torch.inference_mode():
        x = classifier.represent(train.batch(list(range(len(train))), uses)).numpy()
    solver = LogisticRegression(C=config.C, max_iter=1000, random_state=config.seed, warm_start=warm)
    if warm:  # what a previous fit would have left
        solver.coef_ = classifier.heads["fold"].weight.detach().double().numpy().copy()
        solver.intercept_ = classifier.heads["fold"].bias.detach().double().numpy().copy()
    fitted = solver.fit(x, train.labels.numpy())
    if len(fitted.classes_) != classifier.n_classes:  # every class has training rows by construction
        raise CoevofoldError("lbfgs: some folds have no training protein")
    coef, intercept = fitted.coef_, fitted.intercept_
    if len(coef) == 1:  # two classes: one logit z; softmax over (-z/2, z/2) is sigmoid(z)
        coef, intercept = np.vstack([-coef / 2, coef / 2]), np.concatenate([-intercept / 2, intercept / 2])
    with torch.no_grad():
        classifier.heads["fold"].weight.copy_(torch.from_numpy(coef))
        classifier.heads["fold"].bias.copy_(torch.from_numpy(intercept))


def warm_start(classifier: FoldClassifier, classes: list[str], level_classes: dict[str, list[str]],
               source: str | os.PathLike) -> None:
    """Start ``classifier`` from the trained model in ``source``, in place.

    Why: the calibration proxy (the same members trained on 81 % of the training rows, which
    ``quickstart`` needs anyway) is most of the way to the final model; fine-tuning it on every
    training row costs a fraction of training from scratch. The trunk is copied; each head's rows
    are copied by class name (classes the source never saw keep their fresh initialisation); the
    input standardizers stay those fitted on this model's own training rows.
    """
    model, meta = load_model(source)
    if not isinstance(model, FoldClassifier) or model.config != classifier.config:
        raise CoevofoldError(f"{source}: a warm start needs a model of the same architecture "
                             f"({classifier.config.name}), not {meta.get('model', {}).get('name')}")
    named = {"fold": (meta["classes"], classes),
             **{level: (meta.get("level_classes", {}).get(level, []), mine) for level, mine in level_classes.items()}}
    target = classifier.state_dict()
    with torch.no_grad():
        for key, value in model.state_dict().items():
            if key.endswith(("_norm.mean", "_norm.std")):
                continue
            if key.startswith("heads."):
                theirs, mine = named[key.split(".")[1]]
                source_rows = torch.from_numpy(encode_labels(mine, theirs))  # UNSEEN (-1) where the source lacks it
                seen = source_rows >= 0
                target[key][seen] = value[source_rows[seen]]
            else:
                target[key].copy_(value)


def _read_checkpoint(path: Path) -> dict:
    """A Lightning checkpoint, loaded weights-only: anything but plain tensors is refused, unrun."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError):
        raise CoevofoldError(
            f"{path}: damaged or untrusted checkpoint, not loaded (only plain tensors are read: anything else "
            f"could run code); delete {path.parent} to train from scratch"
        ) from None


def _epochs_trained(path: Path) -> int:
    """Epochs a checkpoint has trained: the epoch a run resumed from it starts with.

    Not its "epoch", which counts the epoch in progress when saved after validation. Read before
    Lightning does, so that a bad checkpoint is refused in one line, not with a traceback.
    """
    try:
        return int(_read_checkpoint(path)["loops"]["fit_loop"]["epoch_progress"]["current"]["processed"])
    except (KeyError, TypeError):
        raise CoevofoldError(
            f"{path}: not a checkpoint of 'coevofold train'; delete {path.parent} to train from scratch"
        ) from None


def _plot_curves(run_dir: Path) -> None:
    from coevofold import plots

    plots.learning_curves(pd.read_csv(run_dir / METRICS), run_dir / "learning_curves.png")


