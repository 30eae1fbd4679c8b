"""End-to-end runs: the README's main job and the full comparison of models and baselines.

:func:`quickstart` is what a newcomer runs: features of the whole DeepSF benchmark (cached), the
default model (cached), its accuracy on the three test levels beside the published anchors,
and a few predictions to read. :func:`run_benchmark` trains every model and baseline on the same
features of a preset (DeepSF, SCOP2, the binary task) and prints one table. Both reuse
everything already computed, so re-runs are fast.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from coevofold import metrics
from coevofold.data import names, tables
from coevofold.data.splits import PROTOCOLS, TEST_SPLITS, SplitConfig, with_splits
from coevofold.features import extraction, pretrained, store
from coevofold.files import write_text
from coevofold.models.registry import ModelConfig, MODELS
from coevofold.prediction import default_model_dir
from coevofold.system import evaluation, preparation
from coevofold.training import checkpoint, mixture, recipe, scoring, trainer
from coevofold.training.checkpoint import RESULTS_JSON, RESULTS_MD

ALIGNMENT = "alignment nearest neighbour (Smith-Waterman, E-value)"


@dataclass(frozen=True)
class BenchmarkPreset:
    """A benchmark: a labelled data set, its splits, and how much of it a run uses."""

    name: str
    #: data preset (see coevofold.data.tables.PRESETS); sets without published splits get the split
    #: maker's (superfamilies held out for the fold level), seed 0.
    source: str = "deepsf"
    #: keep only the N most populated training folds (0: all).
    folds: int = 0
    #: cap on proteins per fold and split (0: no cap).
    per_fold: int = 0
    #: epochs per model (None: :class:`coevofold.training.trainer.TrainConfig`'s budget).
    max_epochs: int | None = None
    alignment: bool = True
    #: split protocols (:data:`coevofold.data.splits.PROTOCOLS`) under which the default system
    #: is trained and scored side by side, instead of every model one by one.
    protocols: tuple[str, ...] = ()
    #: the split maker's ``min_members_per_fold`` for the protocols.
    min_members: int = 5


#: the accuracy benchmarks ``coevofold benchmark`` runs (data sets are :data:`coevofold.data.tables.PRESETS`).
BENCHMARKS = {
    p.name: p
    for p in [
        BenchmarkPreset("deepsf"),
        # CI-sized: 10 large folds, 5 proteins per fold and split; minutes on 2 cores.
        BenchmarkPreset("deepsf-ci", folds=10, per_fold=5, max_epochs=4),
        # the original study's task: many-fold SCOP2 classification, every fold with 2 members
        BenchmarkPreset("scop2", source="scop2", protocols=tuple(PROTOCOLS), min_members=2),
        # the original study's fallback: two folds
        BenchmarkPreset("binary", source="binary"),
    ]
}


def benchmark_table(preset: BenchmarkPreset) -> pd.DataFrame:
    """The preset's table with splits, reduced as it says (deterministically)."""
    table = with_splits(tables.load(preset.source))
    table = table[table["split"] != "excluded"]  # features only for rows in a split
    if preset.folds:
        train = table[table["split"] == "train"]
        keep = train["fold"].value_counts().index[: preset.folds]
        table = table[table["fold"].isin(keep)]
    if preset.per_fold:
        table = table.groupby(["split", "fold"], sort=False).head(preset.per_fold)
    return table.reset_index(drop=True)


def cached_features(name: str, table: pd.DataFrame, plm: pretrained.ProteinLM, config: extraction.FeatureConfig,
                    progress: bool = True) -> Path:
    """Extract ``table`` into the cache store for ``name`` (a no-op when already complete)."""
    path = extraction.cached_store(name, plm, config)
    if progress:
        print(f"features: {path}")
    return extraction.extract(table, path, config, extraction.RunConfig(progress=progress), plm=plm)


def cached_deepsf() -> tuple[pd.DataFrame, Path]:
    """The DeepSF table and the feature store ``quickstart`` extracted for it (default pLM and
    feature settings): what the benchmarks that study the default model read."""
    return tables.load("deepsf"), extraction.cached_store("deepsf", pretrained.load(None), extraction.FeatureConfig())


