"""Where the work runs: ``--device auto|cpu|cuda[:N]`` and ``--threads N`` for every command.

One parser for extract, train, predict and serve, so they accept the same words and refuse a GPU
that is not there with the same line before any work starts: a run that asked for a GPU and
quietly fell back to the CPU would look like a hang, hours later. ``auto`` is the GPU when torch
sees one, else the CPU; ``cuda`` is the first visible GPU; ``cuda:N`` one given GPU.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from coevofold.errors import CoevofoldError

#: the words ``--device`` takes, for help texts.
DEVICE_HELP = "auto (a CUDA GPU when torch sees one, else the CPU), cpu, cuda (the first GPU) or cuda:N"


@dataclass(frozen=True)
class Device:
    """A resolved device: ``cpu``, or ``cuda`` with an optional GPU index."""

    type: str
    index: int | None = None

    def __str__(self) -> str:
        return self.type if self.index is None else f"{self.type}:{self.index}"

    @property
    def torch(self) -> torch.device:
        return torch.device(str(self))


def resolve(spec: str) -> Device:
    """The device ``spec`` names, or one line saying why it cannot be used here.

    ``gpu`` (Lightning's word, from the former ``--accelerator``) is read as ``cuda``.
    """
    word = spec.strip().lower()
    if word == "gpu":
        word = "cuda"
    if word == "auto":
        return Device("cuda") if torch.cuda.is_available() else Device("cpu")
    if word == "cpu":
        return Device("cpu")
    match = re.fullmatch(r"cuda(?::(\d+))?", word)
    if match is None:
        raise CoevofoldError(f"--device '{spec}': expected auto, cpu, cuda or cuda:N")
    if not torch.cuda.is_available():
        build = "a CPU-only build of torch" if torch.version.cuda is None else f"torch built for CUDA {torch.version.cuda}"
        raise CoevofoldError(f"--device {spec}: no CUDA GPU is visible here ({build}); use --device cpu or auto")
    index = None if match.group(1) is None else int(match.group(1))
    count = torch.cuda.device_count()
    if index is not None and index >= count:
        raise CoevofoldError(f"--device {spec}: only {count} CUDA GPU(s) are visible (cuda:0 to cuda:{count - 1})")
    return Device("cuda", index)


def lightning_devices(device: Device, count: int = 1) -> tuple[str, int | list[int]]:
    """Lightning's ``accelerator`` and ``devices`` for ``device`` run as ``count`` processes.

    ``cuda:N`` is one named GPU, so it takes one process; ``cuda`` or ``cpu`` with ``count``
    processes is Lightning's usual scale-out over the first ``count`` devices.
    """
    if count < 1:
        raise CoevofoldError(f"--devices must be at least 1, not {count}")
    if device.index is not None:
        if count != 1:
            raise CoevofoldError(f"--device {device} names one GPU; for {count} processes use --device cuda --devices {count}")
        return "gpu", [device.index]
    return ("gpu" if device.type == "cuda" else "cpu"), count


def set_threads(threads: int | None) -> None:
    """Use ``threads`` CPU threads for torch (None: torch's default, all cores)."""
    if threads is None:
        return
    if threads < 1:
        raise CoevofoldError(f"--threads must be at least 1, not {threads}")
    torch.set_num_threads(threads)
