"""SCOP-labelled protein tables from every format the project reads.

Every loader returns one pandas table with the columns in :data:`COLUMNS`
(id, sequence, class, fold, superfamily, family, length, split), so later stages never care which
file a protein came from.  Labels that a format does not carry are ``None``; ``split`` is ``None``
until a split is assigned.

Residue policy (applied to every sequence, see :func:`clean_sequence`):

* lower case is accepted and upper-cased (ASTRAL FASTA is lower case);
* the 20 standard amino acids are accepted;
* ``X`` (unknown), ``B`` (D/N), ``Z`` (E/Q), ``U`` (selenocysteine) and ``O`` (pyrrolysine) are
  accepted and kept: ESM-2 has a token for each, and the ProtTrans adapter maps U/Z/O/B to X as
  those models were trained;
* anything else is refused with the file, record and position: ``*`` (a translation stop: the
  input is probably a translated ORF, not a domain), gaps ``-``/``.`` (an alignment, not a
  sequence), digits, whitespace inside the sequence, and other letters (``J``).
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import pandas as pd
from Bio.SeqIO.FastaIO import SimpleFastaParser

from coevofold.errors import CoevofoldError
from coevofold.files import check_fetched, data_root

COLUMNS = ["id", "sequence", "class", "fold", "superfamily", "family", "length", "split"]
STANDARD_RESIDUES = "ACDEFGHIKLMNPQRSTVWY"
EXTRA_RESIDUES = "XBZUO"
ALLOWED_RESIDUES = frozenset(STANDARD_RESIDUES + EXTRA_RESIDUES)

#: SCOP class letters and their names, shared by SCOP 1.75, SCOPe and (by index) SCOP2.
SCOP_CLASSES = {
    "a": "All alpha proteins",
    "b": "All beta proteins",
    "c": "Alpha and beta proteins (a/b)",
    "d": "Alpha and beta proteins (a+b)",
    "e": "Multi-domain proteins (alpha and beta)",
    "f": "Membrane and cell surface proteins and peptides",
    "g": "Small proteins",
    "h": "Coiled coil proteins",
    "i": "Low resolution protein structures",
    "j": "Peptides",
    "k": "Designed proteins",
}

#: Split names of the DeepSF / TAPE three-level benchmark, in its published order.
DEEPSF_SPLITS = ("train", "valid", "test_fold", "test_superfamily", "test_family")
#: Record counts published for that benchmark (Hou et al. 2018; Rao et al. 2019).
DEEPSF_PUBLISHED_COUNTS = {
    "train": 12312,
    "valid": 736,
    "test_fold": 718,
    "test_superfamily": 1254,
    "test_family": 1272,
}
_DEEPSF_FASTA = {
    "train": "train.fasta",
    "valid": "valid.fasta",
    "test_fold": "test_fold_holdout.fasta",
    "test_superfamily": "test_superfamily_holdout.fasta",
    "test_family": "test_family_holdout.fasta",
}
_DEEPSF_TSV_SPLIT = {
    "train": "train",
    "valid": "valid",
    "test_fold_holdout": "test_fold",
    "test_superfamily_holdout": "test_superfamily",
    "test_family_holdout": "test_family",
}


def clean_sequence(sequence: str, *, path: str | os.PathLike, record_id: str) -> str:
    """Upper-case ``sequence`` and refuse what a protein language model cannot read.

    The error names the file, the record and the first bad position, because a user with
    10,000 records needs to find the one that is wrong.
    """
    seq = sequence.strip().upper()
    if not seq:
        raise CoevofoldError(f"{path}: record '{record_id}': empty sequence")
    for position, residue in enumerate(seq, start=1):
        if residue not in ALLOWED_RESIDUES:
            if residue == "*":
                why = "'*' (a stop codon: give protein domains, not translated reading frames)"
            elif residue in "-.":
                why = f"'{residue}' (an alignment gap: give unaligned sequences)"
            else:
                why = repr(residue)
            raise CoevofoldError(
                f"{path}: record '{record_id}': invalid residue {why} at position {position}; "
                f"allowed: {STANDARD_RESIDUES} plus {EXTRA_RESIDUES}, either case"
            )
    return seq


def _fasta_records(path: Path) -> Iterator[tuple[str, str, str]]:
    """Yield ``(id, description, raw sequence)`` with Biopython, turning its errors into ours."""
    if not path.is_file():
        raise CoevofoldError(f"{path}: no such file")
    try:
        with open(path, encoding="utf-8", newline=None) as handle:
            yield from _parse_fasta(handle, path)
    except UnicodeDecodeError as exc:
        raise CoevofoldError(f"{path}: not a text FASTA file ({exc.reason} at byte {exc.start})") from None


def _parse_fasta(handle: TextIO, path: str | os.PathLike) -> Iterator[tuple[str, str, str]]:
    """The records of an open FASTA text, errors naming ``path`` (a file, or what the user sent)."""
    first = handle.read(1)
    if first == "":
        raise CoevofoldError(f"{path}: empty file (no FASTA records)")
    if first != ">":
        raise CoevofoldError(f"{path}: not a FASTA file (first character is not '>')")
    handle.seek(0)
    for number, (title, raw) in enumerate(SimpleFastaParser(handle), start=1):
        record_id = title.split(None, 1)[0] if title.strip() else ""
        if not record_id:
            raise CoevofoldError(f"{path}: record #{number}: empty id in header")
        yield record_id, title, raw


def _check_unique(ids: Iterable[str], path: str | os.PathLike) -> None:
    seen: set[str] = set()
    for record_id in ids:
        if record_id in seen:
            raise CoevofoldError(f"{path}: record '{record_id}': duplicate id")
        seen.add(record_id)


def _sccs_levels(sccs: str) -> tuple[str, str | None, str | None, str | None]:
    """``a.1.1.2`` -> (class, fold, superfamily, family); shorter sccs leave the rest None."""
    parts = sccs.split(".")
    levels = [".".join(parts[: i + 1]) if len(parts) > i else None for i in range(4)]
    return parts[0], levels[1], levels[2], levels[3]


def _is_sccs(token: str) -> bool:
    parts = token.split(".")
    return (
        2 <= len(parts) <= 4
        and len(parts[0]) == 1
        and parts[0].isalpha()
        and parts[0].islower()
        and all(p.isdigit() for p in parts[1:])
    )


def _table(rows: list[dict], path: str | os.PathLike) -> pd.DataFrame:
    table = pd.DataFrame(rows, columns=COLUMNS)
    _check_unique(table["id"], path)
    table["length"] = table["sequence"].str.len().astype("int64")
    return table


def read_fasta(path: str | os.PathLike, *, labels: str = "auto") -> pd.DataFrame:
    """Read any protein FASTA into the common table.

    ``labels`` says how to treat the header after the id:

    * ``"auto"``: take a SCOP sccs (``a.1.1.2``) if the second token is one, else leave labels empty
      (a user's unlabelled FASTA for prediction);
    * ``"scop"``: require an sccs in every header (training data), refusing the first without;
    * ``"none"``: ignore headers beyond the id.

    DeepSF/TAPE headers (``>d1v4wb_ a.1.1.2 fold=a.1 ... split=train``) also give the split.
    """
    path = Path(path)
    return _fasta_table(_fasta_records(path), path, labels)


def read_fasta_bytes(raw: bytes, name: str, *, labels: str = "auto") -> pd.DataFrame:
    """:func:`read_fasta` for FASTA a user sent (pasted or uploaded), errors naming it ``name``.

    The same checks and the same one-line messages as for a file of that name, so the web page
    and the command line refuse bad input in the same words.
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CoevofoldError(f"{name}: not a text FASTA file ({exc.reason} at byte {exc.start})") from None
    return _fasta_table(_parse_fasta(io.StringIO(text, newline=None), name), name, labels)


def _fasta_table(records: Iterable[tuple[str, str, str]], path: str | os.PathLike, labels: str) -> pd.DataFrame:
    if labels not in ("auto", "scop", "none"):
        raise ValueError(f"labels must be 'auto', 'scop' or 'none', not {labels!r}")
    rows = []
    for record_id, title, raw in records:
        tokens = title.split()
        row: dict = dict.fromkeys(COLUMNS)
        row["id"] = record_id
        row["sequence"] = clean_sequence(raw, path=path, record_id=record_id)
        sccs = tokens[1] if len(tokens) > 1 and labels != "none" else ""
        if labels != "none" and _is_sccs(sccs):
            row["class"], row["fold"], row["superfamily"], row["family"] = _sccs_levels(sccs)
        elif labels == "scop":
            raise CoevofoldError(
                f"{path}: record '{record_id}': header has no SCOP label "
                "(expected '>ID a.1.1.2 ...' with the sccs as second field)"
            )
        for token in tokens[2:]:
            key, _, value = token.partition("=")
            if key == "fold" and value and row["fold"] is None:
                row["class"], row["fold"] = value.split(".")[0], value
            elif key == "split" and value:
                row["split"] = _DEEPSF_TSV_SPLIT.get(value, value)
        rows.append(row)
    return _table(rows, path)


def _read_tsv(path: Path, required: list[str]) -> pd.DataFrame:
    if not path.is_file():
        raise CoevofoldError(f"{path}: no such file")
    try:
        frame = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, comment=None)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise CoevofoldError(f"{path}: not a readable TSV table ({exc})") from None
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise CoevofoldError(f"{path}: missing column(s) {', '.join(missing)}")
    return frame


