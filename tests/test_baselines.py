"""Baselines: alignment homology transfer on real DeepSF sequences, embedding models on blobs."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import make_blobs

from coevofold.data import tables
from coevofold.errors import CoevofoldError
from coevofold.models import baselines
from coevofold.system import preparation


@pytest.fixture(scope="module")
def training():
    """One training protein from each of 30 DeepSF folds, in an order that is not sorted by fold."""
    table = tables.load("deepsf")
    train = table[table["split"] == "train"].drop_duplicates("fold").sample(30, random_state=0)
    return train["sequence"].tolist(), train["fold"].tolist()


def _mutant(sequence: str, every: int = 8) -> str:
    """Substitute every ``every``-th residue (A <-> G, anything else -> A)."""
    residues = list(sequence)
    for i in range(0, len(residues), every):
        residues[i] = "G" if residues[i] == "A" else "A"
    return "".join(residues)


def test_identity_of_self_and_substring():
    sequence = "MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQAPILSRVGDGTQDNLSGAEKAVQVKVKALPDAQFEVVHSLAKWKRQTLGQHDFSAGEGLYTHMKALRPDEDRLSPLHSVYVDQWDWERVMGDGERQFSTLKSTVEAIWAGIKATEAAVSEEFGLAPFLPDQIHFVHSQELLSRYPDLDAKGRERAIAKDLGAVFLVGIGGKLSDGHRHDVRAPDYDDWSTPSELGHAGLNGDILVWNPVLEDAFELSSMGIRVDADTLKHQLALTGDEDRLELEWHQALLRGEMPQTIGGGIGQSRLTMLLLQLPHIGQVQAGVWPAACRDAPHRRS"
    assert baselines.percent_identity(sequence, sequence) == 1.0
    assert baselines.percent_identity(sequence[40:120], sequence) == 1.0
    assert baselines.percent_identity(_mutant(sequence), sequence) == pytest.approx(1 - 1 / 8, abs=0.01)


def test_search_scores_are_parasails_and_blasts_evalue(training):
    """The search's Opal scores equal parasail's striped Smith-Waterman (the reference it replaced)
    on real sequences, the longest DeepSF domain among them (scores beyond 8 bits), and E follows
    Karlin-Altschul with the pair's lengths."""
    import parasail

    sequences, _ = training
    longest = max(tables.load("deepsf")["sequence"], key=len)
    targets = [*sequences, longest]
    lengths = np.array([len(t) for t in targets], dtype=np.float64)
    for query in (sequences[0], sequences[7][5:90], longest):
        raw = np.array([parasail.sw_striped_sat(query, t, baselines.GAP_OPEN, baselines.GAP_EXTEND, parasail.blosum62).score
                        for t in targets], dtype=np.float64)
        expected = -(np.log10(baselines.KARLIN_K * len(query) * lengths) - baselines.KARLIN_LAMBDA * raw / np.log(10))  # -log10 K m n e^-lS
        np.testing.assert_allclose(baselines.pair_log_evalues(query, targets, lengths), expected, rtol=1e-9)
    assert raw.max() > 255


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_substring_and_mutant_queries_find_their_source_fold(training, n_jobs):
    sequences, folds = training
    model = baselines.AlignmentNearestNeighbour(n_jobs=n_jobs, chunk_size=2, progress=False).fit(sequences, folds)
    picks = [3, 11, 17, 29]
    queries = [sequences[i][10:-10] for i in picks] + [_mutant(sequences[i]) for i in picks]
    assert model.predict(queries).tolist() == [folds[i] for i in picks] * 2
    hits = model.search(queries)
    assert hits.nearest.tolist() == picks * 2  # indexes the sequences as given to fit
    assert hits.nearest_identity[:4].tolist() == [1.0] * 4
    assert (hits.nearest_identity[4:] > 0.8).all()


def test_predict_proba_columns_follow_classes(training):
    sequences, folds = training
    model = baselines.AlignmentNearestNeighbour(n_jobs=1, progress=False).fit(sequences, folds)
    assert model.classes_.tolist() == sorted(set(folds))
    scores = model.predict_proba(sequences[:3])
    assert scores.shape == (3, len(model.classes_))
    assert model.classes_[scores.argmax(axis=1)].tolist() == folds[:3]
    assert np.isfinite(scores).all()
    assert np.allclose(scores.sum(axis=1), 1.0) and (scores >= 0).all()  # probabilities, scikit-learn's meaning
    ranks = model.class_scores(sequences[:3])  # -log10 E-values: the ranking evaluation reads
    assert ranks.shape == scores.shape and (ranks.argmax(axis=1) == scores.argmax(axis=1)).all()


def test_alignment_errors(training):
    sequences, folds = training
    model = baselines.AlignmentNearestNeighbour(n_jobs=1, progress=False)
    with pytest.raises(CoevofoldError, match="call fit"):
        model.predict(sequences[:1])
    with pytest.raises(CoevofoldError, match="labels"):
        model.fit(sequences, folds[:-1])
    model.fit(sequences, folds)
    with pytest.raises(CoevofoldError, match="no sequences"):
        model.predict([])
    with pytest.raises(CoevofoldError, match="#2 is empty"):
        model.predict(["MKT", ""])


