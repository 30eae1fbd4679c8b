"""Feature extraction: proteins -> pLM attention -> compact co-evolution features in a store.

:func:`compute` turns a list of sequences into :class:`~coevofold.features.store.FeatureRows` (the
science, usable in memory); :func:`extract` runs it over a FASTA or table through Lightning's
predict loop so ``--device cuda --devices N`` scales out unchanged, each rank writing its own
part files, rank 0 merging them into the store. Re-running skips finished proteins.

Default settings and the measurements behind them are documented on :class:`FeatureConfig`.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from coevofold import devices
from coevofold.data import tables
from coevofold.errors import CoevofoldError
from coevofold.features import pretrained, store
from coevofold.features.coevolution import Stitcher, coevolution_maps, pool_grid, pool_positions, window_starts
from coevofold.files import cache_dir, writable_dir
from coevofold.logs import quiet_lightning


#: what ``FeatureConfig.maps`` may be.
MAP_KINDS = ("none", "layers", "heads")
#: what ``FeatureConfig.precision`` may be.
PRECISIONS = ("float32", "bfloat16")


def native_bfloat16() -> bool:
    """Whether this CPU has bfloat16 matrix instructions (AVX-512 BF16 or AMX tiles).

    Why it decides the default: with them, bfloat16 autocast runs the pLM 1.47x faster than
    float32 at no measured cost to the system; without them it is emulated, slower than float32.
    """
    return any(getattr(torch.cpu, check, lambda: False)() for check in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))


def default_precision() -> str:
    """:attr:`FeatureConfig.precision`'s default on this machine (see :func:`native_bfloat16`)."""
    return "bfloat16" if native_bfloat16() else "float32"


#: the precision of stores and models whose settings name none (made before the field existed):
#: :func:`settings_of` leaves it out, so their identity is unchanged.
UNRECORDED_PRECISION = "float32"


@dataclass(frozen=True)
class FeatureConfig:
    """What is stored per protein; every field is part of the store's identity.

    Defaults: no attention maps (``maps="none"``): the default system reads only embeddings
    (per-layer means, 32 segments, per-residue), so the pLM runs with fused (SDPA) attention,
    2x the proteins/s of the eager attention that maps need (45.5-49.4 vs 23.2-28.0 on 300
    DeepSF domains, 2 cores, ``benchmarks/extract.py``). ``maps="layers"`` adds the contact map
    (channel 0: the model's contact-regression output, best long-range top-L/5 precision of any
    map on the 26 reference structures, 0.222 vs 0.085 for the all-head average) and the six
    per-layer head averages, 7 channels on a 32 x 32 grid, plus the full-resolution contact
    triangle; ``maps="heads"`` keeps every head (120 channels, the original study's input,
    17x the bytes). Embeddings are the last layer's, pooled to 32 segments.
    """

    #: hub id or local folder; None: $COEVOFOLD_MODEL, else facebook/esm2_t6_8M_UR50D.
    model: str | None = None
    #: "none": no attention maps; "layers": the contact map and per-layer averages of APC maps;
    #: "heads": the contact map and every head's APC map.
    maps: str = "none"
    grid: int = 32
    #: hidden layer for embeddings: -1 = last, 0 = token embeddings.
    embedding_layer: int = -1
    embedding_bins: int = 32
    #: hidden layer whose per-residue embeddings are stored for the template search (-2: layer 5
    #: of ESM-2 8M's 6). A probe on held-out training superfamilies found the next-to-last layer's
    #: residues align remote homologues better than the last's, whose features are shaped by
    #: the masked-token task.
    residue_layer: int = -2
    #: step between windows for chains longer than the model's window (half a window: every
    #: residue pair closer than half a window shares at least one window).
    stride: int = 511
    #: the pLM's matrix products: "float32", or "bfloat16" (autocast). Default: bfloat16 where the
    #: CPU multiplies it natively (:func:`native_bfloat16`), float32 elsewhere, where autocast
    #: only emulates it. On 2 cores with AVX-512 BF16, a fresh quickstart on bfloat16 features:
    #: extraction 37.6 against 25.6 proteins/s (1.47x), the default system 28.4 / 55.3 / 98.3 %,
    #: pooled 66.2 (float32: 28.0 / 55.0 / 98.2 / 66.0), ECE after calibration pooled 0.034, fold
    #: 0.112 (float32: 0.039, 0.123); embeddings' cosine to float32 >= 0.989 per residue, mean
    #: 0.99991 (``benchmarks/extraction_precision.py``; docs/research.md, issue 19).
    precision: str = field(default_factory=default_precision)

    def __post_init__(self) -> None:
        if self.maps not in MAP_KINDS:
            raise CoevofoldError(f"--maps must be one of {', '.join(MAP_KINDS)}, not '{self.maps}'")
        if self.precision not in PRECISIONS:
            raise CoevofoldError(f"--precision must be one of {', '.join(PRECISIONS)}, not '{self.precision}'")
        if self.grid < 2 or self.embedding_bins < 1 or self.stride < 1:
            raise CoevofoldError("--grid must be >= 2, --bins >= 1 and --stride >= 1")


