"""The fault catalogue: faults and bad inputs, tried against the real code (test helpers).

``tests/test_faults.py`` runs every :data:`CATALOGUE` entry as a pytest case (marker
``faults``): each stages its fault in a temporary folder of its own (bad FASTA, broken or
untrusted model files, a store killed mid-write, a full disk, a diverging or killed training
run, pickles that would run code) and runs the real ``coevofold`` command on it with the real
small pLM. ``python -m pytest -m faults`` runs them all and ends with one line per fault (family,
fault, outcome, what users saw) and ``N faults tried, N survived, N lost`` (tests/conftest.py).

A fault is *survived* when users get what the CLI promises: good input accepted and read right;
bad input refused with one ``coevofold: error:`` line and exit status 1; an interrupted job
resumed to the same result; nothing half-written left behind. It is *lost* when it crashed with
a traceback, hung, exited 0 on bad input, printed more than one error line or left half-written
output (a temporary file, or a file under its final name that does not read back).

Commands run in this process (``cli.main`` with stderr captured) where that is faithful, to keep
the catalogue fast; kills, the offline hub and memory use need processes of their own.
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import io
import json
import os
import pickle
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from unittest import mock

import h5py
import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file

from coevofold.app import cli
from coevofold.data import tables
from coevofold.errors import CoevofoldError
from coevofold.features import extraction, pretrained, store
from coevofold.features.coevolution import window_starts
from coevofold.training import checkpoint, trainer

ERROR_PREFIX = "coevofold: error: "
#: peak memory a 50,000-record FASTA may add while it is read.
MEMORY_LIMIT_MB = 500
#: seconds a hub id may take to fail without network.
OFFLINE_LIMIT_S = 10
#: one protein per batch and per part, on the CPU: the settings of every extraction here, so
#: killed and uninterrupted runs store the same values bit for bit.
ONE_AT_A_TIME = extraction.RunConfig(max_tokens=1, part_size=1, device="cpu", progress=False)
#: the training run of every fault: the killed one must end as this does uninterrupted.
TRAIN = trainer.TrainConfig(max_epochs=3, progress=False)


class Lost(Exception):
    """A fault the code did not survive; the message says how."""


class _Hung(BaseException):
    """Raised by the watchdog; a BaseException so that ``except Exception`` in the code under test
    cannot swallow it."""


# ------------------------------------------------------------------------------------ context


@dataclass
class Context:
    """What faults share: settings, and real inputs built once, on first use, in ``work``."""

    model: str
    kills: int
    seed: int
    work: Path

    @cached_property
    def plm(self) -> pretrained.ProteinLM:
        return pretrained.load(self.model)

    @cached_property
    def table(self) -> pd.DataFrame:
        """12 short real DeepSF domains of its 3 largest folds: 3 train and 1 valid each."""
        deepsf = tables.load("deepsf")
        short = deepsf[(deepsf["split"] == "train") & deepsf["length"].between(40, 90) & deepsf["family"].notna()]
        folds = short["fold"].value_counts().index[:3]
        table = pd.concat([short[short["fold"] == fold].head(4) for fold in folds], ignore_index=True)
        return table.assign(split=["train", "train", "train", "valid"] * 3)

    @cached_property
    def fasta(self) -> Path:
        """The domains as users give them to the CLI: a FASTA with SCOP label and split."""
        path = self.work / "domains.fasta"
        path.write_text("".join(f">{r.id} {r.family} split={r.split}\n{r.sequence}\n" for r in self.table.itertuples()))
        return path

    @cached_property
    def threads(self) -> int:
        """This process's torch threads: child processes get as many, so their floats agree."""
        return torch.get_num_threads()

    @cached_property
    def feature_store(self) -> Path:
        """The domains' features, extracted here as the CLI runs below do (see :data:`ONE_AT_A_TIME`)."""
        path = self.work / "extraction.h5"
        with _quiet():
            extraction.extract(self.fasta, path, extraction.FeatureConfig(), ONE_AT_A_TIME, plm=self.plm)
        return path

    @cached_property
    def trained(self) -> Path:
        """A model trained uninterrupted with :data:`TRAIN` on the feature store."""
        run_dir = self.work / "trained"
        with _quiet():
            trainer.train(self.feature_store, tables.load(self.fasta), run_dir, TRAIN)
        return run_dir

    @property
    def extract_flags(self) -> list[str]:
        """``coevofold extract`` options equal to :data:`ONE_AT_A_TIME` in this process."""
        return ["--model", self.model, "--max-tokens", "1", "--part-size", "1", "--device", "cpu",
                "--threads", str(self.threads), "--quiet"]

    def train_args(self, feature_store: Path, run_dir: Path) -> list[str | Path]:
        """``coevofold train`` on the domains, with options equal to :data:`TRAIN` in this process."""
        return ["train", self.fasta, "--store", feature_store, "--out", run_dir, "--max-epochs", str(TRAIN.max_epochs),
                "--threads", str(self.threads), "--quiet"]

    def model_folder(self, folder: Path) -> Path:
        """A pLM folder with the real config and tokenizer and no weights yet."""
        folder.mkdir()
        self.plm.model.config.save_pretrained(folder)
        self.plm.tokenizer.save_pretrained(folder)
        return folder


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Keep the chatter of building shared inputs (Lightning, warnings) out of the report."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield


