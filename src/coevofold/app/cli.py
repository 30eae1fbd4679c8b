"""The ``coevofold`` command: a thin argparse layer over the Python API.

Each subcommand parses its options, calls one API function and prints. Every option's default is
shown by ``--help`` (ArgumentDefaultsHelpFormatter). A :class:`CoevofoldError` becomes one line
on stderr and exit status 1; argparse's own usage errors exit 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path

from coevofold import __version__
from coevofold.errors import CoevofoldError


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Show defaults and keep the hand-wrapped descriptions; a None default is explained in the help."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


def _add(sub: argparse._SubParsersAction, name: str, func: Callable[[argparse.Namespace], int], doc: str) -> argparse.ArgumentParser:
    # argparse %-formats help strings (for %(default)s), so a literal "95 %" in the one-line
    # summary shown by the parent's --help must be escaped; descriptions are not %-formatted.
    parser = sub.add_parser(name, help=doc.splitlines()[0].replace("%", "%%"), description=doc, formatter_class=_Formatter)
    parser.set_defaults(func=func)
    return parser


@dataclass(frozen=True)
class _Mirror:
    """Options mirrored from a config dataclass: each option's default and type come from the field
    it sets, and :meth:`build` makes the config from the parsed values. ``options``: (field, help[,
    add_argument keywords]); the flag is ``--field-name`` unless the keywords name another
    (``"flag"``)."""

    #: imports and returns the config class (on use: the parser builds fast).
    config_class: Callable[[], type]
    options: tuple[tuple, ...]

    @staticmethod
    def _flag(name: str, extra: tuple) -> str:
        return extra[0].get("flag", f"--{name.replace('_', '-')}") if extra else f"--{name.replace('_', '-')}"

    def add(self, group: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
        config_class = self.config_class()
        defaults, kinds = config_class(), {f.name: str(f.type).split("|")[0].strip() for f in fields(config_class)}
        for name, text, *extra in self.options:
            keywords = {k: v for k, v in (extra[0] if extra else {}).items() if k != "flag"}
            if "choices" not in keywords and kinds[name] in ("int", "float"):
                keywords.setdefault("type", int if kinds[name] == "int" else float)
            group.add_argument(self._flag(name, extra), default=getattr(defaults, name), help=text, **keywords)

    def build(self, args: argparse.Namespace, *more: _Mirror, **values):
        """The config from these options' (and ``more``'s) parsed values, plus ``values``."""
        options = [o for mirror in (self, *more) for o in mirror.options]
        return self.config_class()(**{name: getattr(args, self._flag(name, extra).lstrip("-").replace("-", "_"))
                                      for name, _, *extra in options}, **values)


def _split_class() -> type:
    from coevofold.data.splits import SplitConfig

    return SplitConfig


SPLIT = _Mirror(_split_class, (
    ("seed", "random seed of the split maker", {"flag": "--split-seed"}),
    ("min_members_per_fold", "exclude folds with fewer proteins", {"flag": "--min-members"}),
    ("fold_test_fraction", "share of superfamilies held out as test_fold"),
    ("superfamily_test_fraction", "share of families held out as test_superfamily"),
    ("family_test_fraction", "share of family members held out as test_family"),
    ("valid_fraction", "share of family members held out as valid"),
))


def _add_split_options(parser: argparse.ArgumentParser) -> None:
    SPLIT.add(parser.add_argument_group("split maker (used when the source has no published split)"))


def _load_split(args: argparse.Namespace):
    """Load a source and give it splits: published ones if present, else the split maker's."""
    from coevofold.data import splits, tables

    return splits.with_splits(tables.load(args.source), SPLIT.build(args))


# ----------------------------------------------------------------------------------- data


