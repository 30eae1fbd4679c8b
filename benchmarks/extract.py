"""Extraction throughput, stored bytes and peak memory: coevofold's store vs the naive raw dump.

On one fixed random sample of DeepSF training domains, in one run, it measures:

* coevofold: ``extraction.extract`` into a fresh store with the default settings (length-sorted
  batches, one-pass weighted APC maps, pooled fixed-size arrays, uint8 contact triangle, gzip);
* forward: the limit, the pLM's plain fp32 forward pass (SDPA attention, no hidden states kept,
  no output) over the same length-sorted batches extraction makes;
* maps: ``extraction.extract`` with ``--maps layers`` (the attention maps the default leaves out);
* naive: the original study's approach, one protein at a time through the same model with
  ``output_attentions=True``, saving every layer's and head's attention (special tokens removed,
  float32) with ``np.save``, one file per protein.

Each method runs in its own fresh Python process, so its peak resident memory
(``getrusage(RUSAGE_SELF).ru_maxrss`` at the end of that process) is its own. Times cover the
extraction only, not starting Python or loading the model (the same for both); coevofold's time
includes Lightning's start-up, writing part files and merging them into the store.

The estimate for the whole DeepSF benchmark scales the measured coevofold time by the ratio of
total residues (right when the model's dense layers dominate, as for short chains and an 8M
model) and by the ratio of total squared lengths (right when attention dominates): the truth
lies between the two, and a random sample keeps both ratios close to the count ratio.

Run from the repository root:  python benchmarks/extract.py [--n 200]
The machine may be shared: the load average before and after is printed with the numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from coevofold.data import tables
from coevofold.features import extraction, pretrained

METHODS = {
    "forward": "plain fp32 forward pass (fused attention, last hidden state, length-sorted batches; nothing kept)",
    "coevofold": "coevofold (extraction.extract, default settings: no maps)",
    "maps": "coevofold with --maps layers (eager attention, contact map + per-layer APC maps)",
    "naive": "naive (raw attention, float32 .npy per protein)",
}


def peak_mb() -> float:
    """Peak resident memory of this process in MB (Linux reports ru_maxrss in KB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def naive_dump(plm: pretrained.ProteinLM, table: pd.DataFrame, out: Path) -> None:
    """The original approach: every head's attention map of every protein, kept whole."""
    for record_id, sequence in zip(table["id"], table["sequence"]):
        tokens = {k: v.to(plm.model.device) for k, v in plm.encode([sequence]).items()}
        with torch.inference_mode():
            attentions = plm.forward(tokens, attentions=True).attentions
        raw = torch.stack(attentions, dim=1)[0, :, :, 1:-1, 1:-1].float().cpu().numpy()  # [layers, heads, L, L]
        np.save(out / f"{record_id}.npy", raw)


def plain_forward(plm: pretrained.ProteinLM, table: pd.DataFrame) -> None:
    """The pLM's forward pass alone over extraction's batches: what extraction cannot beat in fp32."""
    run = extraction.RunConfig()
    sequences = table["sequence"].tolist()
    for batch in extraction.make_batches([len(s) for s in sequences], plm.window, extraction.FeatureConfig().stride,
                                         run.max_tokens, run.max_pairs):
        tokens = {k: v.to(plm.model.device) for k, v in plm.encode([sequences[i] for i in batch]).items()}
        with torch.inference_mode():
            plm.model(**tokens)


def worker(method: str, source: Path, out: Path) -> dict:
    """Run one method on the sample in this process; return its measurements."""
    # coevofold's default device ("auto") takes a GPU when there is one: so does the naive loop
    plm = pretrained.load(None, "cuda" if torch.cuda.is_available() else "cpu")
    table = tables.load(source)
    loaded = peak_mb()
    started = time.perf_counter()
    if method in ("coevofold", "maps"):
        config = extraction.FeatureConfig(maps="none" if method == "coevofold" else "layers")
        files = [extraction.extract(table, out / "extraction.h5", config, extraction.RunConfig(progress=False), plm=plm)]
    elif method == "forward":
        plain_forward(plm, table)
        files = []
    else:
        naive_dump(plm, table, out)
        files = list(out.glob("*.npy"))
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "bytes": sum(f.stat().st_size for f in files),
        "peak_mb": peak_mb(),
        "loaded_mb": loaded,
        "model": plm.label,
        "threads": torch.get_num_threads(),
        "device": str(plm.model.device),
    }