# ------------------------------------------------------------------------------- judging


def _cli(*args: str | os.PathLike) -> tuple[int, list[str]]:
    """Run ``coevofold ARGS`` in this process: its exit status and non-empty stderr lines.

    The CLI turns only a CoevofoldError into exit status 1; anything else propagates, and the
    runner records the fault as a traceback.
    """
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        code = cli.main([os.fspath(a) for a in args])
    return code, [line for line in err.getvalue().splitlines() if line.strip()]


def _cli_command(*args: str | os.PathLike) -> list[str]:
    """The command line running ``coevofold ARGS`` in a fresh process."""
    return [sys.executable, "-m", "coevofold.app.cli", *(os.fspath(a) for a in args)]


def _run_process(command: list[str], env: dict[str, str] | None = None) -> tuple[int, list[str], str]:
    """Run a process to its end: exit status, non-empty stderr lines and stdout."""
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    return result.returncode, [line for line in result.stderr.splitlines() if line.strip()], result.stdout


def judge_refusal(code: int, lines: list[str], expect: str) -> str:
    """A refusal is survived with exit status 1 and one error line that names ``expect``."""
    if any(line.startswith("Traceback") for line in lines):
        raise Lost(f"crashed with a traceback: {lines[-1]}")
    if code == 0:
        raise Lost("exited 0 on bad input")
    if len(lines) != 1 or not lines[0].startswith(ERROR_PREFIX):
        raise Lost(f"printed {len(lines)} stderr lines: {' | '.join(lines[:3])[:300]}")
    if expect not in lines[0]:
        raise Lost(f"message does not say {expect!r}: {lines[0]}")
    return lines[0]


def _refused(args: list[str | os.PathLike], expect: str, *absent: Path) -> str:
    """Run a command on bad input in this process: it must refuse (see :func:`judge_refusal`)
    and create none of ``absent``."""
    code, lines = _cli(*args)
    message = judge_refusal(code, lines, expect)
    _check_absent(*absent)
    return message


def _check_absent(*paths: Path) -> None:
    for path in paths:
        if path.exists():
            raise Lost(f"left {path.name} behind")


def _check_unchanged(path: Path, before: bytes) -> None:
    if not path.exists() or path.read_bytes() != before:
        raise Lost(f"{path.name} was changed or removed by a refused command")


def _same_rows(a: store.FeatureRows, b: store.FeatureRows) -> bool:
    """Exactly equal features, protein by protein."""
    return (a.ids == b.ids and a.sequences == b.sequences
            and all(np.array_equal(getattr(a, name), getattr(b, name)) for name in ("maps", "embedding", "mean"))
            and len(a.contacts) == len(b.contacts)
            and all(np.array_equal(x, y) for x, y in zip(a.contacts, b.contacts))
            and len(a.residues) == len(b.residues)
            and all(np.array_equal(x, y) for x, y in zip(a.residues, b.residues)))


# ---------------------------------------------------------------------------------- running


@dataclass(frozen=True)
class Fault:
    """One entry of the catalogue: ``check`` stages it in a folder, runs the code, and returns
    the line users saw, or raises :class:`Lost`."""

    family: str
    name: str
    check: Callable[[Context, Path], str]
    #: marked ``slow`` too: outside the default suite, run by ``-m faults``.
    slow: bool = False


@dataclass(frozen=True)
class Outcome:
    """What happened to one fault, as reported on its line."""

    family: str
    fault: str
    survived: bool
    message: str

    def line(self) -> str:
        return f"{self.family:<10} {self.fault:<42} {'survived' if self.survived else 'lost':<8}  {self.message}"


@contextlib.contextmanager
def _watchdog(seconds: float) -> Iterator[None]:
    """Raise :class:`_Hung` in the main thread after ``seconds``; an outer alarm (pytest-timeout)
    is put back afterwards with what it had left."""

    def hung(signum, frame):
        raise _Hung

    previous = signal.signal(signal.SIGALRM, hung)
    outer, _ = signal.setitimer(signal.ITIMER_REAL, seconds)
    started = time.monotonic()
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if outer:
            signal.setitimer(signal.ITIMER_REAL, max(outer - (time.monotonic() - started), 1e-3))