#: The default system's steps after its features, shared by ``quickstart`` and ``benchmark scop2``.
MODEL_STEP = "the default model (its calibration proxy first, then the model from the proxy's weights)"
SYSTEM_STEP = "the system (homology, templates, the proxy's held-out rows searched, combiner, calibration)"
SCORES_STEP = "scores of the test levels (template search) and tables"
#: The main job's steps and their minutes on 2 idle cores, the mean of two fresh runs on two
#: machines (2026-12-04, commit b686a58; README), for the ETA each step's line states; a cached
#: step takes seconds.
QUICKSTART_STEPS = {"features of DeepSF": 4.9, MODEL_STEP: 4.7, SYSTEM_STEP: 4.7, SCORES_STEP: 2.6}


class Steps:
    """One line per step of a long job: which step of how many, the total so far, and the ETA of
    the step and of the job from the measured minutes per step (the steps' own bars say more)."""

    def __init__(self, job: str, minutes: dict[str, float]) -> None:
        self.job, self.minutes, self.started = job, minutes, time.perf_counter()

    @staticmethod
    def _clock(seconds: float) -> str:
        return f"{int(seconds // 60)}:{int(seconds % 60):02d}"

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        number, names = list(self.minutes).index(name) + 1, list(self.minutes)
        left = sum(self.minutes[n] for n in names[number - 1:])
        print(f"[{self.job} {number}/{len(names)}] {name}: so far {self._clock(time.perf_counter() - self.started)}; "
              f"first run ~{self.minutes[name]:.0f} min for this step, ~{left:.0f} min to the end on 2 cores "
              "(cached: seconds)", flush=True)
        began = time.perf_counter()
        yield
        print(f"[{self.job} {number}/{len(names)}] {name}: {self._clock(time.perf_counter() - began)} "
              f"(total {self._clock(time.perf_counter() - self.started)})", flush=True)


@dataclass(frozen=True)
class SystemResults:
    """The default system trained and scored on one table: what ``quickstart`` prints."""

    #: result rows (:func:`coevofold.metrics.evaluate_levels`) by name: the system, the model
    #: behind homology transfer alone, the model alone, the probe, Smith-Waterman alone.
    rows: dict[str, dict]
    calibration: dict
    #: the combined probabilities of the test levels; the Smith-Waterman scores of valid and the test levels.
    combined: scoring.Scored
    alignment: dict[str, np.ndarray]


def default_system(name: str, table: pd.DataFrame, store_path: Path, model_dir: Path, steps: Steps,
                   fold_names: dict[str, str], progress: bool = True) -> SystemResults:
    """Train (or reuse) the default recipe on ``table``'s train split into ``model_dir``, make it
    the system ``predict`` answers with, and score it and its parts on the test levels once.

    ``name`` keys the Smith-Waterman caches (one per data set and split); ``steps`` must have
    :data:`MODEL_STEP`, :data:`SYSTEM_STEP` and :data:`SCORES_STEP`.
    """
    from coevofold.system import homology

    settings = store.read_settings(store_path)
    members = recipe.default_members(progress)
    with steps.step(MODEL_STEP):
        if mixture.trained_as(model_dir, members, settings):
            print(f"default model: {model_dir} (cached)")
        else:
            print(f"training the default model ({' + '.join(members)}) on {int((table['split'] == 'train').sum())} "
                  "proteins: first its calibration proxy (without held-out superfamilies, families and members), "
                  "then the model from the proxy's weights (coevofold.system.preparation)")
            if checkpoint.has_model(model_dir):  # another recipe or other features finished there: start afresh
                shutil.rmtree(model_dir)
            preparation.train_model(model_dir, store_path, table, members, fold_names)
    with steps.step(SYSTEM_STEP):
        alignment = preparation.prepare(model_dir, store_path, table, members, name, progress)
    with steps.step(SCORES_STEP):
        scored = scoring.model_scores(model_dir, store_path, table, ("valid", *TEST_SPLITS))  # once, for all below
        # the test levels only: the combiner and the threshold are fitted, so nothing reads valid's (35 s of search)
        tested = scoring.scores_for(model_dir, store_path, table, TEST_SPLITS, scored)
        combined = evaluation.system_scores(model_dir, store_path, table, alignment, tested, progress)
        min_score = homology.read_settings(model_dir).min_score
        default = scoring.evaluate_model(model_dir, store_path, table, scored=scored)
        threshold, previous = evaluation.homology_first_results(model_dir, store_path, table, alignment, scored)
        _, answer = evaluation.homology_first_results(model_dir, store_path, table, alignment, combined, min_score)
        probe = scoring.evaluate_model(model_dir / checkpoint.ENSEMBLE_MEMBERS / "probe", store_path, table)
        searched = metrics.evaluate_table(alignment, table, sorted(table.loc[table["split"] == "train", "fold"].unique()))
        calibrated = evaluation.evaluate_calibration(model_dir, store_path, table, alignment, combined)
    rows = {
        f"coevofold default system (model + template search + Smith-Waterman, combined; homology transfer where "
        f"E <= 1e-{min_score:g}; what predict answers)": answer,
        f"previous system (model + homology transfer where E <= 1e-{threshold:g})": previous,
        f"coevofold default model alone (ensemble: {', '.join(members)})": default,
        "all-layer linear probe alone (baseline; the ensemble's member)": probe,
        ALIGNMENT: searched,
    }
    return SystemResults(rows, calibrated, combined, alignment)


