"""Layer 6 instead of layer 5 in the search (layer 5's prefilter): combiner refitted on the held-out rows'
layer-6 evidence (cross-fitted there), scored on DeepSF valid split like the test levels."""
import pickle
import numpy as np
from dataclasses import replace
from coevofold.data import tables
from coevofold.files import cache_dir
from coevofold.prediction import default_model_dir
from coevofold.system import calibration, combiner, preparation, templates
from coevofold.training import recipe, scoring

store_path = next((cache_dir() / "features").glob("deepsf-*.h5"))
table = tables.load("deepsf"); model_dir = default_model_dir()
held = preparation.cached_alignment("deepsf", preparation.splits.calibration_split(table), False, preparation.splits.CALIBRATION_SPLITS)
align = preparation.cached_alignment("deepsf", table, False)
meta, probs, targets = scoring.model_scores(model_dir, store_path, table, ("valid",))
found = templates.load_templates(model_dir)
d = np.load("/work/exp/valid_evidence.npz"); level, ok, t = d["level"], d["ok"], d["targets"]

def variant(src, w):
    z, z6 = src["z"].astype(np.float64), src["z6"].astype(np.float64)
    new = z6 if w is None else z + w * z6
    order = np.argsort(-new, axis=1, kind="stable")
    take = lambda a: np.take_along_axis(a, order, 1)
    return templates.Hits(take(src["index"]), take(new).astype(np.float32), take(src["score"]))

for w in ["l5", None, 0.5, 2.0]:
    def hits_of(found_, sp, carved, split, progress=True, config=None):
        src = np.load(f"/work/exp/z6_{split}.npz")
        return variant(src, 0.0) if w == "l5" else variant(src, w)
    preparation.cached_hits = hits_of
    rows = preparation.held_out(model_dir, store_path, table, recipe.default_members(False), held, progress=False)
    crossed = combiner.cross_fitted(rows.evidence, rows.targets, rows.superfamilies, rows.weights)
    fitted = combiner.Combiner(rows.final_temperature, combiner.fit_weights(rows.evidence, rows.targets, rows.weights))
    hv = hits_of(None, None, None, "valid")
    ev = preparation.evidence_of(probs["valid"], hv, align["valid"], found, meta["classes"])
    comb = fitted.probabilities(ev)
    np.save(f"/work/exp/l6full_valid_{w}.npy", comb)
    ho = " ".join(f"{100 * np.mean(crossed[rows.levels == lv].argmax(1) == rows.targets[rows.levels == lv]):.1f}" for lv in ["calibration_fold", "calibration_superfamily", "calibration_family"])
    hs = " ".join(f"{100 * np.mean(rows.evidence.template_z[rows.levels == lv].argmax(1) == rows.targets[rows.levels == lv]):.1f}" for lv in ["calibration_fold", "calibration_superfamily", "calibration_family"])
    va = " ".join(f"{100 * np.mean(comb[(level == lv) & ok].argmax(1) == t[(level == lv) & ok]):.1f}" for lv in ["fold-like", "superfamily-like", "family-like"])
    vs = " ".join(f"{100 * np.mean(ev.template_z[(level == lv) & ok].argmax(1) == t[(level == lv) & ok]):.1f}" for lv in ["fold-like", "superfamily-like", "family-like"])
    print(f"{w}: held-out combined {ho} (search {hs}) | valid combined {va} (search {vs})", flush=True)
