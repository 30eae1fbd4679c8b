"""Extra template-search features in the conditional logit: fitted on the held-out rows, scored on
DeepSF's valid rows split like the test levels (and cross-fitted on held-out rows)."""
from __future__ import annotations
import pickle, sys
import numpy as np
from dataclasses import replace
from coevofold import metrics
from coevofold.data import tables
from coevofold.files import cache_dir
from coevofold.prediction import default_model_dir
from coevofold.system import calibration, combiner, preparation, templates
from sklearn.model_selection import GroupKFold

store_path = next((cache_dir() / "features").glob("deepsf-*.h5"))
table = tables.load("deepsf")
model_dir = default_model_dir()
rows, ev = pickle.load(open("/work/exp/heldout_valid.pkl", "rb"))
carved, kinds = preparation.calibration_rows(table)
proxy_t = templates.load_templates(model_dir / preparation.PROXY_DIR)
final_t = templates.load_templates(model_dir)
classes = sorted(table.loc[table["split"] == "train", "fold"].unique())
H = [preparation.cached_hits(proxy_t, store_path, carved, k, progress=False) for k in kinds]
held_hits = templates.Hits(*[np.concatenate([getattr(h, a) for h in H]) for a in ("index", "z", "score")])
valid_hits = preparation.cached_hits(final_t, store_path, table, "valid", progress=False)
pcodes = metrics.encode_labels(proxy_t.folds, classes)
fcodes = metrics.encode_labels(final_t.folds, classes)
d = np.load("/work/exp/valid_evidence.npz")
level, ok, t = d["level"], d["ok"], d["targets"]
ev_valid = replace(ev, probs=calibration.tempered(np.asarray(ev.probs, np.float64), rows.final_temperature))

def extras(hits, codes, C):
    n, K = hits.index.shape
    out = {}
    cls = codes[hits.index]
    q = np.repeat(np.arange(n), K)
    for tau in (1.0, 2.0):
        s = np.zeros((n, C))
        np.add.at(s, (q, cls.ravel()), np.exp((hits.z - hits.z[:, :1]) / tau).ravel())
        out[f"log soft vote tau {tau}"] = np.log(s + 1e-3)
    for top in (3, 30, 100, 300):
        c = np.zeros((n, C)); np.add.at(c, (np.repeat(np.arange(n), top), cls[:, :top].ravel()), 1.0)
        out[f"log top-{top} hits"] = np.log1p(c)
    # second-best z per fold
    best = np.full((n, C), np.nan); second = np.full((n, C), np.nan)
    for i in range(n):
        seen = {}
        for k in range(K):
            c = cls[i, k]
            m = seen.get(c, 0)
            if m == 0: best[i, c] = hits.z[i, k]
            elif m == 1: second[i, c] = hits.z[i, k]
            seen[c] = m + 1
    low = hits.z.min(1, keepdims=True)
    out["second template z"] = np.where(np.isnan(second), low, second)
    out["z gap to best"] = np.where(np.isnan(best), low, best) - hits.z[:, :1]
    return out

C = len(classes)
xh, xv = extras(held_hits, pcodes, C), extras(valid_hits, fcodes, C)

def design(evidence, extra, names):
    q, k = combiner.candidates(evidence)
    base = combiner.features(evidence, q, k)
    cols = [base] + [extra[nm][q, k][:, None] for nm in names]
    return q, k, np.hstack(cols)

def run(names, drop=()):
    keep = [i for i, f in enumerate(combiner.FEATURES) if f not in drop]
    q, k, x = design(rows.evidence, xh, names)
    x = x[:, keep + list(range(len(combiner.FEATURES), x.shape[1]))]
    fn = [combiner.FEATURES[i] for i in keep] + list(names)
    correct = k == rows.targets[q]
    # cross-fitted held-out
    crossed = np.zeros(rows.evidence.probs.shape)
    for tr, he in GroupKFold(5).split(rows.targets, groups=rows.superfamilies):
        trm = np.isin(q, tr)
        w = combiner.fit_conditional_logit(x[trm], q[trm], correct[trm], fn, rows.weights)
        hm = np.isin(q, he)
        logit = x[hm] @ np.asarray(w.coef)
        crossed[q[hm], k[hm]] = combiner._softmax_by_query(logit, q[hm], len(crossed))[0]
    w = combiner.fit_conditional_logit(x, q, correct, fn, rows.weights)
    qv, kv, xv_ = design(ev_valid, xv, names)
    xv_ = xv_[:, keep + list(range(len(combiner.FEATURES), xv_.shape[1]))]
    pv = np.zeros(ev_valid.probs.shape)
    pv[qv, kv] = combiner._softmax_by_query(xv_ @ np.asarray(w.coef), qv, len(pv))[0]
    hv = " ".join(f"{100 * np.mean(crossed[rows.levels == lv].argmax(1) == rows.targets[rows.levels == lv]):.1f}" for lv in ["calibration_fold", "calibration_superfamily", "calibration_family"])
    vv = " ".join(f"{100 * np.mean(pv[(level == lv) & ok].argmax(1) == t[(level == lv) & ok]):.1f}" for lv in ["fold-like", "superfamily-like", "family-like"])
    print(f"{' + '.join(names) or 'default':45s} drop {drop}: held-out {hv} | valid {vv}", flush=True)
    return pv

run([])
for nm in xh:
    run([nm])
run(["log soft vote tau 1.0"], drop=("log top-10 hits",))
run(["log soft vote tau 2.0"], drop=("log top-10 hits",))
