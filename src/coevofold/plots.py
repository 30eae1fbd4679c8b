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
