"""Probe (issue 18): layer 6's residues aligned to the default search's prefiltered templates and decoys
(layer 5, the store's), on every held-out row; saves z6 beside the default hits so that combinations
(all 300, or only the first search's top N re-ranked) can be scored in the whole combiner.
"""
from __future__ import annotations
import time
import numpy as np
import torch
from tqdm import tqdm
from coevofold.data import tables
from coevofold.features import pretrained
from coevofold.files import cache_dir
from coevofold.prediction import default_model_dir
from coevofold.system import embedding_alignment as ea
from coevofold.system import preparation, templates

store_path = next((cache_dir() / "features").glob("deepsf-*.h5"))
table = tables.load("deepsf")
carved, kinds = preparation.calibration_rows(table)
train = carved[carved["split"] == "train"].reset_index(drop=True)
proxy = default_model_dir() / preparation.PROXY_DIR
found = templates.load_templates(proxy, in_memory=True)
assert list(found.ids) == train["id"].tolist()
plm = pretrained.load(None)
torch.set_num_threads(2)

@torch.inference_mode()
def embed(seqs):
    out = [None] * len(seqs)
    order = np.argsort([len(s) for s in seqs])
    batches, cur = [], []
    for i in order:
        L = min(len(seqs[i]), 1022) + 2
        if cur and (len(cur) + 1) * L > 12000:
            batches.append(cur); cur = []
        cur.append(i)
    batches.append(cur)
    for b in tqdm(batches, desc="embed", mininterval=30):
        chunk = [seqs[i][:1022] for i in b]
        enc = plm.encode(chunk)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            hs = plm.forward(enc).hidden_states
        for j, i in enumerate(b):
            out[i] = hs[6][j, 1 : len(chunk[j]) + 1].float().numpy().astype(np.float16)
    return out

t0 = time.time()
kinds = ["valid"]
train = table[table["split"] == "train"].reset_index(drop=True)
found = templates.load_templates(default_model_dir(), in_memory=True)
assert list(found.ids) == train["id"].tolist()
carved = table
heldrows = {k: carved[carved["split"] == k].reset_index(drop=True) for k in kinds}
seqs = train["sequence"].tolist() + [s for k in kinds for s in heldrows[k]["sequence"]]
emb = embed(seqs)
np.save("/work/exp/l6_offsets.npy", np.cumsum([0] + [len(e) for e in emb])); np.save("/work/exp/l6_residues.npy", np.concatenate(emb))
print(f"embedded {len(seqs)} in {time.time() - t0:.0f} s", flush=True)
emb_train = emb[: len(train)]
total = sum(len(r) for r in emb_train)
center = (sum(r.astype(np.float64).sum(0) for r in emb_train) / total).astype(np.float32)
removed = templates.top_directions(emb_train, center)
units = [templates.unit_rows(r, center, removed) for r in emb_train]
offsets = np.zeros(len(units) + 1, np.int64); offsets[1:] = np.cumsum([len(u) for u in units])
t6 = templates.Templates(found.ids, found.folds, offsets, np.concatenate([templates.quantised(u) for u in units]),
                         np.stack([templates.pooled_unit(u) for u in units]), center, removed)
del units
s6 = templates.TemplateSearch(t6)
pos = len(train)
for k in kinds:
    hits = preparation.cached_hits(found, store_path, carved, k, progress=False)
    q6 = emb[pos: pos + len(heldrows[k])]; pos += len(heldrows[k])
    z6 = np.zeros_like(hits.z)
    t1 = time.time()
    for n in range(len(q6)):
        unit = t6.unit(q6[n])
        chosen = hits.index[n]
        both = np.concatenate([chosen, s6.decoys])
        raw = np.concatenate([ea.block_scores(*s6._similarity(unit, both[g]), 1.0, len(unit))
                              for g in templates.column_groups(t6.lengths[both], templates.columns_per_product(len(unit)))])
        score = ea.normalized(raw, len(unit), t6.lengths[both])
        bg = score[len(chosen):]
        z6[n] = (score[: len(chosen)] - bg.mean()) / max(float(bg.std()), 1e-6)
    np.savez(f"/work/exp/z6_{k}.npz", index=hits.index, z=hits.z, score=hits.score, z6=z6)
    print(k, f"{time.time() - t1:.0f} s", flush=True)