def read_deepsf_tsv(path: str | os.PathLike) -> pd.DataFrame:
    """The joined DeepSF/TAPE table (``deepsf_d2_all_splits.tsv``), splits as published.

    123 ids lack superfamily/family labels in DeepSF's own lists; they keep their fold and are
    left ``None`` at the missing levels rather than guessed.
    """
    path = Path(path)
    frame = _read_tsv(path, ["split", "sid", "fold", "superfamily", "family", "sequence"])
    rows = []
    for rec in frame.itertuples(index=False):
        rows.append(
            {
                "id": rec.sid,
                "sequence": clean_sequence(rec.sequence, path=path, record_id=rec.sid),
                "class": rec.fold.split(".")[0],
                "fold": rec.fold,
                "superfamily": rec.superfamily or None,
                "family": rec.family or None,
                "split": _DEEPSF_TSV_SPLIT.get(rec.split, rec.split),
            }
        )
    return _table(rows, path)


#: the splits a table of coevofold's own layout may name (empty: the split maker decides).
TABLE_SPLITS = ("train", "valid", "test_fold", "test_superfamily", "test_family", "excluded")


def read_table_tsv(path: str | os.PathLike) -> pd.DataFrame:
    """A labelled table in coevofold's own layout (:data:`COLUMNS`; ``id``, ``sequence`` and
    ``fold`` required), such as a filtered copy of a loaded data set: what a user most easily
    writes. An empty ``class`` is the fold's first letter; a ``split`` column, when present,
    must name a split on every row."""
    path = Path(path)
    frame = _read_tsv(path, ["id", "sequence", "fold"])
    has_split = "split" in frame.columns
    rows = []
    for line, rec in enumerate(frame.to_dict("records"), start=2):
        if not rec["id"].strip():
            raise CoevofoldError(f"{path}: line {line}: empty id")
        if not rec["fold"]:
            raise CoevofoldError(f"{path}: record '{rec['id']}': empty fold")
        split = rec.get("split") if has_split else None
        if has_split and split not in TABLE_SPLITS:
            raise CoevofoldError(f"{path}: record '{rec['id']}': split '{split}' is not one of {', '.join(TABLE_SPLITS)}")
        rows.append({
            "id": rec["id"],
            "sequence": clean_sequence(rec["sequence"], path=path, record_id=rec["id"]),
            "class": rec.get("class") or rec["fold"].split(".")[0],
            "fold": rec["fold"],
            "superfamily": rec.get("superfamily") or None,
            "family": rec.get("family") or None,
            "split": split,
        })
    return _table(rows, path)