@dataclass(frozen=True)
class RunConfig:
    """How extraction runs; nothing here changes the stored values."""

    #: padded tokens per batch; measured on 2 CPU cores: 4096 is within 5 % of the best.
    max_tokens: int = 4096
    #: cap on batch x length^2, bounding attention memory (~0.5 KB per pair for 6 x 20 heads).
    max_pairs: int = 1 << 21
    #: CPU threads for PyTorch (None: all cores).
    threads: int | None = None
    #: where the pLM runs: auto (a CUDA GPU when torch sees one), cpu, cuda or cuda:N
    #: (:func:`coevofold.devices.resolve`).
    device: str = "auto"
    #: processes extraction runs as (Lightning's devices: GPUs with cuda, CPU processes with cpu).
    devices: int = 1
    #: proteins per part file: the most work a kill can lose.
    part_size: int = 256
    progress: bool = True


#: Longest chain extracted. Stitching a chain keeps its full-resolution maps, ~(4 x channels + 20)
#: bytes per residue pair: ~5 GB at 10,000 residues with the default maps, ~460 GB at 100,000.
MAX_LENGTH = 10_000


def check_lengths(table: pd.DataFrame) -> None:
    """Refuse chains longer than :data:`MAX_LENGTH` before any work: batches sorted by length
    would otherwise reach them last and run out of memory after hours of extraction."""
    lengths = table["sequence"].str.len()
    if (lengths > MAX_LENGTH).any():
        record = table[lengths > MAX_LENGTH].iloc[0]
        raise CoevofoldError(
            f"record '{record['id']}' has {len(record['sequence']):,} residues, more than the {MAX_LENGTH:,} "
            "coevofold extracts (its full-resolution maps grow with the square of the length); split it into domains"
        )


def settings_of(plm: pretrained.ProteinLM, config: FeatureConfig) -> dict:
    """The store identity: feature settings plus the exact weights and the model's window.

    The model is identified by its weights' hash, not its name: the same weights reached by
    hub id or by local folder make the same features.
    """
    settings = asdict(config)
    del settings["model"]
    if settings["precision"] == UNRECORDED_PRECISION:
        del settings["precision"]
    settings.update(weights_sha256=plm.weights_sha256, window=plm.window)
    return settings


# ----------------------------------------------------------------------------------- compute


def channel_weights(plm: pretrained.ProteinLM, config: FeatureConfig) -> tuple[torch.Tensor, float]:
    """Head weights [C, layers x heads] of the stored map channels, and the contact bias.

    Row 0 is the contact map: the checkpoint's logistic regression over APC maps where it has
    one (ESM), else the all-head average. Then one row per layer (its heads' average) or one per
    head, following ``config.maps``.
    """
    n = plm.num_layers * plm.num_heads
    if config.maps == "none":
        return torch.zeros((0, n)), 0.0
    if plm.has_contact_head:
        regression = plm.model.contact_head.regression
        contact, bias = regression.weight.detach().float().reshape(1, n).cpu(), float(regression.bias)
    else:
        contact, bias = torch.full((1, n), 1.0 / n), 0.0
    if config.maps == "layers":
        rest = torch.kron(torch.eye(plm.num_layers), torch.full((1, plm.num_heads), 1.0 / plm.num_heads))
    else:
        rest = torch.eye(n)
    return torch.cat([contact, rest]), bias


