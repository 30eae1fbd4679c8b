"""Epoch time of training over cached features vs recomputing them every epoch, in one run.

The original study re-ran the pLM on every protein in every epoch (one of its epochs took
11,466 s). coevofold extracts features once into a store and trains on in-memory arrays. This
measures both on the same fixed random sample of DeepSF training domains, with the same model:

* cached: the proteins' features are read from a store (load time reported on its own, it is
  paid once per run, not per epoch), then training epochs of the ``maps2d`` classifier (the original study's 2D CNN over the maps)
  are timed; the median epoch is reported;
* recompute: ``extraction.compute`` over the same proteins, in the length-sorted batches
  extraction uses (``extraction.make_batches`` with the default ``RunConfig``), plus one training
  epoch on the features it just produced: the per-epoch cost of training without a cache.

The epoch is a plain PyTorch loop doing exactly what ``training``'s ``LitFold.training_step``
does (per-epoch reseeding, shuffled batches of 64, class-weighted cross-entropy with label
smoothing, the finiteness check, AdamW), not ``trainer.train``: that one also validates,
checkpoints and writes curves after every epoch and exposes no per-epoch times, so its wall
time would not isolate the epoch. The loop therefore leaves out Lightning's per-step overhead.
The classifier's output layer has all 1,195 training folds and the class weights come from the
whole training split, as in a real run.

Features (with ``--maps layers``: the CNN reads the maps) come from ``--store`` if given, else
from the cache store of the full DeepSF benchmark with maps (``extraction.cached_store``;
``coevofold benchmark deepsf`` makes it) when it holds every sampled protein. Otherwise the features the
recompute phase produced are written to a temporary store and read back: they are the arrays
``extraction.extract`` would store (same model, settings and batches), and this avoids a second
pLM pass over the sample.

Extrapolation to the 12,312 training domains: training epochs scale with the protein count
(fixed-size inputs); the pLM pass scales with the total squared length (attention grows with
L^2; chains longer than the model's window count as their windows); the total-residue scaling
(right when the dense layers dominate) is printed beside it. Which is larger depends on the
sample's length mix; a random sample keeps the two close to the count ratio.

Run from the repository root:  python benchmarks/train.py [--n 1000] [--store PATH]
The machine may be shared: torch's thread count and the load average are printed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from coevofold.data import tables
from coevofold.features import extraction, pretrained, store
from coevofold.features.coevolution import window_starts
from coevofold.models.registry import FoldClassifier, ModelConfig, MODELS
from coevofold.training import checkpoint, trainer

#: seconds per training epoch the original study reported (pLM re-run on every protein).
ORIGINAL_EPOCH_S = 11_466


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg()) + f" ({os.cpu_count()} cores)"


def attention_cost(lengths: np.ndarray, window: int, stride: int) -> int:
    """Sum of squared lengths of what the pLM actually sees: long chains count as their windows."""
    total = 0
    for length in lengths.tolist():
        total += sum(min(window, length - start) ** 2 for start in window_starts(length, window, stride))
    return total


def rows_to_split(rows: store.FeatureRows, labels: torch.Tensor) -> checkpoint.SplitData:
    """In-memory features as training reads them (what a no-cache pipeline would hand on)."""
    return checkpoint.SplitData.from_rows(rows, labels)


def recompute_features(plm: pretrained.ProteinLM, config: extraction.FeatureConfig,
                       sample: pd.DataFrame) -> tuple[store.FeatureRows, float]:
    """Features of ``sample`` (in its order) computed from scratch as extraction does; seconds."""
    ids, sequences = sample["id"].tolist(), sample["sequence"].tolist()
    run = extraction.RunConfig()
    batches = extraction.make_batches([len(s) for s in sequences], plm.window, config.stride, run.max_tokens, run.max_pairs)
    started = time.perf_counter()
    parts = [extraction.compute(plm, config, [ids[i] for i in b], [sequences[i] for i in b], run.max_pairs)
             for b in batches]
    seconds = time.perf_counter() - started
    rows = store.FeatureRows.concat(parts)
    position = {record_id: n for n, record_id in enumerate(rows.ids)}
    return rows.select([position[i] for i in ids]), seconds


class EpochRunner:
    """Trains a fresh default classifier epoch by epoch, as ``LitFold`` would, and times epochs."""

    def __init__(self, split: checkpoint.SplitData, n_classes: int, weights: torch.Tensor,
                 config: trainer.TrainConfig) -> None:
        torch.manual_seed(config.seed)  # same initial weights for every data source
        self.split, self.config, self.weights = split, config, weights
        self.uses = MODELS[config.model.name]
        self.model: FoldClassifier = trainer.build_classifier(config.model, n_classes, split)
        self.model.fit_normalization(split)
        self.model.train()
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        self.generator = torch.Generator()
        self.epoch = 0

    def _collate(self, index: list[int]) -> tuple:
        return self.split.batch(index, self.uses), self.split.labels[torch.as_tensor(index)]

    def run_epoch(self) -> float:
        """One pass over the split; returns its wall time in seconds."""
        seed = self.config.seed * 100_003 + self.epoch  # LitFold.on_train_epoch_start
        torch.manual_seed(seed)
        self.generator.manual_seed(seed)
        loader = torch.utils.data.DataLoader(range(len(self.split)), batch_size=self.config.batch_size,
                                             shuffle=True, collate_fn=self._collate, generator=self.generator)
        started = time.perf_counter()
        for inputs, labels in loader:
            logits = self.model(inputs)
            loss = torch.nn.functional.cross_entropy(logits, labels, weight=self.weights,
                                                     label_smoothing=self.config.label_smoothing)
            if not torch.isfinite(loss):
                raise RuntimeError(f"loss is {loss.item()} at epoch {self.epoch}")
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
        self.epoch += 1
        return time.perf_counter() - started


def find_store(explicit: Path | None, plm: pretrained.ProteinLM, config: extraction.FeatureConfig,
               ids: list[str]) -> Path | None:
    """The store to read cached features from, or None when none holds every sampled protein."""
    candidate = explicit or extraction.cached_store("deepsf", plm, config)
    if not candidate.is_file():
        if explicit:
            raise SystemExit(f"{explicit}: no such store")
        return None
    store.check_settings(candidate, store.read_settings(candidate), extraction.settings_of(plm, config))
    held = store.read_ids(candidate)
    missing = [i for i in ids if i not in held]
    if missing and explicit:
        raise SystemExit(f"{explicit}: lacks {len(missing)} of the sampled proteins")
    return None if missing else candidate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1000, help="proteins in the sample (default 1000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sample (default 0)")
    parser.add_argument("--store", type=Path, help="feature store holding the sample "
                        "(default: the DeepSF cache store if complete, else a temporary one)")
    parser.add_argument("--epochs", type=int, default=3, help="cached epochs to time; the median is reported")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    full = tables.load("deepsf")
    train_table = full[full["split"] == "train"]
    sample = train_table.sample(n=args.n, random_state=args.seed)
    classes = sorted(train_table["fold"].unique())
    index = {c: i for i, c in enumerate(classes)}
    labels = torch.tensor([index[f] for f in sample["fold"]], dtype=torch.long)
    config = trainer.TrainConfig(model=ModelConfig(name="maps2d"), class_weight_power=0.5)
    weights = trainer.class_weights(torch.tensor([index[f] for f in train_table["fold"]]), len(classes),
                                     config.class_weight_power)

    plm = pretrained.load(None)
    feature_config = extraction.FeatureConfig(maps="layers")  # maps2d reads the maps the default store leaves out
    lengths, all_lengths = sample["length"].to_numpy(np.int64), train_table["length"].to_numpy(np.int64)
    print(f"DeepSF train sample: {len(sample)} of {len(train_table):,} proteins (seed {args.seed}), "
          f"{lengths.sum():,} residues, length {lengths.min()}-{lengths.max()} (median {int(np.median(lengths))})")
    print(f"pLM: {plm.label}; classifier: {config.model.name}, "
          f"{len(classes)} folds, batch {config.batch_size}")
    print(f"torch threads: {torch.get_num_threads()}; load average before: {load_average()}")

    # recompute: the pLM pass, then an epoch on the features it produced
    rows, compute_s = recompute_features(plm, feature_config, sample)
    # an untimed warm-up epoch on a few batches, so no timed epoch pays one-off kernel set-up
    warm = rows.select(range(min(len(rows), 2 * config.batch_size)))
    EpochRunner(rows_to_split(warm, labels[: len(warm)]), len(classes), weights, config).run_epoch()
    recompute_train_s = EpochRunner(rows_to_split(rows, labels), len(classes), weights, config).run_epoch()

    # cached: load once, then timed epochs
    with tempfile.TemporaryDirectory(prefix="coevofold-train-bench-") as tmp:
        store_path = find_store(args.store, plm, feature_config, sample["id"].tolist())
        source = str(store_path)
        if store_path is None:
            store_path = Path(tmp) / "sample.h5"
            store.write_file(store_path, rows, extraction.settings_of(plm, feature_config))
            source = "temporary store of the recomputed features (cache store missing or incomplete)"
        started = time.perf_counter()
        split = checkpoint.load_split(store_path, sample, classes)
        load_s = time.perf_counter() - started
    runner = EpochRunner(split, len(classes), weights, config)
    epochs = [runner.run_epoch() for _ in range(args.epochs)]
    cached_s = statistics.median(epochs)
    recompute_s = compute_s + recompute_train_s
    print(f"load average after:  {load_average()}")
    print(f"features read from: {source}")

    print(f"\nper epoch over {len(sample)} proteins:")
    print(f"  cached:    {cached_s:8.2f} s  (median of {len(epochs)} epochs: "
          f"{', '.join(f'{e:.2f}' for e in epochs)}); store load {load_s:.2f} s once per run")
    print(f"  recompute: {recompute_s:8.2f} s  (pLM features {compute_s:.2f} s + training {recompute_train_s:.2f} s)")
    print(f"  recompute / cached: {recompute_s / cached_s:,.1f}x")

    scale_n = len(train_table) / len(sample)
    window, stride = plm.window, feature_config.stride
    scale_sq = attention_cost(all_lengths, window, stride) / attention_cost(lengths, window, stride)
    scale_res = all_lengths.sum() / lengths.sum()
    cached_full = cached_s * scale_n
    recompute_full = compute_s * scale_sq + recompute_train_s * scale_n
    recompute_low = compute_s * scale_res + recompute_train_s * scale_n
    print(f"\nextrapolated to the full training set ({len(train_table):,} proteins; training x{scale_n:.2f} by "
          f"count, pLM x{scale_sq:.2f} by total squared length, x{scale_res:.2f} by total residues):")
    print(f"  cached:    {cached_full:10,.0f} s/epoch")
    print(f"  recompute: {recompute_full:10,.0f} s/epoch by squared length ({recompute_low:,.0f} by residues)")
    print(f"  original study: {ORIGINAL_EPOCH_S:,} s/epoch  "
          f"(= {ORIGINAL_EPOCH_S / cached_full:,.0f}x our cached epoch, {ORIGINAL_EPOCH_S / recompute_full:.1f}x our recompute epoch)")


if __name__ == "__main__":
    main()
