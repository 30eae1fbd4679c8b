"""Probe (issue 18, not kept in the tree): which ESM-2 layers' residues, alone or concatenated,
make the template search find the right fold on the proxy's held-out rows.

Queries: 200 random calibration_fold and 200 calibration_superfamily rows (seed 0). Templates: the
proxy's training rows. Top-1 fold = the fold of the best-z template (template search alone).

Run after ``coevofold quickstart``: ``python benchmarks/probe_residue_layers.py [200]`` (~10 min on 2 cores;
re-embeds the training set with layers 3-6 kept, ~6 GB of memory).
"""
from __future__ import annotations

import sys
import time

import numpy as np
import torch
from tqdm import tqdm

from coevofold.data import tables
from coevofold.features import pretrained
from coevofold.system import preparation, templates

LAYERS = [3, 4, 5, 6]
N = int(sys.argv[1]) if len(sys.argv) > 1 else 200

table = tables.load("deepsf")
carved, kinds = preparation.calibration_rows(table)
train = carved[carved["split"] == "train"].reset_index(drop=True)
rng = np.random.default_rng(0)
queries = {}
for kind in ["calibration_fold", "calibration_superfamily"]:
    rows = carved[carved["split"] == kind]
    queries[kind] = rows.iloc[rng.choice(len(rows), min(N, len(rows)), replace=False)].reset_index(drop=True)

plm = pretrained.load(None)
torch.set_num_threads(2)


@torch.inference_mode()
def embed(seqs: list[str]) -> dict[int, list[np.ndarray]]:
    out = {k: [None] * len(seqs) for k in LAYERS}
    order = np.argsort([len(s) for s in seqs])
    batches, cur = [], []
    for i in order:
        L = min(len(seqs[i]), 1022) + 2
        if cur and (len(cur) + 1) * L > 12000:
            batches.append(cur); cur = []
        cur.append(i)
    batches.append(cur)
    for b in tqdm(batches, desc="embed"):
        chunk = [seqs[i][:1022] for i in b]
        enc = plm.encode(chunk)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            hs = plm.forward(enc).hidden_states
        for j, i in enumerate(b):
            t = len(chunk[j])
            for k in LAYERS:
                out[k][i] = hs[k][j, 1 : t + 1].float().numpy().astype(np.float16)
    return out


t0 = time.time()
emb_train = embed(train["sequence"].tolist())
emb_q = {kind: embed(q["sequence"].tolist()) for kind, q in queries.items()}
print(f"embedded in {time.time() - t0:.0f} s", flush=True)

VARIANTS = [(5,), (4,), (6,), (3,), (4, 5), (5, 6), (3, 4, 5), (4, 5, 6)]


def stack(emb: dict[int, list[np.ndarray]], layers: tuple[int, ...], centers: dict[int, np.ndarray]) -> list[np.ndarray]:
    """Per protein: centred, unit-normalised rows of each layer, concatenated, / sqrt(#layers)."""
    out = []
    for n in range(len(emb[layers[0]])):
        parts = [templates.unit_rows(emb[k][n], centers[k]) for k in layers]
        out.append(np.concatenate(parts, axis=1) / np.sqrt(len(layers)))
    return out


centers = {}
for k in LAYERS:
    total = sum(len(r) for r in emb_train[k])
    centers[k] = (sum(r.astype(np.float64).sum(0) for r in emb_train[k]) / total).astype(np.float32)

folds = train["fold"].to_numpy()
for layers in VARIANTS:
    t0 = time.time()
    tv = stack(emb_train, layers, centers)
    D = tv[0].shape[1]
    zero = np.zeros(D, np.float32)
    offsets = np.zeros(len(tv) + 1, np.int64)
    offsets[1:] = np.cumsum([len(x) for x in tv])
    vectors = np.concatenate([templates.quantised(x) for x in tv])
    pooled = np.stack([templates.pooled_unit(x) for x in tv])
    built = templates.Templates(train["id"].to_numpy(), folds, offsets, vectors, pooled, zero)
    del tv
    search = templates.TemplateSearch(built)
    line = [f"layers {'+'.join(map(str, layers))}:"]
    for kind, q in queries.items():
        qv = stack(emb_q[kind], layers, centers)
        # the stacked rows are already centred and unit: unit_rows with a zero centre keeps them
        hits = search.search(qv, progress=False)
        top = folds[hits.index[:, 0]]
        acc = float(np.mean(top == q["fold"].to_numpy())) * 100
        line.append(f"{kind} {acc:.1f}")
    print(" ".join(line), f"({time.time() - t0:.0f} s)", flush=True)
