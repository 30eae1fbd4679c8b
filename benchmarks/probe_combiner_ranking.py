"""Probe (issue 18): the combiner as a ranking model. On the proxy's held-out rows (cross-fitted by
superfamily, 5 folds, unit weights) compare the default pointwise logistic regression with a conditional
logit (softmax over each query's candidates, the true fold's log-likelihood maximised), with and without
extra candidate features. Run after quickstart.

    python benchmarks/probe_combiner_ranking.py 1:1   # 4:0.2 with benchmarks/affine_gaps.patch applied
"""
from __future__ import annotations

import sys

import numpy as np
from scipy.optimize import minimize
from sklearn.model_selection import GroupKFold

from coevofold import metrics
from coevofold.data import tables
from coevofold.files import cache_dir
from coevofold.prediction import default_model_dir
from coevofold.system import calibration, combiner, preparation, templates
from coevofold.training import recipe

o, e = (float(x) for x in sys.argv[1].split(":"))
original = templates.SearchConfig
if (o, e) != (1.0, 1.0):
    templates.SearchConfig = lambda: original(gap_open=o, gap_extend=e)
store_path = next((cache_dir() / "features").glob("deepsf-*.h5"))
table = tables.load("deepsf")
model_dir = default_model_dir()
held = preparation.cached_alignment("deepsf", preparation.splits.calibration_split(table), False,
                                    preparation.splits.CALIBRATION_SPLITS)
rows = preparation.held_out(model_dir, store_path, table, recipe.default_members(False), held, progress=False)
ev, targets, levels = rows.evidence, rows.targets, rows.levels
carved, kinds = preparation.calibration_rows(table[table["split"] != "excluded"])
proxy = model_dir / preparation.PROXY_DIR
found = templates.load_templates(proxy)
parts = [preparation.cached_hits(found, store_path, carved, s, progress=False) for s in kinds]
index = np.concatenate([h.index for h in parts])
hz = np.concatenate([h.z for h in parts])
from coevofold.training import scoring
meta, _, _ = scoring.model_scores(proxy, store_path, carved, ("valid",))
codes = metrics.encode_labels(found.folds, meta["classes"])
hit_class = codes[index]  # [N, K]
N, C = ev.probs.shape

query, klass = combiner.candidates(ev)
base = combiner.features(ev, query, klass)
tz = ev.template_z
top2 = -np.sort(-tz, axis=1)[:, :2]
best_other = np.where(tz[query, klass] >= top2[query, 0], top2[query, 1], top2[query, 0])
count10 = np.zeros((N, C)); np.add.at(count10, (np.arange(N)[:, None].repeat(10, 1), hit_class[:, :10]), 1)
count30 = np.zeros((N, C)); np.add.at(count30, (np.arange(N)[:, None].repeat(30, 1), hit_class[:, :30]), 1)
second = np.full((N, C), np.nan)
for q in range(N):
    seen = {}
    for k in range(hit_class.shape[1]):
        c = hit_class[q, k]
        seen[c] = seen.get(c, 0) + 1
        if seen[c] == 2 and np.isnan(second[q, c]):
            second[q, c] = hz[q, k]
second = np.where(np.isnan(second), hz.min(1, keepdims=True), second)
lp = np.log(np.clip(ev.probs, 1e-8, 1))
lp_top2 = -np.sort(-lp, axis=1)[:, :2]
lp_margin = lp[query, klass] - np.where(lp[query, klass] >= lp_top2[query, 0], lp_top2[query, 1], lp_top2[query, 0])
extra = {
    "z margin": tz[query, klass] - best_other,
    "top-10 count": np.log1p(count10[query, klass]),
    "top-30 count": np.log1p(count30[query, klass]),
    "second z": second[query, klass],
    "log p margin": lp_margin,
}
y = klass == targets[query]
w = rows.weights[query]
groups = rows.superfamilies


def softmax_top1(logit):
    score = np.full((N, C), -np.inf)
    score[query, klass] = logit
    return score.argmax(1)


def fit_pointwise(x, m):
    fitted = calibration.fit_logistic(x[m], y[m], [str(i) for i in range(x.shape[1])], weights=w[m])
    return lambda xx: xx @ np.asarray(fitted.coef) + fitted.intercept


