"""Features for people who want features only: esm's ``extract.py`` vocabulary, bio_embeddings' layout.

``coevofold extract --include mean per_tok contacts`` keeps the store (resumable, one row per
protein, what coevofold trains on) and writes beside it one HDF5 file per kind, as
bio_embeddings does: one dataset per sequence, named by its position in the store, with the
FASTA id in the ``original_id`` attribute (ids may hold characters HDF5 names cannot). The
kinds, named as esm's ``extract.py --include`` names them:

* ``mean``: the embedding layer's residues averaged, [D] float32;
* ``per_tok``: per-residue embeddings of the store's residue layer, [L, D] float16 (the layer
  the template search aligns; its index is the file's ``layer`` attribute);
* ``contacts``: the contact map, [L, L] float16 in [0, 1], symmetric (needs a store with maps).
"""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np

from coevofold.errors import CoevofoldError
from coevofold.features import store
from coevofold.files import atomic_path

#: what ``--include`` may name.
KINDS = ("mean", "per_tok", "contacts")


def export_path(store_path: str | os.PathLike, kind: str) -> Path:
    """Where ``kind`` goes beside the store: ``features.h5`` -> ``features.per_tok.h5``."""
    path = Path(store_path)
    return path.with_name(f"{path.stem}.{kind}{path.suffix or '.h5'}")


def _arrays(rows: store.FeatureRows, kind: str) -> list[np.ndarray]:
    if kind == "mean":
        return [np.asarray(m, dtype=np.float32) for m in rows.mean]
    if kind == "per_tok":
        return [np.asarray(r, dtype=np.float16) for r in rows.residues]
    return [store.triangle_to_map(t, len(s)).astype(np.float16) for t, s in zip(rows.contacts, rows.sequences)]


def export(store_path: str | os.PathLike, kinds: list[str]) -> dict[str, Path]:
    """Write each of ``kinds`` from the store, each file atomically; returns kind -> path."""
    if not kinds:  # the store is not read for nothing
        return {}
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise CoevofoldError(f"--include: unknown kind '{unknown[0]}' (known: {', '.join(KINDS)})")
    settings = store.read_settings(store_path)
    if "contacts" in kinds and settings.get("maps", "none") == "none":
        raise CoevofoldError(f"{store_path}: holds no contact maps (extracted with --maps none); "
                             "--include contacts needs --maps layers or heads")
    rows = store.read_rows(store_path, residues="per_tok" in kinds)
    layers = {"mean": settings["embedding_layer"], "per_tok": settings["residue_layer"], "contacts": "contact head"}
    model = store.read_model(store_path)
    written = {}
    for kind in dict.fromkeys(kinds):
        path = export_path(store_path, kind)
        with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
            f.attrs.update(kind=kind, layer=layers[kind], model=model)
            for n, (record_id, array) in enumerate(zip(rows.ids, _arrays(rows, kind))):
                dataset = f.create_dataset(str(n), data=array)
                dataset.attrs["original_id"] = record_id
        written[kind] = path
    return written
