"""Feature extraction with the real small ESM-2 on real SCOP domains: values, batching, windows,
the store's resume and refusals, the ProtTrans path (a tiny random BERT, offline) and load errors."""

from __future__ import annotations

import dataclasses
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from unittest import mock

import h5py
import numpy as np
import pandas as pd
import pytest
import torch

from coevofold import metrics
from coevofold.data import tables
from coevofold.errors import CoevofoldError
from coevofold.features import extraction, pretrained, store
from coevofold.features.coevolution import window_starts

PROTBERT_VOCAB = "[PAD] [UNK] [CLS] [SEP] [MASK] L A G V E S I K R D T P N Q F Y M H C W X U B Z O".split()
FLOAT16 = {"rtol": 2e-3, "atol": 1e-4}  # one float16 step, for values that took another float path


@pytest.fixture(scope="module")
def plm(model_dir: Path) -> pretrained.ProteinLM:
    return pretrained.load(str(model_dir))


@pytest.fixture(scope="module")
def domains() -> pd.DataFrame:
    """Real DeepSF validation domains shorter than 150 residues, in file order."""
    table = tables.load("deepsf")
    return table[(table["split"] == "valid") & (table["length"] < 150)][["id", "sequence"]].reset_index(drop=True)


@pytest.fixture(scope="module")
def four(domains: pd.DataFrame) -> pd.DataFrame:
    return domains.head(4)


#: features with attention maps (the default store has none). In float32: the equivalences below
#: (batching, the maps pass) hold to float rounding there; bfloat16's rounding depends on the batch.
MAPS = extraction.FeatureConfig(maps="layers", precision="float32")


@pytest.fixture(scope="module")
def batched(plm, four) -> store.FeatureRows:
    return extraction.compute(plm, MAPS, four["id"].tolist(), four["sequence"].tolist())


def _one_by_one(plm, config, table: pd.DataFrame) -> store.FeatureRows:
    return store.FeatureRows.concat(
        [extraction.compute(plm, config, [i], [s]) for i, s in zip(table["id"], table["sequence"])])


