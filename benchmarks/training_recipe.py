"""One default member under two training recipes: valid top-1, epochs and seconds, in one run.

The default recipe (``TrainConfig``: a fixed budget of 12 epochs, batches of 256, lr 2e-3, cosine
decay, the last epoch kept) against the previous one (batches of 64, lr 1e-3, early stopping
with patience 6 from up to 40 epochs, the best epoch on ``valid`` kept), on DeepSF's cached
features (``coevofold quickstart`` makes them). Seconds include validation and checkpoints.

Run from the repository root:  python benchmarks/training_recipe.py [--member mlp] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from coevofold.data import tables
from coevofold.features import extraction, pretrained
from coevofold.training import checkpoint, recipe, trainer

EARLY_STOPPING = {"batch_size": 64, "lr": 1e-3, "max_epochs": 40, "patience": 6}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--member", default="mlp", choices=["mlp", "attention"], help="which recipe's seed")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    table = tables.load("deepsf")
    store = extraction.cached_store("deepsf", pretrained.load(None), extraction.FeatureConfig())
    if not store.exists():
        raise SystemExit(f"{store}: run coevofold quickstart first (it extracts DeepSF's features)")
    member = replace(recipe.default_members(progress=False)[args.member], seed=args.seed)
    rows = []
    with tempfile.TemporaryDirectory(prefix="coevofold-recipe-") as tmp:
        for label, config in (("default: fixed budget", member), ("before: early stopping", replace(member, **EARLY_STOPPING))):
            out = Path(tmp) / label.split(":")[0]
            started = time.perf_counter()
            trainer.train(store, table, out, config)
            seconds = time.perf_counter() - started
            meta = json.loads((out / checkpoint.MODEL_META).read_text())
            rows.append((label, meta["best_val_acc"], meta["epochs"], seconds))
    for label, acc, epochs, seconds in rows:
        print(f"{label:24s} valid top-1 {100 * acc:5.1f} %  {epochs:2d} epochs  {seconds:6.1f} s")
    print(f"fixed budget: {rows[1][3] / rows[0][3]:.2f}x faster, {100 * (rows[0][1] - rows[1][1]):+.1f} points on valid")


if __name__ == "__main__":
    main()
