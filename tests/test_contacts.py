"""Contact precision on hand-made maps whose answer is known, and true contacts from real files."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from coevofold.errors import CoevofoldError
from coevofold.features import contacts

L = 30  # top-L = 30, top-L/2 = 15, top-L/5 = 6


def _symmetric(size: int, pairs: list[tuple[int, int]], dtype=bool) -> np.ndarray:
    matrix = np.zeros((size, size), dtype=dtype)
    for i, j in pairs:
        matrix[i, j] = matrix[j, i] = 1
    return matrix


def test_top_k_precision_counts_hits_among_the_k_best_pairs():
    # Long range (j - i >= 24) in a 30-residue chain leaves 21 candidate pairs (0,24)...(5,29).
    truth = _symmetric(L, [(0, 24), (1, 25), (2, 26), (3, 29), (5, 29)])
    scores = np.zeros((L, L))
    ranked = [(0, 24), (1, 25), (0, 25), (2, 26), (0, 26), (0, 27), (0, 28)]  # best first
    for rank, (i, j) in enumerate(ranked):
        scores[i, j] = scores[j, i] = 100 - rank
    # top-6 holds 3 hits; top-15 adds 8 zero-score pairs in pair order, (0,29) to (2,29), no hit;
    # top-30 takes all 21 candidates, so all 5 contacts, but still divides by 30.
    assert contacts.contact_precision(scores, truth) == pytest.approx(
        {"top-L": 5 / 30, "top-L/2": 3 / 15, "top-L/5": 3 / 6})


def test_separation_filter_ignores_short_pairs_however_high_they_score():
    truth = _symmetric(L, [(0, 24), (3, 10)])
    scores = _symmetric(L, [(3, 10)], dtype=float) * 10 + _symmetric(L, [(0, 24)], dtype=float)
    assert contacts.contact_precision(scores, truth)["top-L/5"] == pytest.approx(1 / 6)
    medium = contacts.contact_precision(scores, truth, min_separation=6, max_separation=24)
    assert medium["top-L/5"] == pytest.approx(1 / 6)  # (3, 10) counts, (0, 24) is out of range
    assert contacts.contact_density(truth, min_separation=6, max_separation=24) == pytest.approx(
        1 / sum(L - s for s in range(6, 24)))


def test_only_upper_triangle_read_and_invalid_residues_never_ranked():
    truth = _symmetric(L, [(0, 24), (1, 25)])
    scores = np.zeros((L, L))
    scores[24, 0] = 5.0  # lower triangle: ignored
    scores[0, 24] = scores[1, 25] = 1.0
    scores[2, 26] = 9.0
    valid = np.ones(L, dtype=bool)
    valid[2] = False  # so the best-scoring pair (2, 26) is not a candidate
    assert contacts.contact_precision(scores, truth, valid=valid)["top-L/5"] == pytest.approx(2 / 6)
    assert contacts.contact_density(truth, valid=valid) == pytest.approx(2 / 17)  # 21 - (2, 26..29)


def test_nan_scores_rank_last_and_ties_keep_pair_order():
    truth = _symmetric(L, [(5, 29)])
    scores = np.full((L, L), np.nan)
    scores[5, 29] = 0.0
    assert contacts.contact_precision(scores, truth)["top-L/5"] == pytest.approx(1 / 6)
    tied = np.ones((L, L))  # every candidate tied: pair order puts (5, 29) last of 21
    assert contacts.contact_precision(tied, truth)["top-L/5"] == 0.0
    assert contacts.contact_precision(tied, truth)["top-L"] == pytest.approx(1 / 30)


def test_shape_mismatch_is_refused():
    with pytest.raises(ValueError, match="L x L"):
        contacts.contact_precision(np.zeros((L, L - 1)), np.zeros((L, L), dtype=bool))


def test_evaluate_maps_averages_over_targets_with_a_random_row():
    truth = _symmetric(L, [(0, 24), (1, 25)])
    target = contacts.ContactTarget("t", "A", "A" * L, truth, np.ones(L, dtype=bool))
    perfect = truth.astype(float)
    table = contacts.evaluate_maps(
        [target, target], lambda sequence: {"perfect": perfect, "flat": 0 * perfect})
    assert list(table.index) == [contacts.RANDOM_ROW, "perfect", "flat"]
    assert list(table.columns) == list(contacts.TOP_K)
    assert table.loc["perfect", "top-L/5"] == pytest.approx(2 / 6)
    assert table.loc["flat", "top-L/5"] == pytest.approx(1 / 6)  # pair order: row 0 first
    assert table.loc[contacts.RANDOM_ROW].tolist() == pytest.approx([2 / 21] * 3)
    assert isinstance(table, pd.DataFrame)


@pytest.fixture(scope="module")
def structures(shared_data):
    return shared_data / "structures"


def test_real_pdb_chain_with_modified_residues(structures):
    # 1A8O chain A: 66 standard residues and 4 selenomethionines (HETATM MSE), read as M.
    target = contacts.read_target(structures / "biopython_biopython__Tests_PDB_1A8O.pdb", "A")
    assert len(target.sequence) == 70 and target.sequence.count("M") >= 4
    assert target.contacts.shape == (70, 70) and target.valid.all()
    assert (target.contacts == target.contacts.T).all()
    assert 0.02 < contacts.contact_density(target.contacts, valid=target.valid) < 0.05


def test_real_cif_chain_and_a_residue_without_c_beta(structures):
    cif = contacts.read_target(structures / "biopython_biopython__Tests_PDB_1A7G.cif", "E")
    assert len(cif.sequence) == 82 and set(cif.sequence) <= set("ACDEFGHIKLMNPQRSTVWY")
    rosetta = contacts.read_target(
        structures / "RosettaCommons_RFdiffusion__examples_input_pdbs_3IOL.pdb", "A")
    missing = np.flatnonzero(~rosetta.valid)
    assert len(missing) == 1 and not rosetta.contacts[missing[0]].any()


def test_missing_chain_and_file_name_the_file(structures, tmp_path):
    path = structures / "biopython_biopython__Tests_PDB_1A8O.pdb"
    with pytest.raises(CoevofoldError, match=r"1A8O\.pdb: no chain 'Z'.*chains: A"):
        contacts.read_target(path, "Z")
    with pytest.raises(CoevofoldError, match="no such file"):
        contacts.read_target(tmp_path / "absent.pdb", "A")
    (tmp_path / "chains.txt").write_text("absent.cif A extra\n")
    with pytest.raises(CoevofoldError, match="line 1: expected 'filename chain'"):
        contacts.read_benchmark(tmp_path)


# ------------------------------------------------------------- what the feature store keeps


@pytest.fixture(scope="module")
def plm(model_dir):
    from coevofold.features import pretrained

    return pretrained.load(str(model_dir))


def _direct_maps(plm, sequence: str) -> dict[str, np.ndarray]:
    """The check's rows computed straight from transformers, outside the extraction code."""
    import torch
    from transformers.models.esm.modeling_esm import average_product_correct, symmetrize

    tokens = plm.encode([sequence])
    with torch.inference_mode():
        attentions = torch.stack(plm.forward(tokens, attentions=True).attentions, dim=1)
        probability = plm.model.predict_contacts(tokens["input_ids"], tokens["attention_mask"])[0]
    heads = average_product_correct(symmetrize(attentions[0, ..., 1:-1, 1:-1]))
    return {
        contacts.STORED_CONTACT_ROW: (torch.round(probability * 255) / 255).numpy(),
        contacts.last_layer_row(6): heads[-1].mean(0).numpy(),
        contacts.ALL_HEADS_ROW: heads.mean((0, 1)).numpy(),
    }


