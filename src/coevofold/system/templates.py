"""Template search: a query's per-residue embeddings aligned to every labelled training domain.

Pooled vectors lose what remote homologues share: a conserved core of a few dozen residues in
a domain of two hundred. Aligning residue embeddings (EBA, pLM-BLAST) keeps it: the cosine
matrix between query and template residues, z-scored by rows and columns, a local alignment
with a linear gap (:mod:`coevofold.system.embedding_alignment`). On held-out training superfamilies
this finds the right fold about as often as the whole classifier ensemble, and differently.

Three choices keep it fast and comparable across queries:

* a prefilter: only the :attr:`SearchConfig.prefilter` templates nearest by pooled cosine are
  aligned (its recall of the exhaustive search's best template is measured by
  ``benchmarks/template_search.py``);
* scores normalised twice: the raw local score over sqrt(query x template length), so long
  templates do not win by length, then a z-score against the same query's scores on
  :attr:`SearchConfig.decoys` fixed random templates, so that one z means one thing whatever
  the query's length or composition;
* templates stored compactly in the model folder: each residue vector centred on the training
  residues' mean, its :data:`TOP_COMPONENTS` top principal directions removed, scaled to unit
  length and quantised to int8 (320 bytes a residue).

The top directions ("all but the top", Mu & Viswanath 2018) carry what most residues share
rather than what aligns homologues: removing the top 8 of 320 (3 to 4 % of the variance each)
lifted the search alone from 37.4 / 66.6 % to 38.8 / 68.6 % top-1 fold on 500 fold- and 500
superfamily-like held-out rows (12: 39.0 / 68.2; 16: 36.8 / 67.0; 32: 35.0 / 68.2; partial
whitening instead: no better; docs/research.md, issue 18).

An earlier version also compared the predicted contact maps along the best alignments (contact
overlap, the original study's hypothesis as threading evidence); in the combiner it changed
top-1 on the held-out rows the system is chosen on by +0.1 / -0.3 / -0.4 points (fold- /
superfamily- / family-like, paired, docs/research.md), so it was dropped, and with it the
attention maps from the default store.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from sklearn.decomposition import PCA
from tqdm.auto import tqdm

from coevofold.errors import CoevofoldError
from coevofold.features import store
from coevofold.files import atomic_path
from coevofold.system import embedding_alignment as ea

TEMPLATES_FILE = "templates.npz"
VECTORS_FILE = "templates_vectors.npy"
#: quantisation scale of a unit vector's components (int8).
_SCALE = 127.0
#: the similarity's matrix product runs on shapes rounded up to these multiples (zero-padded):
#: oneDNN compiles and keeps a kernel for every new shape of a bfloat16 product (~0.65 MB each,
#: up to 1,024, and code it never frees), so exact shapes, new with every query, grew ``serve``
#: by ~0.6 GB over 144 queries; rounded, a few dozen shapes serve every query.
_ROWS, _COLUMNS = 64, 8192
#: the most similarity cells one product holds (int32: 64 MB): a query of ~170 residues takes all
#: its ~60,000 template residues in one group (the compiled kernel's threads then share one
#: call, not eight: 1.3x the search), a 2,000-residue query groups of 8,192 as before.
_CELLS = 2**24
#: principal directions of the training residues removed before the cosine (module docstring).
TOP_COMPONENTS = 8
#: residues per template in the sample the directions are fitted on (seeded: the same templates
#: give the same directions).
_PCA_SAMPLE = 20


def columns_per_product(query_length: int) -> int:
    """Template residues aligned per product for a query of ``query_length`` residues: the largest
    multiple of the padded columns that keeps the product within :data:`_CELLS` (at least one)."""
    return _COLUMNS * max(1, _CELLS // (_COLUMNS * -(-query_length // _ROWS) * _ROWS))


def column_groups(lengths: np.ndarray, columns: int = _COLUMNS) -> list[slice]:
    """Consecutive templates in groups of at most ``columns`` residues (a longer template alone).

    A query is aligned one group at a time, so its similarity matrix is at most [Lq, columns]:
    all 350 templates at once took ~0.5 GB for a 2,000-residue query, a server's whole margin.
    """
    groups, start, total = [], 0, 0
    for i, length in enumerate(lengths):
        if total and total + length > columns:
            groups.append(slice(start, i))
            start, total = i, 0
        total += int(length)
    if len(lengths):
        groups.append(slice(start, len(lengths)))
    return groups


@dataclass(frozen=True)
class SearchConfig:
    """How a query is searched; defaults measured on the calibration split's held-out rows.

    ``prefilter`` 300 found the right fold slightly more often than 200 (pooled-cosine recall
    keeps rising to ~300); ``decoys`` 50 gave the same top-1 as 200; ``gap`` 1.0 is one z-unit,
    the probe's best, and still so with the top directions removed (gap 0.5 / 1.0 / 1.5 / 2.0:
    37.2 / 38.6 / 38.4 / 38.4 % on 500 fold-like held-out rows, 68.6 / 69.0 / 68.4 / 68.4 on 500
    superfamily-like ones, the search alone).
    """

    prefilter: int = 300
    decoys: int = 50
    gap: float = 1.0


@dataclass
class Templates:
    """Labelled training domains ready to search (what the model folder keeps)."""

    ids: np.ndarray  # [T] str
    folds: np.ndarray  # [T] str
    offsets: np.ndarray  # [T + 1] int64, rows of ``vectors`` per template
    vectors: np.ndarray  # [sum L, D] int8, unit_rows(residue, center, removed) x 127
    pooled: np.ndarray  # [T, D] float32, unit mean of each template's unit vectors
    center: np.ndarray  # [D] float32
    removed: np.ndarray  # [K, D] float32, orthonormal directions projected out (K = 0: none)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def unit(self, residues: np.ndarray) -> np.ndarray:
        """A query's residues made as these templates' vectors were (:func:`unit_rows`)."""
        return unit_rows(residues, self.center, self.removed)

    def save(self, folder: str | os.PathLike) -> None:
        folder = Path(folder)
        with atomic_path(folder / VECTORS_FILE) as tmp, open(tmp, "wb") as handle:
            np.save(handle, self.vectors)
        with atomic_path(folder / TEMPLATES_FILE) as tmp, open(tmp, "wb") as handle:
            np.savez(handle, ids=self.ids.astype(str), folds=self.folds.astype(str), offsets=self.offsets,
                     pooled=self.pooled, center=self.center, removed=self.removed)


def has_templates(folder: str | os.PathLike) -> bool:
    return (Path(folder) / TEMPLATES_FILE).is_file() and (Path(folder) / VECTORS_FILE).is_file()


def load_templates(folder: str | os.PathLike, in_memory: bool = False) -> Templates:
    """A model folder's templates; the vectors are memory-mapped (read as the search touches them:
    a short ``predict`` reads a fraction), or read whole with ``in_memory`` (``serve``: a server
    touches them all in time, and its memory should be what it holds from start-up on)."""
    folder = Path(folder)
    try:
        with np.load(folder / TEMPLATES_FILE, allow_pickle=False) as meta:
            parts = {key: meta[key] for key in meta.files}
        # folders made before the directions were removed searched without: they still do
        parts.setdefault("removed", np.zeros((0, len(parts["center"])), np.float32))
        vectors = np.load(folder / VECTORS_FILE, mmap_mode=None if in_memory else "r", allow_pickle=False)
        templates = Templates(vectors=vectors, **parts)
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise CoevofoldError(f"{folder}: unreadable template search files ({exc}); re-run the system's preparation") from None
    if templates.offsets[-1] != len(vectors) or len(templates.offsets) != len(templates.ids) + 1:
        raise CoevofoldError(f"{folder / VECTORS_FILE}: does not match {TEMPLATES_FILE}; re-run the system's preparation")
    return templates


def unit_rows(residues: np.ndarray, center: np.ndarray, removed: np.ndarray | None = None) -> np.ndarray:
    """Residue vectors centred on the training mean, ``removed``'s directions projected out, and
    scaled to unit length (float32).

    Centring removes the direction every residue embedding shares, which would otherwise make
    every pair of residues look similar; the top principal directions are the next ones shared.
    """
    x = np.asarray(residues, dtype=np.float32) - center
    if removed is not None and len(removed):
        x -= (x @ removed.T) @ removed
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-6)


def top_directions(residues: list[np.ndarray], center: np.ndarray, k: int = TOP_COMPONENTS) -> np.ndarray:
    """The ``k`` top principal directions [k, D] of the centred residues, fitted on a seeded
    sample of :data:`_PCA_SAMPLE` residues per protein."""
    if k == 0:
        return np.zeros((0, len(center)), np.float32)
    rng = np.random.default_rng(0)
    sample = np.concatenate([r[rng.choice(len(r), min(len(r), _PCA_SAMPLE), replace=False)] for r in residues])
    k = min(k, len(sample), len(center))
    return PCA(n_components=k, random_state=0).fit(sample.astype(np.float32) - center).components_.astype(np.float32)


def quantised(unit: np.ndarray) -> np.ndarray:
    """Unit vectors' components x 127, rounded to int8 (templates and queries alike)."""
    return np.rint(unit * _SCALE).astype(np.int8)


