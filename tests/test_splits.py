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
