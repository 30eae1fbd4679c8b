"""Time of ``store.merge``, which ends every extraction: recompressing (before) against copying chunks (now).

Run: ``python benchmarks/store_merge.py [STORE] [--part-size 256]`` (STORE defaults to the cached
DeepSF store, ``~/.cache/coevofold/features/deepsf-*.h5``; ~1.5 min on 2 cores; measured 28-34 s against 18-20 s, 1.5-1.7x).

The script cuts STORE into part files of ``--part-size`` rows, as extraction leaves them (its
``RunConfig.part_size``), in a temporary folder; then merges them twice: as the merge did before
chunk copying (every part read whole, decompressed, and the store written and
compressed anew, reimplemented below from the public functions) and with ``store.merge``
(the row arrays' gzip chunks copied as they are). It checks both stores hold the same rows and
prints both times and their ratio.
"""

from __future__ import annotations

import argparse
import glob
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from coevofold.features import store
from coevofold.files import cache_dir


def merge_before(target: Path, parts: list[Path], settings: dict) -> None:
    """The merge before chunk copying: read every part whole, concatenate, write and compress."""
    store.write_file(target, store.FeatureRows.concat([store.read_rows(p, residues=True) for p in parts]), settings)


def _same(a: store.FeatureRows, b: store.FeatureRows) -> bool:
    return (a.ids == b.ids and a.sequences == b.sequences
            and all(np.array_equal(getattr(a, k), getattr(b, k)) for k in ("maps", "embedding", "mean", "layers"))
            and all(np.array_equal(x, y) for x, y in zip(a.contacts, b.contacts))
            and all(np.array_equal(x, y) for x, y in zip(a.residues, b.residues)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("store", nargs="?", help="a feature store (default: the cached DeepSF store)")
    parser.add_argument("--part-size", type=int, default=256, help="rows per part file (default: 256, extraction's)")
    args = parser.parse_args()
    path = Path(args.store or sorted(glob.glob(str(cache_dir() / "features" / "deepsf-*.h5")))[-1])
    settings = store.read_settings(path)
    rows = store.read_rows(path, residues=True)
    print(f"{path}: {len(rows)} rows, parts of {args.part_size}")
    with tempfile.TemporaryDirectory(dir=path.parent) as folder:
        parts = []
        for n, start in enumerate(range(0, len(rows), args.part_size)):
            parts.append(Path(folder) / "cut.h5.parts" / f"part-{n:04d}.h5")
            store.write_file(parts[-1], rows.select(range(start, min(start + args.part_size, len(rows)))), settings)
        started = time.perf_counter()
        merge_before(Path(folder) / "before.h5", parts, settings)
        before = time.perf_counter() - started
        copy = Path(folder) / "now.h5.parts"
        shutil.copytree(parts[0].parent, copy)
        started = time.perf_counter()
        store.merge(Path(folder) / "now.h5", settings)
        now = time.perf_counter() - started
        ids = rows.ids
        same = _same(store.read_rows(Path(folder) / "before.h5", ids, residues=True),
                     store.read_rows(Path(folder) / "now.h5", ids, residues=True))
    print(f"merge of {len(parts)} parts: before (decompress + recompress) {before:.1f} s, "
          f"now (chunks copied) {now:.1f} s: {before / now:.1f}x; same rows: {same}")


if __name__ == "__main__":
    main()
