"""The template search and the combiner on DeepSF: bytes, time, prefilter recall, ablation.

Run after ``coevofold quickstart`` (it reuses the default model folder, its proxy and every
cached search; ~15 min on 2 cores, most of it the exhaustive searches of the recall check)::

    python benchmarks/template_search.py [--recall-queries 100]

Prints:

1. Bytes: per-residue embeddings per protein in the feature store (fp16) and in the model
   folder's templates (int8), and the accuracy the int8 templates lose against float32 ones
   (template search alone, top-1 fold on the fold- and superfamily-like held-out rows).
2. Time: the search of DeepSF's valid + test sets per query (timed on a sample, in this run),
   and one ``predict`` query end to end with and without the combined system.
3. Prefilter recall: on random test queries, how often the prefiltered search keeps the best
   template of the exhaustive search (every training domain aligned), and its fold.
4. Ablation of the combiner's feature groups (each row a combiner fitted on the proxy's
   held-out rows with those groups): top-1 on the held-out rows (cross-fitted, grouped by
   superfamily) and on the test levels (fitted on all held-out rows), with the paired
   difference of each piece against the full combiner (bootstrap 95 % intervals). Test rows are
   scored here for the record only: nothing is chosen on them.
5. Transfer: on the held-out rows, the precision and coverage of Smith-Waterman's transfer at the
   model folder's threshold beside the template search's top fold above z thresholds.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from coevofold import metrics
from coevofold.app import runs
from coevofold.data import splits
from coevofold.data.splits import CALIBRATION_SPLITS, TEST_SPLITS
from coevofold.features import store
from coevofold.prediction import default_model_dir, load_predictor
from coevofold.system import combiner, homology, preparation, templates
from coevofold.system.calibration import tempered
from coevofold.training import recipe, scoring

#: The ablation's rows: the feature groups each combiner uses.
ROWS = {
    "model alone (classifier features only)": ("model",),
    "template search alone": ("templates",),
    "model + template search": ("model", "templates"),
    "model + Smith-Waterman": ("model", "alignment"),
    "full combiner (model + templates + Smith-Waterman)": tuple(combiner.FEATURE_GROUPS),
}
FULL = "full combiner (model + templates + Smith-Waterman)"


def _top1(probs: np.ndarray, targets: np.ndarray) -> str:
    return f"{100 * np.mean(probs.argmax(1) == targets):.1f}"


def _diff(a: np.ndarray, b: np.ndarray, targets: np.ndarray) -> str:
    d = metrics.paired_difference(a, b, targets)
    return f"{100 * d['difference']:+.1f} [{100 * d['ci_low']:+.1f}, {100 * d['ci_high']:+.1f}]"


def bytes_and_quantisation(model_dir: Path, store_path: Path, table, rows: preparation.HeldOut) -> None:
    found = templates.load_templates(model_dir)
    per_protein = found.lengths.mean()
    width = found.vectors.shape[1]
    print(f"1. per-residue embeddings: {width} dims; per protein (mean {per_protein:.0f} residues): "
          f"{2 * width * per_protein / 1024:.0f} KB in the store (fp16), {width * per_protein / 1024:.0f} KB "
          f"in the templates (int8); templates in the model folder: "
          f"{sum(p.stat().st_size for p in model_dir.glob('templates*')) / 2**20:.0f} MB for {len(found)} domains")
    proxy = model_dir / preparation.PROXY_DIR
    carved = splits.calibration_split(table)
    quantised = templates.load_templates(proxy)
    train = store.read_rows(store_path, quantised.ids.tolist(), residues=True)
    exact = replace(quantised, vectors=np.concatenate([quantised.unit(r) * 127.0
                                                       for r in train.residues]))

    class _Float(templates.TemplateSearch):
        def _similarity(self, unit, chosen):  # float32 products of unrounded vectors
            stacked, offsets = self._blocks(chosen)
            return np.ascontiguousarray(stacked @ unit.T / 127.0, dtype=np.float32), offsets

    for kind in ("calibration_fold", "calibration_superfamily"):
        held = carved[carved["split"] == kind].sample(n=min(150, (carved["split"] == kind).sum()), random_state=0)
        queries = store.read_rows(store_path, held["id"].tolist(), residues=True)
        right = []
        for search in (templates.TemplateSearch(quantised), _Float(exact)):
            hits = search.search(queries.residues, False)
            right.append(quantised.folds[hits.index[:, 0]] == held["fold"].to_numpy())
        print(f"   {kind}: template search alone, top-1 fold on {len(held)} rows: int8 {100 * right[0].mean():.1f} %, "
              f"float32 {100 * right[1].mean():.1f} % (paired difference "
              f"{100 * (right[0].mean() - right[1].mean()):+.1f} points)")


def timing(model_dir: Path, store_path: Path, table, sample: int = 100) -> None:
    found = templates.load_templates(model_dir)
    rows = table[table["split"].isin(("valid", *TEST_SPLITS))]
    picked = rows.sample(n=sample, random_state=0)
    queries = store.read_rows(store_path, picked["id"].tolist(), residues=True)
    search = templates.TemplateSearch(found)
    search.search(queries.residues[:2], False)  # compile, page in
    started = time.perf_counter()
    search.search(queries.residues, False)
    per_query = (time.perf_counter() - started) / sample
    print(f"2. search time: {per_query:.3f} s per query ({sample} random valid/test queries, "
          f"{search.config.prefilter} prefiltered + {search.config.decoys} decoys); the {len(rows)} valid + test "
          f"queries: {per_query * len(rows) / 60:.1f} min")
    one = rows.head(1)[["id", "sequence"]]
    seconds = {}
    for combined in (False, True):
        predictor = load_predictor(model_dir)
        if not combined:
            predictor.templates = None
        predictor.predict(one, progress=False)  # warm
        started = time.perf_counter()
        predictor.predict(one, progress=False)
        seconds[combined] = time.perf_counter() - started
    print(f"   one predict query ({len(one['sequence'].iat[0])} residues, pLM loaded): {seconds[True]:.2f} s with the "
          f"combined system, {seconds[False]:.2f} s with the model behind homology transfer "
          f"(+{seconds[True] - seconds[False]:.2f} s)")


def recall(model_dir: Path, store_path: Path, table, n: int) -> None:
    found = templates.load_templates(model_dir)
    test = table[table["split"].isin(TEST_SPLITS)].sample(n=n, random_state=1)
    queries = store.read_rows(store_path, test["id"].tolist(), residues=True)
    started = time.perf_counter()
    exhaustive = templates.TemplateSearch(found, templates.SearchConfig(prefilter=len(found))).search(queries.residues)
    seconds = time.perf_counter() - started
    default = templates.TemplateSearch(found).search(queries.residues, False)
    same = exhaustive.index[:, 0] == default.index[:, 0]
    fold = found.folds[exhaustive.index[:, 0]] == found.folds[default.index[:, 0]]
    truth = test["fold"].to_numpy()
    print(f"3. prefilter recall on {n} random test queries: best exhaustive template kept {100 * same.mean():.1f} %, "
          f"its fold {100 * fold.mean():.1f} %; top-1 fold right: exhaustive "
          f"{100 * np.mean(found.folds[exhaustive.index[:, 0]] == truth):.1f} %, prefiltered "
          f"{100 * np.mean(found.folds[default.index[:, 0]] == truth):.1f} % "
          f"(exhaustive search: {seconds / n:.1f} s per query)")


def ablation(model_dir: Path, store_path: Path, table, rows: preparation.HeldOut, alignment: dict) -> None:
    scored = scoring.model_scores(model_dir, store_path, table, TEST_SPLITS)
    classes = scored[0]["classes"]
    found = templates.load_templates(model_dir)
    min_score = homology.read_settings(model_dir).min_score
    test_evidence = {s: preparation.evidence_of(tempered(scored[1][s], rows.final_temperature),
                                           preparation.cached_hits(found, store_path, table, s, progress=False),
                                           alignment[s], found, classes) for s in TEST_SPLITS}
    held, test = {}, {}
    for name, groups in ROWS.items():
        held[name] = combiner.cross_fitted(rows.evidence, rows.targets, rows.superfamilies, rows.weights, groups)
        weights = combiner.fit_weights(rows.evidence, rows.targets, rows.weights, groups)
        test[name] = {s: homology.homology_first(combiner.combine(weights, e), alignment[s], min_score)
                      for s, e in test_evidence.items()}
    test_targets = scored[2]
    pooled_targets = np.concatenate([test_targets[s] for s in TEST_SPLITS])
    header = ["combiner inputs", *(f"held-out {k[12:]}-like" for k in CALIBRATION_SPLITS),
              *(metrics.LEVEL_NAMES[s] for s in TEST_SPLITS), "pooled test"]
    print("4. ablation (top-1 %; test: homology transfer first, as predict answers)\n")
    print("| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    for name in ROWS:
        cells = [_top1(held[name][rows.levels == k], rows.targets[rows.levels == k]) for k in CALIBRATION_SPLITS]
        cells += [_top1(test[name][s], test_targets[s]) for s in TEST_SPLITS]
        cells.append(_top1(np.concatenate([test[name][s] for s in TEST_SPLITS]), pooled_targets))
        print(f"| {name} | " + " | ".join(cells) + " |")
    print("\npaired difference, full combiner minus each row (points, bootstrap 95 % interval):\n")
    print("| row | " + " | ".join(header[1:]) + " |\n|" + "---|" * len(header))
    for name in ROWS:
        if name == FULL:
            continue
        cells = [_diff(held[FULL][rows.levels == k], held[name][rows.levels == k], rows.targets[rows.levels == k])
                 for k in CALIBRATION_SPLITS]
        cells += [_diff(test[FULL][s], test[name][s], test_targets[s]) for s in TEST_SPLITS]
        cells.append(_diff(np.concatenate([test[FULL][s] for s in TEST_SPLITS]),
                           np.concatenate([test[name][s] for s in TEST_SPLITS]), pooled_targets))
        print(f"| {name} | " + " | ".join(cells) + " |")


def transfer_reliability(model_dir: Path, rows: preparation.HeldOut) -> None:
    """Could the template search transfer folds on its own, as a significant Smith-Waterman hit does?"""
    min_score = homology.read_settings(model_dir).min_score
    sw = rows.evidence.alignment
    passed = sw.max(axis=1) >= min_score
    print("5. transfer on the held-out rows (precision of the top fold / share of rows it covers), "
          "unit-weighted as the calibration:")
    w = rows.weights

    def line(name: str, chosen: np.ndarray, right: np.ndarray) -> str:
        if not chosen.any():
            return f"   {name}: no rows"
        return (f"   {name}: precision {100 * np.average(right[chosen], weights=w[chosen]):.1f} %, "
                f"covers {100 * np.average(chosen, weights=w):.1f} %")

    print(line(f"Smith-Waterman, E <= 1e-{min_score:g} (what predict transfers)", passed,
               sw.argmax(axis=1) == rows.targets))
    z = rows.evidence.template_z
    for threshold in (5.0, 8.0, 12.0, 16.0):
        print(line(f"template search, best z >= {threshold:g}", z.max(axis=1) >= threshold,
                   z.argmax(axis=1) == rows.targets))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--model-dir", default=str(default_model_dir()), help="the prepared default model folder")
    parser.add_argument("--recall-queries", type=int, default=100, help="test queries searched exhaustively")
    args = parser.parse_args()
    model_dir = Path(args.model_dir)
    table, store_path = runs.cached_deepsf()
    alignment = preparation.cached_alignment("deepsf", table, False)
    held_alignment = preparation.cached_alignment("deepsf", splits.calibration_split(table), False, CALIBRATION_SPLITS)
    rows = preparation.held_out(model_dir, store_path, table, recipe.default_members(False), held_alignment, False)
    ablation(model_dir, store_path, table, rows, alignment)
    transfer_reliability(model_dir, rows)
    bytes_and_quantisation(model_dir, store_path, table, rows)
    timing(model_dir, store_path, table)
    recall(model_dir, store_path, table, args.recall_queries)


if __name__ == "__main__":
    main()
