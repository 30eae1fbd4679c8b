"""Prediction with a tiny but real model folder: real DeepSF domains, the real small pLM.

The pLM's window is shrunk to 64 residues (fixtures in conftest.py), so windowing of long chains
is exercised in seconds; the model folder is trained on features made with that same window.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from coevofold import prediction
from coevofold.data.names import fold_name
from coevofold.errors import CoevofoldError
from coevofold.features import extraction, pretrained
from coevofold.models import baselines
from coevofold.prediction import PREDICTION_COLUMNS, default_model_dir, predict, predictions_text, write_predictions
from coevofold.system import evaluation, homology
from coevofold.training import scoring, trainer

LONG_ID = "d1y5ia2"  # 1,074 residues: longer than ESM-2's 1,022-residue window


def _fasta(path: Path, table: pd.DataFrame) -> Path:
    path.write_text("".join(f">{r.id}\n{r.sequence}\n" for r in table.itertuples()))
    return path


@pytest.fixture(scope="module")
def queries(tmp_path_factory, deepsf: pd.DataFrame) -> Path:
    """Two unlabelled test domains and one chain longer than the pLM's real window."""
    rows = pd.concat([deepsf[deepsf["split"] == "test_family"].head(2), deepsf[deepsf["id"] == LONG_ID]])
    return _fasta(tmp_path_factory.mktemp("queries") / "queries.fasta", rows)


@pytest.fixture(scope="module")
def predicted(trained: Path, queries: Path, plm: pretrained.ProteinLM) -> pd.DataFrame:
    return predict(queries, trained, top_k=5, model=plm, progress=False)


def test_ranked_top_k_per_sequence(predicted: pd.DataFrame, trained: Path):
    meta = json.loads((trained / "model.json").read_text())
    assert list(predicted.columns) == PREDICTION_COLUMNS
    assert PREDICTION_COLUMNS[:6] == ["id", "rank", "fold", "probability", "confidence", "name"]
    assert (predicted["confidence"] == "").all()  # no calibration in this folder: no band claimed
    assert "no homology files" in predicted.attrs["note"]  # model-only, and it says so
    assert (predicted["source"] == "model").all() and (predicted["hit"] == "").all()
    assert predicted["id"].drop_duplicates().tolist()[-1] == LONG_ID  # input order kept, long chain included
    for _, rows in predicted.groupby("id", sort=False):
        assert rows["rank"].tolist() == [1, 2, 3]  # top-5 capped at the 3 classes
        assert sorted(rows["fold"]) == sorted(meta["classes"])
        probability = rows["probability"].to_numpy()
        assert np.all(np.diff(probability) <= 0) and probability.sum() <= 1 + 1e-6
        assert np.all(probability >= 0)
        # SCOP 1.75 folds: SCOP2 names (or "name not in SCOP2"), not what the model stored
        assert rows["name"].tolist() == [fold_name(f) for f in rows["fold"]]
        assert not any(name.startswith("fold ") and "not in SCOP2" not in name for name in rows["name"])


def test_table_input_top_1(trained: Path, deepsf: pd.DataFrame, plm: pretrained.ProteinLM):
    import torch

    table = deepsf[deepsf["split"] == "test_family"].head(2)[["id", "sequence"]]
    before = torch.get_num_threads()
    try:
        frame = predict(table.assign(sequence=table["sequence"].str.lower()), trained, top_k=1, model=plm,
                        run=extraction.RunConfig(device="cpu", threads=1), progress=False)
        assert torch.get_num_threads() == 1  # --threads reaches torch
    finally:
        torch.set_num_threads(before)
    assert frame["id"].tolist() == table["id"].tolist() and frame["rank"].tolist() == [1, 1]


def test_bad_tables_refused(trained: Path):
    with pytest.raises(CoevofoldError, match="missing column.*sequence"):
        predict(pd.DataFrame({"id": ["a"]}), trained)
    with pytest.raises(CoevofoldError, match="input table: record 'a': invalid residue 'J'"):
        predict(pd.DataFrame({"id": ["a"], "sequence": ["MKJ"]}), trained)


def test_tsv_output(predicted: pd.DataFrame, tmp_path: Path, capsys):
    write_predictions(predicted, tmp_path / "out.tsv", "tsv")
    lines = (tmp_path / "out.tsv").read_text().splitlines()
    assert lines[0].split("\t") == PREDICTION_COLUMNS
    assert len(lines) == len(predicted) + 1
    assert all(len(line.split("\t")[3].split(".")[1]) == 4 for line in lines[1:])
    write_predictions(predicted, "-", "tsv")
    assert capsys.readouterr().out.splitlines() == lines


