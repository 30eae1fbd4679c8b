"""Names for SCOP 1.75 folds, borrowed from SCOP2 through the PDB chains the two share.

The DeepSF benchmark labels folds with SCOP 1.75 ids (``a.80``), and no SCOP 1.75 description
file is in the shared data, so a biologist would have to look every prediction up. SCOP2
descends from SCOP 1.75, its fold names are in ``scop-des-latest.txt``, and its domains sit on
the same PDB chains. :func:`build_scop175_names` therefore matches SCOP 1.75-labelled domains
(DeepSF's own, plus SCOPe 2.08 ASTRAL, whose fold ids are SCOP 1.75's for every fold that existed
then) to SCOP2 domains:

* same PDB id and chain, and either the SCOP 1.75 domain is the whole chain (``_`` sid) or one
  sequence contains the other (a multi-domain chain needs the right region);
* or identical sequences, whatever the PDB entry.

Each independent PDB chain votes once for the SCOP2 fold it lands in; a fold takes the SCOP2
fold with most votes (ties: most matched domains, then the lower SCOP2 id). The vote counts are
kept, so every name says how much evidence it has. Folds without any match are named honestly
as unnamed by :func:`fold_name`, never by their class.

The result ships as ``scop175_fold_names.tsv`` beside this module (regenerate with
``python -m coevofold.data.names``), so prediction needs no data folder.
"""

from __future__ import annotations

import os
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import pandas as pd

from coevofold.data import tables
from coevofold.files import atomic_path, data_root

#: The shipped mapping (columns :data:`NAME_COLUMNS`), one row per SCOP 1.75 fold of DeepSF.
SHIPPED = Path(__file__).with_name("scop175_fold_names.tsv")
NAME_COLUMNS = ["fold", "scop2_fold", "name", "chains", "votes", "candidates"]
_SCCS_FOLD = re.compile(r"^[a-k]\.\d+$")


@dataclass(frozen=True)
class Domain:
    """A domain with a fold label, as the matcher needs it: sid-style id or PDB id + chain."""

    fold: str
    pdb: str
    chain: str
    whole_chain: bool
    sequence: str
    #: a name for the domain (sid or SCOP2 domain id), only for reading the votes.
    id: str = ""


def scop_sid_domain(sid: str, fold: str, sequence: str) -> Domain | None:
    """``d1v4wb_`` -> PDB 1v4w, chain B, whole chain; None for ids that are not SCOP sids.

    SCOP writes the chain in lower case, ``_`` for a chain-less entry (chain A in SCOP2's PDB
    regions) and ``.`` for domains spanning several chains (no single chain to match).
    """
    if len(sid) != 7 or sid[0] not in "dg" or sid[5] == ".":
        return None
    chain = "A" if sid[5] == "_" else sid[5].upper()
    return Domain(fold, sid[1:5].lower(), chain, sid[6] == "_", sequence, sid)


def scop2_domains(table: pd.DataFrame) -> list[Domain]:
    """SCOP2 domains from the representative tables: the family and the superfamily reference."""
    out = []
    for row in table.itertuples(index=False):
        for pdb, region in ((row[1], row[2]), (row[6], row[7])):
            if isinstance(pdb, str) and isinstance(region, str) and pdb:
                out.append(Domain(row.CF, pdb.lower(), region.split(":")[0], False, row.seq, row[0]))
    return out


def match_folds(scop175: Iterable[Domain], scop2: Iterable[Domain]) -> dict[str, Counter]:
    """For each SCOP 1.75 fold, independent PDB chains per SCOP2 fold (see the module docstring).

    A chain is independent when its (PDB id, chain) differs; the same chain found by both rules
    or by several tables counts once.
    """
    by_chain: dict[tuple[str, str], list[Domain]] = defaultdict(list)
    by_sequence: dict[str, list[Domain]] = defaultdict(list)
    for domain in scop2:
        by_chain[(domain.pdb, domain.chain)].append(domain)
        by_sequence[domain.sequence].append(domain)
    chains: dict[str, dict[str, set]] = defaultdict(lambda: defaultdict(set))
    for domain in scop175:
        for other in by_chain.get((domain.pdb, domain.chain), []):
            if domain.whole_chain or other.sequence in domain.sequence or domain.sequence in other.sequence:
                chains[domain.fold][other.fold].add((domain.pdb, domain.chain))
        for other in by_sequence.get(domain.sequence, []):
            chains[domain.fold][other.fold].add((other.pdb, other.chain))
    return {fold: Counter({cf: len(found) for cf, found in per.items()}) for fold, per in chains.items()}


def resolve(votes: Mapping[str, Counter], folds: Iterable[str], scop2_names: Mapping[str, str]) -> pd.DataFrame:
    """One row per fold: the majority SCOP2 fold, its name, supporting chains, all votes.

    ``chains`` is the winner's independent chains, ``votes`` all chains matched for the fold,
    ``candidates`` every SCOP2 fold with its chain count (``2000002:83;2000010:1``).
    """
    rows = []
    for fold in sorted(set(folds), key=_fold_key):
        counts = votes.get(fold, Counter())
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], int(kv[0]) if kv[0].isdigit() else 0, kv[0]))
        best, chains = ranked[0] if ranked else ("", 0)
        rows.append({
            "fold": fold,
            "scop2_fold": best,
            "name": scop2_names.get(best, "") if best else "",
            "chains": chains,
            "votes": sum(counts.values()),
            "candidates": ";".join(f"{cf}:{n}" for cf, n in ranked),
        })
    return pd.DataFrame(rows, columns=NAME_COLUMNS)


