"""The command line as a new user meets it: every --help works, odd inputs end in a message."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from coevofold.app import cli
from coevofold.errors import CoevofoldError
from coevofold.system import preparation


def _commands(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command path (top level, subcommands, sub-subcommands) of the parser."""
    found = [prefix]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += _commands(sub, (*prefix, name))
    return found


COMMANDS = _commands(cli.build_parser())


def test_commands_found():
    assert ("predict",) in COMMANDS and ("data", "summarize",) in COMMANDS and ("serve",) in COMMANDS


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "coevofold")
def test_help_exits_zero(command: tuple[str, ...], capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main([*command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr()
    assert "usage: coevofold" in out.out and "Traceback" not in out.err


def test_top_level_help_in_a_real_process():
    """The very first command a user types, as the installed entry point runs it."""
    done = subprocess.run([sys.executable, "-m", "coevofold.app.cli", "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr and "predict" in done.stdout and "serve" in done.stdout


def test_summarize_everything_excluded(tmp_path: Path, write_fasta, capsys):
    """Two valid ASTRAL records in one small fold: counts, the reason, no empty plot, exit 0."""
    fasta = write_fasta(">d1a a.1.1.1\nMKVLAAGIVALLLAAGCSS\n>d1b a.1.1.2\nmkkllptaaaglllLAAQP\n", name="small.fa")
    assert cli.main(["data", "summarize", str(fasta), "--out", str(tmp_path / "plots")]) == 0
    out = capsys.readouterr().out
    assert "excluded         2" in out
    assert "all 2 proteins are excluded (2 fold with fewer than 5 proteins (--min-members)); no plots written" in out
    assert not (tmp_path / "plots").exists()


def test_train_default_calibrate_prepares_the_system(tmp_path: Path, monkeypatch, capsys):
    """--calibrate trains as quickstart does (the proxy, then the model from its weights) and
    prepares the system (homology, calibration) on the same folder, table and members; without the default ensemble it is refused in one line."""
    from coevofold.training import mixture, recipe

    calls = {}

    def fake_train(store, table, out, members, fold_names=None):
        calls["trained"] = (Path(out), set(members))
        return Path(out)

    def fake_prepare(model_dir, store_path, table, members, name, progress=True):
        calls["prepared"] = (model_dir, set(members), name, len(table))
        return {}

    def fake_train_model(model_dir, store_path, table, members, fold_names=None):
        calls["warm"] = (Path(model_dir), set(members))
        return Path(model_dir)

    monkeypatch.setattr(mixture, "train_ensemble", fake_train)
    monkeypatch.setattr(preparation, "prepare", fake_prepare)
    monkeypatch.setattr(preparation, "train_model", fake_train_model)
    out = tmp_path / "default"
    args = ["train", "deepsf", "--store", "unused.h5", "--out", str(out), "--model-type", "default", "--quiet"]
    assert cli.main(args) == 0 and "prepared" not in calls and "warm" not in calls
    members = set(recipe.default_members(False))
    assert calls.pop("trained") == (out, members)
    assert cli.main([*args, "--calibrate"]) == 0  # the proxy first, the model from its weights
    assert "trained" not in calls and calls["warm"] == (out, members)
    assert calls["prepared"][:3] == (out, members, "deepsf")
    assert "homology transfer and calibration prepared" in capsys.readouterr().out
    assert cli.main(["train", "deepsf", "--store", "unused.h5", "--out", str(out), "--calibrate"]) == 1
    assert "--calibrate prepares the default ensemble" in capsys.readouterr().err


# ------------------------------------------------------------------ --device and --threads

NO_GPU = pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="needs a machine without a CUDA GPU")


def test_device_words():
    import torch

    from coevofold import devices
    from coevofold.errors import CoevofoldError

    assert str(devices.resolve("cpu")) == "cpu" and devices.lightning_devices(devices.resolve("cpu"), 2) == ("cpu", 2)
    assert str(devices.resolve("auto")) == ("cuda" if torch.cuda.is_available() else "cpu")
    assert devices.lightning_devices(devices.Device("cuda", 1)) == ("gpu", [1])
    for word, message in [("tpu", "expected auto, cpu, cuda or cuda:N"), ("cuda:x", "expected auto, cpu, cuda or cuda:N")]:
        with pytest.raises(CoevofoldError, match=message):
            devices.resolve(word)
    with pytest.raises(CoevofoldError, match="names one GPU; for 2 processes use --device cuda --devices 2"):
        devices.lightning_devices(devices.Device("cuda", 0), 2)
    with pytest.raises(CoevofoldError, match="--threads must be at least 1"):
        devices.set_threads(0)


@NO_GPU
@pytest.mark.parametrize("command", ["extract", "train", "predict", "serve"])
def test_device_cuda_without_a_gpu_is_one_line_and_exit_1(command, trained, model_dir, write_fasta, tmp_path, capsys):
    fasta = str(write_fasta(">q\nMKVLAAGIVALLLAAGCSS\n"))
    args = {"extract": ["extract", fasta, "--out", str(tmp_path / "s.h5"), "--model", str(model_dir)],
            "train": ["train", "deepsf", "--store", str(tmp_path / "none.h5"), "--out", str(tmp_path / "run")],
            "predict": ["predict", fasta, "--checkpoint", str(trained)],
            "serve": ["serve", "--checkpoint", str(trained)]}[command]
    for device in ("cuda", "cuda:0"):
        assert cli.main([*args, "--device", device, "--quiet"] if command != "serve" else [*args, "--device", device]) == 1
        err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        assert len(err) == 1 and err[0].startswith(f"coevofold: error: --device {device}: no CUDA GPU is visible here (")
        assert err[0].endswith("); use --device cpu or auto"), err
    assert not (tmp_path / "s.h5").exists() and not (tmp_path / "run").exists()  # refused before any work


def test_device_cpu_and_threads_on_extract_and_train(deepsf, model_dir, tmp_path, capsys):
    """The command line's --device cpu and --threads N reach Lightning and torch (extract, then
    train on what it extracted); the old --accelerator still reads as --device."""
    import json

    import torch

    short = deepsf[(deepsf["split"] == "train") & deepsf["length"].between(30, 60)]
    folds = short["fold"].value_counts().index[:2]
    table = pd.concat([short[short["fold"] == f].head(3) for f in folds], ignore_index=True)
    table["split"] = ["train", "train", "valid"] * 2
    source = tmp_path / "mine.tsv"
    table[["id", "sequence", "fold", "split"]].to_csv(source, sep="\t", index=False)
    before = torch.get_num_threads()
    try:
        store = tmp_path / "mine.h5"
        assert cli.main(["extract", str(source), "--out", str(store), "--model", str(model_dir), "--device", "cpu",
                         "--threads", "1", "--quiet"]) == 0
        assert torch.get_num_threads() == 1
        assert cli.main(["extract", str(source), "--out", str(store), "--model", str(model_dir), "--accelerator", "cpu",
                         "--threads", "2", "--quiet"]) == 0
        assert torch.get_num_threads() == 2
        run = tmp_path / "run"
        assert cli.main(["train", str(source), "--store", str(store), "--out", str(run), "--max-epochs", "1",
                         "--device", "cpu", "--threads", "1", "--quiet"]) == 0
        assert torch.get_num_threads() == 1
        meta = json.loads((run / "model.json").read_text())
        assert meta["train"]["device"] == "cpu" and meta["train"]["threads"] == 1
        assert meta["plm"].startswith(f"offline copy {model_dir.resolve()} ")
    finally:
        torch.set_num_threads(before)
    capsys.readouterr()


def test_threads_and_device_reach_the_default_ensemble(tmp_path: Path, monkeypatch):
    from coevofold.training import mixture

    calls = {}
    monkeypatch.setattr(mixture, "train_ensemble", lambda store, table, out, members, fold_names=None:
                        calls.setdefault("members", members) and Path(out))
    assert cli.main(["train", "deepsf", "--store", "unused.h5", "--out", str(tmp_path / "d"), "--model-type", "default",
                     "--device", "cpu", "--threads", "3", "--quiet"]) == 0
    assert {(c.device, c.threads) for c in calls["members"].values()} == {("cpu", 3)}


def test_extract_include_writes_one_file_per_kind_in_bio_embeddings_layout(deepsf, model_dir, tmp_path, capsys):
    """--include mean per_tok contacts: one HDF5 per kind beside the store, a dataset per sequence
    with its FASTA id as ``original_id``, equal to what the store holds; contacts imply maps."""
    import h5py

    from coevofold.features import export, store

    table = deepsf[deepsf["split"] == "valid"].head(3)
    fasta = tmp_path / "three.fasta"
    fasta.write_text("".join(f">{i}\n{s}\n" for i, s in zip(table["id"], table["sequence"])))
    out = tmp_path / "three.h5"
    assert cli.main(["extract", str(fasta), "--out", str(out), "--model", str(model_dir), "--include", "mean",
                     "per_tok", "contacts", "--quiet"]) == 0
    printed = capsys.readouterr().out
    rows = store.read_rows(out, residues=True)
    assert store.read_settings(out)["maps"] == "layers"
    for kind in export.KINDS:
        path = export.export_path(out, kind)
        assert path.name == f"three.{kind}.h5" and f"{path}: {kind}, " in printed and "KB per protein" in printed
        with h5py.File(path) as f:
            assert [f[str(n)].attrs["original_id"] for n in range(len(f))] == rows.ids  # the store's order
            assert sorted(rows.ids) == sorted(table["id"])
            for n, sequence in enumerate(rows.sequences):
                array = f[str(n)][()]
                if kind == "mean":
                    assert np.array_equal(array, rows.mean[n])
                elif kind == "per_tok":
                    assert array.shape == (len(sequence), 320) and np.array_equal(array, rows.residues[n])
                else:
                    assert array.shape == (len(sequence),) * 2 and np.array_equal(array, array.T)
                    assert 0 <= array.min() and array.max() <= 1
    plain = tmp_path / "plain.h5"
    assert cli.main(["extract", str(fasta), "--out", str(plain), "--model", str(model_dir), "--quiet"]) == 0
    with pytest.raises(CoevofoldError, match="holds no contact maps"):
        export.export(plain, ["contacts"])
    assert not export.export_path(plain, "contacts").exists()
