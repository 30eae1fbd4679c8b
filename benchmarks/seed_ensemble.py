"""How many seeds the default ensemble averages: chosen on held-out data, then scored on test once.

Run after ``coevofold quickstart`` (it reuses the default model's members and its calibration
proxy, the same recipes trained without the proteins ``splits.calibration_split`` holds out;
~1 min)::

    python benchmarks/seed_ensemble.py

Prints, for single members and for ensembles with one weight per recipe fitted on ``valid``
(``training.seed_groups``): the proxy's top-1 on ``valid`` and on the held-out fold-, superfamily-
and family-like proteins (the data the choice was made on), then the final model's top-1 on
``valid`` and the three DeepSF test levels with bootstrap 95 % intervals.
"""

from __future__ import annotations

import argparse

import numpy as np

from coevofold import benchmark, evaluation, splits, system, training
from coevofold.prediction import default_model_dir
from coevofold.splits import CALIBRATION_SPLITS, TEST_SPLITS


def main() -> None:
    argparse.ArgumentParser(description=__doc__.split("\n")[0]).parse_args()
    model_dir = default_model_dir()
    table, store_path = benchmark.cached_deepsf()
    carved = splits.calibration_split(table)
    members = training.default_members(False)
    held = (*CALIBRATION_SPLITS, "valid")
    proxy, final, proxy_t, final_t = {}, {}, None, None
    for name in members:
        _, proxy[name], proxy_t = evaluation.model_scores(model_dir / system.PROXY_DIR / "members" / name,
                                                          store_path, carved, held)
        _, final[name], final_t = evaluation.model_scores(model_dir / "members" / name, store_path, table,
                                                          ("valid", *TEST_SPLITS))

    def ensemble(names: list[str], per_member: bool) -> tuple[dict, dict]:
        chosen = {n: members[n] for n in names}
        groups = [[n] for n in names] if per_member else training.seed_groups(chosen)
        weights = training.fit_ensemble_weights(
            [np.mean([proxy[n]["valid"] for n in g], axis=0) for g in groups], proxy_t["valid"])
        final_weights = training.fit_ensemble_weights(
            [np.mean([final[n]["valid"] for n in g], axis=0) for g in groups], final_t["valid"])

        def mix(scores: dict, w: np.ndarray, split: str) -> np.ndarray:
            return sum(wi * np.mean([scores[n][split] for n in g], axis=0) for wi, g in zip(w, groups))

        return ({s: mix(proxy, weights, s) for s in held}, {s: mix(final, final_weights, s) for s in ("valid", *TEST_SPLITS)})

    rows = {name: ({s: proxy[name][s] for s in held}, final[name]) for name in members}
    previous = ["probe", "mlp", "mlp_seed1", "mlp_seed2", "attention"]
    rows["previous default: probe + 3 MLP seeds + attention, a weight per member"] = ensemble(previous, True)
    rows["probe + 3 MLP seeds + attention, a weight per recipe"] = ensemble(previous, False)
    rows["probe + 8 MLP seeds, a weight per recipe"] = ensemble([n for n in members if not n.startswith("attention")], False)
    rows["default: probe + 8 MLP seeds + 3 attention seeds, a weight per recipe"] = ensemble(list(members), False)

    def top1(p: np.ndarray, t: np.ndarray) -> float:
        return 100 * float((p.argmax(1) == t).mean())

    print("| Members | proxy valid | held-out fold-like | superfamily-like | family-like | valid | "
          "test fold | test superfamily | test family |\n|---|---|---|---|---|---|---|---|---|")
    for label, (p, f) in rows.items():
        tests = evaluation.evaluate_levels({s: f[s] for s in TEST_SPLITS}, {s: final_t[s] for s in TEST_SPLITS}, ks=(1,))
        cells = [f"{top1(p[s], proxy_t[s]):.1f}" for s in ("valid", *CALIBRATION_SPLITS)] + [f"{top1(f['valid'], final_t['valid']):.1f}"]
        cells += [f"{100 * m['value']:.1f} [{100 * m['ci_low']:.1f}–{100 * m['ci_high']:.1f}]"
                  for m in (tests[s]["metrics"]["top1"] for s in TEST_SPLITS)]
        print(f"| {label} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
