"""Is bf16 extraction faithful enough? Speed, embedding cosines and held-out accuracy, fp32 vs bf16.

Run after ``coevofold quickstart`` (its fp32 store of DeepSF is the reference)::

    python benchmarks/extraction_precision.py

It extracts DeepSF's train and valid domains again with ``--precision bfloat16`` (the pLM's
products under ``torch.autocast``) into a temporary store (the default feature settings otherwise) and prints, in one run:

1. proteins/s of that extraction (the fp32 one is quickstart's, printed by it);
2. per protein, the cosine of bf16 to fp32 of the mean embedding, of the per-layer means and of
   each residue vector of the residue layer (min and mean over valid);
3. what the two stores give on ``valid`` (never test): the all-layer linear probe (L-BFGS,
   the default's member) trained on each store's train rows, and the template search alone
   (templates from each store's train rows), top-1 fold with the paired difference.

The default system's own accuracy with bf16 features needs a full quickstart on them; this is
the cheaper first look.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from coevofold import metrics
from coevofold.app import runs
from coevofold.features import extraction, store
from coevofold.models.registry import ModelConfig
from coevofold.system import preparation, templates
from coevofold.training import checkpoint, trainer


def valid_top1(store_path: Path, table, work: Path) -> tuple[np.ndarray, np.ndarray]:
    """Per valid protein: is the probe's top fold right, is the template search's?"""
    probe = trainer.train(store_path, table, work / "probe",
                          trainer.TrainConfig(model=ModelConfig(name="probe"), solver="lbfgs", progress=False))
    model, meta = checkpoint.load_model(probe)
    valid = table[table["split"] == "valid"]
    split = checkpoint.load_split(store_path, valid, meta["classes"])
    probe_right = np.asarray(meta["classes"])[checkpoint.predict_proba(model, split).argmax(1)] == valid["fold"].to_numpy()
    found = preparation.fit_templates(work / "templates", store_path, table)
    queries = store.read_rows(store_path, valid["id"].tolist(), residues=True)
    hits = templates.TemplateSearch(found).search(queries.residues, False)
    return probe_right, found.folds[hits.index[:, 0]] == valid["fold"].to_numpy()


def main() -> None:
    table, fp32 = runs.cached_deepsf()
    table = table[table["split"].isin(("train", "valid"))].reset_index(drop=True)
    with tempfile.TemporaryDirectory(prefix="coevofold-bf16-") as tmp:
        work = Path(tmp)
        started = time.perf_counter()
        bf16 = extraction.extract(table, work / "bf16.h5", extraction.FeatureConfig(precision="bfloat16"),
                                  extraction.RunConfig(progress=False))
        seconds = time.perf_counter() - started
        print(f"1. bf16 extraction of {len(table)} train + valid domains: {len(table) / seconds:.1f} proteins/s "
              f"({seconds:.0f} s; quickstart prints the fp32 rate)")
        ids = table.loc[table["split"] == "valid", "id"].tolist()
        a, b = store.read_rows(fp32, ids, residues=True), store.read_rows(bf16, ids, residues=True)
        mean, layers = metrics.cosine(a.mean, b.mean), metrics.cosine(a.layers, b.layers)
        residue = np.concatenate([metrics.cosine(x, y) for x, y in zip(a.residues, b.residues)])
        print(f"2. cosine bf16 to fp32 on {len(ids)} valid domains: mean embedding min {mean.min():.5f} mean "
              f"{mean.mean():.6f}; per-layer means min {layers.min():.5f}; residues min {residue.min():.4f} "
              f"mean {residue.mean():.5f}")
        results = {name: valid_top1(path, table, work / name) for name, path in (("fp32", fp32), ("bf16", bf16))}
        for n, what in enumerate(("all-layer probe", "template search alone")):
            right32, right16 = results["fp32"][n], results["bf16"][n]
            d = metrics.paired_bootstrap(right16, right32)
            print(f"3. {what}, valid top-1: fp32 {100 * right32.mean():.1f} %, bf16 {100 * right16.mean():.1f} % "
                  f"(bf16 - fp32: {100 * d['difference']:+.1f} [{100 * d['ci_low']:+.1f}, {100 * d['ci_high']:+.1f}] points)")


if __name__ == "__main__":
    main()