def run_fault(fault: Fault, ctx: Context, folder: Path, timeout: float) -> Outcome:
    """Stage and judge one fault in ``folder``; whatever happens, return its outcome."""
    folder.mkdir(parents=True)
    try:
        with _watchdog(timeout):
            message = fault.check(ctx, folder)
        leftovers = sorted(str(p.relative_to(folder)) for p in folder.rglob(".*.tmp"))
        if leftovers:
            raise Lost(f"left half-written {leftovers[0]} ({len(leftovers)} temporary file(s))")
    except Lost as exc:
        return Outcome(fault.family, fault.name, False, str(exc))
    except _Hung:
        return Outcome(fault.family, fault.name, False, f"hung: no result after {timeout:g} s")
    except Exception as exc:  # the code under test crashed: what a user would see as a traceback
        first = (str(exc).splitlines() or [""])[0][:200]
        return Outcome(fault.family, fault.name, False, f"crashed with a traceback: {type(exc).__name__}: {first}")
    return Outcome(fault.family, fault.name, True, message)


def folder_name(number: int, fault: Fault) -> str:
    """The work folder of the ``number``-th fault: readable when a run is kept for inspection."""
    slug = "".join(c if c.isalnum() else "-" for c in fault.name.lower())[:40]
    return f"{number:02d}-{fault.family}-{slug}"


def summary(outcomes: list[Outcome]) -> str:
    lost = sum(not outcome.survived for outcome in outcomes)
    return f"{len(outcomes)} faults tried, {len(outcomes) - lost} survived, {lost} lost"


# ------------------------------------------------------------------------------- bad FASTA


def _bad_fasta(content: str | bytes, expect: str) -> Callable[[Context, Path], str]:
    """``coevofold extract`` on a FASTA holding ``content``: refused before any output."""

    def check(ctx: Context, folder: Path) -> str:
        path = folder / "input.fasta"
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        out = folder / "extraction.h5"
        return _refused(["extract", path, "--out", out, "--model", ctx.model, "--quiet"], expect,
                        out, store.parts_dir(out))

    return check


def _garbage(seed: int, size: int = 4096) -> bytes:
    return random.Random(seed).randbytes(size)


def _windows_line_endings(ctx: Context, folder: Path) -> str:
    text = ">d1 a.1.1.1 split=train\nMKTAYIAK\nQRQISF\n>d2 b.1.1.1\nacde\n"
    unix, windows = folder / "unix.fasta", folder / "windows.fasta"
    unix.write_bytes(text.encode())
    windows.write_bytes(text.replace("\n", "\r\n").encode())
    expected, table = tables.load(unix), tables.load(windows)
    if not table.equals(expected):
        raise Lost(f"CRLF file read differently: {table[['id', 'sequence', 'fold']].to_dict('records')}")
    return f"accepted: {len(table)} records read exactly as with Unix line endings"


def _huge_sequence(ctx: Context, folder: Path) -> str:
    """Read and planned in windows, but refused before the model runs: its stitched maps would
    need hundreds of GB (see :data:`coevofold.features.extraction.MAX_LENGTH`)."""
    length = 100_000
    sequence = "".join(random.Random(ctx.seed).choices(tables.STANDARD_RESIDUES, k=length))
    path = folder / "huge.fasta"
    path.write_text(">huge\n" + "\n".join(sequence[i : i + 60] for i in range(0, length, 60)) + "\n")
    if tables.load(path)["sequence"].tolist() != [sequence]:
        raise Lost("the 100,000-residue record was read wrongly")
    window, stride, run = ctx.plm.window, extraction.FeatureConfig().stride, extraction.RunConfig()
    starts = window_starts(length, window, stride)
    covered = np.zeros(length, dtype=bool)
    for start in starts:
        covered[start : start + window] = True
    if not covered.all():
        raise Lost(f"windows leave {int((~covered).sum())} residues out")
    if [0] not in extraction.make_batches([length, 60, 80], window, stride, run.max_tokens, run.max_pairs):
        raise Lost("the long chain is not a batch of its own")
    chunks = [min(window, length - start) for start in starts]
    passes = extraction.window_passes(chunks, run.max_pairs)
    largest = max(len(chunks[p]) for p in passes) * (max(chunks) + 2) ** 2
    if largest > run.max_pairs:
        raise Lost(f"a forward pass holds {largest:,} attention pairs, over the {run.max_pairs:,} budget")
    out = folder / "extraction.h5"
    message = _refused(["extract", path, "--out", out, "--model", ctx.model, "--quiet"], "100,000 residues",
                       out, store.parts_dir(out))
    return f"{message} [read, and planned as {len(starts)} windows in {len(passes)} passes within the budget]"


