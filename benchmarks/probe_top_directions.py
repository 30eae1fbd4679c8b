"""Probe (issue 18): residue embeddings transformed before the template search: top principal
components removed ("all-but-the-top") or partial whitening, fitted on the proxy's training residues.
Held-out rows of the proxy (N fold-like, N superfamily-like, seed 0); template search alone.

Run after ``coevofold quickstart`` (the store's layer-5 residues; the script transforms them itself)::

    python benchmarks/probe_top_directions.py 500 none:0,drop:8,drop:16,drop:32,whiten:8050,drop:12
    python benchmarks/probe_top_directions.py 200 none:0,drop:1,drop:2,drop:4,drop:8,whiten:25,whiten:50

``drop:K`` removes the top K directions; ``whiten:A`` (A < 1000) scales every direction by
eigenvalue^-(A/100); ``whiten:1000 x K + A`` drops K first. ~1 min a variant at N = 500 on 2 cores.
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
store_path = next((cache_dir() / "features").glob("deepsf-*.h5"))
table = tables.load("deepsf")
carved, _ = preparation.calibration_rows(table)
train = carved[carved["split"] == "train"].reset_index(drop=True)
rng = np.random.default_rng(0)
queries = {}
for kind in ["calibration_fold", "calibration_superfamily"]:
    rows = carved[carved["split"] == kind]
    queries[kind] = rows.iloc[rng.choice(len(rows), min(N, len(rows)), replace=False)].reset_index(drop=True)
t_res = store.read_rows(store_path, train["id"].tolist(), residues=True).residues
q_res = {k: store.read_rows(store_path, q["id"].tolist(), residues=True).residues for k, q in queries.items()}
folds = train["fold"].to_numpy()

sample = np.concatenate([r[rng.choice(len(r), min(len(r), 20), replace=False)] for r in t_res]).astype(np.float32)
mean = sample.mean(0)
cov = np.cov((sample - mean).T)
evals, evecs = np.linalg.eigh(cov)
evals, evecs = evals[::-1], evecs[:, ::-1]
print("top eigenvalues share:", np.round(evals[:8] / evals.sum(), 3), flush=True)


def transform(kind: str, k: int):
    if kind == "none":
        return lambda x: x.astype(np.float32)
    if kind == "drop":
        top = evecs[:, :k]
        return lambda x: (lambda c: c - (c @ top) @ top.T)(x.astype(np.float32) - mean)
    drop, alpha = divmod(k, 1000)
    alpha = alpha / 100
    scale = ((evecs / (evals ** alpha)) * (evals.mean() ** alpha))[:, drop:].astype(np.float32)
    return lambda x: (x.astype(np.float32) - mean) @ scale


VARIANTS = [(v.split(":")[0], int(v.split(":")[1])) for v in sys.argv[2].split(",")]
for kind, k in VARIANTS:
    t0 = time.time()
    f = transform(kind, k)
    rows = [f(r) for r in t_res]
    total = sum(len(r) for r in rows)
    center = (sum(r.astype(np.float64).sum(0) for r in rows) / total).astype(np.float32)
    units = [templates.unit_rows(r, center) for r in rows]
    del rows
    offsets = np.zeros(len(units) + 1, np.int64)
    offsets[1:] = np.cumsum([len(u) for u in units])
    built = templates.Templates(train["id"].to_numpy(), folds, offsets, np.concatenate([templates.quantised(u) for u in units]),
                                np.stack([templates.pooled_unit(u) for u in units]), center,
                                np.zeros((0, len(center)), np.float32))  # transformed here, not by the search
    del units
    search = templates.TemplateSearch(built)
    line = [f"{kind} {k}:"]
    for name, q in queries.items():
        hits = search.search([f(r) for r in q_res[name]], progress=False)
        line.append(f"{name} {np.mean(folds[hits.index[:, 0]] == q['fold'].to_numpy()) * 100:.1f}")
    print(" ".join(line), f"({time.time() - t0:.0f} s)", flush=True)