def cmd_data_summarize(args: argparse.Namespace) -> int:
    from coevofold import plots
    from coevofold.data import splits

    table = _load_split(args)
    print(f"# {args.source}: {len(table)} proteins")
    print(splits.summarize(table).to_string())
    if str(args.source) == "deepsf":
        print("\n# DeepSF/TAPE record counts, found vs published")
        print(splits.check_deepsf_counts(table).to_string())
    out = Path(args.out)
    stem = Path(str(args.source)).stem
    used = table[table["split"] != "excluded"]
    if used.empty:
        reasons = splits.exclusion_reasons(table, SPLIT.build(args))
        why = "; ".join(f"{n} {reason}" for reason, n in reasons.items()) or "excluded by the published split"
        print(f"\nall {len(table)} proteins are excluded ({why}); no plots written")
        return 0
    plots.proteins_per_fold(used, out / f"{stem}_proteins_per_fold.png", title=f"{stem}: proteins per fold")
    plots.length_distribution(used, out / f"{stem}_lengths.png", title=f"{stem}: sequence lengths")
    print(f"\nplots: {out / (stem + '_proteins_per_fold.png')}, {out / (stem + '_lengths.png')}")
    return 0


def cmd_data_split(args: argparse.Namespace) -> int:
    from coevofold.files import atomic_path

    table = _load_split(args)
    with atomic_path(args.out) as tmp:
        table.to_csv(tmp, sep="\t", index=False)
    print(f"wrote {len(table)} rows with splits to {args.out}")
    return 0


def cmd_data_fetch(args: argparse.Namespace) -> int:
    from coevofold.data import fetch

    result = fetch.fetch(args.name, args.dir, args.mirror, progress=not args.quiet)
    if result.written:
        cached = len(fetch.DATASETS[args.name].remotes) - len(result.downloaded)
        how = f"{len(result.downloaded)} file(s) downloaded" + (f", {cached} from the download cache" if cached else "")
    else:
        how = "already fetched: checked against its FETCH.json, nothing downloaded"
    print(f"{args.name}: {result.folder} ({how}): {result.summary}")
    if note := fetch.presets_note(result.folder.parent):
        print(note)
    return 0


def _fetch_help() -> str:
    from coevofold.data.fetch import DATASETS, RECORDED

    names = "\n".join(f"  {d.name}: {d.description}; writes {d.folder}/" for d in DATASETS.values())
    return ("Download a public data set and write it where the presets read it, then `coevofold quickstart` "
            "(deepsf) or any preset works with no other step.\n\n"
            f"NAME:\n{names}\n\n"
            "Files are downloaded once (pooch, with progress bars) into $COEVOFOLD_CACHE/downloads and converted "
            "into DIR/<folder>/, written whole or not at all, with FETCH.json listing each input's URL and sha256 "
            "and each output's sha256 (checked whenever a preset loads it). Hashes: none of these files has a "
            "hash published by a trusted party, so each file's sha256 is recorded at its first download (printed, "
            f"kept in downloads/{RECORDED}) and verified on every later use: other bytes are refused. TAPE's "
            "benchmark is read in its JSON form, never its LMDB form (pickles). Without internet, the error names "
            "the URL and where to save the file by hand. The SCOPe and SCOP2 tables include records that the "
            "project's shared copies withhold for an outside evaluation.")


def _register_data(sub: argparse._SubParsersAction) -> None:
    from coevofold.data.tables import PRESETS

    presets = "; ".join(f"{p.name}: {p.description}" for p in PRESETS.values())
    data_parser = sub.add_parser("data", help="fetch, inspect and split SCOP data sets", formatter_class=_Formatter)
    data_sub = data_parser.add_subparsers(dest="data_command", required=True)
    p = _add(data_sub, "summarize", cmd_data_summarize,
             "Print proteins/folds/superfamilies/families per split and plot fold sizes and lengths.\n\n"
             f"SOURCE is a data file (FASTA with SCOP labels in the headers; a DeepSF, SCOPe or SCOP2 TSV; or a TSV "
             f"with columns id, sequence, fold and optionally class, superfamily, family, split, as coevofold "
             f"loads tables) or a preset: {presets}.")
    p.add_argument("source", metavar="SOURCE")
    p.add_argument("--out", default="runs/data", help="folder for the PNG plots")
    _add_split_options(p)
    p = _add(data_sub, "split", cmd_data_split,
             "Write the table with its split column (published splits, or the split maker's) as TSV.")
    p.add_argument("source", metavar="SOURCE")
    p.add_argument("--out", required=True, help="TSV file to write")
    _add_split_options(p)
    from coevofold.data.fetch import DATASETS, MIRROR_ENV

    p = _add(data_sub, "fetch", cmd_data_fetch, _fetch_help())
    p.add_argument("name", metavar="NAME", choices=list(DATASETS), help=f"one of {', '.join(DATASETS)}")
    p.add_argument("--dir", default=None,
                   help="data folder to write into (default: $COEVOFOLD_DATA, else $COEVOFOLD_CACHE/data, where "
                   "coevofold looks when neither COEVOFOLD_DATA nor a shared/data folder is there)")
    p.add_argument("--mirror", default=None,
                   help=f"base URL holding the files as URL/NAME/<file> instead of the publishers' (default: ${MIRROR_ENV})")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