def test_check_features_scores_the_stored_contact_map_on_two_chains(structures, plm, tmp_path):
    chains = [("biopython_biopython__Tests_PDB_1LCD.pdb", "A"), ("biopython_biopython__Tests_PDB_1A8O.pdb", "A")]
    for name, _ in chains:
        (tmp_path / name).symlink_to(structures / name)
    (tmp_path / "chains.txt").write_text("".join(f"{name} {chain}\n" for name, chain in chains))
    table = contacts.check_features(tmp_path, plm=plm)
    expected = contacts.evaluate_maps(contacts.read_benchmark(tmp_path), lambda s: _direct_maps(plm, s))
    assert list(table.index) == list(expected.index) == [
        contacts.RANDOM_ROW, contacts.STORED_CONTACT_ROW, "layer 6 avg (full resolution)", contacts.ALL_HEADS_ROW]
    # float16 maps may reorder near-ties: allow one pair of one chain at top-L/5 (1/10 over 2 chains)
    assert np.allclose(table.to_numpy(), expected.to_numpy(), atol=0.05)
    assert (table.loc[contacts.STORED_CONTACT_ROW] > table.loc[contacts.RANDOM_ROW]).all()


@pytest.mark.slow  # 26 chains: ~15 s idle, ~40 s on a busy 2-core machine
def test_check_features_reproduces_the_measured_precision_on_26_chains(plm):
    table = contacts.check_features(plm=plm)
    # shared/data/structures/SOURCE.md (float contact head; uint8 storage moves it < 0.005)
    assert table.loc[contacts.STORED_CONTACT_ROW].tolist() == pytest.approx([0.139, 0.169, 0.222], abs=0.005)
    assert table.loc["layer 6 avg (full resolution)"].tolist() == pytest.approx([0.100, 0.122, 0.144], abs=0.005)
    assert table.loc[contacts.ALL_HEADS_ROW].tolist() == pytest.approx([0.068, 0.074, 0.085], abs=0.005)
    assert table.loc[contacts.RANDOM_ROW].tolist() == pytest.approx([0.029] * 3, abs=0.001)
