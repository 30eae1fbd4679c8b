"""The command line as a new user meets it: every --help works, odd inputs end in a message."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from coevofold import cli


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
    done = subprocess.run([sys.executable, "-m", "coevofold.cli", "--help"], capture_output=True, text=True, timeout=120)
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
    """--calibrate runs what quickstart runs after training (homology, calibration) on the same
    folder, table and members; without the default ensemble it is refused in one line."""
    from coevofold import benchmark, training

    calls = {}

    def fake_train(store, table, out, members, fold_names=None):
        calls["trained"] = (Path(out), set(members))
        return Path(out)

    def fake_prepare(model_dir, store_path, table, members, name, progress=True):
        calls["prepared"] = (model_dir, set(members), name, len(table))
        return {}

    monkeypatch.setattr(training, "train_ensemble", fake_train)
    monkeypatch.setattr(benchmark, "prepare_system", fake_prepare)
    out = tmp_path / "default"
    args = ["train", "deepsf", "--store", "unused.h5", "--out", str(out), "--model-type", "default", "--quiet"]
    assert cli.main(args) == 0 and "prepared" not in calls
    assert cli.main([*args, "--calibrate"]) == 0
    members = set(training.default_members(False))
    assert calls["trained"] == (out, members) and calls["prepared"][:3] == (out, members, "deepsf")
    assert "homology transfer and calibration prepared" in capsys.readouterr().out
    assert cli.main(["train", "deepsf", "--store", "unused.h5", "--out", str(out), "--calibrate"]) == 1
    assert "--calibrate prepares the default ensemble" in capsys.readouterr().err