def run_worker(method: str, source: Path, work: Path) -> dict:
    out = work / method
    out.mkdir()
    command = [sys.executable, __file__, "--worker", method, str(source), str(out)]
    result = subprocess.run(command, check=True, capture_output=True, text=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg()) + f" ({os.cpu_count()} cores)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=200, help="proteins in the sample")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sample")
    parser.add_argument("--worker", nargs=3, metavar=("METHOD", "SOURCE", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        method, source, out = args.worker
        print(json.dumps(worker(method, Path(source), Path(out))))
        return

    full = tables.load("deepsf")
    sample = full[full["split"] == "train"].sample(n=args.n, random_state=args.seed)
    lengths, all_lengths = sample["length"].to_numpy(np.int64), full["length"].to_numpy(np.int64)
    print(f"DeepSF train sample: {len(sample)} proteins (seed {args.seed}), {lengths.sum():,} residues, "
          f"length {lengths.min()}-{lengths.max()} (median {int(np.median(lengths))})")
    print(f"load average before: {load_average()}")
    results = {}
    with tempfile.TemporaryDirectory(prefix="coevofold-bench-") as tmp:
        work = Path(tmp)
        source = work / "sample.fasta"
        source.write_text("".join(f">{i}\n{s}\n" for i, s in zip(sample["id"], sample["sequence"])))
        for method in METHODS:
            results[method] = run_worker(method, source, work)
    print(f"load average after:  {load_average()}")
    print(f"model: {results['coevofold']['model']}; device: {results['naive']['device']}; "
          f"torch threads: {results['coevofold']['threads']}")

    rows = {}
    for method, label in METHODS.items():
        r = results[method]
        rows[label] = {
            "proteins/s": len(sample) / r["seconds"],
            "seconds": r["seconds"],
            "KB/protein": r["bytes"] / len(sample) / 1024,
            "peak RSS MB": r["peak_mb"],
            "RSS after load MB": r["loaded_mb"],
        }
    print(pd.DataFrame(rows).T.to_string(float_format=lambda x: f"{x:,.2f}"))
    coevo, naive = results["coevofold"], results["naive"]
    print(f"coevofold vs the plain forward pass: {results['forward']['seconds'] / coevo['seconds']:.2f}x its proteins/s; "
          f"with maps: {results['forward']['seconds'] / results['maps']['seconds']:.2f}x")
    print(f"coevofold vs naive: {naive['seconds'] / coevo['seconds']:.2f}x the proteins/s, "
          f"{naive['bytes'] / coevo['bytes']:,.0f}x fewer bytes, {coevo['peak_mb'] / naive['peak_mb']:.2f}x the peak RSS")
    by_residues = coevo["seconds"] * all_lengths.sum() / lengths.sum()
    by_squares = coevo["seconds"] * (all_lengths**2).sum() / (lengths**2).sum()
    naive_bytes = naive["bytes"] * (all_lengths**2).sum() / (lengths**2).sum()  # raw maps are L^2 each
    print(f"\nwhole DeepSF benchmark ({len(full):,} proteins, {all_lengths.sum():,} residues) at the measured "
          f"coevofold rate: {by_residues / 60:.1f} min scaled by total residues, {by_squares / 60:.1f} min "
          f"scaled by total squared lengths; naive time {naive['seconds'] * all_lengths.sum() / lengths.sum() / 60:.1f}"
          f"-{naive['seconds'] * (all_lengths**2).sum() / (lengths**2).sum() / 60:.1f} min by the same scalings")
    print(f"storage for it: coevofold ~{coevo['bytes'] / len(sample) * len(full) / 2**30:.2f} GiB "
          f"(per-protein mean x count), naive ~{naive_bytes / 2**30:.0f} GiB (scaled by total squared lengths)")


if __name__ == "__main__":
    main()
