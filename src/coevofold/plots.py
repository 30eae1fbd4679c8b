"""Figures a person would rather look at than read; every function writes one PNG atomically."""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")  # headless: CI and servers have no display
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from coevofold.files import atomic_path  # noqa: E402


def _save(fig: plt.Figure, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)


def proteins_per_fold(table: pd.DataFrame, path: str | os.PathLike, title: str = "") -> None:
    """Rank plot of proteins per fold (log scale): shows the long tail that makes folds hard."""
    counts = table["fold"].dropna().value_counts().to_numpy()
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.bar(range(1, len(counts) + 1), counts, width=1.0, color="#3b6ea5")
    ax.set_yscale("log")
    ax.set_xlabel(f"fold rank (1 = largest of {len(counts)} folds)")
    ax.set_ylabel("proteins")
    ax.set_title(title or "Proteins per fold")
    single = int((counts == 1).sum())
    ax.text(0.98, 0.95, f"{single} folds with a single protein\nlargest fold: {counts.max()} proteins",
            transform=ax.transAxes, ha="right", va="top")
    _save(fig, path)


def length_distribution(table: pd.DataFrame, path: str | os.PathLike, window: int = 1022, title: str = "") -> None:
    """Histogram of sequence lengths per split, with the pLM window marked."""
    fig, ax = plt.subplots(figsize=(7, 4))
    splits = table["split"].fillna("all")
    for split, lengths in table.groupby(splits)["length"]:
        ax.hist(lengths, bins=60, range=(0, max(1100, int(table["length"].max()) + 1)), histtype="step", label=f"{split} (n={len(lengths)})")
    ax.axvline(window, color="crimson", linestyle="--", label=f"pLM window ({window})")
    ax.set_xlabel("sequence length (residues)")
    ax.set_ylabel("proteins")
    ax.set_title(title or "Sequence lengths")
    ax.legend(fontsize=8)
    _save(fig, path)


def learning_curves(metrics: pd.DataFrame, path: str | os.PathLike) -> None:
    """Training loss and validation loss/accuracy per epoch, from Lightning's metrics.csv."""
    per_epoch = metrics.groupby("epoch").mean(numeric_only=True)
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    for column, label in (("train_loss", "train"), ("val_loss", "validation")):
        if column in per_epoch:
            ax_loss.plot(per_epoch.index + 1, per_epoch[column], marker="o", label=label)
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("cross-entropy")
    ax_loss.legend()
    if "val_acc" in per_epoch:
        ax_acc.plot(per_epoch.index + 1, 100 * per_epoch["val_acc"], marker="o", color="#2a9d8f")
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel("validation top-1 accuracy (%)")
    fig.suptitle("Learning curves")
    _save(fig, path)


import numpy as np  # noqa: E402


def accuracy_by_level(levels: dict[str, dict], path: str | os.PathLike, labels: dict[str, str] | None = None) -> None:
    """Top-1 and top-5 test accuracy per level (results.json ``levels``) with bootstrap 95 % intervals.

    The intervals are drawn because the fold level has a few hundred proteins: differences of a
    few points between runs are often inside them.
    """
    names = list(levels)
    x = np.arange(len(names))
    metrics = [m for m in ("top1", "top5") if all(m in levels[n]["metrics"] for n in names)]
    width = 0.8 / max(len(metrics), 1)
    fig, ax = plt.subplots(figsize=(7, 4))
    for i, (metric, color) in enumerate(zip(metrics, ("#3b6ea5", "#f4a261"))):
        cells = [levels[n]["metrics"][metric] for n in names]
        values = np.array([100 * c["value"] for c in cells])
        errors = np.array([[v - 100 * c["ci_low"] for v, c in zip(values, cells)],
                           [100 * c["ci_high"] - v for v, c in zip(values, cells)]])
        offset = (i - (len(metrics) - 1) / 2) * width
        bars = ax.bar(x + offset, values, width, yerr=errors, capsize=4, color=color, label=f"top-{metric[3:]}")
        ax.bar_label(bars, fmt="%.1f", padding=2, fontsize=8, label_type="center", color="white")
    ax.set_xticks(x, [f"{(labels or {}).get(n, n)}\n(n = {levels[n]['n_proteins']})" for n in names])
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(0, 105)
    ax.legend(title="error bars:\nbootstrap 95 % CI", fontsize=8, title_fontsize=8, loc="upper left",
              bbox_to_anchor=(1.01, 1))
    ax.set_title("Accuracy per test level")
    _save(fig, path)


