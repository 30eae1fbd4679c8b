"""Probe (issue 18): a supervised linear map of the residue embeddings before the template search,
fitted on the proxy's training rows only: residue pairs aligned between training domains of one
superfamily (different families) give the within-pair covariance S_w; the generalized eigenvectors
of (S_t, S_w + a I) keep directions where homologous residues agree more than residues in general
(LDA / KISSME-like metric). Evaluated on held-out rows (N fold-like, N superfamily-like, seed 0), template search alone.

    python benchmarks/probe_residue_metric.py 300 base,lda:312:0.1,lda:128:0.1,ww:0.1:0.5,sub:280:0.1 3000
"""
from __future__ import annotations

import sys
import time

import numpy as np

from coevofold.data import tables
from coevofold.features import store
from coevofold.files import cache_dir
from coevofold.system import embedding_alignment as ea
from coevofold.system import preparation, templates

N = int(sys.argv[1]) if len(sys.argv) > 1 else 200
PAIRS = int(sys.argv[3]) if len(sys.argv) > 3 else 3000
store_path = next((cache_dir() / "features").glob("deepsf-*.h5"))
table = tables.load("deepsf")
carved, _ = preparation.calibration_rows(table)
train = carved[carved["split"] == "train"].reset_index(drop=True)
rng = np.random.default_rng(0)
queries = {}
for kind in ["calibration_fold", "calibration_superfamily"]:
    rows = carved[carved["split"] == kind]
    queries[kind] = rows.iloc[rng.choice(len(rows), min(N, len(rows)), replace=False)].reset_index(drop=True)
t0 = time.time()
t_res = store.read_rows(store_path, train["id"].tolist(), residues=True).residues
q_res = {k: store.read_rows(store_path, q["id"].tolist(), residues=True).residues for k, q in queries.items()}
folds = train["fold"].to_numpy()
total = sum(len(r) for r in t_res)
center = (sum(r.astype(np.float64).sum(0) for r in t_res) / total).astype(np.float32)
removed = templates.top_directions(t_res, center)
units = [templates.unit_rows(r, center, removed) for r in t_res]
print(f"read + base units {time.time() - t0:.0f} s", flush=True)

# positive residue pairs: domains of one superfamily, different families (proxy training rows only)
t0 = time.time()
sf, fam = train["superfamily"].to_numpy(), train["family"].to_numpy()
by_sf: dict = {}
for i, s in enumerate(sf):
    by_sf.setdefault(s, []).append(i)
eligible = [i for i in range(len(train)) if any(fam[j] != fam[i] for j in by_sf[sf[i]])]
print(f"{len(eligible)} training domains with a same-superfamily other-family partner", flush=True)
picked = rng.choice(eligible, min(PAIRS, len(eligible)), replace=False)
diffs, scores = [], []
for i in picked:
    others = [j for j in by_sf[sf[i]] if fam[j] != fam[i]]
    j = others[rng.integers(len(others))]
    sim = np.ascontiguousarray(units[i] @ units[j].T)
    score, pairs = ea.local_alignment(ea.zscore(sim), 1.0)
    scores.append(score / np.sqrt(len(units[i]) * len(units[j])))
    if len(pairs):
        diffs.append(units[i][pairs[:, 0]] - units[j][pairs[:, 1]])
diffs = np.concatenate(diffs).astype(np.float64)
s_w = diffs.T @ diffs / len(diffs)
sample = np.concatenate([u[rng.choice(len(u), min(len(u), 20), replace=False)] for u in units]).astype(np.float64)
s_t = 2 * np.cov(sample.T)
print(f"{len(diffs)} aligned pairs from {len(picked)} alignments (median normalised score {np.median(scores):.2f}); "
      f"trace S_w / S_t {np.trace(s_w) / np.trace(s_t):.3f}; {time.time() - t0:.0f} s", flush=True)
del sample


def lda(d: int, a: float) -> np.ndarray:
    import scipy.linalg
    dim = len(s_w)
    reg = s_w + a * np.trace(s_w) / dim * np.eye(dim) 
    # directions in the span left by the removed ones: add a large within-variance on removed directions
    reg += 10 * np.trace(s_w) / dim * (removed.T.astype(np.float64) @ removed.astype(np.float64))
    evals, evecs = scipy.linalg.eigh(s_t, reg)
    order = np.argsort(-evals)[:d]
    print(f"  lda {d} {a}: top ratios {np.round(evals[order[:5]], 2)}, last {evals[order[-1]]:.2f}", flush=True)
    return evecs[:, order].astype(np.float32)


def whiten_w(a: float, power: float) -> np.ndarray:
    dim = len(s_w)
    reg = s_w + a * np.trace(s_w) / dim * np.eye(dim)
    evals, evecs = np.linalg.eigh(reg)
    return (evecs * evals ** -power).astype(np.float32)


for variant in sys.argv[2].split(","):
    t0 = time.time()
    name, *args = variant.split(":")
    if name == "base":
        proj = None
    elif name == "lda":
        proj = lda(int(args[0]), float(args[1]))
    elif name == "sub":
        proj = np.linalg.qr(lda(int(args[0]), float(args[1])))[0].astype(np.float32)
    elif name == "ww":
        proj = whiten_w(float(args[0]), float(args[1]))
    f = (lambda u: u) if proj is None else (lambda u: u @ proj)
    rows = [f(u) for u in units]
    c2 = (sum(r.astype(np.float64).sum(0) for r in rows) / total).astype(np.float32)
    tu = [templates.unit_rows(r, c2) for r in rows]
    del rows
    offsets = np.zeros(len(tu) + 1, np.int64)
    offsets[1:] = np.cumsum([len(u) for u in tu])
    built = templates.Templates(train["id"].to_numpy(), folds, offsets, np.concatenate([templates.quantised(u) for u in tu]),
                                np.stack([templates.pooled_unit(u) for u in tu]), c2, np.zeros((0, len(c2)), np.float32))
    del tu
    search = templates.TemplateSearch(built)
    line = [f"{variant}:"]
    for kname, q in queries.items():
        qs = [f(templates.unit_rows(r, center, removed)) for r in q_res[kname]]
        hits = search.search(qs, progress=False)
        line.append(f"{kname} {np.mean(folds[hits.index[:, 0]] == q['fold'].to_numpy()) * 100:.1f}")
    print(" ".join(line), f"({time.time() - t0:.0f} s)", flush=True)