# ----------------------------------------------------------------------------------- extract


def _feature_class() -> type:
    from coevofold.features.extraction import FeatureConfig

    return FeatureConfig


FEATURES = _Mirror(_feature_class, (
    ("model", "hub id or local folder of an ESM-2 / ProtBert / ProtAlbert model; default: $COEVOFOLD_MODEL, "
     "else facebook/esm2_t6_8M_UR50D (offline copy in ../shared/models used when the hub is out of reach)"),
    ("maps", "attention maps to store: none (embeddings only; 2x faster, fused attention; all the "
     "default system reads), layers (contact map + per-layer APC averages, for maps2d, report and contact plots) "
     "or heads (contact map + every head)", {"choices": ["none", "layers", "heads"]}),
    ("grid", "maps are average-pooled to GRID x GRID"),
    ("embedding_layer", "hidden layer for embeddings (-1 = last)"),
    ("embedding_bins", "per-residue embeddings pooled to BINS segments", {"flag": "--bins"}),
    ("stride", "window step for chains longer than the model window"),
    ("precision", "the pLM's matrix products: float32, or bfloat16 (autocast; the default where the CPU has "
     "AVX-512 BF16 or AMX, float32 elsewhere: 1.47x float32's proteins/s with AVX-512 BF16, embeddings within cosine "
     "0.989 of float32's, the default system's accuracy and calibration within noise of float32's)",
     {"choices": ["float32", "bfloat16"]}),
))


def _add_feature_options(parser: argparse.ArgumentParser) -> None:
    FEATURES.add(parser.add_argument_group("features (stored with the features; a store refuses other values)"))


