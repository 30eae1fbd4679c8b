"""Combiner variants fitted on the held-out rows, scored on DeepSF's valid rows split like the test levels."""
from __future__ import annotations
import numpy as np
from coevofold.data import tables
from coevofold.files import cache_dir
from coevofold.prediction import default_model_dir
from coevofold.system import combiner, preparation, templates
from coevofold.training import recipe, scoring

store_path = next((cache_dir() / "features").glob("deepsf-*.h5"))
table = tables.load("deepsf")
model_dir = default_model_dir()
align = preparation.cached_alignment("deepsf", table, False)
held = preparation.cached_alignment("deepsf", preparation.splits.calibration_split(table), False, preparation.splits.CALIBRATION_SPLITS)
rows = preparation.held_out(model_dir, store_path, table, recipe.default_members(False), held, progress=False)
meta, probs, targets = scoring.model_scores(model_dir, store_path, table, ("valid",))
found = templates.load_templates(model_dir)
hits = preparation.cached_hits(found, store_path, table, "valid", progress=False)
ev = preparation.evidence_of(probs["valid"], hits, align["valid"], found, meta["classes"])
d = np.load("/work/exp/valid_evidence.npz")
level, ok, t = d["level"], d["ok"], d["targets"]
import pickle
pickle.dump((rows, ev), open("/work/exp/heldout_valid.pkl", "wb"))

def report(name, w, groups=tuple(combiner.FEATURE_GROUPS), l2=None):
    if l2 is not None: combiner.L2 = l2
    fitted = combiner.fit_weights(rows.evidence, rows.targets, w, groups)
    comb = combiner.Combiner(rows.final_temperature, fitted).probabilities(ev)
    print(f"{name:40s}", " ".join(f"{100 * np.mean(comb[(level == k) & ok].argmax(1) == t[(level == k) & ok]):.1f}" for k in ["fold-like", "superfamily-like", "family-like"]),
          dict(zip(fitted.features, np.round(fitted.coef, 3))), flush=True)
    combiner.L2 = 1e-3

w0 = rows.weights
report("default", w0)
for l2 in [1e-2, 1e-1, 1.0]:
    report(f"L2 {l2}", w0, l2=l2)
for lv in np.unique(rows.levels):
    report(f"without {lv}", w0 * (rows.levels != lv))
best_sw = rows.evidence.alignment.max(1)
for cut in [3, 6, 10]:
    report(f"held-out rows with SW -log10E < {cut}", w0 * (best_sw < cut))
report("unweighted", None)
for g in [("model", "templates"), ("templates", "alignment"), ("model", "alignment")]:
    report(f"groups {g}", w0, g)
