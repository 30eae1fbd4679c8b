"""The feature store: one HDF5 file of fixed-shape arrays, one row per protein.

Layout (all row-aligned; N proteins, C map channels, P grid, B bins, D embedding size)::

    id [N] str, sequence [N] str, length [N] int32
    maps [N, C, P, P] float16        pooled APC maps (the CNN's 2D input; C = 0 without maps)
    embedding [N, B, D] float16       per-residue embeddings pooled to B segments (1D input)
    mean [N, D] float32               mean embedding (classical baselines)
    layers [N, H, D] float16          mean embedding of every hidden layer (H = layers + 1)
    contact [sum L(L-1)/2] uint8      full-resolution contact map, upper triangle, p * 255 (empty
                                      without maps)
    contact_offset [N + 1] int64      where each protein's triangle starts in ``contact``
    residue [sum L, R] float16        per-residue embeddings of one layer (the template search's
                                      input), protein after protein; ``length`` says where each starts
    attrs: format, settings (JSON), coevofold_version, model (the name it was loaded by)

Crash safety does not rely on HDF5 (which can corrupt a file killed mid-write): extraction
writes small *part* files into ``STORE.parts/``, each made under a temporary name and renamed
when complete, and a merge writes a new store the same way. A kill at any moment leaves the old
store and every finished part intact; the next run skips what they hold.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from coevofold import __version__
from coevofold.errors import CoevofoldError
from coevofold.files import atomic_path

STORE_FORMAT = 3
_ROW_ARRAYS = ("maps", "embedding", "mean", "layers")
_COMPRESSION = {"compression": "gzip", "compression_opts": 4, "shuffle": True}
#: rows per compressed chunk of the row arrays: two, so reading a few rows decompresses little
#: more than those (1: faster still, but whole reads slow down; stores written with 64-row
#: chunks stay readable, at about the old speed for a few rows).
_CHUNK_ROWS = 2
#: bytes per compressed chunk of the flat contact array (a protein's triangle is ~20 kB).
_CONTACT_CHUNK = 1 << 14
#: residues per chunk of the per-residue array (uncompressed: fp16 embeddings barely compress and
#: gzip would cost more time than the read saves): ~2.6 MB with 320 dimensions.
_RESIDUE_CHUNK = 4096


@dataclass
class FeatureRows:
    """Features of several proteins, row-aligned, as extraction produces and training reads."""

    ids: list[str]
    sequences: list[str]
    maps: np.ndarray
    embedding: np.ndarray
    mean: np.ndarray
    contacts: list[np.ndarray]  # upper triangles, uint8
    layers: np.ndarray  # [N, H, D] per-layer mean embeddings
    #: [L, R] float16 per protein; empty when read without them (``read_rows(residues=False)``).
    residues: list[np.ndarray] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ids)

    @staticmethod
    def concat(parts: list[FeatureRows]) -> FeatureRows:
        return FeatureRows(
            ids=[i for p in parts for i in p.ids],
            sequences=[s for p in parts for s in p.sequences],
            maps=np.concatenate([p.maps for p in parts]),
            embedding=np.concatenate([p.embedding for p in parts]),
            mean=np.concatenate([p.mean for p in parts]),
            contacts=[c for p in parts for c in p.contacts],
            layers=np.concatenate([p.layers for p in parts]),
            residues=[r for p in parts for r in p.residues],
        )

    def select(self, order: Iterable[int]) -> FeatureRows:
        order = list(order)
        return FeatureRows(
            ids=[self.ids[i] for i in order],
            sequences=[self.sequences[i] for i in order],
            maps=self.maps[order],
            embedding=self.embedding[order],
            mean=self.mean[order],
            contacts=[self.contacts[i] for i in order],
            layers=self.layers[order],
            residues=[self.residues[i] for i in order] if self.residues else [],
        )


def _write(path: Path, rows: FeatureRows, settings: dict, model: str) -> None:
    """Write rows to a new HDF5 file at ``path`` (the caller makes it atomic)."""
    with h5py.File(path, "w") as f:
        _write_listed(f, settings, model, rows.ids, rows.sequences, rows.contacts, rows.residues)
        for name in _ROW_ARRAYS:
            array = getattr(rows, name)
            dataset = _row_dataset(f, name, array.shape, array.dtype)
            if array.size:
                dataset[...] = array


def _row_dataset(f: h5py.File, name: str, shape: tuple[int, ...], dtype: np.dtype) -> h5py.Dataset:
    """A row array's dataset: gzip chunks of :data:`_CHUNK_ROWS` rows (unchunked when empty:
    HDF5 chunks must not be)."""
    if not int(np.prod(shape)):
        return f.create_dataset(name, shape=shape, dtype=dtype)
    return f.create_dataset(name, shape=shape, dtype=dtype, chunks=(min(shape[0], _CHUNK_ROWS), *shape[1:]),
                            **_COMPRESSION)


def _write_listed(f: h5py.File, settings: dict, model: str, ids: list[str], sequences: list[str],
                  contacts: list[np.ndarray], residues: list[np.ndarray]) -> None:
    """The attributes and everything but the row arrays: ids, sequences, lengths, the flat
    contact triangles and the flat per-residue embeddings."""
    strings = h5py.string_dtype()
    f.attrs["format"] = STORE_FORMAT
    f.attrs["settings"] = json.dumps(settings, sort_keys=True)
    f.attrs["coevofold_version"] = __version__
    f.attrs["model"] = model  # informative only: the weights hash in settings is the identity
    f.create_dataset("id", data=np.array(ids, dtype=object), dtype=strings)
    f.create_dataset("sequence", data=np.array(sequences, dtype=object), dtype=strings)
    f.create_dataset("length", data=np.array([len(s) for s in sequences], dtype=np.int32))
    offsets = np.zeros(len(ids) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([c.size for c in contacts])
    flat = np.concatenate(contacts) if contacts else np.zeros(0, np.uint8)
    f.create_dataset("contact", data=flat, **({"chunks": (min(flat.size, _CONTACT_CHUNK),), **_COMPRESSION}
                                             if flat.size else {}))
    f.create_dataset("contact_offset", data=offsets)
    if len(residues) != len(ids):
        raise ValueError("rows without their per-residue embeddings cannot be written")
    width = residues[0].shape[1] if residues else 0
    residue = np.concatenate(residues) if residues else np.zeros((0, width), np.float16)
    f.create_dataset("residue", data=residue.astype(np.float16, copy=False),
                     chunks=(min(max(len(residue), 1), _RESIDUE_CHUNK), max(width, 1)) if width else None)


def write_file(path: str | os.PathLike, rows: FeatureRows, settings: dict, model: str = "") -> None:
    """Write a complete store or part file atomically."""
    with atomic_path(path) as tmp:
        _write(tmp, rows, settings, model)


def _open(path: Path) -> h5py.File:
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise CoevofoldError(
            f"{path}: unreadable or truncated feature store ({str(exc).splitlines()[0][:120]}); "
            "delete it and extract again"
        ) from None
    found = f.attrs.get("format")
    if found != STORE_FORMAT or "settings" not in f.attrs:
        f.close()
        if isinstance(found, (int, np.integer)) and found < STORE_FORMAT:
            raise CoevofoldError(f"{path}: feature store of an older coevofold (format {found}, now {STORE_FORMAT}: "
                                 "it lacks per-residue embeddings); delete it and extract again")
        raise CoevofoldError(f"{path}: not a coevofold feature store (format {STORE_FORMAT})")
    return f


def read_settings(path: str | os.PathLike) -> dict:
    with _open(Path(path)) as f:
        return json.loads(f.attrs["settings"])


def read_model(path: str | os.PathLike) -> str:
    """The pLM a store says made it, in words (``ProteinLM.label``; informative, not its identity)."""
    with _open(Path(path)) as f:
        return str(f.attrs.get("model", ""))


def check_settings(path: str | os.PathLike, found: dict, wanted: dict) -> None:
    """Refuse to mix features made by another model or other settings into one store."""
    if found != wanted:
        diffs = [f"{k}: {found.get(k)!r} there, {wanted.get(k)!r} now"
                 for k in sorted(set(found) | set(wanted)) if found.get(k) != wanted.get(k)]
        raise CoevofoldError(
            f"{path}: made with other settings ({'; '.join(diffs)}); use another --out or delete it"
        )


def read_ids(path: str | os.PathLike) -> dict[str, str]:
    """id -> sequence of the proteins a store or part file holds."""
    with _open(Path(path)) as f:
        return dict(zip(f["id"].asstr()[()], f["sequence"].asstr()[()]))


def read_rows(path: str | os.PathLike, ids: list[str] | None = None, residues: bool = False) -> FeatureRows:
    """Load (some of) a store into memory; ``ids`` picks and orders rows.

    Per-residue embeddings (about 70 % of a store's bytes) are read only with ``residues``: the
    classifiers never need them, the template search and a merge do.
    """
    path = Path(path)
    with _open(path) as f:
        try:
            stored = list(f["id"].asstr()[()])
            index = {i: n for n, i in enumerate(stored)}
            if ids is None:
                order = np.arange(len(stored))
            else:
                missing = [i for i in ids if i not in index]
                if missing:
                    raise CoevofoldError(f"{path}: no features for '{missing[0]}' ({len(missing)} ids missing); extract them first")
                order = np.array([index[i] for i in ids], dtype=np.int64)
            few = 2 * len(order) < len(stored)  # a few rows: decompress only the chunks they lie in
            sequences, contacts, kept = _listed(f, order, few, residues)
            if few:
                arrays = {name: _take(f[name], order) for name in _ROW_ARRAYS}
            else:
                arrays = {name: array[order] for name, array in _whole_arrays(path, f).items()}
            rows = FeatureRows(ids=[stored[n] for n in order], sequences=sequences, contacts=contacts,
                               residues=kept, **arrays)
        except (KeyError, OSError, ValueError) as exc:
            raise CoevofoldError(f"{path}: damaged feature store ({exc}); delete it and extract again") from None
    return rows


#: the last store's whole row arrays, decompressed, keyed by the file's identity: see :func:`_whole_arrays`.
_WHOLE: dict[tuple, dict[str, np.ndarray]] = {}


def _whole_arrays(path: Path, f: h5py.File) -> dict[str, np.ndarray]:
    """Every row array of ``f`` read whole, kept for the next whole read of the same, unchanged file.

    A quickstart reads the whole store's row arrays a dozen times (each member, the proxy, every
    scoring): each read decompressed ~430 MB of gzip chunks again, ~80 s of the main job in all
    (py-spy, issue 19). One store is kept (~430 MB for DeepSF). The key is the file's path, inode,
    times and size: a store rewritten (a merge writes a new file and renames it) is read afresh.
    Callers index the arrays, which copies, so the kept ones never change.
    """
    stat = path.stat()
    key = (str(path.resolve()), stat.st_ino, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_size)
    if key not in _WHOLE:
        _WHOLE.clear()
        _WHOLE[key] = {name: f[name][()] for name in _ROW_ARRAYS}
    return _WHOLE[key]


def _listed(f: h5py.File, order: np.ndarray, few: bool,
            residues: bool) -> tuple[list[str], list[np.ndarray], list[np.ndarray]]:
    """Sequences, contact triangles and (with ``residues``) per-residue embeddings of the rows
    ``order``: each flat array read whole unless ``few``, when only the rows' slices are read."""
    sequences = f["sequence"].asstr()[()]
    offsets = f["contact_offset"][()]
    contact = f["contact"] if few else f["contact"][()]
    contacts = [np.asarray(contact[offsets[n]:offsets[n + 1]]) for n in order]
    return [sequences[n] for n in order], contacts, _residues(f, order, few) if residues else []