def quickstart(progress: bool = True) -> dict:
    """The README's main job: the default system on the full DeepSF benchmark, trained once, cached.

    Prints the default system (classifier + template search + Smith-Waterman, combined and
    calibrated, as ``predict`` answers), the previous system (the model behind homology transfer
    alone), the model alone, the all-layer linear probe and Smith-Waterman alone, per test level.
    """
    steps = Steps("quickstart", QUICKSTART_STEPS)
    plm = pretrained.load(None)
    print(f"pLM: {plm.label}")
    table = tables.load("deepsf")
    with steps.step(next(iter(QUICKSTART_STEPS))):
        store_path = cached_features("deepsf", table, plm, extraction.FeatureConfig(), progress)
    model_dir = default_model_dir()
    found = default_system("deepsf", table, store_path, model_dir, steps, names.fold_names("deepsf"), progress)
    print()
    print(metrics.results_markdown(found.rows))
    print(metrics.calibration_markdown(found.calibration))
    _show_examples(model_dir, table, found.alignment, found.combined)
    print(f"done in {time.perf_counter() - steps.started:.0f} s; model in {model_dir}; "
          f"predict with: coevofold predict YOUR.fasta")
    return next(iter(found.rows.values()))


def _show_examples(model_dir: Path, table: pd.DataFrame, alignment: dict[str, np.ndarray],
                   scored: scoring.Scored, per_level: int = 2) -> None:
    """A few test-set answers as ``predict`` states them (homology first, calibrated, with a band)."""
    from coevofold.system import calibration, homology

    meta, probs, _ = scored
    settings = homology.read_settings(model_dir)
    fitted = calibration.load_calibration(model_dir) if calibration.has_calibration(model_dir) else None
    classes, named = np.asarray(meta["classes"]), meta.get("fold_names", {})
    rng = np.random.default_rng(0)
    print("example answers as coevofold predict states them (test proteins never seen in training):")
    for level in TEST_SPLITS:
        rows = table[table["split"] == level]
        order, probability, from_alignment = calibration.stated(
            probs[level], alignment[level], settings.min_score, settings.rank_probability, fitted, 1)
        for i in sorted(rng.choice(len(rows), min(per_level, len(rows)), replace=False)):
            fold, true = classes[order[i, 0]], rows["fold"].iat[i]
            band = metrics.band_of(probability[i, :1])[0] if fitted is not None else ""
            mark = "correct" if fold == true else f"true fold {true}"
            print(f"  {rows['id'].iat[i]:9s} {level:17s} -> {fold:7s} p={probability[i, 0]:.2f} {band:6s} "
                  f"{'alignment' if from_alignment[i] else 'combined':9s} ({named.get(fold, '')}) [{mark}]")


# ------------------------------------------------------------------------------ full benchmark


