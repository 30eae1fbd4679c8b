"""Probes of issue 18 on held-out rows only (kept in the tree for one commit; docs/research.md).

After ``coevofold quickstart`` (~6 min on 2 cores)::

    python benchmarks/probes_issue18.py

1. The combiner with more candidate features, or gradient boosting: top-1 on the proxy's
   held-out rows, cross-fitted by superfamily.
2. The template search's prefilter widened with the classifier's candidate folds, template
   search alone on 150 fold-like and 150 superfamily-like held-out rows, and exhaustive.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import torch
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from coevofold import metrics
from coevofold.app import runs
from coevofold.data import splits
from coevofold.data.splits import CALIBRATION_SPLITS
from coevofold.features import store
from coevofold.prediction import default_model_dir
from coevofold.system import combiner, preparation, templates
from coevofold.system import embedding_alignment as ea
from coevofold.training import recipe, scoring

EXTRA = ["top-10 count", "top-30 count", "z vote", "second z", "z margin", "log p margin", "query best z",
         "query best Smith-Waterman"]


def extra_features(ev: combiner.Evidence, hits: templates.Hits, codes: np.ndarray, q: np.ndarray,
                   k: np.ndarray) -> dict[str, np.ndarray]:
    n, c = ev.probs.shape
    cls = codes[hits.index]
    cnt10, cnt30, vote = np.zeros((n, c)), np.zeros((n, c)), np.zeros((n, c))
    second = np.repeat(hits.z.min(1, keepdims=True), c, 1).astype(float)
    for i in range(n):
        np.add.at(cnt10[i], cls[i, :10], 1)
        np.add.at(cnt30[i], cls[i, :30], 1)
        e = np.exp(hits.z[i] - hits.z[i].max())
        np.add.at(vote[i], cls[i], e / e.sum())
        seen: dict[int, int] = {}
        for j, klass in enumerate(cls[i]):
            seen[klass] = seen.get(klass, 0) + 1
            if seen[klass] == 2:
                second[i, klass] = hits.z[i, j]
    tz, pm = ev.template_z, ev.probs
    ts, ps = np.sort(tz, 1), np.sort(pm, 1)
    other_z = np.where(tz == ts[:, -1:], ts[:, -2:-1], ts[:, -1:])
    other_p = np.where(pm == ps[:, -1:], ps[:, -2:-1], ps[:, -1:])
    return {"top-10 count": np.log1p(cnt10[q, k]), "top-30 count": np.log1p(cnt30[q, k]),
            "z vote": np.log(vote[q, k] + 1e-6), "second z": second[q, k], "z margin": (tz - other_z)[q, k],
            "log p margin": np.log(pm[q, k] + 1e-8) - np.log(other_p[q, k] + 1e-8),
            "query best z": tz.max(1)[q], "query best Smith-Waterman": np.clip(ev.alignment.max(1), 0, 300)[q]}


def combiner_probe(rows: preparation.HeldOut, hits: templates.Hits, codes: np.ndarray) -> None:
    ev, y = rows.evidence, rows.targets
    q, k = combiner.candidates(ev)
    base = combiner.features(ev, q, k)
    extra = extra_features(ev, hits, codes, q, k)
    label, w = k == y[q], rows.weights[q]

    def run(name: str, x: np.ndarray, boosted: bool) -> None:
        right = np.zeros(len(y), bool)
        for train, held in GroupKFold(5).split(y, groups=rows.superfamilies):
            fit_rows, score_rows = np.isin(q, train), np.isin(q, held)
            if boosted:
                model = HistGradientBoostingClassifier(max_iter=200, learning_rate=0.05, random_state=0)
                model.fit(x[fit_rows], label[fit_rows], sample_weight=w[fit_rows])
                s = model.predict_proba(x[score_rows])[:, 1]
            else:
                model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
                model.fit(x[fit_rows], label[fit_rows], logisticregression__sample_weight=w[fit_rows])
                s = model.decision_function(x[score_rows])
            qq, kk = q[score_rows], k[score_rows]
            best = pd.DataFrame({"q": qq, "k": kk, "s": s}).sort_values("s", ascending=False).drop_duplicates("q")
            right[best["q"].to_numpy()] = best["k"].to_numpy() == y[best["q"].to_numpy()]
        cells = [f"{100 * right[rows.levels == kind].mean():.1f}" for kind in CALIBRATION_SPLITS]
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)

    print("1. combiner variants, top-1 % on held-out rows (cross-fitted by superfamily)\n")
    print("| combiner | fold-like | superfamily-like | family-like |\n|---|---|---|---|")
    run("logistic, the default's features", base, False)
    run("gradient boosting, the default's features", base, True)
    everything = np.column_stack([base, *(extra[name] for name in EXTRA)])
    run("logistic, + every extra feature", everything, False)
    run("gradient boosting, + every extra feature", everything, True)
    for name in EXTRA:
        run(f"logistic, + {name}", np.column_stack([base, extra[name]]), False)


def prefilter_probe(rows: preparation.HeldOut, held: pd.DataFrame, proxy: templates.Templates, codes: np.ndarray,
                    store_path) -> None:
    rng = np.random.default_rng(0)
    pick = np.concatenate([rng.choice(np.nonzero(rows.levels == kind)[0], 150, replace=False)
                           for kind in CALIBRATION_SPLITS[:2]])
    queries = store.read_rows(store_path, held["id"].iloc[pick].tolist(), residues=True)
    search = templates.TemplateSearch(proxy)
    members = {c: np.flatnonzero(codes == c) for c in np.unique(codes)}

    def best_fold(residues: np.ndarray, probs: np.ndarray, n_pooled: int, n_folds: int, per_fold: int) -> tuple[int, int]:
        t = search.templates
        unit = templates.unit_rows(residues, t.center)
        cosine = (search._pooled @ torch.from_numpy(templates.pooled_unit(unit))).numpy()
        chosen = [np.argpartition(-cosine, n_pooled - 1)[:n_pooled]] if n_pooled < len(t) else [np.arange(len(t))]
        for c in np.argsort(-probs)[:n_folds]:
            inside = members.get(c, np.array([], int))
            chosen.append(inside[np.argsort(-cosine[inside])[:per_fold]])
        chosen = np.unique(np.concatenate(chosen)).astype(int)
        both = np.concatenate([chosen, search.decoys])
        raw = np.concatenate([ea.block_scores(*search._similarity(unit, both[g]), search.config.gap)
                              for g in templates.column_groups(t.lengths[both])])
        score = ea.normalized(raw, len(unit), t.lengths[both])
        return int(codes[chosen[np.argmax(score[:len(chosen)])]]), len(chosen)

    print("\n2. prefilter widened by the classifier's top folds: template search alone, top-1 %\n")
    print("| prefilter | templates aligned | s a query | fold-like | superfamily-like |\n|---|---|---|---|---|")
    y, kinds = rows.targets[pick], rows.levels[pick]
    for n_pooled, n_folds, per_fold in ((300, 0, 0), (300, 10, 10), (200, 10, 10), (150, 10, 15), (300, 20, 10),
                                        (len(proxy), 0, 0)):
        started, right, sizes = time.perf_counter(), [], []
        for i, row in enumerate(pick):
            fold, size = best_fold(queries.residues[i], rows.evidence.probs[row], n_pooled, n_folds, per_fold)
            right.append(fold == y[i])
            sizes.append(size)
        right = np.array(right)
        print(f"| {n_pooled} by pooled cosine + {n_folds} folds x {per_fold} | {np.mean(sizes):.0f} | "
              f"{(time.perf_counter() - started) / len(pick):.3f} | {100 * right[kinds == CALIBRATION_SPLITS[0]].mean():.1f} | "
              f"{100 * right[kinds == CALIBRATION_SPLITS[1]].mean():.1f} |", flush=True)


def main() -> None:
    model_dir = default_model_dir()
    table, store_path = runs.cached_deepsf()
    carved = splits.calibration_split(table[table["split"] != "excluded"])
    held_alignment = preparation.cached_alignment("deepsf", splits.calibration_split(table), False, CALIBRATION_SPLITS)
    rows = preparation.held_out(model_dir, store_path, table, recipe.default_members(False), held_alignment, False)
    proxy = templates.load_templates(model_dir / preparation.PROXY_DIR, in_memory=True)
    parts = [preparation.cached_hits(proxy, store_path, carved, s, progress=False) for s in CALIBRATION_SPLITS]
    hits = templates.Hits(*(np.concatenate([getattr(h, f) for h in parts]) for f in ("index", "z", "score")))
    classes = scoring.model_scores(model_dir / preparation.PROXY_DIR, store_path, carved, ("valid",))[0]["classes"]
    codes = metrics.encode_labels(proxy.folds, classes)
    combiner_probe(rows, hits, codes)
    held = pd.concat([carved[carved["split"] == s] for s in CALIBRATION_SPLITS])
    prefilter_probe(rows, held, proxy, codes, store_path)


if __name__ == "__main__":
    main()