def _residues(f: h5py.File, order: np.ndarray, few: bool) -> list[np.ndarray]:
    """Each row's [L, R] slice of the flat per-residue array (all of it read at once unless ``few``)."""
    starts = np.zeros(len(f["length"]) + 1, dtype=np.int64)
    starts[1:] = np.cumsum(f["length"][()])
    residue = f["residue"]
    if len(residue) != starts[-1]:
        raise ValueError(f"{len(residue)} per-residue rows for {starts[-1]} residues")
    if not few:
        residue = residue[()]
    return [np.asarray(residue[starts[n]:starts[n + 1]]) for n in order]


def _take(dataset: h5py.Dataset, order: np.ndarray) -> np.ndarray:
    """``dataset[()][order]``, reading only the chunks that hold rows of ``order``."""
    unique, inverse = np.unique(order, return_inverse=True)
    step = dataset.chunks[0] if dataset.chunks else len(dataset)
    out = np.empty((len(unique), *dataset.shape[1:]), dtype=dataset.dtype)
    blocks = unique // max(step, 1)
    starts = np.flatnonzero(np.r_[True, blocks[1:] != blocks[:-1]]) if len(unique) else np.zeros(0, np.int64)
    for a, b in zip(starts, [*starts[1:], len(unique)]):
        first = int(blocks[a]) * step
        out[a:b] = dataset[first:first + step][unique[a:b] - first]
    return out[inverse.reshape(-1)]