def confusion_matrix(true: pd.Series, predicted: pd.Series, path: str | os.PathLike, top: int = 15) -> None:
    """Row-normalised confusion of the ``top`` most frequent true folds; other predictions pooled.

    Pooling every prediction outside the shown folds into an "other" column keeps each row
    summing to 1, so a row shows where that fold's proteins went, not only the shown part.
    """
    folds = sorted(true.value_counts().index[:top])
    shown = true.isin(folds)
    columns = predicted[shown].where(predicted[shown].isin(folds), "other")
    matrix = (pd.crosstab(true[shown], columns, normalize="index")
              .reindex(index=folds, columns=[*folds, "other"], fill_value=0.0))
    counts = true[shown].value_counts()
    size = 2.5 + 0.32 * len(folds)
    fig, ax = plt.subplots(figsize=(size + 1.5, size))
    image = ax.imshow(matrix.to_numpy(), cmap="Blues", vmin=0, vmax=1)
    for (row, col), value in np.ndenumerate(matrix.to_numpy()):
        if value >= 0.05:
            ax.text(col, row, f"{100 * value:.0f}", ha="center", va="center", fontsize=7,
                    color="white" if value > 0.5 else "black")
    ax.set_xticks(range(len(matrix.columns)), matrix.columns, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(folds)), [f"{fold} (n={counts[fold]})" for fold in folds], fontsize=8)
    ax.set_xlabel("predicted fold")
    ax.set_ylabel("true fold (test proteins)")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="fraction of the true fold's proteins")
    ax.set_title(f"Confusion of the {len(folds)} most frequent test folds (%)")
    _save(fig, path)


def accuracy_vs_train_size(predictions: pd.DataFrame, train_counts: dict[str, int], path: str | os.PathLike) -> None:
    """Per-fold top-1 accuracy against the fold's training proteins (log x), from predictions.tsv.

    Shows how much of the error is the long tail: folds with a handful of training proteins are
    where a classifier fails. Point area grows with the fold's test proteins; the line pools
    proteins in logarithmic bins. Test folds absent from training cannot be predicted and are
    counted in the corner instead.
    """
    per_fold = predictions.groupby("fold")["correct"].agg(hits="sum", n="size")
    per_fold["train"] = [train_counts.get(fold, 0) for fold in per_fold.index]
    seen = per_fold[per_fold["train"] > 0]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.scatter(seen["train"], 100 * seen["hits"] / seen["n"], s=8 + 6 * seen["n"], alpha=0.45, color="#3b6ea5",
               edgecolors="none", label="one fold (area: test proteins)")
    if not seen.empty:
        edges = np.unique(np.geomspace(1, seen["train"].max() + 1, 9).round())
        bins = pd.cut(seen["train"], edges, right=False)
        pooled = seen.groupby(bins, observed=True)[["hits", "n"]].sum()
        centres = [np.sqrt(b.left * b.right) for b in pooled.index]
        ax.plot(centres, 100 * pooled["hits"] / pooled["n"], color="crimson", marker="o", label="pooled per bin")
    ax.set_xscale("log")
    ax.set_ylim(-5, 105)
    ax.set_xlabel("training proteins of the fold")
    ax.set_ylabel("top-1 accuracy on the fold's test proteins (%)")
    unseen = per_fold[per_fold["train"] == 0]
    ax.text(1.02, 0.0, f"not shown: {len(unseen)} test folds\n({int(unseen['n'].sum())} proteins) absent\nfrom training",
            transform=ax.transAxes, ha="left", va="bottom", fontsize=8)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    ax.set_title("Accuracy per fold vs training-set size")
    _save(fig, path)


def contact_map(scores: np.ndarray, path: str | os.PathLike, title: str = "") -> None:
    """A protein's full-resolution contact map (channel 0 of the stored features) as an image."""
    fig, ax = plt.subplots(figsize=(5.5, 5))
    image = ax.imshow(scores, cmap="Greys", vmin=0, vmax=1, interpolation="nearest")
    ax.set_xlabel("residue")
    ax.set_ylabel("residue")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="contact score")
    ax.set_title(title, fontsize=10)
    _save(fig, path)


def reliability_diagram(curves: dict[str, dict[str, tuple]], path: str | os.PathLike, n_bins: int = 10) -> None:
    """Accuracy against stated probability, one panel per test level (and pooled).

    ``curves`` maps a panel title to {line label: (top-1 probability, correct)}; a calibrated
    line follows the diagonal. Marker area is the bin's share of proteins; the legend gives ECE.
    """
    import numpy as np

    from coevofold.metrics import expected_calibration_error

    fig, axes = plt.subplots(1, len(curves), figsize=(3.6 * len(curves), 3.8), sharey=True, squeeze=False)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    for ax, (title, lines) in zip(axes[0], curves.items()):
        ax.plot([0, 1], [0, 1], color="#999999", linestyle="--", linewidth=1)
        for (label, (probability, correct)), color in zip(lines.items(), ("#c05a2b", "#3b6ea5", "#4a9a5b")):
            probability = np.nan_to_num(np.asarray(probability, dtype=float))
            correct = np.asarray(correct, dtype=float)
            bins = np.clip(np.digitize(probability, edges[1:-1]), 0, n_bins - 1)
            used = [b for b in range(n_bins) if (bins == b).any()]
            x = [probability[bins == b].mean() for b in used]
            y = [correct[bins == b].mean() for b in used]
            size = [600 * (bins == b).mean() + 8 for b in used]
            ece = expected_calibration_error(probability, correct, n_bins)
            ax.plot(x, y, color=color, linewidth=1.5, label=f"{label} (ECE {ece:.3f})")
            ax.scatter(x, y, s=size, color=color, alpha=0.6)
        ax.set_title(f"{title} (n = {len(correct)})")
        ax.set_xlabel("stated probability of the top fold")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.legend(loc="upper left", fontsize=8)
    axes[0][0].set_ylabel("fraction right")
    _save(fig, path)
