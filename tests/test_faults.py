"""The fault catalogue (tests/fault_catalogue.py): its judge on hand-made outcomes, then every
fault on the real code and the real small pLM, one pytest case each.

Faults carry the ``faults`` marker; the default suite runs all but the slow one (a killed
training run) with one kill of a real extraction. ``python -m pytest -m faults`` runs them all
(10 kills) and ends with ``N faults tried, N survived, N lost`` (tests/conftest.py).
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

import fault_catalogue as catalogue

SUMMARY = re.compile(r"(\d+) faults tried, \1 survived, 0 lost")


def _outcome(check, tmp_path: Path, timeout: float = 30.0) -> catalogue.Outcome:
    ctx = catalogue.Context(model="unused", kills=1, seed=0, work=tmp_path)
    return catalogue.run_fault(catalogue.Fault("test", "fault", check), ctx, tmp_path / "fault", timeout)


def _half_written(ctx, folder: Path) -> str:
    (folder / ".features.h5.x1y2.tmp").write_text("half a store")
    return "coevofold: error: looked fine"


@pytest.mark.parametrize(
    ("check", "reason"),
    [
        (lambda ctx, folder: catalogue.judge_refusal(0, [], "empty file"), "exited 0 on bad input"),
        (lambda ctx, folder: catalogue.judge_refusal(1, ["coevofold: error: f: empty file", "and more"], "empty file"),
         "printed 2 stderr lines"),
        (lambda ctx, folder: catalogue.judge_refusal(1, ["Traceback (most recent call last):", "ValueError: no"], "x"),
         "crashed with a traceback: ValueError: no"),
        (lambda ctx, folder: catalogue.judge_refusal(1, ["coevofold: error: something else"], "empty file"),
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
    outcome = _outcome(lambda ctx, folder: catalogue.judge_refusal(1, [line], "empty file"), tmp_path)
    assert outcome.survived and outcome.message == line


def test_summary_line():
    survived = catalogue.Outcome("fasta", "empty file", True, "coevofold: error: empty file")
    assert SUMMARY.fullmatch(catalogue.summary([survived, survived]))
    assert catalogue.summary([survived, catalogue.Outcome("x", "y", False, "hung")]) == "2 faults tried, 1 survived, 1 lost"


def test_help_documents_the_defaults():
    done = subprocess.run([sys.executable, "-m", "pytest", "--help"], capture_output=True, text=True,
                          cwd=Path(__file__).parent.parent)
    help_text = " ".join(done.stdout.split())  # argparse wraps lines
    assert "--fault-kills" in help_text and "(default: 10 with -m faults" in help_text and "(default: 600)" in help_text


def test_the_default_suite_covers_every_family():
    quick = [fault for fault in catalogue.CATALOGUE if not fault.slow]
    assert {fault.family for fault in quick} == set(catalogue.FAMILIES)


@pytest.mark.faults
@pytest.mark.parametrize(
    "number, fault",
    [pytest.param(n, fault, id=f"{fault.family}: {fault.name}", marks=[pytest.mark.slow] if fault.slow else [])
     for n, fault in enumerate(catalogue.CATALOGUE, start=1)],
)
def test_fault_is_survived(number, fault, fault_context, fault_timeout, record_property):
    """Every fault on the real code; the slow one (10 kills of a training run): ~4 min on 2 cores."""
    outcome = catalogue.run_fault(fault, fault_context, fault_context.work / "faults" / catalogue.folder_name(number, fault),
                                  fault_timeout)
    record_property("fault_outcome", outcome)
    assert outcome.survived, outcome.line()