def _to_unit(contact: torch.Tensor, probability: bool, bias: float) -> torch.Tensor:
    """Contact channel in [0, 1]: the head's probability, or a min-max scaled average."""
    if probability:
        return torch.sigmoid(contact + bias)
    low, high = contact.min(), contact.max()
    return (contact - low) / (high - low).clamp(min=1e-12)


def _chunk_features(plm: pretrained.ProteinLM, config: FeatureConfig, chunks: list[str]):
    """Run the pLM on window-sized chunks; yield (maps [C, l, l], profile [l, H x D]) per chunk.

    The profile holds every hidden layer side by side (H = layers + 1), so that windows of long
    chains are stitched once for the segment embeddings and the per-layer means alike. Without
    maps (C = 0) the pass uses fused attention and returns no attention at all.

    The maps are summed layer by layer (:func:`coevolution_maps` is a sum over heads), never
    concatenating all layers' attention: that copy, and the one einsum made of it, had tripled
    the memory of a pass (a 576-residue chain: +716 MB at peak, +339 MB layer by layer; the
    stored features of 62 DeepSF domains came out identical but for 2 of 444,416 fp16 grid cells,
    one fp16 step apart).
    """
    weights, bias = channel_weights(plm, config)
    with_maps = len(weights) > 0
    per_layer = weights.to(plm.model.device).split(plm.num_heads, dim=1)  # [C, heads] per layer
    encoded = {k: v.to(plm.model.device) for k, v in plm.encode(chunks).items()}
    with torch.autocast(plm.model.device.type, dtype=torch.bfloat16, enabled=config.precision == "bfloat16"):
        out = plm.forward(encoded, attentions=with_maps)
    hidden = torch.cat(out.hidden_states, dim=-1)  # [B, T, H x D]
    for j, chunk in enumerate(chunks):
        t = len(chunk) + 2
        if with_maps:
            maps = sum(coevolution_maps(layer[j, :, :t, :t], w) for layer, w in zip(out.attentions, per_layer))
            maps[0] = _to_unit(maps[0], plm.has_contact_head, bias)
        else:
            maps = torch.zeros((0, t - 2, t - 2))
        yield maps.cpu(), hidden[j, 1 : t - 1].float().cpu()


