"""Calibration: the science against hand-computed values, the held-out-only fit, and the model folder."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from coevofold import metrics
from coevofold.data import splits
from coevofold.errors import CoevofoldError
from coevofold.features import pretrained
from coevofold.prediction import load_predictor, predict
from coevofold.system import calibration, evaluation
from coevofold.system.calibration import Calibration, LogisticMap


def test_ece_hand_computed():
    # bin [0.9, 1.0]: stated 0.95, right 1 of 2 -> gap 0.45; bin [0.1, 0.2): stated 0.15, right 0 of 2 -> 0.15
    confidence = np.array([0.95, 0.95, 0.15, 0.15])
    assert metrics.expected_calibration_error(confidence, np.array([1, 0, 0, 0])) == pytest.approx(0.5 * 0.45 + 0.5 * 0.15)
    assert metrics.expected_calibration_error(np.array([0.25, 0.75]), np.array([0, 1])) == pytest.approx(0.25)


def test_bands():
    assert metrics.band_of(np.array([0.95, 0.9, 0.89, 0.5, 0.49, np.nan])).tolist() == [
        "high", "high", "medium", "medium", "low", "low"]


def _synthetic(n: int = 4000, classes: int = 8, seed: int = 0):
    """True probabilities q, labels drawn from q, and an over-confident model stating softmax(2 log q)."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 1.5, (n, classes))
    q = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    targets = np.array([rng.choice(classes, p=row) for row in q])
    return calibration.tempered(q, 0.5), targets, rng


def test_temperature_undoes_overconfidence_and_keeps_ranking():
    stated, targets, _ = _synthetic()
    temperature = calibration.fit_temperature(stated, targets)
    assert temperature == pytest.approx(2.0, rel=0.1)
    fixed = calibration.tempered(stated, temperature)
    assert (fixed.argmax(1) == stated.argmax(1)).all()
    assert np.allclose(fixed.sum(1), 1.0)
    correct = stated.argmax(1) == targets
    assert metrics.expected_calibration_error(fixed.max(1), correct) < metrics.expected_calibration_error(stated.max(1), correct) / 2


def _fitted(seed: int = 0) -> tuple[Calibration, np.ndarray, np.ndarray, np.ndarray]:
    stated, targets, rng = _synthetic(seed=seed)
    # alignment scores: strong (>= 6) to the true fold for a quarter of the queries, noise elsewhere
    scores = rng.uniform(0, 4, stated.shape)
    strong = rng.random(len(targets)) < 0.25
    scores[strong, targets[strong]] = rng.uniform(6, 30, strong.sum())
    levels = np.full(len(targets), "calibration_fold")
    return calibration.fit(stated, scores, targets, levels, min_score=6.0), stated, scores, targets


def test_top1_temperature_matches_confidence_to_accuracy():
    stated, targets, _ = _synthetic()
    temperature = calibration.top1_temperature(stated, targets)
    matched = calibration.tempered(stated, temperature)
    assert matched.max(1).mean() == pytest.approx((stated.argmax(1) == targets).mean(), abs=1e-6)
    assert temperature > 1  # the synthetic model is over-confident


def test_top_k_sums_to_at_most_one_and_keeps_ranking():
    fitted, stated, scores, targets = _fitted()
    from coevofold.system.homology import homology_first

    for probs, alignment in ((stated, scores), (stated, None)):
        order, probability, from_alignment = fitted.top_k(probs, alignment, 5)
        ranking = homology_first(probs, alignment, 6.0) if alignment is not None else probs
        assert (order == np.argsort(-ranking, axis=1, kind="stable")[:, :5]).all()
        assert (probability.sum(1) <= 1 + 1e-9).all() and (np.diff(probability, axis=1) <= 1e-12).all()
        assert (probability >= 0).all()
        assert from_alignment.sum() == (0 if alignment is None else (scores.max(1) >= 6).sum())
    # held out of the fit, the calibrated top-1 is closer to the truth than the raw one
    _, stated2, scores2, targets2 = _fitted(seed=1)
    order, probability, _ = fitted.top_k(stated2, scores2, 1)
    correct = order[:, 0] == targets2
    raw = calibration.stated(stated2, scores2, 6.0, [0.5], None, 1)[1][:, 0]
    assert metrics.expected_calibration_error(probability[:, 0], correct) < 0.05
    assert metrics.expected_calibration_error(probability[:, 0], correct) < metrics.expected_calibration_error(raw, correct)


def test_constant_map_when_too_few_rows():
    fitted = calibration._fit_map(np.zeros((3, 2)), np.array([True, True, True]), ["a", "b"])
    assert fitted.coef == [0.0, 0.0] and fitted(np.zeros((1, 2)))[0] == pytest.approx(4 / 5)


def test_unit_weights_give_each_held_out_unit_one_vote():
    carved = pd.DataFrame({
        "id": list("abcdefg"),
        "superfamily": ["s1", "s1", "s2", "s3", "s3", "s4", "s4"],
        "family": ["f1", "f1", "f2", "f3", "f4", "f5", "f5"],
        "split": ["calibration_fold", "calibration_fold", "calibration_fold",
                  "calibration_superfamily", "calibration_superfamily", "calibration_family", "train"],
    })
    weights = calibration.unit_weights(carved, splits.CALIBRATION_SPLITS)
    raw = np.array([0.5, 0.5, 1.0, 1.0, 1.0, 1.0])  # s1 has two rows; f3, f4 and the member one each
    assert np.allclose(weights, raw / raw.mean())