def read_deepsf_fastas(directory: str | os.PathLike) -> pd.DataFrame:
    """The DeepSF/TAPE benchmark from its five per-split FASTA files."""
    directory = Path(directory)
    parts = []
    for split, name in _DEEPSF_FASTA.items():
        part = read_fasta(directory / name, labels="scop")
        part["split"] = split
        parts.append(part)
    table = pd.concat(parts, ignore_index=True)
    _check_unique(table["id"], directory)
    return table


def read_scope_tsv(path: str | os.PathLike) -> pd.DataFrame:
    """SCOPe 2.08 ASTRAL tables (``scope2.08_astral_th*.tsv``: sid, sccs, seq, ...)."""
    path = Path(path)
    frame = _read_tsv(path, ["sid", "sccs", "seq"])
    rows = []
    for rec in frame.itertuples(index=False):
        row = dict.fromkeys(COLUMNS)
        row["id"] = rec.sid
        row["sequence"] = clean_sequence(rec.seq, path=path, record_id=rec.sid)
        if not _is_sccs(rec.sccs):
            raise CoevofoldError(f"{path}: record '{rec.sid}': '{rec.sccs}' is not a SCOP sccs")
        row["class"], row["fold"], row["superfamily"], row["family"] = _sccs_levels(rec.sccs)
        rows.append(row)
    return _table(rows, path)


