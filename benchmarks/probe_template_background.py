"""Probe (issue 18): template-side score background. Each template's normalised score against M random
proxy-training queries (exhaustive search, self excluded) gives its own mean / spread; held-out queries'
hits are re-ranked by the template-side z (alone or added to the query-side z). Template search alone.

    python benchmarks/probe_template_background.py 500 40
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
M = int(sys.argv[2]) if len(sys.argv) > 2 else 40
store_path = next((cache_dir() / "features").glob("deepsf-*.h5"))
table = tables.load("deepsf")
carved, _ = preparation.calibration_rows(table)
train = carved[carved["split"] == "train"].reset_index(drop=True)
rng = np.random.default_rng(0)
queries = {}
for kind in ["calibration_fold", "calibration_superfamily"]:
    rows = carved[carved["split"] == kind]
    queries[kind] = rows.iloc[rng.choice(len(rows), min(N, len(rows)), replace=False)].reset_index(drop=True)
rows = store.read_rows(store_path, train["id"].tolist(), residues=True)
built = templates.build_templates(rows, train["fold"].tolist())
folds = built.folds
t0 = time.time()
full = templates.TemplateSearch(built, templates.SearchConfig(prefilter=len(built)))
decoy_q = rng.choice(len(built), M, replace=False)
S = np.full((M, len(built)), np.nan, np.float32)
for n, i in enumerate(decoy_q):
    idx, z, score = full.search_one(rows.residues[i])
    S[n, idx] = score
    S[n, i] = np.nan
print(f"template backgrounds from {M} queries: {time.time() - t0:.0f} s", flush=True)
mean_t = np.nanmean(S, 0)
std_t = np.nanstd(S, 0)
med_t = np.nanmedian(S, 0)
mad_t = np.nanmedian(np.abs(S - med_t), 0) * 1.4826
print("corr(mean_t, log length)", np.corrcoef(mean_t, np.log(built.lengths))[0, 1], flush=True)
search = templates.TemplateSearch(built)
for kname, q in queries.items():
    qres = store.read_rows(store_path, q["id"].tolist(), residues=True).residues
    hits = search.search(qres, progress=False)
    truth = q["fold"].to_numpy()
    variants = {
        "query z (default)": hits.z,
        "template z": (hits.score - mean_t[hits.index]) / std_t[hits.index],
        "template robust z": (hits.score - med_t[hits.index]) / mad_t[hits.index],
        "query z + template z": hits.z + (hits.score - mean_t[hits.index]) / std_t[hits.index],
        "score - template mean": hits.score - mean_t[hits.index],
        "query z + 0.5 template z": hits.z + 0.5 * (hits.score - mean_t[hits.index]) / std_t[hits.index],
    }
    lt = built.lengths[hits.index].astype(np.float64)
    for beta in (0.3, 0.4, 0.6, 0.7):
        variants[f"raw / Lt^{beta}"] = hits.score * lt ** (0.5 - beta)
    for name, value in variants.items():
        top = hits.index[np.arange(len(q)), np.argmax(value, 1)]
        print(f"{kname} {name}: {np.mean(folds[top] == truth) * 100:.1f}", flush=True)
