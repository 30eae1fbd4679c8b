"""Probe (issue 18): affine gaps in the embedding alignment (open o, extend e; a gap of n costs
o + e (n - 1); linear 1.0 is o = e = 1). Held-out rows' prefiltered 300 templates + 50 decoys
rescored with each penalty; template search alone (top-1 fold of the best z).

    python benchmarks/probe_affine_gaps.py 2000 1:1,3:0.3,4:0.2,5:0.15,4:0.1
"""
from __future__ import annotations

import sys
import time

import numpy as np
from numba import njit, prange

from coevofold.data import tables
from coevofold.features import store
from coevofold.files import cache_dir
from coevofold.system import embedding_alignment as ea
from coevofold.system import preparation, templates


@njit(cache=True)
def affine_score(z, o, e):
    m, n = z.shape
    NEG = np.float32(-1e9)
    h = np.zeros(n + 1, np.float32)
    f = np.full(n + 1, NEG, np.float32)  # gap along i (vertical), per column
    best = np.float32(0)
    for i in range(m):
        diag = np.float32(0)
        left_h = np.float32(0)
        eg = NEG  # gap along j (horizontal)
        for j in range(n):
            up = h[j + 1]
            f[j + 1] = max(up - o, f[j + 1] - e)
            eg = max(left_h - o, eg - e)
            v = max(np.float32(0), diag + z[i, j], f[j + 1], eg)
            diag = up
            h[j + 1] = v
            left_h = v
            if v > best:
                best = v
    return best


@njit(cache=True, parallel=True)
def scores_for(q, vecs, offsets, chosen, o, e):
    out = np.empty(len(chosen), np.float32)
    for k in prange(len(chosen)):
        t = chosen[k]
        sim = np.ascontiguousarray(q @ vecs[offsets[t]:offsets[t + 1]].T)
        out[k] = affine_score(ea.zscore(sim), o, e)
    return out


N = int(sys.argv[1])
variants = [tuple(float(x) for x in v.split(":")) for v in sys.argv[2].split(",")]
store_path = next((cache_dir() / "features").glob("deepsf-*.h5"))
table = tables.load("deepsf")
carved, _ = preparation.calibration_rows(table)
train = carved[carved["split"] == "train"].reset_index(drop=True)
rng = np.random.default_rng(0)
rows = store.read_rows(store_path, train["id"].tolist(), residues=True)
built = templates.build_templates(rows, train["fold"].tolist())
del rows
vecs = built.vectors.astype(np.float32) / 127.0
search = templates.TemplateSearch(built)
folds = built.folds
for kind in ["calibration_fold", "calibration_superfamily"]:
    krows = carved[carved["split"] == kind]
    q = krows.iloc[rng.choice(len(krows), min(N, len(krows)), replace=False)].reset_index(drop=True)
    qres = store.read_rows(store_path, q["id"].tolist(), residues=True).residues
    hits = search.search(qres, progress=False)
    truth = q["fold"].to_numpy()
    right = {v: 0 for v in variants}
    t0 = time.time()
    for n, r in enumerate(qres):
        unit = np.rint(built.unit(r) * 127) / 127.0
        unit = unit.astype(np.float32)
        both = np.concatenate([hits.index[n], search.decoys]).astype(np.int64)
        norm = np.sqrt(len(unit) * built.lengths[both].astype(np.float64))
        for v in variants:
            s = scores_for(unit, vecs, built.offsets, both, np.float32(v[0]), np.float32(v[1])) / norm
            right[v] += folds[both[np.argmax(s[:len(hits.index[n])])]] == truth[n]
    print(kind, {f"{o}:{e}": round(100 * c / len(q), 1) for (o, e), c in right.items()},
          f"default kernel {np.mean(folds[hits.index[:, 0]] == truth) * 100:.1f}", f"({time.time() - t0:.0f} s)", flush=True)
