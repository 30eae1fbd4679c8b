"""SCOP 1.75 fold names borrowed from SCOP2: the matching rules on hand-made domains, and the
coverage of the shipped table on the real data."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from coevofold.data import names, tables
from coevofold.data.names import Domain, fold_name, match_folds, resolve, scop_sid_domain


def test_sid_parsing():
    assert scop_sid_domain("d1v4wb_", "a.1", "MK") == Domain("a.1", "1v4w", "B", True, "MK", "d1v4wb_")
    assert scop_sid_domain("d1abc_2", "a.1", "MK").chain == "A"  # chain-less entry: SCOP2 says A
    assert scop_sid_domain("d1abca2", "a.1", "MK").whole_chain is False
    assert scop_sid_domain("d1abc.1", "a.1", "MK") is None  # several chains: nothing to match
    assert scop_sid_domain("8094330", "a.1", "MK") is None


def test_matching_rules_and_majority():
    scop2 = [
        Domain("2000002", "1abc", "A", False, "AAAAKKKK", "s1"),  # region of a whole-chain domain
        Domain("2000009", "1abc", "B", False, "WWWW", "s2"),     # other chain: no vote
        Domain("2000002", "2xyz", "A", False, "CCCCDDDD", "s3"),  # found by identical sequence
        Domain("2000005", "3pqr", "A", False, "EEEE", "s4"),     # contained in the 1.75 domain
        Domain("2000006", "3pqr", "A", False, "GGGG", "s5"),     # same chain, other region: no vote
    ]
    scop175 = [
        Domain("a.1", "1abc", "A", True, "MAAAAKKKKLL", "d1abca_"),
        Domain("a.1", "9zzz", "A", False, "CCCCDDDD", "d9zzza1"),
        Domain("a.1", "9zzz", "A", False, "CCCCDDDD", "d9zzza2"),  # same chain again: counted once
        Domain("b.2", "3pqr", "A", False, "QEEEEQ", "d3pqra1"),
    ]
    votes = match_folds(scop175, scop2)
    assert votes == {"a.1": Counter({"2000002": 2}), "b.2": Counter({"2000005": 1})}
    table = resolve(votes | {"c.3": Counter({"2000007": 2, "2000008": 3})}, ["a.1", "b.2", "c.3", "d.4"],
                    {"2000002": "Globin-like", "2000005": "Five", "2000008": "Eight"})
    assert table.to_dict("records") == [
        {"fold": "a.1", "scop2_fold": "2000002", "name": "Globin-like", "chains": 2, "votes": 2, "candidates": "2000002:2"},
        {"fold": "b.2", "scop2_fold": "2000005", "name": "Five", "chains": 1, "votes": 1, "candidates": "2000005:1"},
        {"fold": "c.3", "scop2_fold": "2000008", "name": "Eight", "chains": 3, "votes": 5,
         "candidates": "2000008:3;2000007:2"},
        {"fold": "d.4", "scop2_fold": "", "name": "", "chains": 0, "votes": 0, "candidates": ""},
    ]


def test_unnamed_fold_said_plainly(monkeypatch):
    monkeypatch.setattr(names, "scop175_names", lambda: {"a.1": "Globin-like"})
    assert fold_name("a.1") == "Globin-like"
    assert fold_name("a.80") == "fold a.80, name not in SCOP2"
    assert fold_name("2000031", {"2000031": "TIM beta/alpha-barrel"}) == "TIM beta/alpha-barrel"


def test_shipped_table_is_what_the_shared_data_give(tmp_path: Path):
    """Regenerating from ../shared reproduces the shipped file; coverage as the README states."""
    shipped = pd.read_csv(names.SHIPPED, sep="\t", dtype=str, keep_default_na=False)
    rebuilt = names.write_shipped(out=tmp_path / "names.tsv")
    assert pd.read_csv(tmp_path / "names.tsv", sep="\t", dtype=str, keep_default_na=False).equals(shipped)
    assert set(shipped["fold"]) == set(tables.load("deepsf")["fold"])
    cover = names.coverage(rebuilt)
    assert cover["folds"] == 1195 and cover["named"] == 944
    assert fold_name("a.1") == "Globin-like" and fold_name("c.1") == "TIM beta/alpha-barrel"
    assert fold_name("b.1") == "Immunoglobulin-like beta-sandwich"


@pytest.mark.parametrize("fold", ["a.1", "b.1", "c.1", "d.58"])
def test_deepsf_fold_names_are_not_class_names(fold):
    assert names.fold_names("deepsf")[fold] not in tables.SCOP_CLASSES.values()