def _many_records(ctx: Context, folder: Path) -> str:
    """50,000 tiny records, read while tracemalloc records the peak memory they take.

    tracemalloc sees every Python and NumPy allocation of the load, and nothing else, which
    the process's peak RSS (already raised by the imports) does not tell apart.
    """
    rng = random.Random(ctx.seed)
    path = folder / "many.fasta"
    records = 50_000
    with open(path, "w") as handle:
        for n in range(records):
            handle.write(f">r{n} tiny record\n{''.join(rng.choices(tables.STANDARD_RESIDUES, k=rng.randint(5, 30)))}\n")
    tracemalloc.start()
    try:
        started = time.monotonic()
        read = len(tables.load(path))
        seconds, (_, peak) = time.monotonic() - started, tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    if read != records:
        raise Lost(f"read {read:,} of {records:,} records")
    if peak / 2**20 > MEMORY_LIMIT_MB:
        raise Lost(f"reading took {peak / 2**20:.0f} MB at its peak, over {MEMORY_LIMIT_MB} MB")
    return (f"accepted: {records:,} records in {seconds:.1f} s, peak memory {peak / 2**20:.0f} MB "
            f"(tracemalloc; limit {MEMORY_LIMIT_MB} MB)")


# ----------------------------------------------------------------------------------- model


def _bad_model(stage: Callable[[Context, Path], Path], expect: str) -> Callable[[Context, Path], str]:
    """``coevofold extract --model FOLDER`` with a model folder made by ``stage``: refused."""

    def check(ctx: Context, folder: Path) -> str:
        model = stage(ctx, folder / "model")
        out = folder / "extraction.h5"
        return _refused(["extract", ctx.fasta, "--out", out, "--model", model, "--quiet"], expect,
                        out, store.parts_dir(out))

    return check


def _empty_folder(ctx: Context, folder: Path) -> Path:
    folder.mkdir()
    return folder


def _gpt2_config(ctx: Context, folder: Path) -> Path:
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    return folder


def _garbage_weights(ctx: Context, folder: Path) -> Path:
    (ctx.model_folder(folder) / "pytorch_model.bin").write_bytes(_garbage(ctx.seed))
    return folder


def _truncated_weights(ctx: Context, folder: Path) -> Path:
    ctx.model_folder(folder)
    ctx.plm.model.save_pretrained(folder)
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    return folder


_TIMED_CLI = """
import sys, time
from coevofold.app import cli  # the heavy imports, before the clock starts
from coevofold.features import extraction
started = time.monotonic()
code = cli.main(sys.argv[1:])
print(f"{time.monotonic() - started:.2f}")
sys.exit(code)
"""


def _hub_offline(ctx: Context, folder: Path) -> str:
    """A hub id that is not cached, with the hub switched off: a fresh process, so that
    huggingface_hub reads the environment at import as it does for users."""
    hub_vars = ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "TRANSFORMERS_CACHE", pretrained.MODEL_ENV)
    env = {key: value for key, value in os.environ.items() if key not in hub_vars}
    env.update(HF_HUB_OFFLINE="1", HF_HOME=str(folder / "empty-hf-home"))
    out = folder / "extraction.h5"
    code, lines, stdout = _run_process([sys.executable, "-c", _TIMED_CLI, "extract", str(ctx.fasta), "--out", str(out),
                                        "--model", "facebook/esm2_t12_35M_UR50D", "--quiet"], env)
    message = judge_refusal(code, lines, "--model")
    if pretrained.MODEL_ENV not in message:
        raise Lost(f"message does not name {pretrained.MODEL_ENV}: {message}")
    seconds = float(stdout.split()[-1])
    if seconds >= OFFLINE_LIMIT_S:
        raise Lost(f"took {seconds:.1f} s to fail (limit {OFFLINE_LIMIT_S} s): {message}")
    _check_absent(out, store.parts_dir(out))
    return f"{message} [after {seconds:.1f} s]"


# ------------------------------------------------------------------------------ read-only


def _can_write(folder: Path) -> bool:
    try:
        tempfile.TemporaryFile(dir=folder).close()
    except OSError:
        return False
    return True


@contextlib.contextmanager
def _read_only_location(folder: Path) -> Iterator[tuple[Path, str]]:
    """A folder to write output into that nobody here may create files in, and how it was made.

    ``chmod 0o500`` blocks everyone but root, who ignores permission bits; as root, a folder
    under ``/sys``, where the kernel lets no one create files, stands in.
    """
    locked = folder / "read-only"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if not _can_write(locked):
            yield locked / "out", "a folder chmod 0o500"
        elif not _can_write(Path("/sys")):
            yield Path("/sys/coevofold-selfcheck/out"), "/sys, as root ignores chmod"
        else:
            raise Lost("cannot stage a read-only location: root here ignores chmod and may write in /sys")
    finally:
        locked.chmod(0o700)


def _read_only(command: Callable[[Context, Path], list[str | os.PathLike]]) -> Callable[[Context, Path], str]:
    """Run the command made by ``command(ctx, output)`` with its output in a read-only place."""

    def check(ctx: Context, folder: Path) -> str:
        with _read_only_location(folder) as (output, how):
            message = _refused(command(ctx, output), "cannot write here")
        return f"{message} [read-only: {how}]"

    return check


