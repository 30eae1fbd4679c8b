"""Splits: the published DeepSF counts, the split maker's homology guarantees, the leakage check."""

from __future__ import annotations

import pandas as pd
import pytest

from coevofold.app.cli import main
from coevofold.data import splits, tables
from coevofold.errors import LeakageError


@pytest.fixture(scope="module")
def deepsf():
    return tables.load("deepsf")


def test_deepsf_counts_match_published(deepsf):
    report = splits.check_deepsf_counts(deepsf)
    assert report["found"].to_dict() == tables.DEEPSF_PUBLISHED_COUNTS
    assert deepsf.loc[deepsf["split"] == "train", "fold"].nunique() == 1195


def test_deepsf_has_no_leakage(deepsf):
    splits.check_no_leakage(deepsf)


@pytest.mark.parametrize("source", ["scop2", "astral20"])
def test_split_maker_holds_out_whole_units(source):
    table = splits.make_splits(tables.load(source), splits.SplitConfig(seed=3))
    train = table[table["split"] == "train"]
    fold_test = table[table["split"] == "test_fold"]
    sf_test = table[table["split"] == "test_superfamily"]
    fam_test = table[table["split"] == "test_family"]
    assert len(fold_test) and len(sf_test) and len(fam_test)
    assert not set(fold_test["superfamily"]) & set(train["superfamily"])
    assert set(fold_test["fold"]) <= set(train["fold"])
    assert not set(sf_test["family"]) & set(train["family"])
    assert set(sf_test["superfamily"]) <= set(train["superfamily"])
    assert set(fam_test["family"]) <= set(train["family"])
    assert not set(fam_test["sequence"]) & set(train["sequence"])
    used = table[table["split"] != "excluded"]
    assert used.groupby("fold").size().min() >= splits.SplitConfig().min_members_per_fold


def test_split_maker_is_deterministic_per_seed():
    table = tables.load("binary")
    a = splits.make_splits(table, splits.SplitConfig(seed=1))["split"]
    b = splits.make_splits(table, splits.SplitConfig(seed=1))["split"]
    c = splits.make_splits(table, splits.SplitConfig(seed=2))["split"]
    assert a.equals(b) and not a.equals(c)


def test_binary_preset_has_two_folds():
    table = tables.load("binary")
    assert sorted(table["fold"].unique()) == ["2000014", "2000051"]


def _toy() -> pd.DataFrame:
    rows = [
        ("p1", "AAAA", "a.1", "a.1.1", "a.1.1.1", "train"),
        ("p2", "CCCC", "a.1", "a.1.1", "a.1.1.2", "train"),
        ("p3", "DDDD", "a.1", "a.1.2", "a.1.2.1", "test_fold"),
    ]
    return pd.DataFrame(rows, columns=["id", "sequence", "fold", "superfamily", "family", "split"])


def test_leakage_check_fails_loudly():
    table = _toy()
    splits.check_no_leakage(table)
    leaked = table.copy()
    leaked.loc[2, "superfamily"] = "a.1.1"  # held-out superfamily now in train
    with pytest.raises(LeakageError, match="test_fold: 1 held-out superfamily"):
        splits.check_no_leakage(leaked)
    same_seq = table.copy()
    same_seq.loc[2, "sequence"] = "AAAA"
    with pytest.raises(LeakageError, match="record 'p3' has the same sequence"):
        splits.check_no_leakage(same_seq)
    unseen = table.copy()
    unseen.loc[2, "fold"] = "b.1"
    with pytest.raises(LeakageError, match="fold b.1 has no training member"):
        splits.check_no_leakage(unseen)


def test_summarize_cli_prints_counts_and_writes_plots(tmp_path, capsys):
    assert main(["data", "summarize", "deepsf", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "12312" in out and "test_superfamily" in out and "published" in out
    for name in ("deepsf_proteins_per_fold.png", "deepsf_lengths.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"


def _lineages() -> pd.DataFrame:
    """Two folds by hand: a.1 with superfamilies a.1.1 (families of 3 and 1) and a.1.2 (one
    protein); b.1 with one family of 2. Sequences differ, so nothing is excluded as a duplicate."""
    rows = [("p1", "a.1", "a.1.1", "a.1.1.1"), ("p2", "a.1", "a.1.1", "a.1.1.1"), ("p3", "a.1", "a.1.1", "a.1.1.1"),
            ("p4", "a.1", "a.1.1", "a.1.1.2"), ("p5", "a.1", "a.1.2", "a.1.2.1"),
            ("q1", "b.1", "b.1.1", "b.1.1.1"), ("q2", "b.1", "b.1.1", "b.1.1.1")]
    return pd.DataFrame([(i, "ACDEFGHIK"[: 2 + n], f, sf, fam) for n, (i, f, sf, fam) in enumerate(rows)],
                        columns=["id", "sequence", "fold", "superfamily", "family"]).assign(split=None)


def test_random_split_names_each_held_out_protein_by_what_training_leaks():
    """Hold everything out that may be (fraction 1: all but one member per fold): p5's superfamily
    and p4's family have no other member, so whichever of them leaves training is remote, while a
    held-out p1-p3 shares its family with the one left behind."""
    config = splits.SplitConfig(min_members_per_fold=2, random_test_fraction=1.0, valid_fraction=0.0)
    table = splits.random_split(_lineages(), config).set_index("id")
    assert (table["split"] == "train").groupby(table["fold"]).sum().to_dict() == {"a.1": 1, "b.1": 1}
    train = table[table["split"] == "train"]
    for pid, row in table[table["split"] != "train"].iterrows():
        expected = ("test_fold" if row["superfamily"] not in set(train["superfamily"]) else
                    "test_superfamily" if row["family"] not in set(train["family"]) else "test_family")
        assert row["split"] == expected, pid
    assert table.loc[["q1", "q2"], "split"].tolist().count("test_family") == 1  # b.1's one family: one left behind


def test_random_split_on_scop2_holds_out_a_fifth_per_fold_and_keeps_every_fold():
    source = tables.load("scop2")
    config = splits.SplitConfig(min_members_per_fold=2)
    table = splits.random_split(source, config)
    used = table[table["split"] != "excluded"]
    assert (table["split"] == "excluded").equals(splits.make_splits(source, config)["split"] == "excluded")
    held = used["split"].isin(splits.TEST_SPLITS)
    assert 0.18 < held.mean() < 0.22  # stochastic rounding per fold, 20 % on average
    assert set(used["fold"]) == set(used.loc[used["split"] == "train", "fold"])
    assert (used.loc[held, "split"] == "test_family").mean() > 0.5  # most of a random split's test is family-level
    assert splits.random_split(source, config)["split"].equals(table["split"])
    assert not splits.random_split(source, splits.SplitConfig(min_members_per_fold=2, seed=1))["split"].equals(table["split"])