def _assert_rows_equal(a: store.FeatureRows, b: store.FeatureRows) -> None:
    assert a.ids == b.ids and a.sequences == b.sequences
    for name in ("maps", "embedding", "mean"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    assert all(np.array_equal(x, y) for x, y in zip(a.contacts, b.contacts, strict=True))


def _one_line_error(excinfo: pytest.ExceptionInfo) -> str:
    message = str(excinfo.value)
    assert message and "\n" not in message
    return message


# ----------------------------------------------------------------------------------- values


def test_bfloat16_extraction_stays_faithful_to_float32(plm, four):
    """``--precision bfloat16`` moves the embeddings by rounding only: per residue a cosine to
    float32 of at least 0.98 (0.989 was the least over DeepSF's 736 valid domains), and the store
    records the precision, so float32 features and models are never mixed with them; float32
    stores keep the identity they had before the field existed."""
    ids, sequences = four["id"].tolist(), four["sequence"].tolist()
    fp32 = extraction.compute(plm, extraction.FeatureConfig(precision="float32"), ids, sequences)
    bf16 = extraction.compute(plm, extraction.FeatureConfig(precision="bfloat16"), ids, sequences)
    assert metrics.cosine(bf16.mean, fp32.mean).min() > 0.999
    assert metrics.cosine(bf16.layers, fp32.layers).min() > 0.999
    assert min(metrics.cosine(a, b).min() for a, b in zip(bf16.residues, fp32.residues, strict=True)) > 0.98
    assert not np.array_equal(bf16.mean, fp32.mean)  # the products did run in bfloat16
    alone = _one_by_one(plm, extraction.FeatureConfig(precision="bfloat16"), four)  # batch-dependent rounding only
    assert min(metrics.cosine(a, b).min() for a, b in zip(alone.residues, bf16.residues, strict=True)) > 0.98
    assert extraction.settings_of(plm, extraction.FeatureConfig(precision="bfloat16"))["precision"] == "bfloat16"
    assert "precision" not in extraction.settings_of(plm, extraction.FeatureConfig(precision="float32"))
    with pytest.raises(CoevofoldError, match="--precision must be one of"):
        extraction.FeatureConfig(precision="int8")


def test_the_default_precision_is_bfloat16_only_where_the_cpu_has_it(monkeypatch):
    """Without bfloat16 instructions autocast emulates it (slower than float32), so float32 is the default there."""
    for native, expected in ((True, "bfloat16"), (False, "float32")):
        monkeypatch.setattr(extraction, "native_bfloat16", lambda: native)
        assert extraction.FeatureConfig().precision == expected
    monkeypatch.undo()
    monkeypatch.setattr(extraction.torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(extraction.torch.cpu, "_is_amx_tile_supported", lambda: True)
    assert extraction.native_bfloat16()  # AMX alone is enough


def test_the_default_features_are_the_maps_passes_embeddings_without_maps(plm, batched, four):
    """No attention maps by default: fused attention gives the embeddings of the eager pass that
    maps need, to float rounding."""
    plain = extraction.compute(plm, extraction.FeatureConfig(precision="float32"), four["id"].tolist(),
                               four["sequence"].tolist())
    assert plain.maps.shape == (4, 0, 32, 32) and all(c.size == 0 for c in plain.contacts)
    np.testing.assert_allclose(plain.embedding, batched.embedding, **FLOAT16)
    np.testing.assert_allclose(plain.layers, batched.layers, **FLOAT16)
    np.testing.assert_allclose(plain.mean, batched.mean, atol=1e-4)
    for a, b in zip(plain.residues, batched.residues, strict=True):
        np.testing.assert_allclose(a, b, **FLOAT16)


def test_shapes_of_the_features_with_maps(batched, four):
    assert batched.maps.shape == (4, 7, 32, 32) and batched.maps.dtype == np.float16
    assert batched.embedding.shape == (4, 32, 320) and batched.embedding.dtype == np.float16
    assert batched.mean.shape == (4, 320) and batched.mean.dtype == np.float32
    lengths = four["sequence"].str.len()
    assert [c.size for c in batched.contacts] == [n * (n - 1) // 2 for n in lengths]
    assert all(c.dtype == np.uint8 for c in batched.contacts)


def test_contact_channel_is_the_models_contact_prediction(plm, batched, four):
    for triangle, sequence in zip(batched.contacts, four["sequence"]):
        tokens = plm.encode([sequence])
        plm.model.set_attn_implementation("eager")  # the fused kernel returns no attention
        with torch.inference_mode():
            expected = plm.model.predict_contacts(tokens["input_ids"], tokens["attention_mask"])[0].numpy()
        rows, cols = np.triu_indices(len(sequence), 1)
        stored = store.triangle_to_map(triangle, len(sequence))
        assert np.abs(stored[rows, cols] - expected[rows, cols]).max() <= 1 / 255
        assert 0.3 < expected[rows, cols].max() <= 1.0  # a real signal, not a flat map


def test_batching_does_not_change_results(plm, batched, four):
    single = _one_by_one(plm, MAPS, four)
    assert single.ids == batched.ids
    np.testing.assert_allclose(single.maps, batched.maps, **FLOAT16)
    np.testing.assert_allclose(single.embedding, batched.embedding, **FLOAT16)
    np.testing.assert_allclose(single.mean, batched.mean, atol=1e-4)
    for a, b in zip(single.contacts, batched.contacts):
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 1


# ----------------------------------------------------------------------------------- windows


def test_a_chain_that_fits_is_not_changed_by_windowing(plm, four):
    sequence = four["sequence"][2]
    config = dataclasses.replace(MAPS, stride=len(sequence) // 2)
    exact = dataclasses.replace(plm, window=len(sequence))
    _assert_rows_equal(extraction.compute(exact, config, ["p"], [sequence]),
                       extraction.compute(plm, config, ["p"], [sequence]))


def test_a_long_chain_is_stitched_from_averaged_windows(plm, four):
    sequence = four["sequence"][2]  # 89 residues: windows of 40 start at 0, 20, 40 and 49
    length, window = len(sequence), 40
    small = dataclasses.replace(plm, window=window)
    # grid = L and bins = L keep full resolution, so overlaps can be checked residue by residue
    stitched = extraction.compute(small, dataclasses.replace(MAPS, grid=length, embedding_bins=length, stride=20),
                                ["p"], [sequence])
    starts = window_starts(length, window, 20)
    assert starts == [0, 20, 40, 49]
    pieces = extraction.compute(plm, dataclasses.replace(MAPS, grid=window, embedding_bins=window, stride=20),
                              [str(s) for s in starts], [sequence[s : s + window] for s in starts])

    maps = np.zeros((7, length, length))
    map_count = np.zeros((length, length))
    profile = np.zeros((length, plm.hidden_size))
    profile_count = np.zeros((length, 1))
    for start, piece_maps, piece_profile in zip(starts, pieces.maps, pieces.embedding):
        maps[:, start : start + window, start : start + window] += piece_maps
        map_count[start : start + window, start : start + window] += 1
        profile[start : start + window] += piece_profile
        profile_count[start : start + window] += 1
    assert profile_count.min() == 1 and profile_count.max() == 3  # every residue, overlaps up to 3
    expected_maps = maps / np.maximum(map_count, 1)
    expected_profile = profile / profile_count

    assert stitched.maps.shape == (1, 7, length, length) and stitched.embedding.shape == (1, length, plm.hidden_size)
    np.testing.assert_allclose(stitched.maps[0], expected_maps, **FLOAT16)
    np.testing.assert_allclose(stitched.embedding[0], expected_profile, **FLOAT16)
    np.testing.assert_allclose(stitched.mean[0], expected_profile.mean(0), atol=1e-3)
    assert (np.abs(stitched.embedding[0]).sum(1) > 0).all()
    unseen = map_count == 0  # e.g. residues 0 and 88 never share a window: no evidence, zero
    assert unseen[0, length - 1] and not stitched.maps[0][:, unseen].any()
    contact = store.triangle_to_map(stitched.contacts[0], length)
    rows, cols = np.triu_indices(length, 1)
    assert np.abs(contact[rows, cols] - expected_maps[0][rows, cols]).max() <= 1 / 255 + 2e-3


def test_stride_longer_than_the_window_is_refused(plm, four):
    with pytest.raises(CoevofoldError, match="--stride 2000 is larger than the model's window") as excinfo:
        extraction.compute(plm, extraction.FeatureConfig(stride=2000), ["p"], [four["sequence"][0]])
    _one_line_error(excinfo)


# ----------------------------------------------------------------------------------- store


#: batches of one protein, on the CPU like compute() here, so stores and compute() agree bit for bit
ONE_AT_A_TIME = extraction.RunConfig(max_tokens=1, part_size=1, device="cpu", progress=False)


def test_extract_in_two_steps_stores_what_compute_gives(plm, four, tmp_path):
    config = extraction.FeatureConfig()
    extraction.extract(four.head(2), tmp_path / "resumed.h5", config, ONE_AT_A_TIME, plm=plm)
    assert sorted(store.read_ids(tmp_path / "resumed.h5")) == sorted(four["id"].head(2))
    extraction.extract(four, tmp_path / "resumed.h5", config, ONE_AT_A_TIME, plm=plm)
    extraction.extract(four, tmp_path / "whole.h5", config, ONE_AT_A_TIME, plm=plm)
    ids = four["id"].tolist()
    resumed = store.read_rows(tmp_path / "resumed.h5", ids)
    _assert_rows_equal(resumed, store.read_rows(tmp_path / "whole.h5", ids))
    _assert_rows_equal(resumed, _one_by_one(plm, config, four))
    assert not store.parts_dir(tmp_path / "resumed.h5").exists()


_EXTRACT_SCRIPT = """
import sys
from coevofold.features import extraction
source, out, model, threads = sys.argv[1:]
extraction.extract(source, out, extraction.FeatureConfig(model=model),
                 extraction.RunConfig(max_tokens=1, part_size=1, threads=int(threads), device="cpu", progress=False))
"""


@pytest.mark.slow  # two fresh processes load the model: ~25 s idle, a minute on a busy machine
def test_extract_killed_with_sigkill_resumes_to_the_same_store(plm, domains, model_dir, tmp_path):
    table = domains.iloc[4:16]
    fasta = tmp_path / "twelve.fasta"
    fasta.write_text("".join(f">{i}\n{s}\n" for i, s in zip(table["id"], table["sequence"])))
    out = tmp_path / "killed.h5"
    # the same thread count as this process, whose reference run below must match bit for bit
    command = [sys.executable, "-c", _EXTRACT_SCRIPT, str(fasta), str(out), str(model_dir), str(torch.get_num_threads())]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not list(store.parts_dir(out).glob("*.h5")):
            assert process.poll() is None, process.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "no part file appeared"
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait()
        process.stderr.close()
    assert process.returncode == -signal.SIGKILL
    finished = len(list(store.parts_dir(out).glob("*.h5")))
    assert not out.exists() and 1 <= finished < len(table)

    subprocess.run(command, check=True, capture_output=True)
    extraction.extract(table, tmp_path / "whole.h5", extraction.FeatureConfig(), ONE_AT_A_TIME, plm=plm)
    ids = table["id"].tolist()
    _assert_rows_equal(store.read_rows(out, ids), store.read_rows(tmp_path / "whole.h5", ids))
    assert not store.parts_dir(out).exists()


@pytest.fixture(scope="module")
def grid16_store(plm, four, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("grid16") / "grid16.h5"
    return extraction.extract(four.head(1), path, extraction.FeatureConfig(grid=16), ONE_AT_A_TIME, plm=plm)


def test_a_store_refuses_other_settings_naming_both_values(plm, four, grid16_store):
    assert store.read_rows(grid16_store).maps.shape == (1, 0, 16, 16)  # no maps by default
    with pytest.raises(CoevofoldError, match="grid: 16 there, 32 now") as excinfo:
        extraction.extract(four, grid16_store, extraction.FeatureConfig(grid=32), ONE_AT_A_TIME, plm=plm)
    _one_line_error(excinfo)


def test_a_truncated_store_is_one_line_error(plm, four, grid16_store, tmp_path):
    cut = tmp_path / "cut.h5"
    whole = grid16_store.read_bytes()
    cut.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(CoevofoldError, match="cut.h5: unreadable or truncated") as excinfo:
        extraction.extract(four.head(1), cut, extraction.FeatureConfig(grid=16), ONE_AT_A_TIME, plm=plm)
    _one_line_error(excinfo)
    with pytest.raises(CoevofoldError, match="truncated"):
        store.read_rows(cut)


def test_the_same_id_with_another_sequence_is_refused(plm, four, grid16_store):
    changed = four.head(1).assign(sequence=four["sequence"][1])
    with pytest.raises(CoevofoldError, match=f"record '{four['id'][0]}' is stored with a different sequence") as excinfo:
        extraction.extract(changed, grid16_store, extraction.FeatureConfig(grid=16), ONE_AT_A_TIME, plm=plm)
    _one_line_error(excinfo)


# ----------------------------------------------------------------------------------- ProtTrans


@pytest.fixture(scope="module")
def tiny_protbert(tmp_path_factory) -> Path:
    """A random 2-layer, 2-head BERT with ProtBert's vocabulary, saved like a hub checkpoint."""
    from transformers import BertConfig, BertModel, BertTokenizer

    folder = tmp_path_factory.mktemp("protbert")
    (folder / "vocab.txt").write_text("\n".join(PROTBERT_VOCAB) + "\n")
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(PROTBERT_VOCAB), hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=64)
    BertModel(config).save_pretrained(folder)
    BertTokenizer(str(folder / "vocab.txt"), do_lower_case=False).save_pretrained(folder)
    return folder


def test_prottrans_model_loads_and_encodes_as_protbert_was_trained(tiny_protbert):
    model = pretrained.load(str(tiny_protbert))
    assert (model.family, model.window, model.num_layers, model.num_heads) == ("prottrans", 62, 2, 2)
    assert not model.has_contact_head
    tokens = model.encode(["MKUZOB", "AC"])
    assert model.tokenizer.convert_ids_to_tokens(tokens["input_ids"][0]) == [
        "[CLS]", "M", "K", "X", "X", "X", "X", "[SEP]"]
    assert model.tokenizer.convert_ids_to_tokens(tokens["input_ids"][1])[:4] == ["[CLS]", "A", "C", "[SEP]"]


def test_prottrans_features_use_the_all_head_average_as_contact_map(tiny_protbert):
    model = pretrained.load(str(tiny_protbert))
    with pytest.raises(CoevofoldError, match="--stride 511 is larger than the model's window \\(62"):
        extraction.compute(model, extraction.FeatureConfig(), ["a"], ["MKTAYIAKQR"])
    sequences = ["MKTAYIAKQRQISFVKSHFSRQUZ", "ACDEFGHIKLMNPQRSTVWY" * 4]  # the second (80) is windowed
    rows = extraction.compute(model, dataclasses.replace(MAPS, stride=31), ["a", "b"], sequences)
    assert rows.maps.shape == (2, 3, 32, 32) and rows.embedding.shape == (2, 32, 16) and rows.mean.shape == (2, 16)
    assert [c.size for c in rows.contacts] == [24 * 23 // 2, 80 * 79 // 2]

    length = len(sequences[0])
    full = extraction.compute(model, dataclasses.replace(MAPS, stride=31, grid=length), ["a"], sequences[:1])
    all_heads = full.maps[0, 1:].astype(np.float32).mean(0)  # 2 layers of 2 heads: mean of layer means
    scaled = (all_heads - all_heads.min()) / (all_heads.max() - all_heads.min())
    np.testing.assert_allclose(full.maps[0, 0], scaled, atol=2e-3)
    rows_, cols = np.triu_indices(length, 1)
    assert np.abs(full.contacts[0] / 255 - scaled[rows_, cols]).max() <= 1 / 255 + 2e-3


# ----------------------------------------------------------------------------------- load errors


def test_missing_folder_and_folder_without_config(tmp_path):
    with pytest.raises(CoevofoldError, match="absent: no such model folder") as excinfo:
        pretrained.load(str(tmp_path / "absent"))
    _one_line_error(excinfo)
    with pytest.raises(CoevofoldError, match="not a Hugging Face model folder \\(no config.json\\)") as excinfo:
        pretrained.load(str(tmp_path))
    _one_line_error(excinfo)


def test_unsupported_model_type(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    with pytest.raises(CoevofoldError, match="model type 'gpt2' is not supported") as excinfo:
        pretrained.load(str(tmp_path))
    _one_line_error(excinfo)


def test_corrupted_weights(tmp_path, model_dir):
    for name in ("config.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(model_dir / name, tmp_path / name)
    (tmp_path / "pytorch_model.bin").write_bytes(b"\x00garbage\xff" * 3)
    with pytest.raises(CoevofoldError, match="cannot load model weights") as excinfo:
        pretrained.load(str(tmp_path))
    _one_line_error(excinfo)


def test_hub_id_offline_without_cache_fails_fast_naming_the_options(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv(pretrained.MODEL_ENV, raising=False)
    started = time.monotonic()
    with pytest.raises(CoevofoldError, match="facebook/esm2_t12_35M_UR50D") as excinfo:
        pretrained.load("facebook/esm2_t12_35M_UR50D")
    assert time.monotonic() - started < 10
    message = _one_line_error(excinfo)
    assert "--model" in message and "COEVOFOLD_MODEL" in message


def test_store_records_model_name_and_version(tmp_path, plm, four):
    import h5py

    from coevofold import __version__

    out = extraction.extract(four.head(2), tmp_path / "s.h5", extraction.FeatureConfig(),
                           extraction.RunConfig(progress=False, device="cpu"), plm=plm)
    with h5py.File(out, "r") as f:
        assert f.attrs["model"] == plm.label
        assert f.attrs["coevofold_version"] == __version__
        assert "weights_sha256" in f.attrs["settings"]


def test_whole_reads_of_a_store_are_kept_until_the_file_changes(tmp_path, plm, four):
    out = extraction.extract(four.head(3), tmp_path / "s.h5", extraction.FeatureConfig(),
                             extraction.RunConfig(progress=False, device="cpu"), plm=plm)
    first = store.read_rows(out)
    again = store.read_rows(out)
    assert np.array_equal(first.layers, again.layers)
    again.layers[:] = 0  # a caller's rows are its own copy: the kept arrays are untouched
    assert np.array_equal(store.read_rows(out).layers, first.layers)
    changed = store.read_rows(out, residues=True).select([2, 1, 0])
    changed.layers = changed.layers + np.float16(1)
    store.write_file(out, changed, store.read_settings(out))  # rewritten (a new file renamed over it): read afresh
    assert np.array_equal(store.read_rows(out, first.ids).layers, first.layers + np.float16(1))


def _synthetic_rows(ids: list[str], seed: int, channels: int = 2) -> store.FeatureRows:
    """Rows of random features shaped as a store's (no pLM needed: the merge only moves bytes)."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(5, 40, len(ids))
    return store.FeatureRows(
        ids=ids, sequences=["A" * n for n in lengths],
        maps=rng.random((len(ids), channels, 8, 8)).astype(np.float16),
        embedding=rng.random((len(ids), 4, 6)).astype(np.float16),
        mean=rng.random((len(ids), 6)).astype(np.float32),
        contacts=[rng.integers(0, 256, n * (n - 1) // 2).astype(np.uint8) for n in lengths],
        layers=rng.random((len(ids), 3, 6)).astype(np.float16),
        residues=[rng.random((n, 5)).astype(np.float16) for n in lengths])


@pytest.mark.parametrize("channels", [2, 0])
def test_a_merge_copies_whole_chunks_and_keeps_every_first_copy(tmp_path, channels):
    """A store and parts of odd and even sizes, a duplicate id, and a part written with another
    chunking: the merge keeps each id's first copy, bit for bit, whatever it copied compressed."""
    out, settings = tmp_path / "s.h5", {"grid": 8}
    old = _synthetic_rows([f"s{i}" for i in range(5)], 0, channels)
    store.write_file(out, old, settings)
    parts = [_synthetic_rows([f"a{i}" for i in range(4)], 1, channels),
             _synthetic_rows(["b0", "s1", "b1", "b2"], 2, channels),  # s1 is already in the store
             _synthetic_rows(["c0"], 3, channels)]
    for n, rows in enumerate(parts):
        store.write_file(store.parts_dir(out) / f"part-{n}.h5", rows, settings)
    with mock.patch.object(store, "_CHUNK_ROWS", 3):  # another chunking: read and compressed anew
        store.write_file(store.parts_dir(out) / "part-3.h5", _synthetic_rows(["d0", "d1", "d2"], 4, channels), settings)
    with mock.patch.object(store, "_take", wraps=store._take) as anew:
        assert store.merge(out, settings) == 4 + 3 + 1 + 3
    # read and compressed anew: s4 (the store's odd row), b0 (its chunk's partner s1 is dropped),
    # c0 (a one-row part's chunk is one row) and d0-d2; every other chunk was copied as it was
    assert sum(len(call.args[1]) for call in anew.call_args_list) == 6 * (4 if channels else 3)
    wanted = store.FeatureRows.concat([old, parts[0], parts[1].select([0, 2, 3]), parts[2],
                                       _synthetic_rows(["d0", "d1", "d2"], 4, channels)])
    merged = store.read_rows(out, wanted.ids, residues=True)
    _assert_rows_equal(merged, wanted)
    assert np.array_equal(merged.layers, wanted.layers)
    assert all(np.array_equal(a, b) for a, b in zip(merged.residues, wanted.residues, strict=True))
    assert not store.parts_dir(out).exists()
    with h5py.File(out) as f:
        assert f["layers"].chunks == (2, 3, 6) and sorted(f["id"].asstr()[()]) == sorted(wanted.ids)


@pytest.mark.slow
def test_two_processes_write_shards_that_merge_into_one_store(plm, four, model_dir, tmp_path):
    """Scale-out path: `--devices 2` (DDP on CPU) gives the same store as one process.

    Both in float32: bfloat16 features depend on the batch a protein shares by rounding (up to
    ~0.008 in a mean here; tested elsewhere by cosine), and two processes batch differently."""
    import subprocess
    import sys

    fasta = tmp_path / "four.fasta"
    fasta.write_text("".join(f">{i}\n{s}\n" for i, s in zip(four["id"], four["sequence"])))
    command = [sys.executable, "-m", "coevofold.app.cli", "extract", str(fasta), "--out", str(tmp_path / "ddp.h5"),
               "--model", str(model_dir), "--device", "cpu", "--devices", "2", "--threads", "1", "--quiet",
               "--precision", "float32"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert not store.parts_dir(tmp_path / "ddp.h5").exists()
    single = extraction.extract(four, tmp_path / "one.h5", extraction.FeatureConfig(precision="float32"),
                              extraction.RunConfig(progress=False, device="cpu", threads=1), plm=plm)
    ddp_rows = store.read_rows(tmp_path / "ddp.h5", four["id"].tolist())
    one_rows = store.read_rows(single, four["id"].tolist())
    np.testing.assert_allclose(ddp_rows.mean, one_rows.mean, atol=1e-4)
    np.testing.assert_allclose(ddp_rows.maps.astype(np.float32), one_rows.maps.astype(np.float32), atol=2e-3)