def test_json_output(predicted: pd.DataFrame, tmp_path: Path, plm: pretrained.ProteinLM, model_dir: Path, capsys):
    write_predictions(predicted, tmp_path / "out.json", "json")
    written = json.loads((tmp_path / "out.json").read_text())
    assert list(written) == ["plm", "predictions"]
    # the offline copy is named as what was loaded, with its weights, never as the hub id alone
    assert written["plm"] == {"label": plm.label, "weights_sha256": plm.weights_sha256}
    assert plm.label == (f"offline copy {model_dir.resolve()} (stand-in for facebook/esm2_t6_8M_UR50D), "
                         f"sha256 {plm.weights_sha256}")
    records = written["predictions"]
    assert len(records) == len(predicted)
    assert all(list(r) == PREDICTION_COLUMNS for r in records)
    assert records[0]["identity"] is None and records[0]["source"] == "model"  # no evidence: null, not NaN
    assert records[0]["rank"] == 1 and isinstance(records[0]["probability"], float)
    write_predictions(predicted, None, "json")
    assert json.loads(capsys.readouterr().out) == written


def test_default_plm_stand_in_is_named_as_such(model_dir: Path, monkeypatch):
    """Without the hub model in the cache, the default id loads the offline copy, and says so."""
    monkeypatch.delenv(pretrained.MODEL_ENV, raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    loaded = pretrained.load(None)
    if "Hugging Face hub" in loaded.source:
        pytest.skip("the Hugging Face cache holds the hub model on this machine")
    assert loaded.name == pretrained.DEFAULT_MODEL
    assert loaded.label == (f"offline copy {model_dir.resolve()} (stand-in for {pretrained.DEFAULT_MODEL}), "
                            f"sha256 {loaded.weights_sha256}")


def test_unknown_format_refused(predicted: pd.DataFrame):
    with pytest.raises(CoevofoldError, match="--format"):
        write_predictions(predicted, None, "csv")


def _edited_copy(trained: Path, tmp_path: Path, **settings) -> Path:
    copy = shutil.copytree(trained, tmp_path / "edited", ignore=shutil.ignore_patterns("checkpoints"))
    meta = json.loads((copy / "model.json").read_text())
    meta["feature_settings"].update(settings)
    (copy / "model.json").write_text(json.dumps(meta))
    return copy


def test_other_weights_refused(trained: Path, queries: Path, plm: pretrained.ProteinLM, tmp_path: Path):
    checkpoint = _edited_copy(trained, tmp_path, weights_sha256="abc" * 20)
    with pytest.raises(CoevofoldError, match=r"weights abcabcabcabc…, model .* has f4.*--model"):
        predict(queries, checkpoint, model=plm, progress=False)


def test_other_window_refused(trained: Path, queries: Path, plm: pretrained.ProteinLM, tmp_path: Path):
    checkpoint = _edited_copy(trained, tmp_path, window=1022)
    with pytest.raises(CoevofoldError, match="window=1022 there, 64 now"):
        predict(queries, checkpoint, model=plm, progress=False)


def test_missing_default_checkpoint_says_what_to_run(queries: Path, tmp_path: Path, monkeypatch):
    monkeypatch.setenv("COEVOFOLD_CACHE", str(tmp_path))
    assert default_model_dir() == tmp_path / "models" / "default"
    with pytest.raises(CoevofoldError, match="coevofold quickstart.*--checkpoint"):
        predict(queries, progress=False)


def test_bad_fasta_refused(trained: Path, plm: pretrained.ProteinLM, write_fasta):
    with pytest.raises(CoevofoldError, match=r"record 'bad': invalid residue '\*'"):
        predict(write_fasta(">ok\nMKVLA\n>bad\nMKV*LA\n"), trained, model=plm, progress=False)


def test_bad_top_k_refused(trained: Path, queries: Path):
    with pytest.raises(CoevofoldError, match="--top-k"):
        predict(queries, trained, top_k=0)


def test_homology_first_rows_and_evidence(prepared: Path, small_run, plm: pretrained.ProteinLM):
    """A training domain's own sequence is transferred from the alignment, with its evidence."""
    _, _, table = small_run
    settings = json.loads((prepared / homology.META_FILE).read_text())
    train = table[table["split"] == "train"]
    query = train.iloc[[0]][["id", "sequence"]].assign(id="query")
    frame = predict(query, prepared, top_k=3, model=plm, progress=False)
    assert frame.attrs["note"] == prediction.NO_TEMPLATES_NOTE.format(folder=prepared)  # homology, no templates
    top = frame.iloc[0]
    assert (top["hit"], top["identity"]) == (train["id"].iat[0], 1.0)
    assert -np.log10(top["evalue"]) >= settings["min_score"]
    assert (frame["source"] == "alignment").all() and top["fold"] == train["fold"].iat[0]
    assert (top["hit_superfamily"], top["hit_family"]) == (train["superfamily"].iat[0], train["family"].iat[0])
    rates = settings["rank_probability"][:3]  # [] when no valid protein passed the threshold
    assert frame["probability"].tolist() == pytest.approx(rates, nan_ok=True) if rates else frame["probability"].isna().all()
    assert frame["probability"].sum() <= 1 + 1e-9
    assert frame["evalue"].is_monotonic_increasing  # lower ranks: weaker best hits
    off = predict(query, prepared, top_k=3, model=plm, progress=False, use_homology=False)
    assert (off["source"] == "model").all() and "--no-homology" in off.attrs["note"]
    tsv = predictions_text(frame, "tsv").splitlines()
    assert tsv[0].split("\t") == PREDICTION_COLUMNS and tsv[1].split("\t")[6:9] == ["alignment", train["id"].iat[0], "1.000"]


def test_hybrid_top1_equals_benchmark_row(prepared: Path, small_run, plm: pretrained.ProteinLM, tmp_path: Path):
    """predict's top-1 on the test rows is the benchmark's homology-first top-1 (same threshold, same code)."""
    model, store_path, table = small_run
    train = table[table["split"] == "train"]
    search = baselines.AlignmentNearestNeighbour(n_jobs=1, progress=False).fit(train["sequence"].tolist(), train["fold"].tolist())
    scores = {s: search.class_scores(table.loc[table["split"] == s, "sequence"].tolist()) for s in ("valid", "test_family")}
    threshold, results = evaluation.homology_first_results(model, store_path, table, scores)
    assert threshold == json.loads((prepared / homology.META_FILE).read_text())["min_score"]
    tests = table[table["split"] == "test_family"]
    frame = predict(tests[["id", "sequence"]], prepared, top_k=1, model=plm, progress=False)
    top1 = float((frame["fold"].to_numpy() == tests["fold"].to_numpy()).mean())
    assert top1 == pytest.approx(results["test_family"]["metrics"]["top1"]["value"])

    # the tiny model may need no alignment on valid (strict threshold); force one that transfers
    # some test rows and check predict against baselines.homology_first on the store's features
    forced = shutil.copytree(prepared, tmp_path / "forced")
    settings = json.loads((forced / homology.META_FILE).read_text())
    (forced / homology.META_FILE).write_text(json.dumps(settings | {"min_score": 5.0}))
    _, probs, targets = scoring.model_scores(model, store_path, table, ("test_family",))
    expected = homology.homology_first(probs["test_family"], scores["test_family"], 5.0).argmax(1)
    frame = predict(tests[["id", "sequence"]], forced, top_k=1, model=plm, progress=False)
    assert (frame["source"] == "alignment").sum() == (scores["test_family"].max(1) >= 5.0).sum() > 0
    assert frame["fold"].tolist() == [sorted(set(train["fold"]))[i] for i in expected]


def test_fit_homology_refuses_other_table(trained: Path, small_run, tmp_path: Path):
    _, store_path, table = small_run
    with pytest.raises(CoevofoldError, match="not the model's classes"):
        homology.fit_homology(trained, store_path, table[table["fold"] != table["fold"].iat[0]], n_jobs=1, progress=False)


@pytest.mark.slow
def test_real_window_long_chain(model_dir: Path, deepsf: pd.DataFrame, tmp_path: Path):
    """A 1,074-residue chain through ESM-2's real 1,022 window, on a model trained with it."""
    plm = pretrained.load(str(model_dir))
    long = deepsf[deepsf["id"] == LONG_ID]
    other = deepsf[(deepsf["fold"] != long["fold"].iloc[0]) & (deepsf["length"] < 80)].head(1)
    table = pd.concat([long, other, long.assign(id="copy")], ignore_index=True).assign(split=["train", "train", "valid"])
    store_path = extraction.extract(table, tmp_path / "f.h5", run=extraction.RunConfig(progress=False), plm=plm)
    model = trainer.train(store_path, table, tmp_path / "model", trainer.TrainConfig(max_epochs=1, progress=False))
    frame = predict(_fasta(tmp_path / "long.fasta", long), model, model=plm, progress=False)
    assert frame["id"].tolist() == [LONG_ID, LONG_ID] and frame["rank"].tolist() == [1, 2]
    assert frame["probability"].sum() == pytest.approx(1.0, abs=1e-4)
