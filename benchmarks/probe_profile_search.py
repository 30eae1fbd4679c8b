"""Probe (issue 18, not kept): a second, profile search, PSI-BLAST style, with residue embeddings.

The query's unit residue vectors plus w x the aligned residues of its top-m templates (z >= z0)
make a profile; the profile is searched again. Held-out rows of the proxy only (its templates).
Top-1 fold of the template search alone: first search, second search, and max of both per fold.

Run after ``coevofold quickstart``: ``python benchmarks/probe_profile_search.py [200]`` (~2 min on 2 cores).
"""
from __future__ import annotations

import sys
import time

import numpy as np

from coevofold.data import tables
from coevofold.features import store
from coevofold.files import cache_dir
from coevofold.system import preparation, templates

N = int(sys.argv[1]) if len(sys.argv) > 1 else 200
folder = cache_dir() / "models" / "default" / preparation.PROXY_DIR
found = templates.load_templates(folder, in_memory=True)
search = templates.TemplateSearch(found)
store_path = next((cache_dir() / "features").glob("deepsf-*.h5"))

table = tables.load("deepsf")
carved, kinds = preparation.calibration_rows(table)
rng = np.random.default_rng(0)
folds = found.folds


def profile(residues: np.ndarray, index: np.ndarray, z: np.ndarray, m: int, z0: float, w: float) -> np.ndarray:
    unit = templates.unit_rows(residues, found.center)
    acc = unit.copy()
    for t, zt in zip(index[:m], z[:m]):
        if zt < z0:
            break
        _, pairs = search.align(residues, int(t))
        pairs = np.asarray(pairs)
        if len(pairs) == 0:
            continue
        tv = found.vectors[found.offsets[t]:found.offsets[t + 1]].astype(np.float32) / 127.0
        acc[pairs[:, 0]] += w * tv[pairs[:, 1]]
    return acc + found.center


SETTINGS = [(3, 5.0, 1.0), (5, 5.0, 0.5), (1, 5.0, 1.0), (5, 3.0, 0.5), (10, 5.0, 0.3)]
for kind in ["calibration_fold", "calibration_superfamily"]:
    rows = carved[carved["split"] == kind]
    q = rows.iloc[rng.choice(len(rows), min(N, len(rows)), replace=False)].reset_index(drop=True)
    res = store.read_rows(store_path, q["id"].tolist(), residues=True).residues
    truth = q["fold"].to_numpy()
    t0 = time.time()
    first = [search.search_one(r) for r in res]
    print(f"{kind}: first search {np.mean([folds[f[0][0]] == y for f, y in zip(first, truth)]) * 100:.1f} "
          f"({time.time() - t0:.0f} s)", flush=True)
    for m, z0, w in SETTINGS:
        t0 = time.time()
        right2 = rightmax = 0
        for r, f, y in zip(res, first, truth):
            idx, z, _ = f
            if z[0] < z0:
                right2 += folds[idx[0]] == y
                rightmax += folds[idx[0]] == y
                continue
            idx2, z2, _ = search.search_one(profile(r, idx, z, m, z0, w))
            right2 += folds[idx2[0]] == y
            best = {}
            for a, b in ((idx, z), (idx2, z2)):
                for t, zz in zip(a, b):
                    best[folds[t]] = max(best.get(folds[t], -1e9), zz)
            rightmax += max(best, key=best.get) == y
        print(f"  m={m} z0={z0} w={w}: second {right2 / len(res) * 100:.1f}, max of both {rightmax / len(res) * 100:.1f} "
              f"({time.time() - t0:.0f} s)", flush=True)