@pytest.mark.parametrize("factory", [baselines.embedding_logistic_regression, baselines.embedding_knn])
def test_embedding_baselines_separate_blobs(factory):
    X, y = make_blobs(n_samples=400, centers=6, n_features=32, cluster_std=2.0, random_state=0)
    labels = np.array([f"f.{c}" for c in y])
    model = factory().fit(X[:300], labels[:300])
    assert (model.predict(X[300:]) == labels[300:]).mean() >= 0.99
    probs = model.predict_proba(X[300:])
    assert probs.shape == (100, 6) and model.classes_.tolist() == sorted(set(labels))
    assert (model.classes_[probs.argmax(axis=1)] == model.predict(X[300:])).all()


def test_homology_first_trusts_only_confident_hits():
    from coevofold.system.homology import choose_min_score, homology_first

    model = np.array([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3]])
    # query 0: weak hit (score 2) to class 2; query 1: strong hit (score 30) to class 0
    alignment = np.array([[0.5, 0.0, 2.0], [30.0, 1.0, 0.0]])
    combined = homology_first(model, alignment, min_score=5)
    assert combined.argmax(1).tolist() == [0, 0]  # model for query 0, alignment for query 1
    assert np.argsort(-combined[1]).tolist() == [0, 1, 2]  # alignment order kept for lower ranks
    assert homology_first(model, alignment, min_score=1).argmax(1).tolist() == [2, 0]
    # targets favour trusting only the strong hit: thresholds 3..30 tie, the strictest wins
    assert choose_min_score(model, alignment, np.array([0, 0]), grid=[1, 3, 30, 31]) == 30


def test_class_best_is_each_class_best_member(training):
    """Two members in one fold: the query's own source wins its class; others are the sole members."""
    sequences, folds = training
    sequences, folds = [*sequences, _mutant(sequences[5], every=3)], [*folds, folds[5]]
    model = baselines.AlignmentNearestNeighbour(n_jobs=1, progress=False).fit(sequences, folds)
    hits = model.search([sequences[5][5:-5], sequences[-1]])
    column = model.classes_.tolist().index(folds[5])
    assert hits.class_best[:, column].tolist() == [5, len(sequences) - 1]
    sole = {fold: i for i, fold in enumerate(folds[:-1]) if fold != folds[5]}
    for fold, index in sole.items():
        assert (hits.class_best[:, model.classes_.tolist().index(fold)] == index).all()


def test_alignment_scores_are_cached_per_data_set(training, tmp_path, monkeypatch):
    import pandas as pd

    monkeypatch.setenv("COEVOFOLD_CACHE", str(tmp_path))
    sequences, folds = training
    table = pd.DataFrame({"id": [f"p{i}" for i in range(12)], "sequence": sequences[:10] + sequences[:2],
                          "fold": folds[:10] + folds[:2], "split": ["train"] * 10 + ["valid", "test_fold"]})
    first = preparation.cached_alignment("tiny", table, progress=False)
    assert set(first) == {"valid", "test_fold"} and first["valid"].shape == (1, 10)

    def no_search(*args, **kwargs):
        raise AssertionError("searched again instead of reading the cache")

    monkeypatch.setattr(baselines.AlignmentNearestNeighbour, "search", no_search)
    again = preparation.cached_alignment("tiny", table, progress=False)
    assert all(np.array_equal(first[s], again[s]) for s in first)
    with pytest.raises(AssertionError):  # another table is another key
        preparation.cached_alignment("tiny", table.assign(split=["train"] * 10 + ["test_fold", "valid"]), progress=False)


@pytest.mark.parametrize("first, then", [(("test_fold",), ("valid", "test_fold")), (("valid", "test_fold"), ("test_fold",))])
def test_cached_alignment_holds_what_each_call_asks_for(training, tmp_path, monkeypatch, first, then):
    """Fewer splits cached first (``evaluate``), more asked later (``prepare_system``), and the other way
    round: each call gets its splits, equal to a fresh search, and only a missing split is searched."""
    import pandas as pd

    monkeypatch.setenv("COEVOFOLD_CACHE", str(tmp_path))
    sequences, folds = training
    table = pd.DataFrame({"id": [f"p{i}" for i in range(13)], "sequence": sequences[:10] + sequences[:3],
                          "fold": folds[:10] + folds[:3], "split": ["train"] * 10 + ["valid", "test_fold", "test_fold"]})
    fresh = baselines.alignment_scores(table, ("valid", "test_fold"), n_jobs=1, progress=False)[1]
    searched = []
    real = baselines.AlignmentNearestNeighbour.search

    def counted(self, queries):
        searched.append(len(queries))
        return real(self, queries)

    monkeypatch.setattr(baselines.AlignmentNearestNeighbour, "search", counted)
    for splits in (first, then, first):
        scores = preparation.cached_alignment("tiny", table, progress=False, splits=splits)
        assert set(scores) == set(splits) and all(np.array_equal(scores[s], fresh[s]) for s in splits)
    assert sum(searched) == 3  # each of the 3 query proteins searched once, whatever the order