def _baselines(store_path: Path, table: pd.DataFrame, alignment: bool,
               progress: bool) -> tuple[dict[str, dict], dict[str, np.ndarray]]:
    """Mean-embedding logistic regression / kNN and alignment nearest neighbour, per test level.

    Also returns the alignment's class scores on valid and every test level (empty without the
    alignment), for the homology-first rows of the trained models.
    """
    from coevofold.models import baselines

    train = table[table["split"] == "train"]
    train_rows = store.read_rows(store_path, train["id"].tolist())
    models = {
        "mean embedding + logistic regression": baselines.embedding_logistic_regression(),
        "mean embedding + kNN (cosine)": baselines.embedding_knn(),
    }
    out: dict[str, dict] = {}
    for name, model in models.items():
        started = time.perf_counter()
        model.fit(train_rows.mean, train["fold"].to_numpy())
        probs = {level: model.predict_proba(store.read_rows(store_path, table.loc[table["split"] == level, "id"].tolist()).mean)
                 for level in TEST_SPLITS}
        out[name] = metrics.evaluate_table(probs, table, model.classes_)
        print(f"{name}: {time.perf_counter() - started:.0f} s")
    scores: dict[str, np.ndarray] = {}
    if alignment:
        started = time.perf_counter()
        scores = preparation.cached_alignment("benchmark", table, progress)
        out[ALIGNMENT] = metrics.evaluate_table(scores, table, sorted(train["fold"].unique()))
        print(f"alignment nearest neighbour: {time.perf_counter() - started:.0f} s")
    return out, scores


#: Minutes of each step of the default system per SCOP2 protocol on 2 idle cores, for the ETA. Measured
#: (2026-12-02, commit aa1d394: random 14.9 / 8.9 / 3.0, homology-aware 19.7 / 11.1 / 3.1; features 5.4
#: once) with twelve members trained with early stopping; the model step scaled by DeepSF's ratio since
#: (24:07 then, about 5 min with four members on the fixed budget), the proxy's share of the system alike.
SCOP2_STEPS = {MODEL_STEP: 4.0, SYSTEM_STEP: 8.0, SCORES_STEP: 3.0}
#: What the original study reached on SCOP2 (ProtAlbert attention, 1,517 folds, a random split).
STUDY = "The original study (ProtAlbert attention, SCOP2, 1,517 folds) reached 3.82 % validation accuracy after one 11,466 s epoch."


def protocol_tables(preset: BenchmarkPreset) -> dict[str, pd.DataFrame]:
    """``preset``'s table split by each of its protocols, excluded rows dropped (the same rows in
    every protocol: the exclusions do not depend on it)."""
    source, config = tables.load(preset.source), SplitConfig(min_members_per_fold=preset.min_members)
    split = {protocol: PROTOCOLS[protocol](source, config) for protocol in preset.protocols}
    return {protocol: table[table["split"] != "excluded"].reset_index(drop=True) for protocol, table in split.items()}


def _what_is_held_out(table: pd.DataFrame) -> str:
    test = table[table["split"].isin(TEST_SPLITS)]
    shares = ", ".join(f"{metrics.LEVEL_NAMES[level].lower()} level {100 * (test['split'] == level).mean():.0f} %"
                       for level in TEST_SPLITS)
    counts = ", ".join(f"{split} {(table['split'] == split).sum():,}" for split in ("train", "valid", *TEST_SPLITS))
    return (f"{table['fold'].nunique():,} folds, {len(table):,} proteins ({counts}); of the {len(test):,} held out: "
            f"{shares}")