def pooled_unit(unit: np.ndarray) -> np.ndarray:
    mean = unit.mean(axis=0)
    return (mean / max(float(np.linalg.norm(mean)), 1e-6)).astype(np.float32)


def build_templates(rows: store.FeatureRows, folds: list[str]) -> Templates:
    """:class:`Templates` from store rows read with their residues (the model's training rows)."""
    if len(rows.residues) != len(rows):
        raise CoevofoldError("templates need the rows' per-residue embeddings (read_rows(..., residues=True))")
    total = sum(len(r) for r in rows.residues)
    center = (sum(r.astype(np.float64).sum(axis=0) for r in rows.residues) / max(total, 1)).astype(np.float32)
    removed = top_directions(rows.residues, center)
    vectors = np.empty((total, rows.residues[0].shape[1]), dtype=np.int8)
    pooled = np.empty((len(rows), vectors.shape[1]), dtype=np.float32)
    offsets = np.zeros(len(rows) + 1, dtype=np.int64)
    for n, residues in enumerate(rows.residues):
        unit = unit_rows(residues, center, removed)
        offsets[n + 1] = offsets[n] + len(unit)
        vectors[offsets[n]:offsets[n + 1]] = quantised(unit)
        pooled[n] = pooled_unit(unit)
    return Templates(np.asarray(rows.ids), np.asarray(folds), offsets, vectors, pooled, center, removed)


