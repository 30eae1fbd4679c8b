"""Probe (issue 18): diagonal smoothing of the z-scored similarity matrix before the local alignment.
Z' = Z + a (Z shifted +1 along the diagonal + Z shifted -1): a run of similar residues is rewarded as a
run, an isolated similar pair less. Template search alone on held-out rows, prefilter/decoys as default.
"""
from __future__ import annotations
import sys, time
import numpy as np
from coevofold.data import tables
from coevofold.features import store
from coevofold.files import cache_dir
from coevofold.system import preparation, templates
from coevofold.system import embedding_alignment as ea

N = int(sys.argv[1]) if len(sys.argv) > 1 else 200
A = [float(a) for a in sys.argv[2].split(",")] if len(sys.argv) > 2 else [0.0, 0.25, 0.5, 1.0]
GAPS = [float(a) for a in sys.argv[3].split(",")] if len(sys.argv) > 3 else [1.0]
store_path = next((cache_dir() / "features").glob("deepsf-*.h5"))
table = tables.load("deepsf")
carved, _ = preparation.calibration_rows(table)
train = carved[carved["split"] == "train"].reset_index(drop=True)
rng = np.random.default_rng(0)
queries = {}
for kind in ["calibration_fold", "calibration_superfamily", "calibration_family"]:
    rows = carved[carved["split"] == kind]
    queries[kind] = rows.iloc[rng.choice(len(rows), min(N, len(rows)), replace=False)].reset_index(drop=True)
rows = store.read_rows(store_path, train["id"].tolist(), residues=True)
built = templates.build_templates(rows, train["fold"].tolist())
del rows
folds = built.folds
search = templates.TemplateSearch(built)
V = built.vectors.astype(np.float32)

def smooth(z, a):
    if a == 0: return z
    out = z.copy()
    out[1:, 1:] += a * z[:-1, :-1]
    out[:-1, :-1] += a * z[1:, 1:]
    return out

for kind, q in queries.items():
    qres = store.read_rows(store_path, q["id"].tolist(), residues=True).residues
    truth = q["fold"].to_numpy()
    right = {}
    t0 = time.time()
    for n in range(len(q)):
        unit = built.unit(qres[n])
        qv = templates.quantised(unit).astype(np.float32)
        cosine = built.pooled @ templates.pooled_unit(unit)
        chosen = np.argpartition(-cosine, 299)[:300]
        both = np.concatenate([chosen, search.decoys])
        zs = [ea.zscore(np.ascontiguousarray(V[built.offsets[i]:built.offsets[i + 1]] @ qv.T)) for i in both]
        lt = built.lengths[both]
        for a in A:
            sm = [smooth(z, a) for z in zs]
            for g in GAPS:
                raw = np.array([ea.local_score(z, g) for z in sm])
                score = ea.normalized(raw, len(unit), lt)
                bg = score[300:]
                zz = (score[:300] - bg.mean()) / bg.std()
                key = f"a={a} gap={g}"
                right[key] = right.get(key, 0) + (folds[chosen[np.argmax(zz)]] == truth[n])
    print(kind, f"({len(q)} rows, {time.time() - t0:.0f} s)", " | ".join(f"{k} {100 * c / len(q):.1f}" for k, c in right.items()), flush=True)
