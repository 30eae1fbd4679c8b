"""The co-evolution maps question for the current default: offer a maps model as one more recipe.

Run after ``coevofold quickstart`` and ``bash benchmarks/fold_ablation.sh`` (which trains the maps
MLP, ``coevo`` + hierarchy, unweighted, and the contact-graph network, ``graph``, into
``runs/ablation``; ~1 min)::

    python benchmarks/maps_difference.py [--member runs/ablation/coevo__maps___layers____hierarchy_unweighted]
    python benchmarks/maps_difference.py --member runs/ablation/graph__contact_graph_network___layers____hierarchy_unweighted

Fits the recipe weights on ``valid`` with the offered member as a fourth recipe
(``training.seed_groups`` plus it) and prints the paired bootstrap top-1 difference, with it
minus the default, for the model and for the system (homology transfer first), per level.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from coevofold import baselines, benchmark, evaluation, homology, training
from coevofold.prediction import default_model_dir
from coevofold.splits import TEST_SPLITS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--member", type=Path, default=Path("runs/ablation/coevo__maps___layers____hierarchy_unweighted"),
                        help="a trained model folder that reads the maps (default: %(default)s)")
    args = parser.parse_args()
    model_dir = default_model_dir()
    table, store_path = benchmark.cached_deepsf()
    levels = ("valid", *TEST_SPLITS)
    members = training.default_members(False)
    scores, targets = {}, None
    for name in members:
        _, scores[name], targets = evaluation.model_scores(model_dir / "members" / name, store_path, table, levels)
    offered_meta, maps, _ = evaluation.model_scores(args.member, store_path, table, levels)
    groups = [{s: np.mean([scores[n][s] for n in g], axis=0) for s in levels} for g in training.seed_groups(members)]
    _, default, _ = evaluation.model_scores(model_dir, store_path, table, levels)
    offered = [*groups, maps]
    weights = training.fit_ensemble_weights([g["valid"] for g in offered], targets["valid"])
    with_maps = {s: sum(w * g[s] for w, g in zip(weights, offered)) for s in levels}
    print(f"recipe weights on valid with {offered_meta['model']['name']} offered (probe, MLP, attention, it): {weights}")
    alignment = benchmark.cached_alignment("deepsf", table, False)
    threshold = homology.read_settings(model_dir).min_score
    print("| | " + " | ".join(levels) + " |\n|---|" + "---|" * len(levels))
    for label, system in ((f"model: default + {offered_meta['model']['name']} offered vs default", False),
                          ("system (homology transfer first)", True)):
        cells = []
        for s in levels:
            a, b = with_maps[s], default[s]
            if system:
                a, b = (baselines.homology_first(x, alignment[s], threshold) for x in (a, b))
            d = evaluation.paired_difference(a, b, targets[s])
            cells.append(f"{100 * d['difference']:+.1f} [{100 * d['ci_low']:+.1f}, {100 * d['ci_high']:+.1f}]")
        print(f"| {label} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