def run_protocols(preset: BenchmarkPreset, out: Path, progress: bool = True) -> dict[str, SystemResults]:
    """The default system (what ``predict`` answers) trained and scored under each of the
    preset's split protocols; writes ``results.json`` and ``results.md`` to ``out``.

    Under the random protocol (the study's) a held-out protein is put at the level training
    leaks to it (:func:`coevofold.data.splits.random_split`), so the pooled column is the study's
    validation accuracy and the level columns say how much of it is homology.
    """
    plm = pretrained.load(None)
    split = protocol_tables(preset)
    everything = next(iter(split.values())).drop(columns="split")
    fold_names = names.fold_names(preset.source)
    started = time.perf_counter()
    store_path = cached_features(preset.name, everything, plm, extraction.FeatureConfig(), progress)
    print(f"features of {len(everything)} proteins ready in {time.perf_counter() - started:.0f} s")
    found: dict[str, SystemResults] = {}
    sections, stored, markdown = [], {}, ""
    for protocol, table in split.items():
        held_out = _what_is_held_out(table)
        print(f"\n# {preset.name}, {protocol} split: {held_out}")
        steps = Steps(f"benchmark {preset.name}, {protocol}", SCOP2_STEPS)
        found[protocol] = result = default_system(f"{preset.name}-{protocol}", table, store_path, out / protocol,
                                                  steps, fold_names, progress)
        seconds = time.perf_counter() - steps.started
        _show_examples(out / protocol, table, result.alignment, result.combined)
        stored[protocol] = {"rows": result.rows, "calibration": result.calibration,
                            "seconds": seconds, "proteins": int(len(table)), "folds": int(table["fold"].nunique())}
        sections.append(f"### {protocol} split: {held_out}\n\n"
                        f"{metrics.results_markdown(result.rows, published=False)}\n"
                        f"{metrics.calibration_markdown(result.calibration)}\n"
                        f"Trained and scored in {seconds / 60:.1f} min (features not included).\n")
        markdown = "\n".join(sections) + f"\n{STUDY}\n"
        metrics.write_results_json(stored, out / RESULTS_JSON)  # after each protocol: an interrupted run keeps it
        write_text(out / RESULTS_MD, markdown)
    print()
    print(markdown)
    return found


def run_benchmark(preset_name: str = "deepsf", out: str | Path = "runs/benchmark", models: tuple[str, ...] = tuple(MODELS),
               alignment: bool = True, progress: bool = True) -> dict[str, dict]:
    """Every model and baseline on a preset; writes ``results.json`` and ``results.md`` to ``out``.

    Baselines run first: they are quick, and their rows are what a model must beat. A preset
    with protocols runs :func:`run_protocols` instead (``models`` and ``alignment`` do not apply).
    """
    preset = BENCHMARKS[preset_name]
    out = Path(out)
    if preset.protocols:
        return {protocol: found.rows for protocol, found in run_protocols(preset, out, progress).items()}
    plm = pretrained.load(None)
    table = benchmark_table(preset)
    config = extraction.FeatureConfig(maps="layers")  # the original study's maps CNN is among the models
    started = time.perf_counter()
    store_path = cached_features(preset.name, table, plm, config, progress)
    print(f"features of {len(table)} proteins ready in {time.perf_counter() - started:.0f} s")
    results, alignment_scores = _baselines(store_path, table, preset.alignment and alignment, progress)
    note = "" if not preset.folds else (
        f"\nPreset '{preset.name}': {preset.folds} folds, at most {preset.per_fold} proteins per fold "
        "and split; a smoke test, not comparable with the published rows.\n")
    if preset.source != "deepsf":
        note += f"\n{STUDY}\n"

    def save() -> str:  # after every model, so an interrupted run keeps what it finished
        metrics.write_results_json(results, out / RESULTS_JSON)
        markdown = metrics.results_markdown(results, published=preset.source == "deepsf") + note
        write_text(out / RESULTS_MD, markdown)
        return markdown

    save()
    for name in models:
        started = time.perf_counter()
        run_dir = out / name
        trainer.train(store_path, table, run_dir,
                       trainer.TrainConfig(model=ModelConfig(name=name), progress=progress,
                                           max_epochs=preset.max_epochs or trainer.TrainConfig.max_epochs),
                       fold_names=names.fold_names(preset.source))
        results[f"coevofold {name}"] = scoring.evaluate_model(run_dir, store_path, table)
        meta = json.loads((run_dir / checkpoint.MODEL_META).read_text())
        seconds = time.perf_counter() - started
        print(f"{name}: {seconds:.0f} s for {meta['epochs']} epochs ({seconds / max(meta['epochs'], 1):.1f} s/epoch "
              f"incl. evaluation), best validation accuracy {100 * meta['best_val_acc']:.1f} %")
        if alignment_scores:
            threshold, hybrid = evaluation.homology_first_results(run_dir, store_path, table, alignment_scores)
            results[f"coevofold {name}, homology transfer where E <= 1e-{threshold:g}"] = hybrid
        save()
    markdown = save()
    print()
    print(markdown)
    return results

