"""Prefilter size on DeepSF's valid rows split like test levels: search alone and the default combiner."""
from __future__ import annotations
import sys, time
import numpy as np
from coevofold.data import tables
from coevofold.files import cache_dir
from coevofold.prediction import default_model_dir
from coevofold.system import combiner, homology, preparation, templates
from coevofold.training import scoring

store_path = next((cache_dir() / "features").glob("deepsf-*.h5"))
table = tables.load("deepsf")
model_dir = default_model_dir()
align = preparation.cached_alignment("deepsf", table, False)
meta, probs, targets = scoring.model_scores(model_dir, store_path, table, ("valid",))
found = templates.load_templates(model_dir, in_memory=True)
fitted = combiner.load_combiner(model_dir)
d = np.load("/work/exp/valid_evidence.npz")
level, ok, t = d["level"], d["ok"], d["targets"]
codes = np.searchsorted(meta["classes"], found.folds)
for k in [int(a) for a in sys.argv[1:]]:
    t0 = time.time()
    hits = preparation.cached_hits(found, store_path, table, "valid", templates.SearchConfig(prefilter=k), progress=False)
    ev = preparation.evidence_of(probs["valid"], hits, align["valid"], found, meta["classes"])
    comb = fitted.probabilities(ev)
    inpre = np.array([(codes[hits.index[n]] == t[n]).any() for n in range(len(t))])
    print(f"prefilter {k} ({time.time() - t0:.0f} s):", " | ".join(
        f"{lv}: fold in prefilter {100 * inpre[(level == lv) & ok].mean():.1f} search {100 * np.mean(ev.template_z[(level == lv) & ok].argmax(1) == t[(level == lv) & ok]):.1f} combined {100 * np.mean(comb[(level == lv) & ok].argmax(1) == t[(level == lv) & ok]):.1f}"
        for lv in ["fold-like", "superfamily-like", "family-like"]), flush=True)