def window_passes(chunk_lengths: list[int], max_pairs: int) -> list[slice]:
    """Split one batch's windows into forward passes of at most ``max_pairs`` attention pairs.

    :func:`make_batches` keeps batches of several proteins within the budget, but a chain many
    windows long is a batch of its own: in one pass, 19 windows of a 10,000-residue chain hold
    ~15 GB of attention. A batch within the budget stays one pass.
    """
    per_pass = max(1, max_pairs // (max(chunk_lengths) + 2) ** 2)
    return [slice(i, i + per_pass) for i in range(0, len(chunk_lengths), per_pass)]


@torch.inference_mode()
def compute(plm: pretrained.ProteinLM, config: FeatureConfig, ids: list[str], sequences: list[str],
            max_pairs: int = RunConfig.max_pairs) -> store.FeatureRows:
    """Features of ``sequences`` in memory; chains longer than the window are stitched.

    The model runs in passes of at most ``max_pairs`` attention pairs (see :func:`window_passes`).
    """
    if config.stride > plm.window:  # windows that far apart would skip residues
        raise CoevofoldError(f"--stride {config.stride} is larger than the model's window ({plm.window} residues)")
    pieces: list[tuple[int, int, str]] = []  # (protein, start, chunk)
    for n, seq in enumerate(sequences):
        for start in window_starts(len(seq), plm.window, config.stride):
            pieces.append((n, start, seq[start : start + plm.window]))
    stitchers: dict[int, Stitcher] = {}
    chunks = [chunk for _, _, chunk in pieces]
    results = (result for group in window_passes([len(c) for c in chunks], max_pairs)
               for result in _chunk_features(plm, config, chunks[group]))
    for (n, start, _), (maps, profile) in zip(pieces, results):
        if n not in stitchers:
            stitchers[n] = Stitcher(len(sequences[n]), maps.shape[0], profile.shape[1])
        stitchers[n].add(start, maps, profile)
    grids, bins, means, contacts, layers, residues = [], [], [], [], [], []
    for n in range(len(sequences)):
        maps, profile = stitchers[n].result()
        per_layer = profile.reshape(len(sequences[n]), plm.num_layers + 1, -1)  # [L, H, D]
        chosen = per_layer[:, config.embedding_layer]
        grids.append(pool_grid(maps, config.grid).half().numpy())
        bins.append(pool_positions(chosen, config.embedding_bins).half().numpy())
        means.append(chosen.mean(0).numpy())
        layers.append(per_layer.mean(0).half().numpy())
        contacts.append(store.map_to_triangle(maps[0].numpy()) if len(maps) else np.zeros(0, np.uint8))
        residues.append(per_layer[:, config.residue_layer].half().numpy())
    return store.FeatureRows(list(ids), list(sequences), np.stack(grids), np.stack(bins), np.stack(means), contacts,
                             np.stack(layers), residues)


def make_batches(lengths: list[int], window: int, stride: int, max_tokens: int, max_pairs: int) -> list[list[int]]:
    """Group protein indices into length-sorted batches under a token and an attention budget.

    Sorting by length keeps padding small; the pair budget (batch x longest^2) bounds the
    attention tensors, which grow with the square of the length. A chain longer than the window
    counts as its windows. Every protein lands in exactly one batch.
    """
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    rows = 0
    for i in order:
        chunks = len(window_starts(lengths[i], window, stride))
        longest = min(lengths[i], window) + 2
        if current and ((rows + chunks) * longest > max_tokens or (rows + chunks) * longest**2 > max_pairs):
            batches.append(current)
            current, rows = [], 0
        current.append(i)
        rows += chunks
    if current:
        batches.append(current)
    return batches


# ----------------------------------------------------------------------------------- extract


def _identity(batch):
    return batch


def _engine_classes():
    """Lightning pieces, built lazily so importing coevofold stays fast."""
    import lightning.pytorch as pl
    from lightning.pytorch.callbacks import BasePredictionWriter

    class Extractor(pl.LightningModule):
        def __init__(self, plm: pretrained.ProteinLM, config: FeatureConfig, max_pairs: int) -> None:
            super().__init__()
            self.plm = plm
            self.lm = plm.model  # registered so Lightning moves it to the device
            self.config = config
            self.max_pairs = max_pairs

        def predict_step(self, batch, batch_idx):
            ids, sequences = zip(*batch)
            return compute(self.plm, self.config, list(ids), list(sequences), self.max_pairs)

    class PartWriter(BasePredictionWriter):
        """Buffers finished proteins and writes them as atomic part files of the store."""

        def __init__(self, target: Path, settings: dict, model: str, part_size: int, total: int, progress: bool) -> None:
            super().__init__(write_interval="batch")
            self.target, self.settings, self.model, self.part_size = target, settings, model, part_size
            self.buffer: list[store.FeatureRows] = []
            self.total, self.progress = total, progress
            self.bar = None

        def on_predict_start(self, trainer, pl_module) -> None:
            if trainer.is_global_zero:
                self.bar = tqdm(total=self.total, unit="protein", desc="extract", disable=not self.progress,
                                smoothing=0.05, dynamic_ncols=True)

        def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx):
            self.buffer.append(prediction)
            if sum(len(p) for p in self.buffer) >= self.part_size:
                self.flush(trainer.global_rank)
            if self.bar is not None:
                self.bar.update(len(prediction) * trainer.world_size)

        def flush(self, rank: int) -> None:
            if not self.buffer:
                return
            rows = store.FeatureRows.concat(self.buffer)
            name = hashlib.sha1("\n".join(rows.ids).encode()).hexdigest()[:16]
            store.write_file(self.target / f"part-r{rank}-{name}.h5", rows, self.settings, self.model)
            self.buffer = []

        def on_predict_end(self, trainer, pl_module) -> None:
            self.flush(trainer.global_rank)
            if self.bar is not None:
                self.bar.close()

    return pl, Extractor, PartWriter


