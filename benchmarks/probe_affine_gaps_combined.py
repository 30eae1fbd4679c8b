"""Probe (issue 18): the whole combiner on held-out rows (cross-fitted by superfamily, as the calibration
sees it) with the template search's gap costs varied. Run after quickstart.

    git apply benchmarks/affine_gaps.patch  # the affine kernel (SearchConfig.gap_open / gap_extend)
    python benchmarks/probe_affine_gaps_combined.py 1:1,4:0.2
"""
from __future__ import annotations

import sys

import numpy as np

from coevofold import metrics
from coevofold.data import tables
from coevofold.files import cache_dir
from coevofold.prediction import default_model_dir
from coevofold.system import combiner, preparation, templates
from coevofold.training import recipe

store_path = next((cache_dir() / "features").glob("deepsf-*.h5"))
table = tables.load("deepsf")
model_dir = default_model_dir()
held = preparation.cached_alignment("deepsf", preparation.splits.calibration_split(table), False,
                                    preparation.splits.CALIBRATION_SPLITS)
original = templates.SearchConfig
for variant in sys.argv[1].split(","):
    o, e = (float(x) for x in variant.split(":"))
    templates.SearchConfig = lambda o=o, e=e: original(gap_open=o, gap_extend=e)
    rows = preparation.held_out(model_dir, store_path, table, recipe.default_members(False), held, progress=False)
    crossed = combiner.cross_fitted(rows.evidence, rows.targets, rows.superfamilies, rows.weights)
    line = [f"gap {o}/{e}:"]
    for kind in np.unique(rows.levels):
        m = rows.levels == kind
        line.append(f"{kind} combined {100 * np.mean(crossed[m].argmax(1) == rows.targets[m]):.1f} "
                    f"search alone {100 * np.mean(rows.evidence.template_z[m].argmax(1) == rows.targets[m]):.1f}")
    print(" | ".join(line), flush=True)
