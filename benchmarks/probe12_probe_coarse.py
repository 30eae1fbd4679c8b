"""Probe (issue 18): coarse-to-fine search. Pooled cosine keeps P1 templates; an alignment of residue
pairs (or triples) averaged (f x fewer cells per side, f^2 fewer DP cells) ranks them; the top P2 get the
full alignment. DeepSF valid rows split like the test levels; the default combiner on top.
    python probe_coarse.py f P1 P2
"""
from __future__ import annotations
import sys, time
import numpy as np
from coevofold import metrics
from coevofold.data import tables
from coevofold.features import store
from coevofold.files import cache_dir
from coevofold.prediction import default_model_dir
from coevofold.system import combiner, preparation, templates
from coevofold.system import embedding_alignment as ea
from coevofold.training import scoring

F, P1, P2 = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
SPLIT = sys.argv[4] if len(sys.argv) > 4 else "valid"
store_path = next((cache_dir() / "features").glob("deepsf-*.h5"))
table = tables.load("deepsf")
model_dir = default_model_dir()
found = templates.load_templates(model_dir, in_memory=True)

def coarse(unit):
    L = len(unit)
    n = -(-L // F)
    pad = np.zeros((n * F, unit.shape[1]), np.float32); pad[:L] = unit
    c = pad.reshape(n, F, -1).sum(1)
    return c / np.maximum(np.linalg.norm(c, axis=1, keepdims=True), 1e-6)

t0 = time.time()
full_units = [found.vectors[found.offsets[i]:found.offsets[i + 1]].astype(np.float32) / 127 for i in range(len(found))]
cunits = [coarse(u) for u in full_units]
del full_units
coff = np.zeros(len(cunits) + 1, np.int64); coff[1:] = np.cumsum([len(c) for c in cunits])
ct = templates.Templates(found.ids, found.folds, coff, np.concatenate([templates.quantised(c) for c in cunits]), found.pooled, found.center, found.removed)
del cunits
print(f"coarse templates {time.time() - t0:.0f} s", flush=True)
cs, fs = templates.TemplateSearch(ct), templates.TemplateSearch(found)

def zs(search, t, unit, chosen):
    both = np.concatenate([chosen, search.decoys])
    raw = np.concatenate([ea.block_scores(*search._similarity(unit, both[g]), 1.0, len(unit))
                          for g in templates.column_groups(t.lengths[both], templates.columns_per_product(len(unit)))])
    score = ea.normalized(raw, len(unit), t.lengths[both])
    bg = score[len(chosen):]
    return (score[: len(chosen)] - bg.mean()) / max(float(bg.std()), 1e-6), score[: len(chosen)]

rows = table[table["split"] == SPLIT]
qres = store.read_rows(store_path, rows["id"].tolist(), residues=True).residues
out = []
t0 = time.time()
for res in qres:
    unit = found.unit(res)
    cosine = found.pooled @ templates.pooled_unit(unit)
    pre = np.argpartition(-cosine, P1 - 1)[:P1]
    if P2 < P1:
        cz, _ = zs(cs, ct, coarse(unit), pre)
        pre = pre[np.argsort(-cz, kind="stable")[:P2]]
    z, score = zs(fs, found, unit, pre)
    order = np.argsort(-z, kind="stable")
    out.append((pre[order], z[order], score[order]))
print(f"search {len(qres)} queries: {time.time() - t0:.0f} s ({(time.time() - t0) / len(qres) * 1000:.0f} ms a query)", flush=True)
hits = templates.Hits(*[np.stack([o[i] for o in out]).astype(dt) for i, dt in ((0, np.int32), (1, np.float32), (2, np.float32))])
hits.save(f"/work/exp/hits_{SPLIT}_f{F}_{P1}_{P2}.npz")
if SPLIT == "valid":
    align = preparation.cached_alignment("deepsf", table, False)
    meta, probs, targets = scoring.model_scores(model_dir, store_path, table, ("valid",))
    ev = preparation.evidence_of(probs["valid"], hits, align["valid"], found, meta["classes"])
    comb = combiner.load_combiner(model_dir).probabilities(ev)
    d = np.load("/work/exp/valid_evidence.npz")
    level, ok, t = d["level"], d["ok"], d["targets"]
    codes = metrics.encode_labels(found.folds, meta["classes"])
    inpre = np.array([(codes[hits.index[n]] == t[n]).any() for n in range(len(t))])
    np.save(f"/work/exp/comb_valid_f{F}_{P1}_{P2}.npy", comb)
    print(f"f {F} P1 {P1} P2 {P2}:", " | ".join(
        f"{lv}: in pre {100 * inpre[(level == lv) & ok].mean():.1f} search {100 * np.mean(ev.template_z[(level == lv) & ok].argmax(1) == t[(level == lv) & ok]):.1f} combined {100 * np.mean(comb[(level == lv) & ok].argmax(1) == t[(level == lv) & ok]):.1f}"
        for lv in ["fold-like", "superfamily-like", "family-like"]), flush=True)