# ------------------------------------------------------------------------------ feature store


def _finished_files_read(out: Path) -> None:
    """Every store or part under its final name must read back: only temporary names may be partial."""
    for path in [out, *sorted(store.parts_dir(out).glob("*.h5"))]:
        if path.exists():
            try:
                store.read_ids(path)
            except CoevofoldError as exc:
                raise Lost(f"a kill left a damaged {path.name}: {exc}") from None


#: where a kill lands, drawn by the seed: inside a part file's write, right after the run's
#: k-th finished part (k = 1..3), or inside the merge that writes the store.
KILL_POINTS = ("inside a part write", "after a finished part", "inside the merge")


def _kill_at(command: list[str], out: Path, point: str, after_parts: int) -> bool:
    """Start ``command`` and SIGKILL it the moment it reaches ``point`` (polled every ms).

    Returns False when it finished first (exit status 0), which completes an extraction.
    Temporary files left by earlier kills are ignored: the run removes them as it starts.
    """
    parts = store.parts_dir(out)
    stale = set(out.parent.rglob(".*.tmp"))
    finished = set(parts.glob("*.h5"))

    def reached() -> bool:
        if point == "inside a part write":
            return bool(set(parts.glob(".*.tmp")) - stale)
        if point == "inside the merge":
            return bool(set(out.parent.glob(f".{out.name}.*.tmp")) - stale)
        return len(set(parts.glob("*.h5")) - finished) >= after_parts

    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        while process.poll() is None and not reached():
            time.sleep(0.001)
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
    finally:
        process.kill()
        _, err = process.communicate()
    if process.returncode == -signal.SIGKILL:
        return True
    if process.returncode != 0:
        raise Lost(f"a resumed extraction failed: {(err.strip().splitlines() or ['?'])[-1]}")
    return False


def _extract_killed(ctx: Context, folder: Path) -> str:
    """SIGKILL ``coevofold extract`` at seeded random points and resume each time; every
    extraction completed this way must store what an uninterrupted run stores, bit for bit."""
    reference = store.read_rows(ctx.feature_store, residues=True)
    out = folder / "extraction.h5"
    command = _cli_command("extract", ctx.fasta, "--out", out, *ctx.extract_flags)
    rng = random.Random(ctx.seed)
    kills = {point: 0 for point in KILL_POINTS}
    runs = completed = 0
    while sum(kills.values()) < ctx.kills:
        runs += 1
        if runs > 3 * ctx.kills + 3:
            raise Lost(f"only {sum(kills.values())} of {ctx.kills} kills landed in {runs - 1} runs")
        point = rng.choice(KILL_POINTS)
        if _kill_at(command, out, point, rng.randint(1, 3)):
            kills[point] += 1
            _finished_files_read(out)
        else:  # resumed through earlier kills to the end: check it, then start over
            if not _same_rows(store.read_rows(out, reference.ids, residues=True), reference):
                raise Lost(f"a store resumed after {sum(kills.values())} kills differs from an uninterrupted run")
            completed += 1
            out.unlink()
    code, lines, _ = _run_process(command)
    if code != 0:
        raise Lost(f"the last resume failed: {lines[-1] if lines else code}")
    if store.parts_dir(out).exists() or not _same_rows(store.read_rows(out, reference.ids, residues=True), reference):
        raise Lost(f"a store resumed after {sum(kills.values())} kills differs from an uninterrupted run")
    landed = ", ".join(f"{n} {point}" for point, n in kills.items() if n)
    return (f"{sum(kills.values())} kills ({landed}) in {runs + 1} runs, {completed + 1} extraction(s) resumed "
            "to stores equal to an uninterrupted run's (np.array_equal)")