def _fold_key(fold: str) -> tuple:
    head, _, number = fold.partition(".")
    return (head, int(number) if number.isdigit() else 0, fold)


def build_scop175_names(root: str | os.PathLike | None = None) -> pd.DataFrame:
    """The mapping for every DeepSF fold, from the shared data under ``root`` (default data root)."""
    root = Path(root) if root is not None else data_root()
    deepsf = tables.read_deepsf_tsv(root / tables.PRESETS["deepsf"].relpath)
    folds = set(deepsf["fold"])
    labelled = [d for r in deepsf.itertuples(index=False) if (d := scop_sid_domain(r.id, r.fold, r.sequence))]
    scope_dir = root / "scope208_astral_filtered"
    for path in sorted(scope_dir.glob("scope2.08_astral_th*.tsv")):
        scope = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
        labelled += [d for r in scope.itertuples(index=False)
                     if r.fold in folds and (d := scop_sid_domain(r.sid, r.fold, r.seq.upper()))]
    scop2_dir = root / "scop2_represeq_clusters"
    scop2 = pd.concat([pd.read_csv(p, sep="\t", dtype=str, keep_default_na=False)
                       for p in sorted(scop2_dir.glob("scop2_represeq_th*.tsv"))]).drop_duplicates("FA-DOMID")
    names = tables.read_scop2_names(scop2_dir / "scop-des-latest.txt")
    return resolve(match_folds(labelled, scop2_domains(scop2)), folds, names)


def coverage(mapping: pd.DataFrame) -> dict[str, int]:
    """How many folds got a name, and by how many independent chains (1, 2, 3-9, 10+)."""
    named = mapping[mapping["name"] != ""]
    chains = named["chains"].astype(int)
    contested = named["candidates"].str.count(";") > 0
    return {
        "folds": len(mapping),
        "named": len(named),
        "by 1 chain": int((chains == 1).sum()),
        "by 2 chains": int((chains == 2).sum()),
        "by 3-9 chains": int(chains.between(3, 9).sum()),
        "by 10+ chains": int((chains >= 10).sum()),
        "named with competing SCOP2 folds (majority taken)": int(contested.sum()),
    }


@lru_cache(maxsize=1)
def scop175_names() -> dict[str, str]:
    """SCOP 1.75 fold -> SCOP2 name from the shipped table (empty names left out)."""
    table = pd.read_csv(SHIPPED, sep="\t", dtype=str, keep_default_na=False)
    return {row.fold: row.name for row in table.itertuples(index=False) if row.name}


def fold_name(fold: str, stored: Mapping[str, str] | None = None) -> str:
    """The name a user sees for ``fold``.

    SCOP 1.75 / SCOPe ids (``a.80``) take the SCOP2 name borrowed above, or say plainly that
    there is none; other ids (SCOP2's numeric folds) take the name the model folder stored.
    """
    if _SCCS_FOLD.match(fold):
        return scop175_names().get(fold) or f"fold {fold}, name not in SCOP2"
    return (stored or {}).get(fold, "")


def model_fold_names(meta: Mapping) -> dict[str, str]:
    """Names of a model folder's classes as users see them (``model.json`` as a dict).

    Models trained before SCOP 1.75 names existed stored class names for DeepSF folds; those are
    replaced here, so old model folders show fold names too.
    """
    stored = meta.get("fold_names") or {}
    return {fold: fold_name(fold, stored) for fold in meta["classes"]}


def fold_names(source: str | os.PathLike) -> dict[str, str]:
    """Human-readable names for the folds of a data set.

    SCOP2 folds are named by ``scop-des-latest.txt``; SCOP 1.75 / SCOPe folds by the SCOP2 name
    borrowed through shared PDB chains (above), or ``fold a.80, name not in
    SCOP2`` where none was found: the class name is not a fold name.
    """
    table = tables.load(source)
    scop2_names: dict[str, str] = {}
    if str(source) in ("scop2", "binary"):
        scop2_names = tables.read_scop2_names(tables.preset_file(tables.PRESETS[str(source)], "scop2_represeq_clusters/scop-des-latest.txt"))
    return {fold: fold_name(fold, scop2_names) for fold in table["fold"].dropna().unique()}


def write_shipped(root: str | os.PathLike | None = None, out: str | os.PathLike = SHIPPED) -> pd.DataFrame:
    """Rebuild the shipped TSV from the shared data (atomically) and return it."""
    mapping = build_scop175_names(root)
    with atomic_path(out) as tmp:
        mapping.to_csv(tmp, sep="\t", index=False)
    return mapping


if __name__ == "__main__":
    built = write_shipped()
    print(f"wrote {SHIPPED}")
    for key, value in coverage(built).items():
        print(f"{key}: {value}")
