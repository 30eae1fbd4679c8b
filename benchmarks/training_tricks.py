"""Two training tricks for the default's MLPs, judged on held-out data only: tried, not kept.

Run after ``coevofold quickstart`` (it compares with the default model's calibration proxy, the
same recipes trained without the proteins ``splits.calibration_split`` holds out; trains each
variant's members on that split into ``--out``, reusing finished ones; ~25 min on 2 cores)::

    python benchmarks/training_tricks.py

Variants of the default recipes (``training.default_members``), every other setting equal:

- ``mixup``: each training protein's inputs mixed with those of a protein of the same fold from
  another superfamily, weight ~ Beta(0.4, 0.4) (``TrainConfig.mixup``): synthetic points between
  a fold's superfamilies, where an unseen superfamily might fall; three MLP seeds;
- ``ema``: the weights' exponential moving average, decay 0.998 per step, validated, early
  stopped and saved (``TrainConfig.ema``): flatter minima generalize further out of
  distribution; eight MLP and three attention seeds, as the default.

Prints the proxy's top-1 on ``valid`` and the held-out fold-, superfamily- and family-like
proteins: single seeds (mean and range) and the seeds averaged, beside the default's members
with the same seeds, and the whole ensemble (probe + MLPs + attention, a weight per recipe
fitted on ``valid``). No DeepSF test level is read.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import numpy as np

from coevofold import benchmark, calibration, evaluation, splits, training
from coevofold.prediction import default_model_dir
from coevofold.splits import CALIBRATION_SPLITS

KINDS = ("valid", *CALIBRATION_SPLITS)
VARIANTS = {"mixup": ({"mixup": 0.4}, ("mlp",), 3), "ema": ({"ema": 0.998}, ("mlp", "attention"), None)}


def top1(p: np.ndarray, t: np.ndarray) -> float:
    seen = t >= 0
    return 100 * float((p[seen].argmax(1) == t[seen]).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/training_tricks"), help="members' folders (default: %(default)s)")
    args = parser.parse_args()
    model_dir = default_model_dir()
    table, store_path = benchmark.cached_deepsf()
    carved = splits.calibration_split(table)
    members = training.default_members(False)
    default, targets = {}, None
    for name in members:
        _, default[name], targets = evaluation.model_scores(model_dir / calibration.PROXY_DIR / "members" / name,
                                                           store_path, carved, KINDS)

    def cells(scores: dict[str, np.ndarray]) -> str:
        return " | ".join(f"{top1(scores[k], targets[k]):.1f}" for k in KINDS)

    def averaged(scores: list[dict]) -> dict[str, np.ndarray]:
        return {k: np.mean([s[k] for s in scores], axis=0) for k in KINDS}

    print("Calibration proxy (trained without the held-out proteins); top-1 %\n")
    print("| Members | proxy valid | held-out fold-like | superfamily-like | family-like |\n|---|---|---|---|---|")
    for variant, (change, recipes, n_seeds) in VARIANTS.items():
        trained = {}
        for recipe in recipes:
            names = [n for n in members if n.split("_seed")[0] == recipe][:n_seeds]
            for name in names:
                folder = args.out / variant / name
                if not (folder / training.MODEL_WEIGHTS).is_file():
                    training.train(store_path, carved, folder, replace(members[name], **change))
                _, trained[name], _ = evaluation.model_scores(folder, store_path, carved, KINDS)
            for label, scores in (("default", default), (variant, trained)):
                singles = np.array([[top1(scores[n][k], targets[k]) for k in KINDS] for n in names])
                print(f"| {label} {recipe}, single seeds: mean (range) | " + " | ".join(
                    f"{m:.1f} ({lo:.1f}–{hi:.1f})" for m, lo, hi in zip(singles.mean(0), singles.min(0), singles.max(0))) + " |")
                print(f"| {label} {recipe}, {len(names)} seeds averaged | {cells(averaged([scores[n] for n in names]))} |")
        if set(recipes) | {"probe"} == {m.split("_seed")[0] for m in members}:
            for label, scores in (("default", default), (variant, {**default, **trained})):
                groups = [averaged([scores[n] for n in g]) for g in training.seed_groups(members)]
                w = training.fit_ensemble_weights([g["valid"] for g in groups], targets["valid"])
                mixed = {k: sum(wi * g[k] for wi, g in zip(w, groups)) for k in KINDS}
                print(f"| {label}: probe + MLPs + attention, weights {w.tolist()} on valid | {cells(mixed)} |")


if __name__ == "__main__":
    main()
