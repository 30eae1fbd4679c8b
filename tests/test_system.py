"""The combined system on small real data: templates, the search's prefilter, the combiner's
training rows, and predict answering as the benchmark scores."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from coevofold import metrics, prediction
from coevofold.data import splits
from coevofold.errors import CoevofoldError
from coevofold.features import store
from coevofold.system import combiner, evaluation, homology, preparation, templates
from coevofold.training import scoring


def test_templates_save_load_round_trip(system_run, tmp_path):
    model, store_path, table, _, _ = system_run
    built = preparation.fit_templates(tmp_path, store_path, table)
    loaded = templates.load_templates(tmp_path)
    train = table[table["split"] == "train"]
    assert loaded.ids.tolist() == train["id"].tolist() and loaded.folds.tolist() == train["fold"].tolist()
    assert loaded.lengths.tolist() == train["sequence"].str.len().tolist()
    for name in ("offsets", "vectors", "pooled", "center", "removed"):
        assert np.array_equal(np.asarray(getattr(loaded, name)), getattr(built, name)), name
    assert loaded.removed.shape == (templates.TOP_COMPONENTS, loaded.vectors.shape[1])
    # unit vectors quantised to int8: norms within rounding of 127
    norms = np.linalg.norm(np.asarray(loaded.vectors, dtype=np.float32), axis=1)
    assert np.allclose(norms, 127, atol=3)
    queries = store.read_rows(store_path, table.loc[table["split"] == "valid", "id"].tolist()[:4], residues=True)
    a = templates.TemplateSearch(built).search(queries.residues, False)
    b = templates.TemplateSearch(loaded).search(queries.residues, False)
    assert np.array_equal(a.index, b.index) and np.allclose(a.z, b.z)
    # a folder saved before the directions were removed still loads, and searches without them
    with np.load(tmp_path / templates.TEMPLATES_FILE) as meta:
        legacy = {key: meta[key] for key in meta.files if key != "removed"}
    np.savez(tmp_path / templates.TEMPLATES_FILE, **legacy)
    assert templates.load_templates(tmp_path).removed.shape == (0, loaded.vectors.shape[1])
    (tmp_path / templates.VECTORS_FILE).write_bytes(b"broken")
    with pytest.raises(CoevofoldError, match="template search files"):
        templates.load_templates(tmp_path)


def test_unit_rows_remove_the_top_directions():
    """The removed directions are the sample's top principal axes, orthonormal; what is left is
    orthogonal to them, unit length, and without directions the rows are only centred and scaled."""
    rng = np.random.default_rng(0)
    axis = np.zeros(6, np.float32)
    axis[2] = 1.0
    residues = [rng.normal(size=(30, 6)).astype(np.float32) + np.outer(rng.normal(scale=10, size=30), axis)
                for _ in range(5)]
    center = np.concatenate(residues).mean(axis=0)
    removed = templates.top_directions(residues, center, k=1)
    assert removed.shape == (1, 6) and abs(abs(removed[0, 2]) - 1) < 0.02
    unit = templates.unit_rows(residues[0], center, removed)
    assert np.allclose(np.linalg.norm(unit, axis=1), 1, atol=1e-5) and np.allclose(unit @ removed.T, 0, atol=1e-5)
    plain = residues[0] - center
    assert np.allclose(templates.unit_rows(residues[0], center), plain / np.linalg.norm(plain, axis=1, keepdims=True))
    assert templates.top_directions(residues, center, k=0).shape == (0, 6)


def test_search_finds_itself_and_prefilter_recall(system_run):
    """A training domain's best template is itself; the pooled-cosine prefilter keeps the
    exhaustive search's best template for most real queries."""
    model, store_path, table, _, _ = system_run
    found = templates.load_templates(model)
    train = store.read_rows(store_path, found.ids[:10].tolist(), residues=True)
    own = templates.TemplateSearch(found).search(train.residues, False)
    assert own.index[:, 0].tolist() == list(range(10))
    queries = store.read_rows(store_path, table.loc[table["split"] != "train", "id"].tolist(), residues=True)
    full = templates.TemplateSearch(found, templates.SearchConfig(prefilter=len(found))).search(queries.residues, False)
    half = templates.TemplateSearch(found, templates.SearchConfig(prefilter=len(found) // 2)).search(queries.residues, False)
    recall = np.mean(full.index[:, 0] == half.index[:, 0])  # a quarter of the templates: 0.80
    assert recall >= 0.8, recall
    right = found.folds[full.index[:, 0]] == table.loc[table["split"] != "train", "fold"].to_numpy()
    assert right.mean() >= 0.5  # short domains of 8 folds: the search alone finds most folds


def test_column_groups_by_hand():
    assert templates.column_groups(np.array([3, 4, 2, 9, 1]), columns=8) == [slice(0, 2), slice(2, 3), slice(3, 4),
                                                                              slice(4, 5)]
    assert templates.column_groups(np.array([2, 2, 2, 2]), columns=8) == [slice(0, 4)]
    assert templates.column_groups(np.array([], dtype=int)) == []
    # products of at most 2^24 cells: 170 residues pad to 192 rows, 2^24 / (8192 x 192) = 10 groups
    # of 8192 columns; 2,000 residues (2048 rows) leave room for one
    assert templates.columns_per_product(170) == 10 * 8192 and templates.columns_per_product(2000) == 8192
    assert templates.columns_per_product(1022) == 2 * 8192


def test_hits_by_class_by_hand():
    # two queries, hits best first; templates 0, 1 of class 0, template 2 of class 1, 3 of class 2
    hits = templates.Hits(np.array([[2, 0, 1], [1, 3, 0]], np.int32), np.array([[5.0, 4.0, 1.0], [3.0, 2.0, -1.0]], np.float32),
                          np.zeros((2, 3), np.float32))
    classes = np.array([0, 0, 1, 2])
    best_z, best = hits.class_best(classes, 4)
    assert best_z.tolist() == [[4.0, 5.0, 1.0, 1.0], [3.0, -1.0, 2.0, -1.0]]
    assert best.tolist() == [[0, 2, -1, -1], [1, -1, 3, -1]]
    assert hits.class_counts(classes, 4, 2).tolist() == [[1, 1, 0, 0], [1, 0, 1, 0]]
    assert hits.class_counts(classes, 4, 3).tolist() == [[2, 1, 0, 0], [2, 0, 1, 0]]


def test_search_in_column_groups_equals_one_product(system_run, monkeypatch):
    """Aligning a query group by group (bounded memory) gives the hits of one product over all templates."""
    model, store_path, table, _, _ = system_run
    found = templates.load_templates(model)
    queries = store.read_rows(store_path, table.loc[table["split"] == "valid", "id"].tolist()[:5], residues=True)
    whole = templates.TemplateSearch(found).search(queries.residues, False)
    monkeypatch.setattr(templates, "_COLUMNS", 128)  # a few templates per group
    monkeypatch.setattr(templates, "_CELLS", 1)
    assert len(templates.column_groups(found.lengths, 128)) > 10
    grouped = templates.TemplateSearch(found).search(queries.residues, False)
    assert np.array_equal(whole.index, grouped.index) and np.allclose(whole.z, grouped.z, atol=1e-4)


def test_combiner_is_fitted_on_held_out_rows_only(system_run, monkeypatch):
    """Refit the system with spies: the combiner's regression and the calibration see the proxy's
    held-out rows and nothing else; no valid or test protein is searched against the proxy."""
    model, store_path, table, members, _ = system_run
    carved = splits.calibration_split(table)
    held = carved[carved["split"].isin(splits.CALIBRATION_SPLITS)]
    searched, fitted = [], []
    real_hits, real_fit = preparation.cached_hits, combiner.fit_weights

    def spy_hits(found, store_path, searched_table, split, config=None, progress=True):
        searched.append((found, set(searched_table.loc[searched_table["split"] == split, "id"])))
        return real_hits(found, store_path, searched_table, split, config, progress)

    def spy_fit(evidence, targets, weights=None, groups=tuple(combiner.FEATURE_GROUPS)):
        fitted.append(np.asarray(targets))
        return real_fit(evidence, targets, weights, groups)

    monkeypatch.setattr(preparation, "cached_hits", spy_hits)
    monkeypatch.setattr(combiner, "fit_weights", spy_fit)
    rows = preparation.held_out(model, store_path, table, members, progress=False)
    weights = combiner.fit_weights(rows.evidence, rows.targets, rows.weights)
    combiner.cross_fitted(rows.evidence, rows.targets, rows.superfamilies, rows.weights)
    classes = scoring.model_scores(model, store_path, table, ())[0]["classes"]
    assert len(rows.targets) == len(held)
    assert np.array_equal(rows.targets, metrics.encode_labels(
        pd.concat([held[held["split"] == s] for s in splits.CALIBRATION_SPLITS])["fold"], classes))
    assert fitted[0].shape == (len(held),) and all(len(t) < len(held) for t in fitted[1:])
    outside = set(table.loc[table["split"] != "train", "id"])
    assert searched and all(not ids & outside and ids <= set(held["id"]) for _, ids in searched)
    assert all(name in combiner.FEATURES for name in weights.features)
    # a regression fitted on test rows would be refused by the same spy: they are not held out
    assert not set(held["id"]) & outside
    # the proxy is the model's recipe, member for member, trained without the held-out rows
    proxy = json.loads((model / preparation.PROXY_DIR / "model.json").read_text())["ensemble"]["members"]
    assert proxy == json.loads((model / "model.json").read_text())["ensemble"]["members"]


def test_combined_probabilities_are_a_distribution_over_candidates():
    rng = np.random.default_rng(0)
    n, c = 6, 40
    evidence = combiner.Evidence(rng.dirichlet(np.ones(c), n), rng.normal(size=(n, c)), rng.integers(0, 3, (n, c)),
                                 rng.exponential(size=(n, c)), rng.integers(1, 30, c))
    targets = rng.integers(0, c, n)
    weights = combiner.fit_weights(combiner.Evidence.concat([evidence] * 5), np.tile(targets, 5))
    out = combiner.combine(weights, evidence)
    assert np.allclose(out.sum(axis=1), 1.0) and (out >= 0).all()
    query, klass = combiner.candidates(evidence)
    outside = np.ones((n, c), dtype=bool)
    outside[query, klass] = False
    assert (out[outside] == 0).all()
    assert (np.bincount(query, minlength=n) <= sum(combiner.CANDIDATES.values())).all()


def test_conditional_logit_of_pairs_is_logistic_regression_on_their_differences():
    """With two candidates a query, softmax(x w) of the true one is sigmoid((x_true - x_other) w):
    unpenalised, the conditional logit is scikit-learn's logistic regression without intercept on
    the differences (each pair also entered reversed with label 0, which only doubles the likelihood)."""
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    n = 400
    x = rng.normal(size=(2 * n, 3))
    query = np.repeat(np.arange(n), 2)
    # the true candidate is the one with the larger noisy score 1.5 x0 - x1 (+ 0 x2)
    first = (x[0::2] - x[1::2]) @ [1.5, -1.0, 0.0] + rng.logistic(size=n) > 0
    correct = np.zeros(2 * n, dtype=bool)
    correct[0::2], correct[1::2] = first, ~first
    fitted = combiner.fit_conditional_logit(x, query, correct, ["a", "b", "c"], l2=0.0)
    diff = np.where(first[:, None], x[0::2] - x[1::2], x[1::2] - x[0::2])
    reference = LogisticRegression(C=np.inf, fit_intercept=False, tol=1e-10, max_iter=10000).fit(
        np.vstack([diff, -diff]), np.r_[np.ones(n), np.zeros(n)])
    np.testing.assert_allclose(fitted.coef, reference.coef_[0], rtol=1e-3, atol=1e-3)
    assert fitted.intercept == 0.0 and fitted.coef[0] > 1.0 > -1.0 > fitted.coef[1]
    # a query whose true fold is not among its candidates adds nothing: the same weights without it
    lost = np.r_[x, rng.normal(size=(2, 3))], np.r_[query, n, n], np.r_[correct, False, False]
    np.testing.assert_allclose(combiner.fit_conditional_logit(*lost, ["a", "b", "c"], l2=0.0).coef, fitted.coef,
                               rtol=1e-4, atol=1e-4)


def test_predict_equals_benchmark_and_names_templates(system_run, plm):
    """predict's top-1 on test rows is the benchmark's system answer, and each row names the
    best template of its fold with the aligned regions."""
    model, store_path, table, _, alignment = system_run
    assert preparation.is_prepared(model)
    scored = scoring.model_scores(model, store_path, table, splits.TEST_SPLITS)
    meta, combined, targets = evaluation.system_scores(model, store_path, table, alignment, scored, progress=False)
    min_score = homology.read_settings(model).min_score
    test = table[table["split"].isin(splits.TEST_SPLITS)]
    frame = prediction.predict(test[["id", "sequence"]], model, top_k=3, model=plm, progress=False)
    top = frame[frame["rank"] == 1].set_index("id")["fold"]
    classes = np.asarray(meta["classes"])
    for level in combined:
        expected = classes[homology.homology_first(combined[level], alignment[level], min_score).argmax(1)]
        assert top.loc[table.loc[table["split"] == level, "id"]].tolist() == expected.tolist()
    assert set(frame["source"]) <= {"combined", "alignment"}
    named = frame[frame["template"] != ""]
    assert len(named) > 0 and named["template_z"].notna().all()
    found = templates.load_templates(model)
    folds = dict(zip(found.ids, found.folds))
    assert (named["template"].map(folds) == named["fold"]).all()  # the template is of the row's fold
    start, end = zip(*(r.split("-") for r in named["query_region"]))
    assert all(1 <= int(a) <= int(b) for a, b in zip(start, end))
    text = prediction.predictions_text(frame, "tsv")
    assert text.splitlines()[0].split("\t") == prediction.PREDICTION_COLUMNS


def test_predict_hits_are_the_evidence_as_a_hit_table(system_run, plm):
    """predict's hits (what --hits writes): per prediction row its fold's best Smith-Waterman hit and
    best template; the E-values equal the JSON evidence; coordinates locate the alignment."""
    import io
    import json

    from coevofold.models import baselines

    model, _, table, _, _ = system_run
    query = table[table["split"] == "test_superfamily"].head(3)
    found: list[pd.DataFrame] = []
    frame = prediction.predict(query[["id", "sequence"]], model, top_k=3, model=plm, progress=False, hits=found)
    answer = pd.DataFrame(json.loads(prediction.predictions_text(frame, "json"))["predictions"])
    hits = pd.read_csv(io.StringIO(prediction.hits_text(found[0])), sep="\t", keep_default_na=False, na_values=[""])
    assert hits.columns.tolist() == prediction.HIT_COLUMNS
    assert (hits["target_fold"] == hits["fold"]).all()  # each row's evidence is of its fold
    aligned = hits[hits["source"] == "smith-waterman"].merge(answer, left_on=["query", "rank"], right_on=["id", "rank"])
    assert len(aligned) == len(answer)  # every prediction row has its fold's best hit
    assert (aligned["target"] == aligned["hit"]).all() and (aligned["evalue_x"] == aligned["evalue_y"]).all()
    sequences = dict(zip(table["id"], table["sequence"]))
    for row in aligned.itertuples():
        again = baselines.align(sequences[row.query], sequences[row.target])
        assert (row.query_start, row.query_end, row.target_start, row.target_end) == (
            again.query_start, again.query_end, again.target_start, again.target_end)
        assert 1 <= row.query_start <= row.query_end <= len(sequences[row.query])
        assert row.alignment_length >= row.query_end - row.query_start + 1
    templated = hits[hits["source"] == "template"]
    assert len(templated) > 0 and templated["template_z"].notna().all() and templated["evalue"].isna().all()


def test_align_locates_a_local_alignment_by_hand():
    from coevofold.models import baselines

    hit = baselines.align("MKTAYIAKQRQISFVK", "GGMKTAYLAKQRQISGG")  # MKTAYIAKQRQIS ~ MKTAYLAKQRQIS, one I/L
    assert (hit.query_start, hit.query_end, hit.target_start, hit.target_end, hit.length) == (1, 13, 3, 15, 13)
    assert hit.bits == pytest.approx((0.267 * hit.score - np.log(0.041)) / np.log(2))


def test_no_homology_on_a_prepared_folder_is_the_model_uncalibrated(system_run, plm):
    """--no-homology turns the searches and the combiner off; the folder's calibration, fitted to the
    combiner's probabilities, is not applied to the model's."""
    model, _, table, _, _ = system_run
    query = table[table["split"] == "test_family"].head(2)[["id", "sequence"]]
    frame = prediction.predict(query, model, top_k=2, model=plm, progress=False, use_homology=False)
    assert set(frame["source"]) == {"model"} and set(frame["confidence"]) == {""}
    assert "uncalibrated" in frame.attrs["note"] and (frame["template"] == "").all()


def test_evaluate_scores_the_combined_system(system_run, monkeypatch, capsys, tmp_path):
    import shutil

    from coevofold.app import cli

    model, store_path, table, _, _ = system_run
    folder = shutil.copytree(model, tmp_path / "model")
    monkeypatch.setattr(cli, "_load_split", lambda args: table)
    assert cli.main(["evaluate", str(folder), "system-test", "--store", str(store_path), "--quiet",
                     "--bootstrap", "50"]) == 0
    out = capsys.readouterr().out
    assert "system (combined; homology transfer where E <= 1e-" in out and "after" in out


def test_scop2_protocols_run_the_default_system_side_by_side(tmp_path, monkeypatch, capsys):
    """``benchmark scop2``'s code path on 12 SCOP2 folds of short domains, with the two test
    members (conftest.system_members) standing in for the default recipe: both protocols train,
    prepare and score the whole system, SCOP2's fold names reach the examples, and the random
    protocol's held-out proteins are all scored (pooled = the study's validation accuracy)."""
    from conftest import system_members

    from coevofold.app import runs
    from coevofold.data import tables

    source = tables.load("scop2")
    short = source[source["sequence"].str.len().between(40, 120)]
    picked = short[short["fold"].isin(short["fold"].value_counts().index[:12])].groupby("fold").head(12)
    path = tmp_path / "scop2_small.tsv"
    picked[["id", "sequence", "fold", "class", "superfamily", "family"]].to_csv(path, sep="\t", index=False)
    monkeypatch.setenv("COEVOFOLD_CACHE", str(tmp_path / "cache"))
    members = system_members()
    monkeypatch.setattr(runs.recipe, "default_members", lambda progress=True: members)
    monkeypatch.setattr(runs.names, "fold_names", lambda source: {f: f"SCOP2 fold {f}" for f in picked["fold"]})
    preset = runs.BenchmarkPreset("scop2-small", source=str(path), protocols=tuple(splits.PROTOCOLS), min_members=2)
    found = runs.run_protocols(preset, tmp_path / "bench", progress=False)
    assert list(found) == ["random", "homology-aware"]
    tables_by_protocol = runs.protocol_tables(preset)
    for protocol, result in found.items():
        table = tables_by_protocol[protocol]
        system = next(iter(result.rows.values()))
        held = table["split"].isin(splits.TEST_SPLITS).sum()
        assert system[metrics.POOLED]["n_proteins"] == held, protocol
        assert (tmp_path / "bench" / protocol / "combiner.json").is_file()
    out = capsys.readouterr().out
    assert "random split: 12 folds" in out and "homology-aware split: 12 folds" in out
    assert "SCOP2 fold " in out and "3.82 %" in out
    assert "random" in (tmp_path / "bench" / "results.json").read_text()