def triangle_to_map(triangle: np.ndarray, length: int) -> np.ndarray:
    """Expand a stored uint8 upper triangle back to a symmetric [L, L] float map in [0, 1]."""
    full = np.zeros((length, length), dtype=np.float32)
    rows, cols = np.triu_indices(length, 1)
    full[rows, cols] = triangle / 255.0
    full[cols, rows] = full[rows, cols]
    return full


def map_to_triangle(scores: np.ndarray) -> np.ndarray:
    """Quantize a symmetric [L, L] map in [0, 1] to its uint8 upper triangle."""
    rows, cols = np.triu_indices(scores.shape[0], 1)
    return np.clip(np.rint(scores[rows, cols] * 255), 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------- parts & merge


def parts_dir(store: str | os.PathLike) -> Path:
    return Path(f"{store}.parts")


def done_ids(store: str | os.PathLike, settings: dict) -> dict[str, str]:
    """Proteins already extracted into the store or its finished parts, after checking settings.

    Leftover temporary files from a killed run (of parts, or of a merge) are removed; they were
    never complete.
    """
    store = Path(store)
    for leftover in store.parent.glob(f".{glob.escape(store.name)}.*.tmp"):
        leftover.unlink(missing_ok=True)
    done: dict[str, str] = {}
    if store.exists():
        check_settings(store, read_settings(store), settings)
        done.update(read_ids(store))
    parts = parts_dir(store)
    if parts.is_dir():
        for leftover in parts.glob(".*.tmp"):
            leftover.unlink(missing_ok=True)
        for part in sorted(parts.glob("*.h5")):
            check_settings(store, read_settings(part), settings)
            done.update(read_ids(part))
    return done


def merge(store: str | os.PathLike, settings: dict, model: str = "") -> int:
    """Fold finished parts into the store (atomically) and remove them; returns rows added.

    A row already in the store (or an earlier part) keeps its first copy. The row arrays' gzip
    chunks are copied as they are wherever both rows of a chunk are kept (:func:`_write_merged`):
    recompressing them was a third of DeepSF's merge (benchmarks/store_merge.py: 28-34 s before, 18-20 s now).
    """
    store = Path(store)
    parts = sorted(parts_dir(store).glob("*.h5")) if parts_dir(store).is_dir() else []
    if not parts:
        return 0
    sources = [store] * store.exists() + parts
    with contextlib.ExitStack() as stack:
        files = [stack.enter_context(_open(source)) for source in sources]
        try:
            ids = [list(f["id"].asstr()[()]) for f in files]
            before = len(ids[0]) if len(sources) > len(parts) else 0
            seen: set[str] = set()
            keep = [np.array([not (i in seen or seen.add(i)) for i in found], dtype=bool) for found in ids]
            with atomic_path(store) as tmp:
                _write_merged(tmp, files, ids, keep, settings, model)
        except (KeyError, OSError, ValueError) as exc:
            if isinstance(exc, OSError) and exc.errno is not None:  # the disk, not the files (ENOSPC)
                raise
            raise CoevofoldError(f"{sources[0]}: damaged feature store or part ({exc}); delete it and extract again") from None
    shutil.rmtree(parts_dir(store))
    return len(seen) - before


def _write_merged(path: Path, files: list[h5py.File], ids: list[list[str]], keep: list[np.ndarray],
                  settings: dict, model: str) -> None:
    """Write the ``keep`` rows of ``files`` (in order) as one store at ``path``.

    Row-array chunks whose two rows are both kept, in a file whose chunks are laid out as the new
    store's, are copied compressed (HDF5 direct chunk I/O), in order; the other kept rows (a
    part's odd last row, a dropped duplicate's partner, stores of another chunking) follow them,
    read and compressed anew. Every other dataset is small or uncompressed and written afresh in
    the same row order.
    """
    total = int(sum(k.sum() for k in keep))
    with h5py.File(path, "w") as out:
        first = files[0]
        made = {name: _row_dataset(out, name, (total, *first[name].shape[1:]), first[name].dtype)
                for name in _ROW_ARRAYS}
        chunked = [name for name in _ROW_ARRAYS if made[name].chunks is not None]
        step = made[chunked[0]].chunks[0] if chunked else 1
        copied: list[tuple[int, int]] = []  # (file, first row) of each chunk copied whole
        rest: list[tuple[int, np.ndarray]] = []  # (file, rows) read and written anew
        for n, (f, kept) in enumerate(zip(files, keep)):
            whole = np.zeros(len(kept), dtype=bool)
            if chunked and all(_same_layout(f[name], made[name]) for name in chunked):
                full = kept[: len(kept) // step * step].reshape(-1, step).all(axis=1)
                whole[: len(full) * step] = np.repeat(full, step)
                copied += [(n, step * c) for c in np.flatnonzero(full)]
            rest.append((n, np.flatnonzero(kept & ~whole)))
        for name in chunked:
            target, zeros = made[name].id, (0,) * (made[name].ndim - 1)
            sources = [f[name].id for f in files]  # one lookup per file, not per chunk (25,000: 2.4 s)
            for c, (n, row) in enumerate(copied):
                mask, chunk = sources[n].read_direct_chunk((row, *zeros))
                target.write_direct_chunk((step * c, *zeros), chunk, mask)
            tail = [_take(files[n][name], rows) for n, rows in rest if len(rows)]
            if tail:
                made[name][step * len(copied):] = np.concatenate(tail)
        order = [(n, np.arange(row, row + step)) for n, row in copied] + rest
        listed = [_listed(f, np.arange(len(found)), False, True) for f, found in zip(files, ids)]
        picked = [(ids[n][r], *(column[r] for column in listed[n])) for n, rows in order for r in rows]
        _write_listed(out, settings, model, *(list(column) for column in zip(*picked)) if picked else ([],) * 4)


def _same_layout(source: h5py.Dataset, target: h5py.Dataset) -> bool:
    """Whether ``source``'s compressed chunks can be copied into ``target`` as they are."""
    return (source.chunks == target.chunks and source.dtype == target.dtype and source.shape[1:] == target.shape[1:]
            and (source.compression, source.compression_opts, source.shuffle, source.fletcher32, source.scaleoffset)
            == (target.compression, target.compression_opts, target.shuffle, target.fletcher32, target.scaleoffset))