def _truncated_store(ctx: Context, folder: Path) -> str:
    whole = ctx.feature_store.read_bytes()
    cut = folder / "extraction.h5"
    cut.write_bytes(whole[: len(whole) // 2])
    before = cut.read_bytes()
    message = _refused(["extract", ctx.fasta, "--out", cut, *ctx.extract_flags], "unreadable or truncated")
    _check_unchanged(cut, before)
    return message


def _other_settings(ctx: Context, folder: Path) -> str:
    made = shutil.copy(ctx.feature_store, folder / "extraction.h5")
    before = made.read_bytes()
    message = _refused(["extract", ctx.fasta, "--out", made, *ctx.extract_flags, "--grid", "16"],
                       "grid: 32 there, 16 now")
    _check_unchanged(made, before)
    return message


@contextlib.contextmanager
def _full_disk(name_start: str) -> Iterator[None]:
    """A disk that fills up midway through HDF5 files whose name starts with ``name_start``:
    three datasets reach the file, the fourth raises ENOSPC as h5py does on a full disk."""
    create = h5py.Group.create_dataset

    def create_until_full(group: h5py.Group, *args, **kwargs):
        if Path(group.file.filename).name.startswith(name_start) and len(group.file) >= 3:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return create(group, *args, **kwargs)

    with mock.patch.object(h5py.Group, "create_dataset", create_until_full):
        yield


def _disk_full_part(ctx: Context, folder: Path) -> str:
    out = folder / "extraction.h5"
    with _full_disk(".part-"):
        message = _refused(["extract", ctx.fasta, "--out", out, *ctx.extract_flags], "No space left on device", out)
    parts = sorted(store.parts_dir(out).glob("*.h5"))
    if parts:
        raise Lost(f"left {parts[0].name} behind")
    return f"{message} [simulated: h5py raises ENOSPC at the 4th dataset]"


def _disk_full_merge(ctx: Context, folder: Path) -> str:
    out = folder / "extraction.h5"
    with _full_disk(f".{out.name}."):
        message = _refused(["extract", ctx.fasta, "--out", out, *ctx.extract_flags], "No space left on device", out)
    parts = list(store.parts_dir(out).glob("*.h5"))
    if len(parts) != len(ctx.table):
        raise Lost(f"{len(parts)} of {len(ctx.table)} finished parts kept")
    code, lines = _cli("extract", ctx.fasta, "--out", out, *ctx.extract_flags)
    if code != 0 or not _same_rows(store.read_rows(out, ctx.table["id"].tolist(), residues=True),
                                   store.read_rows(ctx.feature_store, ctx.table["id"].tolist(), residues=True)):
        raise Lost(f"re-running once space is back did not complete the store: {lines[-1:] or code}")
    return f"{message} [simulated: ENOSPC midway through the store; parts kept, re-run completes it]"


# ------------------------------------------------------------------------------- training


def _curves(run_dir: Path) -> tuple[dict[int, tuple[float, float]], dict[int, float]]:
    """(val_acc, val_loss) and train_loss per epoch, from a run's metrics.csv."""
    metrics = pd.read_csv(run_dir / "metrics.csv")
    val, train = metrics.dropna(subset=["val_acc"]), metrics.dropna(subset=["train_loss"])
    return (dict(zip(val["epoch"], zip(val["val_acc"], val["val_loss"]))),
            dict(zip(train["epoch"], train["train_loss"])))


def _training_killed(ctx: Context, folder: Path) -> str:
    """SIGKILL ``coevofold train`` as soon as its first ``last.ckpt`` appears, then resume."""
    reference = ctx.trained
    run_dir = folder / "run"
    command = _cli_command(*ctx.train_args(ctx.feature_store, run_dir))
    last = run_dir / "checkpoints" / "last.ckpt"
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while process.poll() is None and not last.exists():
            time.sleep(0.005)
        process.send_signal(signal.SIGKILL)
    finally:
        process.kill()
        process.wait()
    if process.returncode != -signal.SIGKILL or (run_dir / checkpoint.MODEL_META).exists():
        raise Lost(f"training ended (exit status {process.returncode}) before the kill")
    code, lines, _ = _run_process(command)
    if code != 0:
        raise Lost(f"resuming failed: {lines[-1] if lines else code}")
    metas = [json.loads((d / checkpoint.MODEL_META).read_text()) for d in (run_dir, reference)]
    weights = [load_file(str(d / checkpoint.MODEL_WEIGHTS)) for d in (run_dir, reference)]
    if metas[0]["best_val_acc"] != metas[1]["best_val_acc"] or weights[0].keys() != weights[1].keys() or not all(
            torch.equal(weights[0][k], weights[1][k]) for k in weights[0]):
        raise Lost("the resumed run's best_val_acc or weights differ from an uninterrupted run's")
    # the validation curve fingerprints every epoch: best weights alone may come from before the kill
    (val, train), (val_ref, train_ref) = _curves(run_dir), _curves(reference)
    if val != val_ref or any(train_ref.get(epoch) != loss for epoch, loss in train.items()):
        raise Lost(f"the resumed run's learning curves differ from an uninterrupted run's: {val} vs {val_ref}")
    unlogged = len(train_ref) - len(train)
    return (f"killed after the first checkpoint, resumed: best_val_acc ({metas[0]['best_val_acc']:.3f}), weights and "
            f"{len(val)}-epoch validation curve equal to an uninterrupted run's"
            + (f" (train_loss of {unlogged} epoch(s) was not logged before the kill)" if unlogged else ""))


def _nan_features(split: str) -> Callable[[Context, Path], str]:
    """Training on a store where one protein of ``split`` has NaN embeddings: refused, no model saved."""

    def check(ctx: Context, folder: Path) -> str:
        rows = store.read_rows(ctx.feature_store, residues=True)
        victim = ctx.table.loc[ctx.table["split"] == split, "id"].iloc[0]
        rows.embedding[rows.ids.index(victim)] = np.nan
        poisoned = folder / "nan.h5"
        store.write_file(poisoned, rows, store.read_settings(ctx.feature_store))
        run_dir = folder / "run"
        return _refused(ctx.train_args(poisoned, run_dir), f"features of '{victim}' are NaN",
                        run_dir / checkpoint.MODEL_WEIGHTS, run_dir / checkpoint.MODEL_META)

    return check


def _huge_learning_rate(ctx: Context, folder: Path) -> str:
    run_dir = folder / "run"
    return _refused([*ctx.train_args(ctx.feature_store, run_dir), "--lr", "1e9", "--max-epochs", "10"],
                    "training diverged", run_dir / checkpoint.MODEL_WEIGHTS, run_dir / checkpoint.MODEL_META)


def _bad_checkpoint(damage: Callable[[Path], None], expect: str) -> Callable[[Context, Path], str]:
    """Resume a finished run whose ``last.ckpt`` ``damage`` spoiled: refused, the saved model kept."""

    def check(ctx: Context, folder: Path) -> str:
        run_dir = shutil.copytree(ctx.trained, folder / "run")
        damage(run_dir / "checkpoints" / "last.ckpt")
        weights = (run_dir / checkpoint.MODEL_WEIGHTS).read_bytes()
        message = _refused(ctx.train_args(ctx.feature_store, run_dir), expect)
        _check_unchanged(run_dir / checkpoint.MODEL_WEIGHTS, weights)
        return message

    return check


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:1000])