@dataclass
class Hits:
    """Per query, the aligned templates best first: index, z-score, normalised score."""

    index: np.ndarray  # [N, K] int32 template rows
    z: np.ndarray  # [N, K] float32
    score: np.ndarray  # [N, K] float32, local score / sqrt(Lq x Lt)

    def save(self, path: str | os.PathLike) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp, open(tmp, "wb") as handle:
            np.savez(handle, index=self.index, z=self.z, score=self.score)

    @staticmethod
    def load(path: str | os.PathLike) -> Hits:
        with np.load(path, allow_pickle=False) as stored:
            return Hits(stored["index"], stored["z"], stored["score"])

    def class_best(self, template_classes: np.ndarray, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
        """Per query and class: best z and the template giving it (-1: none aligned).

        Classes with no aligned template get the query's lowest z (they were not even among
        the nearest by pooled cosine).
        """
        n = len(self.index)
        best_z = np.repeat(self.z.min(axis=1, keepdims=True), n_classes, axis=1).astype(np.float32)
        best = np.full((n, n_classes), -1, dtype=np.int64)
        for q in range(n):
            for k in range(self.index.shape[1] - 1, -1, -1):  # worst first: the best hit of a class writes last
                c = template_classes[self.index[q, k]]
                best_z[q, c], best[q, c] = self.z[q, k], self.index[q, k]
        return best_z, best

    def class_counts(self, template_classes: np.ndarray, n_classes: int, top: int) -> np.ndarray:
        """Per query and class: how many of the ``top`` best hits are of the class (float [N, n_classes])."""
        counts = np.zeros((len(self.index), n_classes))
        np.add.at(counts, (np.arange(len(self.index))[:, None], template_classes[self.index[:, :top]]), 1.0)
        return counts


class TemplateSearch:
    """:class:`Templates` with a fixed decoy set, searching one query at a time.

    An instance keeps its product's buffers from query to query (at most 26 MB of template
    vectors and 64 MB of products): written into fresh memory the product ran 2.6x slower, as
    every page of a 64 MB result was faulted in anew. So one instance serves one thread (``serve``
    runs its model on one).
    """

    def __init__(self, templates: Templates, config: SearchConfig | None = None) -> None:
        self.templates = templates
        self.config = config or SearchConfig()
        rng = np.random.default_rng(0)
        self.decoys = rng.choice(len(templates), min(self.config.decoys, len(templates)), replace=False)
        self._pooled = torch.from_numpy(np.ascontiguousarray(templates.pooled))
        self._vectors = torch.zeros(0, dtype=torch.int8)
        self._products = torch.zeros(0, dtype=torch.int32)

    def _blocks(self, chosen: np.ndarray) -> tuple[torch.Tensor, np.ndarray]:
        """The ``chosen`` templates' vectors stacked [rows, D] (zero rows after the last up to a
        multiple of the padded columns), and where each template starts (offsets [K + 1])."""
        t = self.templates
        offsets = np.zeros(len(chosen) + 1, dtype=np.int64)
        offsets[1:] = np.cumsum(t.lengths[chosen])
        rows, width = -(-int(offsets[-1]) // _COLUMNS) * _COLUMNS, t.vectors.shape[1]
        if self._vectors.numel() < rows * width:
            self._vectors = torch.zeros(rows * width, dtype=torch.int8)
        stacked = self._vectors[: rows * width].view(rows, width)
        out = stacked.numpy()
        for n, i in enumerate(chosen):
            out[offsets[n]:offsets[n + 1]] = t.vectors[t.offsets[i]:t.offsets[i + 1]]
        out[offsets[-1]:] = 0
        return stacked, offsets

    def _similarity(self, unit: np.ndarray, chosen: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Cosines of the ``chosen`` templates' residues against the query's, x 127^2 (int32
        [sum Lt, Lq rounded up to :data:`_ROWS`], zeros past Lq: templates stacked by rows, as
        :func:`~coevofold.system.embedding_alignment.block_scores` reads them; a C-contiguous
        view of the instance's buffer), and where each template's rows start (offsets [K + 1]).

        The query is quantised to int8 like the templates and the product runs in int8 with int32
        sums (VNNI): 1.6x the bfloat16 product on 2 cores, and the int32 matrix goes to the
        compiled z-scores as it is (z-scores do not see the scale), where bfloat16's had to be
        converted and rescaled first. Rounding the query costs what rounding the templates does
        (~2e-3 a cosine).
        """
        stacked, offsets = self._blocks(chosen)
        (m, width), n = unit.shape, int(offsets[-1])
        query = torch.zeros((-(-m // _ROWS) * _ROWS, width), dtype=torch.int8)
        query[:m] = torch.from_numpy(quantised(unit))
        cells = len(stacked) * len(query)
        if self._products.numel() < cells:
            self._products = torch.empty(cells, dtype=torch.int32)
        products = self._products[:cells].view(len(stacked), len(query))
        torch._int_mm(stacked, query.T, out=products)
        return products.numpy()[:n], offsets

    def align(self, residues: np.ndarray, template: int) -> tuple[float, np.ndarray]:
        """The local alignment of one query to one template: (raw score, aligned (query, template) pairs)."""
        unit = self.templates.unit(residues)
        sim, _ = self._similarity(unit, np.array([template]))
        return ea.local_alignment(ea.zscore(np.ascontiguousarray(sim[:, : len(unit)].T)), self.config.gap)

    def search_one(self, residues: np.ndarray) -> tuple[np.ndarray, ...]:
        """One query: (template index, z, normalised score) of the prefiltered templates best first."""
        t, config = self.templates, self.config
        unit = t.unit(residues)
        cosine = (self._pooled @ torch.from_numpy(pooled_unit(unit))).numpy()
        k = min(config.prefilter, len(t))
        chosen = np.argpartition(-cosine, k - 1)[:k] if k < len(t) else np.arange(len(t))
        both = np.concatenate([chosen, self.decoys])
        raw = np.concatenate([ea.block_scores(*self._similarity(unit, both[group]), config.gap, len(unit))
                              for group in column_groups(t.lengths[both], columns_per_product(len(unit)))])
        score = ea.normalized(raw, len(unit), t.lengths[both]).astype(np.float32)
        background = score[k:]
        z = (score[:k] - background.mean()) / max(float(background.std()), 1e-6)
        order = np.argsort(-z, kind="stable")
        return chosen[order].astype(np.int32), z[order].astype(np.float32), score[:k][order]

    def search(self, residues: list[np.ndarray], progress: bool = True) -> Hits:
        """Every query's per-residue embeddings [L, D]; queries with fewer templates than the
        prefilter are padded with their worst hit, so every query has K columns."""
        k = min(self.config.prefilter, len(self.templates))
        index = np.zeros((len(residues), k), np.int32)
        z = np.zeros((len(residues), k), np.float32)
        score = np.zeros((len(residues), k), np.float32)
        for n in tqdm(range(len(residues)), desc="template search", unit="query", disable=not progress,
                      dynamic_ncols=True, smoothing=0.05):
            index[n], z[n], score[n] = self.search_one(residues[n])
        return Hits(index, z, score)