def read_scop2_names(path: str | os.PathLike) -> dict[str, str]:
    """SCOP2 node id -> name from ``scop-des-latest.txt`` (fold names for the CF ids), spaces collapsed."""
    names = {}
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("#") or not line.strip():
                continue
            node, _, name = line.rstrip("\n").partition(" ")
            # the shared copy lost its commas to double spaces ("inhibitors  toxins"): one space
            names[node] = " ".join(name.split())
    return names


_SCOP2_CLASS_LETTER = {"1000000": "a", "1000001": "b", "1000002": "c", "1000003": "d", "1000004": "g"}


def read_scop2_tsv(path: str | os.PathLike) -> pd.DataFrame:
    """SCOP2 representative-sequence tables (fold = CF column), ids are the FA domain ids.

    SCOP2 classes are numeric (1000000 = all alpha, ...); they are mapped to the SCOP letters so
    class-level summaries read the same for every data set.
    """
    path = Path(path)
    frame = _read_tsv(path, ["FA-DOMID", "CL", "CF", "SF", "FA", "seq"])
    rows = []
    for rec in frame.itertuples(index=False):
        record_id = rec._0  # "FA-DOMID" is not an identifier, so pandas names it by position
        rows.append(
            {
                "id": record_id,
                "sequence": clean_sequence(rec.seq, path=path, record_id=record_id),
                "class": _SCOP2_CLASS_LETTER.get(rec.CL, rec.CL),
                "fold": rec.CF,
                "superfamily": rec.SF,
                "family": rec.FA,
                "split": None,
            }
        )
    return _table(rows, path)


# --------------------------------------------------------------------------- data root & presets


