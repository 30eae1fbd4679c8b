"""Coarse-to-fine search (f, P1, P2) on every held-out row (proxy templates) and on valid (final templates);
the combiner refitted on held-out evidence, cross-fitted there, and scored on valid split like test."""
import sys, time
import numpy as np
from coevofold.data import tables
from coevofold.features import store
from coevofold.files import cache_dir
from coevofold.prediction import default_model_dir
from coevofold.system import combiner, preparation, templates
from coevofold.system import embedding_alignment as ea
from coevofold.training import recipe, scoring

F, P1, P2 = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
store_path = next((cache_dir() / "features").glob("deepsf-*.h5"))
table = tables.load("deepsf"); model_dir = default_model_dir()

def coarse(unit):
    L = len(unit); n = -(-L // F)
    pad = np.zeros((n * F, unit.shape[1]), np.float32); pad[:L] = unit
    c = pad.reshape(n, F, -1).sum(1)
    return c / np.maximum(np.linalg.norm(c, axis=1, keepdims=True), 1e-6)

def zs(search, t, unit, chosen):
    both = np.concatenate([chosen, search.decoys])
    raw = np.concatenate([ea.block_scores(*search._similarity(unit, both[g]), 1.0, len(unit))
                          for g in templates.column_groups(t.lengths[both], templates.columns_per_product(len(unit)))])
    score = ea.normalized(raw, len(unit), t.lengths[both])
    bg = score[len(chosen):]
    return (score[: len(chosen)] - bg.mean()) / max(float(bg.std()), 1e-6), score[: len(chosen)]

searchers = {}
def hits_for(found, qres):
    key = id(found)
    if key not in searchers:
        cu = [coarse(found.vectors[found.offsets[i]:found.offsets[i + 1]].astype(np.float32) / 127) for i in range(len(found))]
        off = np.zeros(len(cu) + 1, np.int64); off[1:] = np.cumsum([len(c) for c in cu])
        ct = templates.Templates(found.ids, found.folds, off, np.concatenate([templates.quantised(c) for c in cu]), found.pooled, found.center, found.removed)
        searchers[key] = (ct, templates.TemplateSearch(ct), templates.TemplateSearch(found))
    ct, cs, fs = searchers[key]
    out = []
    for res in qres:
        unit = found.unit(res)
        cosine = found.pooled @ templates.pooled_unit(unit)
        pre = np.argpartition(-cosine, P1 - 1)[:P1]
        cz, _ = zs(cs, ct, coarse(unit), pre)
        pre = pre[np.argsort(-cz, kind="stable")[:P2]]
        z, score = zs(fs, found, unit, pre)
        order = np.argsort(-z, kind="stable")
        out.append((pre[order], z[order], score[order]))
    return templates.Hits(*[np.stack([o[i] for o in out]).astype(dt) for i, dt in ((0, np.int32), (1, np.float32), (2, np.float32))])

def cached(found, sp, carved, split, progress=True, config=None):
    path = f"/work/exp/chits_{split}_f{F}_{P1}_{P2}.npz"
    try:
        return templates.Hits.load(path)
    except OSError:
        rows = carved[carved["split"] == split]
        h = hits_for(found, store.read_rows(store_path, rows["id"].tolist(), residues=True).residues)
        h.save(path); return h

t0 = time.time()
preparation.cached_hits = cached
held = preparation.cached_alignment("deepsf", preparation.splits.calibration_split(table), False, preparation.splits.CALIBRATION_SPLITS)
rows = preparation.held_out(model_dir, store_path, table, recipe.default_members(False), held, progress=False)
print(f"held-out searched {time.time() - t0:.0f} s", flush=True)
crossed = combiner.cross_fitted(rows.evidence, rows.targets, rows.superfamilies, rows.weights)
fitted = combiner.Combiner(rows.final_temperature, combiner.fit_weights(rows.evidence, rows.targets, rows.weights))
found = templates.load_templates(model_dir, in_memory=True)
align = preparation.cached_alignment("deepsf", table, False)
meta, probs, targets = scoring.model_scores(model_dir, store_path, table, ("valid",))
hv = cached(found, None, table, "valid")
ev = preparation.evidence_of(probs["valid"], hv, align["valid"], found, meta["classes"])
comb = fitted.probabilities(ev)
np.save(f"/work/exp/cfull_valid_f{F}_{P1}_{P2}.npy", comb)
d = np.load("/work/exp/valid_evidence.npz"); level, ok, t = d["level"], d["ok"], d["targets"]
ho = " ".join(f"{100 * np.mean(crossed[rows.levels == lv].argmax(1) == rows.targets[rows.levels == lv]):.1f}" for lv in ["calibration_fold", "calibration_superfamily", "calibration_family"])
hs = " ".join(f"{100 * np.mean(rows.evidence.template_z[rows.levels == lv].argmax(1) == rows.targets[rows.levels == lv]):.1f}" for lv in ["calibration_fold", "calibration_superfamily", "calibration_family"])
va = " ".join(f"{100 * np.mean(comb[(level == lv) & ok].argmax(1) == t[(level == lv) & ok]):.1f}" for lv in ["fold-like", "superfamily-like", "family-like"])
vs = " ".join(f"{100 * np.mean(ev.template_z[(level == lv) & ok].argmax(1) == t[(level == lv) & ok]):.1f}" for lv in ["fold-like", "superfamily-like", "family-like"])
print(f"f {F} {P1}->{P2}: held-out combined {ho} (search {hs}) | valid combined {va} (search {vs})", dict(zip(fitted.weights.features, np.round(fitted.weights.coef, 3))), flush=True)
