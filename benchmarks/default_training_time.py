"""Seconds and valid top-1 of the default model trained two ways: from scratch, and as quickstart
trains it, from its calibration proxy's weights (``warm_epochs``); each member, then the mixture.

Run after ``coevofold quickstart`` has extracted the DeepSF features (it reads the cached
store, trains into a fresh folder and leaves the default model alone; ~10 min on 2 CPU cores:
the proxy, the model from scratch, the model from the proxy)::

    python benchmarks/default_training_time.py --out runs/default_training_time
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from coevofold.app import runs
from coevofold.system import preparation
from coevofold.training import checkpoint, mixture, recipe, trainer


def timed_members(store_path: Path, table, out: Path, members: dict, warm_from: Path | None = None) -> dict:
    """Each member trained into ``out`` (from ``warm_from``'s member where given), then the mixture:
    seconds and valid top-1 per member, the ensemble's valid top-1, the total seconds."""
    found: dict[str, dict] = {}
    started = time.perf_counter()
    for name, config in members.items():
        begun = time.perf_counter()
        init = None if warm_from is None else warm_from / checkpoint.ENSEMBLE_MEMBERS / name
        folder = trainer.train(store_path, table, out / checkpoint.ENSEMBLE_MEMBERS / name, config, init_from=init)
        found[name] = {"seconds": round(time.perf_counter() - begun),
                       "valid_top1": round(100 * json.loads((folder / checkpoint.MODEL_META).read_text())["best_val_acc"], 1)}
        print(f"  {name}: {found[name]}", flush=True)
    mixture.train_ensemble(store_path, table, out, members, warm_from=warm_from)
    ensemble = json.loads((out / checkpoint.MODEL_META).read_text())
    return {"members": found, "ensemble_valid_top1": round(100 * ensemble["best_val_acc"], 1),
            "weights": ensemble["ensemble"]["weights"], "seconds": round(time.perf_counter() - started)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/default_training_time"), help="scratch folder (emptied first)")
    args = parser.parse_args()
    table, store_path = runs.cached_deepsf()
    shutil.rmtree(args.out, ignore_errors=True)
    members = recipe.default_members(False)
    print("the calibration proxy (held-out rows removed), from scratch:")
    started = time.perf_counter()
    proxy = preparation.train_proxy(args.out / "warm", store_path, preparation.calibration_rows(table)[0], members)
    proxy_seconds = round(time.perf_counter() - started)
    print(f"  {proxy_seconds} s in {proxy}")
    print("the model from scratch:")
    cold = timed_members(store_path, table, args.out / "cold", members)
    print(f"the model from the proxy's weights ({members['mlp'].warm_epochs} epochs):")
    warm = timed_members(store_path, table, args.out / "warm", members, warm_from=proxy)
    print(json.dumps({"proxy_seconds": proxy_seconds, "cold": cold, "warm": warm}))
    print(f"from the proxy: {warm['seconds']} against {cold['seconds']} s from scratch "
          f"({cold['seconds'] / warm['seconds']:.2f}x); valid top-1 of the ensemble {warm['ensemble_valid_top1']} "
          f"against {cold['ensemble_valid_top1']} %")


if __name__ == "__main__":
    main()
