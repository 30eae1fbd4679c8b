"""Metrics on hand-computed cases, bootstrap behaviour, and the report writers."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torchmetrics.classification import MulticlassAccuracy

from coevofold import metrics
from coevofold.errors import CoevofoldError

# Four proteins, three classes. Ranked columns per row: [0,1,2], [2,1,0], [1,0|2], [0,1,2].
PROBS = np.array([[0.5, 0.3, 0.2], [0.1, 0.2, 0.7], [0.3, 0.4, 0.3], [0.6, 0.3, 0.1]])
TARGETS = np.array([0, 1, 1, 1])
# top-1 hits: yes, no, yes, no -> 1/2;  top-2 hits: all four -> 1
# per class top-1: class 0 1/1, class 1 1/3 (class 2 has no protein) -> macro (1 + 1/3) / 2 = 2/3


def test_hand_computed_accuracies():
    result = metrics.score(PROBS, TARGETS, ks=(1, 2), n_boot=200)
    found = result["metrics"]
    assert found["top1"]["value"] == pytest.approx(0.5)
    assert found["top2"]["value"] == pytest.approx(1.0)
    # torchmetrics' own macro would count class 2 (predicted, never a target) as 0 -> 4/9
    assert found["macro_top1"]["value"] == pytest.approx(2 / 3)
    assert (result["n_proteins"], result["n_unseen"], result["n_classes_present"]) == (4, 0, 2)


def test_micro_accuracy_agrees_with_torchmetrics_on_random_scores():
    rng = np.random.default_rng(1)
    probs, targets = rng.random((500, 20)), rng.integers(0, 20, 500)
    result = metrics.score(probs, targets, ks=(1, 5), n_boot=10)
    for k in (1, 5):
        expected = MulticlassAccuracy(num_classes=20, top_k=k, average="micro")(torch.tensor(probs), torch.tensor(targets))
        assert result["metrics"][f"top{k}"]["value"] == pytest.approx(float(expected))


def test_bootstrap_interval_contains_estimate_and_is_seeded():
    rng = np.random.default_rng(2)
    probs, targets = rng.random((300, 8)), rng.integers(0, 8, 300)
    first = metrics.score(probs, targets, n_boot=1000, seed=7)
    assert first == metrics.score(probs, targets, n_boot=1000, seed=7)
    assert first["metrics"] != metrics.score(probs, targets, n_boot=1000, seed=8)["metrics"]
    for metric in first["metrics"].values():
        assert metric["ci_low"] <= metric["value"] <= metric["ci_high"]
        assert 0.02 < metric["ci_high"] - metric["ci_low"] < 0.25  # about ±2 standard errors at n=300


def test_unseen_targets_count_as_wrong():
    codes = metrics.encode_labels(["a.1", "b.2", "z.9"], ["a.1", "b.2"])
    assert codes.tolist() == [0, 1, metrics.UNSEEN]
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.7, 0.3]])
    result = metrics.score(probs, codes, ks=(1,), n_boot=50)
    assert result["n_unseen"] == 1
    assert result["metrics"]["top1"]["value"] == pytest.approx(2 / 3)
    assert result["metrics"]["macro_top1"]["value"] == pytest.approx(1.0)


def test_bad_inputs():
    with pytest.raises(CoevofoldError, match="no proteins"):
        metrics.score(np.zeros((0, 3)), np.zeros(0, dtype=int))
    with pytest.raises(ValueError, match="top-5"):
        metrics.score(PROBS, TARGETS)
    with pytest.raises(ValueError, match="not a test level"):
        metrics.evaluate_levels({"train": PROBS}, {"train": TARGETS})


def test_levels_markdown_and_json(tmp_path):
    levels = metrics.evaluate_levels(
        {"test_family": PROBS, "test_fold": PROBS}, {"test_family": TARGETS, "test_fold": TARGETS}, ks=(1, 2), n_boot=100
    )
    assert list(levels) == ["test_fold", "test_family"]  # benchmark order, not argument order
    text = metrics.results_markdown({"toy": levels})
    assert text.startswith("| Model | Fold top-1 | Superfamily top-1 | Family top-1 | Fold top-5 |")
    toy_row = next(line for line in text.splitlines() if line.startswith("| toy |"))
    low, high = (100 * levels["test_fold"]["metrics"]["top1"][key] for key in ("ci_low", "ci_high"))
    assert toy_row.startswith(f"| toy | 50.0 [{low:.1f}–{high:.1f}] | – |")
    for anchor in ("| DeepSF (published) | 40.9 | 50.7 | 76.2 | 70.5 | 77.7 | 94.5 |", "| TAPE LSTM (published) | 26 |",
                   "| PEER ESM-1b (frozen) (published) | 29.95 |", "| PEER ESM-1b + contact (published) | 32.1 |"):
        assert anchor in text
    path = tmp_path / "out" / "results.json"
    metrics.write_results_json({"toy": levels}, path)
    assert json.loads(path.read_text()) == {"toy": levels}


def test_paired_difference_hand_computed():
    from coevofold.metrics import paired_difference

    targets = np.array([0, 1, 0, 1])
    a = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.7, 0.3]])  # 3 of 4 right
    b = np.array([[0.1, 0.9], [0.2, 0.8], [0.6, 0.4], [0.7, 0.3]])  # 2 of 4 right
    diff = paired_difference(a, b, targets, n_boot=200)
    assert diff["difference"] == pytest.approx(0.25)
    assert 0.0 <= diff["ci_low"] <= 0.25 <= diff["ci_high"] <= 0.75  # A is never worse on any protein
    same = paired_difference(a, a, targets)
    assert same == {"difference": 0.0, "ci_low": 0.0, "ci_high": 0.0}
