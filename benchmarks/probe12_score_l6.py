"""Score layer-6 combinations (probe_l6.py's saved z6) in the whole combiner, cross-fitted on held-out rows."""
from __future__ import annotations
import sys
import numpy as np
from coevofold.data import tables
from coevofold.files import cache_dir
from coevofold.prediction import default_model_dir
from coevofold.system import combiner, preparation, templates
from coevofold.training import recipe

store_path = next((cache_dir() / "features").glob("deepsf-*.h5"))
table = tables.load("deepsf")
held = preparation.cached_alignment("deepsf", preparation.splits.calibration_split(table), False, preparation.splits.CALIBRATION_SPLITS)

def variant(d, w, top):
    z, z6 = d["z"].astype(np.float64), d["z6"].astype(np.float64)
    if w == 0:
        new = z
    elif top >= z.shape[1]:
        new = z + w * z6
    else:
        new = z * (1 + w)
        new[:, :top] = z[:, :top] + w * z6[:, :top]
    order = np.argsort(-new, axis=1, kind="stable")
    take = lambda a: np.take_along_axis(a, order, 1)
    return templates.Hits(take(d["index"]), take(new).astype(np.float32), take(d["score"]))

specs = [(float(a), int(b)) for a, b in (s.split(":") for s in sys.argv[1:])]
base = preparation.cached_hits
for w, top in specs:
    preparation.cached_hits = lambda found, sp, carved, split, progress=True, config=None: variant(np.load(f"/work/exp/z6_{split}.npz"), w, top)
    rows = preparation.held_out(default_model_dir(), store_path, table, recipe.default_members(False), held, progress=False)
    crossed = combiner.cross_fitted(rows.evidence, rows.targets, rows.superfamilies, rows.weights)
    lv = np.unique(rows.levels)
    acc = lambda p: " ".join(f"{100 * np.mean(p[rows.levels == k].argmax(1) == rows.targets[rows.levels == k]):.1f}" for k in lv)
    print(f"w {w} top {top}: combined {acc(crossed)} | search alone {acc(rows.evidence.template_z)}", list(lv), flush=True)
    np.save(f"/work/exp/crossed_w{w}_t{top}.npy", crossed)
np.save("/work/exp/targets.npy", rows.targets); np.save("/work/exp/levels.npy", rows.levels)
