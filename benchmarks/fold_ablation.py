"""Fold-accuracy ablation on DeepSF: every variant on valid and the three test levels.

Run: ``python benchmarks/fold_ablation.py`` (after the DeepSF features are cached, e.g. by
``coevofold quickstart``). Each variant trains once into ``runs/ablation/NAME`` and is reused on
re-runs; choices (ensemble weights, the homology threshold) are made on ``valid`` only, and the
test levels are only scored. Prints one Markdown table: top-1/top-5 with bootstrap 95 %
intervals, training time, weight bytes and feature bytes per protein; then the paired
difference with and without the co-evolution map branch.

``--variants "a|b"`` trains a subset; ``--ensemble LABEL=a|b`` adds an ensemble row (weights on
valid); ``--alignment "a|LABEL"`` adds homology-first rows (Smith-Waterman of valid and test
against training, cached; ~8 min on 2 cores the first time); ``--compare "x|y"`` prints the
paired bootstrap difference of two rows. The README's table is printed by the command given
there.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from coevofold import baselines, benchmark, data, evaluation, features, pretrained, training
from coevofold.files import write_text
from coevofold.models import ModelConfig
from coevofold.splits import TEST_SPLITS

HIERARCHY = ("fold", "superfamily", "family")
#: stored bytes per protein of each model input (float16 arrays of the default store).
INPUT_BYTES = {"maps": 7 * 32 * 32 * 2, "embedding": 32 * 320 * 2, "segments": 32 * 320 * 2,
               "mean": 320 * 4, "layers": 7 * 320 * 2, "onehot": 0, "topology": 0,
               # the segments plus the full-resolution contact triangle (uint8; DeepSF mean)
               "graph": 32 * 320 * 2 + 20021}

#: the recipe before this ablation: count^-0.5 class weights (the "unweighted" rows drop them).
WEIGHTED = {"class_weight_power": 0.5}

VARIANTS: dict[str, training.TrainConfig] = {
    "probe (all-layer means, linear)": training.TrainConfig(model=ModelConfig(name="probe"), **WEIGHTED),
    "layers MLP": training.TrainConfig(model=ModelConfig(name="layers"), **WEIGHTED),
    "layers MLP + hierarchy": training.TrainConfig(model=ModelConfig(name="layers", levels=HIERARCHY), **WEIGHTED),
    "layers MLP + hierarchy + class smoothing": training.TrainConfig(
        model=ModelConfig(name="layers", levels=HIERARCHY), smoothing_target="class", **WEIGHTED),
    "layers MLP + hierarchy unweighted": training.TrainConfig(
        model=ModelConfig(name="layers", levels=HIERARCHY), class_weight_power=0.0),
    "coevo (maps + layers) + hierarchy unweighted": training.TrainConfig(
        model=ModelConfig(name="coevo", levels=HIERARCHY, channels_2d=32), class_weight_power=0.0),
    "layers MLP + hierarchy unweighted seed 1": training.TrainConfig(
        model=ModelConfig(name="layers", levels=HIERARCHY), class_weight_power=0.0, seed=1),
    "layers MLP + hierarchy unweighted seed 2": training.TrainConfig(
        model=ModelConfig(name="layers", levels=HIERARCHY), class_weight_power=0.0, seed=2),
    "probe, lbfgs (scikit-learn, C=0.3)": training.TrainConfig(model=ModelConfig(name="probe"), solver="lbfgs", C=0.3),
    "attention + hierarchy unweighted": training.TrainConfig(
        model=ModelConfig(name="attention", levels=HIERARCHY), class_weight_power=0.0),
    "probe, lbfgs (scikit-learn, C=1)": training.TrainConfig(model=ModelConfig(name="probe"), solver="lbfgs"),
    "graph (contact-graph network + layers) + hierarchy unweighted": training.TrainConfig(
        model=ModelConfig(name="graph", levels=HIERARCHY), class_weight_power=0.0),
    "coevo (maps + layers) + hierarchy": training.TrainConfig(
        model=ModelConfig(name="coevo", levels=HIERARCHY, channels_2d=32), **WEIGHTED),
    "topo (contact topology + layers) + hierarchy": training.TrainConfig(
        model=ModelConfig(name="topo", levels=HIERARCHY), **WEIGHTED),
}


def slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name).strip("_")


def train_variant(name: str, config: training.TrainConfig, store_path: Path, table, out: Path) -> dict:
    """Train (or reuse) one variant; returns its timing record."""
    run_dir = out / slug(name)
    timing_path = run_dir / "timing.json"
    if timing_path.exists() and (run_dir / training.MODEL_WEIGHTS).exists():
        return json.loads(timing_path.read_text())
    started = time.perf_counter()
    training.train(store_path, table, run_dir, replace(config, progress=False), fold_names=data.fold_names("deepsf"))
    record = {"train_s": time.perf_counter() - started, "weight_bytes": (run_dir / training.MODEL_WEIGHTS).stat().st_size}
    write_text(timing_path, json.dumps(record))
    return record


def representations(run_dir: Path, store_path: Path, table, splits) -> dict[str, np.ndarray]:
    """L2-normalised trunk outputs of a trained model for each split (and ``train``)."""
    import torch

    classifier, meta = training.load_model(run_dir)
    uses = training.MODELS[meta["model"]["name"]]
    out = {}
    for split in ("train", *splits):
        data_ = training.load_split(store_path, table[table["split"] == split], meta["classes"])
        with torch.inference_mode():
            h = torch.cat([classifier.represent(data_.batch(list(range(i, min(i + 512, len(data_)))), uses))
                           for i in range(0, len(data_), 512)])
        out[split] = torch.nn.functional.normalize(h, dim=1).numpy()
    return out


def neighbour_scores(reps: dict[str, np.ndarray], train_labels: np.ndarray, n_classes: int, split: str,
                     temperature: float) -> np.ndarray:
    """Nearest-neighbour transfer: per fold, the best cosine similarity to a training member,
    turned into probabilities by a softmax at ``temperature``."""
    sims = reps[split] @ reps["train"].T
    best = np.full((len(sims), n_classes), -1.0, dtype=np.float32)
    for c in range(n_classes):
        members = train_labels == c
        if members.any():
            best[:, c] = sims[:, members].max(1)
    z = (best - best.max(1, keepdims=True)) / temperature
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", default="", help="'|'-separated subset of variant names (default: all)")
    parser.add_argument("--out", default="runs/ablation")
    parser.add_argument("--store", default=None, help="feature store (default: the cached DeepSF store)")
    parser.add_argument("--alignment", default="", metavar="X|Y",
                        help="'|'-separated rows (labels or variants) to add homology-first rows for")
    parser.add_argument("--neighbours", default="", help="'|'-separated variants to add nearest-neighbour rows for")
    parser.add_argument("--ensemble", action="append", default=[], metavar="LABEL=A|B",
                        help="ensemble of '|'-separated variants (weights on valid), shown as LABEL; repeatable")
    parser.add_argument("--compare", action="append", default=[], metavar="X|Y",
                        help="paired bootstrap top-1 difference X - Y of two rows (labels or variants); repeatable")
    args = parser.parse_args()
    out = Path(args.out)
    table = data.load("deepsf")
    store_path = Path(args.store) if args.store else features.cached_store("deepsf", pretrained.load(None),
                                                                             features.FeatureConfig())
    chosen = [v for v in args.variants.split("|") if v] or list(VARIANTS)
    splits = ("valid", *TEST_SPLITS)
    results, scores, costs = {}, {}, {}
    for name in chosen:
        costs[name] = train_variant(name, VARIANTS[name], store_path, table, out)
        meta, probs, targets = evaluation.model_scores(out / slug(name), store_path, table, splits)
        scores[name] = probs
        results[name] = {split: evaluation.score(probs[split], targets[split]) for split in splits}
        costs[name]["epochs"] = meta["epochs"]
        costs[name]["feature_bytes"] = sum(INPUT_BYTES[i] for i in training.MODELS[meta["model"]["name"]])
        print(f"{name}: valid top-1 {100 * results[name]['valid']['metrics']['top1']['value']:.1f} %, "
              f"{costs[name]['train_s']:.0f} s", flush=True)
    for name in [v for v in args.neighbours.split("|") if v]:
        started = time.perf_counter()
        meta, _, _ = evaluation.model_scores(out / slug(name), store_path, table, ())
        reps = representations(out / slug(name), store_path, table, splits)
        train_labels = training.encode(table.loc[table["split"] == "train", "fold"], meta["classes"]).numpy()
        n = len(meta["classes"])
        temperature = max((0.01, 0.02, 0.05, 0.1), key=lambda t: -float(np.mean(
            [-np.log(p[y] + 1e-12) for p, y in zip(neighbour_scores(reps, train_labels, n, "valid", t), targets["valid"]) if y >= 0])))
        knn = {s: neighbour_scores(reps, train_labels, n, s, temperature) for s in splits}
        row = f"{name}: nearest neighbour on its representation (T={temperature:g})"
        scores[row] = knn
        results[row] = {s: evaluation.score(knn[s], targets[s]) for s in splits}
        costs[row] = {**costs[name], "train_s": costs[name]["train_s"] + time.perf_counter() - started}
        w = training.fit_ensemble_weights([scores[name]["valid"], knn["valid"]], targets["valid"])
        mixed_row = f"{name} + its nearest neighbour ({w[1]:.1f})"
        scores[mixed_row] = {s: w[0] * scores[name][s] + w[1] * knn[s] for s in splits}
        results[mixed_row] = {s: evaluation.score(scores[mixed_row][s], targets[s]) for s in splits}
        costs[mixed_row] = costs[row]
    for spec in args.ensemble:
        label, members = spec.split("=", 1)
        members = members.split("|")
        weights = training.fit_ensemble_weights([scores[m]["valid"] for m in members], targets["valid"])
        name = f"{label} (" + " + ".join(f"{w:.1f} {m}" for w, m in zip(weights, members)) + ")"
        scores[label] = {s: sum(w * scores[m][s] for w, m in zip(weights, members)) for s in splits}
        results[name] = {s: evaluation.score(scores[label][s], targets[s]) for s in splits}
        costs[name] = {k: sum(costs[m][k] for m in members) for k in ("train_s", "weight_bytes", "feature_bytes")}
        costs[label] = costs[name]
    if args.alignment:
        aligned = benchmark.cached_alignment("deepsf", table)
        aligned_top1 = {s: evaluation.score(aligned[s], targets[s]) for s in splits}
        results["Smith-Waterman nearest neighbour (E-value)"] = aligned_top1
        costs["Smith-Waterman nearest neighbour (E-value)"] = {"train_s": 0, "weight_bytes": 0, "feature_bytes": 0}
        for name in args.alignment.split("|"):
            threshold = baselines.choose_min_score(scores[name]["valid"], aligned["valid"], targets["valid"])
            hybrid = f"{name} + homology first (E <= 1e-{threshold:g})"
            scores[f"{name} + homology"] = {s: baselines.homology_first(scores[name][s], aligned[s], threshold)
                                            for s in splits}
            results[hybrid] = {s: evaluation.score(scores[f"{name} + homology"][s], targets[s]) for s in splits}
            costs[hybrid] = costs[name]
    print()
    print(markdown(results, costs))
    for pair in args.compare:
        x, y = pair.split("|")
        print(f"paired top-1 difference, {x} minus {y}, in points [bootstrap 95 % interval]:")
        for split in splits:
            diff = evaluation.paired_difference(scores[x][split], scores[y][split], targets[split])
            print(f"  {split}: {100 * diff['difference']:+.1f} [{100 * diff['ci_low']:+.1f}, {100 * diff['ci_high']:+.1f}]")
    write_text(out / "ablation.json", json.dumps({"results": results, "costs": costs}, indent=1))


def markdown(results: dict, costs: dict) -> str:
    splits = ("valid", *TEST_SPLITS)
    header = ["Variant", *(f"{s} top-1" for s in splits), *(f"{s} top-5" for s in splits),
              "train s", "weights KB", "features B/protein"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, by_split in results.items():
        cells = []
        for metric in ("top1", "top5"):
            for s in splits:
                m = by_split[s]["metrics"][metric]
                cells.append(f"{100 * m['value']:.1f} [{100 * m['ci_low']:.1f}–{100 * m['ci_high']:.1f}]")
        c = costs[name]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {c['train_s']:.0f} | {c['weight_bytes'] / 1024:.0f} | "
                     f"{c['feature_bytes']} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