@dataclass(frozen=True)
class Preset:
    """A named data set: a file under the data root, how to read it, and what fetches it."""

    name: str
    relpath: str
    reader: str
    description: str
    #: the ``coevofold data fetch`` name that downloads this file (coevofold.data.fetch.DATASETS).
    fetch: str
    folds: tuple[str, ...] = ()  # restrict to these folds (the binary task)


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in [
        Preset("deepsf", "deepsf_tape_remote_homology/deepsf_d2_all_splits.tsv", "deepsf_tsv",
               "DeepSF/TAPE three-level fold benchmark, SCOP 1.75, published splits", "deepsf"),
        Preset("scop2", "scop2_represeq_clusters/scop2_represeq_th20.tsv", "scop2_tsv",
               "SCOP2 family representatives at 20% identity (the original study's task)", "scop2"),
        Preset("astral20", "scope_astral20/astral_20.fa", "fasta",
               "SCOPe 2.08 ASTRAL 20% subset, official FASTA", "astral20"),
        Preset("scope208", "scope208_astral_filtered/scope2.08_astral_th20.tsv", "scope_tsv",
               "SCOPe 2.08 ASTRAL 20% table, filtered as in the 'Twilight Zone' paper", "scope208"),
        # The seed study's binary toy: the two most populated SCOP2 folds at 20 % identity,
        # Immunoglobulin-like beta-sandwich (2000051, all beta) and Ferredoxin-like (2000014, a+b).
        Preset("binary", "scop2_represeq_clusters/scop2_represeq_th20.tsv", "scop2_tsv",
               "the seed study's 2-fold binary task on SCOP2", "scop2", folds=("2000051", "2000014")),
    ]
}

_READERS = {
    "deepsf_tsv": read_deepsf_tsv,
    "scop2_tsv": read_scop2_tsv,
    "scope_tsv": read_scope_tsv,
    "fasta": lambda p: read_fasta(p, labels="scop"),
}


def preset_file(preset: Preset, relpath: str) -> Path:
    """A file of ``preset`` under the data root, checked if ``coevofold data fetch`` wrote it;
    a missing one is refused with the command that downloads it."""
    path = data_root() / relpath
    if not path.is_file():
        raise CoevofoldError(f"{path}: no such file (preset '{preset.name}'); `coevofold data fetch {preset.fetch}` "
                             "downloads it, or set COEVOFOLD_DATA to the folder that has it")
    check_fetched(path)
    return path


def load(source: str | os.PathLike) -> pd.DataFrame:
    """Load a named preset (see :data:`PRESETS`) or a data file, guessing its format.

    Files: ``.fa/.fasta/.faa`` are FASTA (labels taken from headers when present), ``.tsv``
    tables are recognised by their columns (DeepSF, SCOPe, SCOP2, or coevofold's own:
    :func:`read_table_tsv`).
    """
    name = str(source)
    if name in PRESETS:
        preset = PRESETS[name]
        table = _READERS[preset.reader](preset_file(preset, preset.relpath))
        if preset.folds:
            table = table[table["fold"].isin(preset.folds)].reset_index(drop=True)
        return table
    path = Path(source)
    if not path.exists():
        raise CoevofoldError(f"{path}: no such file, and not a preset ({', '.join(PRESETS)})")
    if path.is_dir():
        return read_deepsf_fastas(path)
    if path.suffix.lower() in (".tsv", ".txt"):
        header = path.open(encoding="utf-8", errors="replace").readline().rstrip("\n").split("\t")
        if "sid" in header and "split" in header:
            return read_deepsf_tsv(path)
        if "sccs" in header:
            return read_scope_tsv(path)
        if "CF" in header:
            return read_scop2_tsv(path)
        if {"id", "sequence", "fold"} <= set(header):
            return read_table_tsv(path)
        raise CoevofoldError(f"{path}: unknown table layout (columns: {', '.join(header[:6])}...)")
    return read_fasta(path)


def as_table(source: str | os.PathLike | pd.DataFrame) -> pd.DataFrame:
    """A preset, a file, or an in-memory table with ``id`` and ``sequence`` columns, validated.

    In-memory tables get the same residue checks as files, so the API refuses what the CLI does.
    """
    if not isinstance(source, pd.DataFrame):
        return load(source)
    missing = [column for column in ("id", "sequence") if column not in source.columns]
    if missing:
        raise CoevofoldError(f"input table: missing column(s) {', '.join(missing)}")
    ids = source["id"].astype(str).tolist()
    sequences = [clean_sequence(s, path="input table", record_id=i) for i, s in zip(ids, source["sequence"])]
    return source.assign(id=ids, sequence=sequences)
