"""The reliability self-check: its judge on hand-made outcomes, then its catalogue on the real code."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from coevofold import selfcheck

SUMMARY = re.compile(r"(\d+) faults tried, \1 survived, 0 lost")


def _outcome(check, tmp_path: Path, timeout: float = 30.0) -> selfcheck.Outcome:
    ctx = selfcheck.Context(model="unused", kills=1, seed=0, work=tmp_path)
    return selfcheck.run_fault(selfcheck.Fault("test", "fault", check), ctx, tmp_path / "fault", timeout)


def _half_written(ctx, folder: Path) -> str:
    (folder / ".features.h5.x1y2.tmp").write_text("half a store")
    return "coevofold: error: looked fine"


@pytest.mark.parametrize(
    ("check", "reason"),
    [
        (lambda ctx, folder: selfcheck.judge_refusal(0, [], "empty file"), "exited 0 on bad input"),
        (lambda ctx, folder: selfcheck.judge_refusal(1, ["coevofold: error: f: empty file", "and more"], "empty file"),
         "printed 2 stderr lines"),
        (lambda ctx, folder: selfcheck.judge_refusal(1, ["Traceback (most recent call last):", "ValueError: no"], "x"),
         "crashed with a traceback: ValueError: no"),
        (lambda ctx, folder: selfcheck.judge_refusal(1, ["coevofold: error: something else"], "empty file"),
         "message does not say 'empty file'"),
        (lambda ctx, folder: 1 / 0, "crashed with a traceback: ZeroDivisionError"),
        (lambda ctx, folder: time.sleep(5), "hung: no result after 0.5 s"),
        (_half_written, "left half-written .features.h5.x1y2.tmp"),
    ],
)
def test_the_judge_counts_every_kind_of_loss(tmp_path, check, reason):
    outcome = _outcome(check, tmp_path, timeout=0.5)
    assert not outcome.survived and reason in outcome.message
    assert " lost " in outcome.line()


def test_a_one_line_refusal_survives_with_the_users_line(tmp_path):
    line = "coevofold: error: f.fasta: empty file (no FASTA records)"
    outcome = _outcome(lambda ctx, folder: selfcheck.judge_refusal(1, [line], "empty file"), tmp_path)
    assert outcome.survived and outcome.message == line


def test_help_documents_the_defaults(capsys):
    with pytest.raises(SystemExit) as exit_:
        selfcheck.main(["--help"])
    assert exit_.value.code == 0
    help_text = capsys.readouterr().out
    assert "--quick" in help_text and "(default: 10)" in help_text and "(default: 600)" in help_text


def test_quick_catalogue_loses_nothing(capsys):
    """Every family on the real code, one kill of a real extraction: about a minute on 2 cores."""
    code = selfcheck.main(["--quick"])
    lines = capsys.readouterr().out.splitlines()
    assert code == 0 and SUMMARY.fullmatch(lines[-1]), "\n".join(lines)
    quick = [fault for fault in selfcheck.CATALOGUE if not fault.slow]
    assert lines[-1].startswith(f"{len(quick)} faults tried")
    assert {line.split()[0] for line in lines[:-1]} == set(selfcheck.FAMILIES)


@pytest.mark.slow  # 10 kills of a real extraction and a killed training run: about 4 minutes on 2 cores
def test_full_catalogue_loses_nothing(capsys):
    code = selfcheck.main([])
    lines = capsys.readouterr().out.splitlines()
    assert code == 0 and SUMMARY.fullmatch(lines[-1]), "\n".join(lines)
    assert lines[-1].startswith(f"{len(selfcheck.CATALOGUE)} faults tried")
