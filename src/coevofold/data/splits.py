"""Homology-aware train/test splits and the leakage check that guards every benchmark.

A fold classifier is only interesting on proteins whose homologues it has not seen. The DeepSF
three-level design tests that at three depths, and :func:`make_splits` reproduces it for any
SCOP-labelled table:

* ``test_fold``: whole superfamilies held out; their fold is still in training (the remote case);
* ``test_superfamily``: whole families held out; their superfamily is in training;
* ``test_family``: members of families that also have members in training (the easy case);
* ``valid``: like ``test_family``, for early stopping.

:func:`check_no_leakage` fails loudly if any held-out unit reaches training.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from coevofold.data.tables import DEEPSF_PUBLISHED_COUNTS, DEEPSF_SPLITS
from coevofold.errors import CoevofoldError, LeakageError

TEST_SPLITS = ("test_fold", "test_superfamily", "test_family")
#: Label level a test split holds out, and the level that must still be seen in training.
_HELD_OUT = {
    "test_fold": ("superfamily", "fold"),
    "test_superfamily": ("family", "superfamily"),
}


@dataclass(frozen=True)
class SplitConfig:
    """How :func:`make_splits` carves a labelled table.

    Fractions are per unit and use stochastic rounding with the seed, so small folds still
    contribute test proteins on average; a unit is never emptied of its last training member.
    """

    seed: int = 0
    #: folds with fewer proteins are excluded: too few to both train on and hold out.
    min_members_per_fold: int = 5
    #: share of superfamilies held out as ``test_fold`` (in folds with >= 2 superfamilies).
    fold_test_fraction: float = 0.1
    #: share of families held out as ``test_superfamily`` (in superfamilies with >= 2 families).
    superfamily_test_fraction: float = 0.1
    #: share of members held out as ``test_family`` (in families with >= 2 members).
    family_test_fraction: float = 0.1
    #: share of remaining members held out as ``valid`` (in families with >= 2 members).
    valid_fraction: float = 0.05
    #: superfamilies and families with more proteins than this are never held out whole (None:
    #: any size); keeps a few large units from making up most of a test level.
    max_unit_size: int | None = None
    #: share of each fold's proteins :func:`random_split` holds out (an 80/20 split, the common
    #: choice; the original study's own ratio is not recorded).
    random_test_fraction: float = 0.2


def _hold_out(units: list, fraction: float, rng: np.random.Generator, total: int | None = None) -> list:
    """Pick about ``fraction`` of ``total`` units among ``units`` (stochastic rounding).

    ``total`` counts the parent's units including those that may not be held out; at least one
    of them always stays behind for training.
    """
    total = len(units) if total is None else total
    if total < 2 or fraction <= 0 or not units:
        return []
    k = min(int(np.floor(fraction * total + rng.random())), total - 1, len(units))
    order = rng.permutation(len(units))
    return [units[i] for i in order[:k]]


def _straddling(table: pd.DataFrame, unit: str, parent: str) -> set:
    """Units that occur under more than one parent."""
    parents = table.groupby(unit)[parent].nunique()
    return set(parents[parents > 1].index)


def _exclusions(table: pd.DataFrame, config: SplitConfig) -> pd.DataFrame:
    """One boolean column per reason :func:`make_splits` excludes a row (a row may have several)."""
    labelled = table[["fold", "superfamily", "family"]].notna().all(axis=1)
    fold_size = table.groupby("fold")["id"].transform("size")
    return pd.DataFrame({
        "incomplete SCOP label": ~labelled,
        f"fold with fewer than {config.min_members_per_fold} proteins (--min-members)":
            fold_size.fillna(0) < config.min_members_per_fold,
        "duplicate of an earlier sequence": table["sequence"].duplicated(),
    }, index=table.index)


def exclusion_reasons(table: pd.DataFrame, config: SplitConfig | None = None) -> dict[str, int]:
    """How many rows the split maker excludes for each reason (only reasons that occur).

    So that a summary of a set where everything is excluded can say why instead of plotting
    nothing.
    """
    counts = _exclusions(table, config or SplitConfig()).sum()
    return {reason: int(n) for reason, n in counts.items() if n}


def make_splits(table: pd.DataFrame, config: SplitConfig | None = None) -> pd.DataFrame:
    """Return a copy of ``table`` with ``split`` set by the three-level design.

    Rows without a complete SCOP label, in folds below ``min_members_per_fold``, or whose exact
    sequence appeared earlier in the table get ``split = "excluded"``; identical sequences in two
    splits would be leakage by another name.
    """
    config = config or SplitConfig()
    rng = np.random.default_rng(config.seed)
    table = table.copy()
    keep = ~_exclusions(table, config).any(axis=1)
    table["split"] = np.where(keep, "train", "excluded")
    work = table[keep]

    def assign(index: pd.Index, split: str) -> None:
        table.loc[index, "split"] = split

    def small(members: pd.Series) -> bool:
        return config.max_unit_size is None or int(members.sum()) <= config.max_unit_size

    # A unit filed under two parents (SCOP2 has a few superfamilies in two folds) cannot be held
    # out cleanly, so it always stays in training.
    straddling_sf = _straddling(work, "superfamily", "fold")
    straddling_fam = _straddling(work, "family", "superfamily")
    # Sorted unit lists make the result independent of row order for a given seed.
    for _, fold_rows in sorted(work.groupby("fold"), key=lambda kv: kv[0]):
        superfamilies = sorted(set(fold_rows["superfamily"]))
        candidates = [sf for sf in superfamilies if sf not in straddling_sf and small(fold_rows["superfamily"] == sf)]
        for sf in _hold_out(candidates, config.fold_test_fraction, rng, len(superfamilies)):
            assign(fold_rows.index[fold_rows["superfamily"] == sf], "test_fold")
    work = table[table["split"] == "train"]
    for _, sf_rows in sorted(work.groupby(["fold", "superfamily"]), key=lambda kv: kv[0]):
        families = sorted(set(sf_rows["family"]))
        candidates = [fam for fam in families if fam not in straddling_fam and small(sf_rows["family"] == fam)]
        for fam in _hold_out(candidates, config.superfamily_test_fraction, rng, len(families)):
            assign(sf_rows.index[sf_rows["family"] == fam], "test_superfamily")
    for split, fraction in (("test_family", config.family_test_fraction), ("valid", config.valid_fraction)):
        work = table[table["split"] == "train"]
        for _, fam_rows in sorted(work.groupby("family"), key=lambda kv: kv[0]):
            members = sorted(fam_rows.index)
            assign(pd.Index(_hold_out(members, fraction, rng)), split)
    check_no_leakage(table)
    return table



def random_split(table: pd.DataFrame, config: SplitConfig | None = None) -> pd.DataFrame:
    """The original study's protocol: proteins held out at random, whatever their homologues.

    Per fold, about ``random_test_fraction`` of its proteins are held out and about
    ``valid_fraction`` of the rest become ``valid`` (stochastic rounding; a fold always keeps a
    training member), after :func:`make_splits`' exclusions. Each held-out protein is then
    named by what training still holds of its lineage, which is what a random split leaks:
    ``test_fold`` when no protein of its superfamily is in training, ``test_superfamily`` when
    its superfamily is but its family is not, ``test_family`` when its family is. The three
    together are the study's "validation accuracy"; the split of them says how much of it is
    homology. The unit fractions of ``config`` are not used.
    """
    config = config or SplitConfig()
    rng = np.random.default_rng(config.seed)
    table = table.copy()
    keep = ~_exclusions(table, config).any(axis=1)
    table["split"] = np.where(keep, "train", "excluded")
    held: list = []
    for _, fold_rows in sorted(table[keep].groupby("fold"), key=lambda kv: kv[0]):
        members = sorted(fold_rows.index)
        out = set(_hold_out(members, config.random_test_fraction, rng))
        table.loc[_hold_out([i for i in members if i not in out], config.valid_fraction, rng), "split"] = "valid"
        held += sorted(out)
    train = table[(table["split"] == "train") & ~table.index.isin(held)]
    rows = table.loc[held]
    table.loc[held, "split"] = np.select(
        [~rows["superfamily"].isin(set(train["superfamily"])), ~rows["family"].isin(set(train["family"]))],
        ["test_fold", "test_superfamily"], "test_family")
    check_no_leakage(table)
    return table


#: The split protocols ``coevofold benchmark scop2`` sets side by side.
PROTOCOLS = {"random": random_split, "homology-aware": make_splits}


#: Splits :func:`calibration_split` carves from training, named after the test level each imitates.
CALIBRATION_SPLITS = ("calibration_fold", "calibration_superfamily", "calibration_family")
#: What calibration holds out. Units of at most 10 proteins, as in DeepSF's test levels (its
#: test_fold has 360 superfamilies of ~2 proteins each; held out at any size, two large DeepSF
#: training superfamilies made up half of the fold-like rows): half of such superfamilies give
#: ~730 fold-like proteins over 156 superfamilies, 30 % of such families ~1,100 superfamily-like
#: ones, 5 % of members ~460 family-like ones; the proxy keeps 81 % of training.
CALIBRATION_SPLIT = SplitConfig(seed=1, fold_test_fraction=0.5, superfamily_test_fraction=0.3,
                                family_test_fraction=0.05, valid_fraction=0.0, max_unit_size=10)


def calibration_split(table: pd.DataFrame, config: SplitConfig = CALIBRATION_SPLIT) -> pd.DataFrame:
    """``table`` with part of its ``train`` rows held out as :data:`CALIBRATION_SPLITS`.

    :func:`make_splits`' three-level design applied to the training rows alone: whole
    superfamilies (``calibration_fold``), whole families (``calibration_superfamily``) and
    family members (``calibration_family``), so a model trained on the rest meets proteins as
    remote as each test level's. Rows the split maker would exclude (small folds, duplicates)
    stay in training, which keeps every fold a class. Other splits are untouched.
    """
    train = table["split"] == "train"
    carved = make_splits(table.loc[train].drop(columns="split"), config)["split"]
    renamed = carved.map(dict(zip(TEST_SPLITS, CALIBRATION_SPLITS))).fillna("train")
    table = table.copy()
    table.loc[train, "split"] = renamed
    return table


def with_splits(table: pd.DataFrame, config: SplitConfig | None = None) -> pd.DataFrame:
    """The rule every command follows: use the table's published split, else make one.

    A table with a ``split`` column is checked for leakage (:func:`check_no_leakage`) and
    returned as it is; a labelled table without one gets :func:`make_splits`' split. Rows the
    split maker excludes stay in the table with ``split = "excluded"`` (``data summarize``
    counts them); every consumer reads only the train / valid / test splits, and the benchmark
    drops them before extracting features. A table without labels is returned unchanged.
    """
    if table["split"].isna().all() and table["fold"].notna().any():
        return make_splits(table, config)
    if table["split"].notna().any():
        check_no_leakage(table)
    return table


def check_no_leakage(table: pd.DataFrame) -> None:
    """Raise :class:`LeakageError` if a held-out unit or sequence is also in training.

    Checks, for whatever test splits are present: ``test_fold`` superfamilies and
    ``test_superfamily`` families never occur in training, while their fold / superfamily does
    (else the level is untestable); every test fold is a training fold (a classifier cannot name
    a fold it never saw); no sequence is shared between training and any other split. Rows with
    a missing label at a level are skipped at that level.
    """
    train = table[table["split"] == "train"]
    train_sets = {level: set(train[level].dropna()) for level in ("fold", "superfamily", "family")}
    train_seqs = set(train["sequence"])
    for split in (*TEST_SPLITS, "valid"):
        rows = table[table["split"] == split]
        if rows.empty:
            continue
        if split in _HELD_OUT:
            held, seen = _HELD_OUT[split]
            leaked = sorted(set(rows[held].dropna()) & train_sets[held])
            if leaked:
                raise LeakageError(
                    f"{split}: {len(leaked)} held-out {held}(s) also in train, e.g. {leaked[0]}"
                )
            unseen = sorted(set(rows[seen].dropna()) - train_sets[seen])
            if unseen:
                raise LeakageError(f"{split}: {seen} {unseen[0]} has no training member")
        unseen_folds = sorted(set(rows["fold"].dropna()) - train_sets["fold"])
        if unseen_folds:
            raise LeakageError(f"{split}: fold {unseen_folds[0]} has no training member")
        shared = rows["sequence"].isin(train_seqs)
        if shared.any():
            raise LeakageError(
                f"{split}: record '{rows.loc[shared.idxmax(), 'id']}' has the same sequence as a training record"
            )


def summarize(table: pd.DataFrame) -> pd.DataFrame:
    """Proteins, folds, superfamilies and families per split, in the benchmark's split order."""
    splits = table["split"].fillna("unsplit")
    summary = table.assign(split=splits).groupby("split").agg(
        proteins=("id", "size"),
        folds=("fold", "nunique"),
        superfamilies=("superfamily", "nunique"),
        families=("family", "nunique"),
    )
    order = [s for s in (*DEEPSF_SPLITS, "excluded", "unsplit") if s in summary.index]
    summary = summary.loc[order + [s for s in summary.index if s not in order]]
    summary.loc["total"] = [len(table), table["fold"].nunique(), table["superfamily"].nunique(), table["family"].nunique()]
    return summary


def check_deepsf_counts(table: pd.DataFrame) -> pd.DataFrame:
    """Found vs published record counts of the DeepSF/TAPE splits; raises if any differs."""
    found = table["split"].value_counts()
    report = pd.DataFrame(
        {
            "published": pd.Series(DEEPSF_PUBLISHED_COUNTS),
            "found": pd.Series({s: int(found.get(s, 0)) for s in DEEPSF_PUBLISHED_COUNTS}),
        }
    )
    bad = report[report["published"] != report["found"]]
    if not bad.empty:
        split = bad.index[0]
        raise CoevofoldError(
            f"DeepSF split '{split}': found {bad.loc[split, 'found']} records, published {bad.loc[split, 'published']}"
        )
    return report
