"""Time of ``store.read_rows`` for a few hundred rows of the DeepSF store: before and now.

Run: ``python benchmarks/read_rows.py [STORE] [--rows 700] [--repeats 3]`` (STORE defaults to
the cached DeepSF store, ``~/.cache/coevofold/features/deepsf-*.h5``).

"Before" is ``read_rows`` as of commit 5215ece, reimplemented below (that commit's store
lacked the ``layers`` dataset; it is read the same way as the other arrays): it decompresses
every dataset whole to pick its rows. "Now" reads only the chunks holding the requested rows.
Stores used to be written in 64-row chunks, and rows of one split are spread over almost all
of them (extraction writes parts in length order), so the gain needs the store as it is
written now (2-row chunks): the script writes that copy of STORE into a temporary folder and
times both implementations on both layouts, checks they return identical rows, and prints
the ratio before (old code, old layout) / now (new code, new layout).
"""

from __future__ import annotations

import argparse
import glob
import os
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

from coevofold.features import store
from coevofold.files import cache_dir


def read_rows_5215ece(path: str | os.PathLike, ids: list[str]) -> store.FeatureRows:
    """``store.read_rows`` at commit 5215ece (plus the ``layers`` dataset, read alike)."""
    with h5py.File(path, "r") as f:
        stored = list(f["id"].asstr()[()])
        index = {i: n for n, i in enumerate(stored)}
        order = np.array([index[i] for i in ids], dtype=np.int64)
        sequences = f["sequence"].asstr()[()]
        offsets = f["contact_offset"][()]
        flat = f["contact"][()]
        return store.FeatureRows(
            ids=[stored[n] for n in order],
            sequences=[sequences[n] for n in order],
            maps=f["maps"][()][order],
            embedding=f["embedding"][()][order],
            mean=f["mean"][()][order],
            contacts=[flat[offsets[n]:offsets[n + 1]] for n in order],
            layers=f["layers"][()][order],
        )


def _same(a: store.FeatureRows, b: store.FeatureRows) -> bool:
    return (a.ids == b.ids and list(a.sequences) == list(b.sequences)
            and all(np.array_equal(getattr(a, k), getattr(b, k)) for k in ("maps", "embedding", "mean", "layers"))
            and all(np.array_equal(x, y) for x, y in zip(a.contacts, b.contacts)))


def _best(function, path: Path, ids: list[str], repeats: int) -> tuple[float, store.FeatureRows]:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        rows = function(path, ids)
        times.append(time.perf_counter() - started)
    return min(times), rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("store", nargs="?", help="feature store (default: the cached DeepSF store)")
    parser.add_argument("--rows", type=int, default=700, help="rows to read (random, seed 0)")
    parser.add_argument("--repeats", type=int, default=3, help="timings per case; the best is reported")
    args = parser.parse_args()
    found = sorted(glob.glob(str(cache_dir() / "features" / "deepsf-*.h5")))
    path = Path(args.store or (found[-1] if found else ""))
    if not path.is_file():
        parser.error("no feature store: pass its path, or extract DeepSF first (coevofold quickstart)")
    everything = store.read_rows(path)
    ids = [everything.ids[n] for n in np.random.default_rng(0).choice(len(everything), args.rows, replace=False)]
    ids_all = list(everything.ids)
    with h5py.File(path, "r") as f:
        model, chunks = str(f.attrs.get("model", "")), f["maps"].chunks
    with tempfile.TemporaryDirectory(prefix="read-rows-", dir=path.parent) as tmp:
        rewritten = Path(tmp) / path.name
        started = time.perf_counter()
        store.write_file(rewritten, everything, store.read_settings(path), model)
        print(f"{path}: {len(everything)} proteins, maps chunks {chunks}; rewritten as now "
              f"(maps chunks {h5py.File(rewritten, 'r')['maps'].chunks}) in {time.perf_counter() - started:.0f} s")
        del everything
        cases = {}
        for layout, file in (("old layout", path), ("new layout", rewritten)):
            for code, function in (("5215ece", read_rows_5215ece), ("now", store.read_rows)):
                cases[code, layout] = _best(function, file, ids, args.repeats)
                print(f"read_rows({args.rows} rows), {code:7s} code, {layout}: {cases[code, layout][0]:.2f} s")
        reference = cases["5215ece", "old layout"][1]
        assert all(_same(reference, rows) for _, rows in cases.values()), "implementations disagree"
        del cases["5215ece", "new layout"], reference
        many = ids_all[: 3 * len(ids_all) // 4]  # a training split's share: the whole-dataset path
        for layout, file in (("old layout", path), ("new layout", rewritten)):
            print(f"read_rows({len(many)} rows), now     code, {layout}: {_best(store.read_rows, file, many, 1)[0]:.2f} s")
    before, now = cases["5215ece", "old layout"][0], cases["now", "new layout"][0]
    print(f"identical rows from all four; load average {os.getloadavg()[0]:.2f}")
    print(f"ratio 5215ece (old layout) / now (new layout): {before / now:.1f}x "
          f"(now on the old layout: {before / cases['now', 'old layout'][0]:.1f}x)")


if __name__ == "__main__":
    main()
