"""The ``coevofold`` command: a thin argparse layer over the Python API.

Each subcommand parses its options, calls one API function and prints. Every option's default is
shown by ``--help`` (ArgumentDefaultsHelpFormatter). A :class:`CoevofoldError` becomes one line
on stderr and exit status 1; argparse's own usage errors exit 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from coevofold import __version__
from coevofold.errors import CoevofoldError


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Show defaults and keep the hand-wrapped descriptions."""


def _add(sub: argparse._SubParsersAction, name: str, func: Callable[[argparse.Namespace], int], doc: str) -> argparse.ArgumentParser:
    parser = sub.add_parser(name, help=doc.splitlines()[0], description=doc, formatter_class=_Formatter)
    parser.set_defaults(func=func)
    return parser


def _add_split_options(parser: argparse.ArgumentParser) -> None:
    from coevofold.splits import SplitConfig

    d = SplitConfig()
    g = parser.add_argument_group("split maker (used when the source has no published split)")
    g.add_argument("--seed", type=int, default=d.seed, help="random seed of the split maker")
    g.add_argument("--min-members", type=int, default=d.min_members_per_fold, help="exclude folds with fewer proteins")
    g.add_argument("--fold-test-fraction", type=float, default=d.fold_test_fraction, help="share of superfamilies held out as test_fold")
    g.add_argument("--superfamily-test-fraction", type=float, default=d.superfamily_test_fraction, help="share of families held out as test_superfamily")
    g.add_argument("--family-test-fraction", type=float, default=d.family_test_fraction, help="share of family members held out as test_family")
    g.add_argument("--valid-fraction", type=float, default=d.valid_fraction, help="share of family members held out as valid")


def _split_config(args: argparse.Namespace):
    from coevofold.splits import SplitConfig

    return SplitConfig(
        seed=args.seed,
        min_members_per_fold=args.min_members,
        fold_test_fraction=args.fold_test_fraction,
        superfamily_test_fraction=args.superfamily_test_fraction,
        family_test_fraction=args.family_test_fraction,
        valid_fraction=args.valid_fraction,
    )


def _load_split(args: argparse.Namespace):
    """Load a source and give it splits: published ones if present, else the split maker's."""
    from coevofold import data, splits

    table = data.load(args.source)
    if table["split"].isna().all() and table["fold"].notna().any():
        table = splits.make_splits(table, _split_config(args))
    elif table["split"].notna().any():
        splits.check_no_leakage(table)
    return table


# ----------------------------------------------------------------------------------- data


def cmd_data_summarize(args: argparse.Namespace) -> int:
    from coevofold import plots, splits

    table = _load_split(args)
    print(f"# {args.source}: {len(table)} proteins")
    print(splits.summarize(table).to_string())
    if str(args.source) == "deepsf":
        print("\n# DeepSF/TAPE record counts, found vs published")
        print(splits.check_deepsf_counts(table).to_string())
    out = Path(args.out)
    stem = Path(str(args.source)).stem
    used = table[table["split"] != "excluded"]
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


def _register_data(sub: argparse._SubParsersAction) -> None:
    from coevofold.data import PRESETS

    presets = "; ".join(f"{p.name}: {p.description}" for p in PRESETS.values())
    data_parser = sub.add_parser("data", help="inspect and split SCOP data sets", formatter_class=_Formatter)
    data_sub = data_parser.add_subparsers(dest="data_command", required=True)
    p = _add(data_sub, "summarize", cmd_data_summarize,
             "Print proteins/folds/superfamilies/families per split and plot fold sizes and lengths.\n\n"
             f"SOURCE is a data file (FASTA, DeepSF/SCOPe/SCOP2 TSV) or a preset: {presets}.")
    p.add_argument("source", metavar="SOURCE")
    p.add_argument("--out", default="runs/data", help="folder for the PNG plots")
    _add_split_options(p)
    p = _add(data_sub, "split", cmd_data_split,
             "Write the table with its split column (published splits, or the split maker's) as TSV.")
    p.add_argument("source", metavar="SOURCE")
    p.add_argument("--out", required=True, help="TSV file to write")
    _add_split_options(p)