def cached_store(name: str, plm: pretrained.ProteinLM, config: FeatureConfig) -> Path:
    """Where features of a named data set live in the cache, keyed by model and settings."""
    import json

    key = hashlib.sha1(json.dumps(settings_of(plm, config), sort_keys=True).encode()).hexdigest()[:10]
    return cache_dir() / "features" / f"{name}-{key}.h5"


def extract(
    source: str | os.PathLike | pd.DataFrame,
    out: str | os.PathLike,
    config: FeatureConfig | None = None,
    run: RunConfig | None = None,
    plm: pretrained.ProteinLM | None = None,
) -> Path:
    """Extract features for every protein of ``source`` into the HDF5 store ``out``.

    ``source`` is a FASTA/table path, a preset name or a table with ``id`` and ``sequence``.
    Proteins already in ``out`` (or in parts left by an interrupted run) are skipped; a store
    made with another model or other settings is refused; the same id with another sequence is
    refused. Returns the store path.
    """
    config = config or FeatureConfig()
    run = run or RunConfig()
    out = Path(out)
    table = tables.as_table(source)
    if table.empty:
        raise CoevofoldError("no proteins to extract")
    check_lengths(table)
    device = devices.resolve(run.device)  # a GPU that is not there is refused before any work
    devices.lightning_devices(device, run.devices)
    devices.set_threads(run.threads)
    plm = plm or pretrained.load(config.model)
    settings = settings_of(plm, config)
    done = store.done_ids(out, settings)
    for record_id, sequence in zip(table["id"], table["sequence"]):
        if record_id in done and done[record_id] != sequence:
            raise CoevofoldError(f"{out}: record '{record_id}' is stored with a different sequence; use another --out")
    todo = table[~table["id"].isin(done)]
    if todo.empty:
        store.merge(out, settings, plm.label)
    else:
        _run_engine(plm, config, run, device, todo, out, settings)
    return out


def _run_engine(plm, config, run, device: devices.Device, todo: pd.DataFrame, out: Path, settings: dict) -> None:
    quiet_lightning()
    pl, Extractor, PartWriter = _engine_classes()
    ids, sequences = todo["id"].tolist(), todo["sequence"].tolist()
    batches = make_batches([len(s) for s in sequences], plm.window, config.stride, run.max_tokens, run.max_pairs)
    if len(batches) < run.devices:  # every process needs a batch: Lightning's sampler fails on none
        batches = [[i] for batch in batches for i in batch]
    loader = torch.utils.data.DataLoader(
        [[(ids[i], sequences[i]) for i in batch] for batch in batches], batch_size=None, collate_fn=_identity
    )
    parts = writable_dir(store.parts_dir(out))
    writer = PartWriter(parts, settings, plm.label, run.part_size, len(todo), run.progress)
    accelerator, device_ids = devices.lightning_devices(device, min(run.devices, len(batches)))
    trainer = pl.Trainer(
        accelerator=accelerator,
        devices=device_ids,
        logger=False,
        callbacks=[writer],
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
    )
    started = time.perf_counter()
    trainer.predict(Extractor(plm, config, run.max_pairs), loader, return_predictions=False)
    trainer.strategy.barrier()
    if trainer.is_global_zero:  # one merger: ranks merging at once delete each other's parts
        store.merge(out, settings, plm.label)
        if run.progress:
            rate = len(todo) / max(time.perf_counter() - started, 1e-9)
            print(f"extracted {len(todo)} proteins at {rate:.1f} proteins/s")
    trainer.strategy.barrier()  # every rank returns with the store complete