# -------------------------------------------------------------------------- untrusted pickles


class _Payload:
    """Unpickling this creates ``marker``: a stand-in for an attacker's code in a checkpoint."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({os.fspath(self.marker)!r}, 'w').close()",)


#: how each kind of file is written with a payload, and loaded by code that trusts it.
_PICKLES: dict[str, tuple[Callable[[Path, object], None], Callable[[Path], object]]] = {
    "torch": (lambda path, obj: torch.save(obj, path), lambda path: torch.load(path, weights_only=False)),
    "pickle": (lambda path, obj: path.write_bytes(pickle.dumps(obj)), lambda path: pickle.loads(path.read_bytes())),
}


def _plant(kind: str, path: Path, folder: Path) -> Path:
    """Replace ``path`` by a pickle whose loading would create a marker file; return the marker.

    A copy is first loaded the trusting way, proving the payload live, so an absent marker
    afterwards means the code refused it, not that the payload was inert.
    """
    write, trusting_load = _PICKLES[kind]
    proof, proof_marker = folder / "proof.pickle", folder / "proof-marker"
    write(proof, {"state_dict": _Payload(proof_marker)})
    with contextlib.suppress(Exception):
        trusting_load(proof)
    if not proof_marker.exists():
        raise Lost("the planted payload does not run even when trusted: the check would prove nothing")
    proof.unlink()
    marker = folder / "marker-created-by-untrusted-code"
    write(path, {"state_dict": _Payload(marker)})
    return marker


def _untrusted(kind: str, target: Callable[[Context, Path], tuple[Path, list[str | os.PathLike]]],
               expect: str) -> Callable[[Context, Path], str]:
    """Plant a payload at the file ``target`` names, run its command: refused, and never run."""

    def check(ctx: Context, folder: Path) -> str:
        path, args = target(ctx, folder)
        marker = _plant(kind, path, folder)
        code, lines = _cli(*args)
        if marker.exists():
            raise Lost(f"the pickle in {path.name} was executed")
        return f"{judge_refusal(code, lines, expect)} [payload proven live; not run]"

    return check


def _resume_target(ctx: Context, folder: Path) -> tuple[Path, list[str | os.PathLike]]:
    run_dir = shutil.copytree(ctx.trained, folder / "run")
    return run_dir / "checkpoints" / "last.ckpt", ctx.train_args(ctx.feature_store, run_dir)


def _model_weights_target(ctx: Context, folder: Path) -> tuple[Path, list[str | os.PathLike]]:
    run_dir = shutil.copytree(ctx.trained, folder / "run", ignore=shutil.ignore_patterns("checkpoints"))
    return run_dir / checkpoint.MODEL_WEIGHTS, ["predict", ctx.fasta, "--checkpoint", run_dir, "--model", ctx.model,
                                              "--quiet"]


def _plm_weights_target(ctx: Context, folder: Path) -> tuple[Path, list[str | os.PathLike]]:
    model = ctx.model_folder(folder / "model")
    return model / "pytorch_model.bin", ["extract", ctx.fasta, "--out", folder / "extraction.h5", "--model", model,
                                         "--quiet"]


# ------------------------------------------------------------------------------- prediction


def _predict_args(ctx: Context, out: Path) -> list[str | os.PathLike]:
    return ["predict", ctx.fasta, "--checkpoint", ctx.trained, "--model", ctx.model, "--out", out, "--quiet"]


def _disk_full_predictions(ctx: Context, folder: Path) -> str:
    out = folder / "predictions.tsv"
    write_text = Path.write_text

    def half_then_full(path: Path, text: str, *args, **kwargs) -> int:
        write_text(path, text[: len(text) // 2], *args, **kwargs)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with mock.patch.object(Path, "write_text", half_then_full):
        message = _refused(_predict_args(ctx, out), "No space left on device", out)
    return f"{message} [simulated: ENOSPC after half the table]"


# -------------------------------------------------------------------------------- catalogue


def _extract_into(ctx: Context, out: Path) -> list[str | os.PathLike]:
    return ["extract", ctx.fasta, "--out", out / "extraction.h5", *ctx.extract_flags]


CATALOGUE: list[Fault] = [
    Fault("fasta", "invalid letter 'J'",
          _bad_fasta(">ok\nMKTAYIAKQR\n>bad\nMKTAJYIAKQR\n", "record 'bad': invalid residue 'J' at position 5")),
    Fault("fasta", "stop codon '*'", _bad_fasta(">ok\nMKTAYIAKQR\n>orf\nMKTAYIAK*\n", "invalid residue '*'")),
    Fault("fasta", "empty sequence", _bad_fasta(">empty\n>ok\nMKTAYIAKQR\n", "record 'empty': empty sequence")),
    Fault("fasta", "empty file", _bad_fasta("", "empty file")),
    Fault("fasta", "duplicate ids", _bad_fasta(">a\nMKTAYIAKQR\n>a\nMKTAYIAKQL\n", "record 'a': duplicate id")),
    Fault("fasta", "binary garbage (random bytes)", _bad_fasta(_garbage(0), "FASTA file")),
    Fault("fasta", "binary garbage after a header", _bad_fasta(b">a\n" + _garbage(1), "not a text FASTA file")),
    Fault("fasta", "gzip-compressed FASTA", _bad_fasta(gzip.compress(b">a\nMKTAYIAKQR\n"), "not a text FASTA file")),
    Fault("fasta", "Windows line endings (must be accepted)", _windows_line_endings),
    Fault("fasta", "100,000-residue sequence", _huge_sequence),
    Fault("fasta", "50,000 tiny records (memory)", _many_records),
    Fault("model", "missing directory", _bad_model(lambda ctx, folder: folder, "no such model folder")),
    Fault("model", "folder without config.json", _bad_model(_empty_folder, "not a Hugging Face model folder")),
    Fault("model", "wrong model type (gpt2)", _bad_model(_gpt2_config, "model type 'gpt2' is not supported")),
    Fault("model", "corrupted weights (garbage .bin)", _bad_model(_garbage_weights, "cannot load model weights")),
    Fault("model", "truncated weights (half a .safetensors)",
          _bad_model(_truncated_weights, "cannot load model weights")),
    Fault("model", "hub id, no network, empty HF_HOME", _hub_offline),
    Fault("store", "killed mid-write (SIGKILL), resumed", _extract_killed),
    Fault("store", "truncated store", _truncated_store),
    Fault("store", "store made with other settings", _other_settings),
    Fault("store", "read-only output location", _read_only(_extract_into)),
    Fault("store", "disk full while writing a part", _disk_full_part),
    Fault("store", "disk full while merging the store", _disk_full_merge),
    Fault("training", "killed (SIGKILL) and resumed", _training_killed, slow=True),
    Fault("training", "NaN features of a training protein", _nan_features("train")),
    Fault("training", "NaN features of a validation protein", _nan_features("valid")),
    Fault("training", "learning rate 1e9 (diverges)", _huge_learning_rate),
    Fault("training", "read-only run folder",
          _read_only(lambda ctx, out: ctx.train_args(ctx.feature_store, out / "run"))),
    Fault("training", "truncated last.ckpt", _bad_checkpoint(_truncate, "damaged or untrusted checkpoint")),
    Fault("training", "last.ckpt holding other tensors",
          _bad_checkpoint(lambda path: torch.save({"weights": torch.zeros(3)}, path),
                          "not a checkpoint of 'coevofold train'")),
    Fault("checkpoint", "pickle payload in last.ckpt (resume)",
          _untrusted("torch", _resume_target, "damaged or untrusted checkpoint")),
    Fault("checkpoint", "pickle as model.safetensors (predict)",
          _untrusted("pickle", _model_weights_target, "damaged model files")),
    Fault("checkpoint", "pickle payload in the pLM's .bin (extract)",
          _untrusted("torch", _plm_weights_target, "cannot load model weights")),
    Fault("predict", "read-only --out", _read_only(lambda ctx, out: _predict_args(ctx, out / "predictions.tsv"))),
    Fault("predict", "disk full while writing predictions", _disk_full_predictions),
]
FAMILIES = tuple(dict.fromkeys(fault.family for fault in CATALOGUE))