# ----------------------------------------------------------------------------------- extract


def _add_feature_options(parser: argparse.ArgumentParser) -> None:
    from coevofold.features import FeatureConfig

    d = FeatureConfig()
    g = parser.add_argument_group("features (stored with the features; a store refuses other values)")
    g.add_argument("--model", default=d.model,
                   help="hub id or local folder of an ESM-2 / ProtBert / ProtAlbert model; default: $COEVOFOLD_MODEL, "
                   "else facebook/esm2_t6_8M_UR50D (offline copy in ../shared/models used when the hub is out of reach)")
    g.add_argument("--maps", choices=["layers", "heads"], default=d.maps,
                   help="map channels after the contact map: per-layer head average, or every head")
    g.add_argument("--grid", type=int, default=d.grid, help="maps are average-pooled to GRID x GRID")
    g.add_argument("--embedding-layer", type=int, default=d.embedding_layer, help="hidden layer for embeddings (-1 = last)")
    g.add_argument("--bins", type=int, default=d.embedding_bins, help="per-residue embeddings pooled to BINS segments")
    g.add_argument("--stride", type=int, default=d.stride, help="window step for chains longer than the model window")


def _feature_config(args: argparse.Namespace):
    from coevofold.features import FeatureConfig

    return FeatureConfig(model=args.model, maps=args.maps, grid=args.grid, embedding_layer=args.embedding_layer,
                         embedding_bins=args.bins, stride=args.stride)


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    from coevofold.features import RunConfig

    d = RunConfig()
    g = parser.add_argument_group("execution (does not change stored values)")
    g.add_argument("--max-tokens", type=int, default=d.max_tokens, help="padded tokens per batch")
    g.add_argument("--max-pairs", type=int, default=d.max_pairs, help="cap on batch x length^2 (attention memory)")
    g.add_argument("--threads", type=int, default=d.threads, help="CPU threads (default: all cores)")
    g.add_argument("--accelerator", default=d.accelerator, help="Lightning accelerator: cpu, gpu, auto")
    g.add_argument("--devices", type=int, default=d.devices, help="devices (processes) to extract with")
    g.add_argument("--part-size", type=int, default=d.part_size, help="proteins per atomic part file (most work a kill loses)")
    g.add_argument("--quiet", action="store_true", help="no progress bar")


def _run_config(args: argparse.Namespace):
    from coevofold.features import RunConfig

    return RunConfig(max_tokens=args.max_tokens, max_pairs=args.max_pairs, threads=args.threads,
                     accelerator=args.accelerator, devices=args.devices, part_size=args.part_size,
                     progress=not args.quiet)


def cmd_extract(args: argparse.Namespace) -> int:
    from coevofold import features, store

    out = features.extract(args.fasta, args.out, _feature_config(args), _run_config(args))
    rows = len(store.read_ids(out))
    print(f"{out}: {rows} proteins, {out.stat().st_size / max(rows, 1) / 1024:.1f} KB per protein")
    return 0


def _register_extract(sub: argparse._SubParsersAction) -> None:
    p = _add(sub, "extract", cmd_extract,
             "Extract co-evolution features (APC-corrected attention maps, embeddings) into an HDF5 store.\n\n"
             "Re-running skips proteins already stored; an interrupted run resumes where it stopped.")
    p.add_argument("fasta", metavar="FASTA", help="FASTA file (labelled or not), data table, or preset name")
    p.add_argument("--out", required=True, help="HDF5 feature store to create or extend")
    _add_feature_options(p)
    _add_run_options(p)


# ----------------------------------------------------------------------------------- main

_REGISTRARS: list[Callable[[argparse._SubParsersAction], None]] = [_register_data, _register_extract]


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
