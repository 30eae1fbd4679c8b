"""Probe (issue 18): two layers' residues aligned separately (layer 5, the default, and layer 6 or 4),
their z-scores against the same prefiltered templates and decoys combined, on the proxy's held-out rows.

Queries: 200 random calibration_fold and 200 calibration_superfamily rows (seed 0). Templates: the
proxy's training rows. Top-1 fold = the fold of the best-z template (template search alone).

Run after ``coevofold quickstart``: ``python benchmarks/probe_two_layers.py 2000`` (every held-out fold- and superfamily-like row; re-embeds the training set with layers 5 and 6 kept, ~10 min on 2 cores).
"""
from __future__ import annotations

import sys
import time

import numpy as np
import torch
from tqdm import tqdm

from coevofold.data import tables
from coevofold.features import pretrained
from coevofold.system import embedding_alignment as ea
from coevofold.system import preparation, templates

LAYERS = [5, 6]
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


folds = train["fold"].to_numpy()
searches = {}
for k in LAYERS:
    total = sum(len(r) for r in emb_train[k])
    center = (sum(r.astype(np.float64).sum(0) for r in emb_train[k]) / total).astype(np.float32)
    removed = templates.top_directions(emb_train[k], center)
    units = [templates.unit_rows(r, center, removed) for r in emb_train[k]]
    offsets = np.zeros(len(units) + 1, np.int64)
    offsets[1:] = np.cumsum([len(u) for u in units])
    built = templates.Templates(train["id"].to_numpy(), folds, offsets, np.concatenate([templates.quantised(u) for u in units]),
                                np.stack([templates.pooled_unit(u) for u in units]), center, removed)
    del units
    searches[k] = templates.TemplateSearch(built)


def z_for(search, residues, chosen):
    t, config = search.templates, search.config
    unit = t.unit(residues)
    both = np.concatenate([chosen, search.decoys])
    raw = np.concatenate([ea.block_scores(*search._similarity(unit, both[g]), config.gap, len(unit))
                          for g in templates.column_groups(t.lengths[both], templates.columns_per_product(len(unit)))])
    score = ea.normalized(raw, len(unit), t.lengths[both])
    bg = score[len(chosen):]
    return (score[: len(chosen)] - bg.mean()) / max(float(bg.std()), 1e-6)


for kind, q in queries.items():
    truth = q["fold"].to_numpy()
    right: dict = {}
    for n in range(len(q)):
        chosen, z5, _ = searches[5].search_one(emb_q[kind][5][n])
        z = {5: z5, 6: z_for(searches[6], emb_q[kind][6][n], chosen)}
        variants = {"layer 5": z[5], "layer 6 (same templates)": z[6], 
                    "mean 5 + 6": (z[5] + z[6]) / 2, 
                    "max 5, 6": np.maximum(z[5], z[6]), "5 + 0.5 x 6": z[5] + 0.5 * z[6]}
        for name, v in variants.items():
            right[name] = right.get(name, 0) + (folds[chosen[np.argmax(v)]] == truth[n])
    print(kind, " | ".join(f"{name} {100 * c / len(q):.1f}" for name, c in right.items()), flush=True)
