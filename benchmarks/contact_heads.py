"""How much contact signal each ESM-2 attention head carries, and what a 32 x 32 grid keeps of it.

A measurement that informs feature design, not a test: on the 26 real chains of
``shared/data/structures`` it reports mean long-range (separation >= 24) top-L, L/2, L/5 contact
precision of every attention head (symmetrized + APC), each layer's head average, the average of
all heads, the checkpoint's contact-regression head, that head's probabilities stored as uint8,
and the same maps average-pooled to a 32 x 32 grid and blown back up to L x L (nearest), which
tells how much residue-level signal a fixed-size feature grid keeps.

Run from the repository root:  python benchmarks/contact_heads.py
"""

from __future__ import annotations

import argparse
import re
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from transformers import AutoTokenizer, EsmModel
from transformers.models.esm.modeling_esm import average_product_correct, symmetrize
from transformers.utils import logging as transformers_logging

from coevofold import pretrained
from coevofold.contacts import RANDOM_ROW, TOP_K, evaluate_maps, read_benchmark
from coevofold.data import data_root

GRID = 32
POOLED = f" pooled {GRID}x{GRID}"
ALL_HEADS = "all-head avg"
CONTACT_HEAD = "contact head"
CONTACT_HEAD_UINT8 = "contact head uint8"


def head_name(layer: int, head: int) -> str:
    """``L6H4``: layer counted from 1, head from 0, the names used in the structures' SOURCE.md."""
    return f"L{layer + 1}H{head}"


def layer_name(layer: int) -> str:
    return f"layer {layer + 1} avg"


def pool(maps: torch.Tensor) -> torch.Tensor:
    """Average ``[N, L, L]`` maps over a GRID x GRID grid, then repeat each cell back to L x L."""
    length = maps.shape[-1]
    grid = F.adaptive_avg_pool2d(maps[:, None], GRID)
    return F.interpolate(grid, size=(length, length), mode="nearest")[:, 0]


def model_maps(model: EsmModel, tokenizer, sequence: str) -> dict[str, np.ndarray]:
    """Every map this benchmark scores, for one sequence, each [L, L] without BOS/EOS."""
    tokens = tokenizer(sequence, return_tensors="pt")
    attentions = torch.stack(model(**tokens, output_attentions=True).attentions, dim=1)
    # [layers, heads, L, L] without BOS/EOS, each head symmetrized + APC on its own
    heads = average_product_correct(symmetrize(attentions[0, ..., 1:-1, 1:-1]))
    # What model.predict_contacts returns for one unpadded sequence, without a second forward pass.
    probabilities = model.contact_head(tokens["input_ids"], attentions)[0]
    named = {
        ALL_HEADS: heads.mean(dim=(0, 1)),
        **{layer_name(layer): heads[layer].mean(dim=0) for layer in range(heads.shape[0])},
        **{
            head_name(layer, head): heads[layer, head]
            for layer in range(heads.shape[0])
            for head in range(heads.shape[1])
        },
        CONTACT_HEAD: probabilities,
        CONTACT_HEAD_UINT8: torch.round(probabilities * 255) / 255,
    }
    pooled = pool(torch.stack(list(named.values())))
    named |= {name + POOLED: grid for name, grid in zip(list(named), pooled, strict=True)}
    return {name: scores.numpy() for name, scores in named.items()}


def report(table: pd.DataFrame, layers: int) -> pd.DataFrame:
    """The rows worth reading, in reading order, with the 10 best single heads by top-L/5."""
    heads = [name for name in table.index if re.fullmatch(r"L\d+H\d+", name)]
    best_heads = table.loc[heads].sort_values("top-L/5", ascending=False, kind="stable").index[:10]
    layer_rows = [layer_name(layer) for layer in range(layers)]
    rows = [RANDOM_ROW, ALL_HEADS, *layer_rows, *best_heads, CONTACT_HEAD, CONTACT_HEAD_UINT8]
    pooled = [ALL_HEADS, layer_rows[-1], best_heads[0], CONTACT_HEAD]
    return table.loc[rows + [name + POOLED for name in pooled], list(TOP_K)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--structures", type=Path, default=data_root() / "structures")
    parser.add_argument(
        "--model", default=str(pretrained.offline_copy_dir()),
        help="ESM-2 checkpoint with a contact-regression head: a directory or hub id",
    )
    args = parser.parse_args()

    transformers_logging.set_verbosity_error()  # the classifier weights it skips are expected
    transformers_logging.disable_progress_bar()
    start = time.perf_counter()
    targets = read_benchmark(args.structures)
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    model = EsmModel.from_pretrained(args.model, attn_implementation="eager").eval()
    with torch.inference_mode():
        table = evaluate_maps(targets, lambda sequence: model_maps(model, tokenizer, sequence))
    lengths = [len(target.sequence) for target in targets]
    print(
        f"{len(targets)} chains, {min(lengths)}-{max(lengths)} residues; mean long-range "
        f"(separation >= 24) precision; heads L<layer 1-6>H<head 0-19>, symmetrized + APC"
    )
    print(report(table, model.config.num_hidden_layers).to_string(float_format="%.3f"))
    print(f"took {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
