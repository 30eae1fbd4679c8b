"""Fine-tune ESM-2's top layers end to end for fold classification: issue 9's optional GPU row.

Self-contained (torch, transformers, numpy, pandas) so that it runs on a bare GPU machine::

    python benchmarks/finetune_gpu.py --export runs/gpu            # here: data + pLM into runs/gpu
    python benchmarks/finetune_gpu.py --data runs/gpu --top-layers 6 --epochs 16 --seed 0 --out OUT   # GPU machine
    python benchmarks/finetune_gpu.py --score OUT/finetune_top6_seed0_probs.npz OUT/finetune_top6_seed1_probs.npz
                                                                  # here: seeds averaged, and mixed with the default

The classifier reads what the default model reads: the mean over residues of every hidden
layer's states (7 x 320 for ESM-2 8M), here with the top ``--top-layers`` transformer layers
trained with it (the rest frozen), a linear fold head, label smoothing 0.1, AdamW. The epoch with
the best ``valid`` top-1 is the one scored on the three DeepSF test levels (bootstrap 95 %
intervals); every epoch's valid and test top-1 is printed too, for the learning curve, not for
choosing. Not the default model: training on 2 CPU cores would take hours.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

SPLITS = ("train", "valid", "test_fold", "test_superfamily", "test_family")


def export(out: Path) -> None:
    """The DeepSF table (id, sequence, fold, split) and the offline pLM, for the GPU machine."""
    from coevofold import data, pretrained

    out.mkdir(parents=True, exist_ok=True)
    table = data.load("deepsf")[["id", "sequence", "fold", "superfamily", "split"]]
    table.to_csv(out / "deepsf.tsv", sep="\t", index=False)
    source = pretrained.offline_copy_dir()
    shutil.copytree(source, out / "plm", dirs_exist_ok=True)
    print(f"exported {len(table)} domains and {source} to {out}")


def batches(lengths: np.ndarray, max_tokens: int, shuffle: np.random.Generator | None) -> list[np.ndarray]:
    """Length-sorted batches of at most ``max_tokens`` padded tokens (shuffled batch order for training)."""
    order = np.argsort(lengths, kind="stable")
    out, start = [], 0
    while start < len(order):
        end = start + 1
        while end < len(order) and (end - start + 1) * lengths[order[end]] <= max_tokens:
            end += 1
        out.append(order[start:end])
        start = end
    if shuffle is not None:
        shuffle.shuffle(out)
    return out


class FoldModel(torch.nn.Module):
    def __init__(self, plm, n_classes: int, top_layers: int) -> None:
        super().__init__()
        self.plm = plm
        for p in self.plm.parameters():
            p.requires_grad = False
        layers = self.plm.encoder.layer
        for layer in layers[len(layers) - top_layers:]:
            for p in layer.parameters():
                p.requires_grad = True
        if top_layers and self.plm.encoder.emb_layer_norm_after is not None:
            for p in self.plm.encoder.emb_layer_norm_after.parameters():
                p.requires_grad = True
        width = plm.config.hidden_size * (plm.config.num_hidden_layers + 1)
        self.norm = torch.nn.LayerNorm(width)
        self.head = torch.nn.Sequential(torch.nn.Dropout(0.3), torch.nn.Linear(width, n_classes))

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        hidden = self.plm(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
        residues = mask.clone()
        residues[:, 0] = 0  # <cls>
        residues[torch.arange(len(ids)), mask.sum(1) - 1] = 0  # <eos>
        weights = (residues / residues.sum(1, keepdim=True)).unsqueeze(-1).to(hidden[0].dtype)
        pooled = torch.cat([(h * weights).sum(1) for h in hidden], dim=-1)
        return self.head(self.norm(pooled.float()))


def score(paths: list[Path]) -> None:
    """Average fine-tuned runs' saved probabilities; mix them with the default model (weights on valid)."""
    from coevofold import benchmark, evaluation, training
    from coevofold.prediction import default_model_dir

    table, store_path = benchmark.cached_deepsf()
    splits = list(SPLITS[1:])
    runs = [np.load(path) for path in paths]
    tuned = {s: np.mean([run[s].astype(np.float64) for run in runs], axis=0) for s in splits}
    _, default, targets = evaluation.model_scores(default_model_dir(), store_path, table, splits)
    weights = training.fit_ensemble_weights([default["valid"], tuned["valid"]], targets["valid"])
    mixed = {s: weights[0] * default[s] + weights[1] * tuned[s] for s in splits}
    rows = {f"fine-tuned, {len(runs)} run(s) averaged": tuned,
            f"that + the default model ({weights[1]:.1f} / {weights[0]:.1f} on valid)": mixed}
    for label, probs in rows.items():
        print(f"{label}: valid top-1 {100 * float((probs['valid'].argmax(1) == targets['valid']).mean()):.1f}")
    print(evaluation.results_markdown({label: evaluation.evaluate_levels({s: p[s] for s in splits[1:]},
                                                                         {s: targets[s] for s in splits[1:]}, ks=(1,))
                                       for label, p in rows.items()}, published=False))


