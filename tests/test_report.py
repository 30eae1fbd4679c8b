"""The HTML report on a small, fake but self-consistent model folder and feature store."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from coevofold import metrics, plots
from coevofold.app import report
from coevofold.data.names import fold_name
from coevofold.data.splits import TEST_SPLITS
from coevofold.errors import CoevofoldError
from coevofold.features import store

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
CHROMIUM = Path("/usr/bin/chromium")


def _fake_run(run_dir: Path, n_classes: int = 20, n_test: int = 90, seed: int = 0) -> pd.DataFrame:
    """model.json, metrics.csv, results.json/.md and predictions.tsv as train + evaluate write them."""
    rng = np.random.default_rng(seed)
    classes = [f"{'abcd'[i % 4]}.{i + 1}" for i in range(n_classes)]
    counts = rng.integers(1, 300, n_classes).tolist()
    folds = rng.choice([*classes, "g.99"], size=n_test, p=np.r_[np.full(n_classes, 0.97 / n_classes), 0.03])
    targets = metrics.encode_labels(folds, classes)
    probs = rng.dirichlet(np.ones(n_classes), n_test)
    probs[np.arange(n_test), np.maximum(targets, 0)] += rng.random(n_test) * 2 * (targets >= 0)
    probs /= probs.sum(1, keepdims=True)
    split = np.array(TEST_SPLITS)[np.arange(n_test) % 3]
    levels = metrics.evaluate_levels({s: probs[split == s] for s in TEST_SPLITS},
                                        {s: targets[split == s] for s in TEST_SPLITS}, n_boot=50)
    predictions = pd.DataFrame({"id": [f"d{i:03d}" for i in range(n_test)], "split": split, "fold": folds,
                                "predicted": np.array(classes)[probs.argmax(1)], "probability": probs.max(1).round(4)})
    predictions["correct"] = predictions["fold"] == predictions["predicted"]
    run_dir.mkdir(parents=True, exist_ok=True)
    meta = {"model": {"name": "fused"}, "classes": classes, "train_counts": counts,
            "fold_names": {c: f"name of {c}" for c in classes}, "epochs": 3, "best_val_acc": 0.5,
            "feature_settings": {"maps": "layers", "grid": 32, "embedding_layer": -1, "embedding_bins": 32,
                                 "stride": 511, "weights_sha256": "f" * 64, "window": 1022}}
    (run_dir / "model.json").write_text(json.dumps(meta))
    pd.DataFrame({"epoch": [0, 0, 1, 1, 2, 2], "step": [9, 9, 19, 19, 29, 29],
                  "train_loss": [3.0, None, 2.5, None, 2.2, None], "val_loss": [None, 2.9, None, 2.6, None, 2.5],
                  "val_acc": [None, 0.2, None, 0.3, None, 0.35]}).to_csv(run_dir / "metrics.csv", index=False)
    metrics.write_results_json({"model": "fused", "levels": levels}, run_dir / "results.json")
    (run_dir / "results.md").write_text(metrics.results_markdown({"fused": levels}))
    predictions.to_csv(run_dir / "predictions.tsv", sep="\t", index=False)
    return predictions


def _fake_store(path: Path, ids: list[str], seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(30, 130, len(ids))
    sequences = ["".join(rng.choice(list("ACDEFGHIKLMNPQRSTVWY"), n)) for n in lengths]
    rows = store.FeatureRows(ids, sequences, rng.random((len(ids), 7, 8, 8)).astype(np.float16),
                             rng.random((len(ids), 4, 16)).astype(np.float16), rng.random((len(ids), 16)).astype(np.float32),
                             [rng.integers(0, 256, n * (n - 1) // 2).astype(np.uint8) for n in lengths],
                             rng.random((len(ids), 7, 16)).astype(np.float16),
                             [rng.random((n, 16)).astype(np.float16) for n in lengths])
    store.write_file(path, rows, {"fake": True})
    return path


@pytest.fixture
def run(tmp_path: Path) -> tuple[Path, Path, pd.DataFrame]:
    predictions = _fake_run(tmp_path / "run")
    return tmp_path / "run", _fake_store(tmp_path / "features.h5", predictions["id"].tolist()[:40]), predictions


def _images(index: Path) -> list[str]:
    return re.findall(r'<img src="([^"]+)"', index.read_text())


def test_report_references_every_png(run):
    run_dir, store_path, predictions = run
    index = report.write_report(run_dir, store_path)
    assert index == run_dir / "report" / "index.html"
    images = _images(index)
    on_disk = sorted(p.name for p in index.parent.glob("*.png"))
    assert sorted(images) == on_disk
    assert {"accuracy.png", "learning_curves.png", "confusion.png", "accuracy_vs_train_size.png"} <= set(images)
    assert len([i for i in images if i.startswith("contact_")]) == 3
    for name in images:
        assert (index.parent / name).read_bytes()[:8] == PNG_MAGIC
    text = index.read_text()
    assert "<script" not in text and "http" not in text.replace(' lang="en"', "")
    assert "(published)" in text and "DeepSF" in text  # the results table with its anchors
    shown = [i for i in predictions["id"][:40] if f"<h3>{i}</h3>" in text]
    assert predictions.set_index("id").loc[shown, "correct"].nunique() == 2  # one right, one wrong


def test_chosen_proteins_and_out_folder(run, tmp_path: Path):
    run_dir, store_path, predictions = run
    chosen = predictions[predictions["fold"] != "g.99"].iloc[0]
    index = report.write_report(run_dir, store_path, proteins=[chosen["id"]], out=tmp_path / "elsewhere")
    assert index.parent == tmp_path / "elsewhere"
    assert [i for i in _images(index) if i.startswith("contact_")] == [f"contact_1_{chosen['id']}.png"]
    # SCOP 1.75 folds are named from SCOP2 (or said to be unnamed), whatever the model stored
    assert f"{chosen['fold']} ({html.escape(fold_name(chosen['fold']))})" in index.read_text()


def test_without_store_no_contact_maps(run):
    run_dir, _, _ = run
    index = report.write_report(run_dir)
    assert not [i for i in _images(index) if i.startswith("contact_")]
    assert "--store" in index.read_text()


def test_missing_run_file_named(run):
    run_dir, store_path, _ = run
    (run_dir / "results.json").unlink()
    with pytest.raises(CoevofoldError, match="no results.json; .* after evaluation"):
        report.write_report(run_dir, store_path)


def test_protein_not_in_store_named(run):
    run_dir, store_path, _ = run
    with pytest.raises(CoevofoldError, match="no features for 'nope'"):
        report.write_report(run_dir, store_path, proteins=["nope"])


@pytest.mark.slow
@pytest.mark.skipif(not CHROMIUM.is_file(), reason="needs Debian Chromium (apt-get install chromium)")
def test_report_renders_in_headless_chromium(run, tmp_path: Path):
    import matplotlib.image

    run_dir, store_path, _ = run
    index = report.write_report(run_dir, store_path)
    png = report.screenshot(index, tmp_path / "screenshot.png", chromium=CHROMIUM)
    assert png.stat().st_size > 20_000
    pixels = matplotlib.image.imread(png)
    assert pixels.shape[:2] == (2400, 1280)
    assert pixels[..., :3].reshape(-1, 3).std(axis=0).max() > 0.05  # not a blank page


def test_ensemble_report_points_at_members_curves(tmp_path: Path):
    run_dir = tmp_path / "ensemble"
    _fake_run(run_dir)
    (run_dir / "metrics.csv").unlink()  # an ensemble trains its members, not itself
    meta = json.loads((run_dir / "model.json").read_text())
    meta.update(model={"name": "ensemble"}, ensemble={"weights": {"probe": 0.3, "mlp": 0.7}})
    (run_dir / "model.json").write_text(json.dumps(meta))
    with pytest.raises(CoevofoldError, match="metrics.csv"):  # without members/ it is not an ensemble folder
        report.write_report(run_dir)
    (run_dir / "members").mkdir()
    page = report.write_report(run_dir).read_text()
    assert "members/NAME/learning_curves.png" in page and "probe 0.3" in page
    assert not (run_dir / "report" / "learning_curves.png").exists()


def test_calibration_section_when_evaluated(run):
    """A folder whose evaluation measured calibration shows the table and the reliability diagram."""
    run_dir, _, predictions = run
    rng = np.random.default_rng(0)
    stated = {level: {when: (rng.random(50), rng.random(50) < 0.5) for when in ("before", "after")}
              for level in ("Fold", "pooled")}
    plots.reliability_diagram(stated, run_dir / metrics.RELIABILITY_PNG)
    levels = {"test_fold": rng.random(50)}
    right = {"test_fold": rng.random(50) < 0.5}
    result = {"system": True, "before": metrics.calibration_levels(levels, right),
              "after": metrics.calibration_levels({"test_fold": levels["test_fold"] / 2}, right, bands=True)}
    stored = json.loads((run_dir / "results.json").read_text())
    metrics.write_results_json({**stored, "calibration": result}, run_dir / "results.json")
    index = report.write_report(run_dir)
    assert metrics.RELIABILITY_PNG in _images(index)
    assert "<h2>Calibration</h2>" in index.read_text() and "ECE after" in index.read_text()