def fit_conditional(x, m, l2=1e-3):
    mean, scale = x[m].mean(0), x[m].std(0) + 1e-9
    xs = (x - mean) / scale
    qm = query[m]
    uq, inv = np.unique(qm, return_inverse=True)
    has_true = np.zeros(len(uq), bool); np.logical_or.at(has_true, inv, y[m])
    qw = np.zeros(len(uq)); qw[inv] = w[m]
    qw = qw * has_true
    X, Y = xs[m], y[m]

    def loss(beta):
        s = X @ beta
        peak = np.full(len(uq), -np.inf); np.maximum.at(peak, inv, s)
        ex = np.exp(s - peak[inv])
        tot = np.zeros(len(uq)); np.add.at(tot, inv, ex)
        lse = np.log(tot) + peak
        true_s = np.zeros(len(uq)); np.add.at(true_s, inv, np.where(Y, s, 0))
        nll = -(qw * (true_s - lse)).sum() / qw.sum() + l2 * beta @ beta
        p = ex / tot[inv]
        grad_rows = (np.where(Y, 1.0, 0.0) - p) * qw[inv]
        g = -(X * grad_rows[:, None]).sum(0) / qw.sum() + 2 * l2 * beta
        return nll, g
    beta = minimize(loss, np.zeros(X.shape[1]), jac=True, method="L-BFGS-B").x
    return lambda xx: ((xx - mean) / scale) @ beta


def evaluate(x, fitter, name):
    pred = np.zeros(N, int)
    row_q = np.arange(N)
    for tr, te in GroupKFold(5).split(row_q, groups=groups):
        mtr = np.isin(query, tr)
        f = fitter(x, mtr)
        logit = f(x)
        p = softmax_top1(np.where(np.isin(query, te), logit, -np.inf))
        pred[te] = p[te]
    line = [f"{name:48s}"]
    for kind in kinds:
        k = levels == kind
        line.append(f"{kind.split('_')[1]} {100 * np.mean(pred[k] == targets[k]):.1f}")
    print(" ".join(line), flush=True)


print(f"gap {o}/{e}; {N} held-out rows, {len(query)} candidates; true fold among them for "
      f"{100 * np.mean(np.bincount(query, weights=y, minlength=N) > 0):.1f} %", flush=True)
for l2 in (0.0, 1e-4, 1e-3, 1e-2, 1e-1):
    evaluate(base, lambda x, m, l2=l2: fit_conditional(x, m, l2), f"conditional l2 {l2}")
    evaluate(np.column_stack([base, extra["top-10 count"]]), lambda x, m, l2=l2: fit_conditional(x, m, l2), f"conditional + top-10 count l2 {l2}")
evaluate(base, fit_pointwise, "pointwise (the default)")
evaluate(base, fit_conditional, "conditional logit")
allx = np.column_stack([base, *extra.values()])
evaluate(allx, fit_pointwise, "pointwise + all extra")
evaluate(allx, fit_conditional, "conditional + all extra")
for name, col in extra.items():
    evaluate(np.column_stack([base, col]), fit_conditional, f"conditional + {name}")
inter = np.column_stack([base, base[:, 0] * base[:, 3], base[:, 3] * base[:, 5], base[:, 0] * base[:, 5]])
evaluate(inter, fit_conditional, "conditional + interactions")

# where do superfamily-/fold-like queries fail? (default pointwise cross-fitted)
crossed = combiner.cross_fitted(ev, targets, groups, rows.weights)
for kind in kinds:
    k = np.where(levels == kind)[0]
    t = targets[k]
    in_hits = (hit_class[k] == t[:, None]).any(1)
    zt = tz[k, t]
    rank_t = (tz[k] > zt[:, None]).sum(1)
    right = crossed[k].argmax(1) == t
    print(kind, f"true fold in the 300 aligned: {100 * in_hits.mean():.1f}; search rank 0: {100 * np.mean(rank_t == 0):.1f}, "
          f"1-4: {100 * np.mean((rank_t >= 1) & (rank_t < 5)):.1f}; combined right {100 * right.mean():.1f}; "
          f"wrong with the true fold in hits: {100 * np.mean(~right & in_hits):.1f}; model top-1 {100 * np.mean(ev.probs[k].argmax(1) == t):.1f}", flush=True)

from coevofold.system import homology
min_score = homology.read_settings(model_dir).min_score
al = ev.alignment
transfer = al.max(1) >= min_score
sw_right = al.argmax(1) == targets
print("min_score", min_score)
for kind in kinds:
    k = levels == kind
    print(kind, f"transferred {100 * transfer[k].mean():.1f} (right {100 * sw_right[k & transfer].mean():.1f}); SW NN top-1 {100 * sw_right[k].mean():.1f}; "
          f"not transferred: combined {100 * np.mean(crossed[k & ~transfer].argmax(1) == targets[k & ~transfer]):.1f}, "
          f"search {100 * np.mean(tz[k & ~transfer].argmax(1) == targets[k & ~transfer]):.1f}, model {100 * np.mean(ev.probs[k & ~transfer].argmax(1) == targets[k & ~transfer]):.1f}", flush=True)