def test_weighted_map_equals_duplicated_rows():
    """A row of weight 2 counts as two rows, one of weight 0 as none; the fallback rate is weighted."""
    rng = np.random.default_rng(0)
    x, right = rng.normal(size=(60, 2)), rng.random(60) < 0.4
    weights = rng.integers(0, 3, 60).astype(float)
    weighted = calibration.fit_logistic(x, right, ["a", "b"], weights=weights)
    repeat = np.repeat(np.arange(60), weights.astype(int))
    duplicated = calibration.fit_logistic(x[repeat], right[repeat], ["a", "b"])
    assert np.allclose(weighted.coef, duplicated.coef, atol=1e-4)
    assert weighted.intercept == pytest.approx(duplicated.intercept, abs=1e-4)
    few = calibration._fit_map(np.zeros((4, 2)), np.array([True, True, True, True]), ["a", "b"], np.array([1.0, 1, 1, 1]))
    assert few(np.zeros((1, 2)))[0] == pytest.approx(5 / 6)
    half = calibration._fit_map(np.zeros((4, 2)), np.array([True, False, True, True]), ["a", "b"], np.array([2.0, 2, 0, 0]))
    assert half(np.zeros((1, 2)))[0] == pytest.approx(0.5)  # weighted hit rate 1/2 on 4 rows: (2 + 1) / 6


def test_save_load_round_trip(tmp_path: Path):
    fitted = _fitted()[0]
    fitted.save(tmp_path)
    assert calibration.load_calibration(tmp_path) == fitted
    (tmp_path / calibration.CALIBRATION_FILE).write_text("{not json")
    with pytest.raises(CoevofoldError, match="unreadable calibration"):
        calibration.load_calibration(tmp_path)


def test_model_folder_carries_calibration(prepared: Path, small_run, plm: pretrained.ProteinLM, tmp_path: Path):
    """A calibrated folder, copied, predicts calibrated probabilities with a confidence band."""
    _, _, table = small_run
    folder = shutil.copytree(prepared, tmp_path / "calibrated")
    classes = json.loads((folder / "model.json").read_text())["classes"]
    constant = LogisticMap(["x"], [0.0], float(np.log(0.95 / 0.05)))
    two = LogisticMap(calibration.MODEL_ONLY_FEATURES, [0.0, 0.0], float(np.log(0.95 / 0.05)))
    four = LogisticMap(calibration.MODEL_FEATURES, [0.0] * 4, 0.0)
    Calibration(1.0, 99.0, four, two, constant, []).save(folder)
    predictor = load_predictor(copied := shutil.copytree(folder, tmp_path / "copy"), plm, use_homology=False)
    assert predictor.calibration == calibration.load_calibration(folder)
    query = table[table["split"] == "test_family"].head(2)[["id", "sequence"]]
    frame = predict(query, copied, top_k=len(classes), model=plm, progress=False, use_homology=False)
    top = frame[frame["rank"] == 1]
    assert top["probability"].tolist() == pytest.approx([0.95, 0.95]) and (top["confidence"] == "high").all()
    assert frame.groupby("id")["probability"].sum().le(1 + 1e-9).all()
    assert set(frame["confidence"]) <= {"high", "medium", "low"}


def test_calibration_split_holds_out_training_units_only(deepsf: pd.DataFrame):
    carved = splits.calibration_split(deepsf)
    original = deepsf.set_index("id")["split"]
    for split in (*splits.TEST_SPLITS, "valid"):  # other splits untouched
        assert (carved.loc[carved["split"] == split, "id"].map(original) == split).all()
    held = carved[carved["split"].isin(splits.CALIBRATION_SPLITS)]
    assert (held["id"].map(original) == "train").all() and len(held) > 1000
    train = carved[carved["split"] == "train"]
    fold_like = carved[carved["split"] == "calibration_fold"]
    assert not set(fold_like["superfamily"]) & set(train["superfamily"])  # whole superfamilies out
    assert set(fold_like["fold"]) <= set(train["fold"])
    assert not set(carved.loc[carved["split"] == "calibration_superfamily", "family"]) & set(train["family"])
    assert fold_like.groupby("superfamily").size().max() <= splits.CALIBRATION_SPLIT.max_unit_size
    assert set(train["fold"]) == set(deepsf.loc[deepsf["split"] == "train", "fold"])  # every fold stays a class


def test_fit_system_needs_homology(trained: Path, small_run):
    from coevofold.system import preparation

    _, store_path, table = small_run
    with pytest.raises(CoevofoldError, match="fit_homology"):
        preparation.fit_system(trained, store_path, table, {}, progress=False)


def test_evaluate_calibration_writes_diagram(prepared: Path, small_run, tmp_path: Path):
    _, store_path, table = small_run
    folder = shutil.copytree(prepared, tmp_path / "evaluated")
    result = evaluation.evaluate_calibration(folder, store_path, table)
    assert result["system"] is False and "after" not in result
    pooled = result["before"]["pooled"]
    assert pooled["proteins"] == (table["split"] == "test_family").sum() and 0 <= pooled["ece"] <= 1
    assert (folder / metrics.RELIABILITY_PNG).stat().st_size > 1000
    assert json.loads((folder / "results.json").read_text())["calibration"]["before"]["pooled"] == pooled
    assert "ECE before" in metrics.calibration_markdown(result)