def _add_device_options(group: argparse._ArgumentGroup, device: str, threads: int | None, what: str,
                        why: str = "") -> None:
    """``--device`` and ``--threads``, worded alike on every command (:mod:`coevofold.devices`)."""
    from coevofold.devices import DEVICE_HELP

    group.add_argument("--device", default=device, help=f"where {what} runs: {DEVICE_HELP}; a GPU that is not "
                       f"there is refused{why}")
    # the former name of --device on extract and predict, kept for existing scripts ('gpu' means cuda)
    group.add_argument("--accelerator", dest="device", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    group.add_argument("--threads", type=int, default=threads, help="CPU threads for torch (default: all cores)")


def _run_class() -> type:
    from coevofold.features.extraction import RunConfig

    return RunConfig


RUN = _Mirror(_run_class, (
    ("max_tokens", "padded tokens per batch"),
    ("max_pairs", "cap on batch x length^2 (attention memory)"),
))
RUN_PROCESSES = _Mirror(_run_class, (
    ("devices", "processes to extract with (GPUs with --device cuda, CPU processes with --device cpu)"),
    ("part_size", "proteins per atomic part file (most work a kill loses)"),
))


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    from coevofold.features.extraction import RunConfig

    d = RunConfig()
    g = parser.add_argument_group("execution (does not change stored values)")
    RUN.add(g)
    _add_device_options(g, d.device, d.threads, "the pLM")
    RUN_PROCESSES.add(g)
    g.add_argument("--quiet", action="store_true", help="no progress bar")


def _run_config(args: argparse.Namespace):
    return RUN.build(args, RUN_PROCESSES, threads=args.threads, device=args.device, progress=not args.quiet)


def cmd_extract(args: argparse.Namespace) -> int:
    from coevofold.features import export, extraction, store

    config = FEATURES.build(args)
    if "contacts" in args.include and config.maps == "none":  # contact maps need the attention maps
        config = replace(config, maps="layers")
    out = extraction.extract(args.fasta, args.out, config, _run_config(args))
    rows = len(store.read_ids(out))
    print(f"{out}: {rows} proteins, {out.stat().st_size / max(rows, 1) / 1024:.1f} KB per protein")
    for kind, path in export.export(out, args.include).items():
        print(f"{path}: {kind}, {path.stat().st_size / max(rows, 1) / 1024:.1f} KB per protein")
    return 0


def cmd_contacts(args: argparse.Namespace) -> int:
    from coevofold.features import contacts, pretrained

    plm = pretrained.load(args.model)
    table = contacts.check_features(args.structures, FEATURES.build(args), plm=plm)
    print(f"long-range (separation >= 24) contact precision, mean over chains; pLM {plm.label}")
    print(table.to_string(float_format="%.3f"))
    return 0


def _register_extract(sub: argparse._SubParsersAction) -> None:
    p = _add(sub, "extract", cmd_extract,
             "Extract co-evolution features (APC-corrected attention maps, embeddings) into an HDF5 store.\n\n"
             "Re-running skips proteins already stored; an interrupted run resumes where it stopped.")
    p.add_argument("fasta", metavar="FASTA", help="FASTA file (labelled or not), data table, or preset name")
    p.add_argument("--out", required=True, help="HDF5 feature store to create or extend")
    p.add_argument("--include", nargs="+", default=[], choices=["mean", "per_tok", "contacts"], metavar="KIND",
                   help="also write, beside the store, one HDF5 file per KIND (OUT.KIND.h5; one dataset per sequence, "
                        "the FASTA id in its 'original_id' attribute, as bio_embeddings writes them): mean (embedding "
                        "layer's mean, float32), per_tok (per-residue embeddings of the residue layer, float16), "
                        "contacts (L x L contact map, float16; implies --maps layers unless --maps heads). "
                        "Default: none")
    _add_feature_options(p)
    _add_run_options(p)

    p = _add(sub, "contacts", cmd_contacts,
             "Check that the features carry real co-evolution signal: top-L, L/2, L/5 long-range contact precision "
             "of the stored contact map on experimental structures, beside attention averages and random.")
    p.add_argument("--structures", default=None,
                   help="folder with PDB/mmCIF files and chains.txt (default: shared/data/structures)")
    _add_feature_options(p)


# ----------------------------------------------------------------------------------- train


def _train_class() -> type:
    from coevofold.training.trainer import TrainConfig

    return TrainConfig


TRAIN = _Mirror(_train_class, (
    ("solver", "lbfgs: linear models fitted to convergence by scikit-learn", {"choices": ["adamw", "lbfgs"]}),
    ("C", "inverse L2 strength for --solver lbfgs"),
    ("seed", "seed for initialisation, shuffling and dropout"),
    ("max_epochs", "epoch budget (with --patience: an upper bound)"),
    ("patience", "early stopping: epochs without val_acc gain, the best epoch kept (default None: all "
                 "--max-epochs epochs, the learning rate decayed to 0 by a cosine, the last epoch kept)"),
    ("batch_size", "proteins per step"),
    ("lr", "AdamW learning rate"),
    ("weight_decay", "AdamW weight decay"),
    ("label_smoothing", "cross-entropy label smoothing"),
    ("class_weight_power", "class weights = count^-power (0: none, 1: full rebalancing)"),
))


def _add_train_options(parser: argparse.ArgumentParser) -> None:
    from coevofold.models.registry import ModelConfig, MODELS
    from coevofold.training.trainer import TrainConfig

    t, m = TrainConfig(), ModelConfig()
    g = parser.add_argument_group("model and optimisation")
    g.add_argument("--model-type", choices=["default", *MODELS], default="layers",
                   help="default: the ensemble quickstart trains (all-layer probe + two MLP seeds + one "
                        "light-attention MLP, superfamily/family heads; the options below do not apply: its "
                        "recipe is fixed, see README); probe: "
                        "all-layer linear probe; layers: MLP on all-layer means; attention: + light attention; "
                        "maps2d: the original study's 2D CNN over the co-evolution maps")
    g.add_argument("--calibrate", action="store_true",
                   help="with --model-type default: also prepare what predict's default system needs, as "
                        "quickstart does: homology transfer (Smith-Waterman search of valid against train; "
                        "threshold chosen on valid) and calibrated probabilities (a proxy ensemble trained first without "
                        "held-out training superfamilies, families and members, and searched on them; the model "
                        "then trains 3 epochs a member from the proxy's weights instead of 12 from scratch)")
    g.add_argument("--levels", default=",".join(m.levels),
                   help="SCOP levels with a head of their own, comma-separated, fold first (e.g. fold,superfamily,family)")
    TRAIN.add(g)
    g = parser.add_argument_group("execution (does not change the model; applies to --model-type default too)")
    _add_device_options(g, t.device, t.threads, "the classifier",
                        "; cpu by default: these small models train in minutes there and runs repeat bit for bit")


def _train_config(args: argparse.Namespace):
    from coevofold.models.registry import ModelConfig

    try:
        model = ModelConfig(name=args.model_type, levels=tuple(args.levels.split(",")))
    except ValueError as exc:
        raise CoevofoldError(f"--levels: {exc}") from None
    return TRAIN.build(args, model=model, threads=args.threads, device=args.device, progress=not args.quiet)


def _fold_names(source: str) -> dict[str, str]:
    from coevofold.data import names

    try:
        return names.fold_names(source)
    except CoevofoldError:
        return {}


def cmd_train(args: argparse.Namespace) -> int:
    from coevofold.training import checkpoint, mixture, recipe, trainer

    table = _load_split(args)
    if args.calibrate and args.model_type != "default":
        raise CoevofoldError("--calibrate prepares the default ensemble: use it with --model-type default")
    if args.model_type == "default":
        members = {name: replace(config, device=args.device, threads=args.threads)
                   for name, config in recipe.default_members(not args.quiet).items()}
        if args.calibrate:  # the proxy first, the model from its weights, then the system on top
            from coevofold.system import preparation

            run_dir = preparation.train_model(args.out, args.store, table, members, _fold_names(args.source))
            preparation.prepare(run_dir, Path(args.store), table, members, Path(args.source).stem, not args.quiet)
        else:
            run_dir = mixture.train_ensemble(args.store, table, args.out, members, fold_names=_fold_names(args.source))
        print(f"model saved in {run_dir} (members in {run_dir / checkpoint.ENSEMBLE_MEMBERS}"
              f"{'; homology transfer and calibration prepared' if args.calibrate else ''})")
        return 0
    run_dir = trainer.train(args.store, table, args.out, _train_config(args), fold_names=_fold_names(args.source))
    print(f"model saved in {run_dir} (learning curves: {run_dir / 'learning_curves.png'})")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from coevofold import metrics
    from coevofold.data.splits import TEST_SPLITS
    from coevofold.system import evaluation, homology, preparation
    from coevofold.training import scoring

    table = _load_split(args)
    scored = scoring.model_scores(args.model_dir, args.store, table, TEST_SPLITS)  # once, for both below
    meta = scored[0]
    results = scoring.evaluate_model(args.model_dir, args.store, table, n_boot=args.bootstrap, scored=scored)
    print(metrics.results_markdown({meta["model"]["name"]: results}))
    alignment = None
    if homology.has_homology(args.model_dir) and not args.no_homology:
        alignment = preparation.cached_alignment(Path(args.source).stem, table, not args.quiet, TEST_SPLITS)
    if alignment is not None and preparation.is_prepared(args.model_dir):  # the combined system, as predict answers
        scored = evaluation.system_scores(args.model_dir, args.store, table, alignment, scored, not args.quiet)
        min_score = homology.read_settings(args.model_dir).min_score
        _, answer = evaluation.homology_first_results(args.model_dir, args.store, table, alignment, scored, min_score)
        print(metrics.results_markdown({f"system (combined; homology transfer where E <= 1e-{min_score:g})": answer}))
    calibrated = evaluation.evaluate_calibration(args.model_dir, args.store, table, alignment, scored)
    print(metrics.calibration_markdown(calibrated))
    print(f"written: {Path(args.model_dir) / 'results.json'}, results.md, predictions.tsv, {metrics.RELIABILITY_PNG}")
    return 0


def cmd_quickstart(args: argparse.Namespace) -> int:
    from coevofold.app import runs

    runs.quickstart(progress=not args.quiet)
    return 0


def cmd_benchmark(args: argparse.Namespace) -> int:
    from coevofold.app import runs

    runs.run_benchmark(args.preset, args.out, tuple(args.models), alignment=not args.skip_alignment,
                         progress=not args.quiet)
    return 0


def _register_train(sub: argparse._SubParsersAction) -> None:
    from coevofold.app.runs import BENCHMARKS
    from coevofold.models.registry import MODELS

    p = _add(sub, "train", cmd_train,
             "Train a fold classifier on extracted features (train split; a fixed epoch budget, valid scored each epoch; --patience: early stopping on valid).\n\n"
             "Writes OUT/model.safetensors + model.json, metrics.csv, learning_curves.png and checkpoints/; "
             "re-running an interrupted run resumes from OUT/checkpoints/last.ckpt.")
    p.add_argument("source", metavar="SOURCE", help="labelled data file or preset (see 'coevofold data summarize -h')")
    p.add_argument("--store", required=True, help="feature store made by 'coevofold extract' from SOURCE")
    p.add_argument("--out", required=True, help="run folder")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_train_options(p)
    _add_split_options(p)

    p = _add(sub, "evaluate", cmd_evaluate,
             "Score a trained model on the test levels: top-1/top-5/macro accuracy with bootstrap 95 % intervals, "
             "and how well its stated top-1 probability matches how often it is right (expected calibration error "
             "over 10 bins per level and pooled, before and after the folder's calibration; reliability.png). "
             "With homology files in MODEL_DIR the calibration is measured on the system predict runs "
             "(alignments of the test proteins are computed once and cached).")
    p.add_argument("model_dir", metavar="MODEL_DIR", help="run folder written by 'coevofold train'")
    p.add_argument("source", metavar="SOURCE", help="labelled data file or preset with test splits")
    p.add_argument("--store", required=True, help="feature store holding SOURCE's test proteins")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the intervals")
    p.add_argument("--no-homology", action="store_true",
                   help="measure calibration on the model alone even when MODEL_DIR has homology files")
    p.add_argument("--quiet", action="store_true", help="no progress bar (the test proteins' alignment search)")
    _add_split_options(p)

    p = _add(sub, "quickstart", cmd_quickstart,
             "The main job: train (once, then cached) the default model on the full DeepSF training set, "
             "report its accuracy on the three test levels beside published methods, show predictions.\n\n"
             "First run: feature extraction of 16,292 domains, training, the system's searches (15.5-18 min on 2 "
             "CPU cores with AVX-512 BF16 or AMX, one line per step with its ETA); later runs reuse all of it from "
             "$COEVOFOLD_CACHE (default ~/.cache/coevofold) and take under 30 s.")
    p.add_argument("--quiet", action="store_true", help="no progress bars")

    p = _add(sub, "benchmark", cmd_benchmark,
             "Train and evaluate every model and baseline on a benchmark and print one table with published anchors.\n\n"
             "scop2 is the original study's task with the default system instead (what predict answers: ensemble, "
             "template search, Smith-Waterman, combiner, calibration), every SCOP2 fold with at least 2 proteins, "
             "under two protocols side by side: 'random' (the study's: 20 % of each fold's proteins held out at "
             "random, 5 % of the rest as valid; each held-out protein is scored at the level its lineage leaks to "
             "training, and the pooled column is the study's validation accuracy) and 'homology-aware' (the split "
             "maker: superfamilies held out for the fold level, families for the superfamily level). OUT/PROTOCOL "
             "holds each model folder; an interrupted run resumes. --models and --skip-alignment do not apply to it.")
    p.add_argument("preset", choices=list(BENCHMARKS),
                   help="deepsf: the published DeepSF/TAPE benchmark; deepsf-ci: a minutes-long subset; scop2: the "
                   "original study's many-fold SCOP2 task (the default system, two protocols; above); binary: its "
                   "2-fold task (split maker's splits)")
    p.add_argument("--out", default="runs/benchmark", help="folder for per-model runs and the results table")
    p.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS), help="neural models to train")
    p.add_argument("--skip-alignment", action="store_true",
                   help="skip the Smith-Waterman nearest-neighbour baseline (~10 min on 2 cores for the full set)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


# ----------------------------------------------------------------------------------- predict


def cmd_predict(args: argparse.Namespace) -> int:
    from coevofold import prediction
    from coevofold.files import write_text

    hits: list | None = [] if args.hits else None
    frame = prediction.predict(args.fasta, args.checkpoint, args.top_k, args.model, _run_config(args), not args.quiet,
                               use_homology=not args.no_homology, hits=hits)
    prediction.write_predictions(frame, args.out, args.format)
    if hits is not None:
        write_text(args.hits, prediction.hits_text(hits[0]))
    # after the write: a refused write stays one line on stderr
    print(f"coevofold: pLM: {frame.attrs['plm']['label']}", file=sys.stderr)
    if frame.attrs.get("note"):
        print(f"coevofold: note: {frame.attrs['note']}", file=sys.stderr)
    if args.out not in (None, "-"):
        print(f"wrote top-{args.top_k} folds for {frame['id'].nunique()} sequences to {args.out}", file=sys.stderr)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from coevofold.app import report

    index = report.write_report(args.run_dir, store_path=args.store, out=args.out)
    print(f"report: {index}")
    return 0


def _register_predict(sub: argparse._SubParsersAction) -> None:
    p = _add(sub, "predict", cmd_predict,
             "Predict the top-k SCOP folds of every sequence in a FASTA file, with their evidence.\n\n"
             "TSV columns: id rank fold probability confidence name source hit identity evalue hit_superfamily "
             "hit_family template template_z query_region template_region (one row per sequence and rank). "
             "Homology first: where the best Smith-Waterman hit among the model's training domains passes the "
             "E-value threshold chosen on the validation split, the alignment's folds are reported "
             "(source=alignment); elsewhere the combiner's (source=combined): a softmax over candidate folds "
             "(conditional logit) of the classifier's probability, the template search (the query's per-residue embeddings "
             "aligned to every training domain; template = the fold's best-aligned domain, template_z its z-score "
             "against the query's own decoys, query_region/template_region the aligned residues) and the "
             "Smith-Waterman E-value, fitted on training rows held out of "
             "a proxy of the model. probability: calibrated on the same held-out rows (cross-fitted) so that it "
             "reads as how often such an answer is right; per sequence the probabilities sum to at most 1. "
             "confidence: the band of the calibrated probability, high (>= 0.9), medium (>= 0.5) or low"
             "; measured precision of the top-1 answer per band on the DeepSF test levels (coevofold quickstart, "
             "2026-12-04): fold level high 0.83, medium 0.47, low 0.17; superfamily level 0.98 / 0.73 / 0.26; family "
             "level 1.00 / 0.92 / 0.54. "
             "A model folder without calibration.json reports the raw model probability (alignment rows: the "
             "validation hit rate of the rank) and no confidence. Without --checkpoint the default model made by "
             "'coevofold quickstart' is used.")
    p.add_argument("fasta", metavar="FASTA", help="protein FASTA (headers need only an id)")
    p.add_argument("--checkpoint", default=None,
                   help="trained model folder (default: $COEVOFOLD_CACHE/models/default, made by 'coevofold quickstart')")
    p.add_argument("--top-k", type=int, default=5, help="folds reported per sequence")
    p.add_argument("--format", choices=["tsv", "json"], default="tsv", help="output format")
    p.add_argument("--no-homology", action="store_true",
                   help="model only: no homology transfer, template search or combiner (all on by default where the "
                   "model folder has them)")
    p.add_argument("--out", default=None, help="output file (default: standard output)")
    p.add_argument("--hits", default=None, metavar="FILE",
                   help="also write the evidence as a tab-separated hit table with a header (default: none). Per "
                        "prediction row (query, rank, fold) up to two rows, by source: smith-waterman, the fold's best "
                        "Smith-Waterman hit among the training domains, and template, its best template by embedding "
                        "alignment. Columns: query rank fold source target (training domain id) target_fold "
                        "target_superfamily target_family identity (identical residues / shorter length; "
                        "smith-waterman only) alignment_length (columns with gaps; smith-waterman only) query_start "
                        "query_end target_start target_end (1-based, inclusive) evalue (as in the predictions) "
                        "bitscore (BLOSUM62, BLAST's gap costs 11/1, lambda 0.267, K 0.041) template_z (template only)")
    p.add_argument("--model", default=None,
                   help="pLM the checkpoint was trained with (default: $COEVOFOLD_MODEL, else facebook/esm2_t6_8M_UR50D)")
    _add_run_options(p)

    p = _add(sub, "report", cmd_report,
             "Write a self-contained HTML report of a trained and evaluated run (PNG figures beside it).")
    p.add_argument("run_dir", metavar="RUN_DIR", help="run folder with model.json, metrics.csv, results.json, predictions.tsv")
    p.add_argument("--store", default=None, help="feature store holding test proteins, for their contact maps")
    p.add_argument("--out", default=None, help="report folder (default: RUN_DIR/report)")


# ----------------------------------------------------------------------------------- serve


def cmd_serve(args: argparse.Namespace) -> int:
    from coevofold.app import serve

    serve.serve(SERVE.build(args, SERVE_LIMITS, use_homology=not args.no_homology, device=args.device,
                            threads=args.threads))
    return 0


def _serve_class() -> type:
    from coevofold.app.serve import ServeConfig

    return ServeConfig


SERVE = _Mirror(_serve_class, (
    ("host", "address to listen on (0.0.0.0 exposes it to the network)"),
    ("port", "port to listen on"),
    ("checkpoint",
     "trained model folder (default: $COEVOFOLD_CACHE/models/default, made by 'coevofold quickstart')"),
    ("model", "pLM the checkpoint was trained with (default: $COEVOFOLD_MODEL, else facebook/esm2_t6_8M_UR50D)"),
))
SERVE_LIMITS = _Mirror(_serve_class, (
    ("top_k", "folds shown per sequence unless the request says"),
    ("max_sequences", "sequences per request"),
    ("max_residues", "residues per sequence"),
    ("max_bytes", "bytes per request body, counted as it arrives (413 past it)"),
    ("max_queue", "requests waiting behind the running one; more get 503 with Retry-After"),
    ("body_timeout", "seconds a client may take to send its request body (408 after)"),
    ("max_pairs", "attention residue pairs per pLM pass: bounds a request's memory (~0.5 KB per pair)"),
))


def _register_serve(sub: argparse._SubParsersAction) -> None:
    from coevofold.app.serve import ServeConfig

    d = ServeConfig()
    p = _add(sub, "serve", cmd_serve,
             "Serve a local web page and JSON API: paste or upload FASTA, get folds with names, evidence and "
             "contact maps.\n\n"
             "The model loads once at start-up. POST /api/predict with {\"fasta\": \"...\", \"top_k\": 5} returns what "
             "'coevofold predict --format json' writes; every refusal is a 4xx JSON {\"error\": ...} (503 with Retry-After "
             "when --max-queue requests already wait). Requests run one at a time. Binds to 127.0.0.1 (this machine "
             "only) unless --host says otherwise.")
    SERVE.add(p)
    p.add_argument("--no-homology", action="store_true", help="model only: no homology transfer")
    SERVE_LIMITS.add(p)
    _add_device_options(p.add_argument_group("execution"), d.device, d.threads, "the pLM")


# ----------------------------------------------------------------------------------- main

_REGISTRARS: list[Callable[[argparse._SubParsersAction], None]] = [
    _register_data, _register_extract, _register_train, _register_predict, _register_serve]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="coevofold",
        description="Predict the SCOP fold of proteins from sequence, using co-evolution signal "
        "in protein language model attention.",
        formatter_class=_Formatter,
    )
    parser.add_argument("--version", action="version", version=f"coevofold {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for register in _REGISTRARS:
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except CoevofoldError as exc:
        print(f"coevofold: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("coevofold: interrupted; finished work is kept, run the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
