"""The data layer on real files from ../shared and on hand-made bad inputs."""

from __future__ import annotations

import os

import pytest

from coevofold.app.cli import main
from coevofold.data import names, tables
from coevofold.errors import CoevofoldError


def test_astral_header_parsed_into_scop_levels(shared_data):
    table = tables.read_fasta(shared_data / "scope_astral20" / "astral_20.fa", labels="scop")
    first = table.iloc[0]
    # >d2bkma_ a.1.1.1 (A:) automated matches {Geobacillus stearothermophilus [TaxId: 1422]}
    assert (first["id"], first["class"], first["fold"], first["superfamily"], first["family"]) == (
        "d2bkma_", "a", "a.1", "a.1.1", "a.1.1.1")
    assert first["sequence"].startswith("EQWQTLYEAIGG")  # lower case in the file, upper-cased
    assert first["length"] == 128
    assert list(table.columns) == tables.COLUMNS


def test_deepsf_fasta_and_tsv_agree(shared_data):
    from_tsv = tables.load("deepsf").set_index("id")
    from_fasta = tables.read_deepsf_fastas(shared_data / "deepsf_tape_remote_homology").set_index("id")
    assert len(from_tsv) == len(from_fasta) == 16292
    joined = from_tsv.join(from_fasta.add_suffix("_fa"))
    assert (joined["sequence"] == joined["sequence_fa"]).all()
    assert (joined["split"] == joined["split_fa"]).all()
    assert (joined["fold"] == joined["fold_fa"]).all()


def test_scop2_and_scope_tables_load(shared_data):
    scop2 = tables.load("scop2")
    assert scop2["fold"].str.startswith("2").all()  # CF ids are 2xxxxxx
    assert set(scop2["class"]) <= {"a", "b", "c", "d", "g"}
    scope = tables.load(shared_data / "scope208_astral_filtered" / "scope2.08_astral_th10.tsv")
    assert scope["family"].str.count(r"\.").eq(3).all()
    named = names.fold_names("scop2")
    assert named["2000031"] == "TIM beta/alpha-barrel"


def test_unlabelled_fasta_loads_for_prediction(write_fasta):
    table = tables.load(write_fasta(">query1 my protein\nMKTAYIAKQR\n>q2\nmkt\n"))
    assert table["id"].tolist() == ["query1", "q2"]
    assert table["fold"].isna().all()
    assert table["sequence"].tolist() == ["MKTAYIAKQR", "MKT"]


def test_windows_line_endings_are_read(write_fasta):
    table = tables.load(write_fasta(b">a a.1.1.1\r\nACDE\r\nFG\r\n"))
    assert table.loc[0, "sequence"] == "ACDEFG" and table.loc[0, "fold"] == "a.1"


def test_extended_residues_kept():
    assert tables.clean_sequence("acxbzuo", path="f", record_id="r") == "ACXBZUO"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (">a\nACD*\n", "f.fasta: record 'a': invalid residue '*' (a stop codon"),
        (">a\nAC-D\n", "record 'a': invalid residue '-' (an alignment gap"),
        (">a\nACJD\n", "record 'a': invalid residue 'J' at position 3"),
        (">a\nAC1D\n", "record 'a': invalid residue '1' at position 3"),
        (">a\n\n>b\nAC\n", "record 'a': empty sequence"),
        (">a\nAC\n>a\nDE\n", "record 'a': duplicate id"),
        (">\nAC\n", "record #1: empty id in header"),
        ("", "empty file"),
        ("hello\n>a\nAC\n", "not a FASTA file"),
        (b"\x89PNG\r\n\x1a\n\xff\xfe\x00", "not a text FASTA file"),
        (b">a\n\xff\xfe\x00garbage\n", "not a text FASTA file"),
    ],
)
def test_bad_fasta_names_file_record_problem(write_fasta, text, message):
    path = write_fasta(text, name="f.fasta")
    with pytest.raises(CoevofoldError, match=None) as info:
        tables.load(path)
    assert message in str(info.value)
    assert str(path) in str(info.value) or message.startswith("f.fasta")
    assert "\n" not in str(info.value)


def test_header_without_scop_label_refused_when_labels_required(write_fasta):
    path = write_fasta(">a some protein\nACDE\n")
    with pytest.raises(CoevofoldError, match="record 'a': header has no SCOP label"):
        tables.read_fasta(path, labels="scop")


def test_missing_file_is_one_line_error_and_exit_1(tmp_path, capsys):
    missing = tmp_path / "nope.fasta"
    assert main(["data", "summarize", str(missing), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "nope.fasta: no such file" in err
    assert not (tmp_path / "out").exists()  # nothing half-written


def test_bad_input_leaves_no_output(write_fasta, tmp_path, capsys):
    path = write_fasta(">a a.1.1.1\nACDE\n>b a.1.1.1\nAC*\n")
    assert main(["data", "split", str(path), "--out", str(tmp_path / "split.tsv")]) == 1
    assert "record 'b'" in capsys.readouterr().err
    assert not (tmp_path / "split.tsv").exists()


def test_outputs_get_normal_file_permissions(tmp_path):
    from coevofold.files import write_text

    write_text(tmp_path / "out.tsv", "x\n")
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "out.tsv").stat().st_mode & 0o777 == 0o666 & ~umask


def test_own_table_layout_round_trips_and_refuses_bad_rows(deepsf, tmp_path):
    """A loaded table written back as TSV (e.g. a user's filtered copy) loads as it was."""
    import pandas as pd

    subset = deepsf[deepsf["fold"].isin(["a.4", "b.1"])].head(40).reset_index(drop=True)
    path = tmp_path / "mine.tsv"
    subset.to_csv(path, sep="\t", index=False)
    back = tables.load(path)
    pd.testing.assert_frame_equal(back, subset, check_dtype=False)
    subset.drop(columns=["split", "class"]).to_csv(path, sep="\t", index=False)
    unsplit = tables.load(path)
    assert unsplit["split"].isna().all() and (unsplit["class"] == subset["class"]).all()
    bad = subset.assign(split=["train"] * 39 + ["test"])
    bad.to_csv(path, sep="\t", index=False)
    with pytest.raises(CoevofoldError, match=rf"mine.tsv: record '{bad['id'].iat[-1]}': split 'test' is not one of"):
        tables.load(path)
    subset.assign(id=[""] + subset["id"].tolist()[1:]).to_csv(path, sep="\t", index=False)
    with pytest.raises(CoevofoldError, match="mine.tsv: line 2: empty id"):
        tables.load(path)
