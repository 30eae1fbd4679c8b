"""True residue contacts from structures, and how well a contact-like map recovers them.

The project's premise is that pLM attention carries co-evolution signal, and co-evolution shows
up as residue contacts. Before designing fold features from attention we measure that premise:
:func:`read_target` turns a real structure into a true contact map, :func:`contact_precision`
scores any L x L map against it with the standard ESM/CASP top-L metric, and
:func:`evaluate_maps` averages that over a benchmark for any number of named maps.

Structure policy (:func:`read_target`):

* first model only (NMR files hold many), the named chain only: contacts with other chains of a
  complex or oligomer are not the chain's own fold and are never counted;
* residues are those Biopython reads as amino acids by name
  (:data:`Bio.Data.PDBData.protein_letters_3to1_extended`): the 20 standard ones, and modified
  residues mapped to their parent (MSE -> M), because that parent is what a sequence database
  and the pLM would see; a HETATM record with a *standard* name is a free amino-acid ligand and
  is skipped, as are waters, other ligands and unknown residues (UNK);
* the sequence is the observed residues in chain order; unobserved stretches are simply absent,
  so sequence separation is counted along the observed residues, the same sequence the pLM reads;
* a contact is a C-beta distance below 8 A (C-alpha for glycine); a residue without that atom is
  marked invalid and no pair involving it is ever ranked or counted.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from Bio.Data.PDBData import protein_letters_3to1, protein_letters_3to1_extended
from Bio.PDB import MMCIFParser, PDBParser

from coevofold.errors import CoevofoldError
from coevofold.features import extraction, pretrained, store
from coevofold.files import data_root

CONTACT_DISTANCE = 8.0
#: Sequence separations of the standard ranges (short >= 6, medium+long >= 12, long >= 24).
MEDIUM_RANGE = 12
LONG_RANGE = 24
#: Top-k cut-offs as fractions of the sequence length L, by column name.
TOP_K = {"top-L": 1, "top-L/2": 2, "top-L/5": 5}
RANDOM_ROW = "random (contact density)"
#: Rows of :func:`check_features` besides :data:`RANDOM_ROW`; the last-layer row is named per model.
STORED_CONTACT_ROW = "stored contact map (uint8)"
ALL_HEADS_ROW = "all-head avg (full resolution)"

_PARSERS = {".pdb": PDBParser, ".ent": PDBParser, ".cif": MMCIFParser, ".mmcif": MMCIFParser}


@dataclass(frozen=True)
class ContactTarget:
    """One chain's sequence and true contacts.

    ``contacts[i, j]`` is True when residues i and j are within :data:`CONTACT_DISTANCE`;
    ``valid[i]`` is False for a residue without the atom that distance needs, whose pairs are
    excluded from every count.
    """

    name: str
    chain: str
    sequence: str
    contacts: np.ndarray  # bool [L, L], symmetric
    valid: np.ndarray  # bool [L]


def read_target(path: str | os.PathLike, chain: str) -> ContactTarget:
    """Read one chain of a PDB or mmCIF file into a :class:`ContactTarget` (policy: module doc)."""
    path = Path(path)
    parser_class = _PARSERS.get(path.suffix.lower())
    if parser_class is None:
        raise CoevofoldError(f"{path}: unknown structure format (expected {', '.join(_PARSERS)})")
    if not path.is_file():
        raise CoevofoldError(f"{path}: no such file")
    structure = parser_class(QUIET=True).get_structure(path.stem, str(path))
    models = list(structure)
    if not models:
        raise CoevofoldError(f"{path}: no models in the file")
    if chain not in models[0]:
        present = ", ".join(c.id for c in models[0]) or "none"
        raise CoevofoldError(f"{path}: no chain '{chain}' in the first model (chains: {present})")

    letters: list[str] = []
    coords: list[np.ndarray] = []  # NaN where the residue lacks the atom
    for residue in models[0][chain]:
        name = residue.get_resname()
        free_amino_acid = residue.id[0] != " " and name in protein_letters_3to1
        if name not in protein_letters_3to1_extended or free_amino_acid:
            continue
        letter = protein_letters_3to1_extended[name]
        atom = "CA" if letter == "G" else "CB"
        letters.append(letter)
        coords.append(residue[atom].coord if atom in residue else np.full(3, np.nan))
    if not letters:
        raise CoevofoldError(f"{path}: chain '{chain}' has no amino-acid residues")

    xyz = np.array(coords, dtype=np.float64)
    valid = ~np.isnan(xyz).any(axis=1)
    distance = np.linalg.norm(xyz[:, None, :] - xyz[None, :, :], axis=-1)
    contacts = (distance < CONTACT_DISTANCE) & valid[:, None] & valid[None, :]
    return ContactTarget(path.stem, chain, "".join(letters), contacts, valid)


def read_benchmark(directory: str | os.PathLike) -> list[ContactTarget]:
    """Read each ``filename chain`` line of ``directory/chains.txt``; blank and # lines skipped."""
    directory = Path(directory)
    listing = directory / "chains.txt"
    if not listing.is_file():
        raise CoevofoldError(f"{listing}: no such file (expected 'filename chain' per line)")
    targets = []
    for number, line in enumerate(listing.read_text().splitlines(), start=1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        if len(fields) != 2:
            raise CoevofoldError(
                f"{listing}: line {number}: expected 'filename chain', got {line!r}"
            )
        targets.append(read_target(directory / fields[0], fields[1]))
    return targets


def _candidate_pairs(
    length: int, min_separation: int, max_separation: int | None, valid: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """Pairs i < j with ``min_separation <= j - i < max_separation``, both residues valid."""
    if min_separation < 1:
        raise ValueError(f"min_separation must be at least 1, not {min_separation}")
    i, j = np.triu_indices(length, k=min_separation)
    keep = np.ones(i.shape, dtype=bool)
    if max_separation is not None:
        keep &= (j - i) < max_separation
    if valid is not None:
        keep &= valid[i] & valid[j]
    return i[keep], j[keep]


def contact_precision(
    scores: np.ndarray,
    contacts: np.ndarray,
    min_separation: int = LONG_RANGE,
    max_separation: int | None = None,
    valid: np.ndarray | None = None,
) -> dict[str, float]:
    """Top-L, top-L/2 and top-L/5 precision of ``scores`` against the true ``contacts``.

    The ESM/CASP definition: among pairs i < j with ``min_separation <= j - i`` (and
    ``j - i < max_separation`` if given; long range is 24, medium+long 12) whose residues are both
    ``valid``, take the k highest-scoring with k = L // 1, 2, 5 (at least 1) and report the
    fraction that are contacts. The denominator is always k, so a chain with fewer than k
    candidate pairs is not flattered. Ties keep pair order (row-major over the upper triangle)
    and NaN ranks last, so the result is deterministic; only ``scores[i, j]`` with i < j is read.
    """
    length = contacts.shape[0]
    if scores.shape != contacts.shape or contacts.shape != (length, length):
        raise ValueError(f"scores {scores.shape} and contacts {contacts.shape} must both be L x L")
    i, j = _candidate_pairs(length, min_separation, max_separation, valid)
    order = np.argsort(-scores[i, j], kind="stable")  # NaN sorts after every number
    hits = contacts[i, j][order]
    tops = {name: max(length // d, 1) for name, d in TOP_K.items()}
    return {name: float(hits[:k].sum() / k) for name, k in tops.items()}


def contact_density(
    contacts: np.ndarray,
    min_separation: int = LONG_RANGE,
    max_separation: int | None = None,
    valid: np.ndarray | None = None,
) -> float:
    """Fraction of candidate pairs (as in :func:`contact_precision`) that are contacts.

    This is the expected precision of a random ranking, the baseline every map must beat;
    NaN when the chain is too short to have any candidate pair.
    """
    i, j = _candidate_pairs(contacts.shape[0], min_separation, max_separation, valid)
    return float(contacts[i, j].mean()) if i.size else float("nan")


def evaluate_maps(
    targets: Sequence[ContactTarget],
    maps_for: Callable[[str], dict[str, np.ndarray]],
    min_separation: int = LONG_RANGE,
    max_separation: int | None = None,
) -> pd.DataFrame:
    """Mean precision over ``targets`` of every named map ``maps_for(sequence)`` returns.

    Rows are :data:`RANDOM_ROW` first, then the map names in the order ``maps_for`` gives them;
    columns are the keys of :data:`TOP_K`. Each target counts once, whatever its length, as in
    the ESM papers.
    """
    rows = []
    for target in targets:
        density = contact_density(target.contacts, min_separation, max_separation, target.valid)
        rows.append({"map": RANDOM_ROW, **dict.fromkeys(TOP_K, density)})
        for name, scores in maps_for(target.sequence).items():
            precision = contact_precision(
                np.asarray(scores), target.contacts, min_separation, max_separation, target.valid
            )
            rows.append({"map": name, **precision})
    return pd.DataFrame(rows).groupby("map", sort=False)[list(TOP_K)].mean()


def last_layer_row(layers: int) -> str:
    return f"layer {layers} avg (full resolution)"


def check_features(
    structures: str | os.PathLike | None = None,
    config: extraction.FeatureConfig | None = None,
    plm: pretrained.ProteinLM | None = None,
) -> pd.DataFrame:
    """Long-range precision of the contact map a feature store keeps, on real structures.

    The premise checked end to end through the extraction code itself: each chain of
    ``structures`` (default: the 26 of ``shared/data/structures``) goes through
    :func:`extraction.compute` with ``config`` (default settings), and the stored uint8 contact
    triangle is expanded back to L x L and scored. For reference, the same pass yields the last
    layer's and all heads' APC averages at full resolution: the grid is set to L, where pooling
    is the identity, and the contact triangle does not depend on the grid. Rows are
    :data:`RANDOM_ROW`, :data:`STORED_CONTACT_ROW`, :func:`last_layer_row`, :data:`ALL_HEADS_ROW`.
    """
    config = config or extraction.FeatureConfig()
    if config.maps == "none":  # the check is of the maps: make them whatever the store's default
        config = dataclasses.replace(config, maps="layers")
    plm = plm or pretrained.load(config.model)
    targets = read_benchmark(structures if structures is not None else data_root() / "structures")

    def maps_for(sequence: str) -> dict[str, np.ndarray]:
        length = len(sequence)
        rows = extraction.compute(plm, dataclasses.replace(config, grid=length), ["chain"], [sequence])
        # channels after the contact map are per layer or per head, layer-major: average per layer
        layers = rows.maps[0, 1:].astype(np.float32).reshape(plm.num_layers, -1, length, length).mean(1)
        return {
            STORED_CONTACT_ROW: store.triangle_to_map(rows.contacts[0], length),
            last_layer_row(plm.num_layers): layers[-1],
            ALL_HEADS_ROW: layers.mean(0),
        }

    return evaluate_maps(targets, maps_for)
