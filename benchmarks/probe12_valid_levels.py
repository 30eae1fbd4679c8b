"""The final system on DeepSF's valid rows, split as DeepSF's test levels are (family in training / superfamily
in training / neither): a selection set built like test, which the held-out rows are not."""
from __future__ import annotations
import numpy as np, pandas as pd
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
found = templates.load_templates(model_dir)
hits = preparation.cached_hits(found, store_path, table, "valid", progress=False)
ev = preparation.evidence_of(probs["valid"], hits, align["valid"], found, meta["classes"])
fitted = combiner.load_combiner(model_dir)
comb = fitted.probabilities(ev)
settings = homology.read_settings(model_dir)
_, ranked = homology.transfer({"valid": comb}, {"valid": align["valid"]}, {"valid": targets["valid"]}, settings.min_score)
train = table[table["split"] == "train"]
valid = table[table["split"] == "valid"].reset_index(drop=True)
fam, sf = set(train["family"]), set(train["superfamily"])
level = np.array(["family-like" if f in fam else "superfamily-like" if s in sf else "fold-like"
                  for f, s in zip(valid["family"], valid["superfamily"])])
ok = valid["family"].fillna("").to_numpy() != ""
t = targets["valid"]
np.savez("/work/exp/valid_evidence.npz", level=level, ok=ok, targets=t)
for name, p in [("model alone", ev.probs), ("search alone", ev.template_z), ("SW alone", ev.alignment), ("combined", comb), ("system (transfer)", ranked["valid"])]:
    print(f"{name:20s}", " ".join(f"{k} {100 * np.mean(p[(level == k) & ok].argmax(1) == t[(level == k) & ok]):.1f} ({((level == k) & ok).sum()})" for k in ["fold-like", "superfamily-like", "family-like"]))
