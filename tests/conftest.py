"""Shared fixtures: the real data and model in ../shared, and small hand-made FASTA files."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pandas as pd
import pytest

from coevofold.data import tables
from coevofold.features import extraction, pretrained
from coevofold.files import data_root
from coevofold.system import homology, preparation
from coevofold.training import recipe, trainer

#: pLM window of the small test model: long chains are windowed in seconds.
WINDOW = 64


@pytest.fixture(scope="session")
def shared_data() -> Path:
    return data_root()


@pytest.fixture(scope="session")
def model_dir(shared_data: Path) -> Path:
    return pretrained.offline_copy_dir()


@pytest.fixture
def write_fasta(tmp_path: Path):
    """Write text (str or bytes) to a FASTA file in tmp_path and return its path."""

    def write(text: str | bytes, name: str = "input.fasta") -> Path:
        path = tmp_path / name
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text)
        return path

    return write


# ------------------------------------------- a small real model (prediction, serve)


@pytest.fixture(scope="session")
def deepsf() -> pd.DataFrame:
    return tables.load("deepsf")


@pytest.fixture(scope="session")
def plm(model_dir: Path) -> pretrained.ProteinLM:
    loaded = pretrained.load(str(model_dir))
    loaded.window = WINDOW
    return loaded


@pytest.fixture(scope="session")
def small_run(tmp_path_factory, deepsf: pd.DataFrame, plm: pretrained.ProteinLM) -> tuple[Path, Path, pd.DataFrame]:
    """12 short domains of 3 folds (3 train + 1 valid each), 1 epoch: a real, if useless, model.

    Two test_family-like rows per fold (held-out members of the same folds) are in the table and
    the store too, so the benchmark's homology-first row can be computed on them.
    """
    short = deepsf[(deepsf["split"] == "train") & deepsf["length"].between(40, 90)]
    folds = short["fold"].value_counts().index[:3]
    table = pd.concat([short[short["fold"] == f].head(6) for f in folds], ignore_index=True)
    table["split"] = ["train", "train", "train", "valid", "test_family", "test_family"] * 3
    root = tmp_path_factory.mktemp("prediction")
    config = extraction.FeatureConfig(stride=WINDOW // 2)
    store_path = extraction.extract(table, root / "extraction.h5", config, extraction.RunConfig(progress=False), plm=plm)
    model = trainer.train(store_path, table, root / "model", trainer.TrainConfig(max_epochs=1, progress=False),
                           fold_names={f: f"fold {f}" for f in folds})
    return model, store_path, table


@pytest.fixture(scope="session")
def trained(small_run) -> Path:
    return small_run[0]


@pytest.fixture(scope="session")
def prepared(small_run, tmp_path_factory) -> Path:
    """A copy of the small model folder with homology files (threshold chosen on its 3 valid rows)."""
    model, store_path, table = small_run
    folder = shutil.copytree(model, tmp_path_factory.mktemp("prepared") / "model", ignore=shutil.ignore_patterns("checkpoints"))
    homology.fit_homology(folder, store_path, table, n_jobs=1, progress=False)
    return folder


def system_members() -> dict[str, trainer.TrainConfig]:
    """Two members of the default recipe, small enough for tests: the probe and a 2-epoch MLP
    (1 epoch from the proxy's weights)."""
    from dataclasses import replace

    members = recipe.default_members(progress=False)
    return {"probe": members["probe"], "mlp": replace(members["mlp"], max_epochs=2, warm_epochs=1)}


@pytest.fixture(scope="session")
def system_run(tmp_path_factory, deepsf: pd.DataFrame, plm: pretrained.ProteinLM):
    """The whole system on real data, small: 8 folds of short domains (up to 24 training domains
    per fold, their valid and test rows), the two :func:`system_members`, prepared as quickstart
    prepares the default (homology, templates, proxy, combiner, calibration).

    Returns (model folder, store, table, members, the test and valid rows' Smith-Waterman scores).
    """
    short = deepsf[deepsf["length"].between(40, 110)]
    train = short[short["split"] == "train"]
    many = train.groupby("fold")["superfamily"].nunique()
    folds = train[train["fold"].isin(many[many >= 2].index)]["fold"].value_counts().index[:8]
    picked = [train[train["fold"] == f].groupby("superfamily").head(8).head(24) for f in folds]
    others = short[(short["split"] != "train") & short["fold"].isin(folds)].groupby(["split", "fold"]).head(3)
    table = pd.concat([*picked, others], ignore_index=True)
    root = tmp_path_factory.mktemp("system")
    store_path = extraction.extract(table, root / "extraction.h5", extraction.FeatureConfig(stride=WINDOW // 2),
                                  extraction.RunConfig(progress=False), plm=plm)
    members = system_members()
    model = preparation.train_model(root / "model", store_path, table, members)
    alignment = preparation.prepare(model, store_path, table, members, "system-test", progress=False)
    return model, store_path, table, members, alignment


# ------------------------------------------------- the fault catalogue (tests/test_faults.py)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("faults", "the fault catalogue (tests/test_faults.py, marker 'faults')")
    group.addoption("--fault-kills", type=int, default=None,
                    help="SIGKILLs at random points of a real extraction (default: 10 with -m faults, else 1)")
    group.addoption("--fault-seed", type=int, default=0, help="seed of the kill points and of the generated sequences "
                    "(default: 0)")
    group.addoption("--fault-timeout", type=float, default=600, help="seconds before a fault counts as hung (default: 600)")
    group.addoption("--fault-model", default=None, help="pLM to use (default: $COEVOFOLD_MODEL, else "
                    "facebook/esm2_t6_8M_UR50D or its offline copy)")
    group.addoption("--fault-keep", action="store_true", help="keep the faults' work folder and print where it is")


@pytest.fixture(scope="session")
def fault_timeout(pytestconfig: pytest.Config) -> float:
    return pytestconfig.getoption("fault_timeout")


@pytest.fixture(scope="session")
def fault_context(pytestconfig: pytest.Config):
    """What the faults share (real inputs built once), in a work folder of their own."""
    import fault_catalogue

    kills = pytestconfig.getoption("fault_kills")
    if kills is None:
        kills = 10 if "faults" in (pytestconfig.getoption("markexpr") or "") else 1
    work = Path(tempfile.mkdtemp(prefix="coevofold-faults-"))
    keep = pytestconfig.getoption("fault_keep")
    try:
        yield fault_catalogue.Context(model=pretrained.resolve_model_name(pytestconfig.getoption("fault_model")),
                                      kills=kills, seed=pytestconfig.getoption("fault_seed"), work=work)
    finally:
        if keep:
            print(f"\nfaults' work folder kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


_FAULTS: dict[str, object] = {}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Collect each fault's outcome (or its error, as a loss) for the closing summary."""
    if "test_fault_is_survived[" not in report.nodeid or report.skipped:
        return
    outcome = dict(report.user_properties).get("fault_outcome")
    if outcome is not None:
        _FAULTS[report.nodeid] = outcome
    elif report.failed:
        _FAULTS.setdefault(report.nodeid, f"{report.nodeid.split('[', 1)[1][:-1]}: lost (error in {report.when})")


def pytest_terminal_summary(terminalreporter) -> None:
    """One line per fault tried, then 'N faults tried, N survived, N lost'."""
    if not _FAULTS:
        return
    import fault_catalogue

    terminalreporter.section("fault catalogue")
    outcomes = []
    for found in _FAULTS.values():
        if isinstance(found, fault_catalogue.Outcome):
            terminalreporter.write_line(found.line())
            outcomes.append(found)
        else:
            terminalreporter.write_line(str(found))
            outcomes.append(fault_catalogue.Outcome("", "", False, str(found)))
    terminalreporter.write_line(fault_catalogue.summary(outcomes))
