"""Other ways to combine the default's members, and two cheap extra signals: held-out data only.

Run after ``coevofold quickstart`` (it reuses the default model's members and its calibration
proxy, the same recipes trained without the proteins ``splits.calibration_split`` holds out;
~3 min, ~10 min with ``--chamfer``)::

    python benchmarks/ensemble_rules.py [--chamfer]

Every row is fitted on ``valid`` (the proxy's rows on the proxy's ``valid``) and scored on the
proxy's held-out fold-, superfamily- and family-like proteins, the data the default's own choices
were made on; no DeepSF test level is read. Rows:

- the default rule: a weighted mean of the members' probabilities, one weight per recipe on a
  0.1 grid, chosen by ``valid`` top-1 (``training.fit_ensemble_weights``);
- the same weights on a weighted geometric mean (log-probabilities averaged);
- weights chosen by ``valid`` log-loss instead of top-1;
- bagged weights: the top-1 choice on 500 bootstrap resamples of ``valid``, averaged;
- the default times a fold length likelihood (a normal on log length per fold, fitted on the
  training proteins) to the power ``beta``, ``beta`` on ``valid``;
- ``--chamfer``: the default mixed with a nearest-neighbour vote over the training proteins by
  chamfer similarity of the 32 segment embeddings (each segment's best cosine match in the
  other protein, averaged both ways): an alignment-free, order-free stand-in for
  embedding-based alignment; its mixing weight and temperature on ``valid``.
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd
import torch
from scipy.special import softmax

from coevofold import benchmark, evaluation, splits, store, system, training
from coevofold.prediction import default_model_dir
from coevofold.splits import CALIBRATION_SPLITS

KINDS = ("valid", *CALIBRATION_SPLITS)


def top1(p: np.ndarray, t: np.ndarray) -> float:
    seen = t >= 0
    return 100 * float((p[seen].argmax(1) == t[seen]).mean())


def log_loss(p: np.ndarray, t: np.ndarray) -> float:
    seen = t >= 0
    return float(-np.log(p[seen][np.arange(seen.sum()), t[seen]] + 1e-12).mean())


def mix(groups: list[np.ndarray], w: np.ndarray) -> np.ndarray:
    return sum(wi * g for wi, g in zip(w, groups))


def geometric(groups: list[np.ndarray], w: np.ndarray) -> np.ndarray:
    logits = sum(wi * np.log(g + 1e-12) for wi, g in zip(w, groups))
    e = np.exp(logits - logits.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def bagged_weights(groups: list[np.ndarray], t: np.ndarray, n: int = 500, seed: int = 0) -> np.ndarray:
    seen = t >= 0
    combos = training.simplex_grid(len(groups))
    right, logp = [], []
    for w in combos:
        m = mix(groups, w)[seen]
        right.append(m.argmax(1) == t[seen])
        logp.append(np.log(m[np.arange(len(m)), t[seen]] + 1e-12))
    right, logp = np.array(right), np.array(logp)
    rng = np.random.default_rng(seed)
    chosen = []
    for _ in range(n):
        rows = rng.integers(0, seen.sum(), seen.sum())
        chosen.append(combos[np.lexsort((-logp[:, rows].mean(1), -right[:, rows].mean(1)))[0]])
    return np.mean(chosen, axis=0)


def length_log_likelihood(train: pd.DataFrame, classes: list[str], rows: pd.DataFrame) -> np.ndarray:
    """log N(log length | fold): per-fold mean, per-fold spread shrunk towards the pooled one."""
    x = np.log(train["sequence"].str.len().to_numpy())
    pooled = x.std()
    mu, sd = np.full(len(classes), x.mean()), np.full(len(classes), pooled)
    index = {c: i for i, c in enumerate(classes)}
    for fold, values in pd.Series(x).groupby(train["fold"].to_numpy()):
        n = len(values)
        mu[index[fold]] = values.mean()
        sd[index[fold]] = np.sqrt((n * values.var(ddof=0) + 3 * pooled ** 2) / (n + 3))
    q = np.log(rows["sequence"].str.len().to_numpy())[:, None]
    return -0.5 * ((q - mu) / sd) ** 2 - np.log(sd)


def chamfer_fold_scores(store_path, train: pd.DataFrame, rows: pd.DataFrame, classes: list[str]) -> np.ndarray:
    """Per fold, the best chamfer similarity of a query's segments to a training protein's."""
    reference = torch.tensor(store.read_rows(store_path, train["id"].tolist()).embedding, dtype=torch.float32)
    flat = reference.reshape(-1, reference.shape[-1])
    mean, std = flat.mean(0), flat.std(0) + 1e-6

    def unit(e: torch.Tensor) -> torch.Tensor:
        e = (e - mean) / std
        return e / e.norm(dim=-1, keepdim=True)

    reference = unit(reference)
    queries = unit(torch.tensor(store.read_rows(store_path, rows["id"].tolist()).embedding, dtype=torch.float32))
    labels = torch.tensor([classes.index(f) for f in train["fold"]])
    out = torch.full((len(queries), len(classes)), -1e9)
    for start in range(0, len(queries), 8):
        s = torch.einsum("qad,nbd->qnab", queries[start:start + 8], reference)
        sim = 0.5 * (s.amax(3).mean(2) + s.amax(2).mean(2))
        out[start:start + 8] = out[start:start + 8].scatter_reduce(1, labels.expand(len(sim), -1), sim, reduce="amax")
    return out.numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--chamfer", action="store_true", help="add the segment nearest-neighbour rows (~7 min)")
    args = parser.parse_args()
    model_dir = default_model_dir()
    table, store_path = benchmark.cached_deepsf()
    carved = splits.calibration_split(table)
    members = training.default_members(False)
    groups = training.seed_groups(members)
    proxy, targets = {}, None
    for name in members:
        meta, proxy[name], targets = evaluation.model_scores(model_dir / system.PROXY_DIR / "members" / name,
                                                            store_path, carved, KINDS)
    classes = list(meta["classes"])
    recipes = {k: [np.mean([proxy[n][k] for n in g], axis=0) for g in groups] for k in KINDS}
    fit, t = recipes["valid"], targets["valid"]

    by_top1 = training.fit_ensemble_weights(fit, t)
    by_loss = min(training.simplex_grid(len(fit)), key=lambda w: log_loss(mix(fit, w), t))
    bagged = bagged_weights(fit, t)
    default = {k: mix(recipes[k], by_top1) for k in KINDS}
    rows = {
        f"default rule: weighted mean, weights by valid top-1 {by_top1.round(2).tolist()}": default,
        "weighted geometric mean, same weights": {k: geometric(recipes[k], by_top1) for k in KINDS},
        f"weights by valid log-loss {np.round(by_loss, 2).tolist()}": {k: mix(recipes[k], by_loss) for k in KINDS},
        f"bagged weights (500 bootstrap fits of valid) {bagged.round(2).tolist()}": {k: mix(recipes[k], bagged) for k in KINDS},
    }
    train = carved[carved["split"] == "train"]
    length = {k: length_log_likelihood(train, classes, carved[carved["split"] == k]) for k in KINDS}
    beta = max((0.0, 0.1, 0.25, 0.5, 1.0), key=lambda b: top1(np.log(default["valid"] + 1e-12) + b * length["valid"], t))
    for b in sorted({0.25, beta}):
        rows[f"default x length likelihood ^ {b}{' (best on valid)' if b == beta else ''}"] = {
            k: np.log(default[k] + 1e-12) + b * length[k] for k in KINDS}
    if args.chamfer:
        near = {k: chamfer_fold_scores(store_path, train, carved[carved["split"] == k], classes) for k in KINDS}
        settings = [(w, temp) for w in (0.1, 0.2, 0.3, 0.5) for temp in (0.01, 0.02, 0.05)]
        w, temp = max(settings, key=lambda s: top1((1 - s[0]) * default["valid"] + s[0] * softmax(near["valid"] / s[1], axis=1), t))
        rows["segment chamfer nearest neighbour alone"] = near
        rows[f"default + chamfer neighbour vote ({w} mixed, temperature {temp}; best on valid)"] = {
            k: (1 - w) * default[k] + w * softmax(near[k] / temp, axis=1) for k in KINDS}

    print("Calibration proxy (trained without the held-out proteins); top-1 %\n")
    print("| Rule | proxy valid | held-out fold-like | superfamily-like | family-like |\n|---|---|---|---|---|")
    for label, scores in rows.items():
        print(f"| {label} | " + " | ".join(f"{top1(scores[k], targets[k]):.1f}" for k in KINDS) + " |")


if __name__ == "__main__":
    main()