def bootstrap(correct: np.ndarray, n: int = 1000, seed: int = 0) -> tuple[float, float]:
    boot = correct[np.random.default_rng(seed).integers(0, len(correct), (n, len(correct)))].mean(1)
    return float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--export", type=Path, help="write the data and pLM for the GPU machine here, then stop")
    parser.add_argument("--data", type=Path, help="folder written by --export")
    parser.add_argument("--score", type=Path, nargs="+", help="saved *_probs.npz of runs to average and mix with the default")
    parser.add_argument("--top-layers", type=int, default=2, help="transformer layers trained (0: frozen pLM)")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--lr-plm", type=float, default=5e-5)
    parser.add_argument("--lr-head", type=float, default=1e-3)
    parser.add_argument("--max-tokens", type=int, default=16384, help="padded tokens per batch")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="write results JSON here")
    parser.add_argument("--limit", type=int, default=None, help="first N domains of each split (a smoke test)")
    args = parser.parse_args()
    if args.export:
        export(args.export)
        return
    if args.score:
        score(args.score)
        return
    from transformers import AutoTokenizer, EsmModel

    torch.manual_seed(args.seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    table = pd.read_csv(args.data / "deepsf.tsv", sep="\t")
    classes = sorted(table.loc[table["split"] == "train", "fold"].unique())
    code = {c: i for i, c in enumerate(classes)}
    tokenizer = AutoTokenizer.from_pretrained(args.data / "plm")
    plm = EsmModel.from_pretrained(args.data / "plm", add_pooling_layer=False)
    model = FoldModel(plm, len(classes), args.top_layers).to(device)
    encoded = {}
    for split in SPLITS:
        rows = table[table["split"] == split].head(args.limit)
        tokens = [tokenizer(s[:1022])["input_ids"] for s in rows["sequence"]]
        targets = np.array([code.get(f, -1) for f in rows["fold"]])
        encoded[split] = (tokens, targets, np.array([len(t) for t in tokens]))

    def tensors(tokens: list[list[int]], index: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        width = max(len(tokens[i]) for i in index)
        ids = torch.full((len(index), width), tokenizer.pad_token_id, dtype=torch.long)
        for row, i in enumerate(index):
            ids[row, : len(tokens[i])] = torch.tensor(tokens[i])
        return ids.to(device), (ids != tokenizer.pad_token_id).long().to(device)

    def predict(split: str) -> np.ndarray:
        tokens, _, lengths = encoded[split]
        model.eval()
        out = np.zeros((len(tokens), len(classes)), dtype=np.float32)
        with torch.no_grad(), torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda"):
            for index in batches(lengths, args.max_tokens * 2, None):
                out[index] = model(*tensors(tokens, index)).float().softmax(-1).cpu().numpy()
        return out

    groups = [{"params": model.head.parameters(), "lr": args.lr_head}, {"params": model.norm.parameters(), "lr": args.lr_head},
              {"params": [p for p in model.plm.parameters() if p.requires_grad], "lr": args.lr_plm}]
    optimizer = torch.optim.AdamW(groups, weight_decay=1e-2)
    rng = np.random.default_rng(args.seed)
    tokens, targets, lengths = encoded["train"]
    best, history, started = None, [], time.perf_counter()
    for epoch in range(args.epochs):
        model.train()
        for index in batches(lengths, args.max_tokens, rng):
            with torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda"):
                logits = model(*tensors(tokens, index))
            loss = torch.nn.functional.cross_entropy(logits.float(), torch.tensor(targets[index], device=device),
                                                     label_smoothing=0.1)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        scores = {s: predict(s) for s in SPLITS[1:]}
        top1 = {s: float((scores[s].argmax(1) == encoded[s][1]).mean()) for s in scores}
        history.append({"epoch": epoch + 1, "seconds": time.perf_counter() - started, **top1})
        print(json.dumps(history[-1]), flush=True)
        if best is None or top1["valid"] > best[0]["valid"]:
            best = (top1, {s: scores[s].argmax(1) == encoded[s][1] for s in scores}, scores)
    result = {"top_layers": args.top_layers, "epochs": args.epochs, "lr_plm": args.lr_plm,
              "device": torch.cuda.get_device_name() if device == "cuda" else "cpu", "history": history,
              "best_valid_epoch": {s: {"top1": best[0][s], "ci": bootstrap(best[1][s].astype(float))} for s in best[0]}}
    print(json.dumps(result["best_valid_epoch"]))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        stem = f"finetune_top{args.top_layers}_seed{args.seed}"
        (args.out / f"{stem}.json").write_text(json.dumps(result, indent=1))
        np.savez_compressed(args.out / f"{stem}_probs.npz", **{s: p.astype(np.float16) for s, p in best[2].items()})


if __name__ == "__main__":
    main()
