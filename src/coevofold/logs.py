"""Quieting the libraries' chatter (Lightning banners, known harmless warnings)."""

from __future__ import annotations

import logging
import warnings


def quiet_lightning() -> None:
    """Silence Lightning's start-up banners and a warning our batch-list loader triggers."""
    for name in ("lightning.pytorch", "lightning.fabric", "lightning.pytorch.utilities.rank_zero",
                 "lightning.fabric.utilities.rank_zero", "lightning_utilities.core.rank_zero"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*Couldn't infer the batch indices.*")
    warnings.filterwarnings("ignore", message=".*treespec, LeafSpec.*")
    warnings.filterwarnings("ignore", message=".*smaller than the logging interval.*")
