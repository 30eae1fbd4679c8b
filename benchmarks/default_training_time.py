"""Seconds to train the default model from scratch on this machine: each member, then the weights.

Run after ``coevofold quickstart`` has extracted the DeepSF features (it reads the cached
store, trains into a fresh folder and leaves the default model alone; 24 min on 2 CPU cores)::

    python benchmarks/default_training_time.py --out runs/default_training_time
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from coevofold.app import runs
from coevofold.training import checkpoint, mixture, recipe, trainer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/default_training_time"), help="scratch folder (emptied first)")
    args = parser.parse_args()
    table, store_path = runs.cached_deepsf()
    shutil.rmtree(args.out, ignore_errors=True)
    members = recipe.default_members(False)
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    for name, config in members.items():
        begun = time.perf_counter()
        trainer.train(store_path, table, args.out / checkpoint.ENSEMBLE_MEMBERS / name, config)
        seconds[name] = round(time.perf_counter() - begun)
        print(f"{name}: {seconds[name]} s", flush=True)
    begun = time.perf_counter()
    mixture.train_ensemble(store_path, table, args.out, members)
    seconds["weights"] = round(time.perf_counter() - begun)
    seconds["total"] = round(time.perf_counter() - started)
    print(json.dumps(seconds))


if __name__ == "__main__":
    main()
