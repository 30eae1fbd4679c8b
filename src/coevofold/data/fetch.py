"""``coevofold data fetch``: download the public benchmark data and lay it out as the presets read it.

Every data set the presets read (:data:`coevofold.data.tables.PRESETS`) is public. This module fetches
each from its publishers, checks it, and converts it into exactly the files the presets read, so
that a new user needs ``coevofold data fetch deepsf`` and nothing else before ``coevofold
quickstart``. What each data set is made of, and why, is in :data:`DATASETS`.

Design choices:

* Downloads go through pooch (streamed to a temporary file, hash-checked, then moved into
  place; progress bars) into ``$COEVOFOLD_CACHE/downloads``, so the cache folder moves with
  ``COEVOFOLD_CACHE``. A file is downloaded once: later runs reuse it after checking its hash.
* Hashes. A hash published by a trusted party would be pinned in the registry (``Remote.sha256``);
  none of these files has one (torchdrug pins an md5 for TAPE's *LMDB* archive, which is not
  fetched, see below). So each file's sha256 is recorded at its first download (printed, and
  kept in ``downloads/recorded_sha256.json``) and checked on every later use: a re-download or a
  mirror that serves other bytes is refused with the file, the expected and the actual hash.
* TAPE's remote-homology benchmark is fetched in its JSON form. The LMDB form stores Python
  pickles, and coevofold never unpickles what comes from the internet; the JSON files are
  parsed with :mod:`json` straight out of the tar archive, which is never extracted to disk.
* Nothing half-written: the converted files are written into a hidden folder beside the target
  and renamed into place once complete, with :data:`~coevofold.files.FETCH_MANIFEST` (the
  source URL and sha256 of every input, the sha256 of every output).
  :func:`coevofold.data.tables.load` checks the outputs' hashes on every load.
* Every failure is one line: which file, which URL, why, and where to put the file by hand.
* ``--mirror URL`` (or ``$COEVOFOLD_MIRROR``) replaces every upstream URL by
  ``URL/<data set>/<file name>``: a local copy of the files, or the tests' server.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tarfile
import tempfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from Bio.SeqIO.FastaIO import SimpleFastaParser

from coevofold import __version__
from coevofold.data import tables
from coevofold.errors import CoevofoldError
from coevofold.files import (FETCH_MANIFEST, cache_dir, check_fetched, current_umask, data_root, fetched_data_dir,
                             sha256_of, writable_dir, write_text)

MIRROR_ENV = "COEVOFOLD_MIRROR"
RECORDED = "recorded_sha256.json"
_GITHUB = "https://raw.githubusercontent.com"


@dataclass(frozen=True)
class Remote:
    """One upstream file: its name in the download cache (and on a mirror), where it is
    published (tried in order), and a pinned sha256 where a trusted party publishes one."""

    name: str
    urls: tuple[str, ...]
    sha256: str | None = None
    #: who publishes the pinned hash (with ``sha256``).
    pinned_by: str = ""

    @property
    def hash_policy(self) -> str:
        return f"pinned ({self.pinned_by})" if self.sha256 else "recorded at first download"


@dataclass(frozen=True)
class Dataset:
    """A ``data fetch`` name: the files it downloads and how they become the presets' folder."""

    name: str
    #: the folder under the data root the presets read (written whole, or not at all).
    folder: str
    description: str
    remotes: tuple[Remote, ...]
    #: (downloaded paths by Remote.name, output folder) -> one line saying what was written.
    build: Callable[[dict[str, Path], Path], str]


@dataclass(frozen=True)
class FetchResult:
    folder: Path
    #: whether the folder was written by this call (False: it was there, and checked).
    written: bool
    #: Remote names downloaded by this call (the others came from the download cache).
    downloaded: tuple[str, ...]
    summary: str


def download_dir() -> Path:
    """pooch's cache of upstream files: ``$COEVOFOLD_CACHE/downloads``."""
    return cache_dir() / "downloads"


# ----------------------------------------------------------------------------------- downloads


def _recorded() -> dict[str, str]:
    path = download_dir() / RECORDED
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CoevofoldError(f"{path}: unreadable ({exc}); delete it to record the downloads' hashes afresh") from None


def _record(name: str, digest: str) -> None:
    recorded = _recorded() | {name: digest}
    write_text(download_dir() / RECORDED, json.dumps(recorded, indent=1, sort_keys=True) + "\n")


def _reason(exc: Exception) -> str:
    """A download failure in a few words (requests' own messages run to several hundred characters)."""
    import requests

    if isinstance(exc, requests.exceptions.HTTPError) and exc.response is not None:
        return f"HTTP {exc.response.status_code}"
    if isinstance(exc, (requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError)):
        return "the connection broke off mid-download"
    if isinstance(exc, requests.exceptions.Timeout):
        return "timed out"
    if isinstance(exc, requests.exceptions.ConnectionError):
        return "cannot connect"
    return type(exc).__name__


def _download(dataset: Dataset, remote: Remote, mirror: str | None, progress: bool) -> tuple[Path, bool]:
    """The cached copy of ``remote`` (downloaded if missing or not matching its hash), and
    whether it was downloaded now. The first download of an unpinned file records its hash."""
    import pooch
    import requests

    folder = download_dir()
    path = folder / remote.name
    expected = remote.sha256 or _recorded().get(remote.name)
    urls = (f"{mirror.rstrip('/')}/{dataset.name}/{remote.name}",) if mirror else remote.urls
    had = path.is_file() and (expected is None or sha256_of(path) == expected)
    pooch.get_logger().setLevel(logging.WARNING)  # coevofold says what it fetched, once
    failures = []
    for url in urls:
        try:
            pooch.retrieve(url, known_hash=f"sha256:{expected}" if expected else None, fname=remote.name,
                           path=folder, progressbar=progress)
            break
        except ValueError as exc:
            found = re.search(r"does not match the known hash.*but got ([0-9a-fA-F]+)", str(exc))
            if found is None:  # pooch refuses the URL itself (an unknown protocol)
                failures.append(f"{url} ({exc})")
                continue
            why = remote.hash_policy if remote.sha256 else (
                f"recorded at its first download here; if the publisher changed it, remove '{remote.name}' from "
                f"{folder / RECORDED} to accept the new file")
            raise CoevofoldError(
                f"{dataset.name}: {remote.name} from {url} has sha256 {found.group(1)}, expected "
                f"{expected} ({why}); the download was deleted and nothing was written") from None
        except requests.exceptions.RequestException as exc:
            failures.append(f"{url} ({_reason(exc)})")
        except OSError as exc:
            raise CoevofoldError(f"{folder}: cannot write the download there ({exc.strerror}); "
                                 "set COEVOFOLD_CACHE to a writable folder") from None
    else:
        raise CoevofoldError(
            f"{dataset.name}: cannot download {remote.name} from {'; nor from '.join(failures)}; nothing was written. "
            f"To fetch it by hand, save that file as {path} and run `coevofold data fetch {dataset.name}` again")
    if not expected:
        digest = sha256_of(path)
        _record(remote.name, digest)
        print(f"{dataset.name}: {remote.name}: sha256 {digest} (no published hash: recorded now, "
              f"checked on every later use)")
    return path, not had


# ----------------------------------------------------------------------------------- fetch


def default_dir() -> Path:
    """Where ``data fetch`` writes without ``--dir``: ``$COEVOFOLD_DATA``, else the folder
    :func:`coevofold.files.data_root` falls back to."""
    env = os.environ.get("COEVOFOLD_DATA")
    return Path(env) if env else fetched_data_dir()


def verify_folder(folder: Path) -> str:
    """Check a fetched folder against its manifest; returns the summary it was written with."""
    manifest = folder / FETCH_MANIFEST
    if not manifest.is_file():
        raise CoevofoldError(f"{folder} exists and was not written by `coevofold data fetch`; "
                             "move it away or fetch into another folder with --dir")
    try:
        written = json.loads(manifest.read_text(encoding="utf-8"))
        outputs, summary = written["outputs"], written["summary"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CoevofoldError(f"{manifest}: unreadable ({exc}); delete {folder} and fetch it again") from None
    for name in outputs:
        if not (folder / name).is_file():
            raise CoevofoldError(f"{folder / name}: missing since `coevofold data fetch` wrote it; "
                                 f"delete {folder} and fetch it again")
        check_fetched(folder / name)
    return summary


def fetch(name: str, directory: str | os.PathLike | None = None, mirror: str | None = None,
          progress: bool = True) -> FetchResult:
    """Download data set ``name`` (:data:`DATASETS`) and write the folder its presets read.

    ``directory`` is the data root (default :func:`default_dir`); ``mirror`` replaces the
    upstream URLs (default ``$COEVOFOLD_MIRROR``). A folder fetched before is checked against its
    manifest and left as it is: nothing is downloaded again.
    """
    if name not in DATASETS:
        raise CoevofoldError(f"unknown data set '{name}' (known: {', '.join(DATASETS)})")
    dataset = DATASETS[name]
    mirror = mirror or os.environ.get(MIRROR_ENV) or None
    root = Path(directory) if directory is not None else default_dir()
    target = root / dataset.folder
    if target.exists():
        return FetchResult(target, False, (), verify_folder(target))
    try:
        writable_dir(root)
    except CoevofoldError as exc:  # its advice names extract's --out
        raise CoevofoldError(f"{str(exc).split('; ')[0]}; choose another --dir (or COEVOFOLD_DATA)") from None
    downloads = {remote.name: _download(dataset, remote, mirror, progress) for remote in dataset.remotes}
    for leftover in root.glob(f".{dataset.folder}.*.partial"):  # a killed run's unfinished folder
        shutil.rmtree(leftover, ignore_errors=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{dataset.folder}.", suffix=".partial", dir=root))
    try:
        try:
            summary = dataset.build({n: path for n, (path, _) in downloads.items()}, partial)
        except (ValueError, TypeError, KeyError, IndexError) as exc:  # a field that is not what the format says
            raise CoevofoldError(f"{name}: the downloaded files are not in their publishers' format "
                                 f"({type(exc).__name__}: {str(exc)[:160]}); nothing was written") from None
        inputs = [{"file": r.name, "urls": list(r.urls), "sha256": sha256_of(downloads[r.name][0]),
                   "hash": r.hash_policy} for r in dataset.remotes]
        outputs = {p.name: sha256_of(p) for p in sorted(partial.iterdir())}
        write_text(partial / FETCH_MANIFEST, json.dumps(
            {"dataset": name, "coevofold_version": __version__, "mirror": mirror, "summary": summary,
             "inputs": inputs, "outputs": outputs}, indent=1) + "\n")
        os.chmod(partial, 0o777 & ~current_umask())  # mkdtemp makes it private; data folders are not
        os.rename(partial, target)
    except OSError as exc:
        raise CoevofoldError(f"{target}: could not be written ({exc.strerror}); nothing was left behind") from None
    finally:
        if partial.exists():
            shutil.rmtree(partial, ignore_errors=True)
    return FetchResult(target, True, tuple(n for n, (_, fresh) in downloads.items() if fresh), summary)


def presets_note(root: Path) -> str:
    """What to do, if anything, for the presets to read ``root`` (empty when they already do)."""
    try:
        current = data_root()
    except CoevofoldError:
        current = None
    if current is not None and current.resolve() == root.resolve():
        return ""
    return f"the presets read {current} first; set COEVOFOLD_DATA={root} to use this copy" if current else \
        f"set COEVOFOLD_DATA={root} for the presets to find it"


# ----------------------------------------------------------------------------------- reading


def _text(path: Path) -> str:
    """A downloaded text file, refusing what is not one (an HTML error page, a Git LFS pointer)."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise CoevofoldError(f"{path}: not a text file; delete it and fetch again") from None
    if text.startswith("version https://git-lfs.github.com/spec/"):
        raise CoevofoldError(f"{path}: a Git LFS pointer, not the file; download the file itself and save it there")
    if text.lstrip()[:15].lower().startswith(("<!doctype html", "<html")):
        raise CoevofoldError(f"{path}: an HTML page, not the data file; delete it and fetch again")
    return text


def _columns(path: Path, minimum: int, sep: str | None = "\t") -> list[list[str]]:
    """The non-comment lines of a list file split into at least ``minimum`` fields."""
    rows = []
    for number, line in enumerate(_text(path).splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split(sep)
        if len(fields) < minimum:
            raise CoevofoldError(f"{path}: line {number}: {len(fields)} field(s), expected at least {minimum}")
        rows.append(fields)
    return rows


def _copy(source: Path, out: Path) -> None:
    _text(source)  # a text file, not an error page or pointer
    shutil.copyfile(source, out)


def _agreement(what: str, pairs: list[tuple[str, str | None]]) -> str:
    """'N of M agree' for (ours, official) pairs, naming the first disagreement: a check, not a
    gate (the "latest" official files move on; the table must stay the published one)."""
    differ = [(o, t) for o, t in pairs if o != t]
    line = f"{len(pairs) - len(differ):,} of {len(pairs):,} agree with {what}"
    if differ:
        line += f" (first other: {differ[0][0]} here, {differ[0][1] or 'absent'} there)"
    return line


# ----------------------------------------------------------------------------------- deepsf

_DEEPSF_COMMIT = "fca60931fc2cc49a6a5fd21f22c4ff4a36894539"
#: TAPE's split names (its JSON files) -> DeepSF D2 list files, in the published order.
_TAPE_SPLITS = {
    "train": "Traindata.list",
    "valid": "validation.list",
    "test_fold_holdout": "test_dataset.list_fold",
    "test_superfamily_holdout": "test_dataset.list_superfamily",
    "test_family_holdout": "test_dataset.list_family",
}
_D1_LISTS = ("Traindata.list", "Testdata.list")
_TAPE_ARCHIVE = "remote_homology.tar.gz"
_FAMILY_SOURCE = "DeepSF_D1_list(SCOP1.75)"
_DEEPSF_COLUMNS = ["split", "sid", "length", "class", "fold", "superfamily", "family", "family_source",
                   "tape_fold_label", "sequence"]


def _deepsf_remote(level: str, name: str) -> Remote:
    path = f"datasets/{level}/{name}"
    return Remote(f"DeepSF-{level.split('_')[0]}-{name}",
                  (f"{_GITHUB}/multicom-toolbox/DeepSF/{_DEEPSF_COMMIT}/{path}",
                   f"https://github.com/multicom-toolbox/DeepSF/raw/{_DEEPSF_COMMIT}/{path}"))


_D2 = {split: _deepsf_remote("D2_Three_levels_dataset", name) for split, name in _TAPE_SPLITS.items()}
_D1 = [_deepsf_remote("D1_SimilarityReduction_dataset", name) for name in _D1_LISTS]


def _tape_json(archive: Path) -> dict[str, list[dict]]:
    """TAPE's remote-homology records per split, read from the JSON files inside the archive."""
    out: dict[str, list[dict]] = {}
    try:
        with tarfile.open(archive, "r:gz") as tar:
            members = {Path(m.name).name: m for m in tar.getmembers() if m.isfile()}
            for split in _TAPE_SPLITS:
                member = members.get(f"remote_homology_{split}.json")
                if member is None:
                    raise CoevofoldError(f"{archive}: no remote_homology_{split}.json inside; not TAPE's "
                                         "remote-homology JSON archive")
                records = json.load(tar.extractfile(member))
                if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
                    raise CoevofoldError(f"{archive}: {member.name} is not a JSON list of records")
                out[split] = [{k: r.get(k) for k in ("id", "primary", "protein_length", "fold_label")}
                              for r in records]
    except (tarfile.TarError, EOFError, zlib.error, OSError, ValueError) as exc:
        raise CoevofoldError(f"{archive}: not a readable .tar.gz of JSON files ({exc}); delete it and fetch "
                             "again") from None
    return out


def _tape_id(value: object) -> str:
    """A TAPE record's SCOP id. TAPE's LMDB records keep it as bytes; a JSON-ified copy may hold
    their repr (``"b'd1v4wb_'"``) rather than the decoded text, so both are read."""
    text = str(value)
    found = re.fullmatch(r"b'(.*)'", text)
    return found.group(1) if found else text


def _build_deepsf(paths: dict[str, Path], out: Path) -> str:
    """The DeepSF/TAPE table: TAPE's sequences and fold labels joined by SCOP id with DeepSF's D2
    lists (split, length, fold) and D1 lists (family sccs, for all but 123 ids), checked to agree."""
    tape = _tape_json(paths[_TAPE_ARCHIVE])
    families: dict[str, tuple[str, str]] = {}  # sid -> (family sccs, fold)
    for remote in _D1:
        families.update({row[0]: (row[2], row[3]) for row in _columns(paths[remote.name], 4)})
    rows, label_fold = [], {}
    for split, remote in _D2.items():
        listed = _columns(paths[remote.name], 3)
        records = {_tape_id(r["id"]): r for r in tape[split]}
        if len(records) != len(tape[split]) or set(records) != {row[0] for row in listed}:
            extra = sorted(set(records) ^ {row[0] for row in listed})
            raise CoevofoldError(
                f"TAPE's remote_homology_{split}.json and DeepSF's {remote.name} list different domains "
                f"({len(tape[split])} vs {len(listed)}; e.g. {extra[:1] or 'a duplicate id'})")
        for sid, length, fold, *_ in listed:
            record = records[sid]
            sequence = record["primary"]
            if not isinstance(sequence, str):  # TAPE's TensorFlow-era JSON stores token ids, not residues
                raise CoevofoldError(f"{sid}: TAPE's {split} JSON holds {type(sequence).__name__} 'primary', not a "
                                     "sequence: this is not the data_raw_pytorch archive")
            if not (len(sequence) == int(length) == int(record["protein_length"] or -1)):
                raise CoevofoldError(f"{sid}: {len(sequence)} residues in TAPE's {split} JSON "
                                     f"(protein_length {record['protein_length']}), {length} in DeepSF's {remote.name}")
            label = int(record["fold_label"])
            if label_fold.setdefault(label, fold) != fold:
                raise CoevofoldError(f"{sid}: TAPE fold_label {label} is fold {fold} here, {label_fold[label]} elsewhere")
            family, family_fold = families.get(sid, ("", fold))
            if family_fold != fold:
                raise CoevofoldError(f"{sid}: fold {fold} in DeepSF's D2 lists, {family_fold} in its D1 lists")
            rows.append([split, sid, length, fold.split(".")[0], fold, ".".join(family.split(".")[:3]), family,
                         _FAMILY_SOURCE if family else "", str(label), sequence])
    if len(set(label_fold.values())) != len(label_fold):
        raise CoevofoldError("TAPE gives one SCOP fold more than one fold_label")
    table_path = out / Path(tables.PRESETS["deepsf"].relpath).name
    pd.DataFrame(rows, columns=_DEEPSF_COLUMNS).to_csv(table_path, sep="\t", index=False)
    table = tables.read_deepsf_tsv(table_path)  # what the preset reads, checked now
    counts = table["split"].value_counts()
    found = ", ".join(f"{split} {counts.get(split, 0):,}" for split in tables.DEEPSF_SPLITS)
    published = all(counts.get(s, 0) == n for s, n in tables.DEEPSF_PUBLISHED_COUNTS.items())
    return (f"{len(table):,} domains ({found}: {'the published counts' if published else 'NOT the published counts'}), "
            f"{table['fold'].nunique():,} folds, families from DeepSF's D1 lists for "
            f"{int(table['family'].notna().sum()):,}")


# ----------------------------------------------------------------------------------- SCOPe

_ASTRAL20 = Remote("astral-scopedom-seqres-gd-sel-gs-bib-20-2.08.fa",
                   ("https://scop.berkeley.edu/downloads/scopeseq-2.08/astral-scopedom-seqres-gd-sel-gs-bib-20-2.08.fa",))
_SCOPE_CLA = Remote("dir.cla.scope.2.08-stable.txt",
                    ("https://scop.berkeley.edu/downloads/parse/dir.cla.scope.2.08-stable.txt",))
_SCOPE_DES = Remote("dir.des.scope.2.08-stable.txt",
                    ("https://scop.berkeley.edu/downloads/parse/dir.des.scope.2.08-stable.txt",))
#: folds the 'Twilight Zone' notebook removes (ESM-1b's exclusion list: Rossmann-like folds and
#: four- to eight-bladed beta-propellers).
_TWILIGHT_EXCLUDED = ("c.2", "c.3", "c.4", "c.5", "c.27", "c.28", "c.30", "c.31", "b.66", "b.67", "b.68", "b.69", "b.70")
_SCOPE_COLUMNS = ["sid", "span", "sccs", "cls_label", "fold", "superfamily", "family", "seq", "description", "seq_len"]


def _build_scope208(paths: dict[str, Path], out: Path) -> str:
    """The 'Twilight Zone' study's SCOPe 2.08 table at 20 % identity, made as its notebook
    (``data_preprocessing/preprocess_SCOPe_data.ipynb``) makes it from the official ASTRAL FASTA:
    only four-level sccs, single-span domains, and not the excluded folds; labels cross-checked
    against ``dir.cla`` and ``dir.des`` of the same release."""
    fasta = paths[_ASTRAL20.name]
    _text(fasta)
    rows = []
    with open(fasta, encoding="utf-8") as handle:
        for title, raw in SimpleFastaParser(handle):
            fields = title.split()
            if len(fields) < 3:
                raise CoevofoldError(f"{fasta}: header '{title[:60]}' is not ASTRAL's '>sid sccs (span) description'")
            sid, sccs, span = fields[:3]
            parts = sccs.split(".")
            if sccs.count(".") != 3 or len(span.split(",")) != 1 or ".".join(parts[:2]) in _TWILIGHT_EXCLUDED:
                continue
            rows.append([sid, span, sccs, parts[0], ".".join(parts[:2]), ".".join(parts[:3]), sccs,
                         raw.strip().upper(), " ".join(fields[3:])])
    table = pd.DataFrame(rows, columns=_SCOPE_COLUMNS[:-1])
    table["seq_len"] = table["seq"].str.len()
    table_path = out / Path(tables.PRESETS["scope208"].relpath).name
    table.to_csv(table_path, sep="\t", index=False)
    loaded = tables.read_scope_tsv(table_path)
    classified = {row[0]: row[3] for row in _columns(paths[_SCOPE_CLA.name], 4)}
    families = {row[2] for row in _columns(paths[_SCOPE_DES.name], 5) if row[1] == "fa"}
    return (f"{len(loaded):,} domains, {loaded['fold'].nunique():,} folds; sccs: "
            f"{_agreement(_SCOPE_CLA.name, [(s, classified.get(i)) for i, s in zip(table['sid'], table['sccs'])])}; "
            f"families: {_agreement(_SCOPE_DES.name, [(f, f if f in families else None) for f in table['family']])}")


def _build_astral20(paths: dict[str, Path], out: Path) -> str:
    """The official SCOPe 2.08 ASTRAL 20 % FASTA, unchanged."""
    target = out / Path(tables.PRESETS["astral20"].relpath).name
    _copy(paths[_ASTRAL20.name], target)
    table = tables.read_fasta(target, labels="scop")
    return f"{len(table):,} domains, {table['fold'].nunique():,} folds"


# ----------------------------------------------------------------------------------- SCOP2

_TWILIGHT_COMMIT = "a6a6b0d80de8bdb282512f0508aa39f902813440"
_TWILIGHT_TH20 = Remote(
    "twilight-zone-SCOP2-th_20.tsv",
    (f"{_GITHUB}/amoldwin/plm-zero-shot-remote-homology-evaluation/{_TWILIGHT_COMMIT}/data/SCOP/processed_at_th/th_20.tsv",
     f"https://github.com/amoldwin/plm-zero-shot-remote-homology-evaluation/raw/{_TWILIGHT_COMMIT}/"
     "data/SCOP/processed_at_th/th_20.tsv"))


def _scop2_remote(name: str) -> Remote:
    return Remote(name, (f"https://scop.mrc-lmb.cam.ac.uk/files/{name}", f"https://www.ebi.ac.uk/pdbe/scop/files/{name}"))


_SCOP2_DES = _scop2_remote("scop-des-latest.txt")
_SCOP2_CLA = _scop2_remote("scop-cla-latest.txt")


def _build_scop2(paths: dict[str, Path], out: Path) -> str:
    """SCOP2 family representatives at 20 % identity as the 'Twilight Zone' study published them
    (SCOP2's representative sequences joined with ``scop-cla``, then clustered: the clustering
    cannot be redone from SCOP2's files, so its table is taken as published), with SCOP2's own
    ``scop-des`` for fold names; each row's classification is cross-checked against the current
    ``scop-cla``."""
    table_path = out / Path(tables.PRESETS["scop2"].relpath).name
    _copy(paths[_TWILIGHT_TH20.name], table_path)
    _copy(paths[_SCOP2_DES.name], out / _SCOP2_DES.name)
    table = tables.read_scop2_tsv(table_path)
    names = tables.read_scop2_names(out / _SCOP2_DES.name)
    published = pd.read_csv(table_path, sep="\t", dtype=str, keep_default_na=False, usecols=["FA-DOMID", "SCOPCLA"])
    current = {row[0]: row[10] for row in _columns(paths[_SCOP2_CLA.name], 11, sep=None)}
    return (f"{len(table):,} domains, {table['fold'].nunique():,} folds ({sum(f in names for f in table['fold'].unique()):,} "
            f"named); classification: {_agreement(_SCOP2_CLA.name, [(c, current.get(i)) for i, c in zip(published['FA-DOMID'], published['SCOPCLA'])])}")


# ----------------------------------------------------------------------------------- registry

#: What ``coevofold data fetch NAME`` downloads, and the folder each writes (``binary`` reads
#: the ``scop2`` folder). The table each folder holds equals, record for record, the copy in
#: the project's ``shared/data`` (which withholds some SCOPe/SCOP2 records for an outside
#: evaluation: a fetch has them).
DATASETS: dict[str, Dataset] = {
    d.name: d
    for d in [
        Dataset("deepsf", "deepsf_tape_remote_homology",
                "TAPE's remote-homology benchmark (JSON form: sequences, fold labels) + DeepSF's D2 lists "
                "(splits, folds) and D1 lists (families), GitHub multicom-toolbox/DeepSF @ " + _DEEPSF_COMMIT[:7],
                (Remote(_TAPE_ARCHIVE, (
                    "https://s3.amazonaws.com/songlabdata/proteindata/data_raw_pytorch/remote_homology.tar.gz",
                    "http://s3.amazonaws.com/songlabdata/proteindata/data_raw_pytorch/remote_homology.tar.gz",
                    "http://s3.amazonaws.com/proteindata/data_raw_pytorch/remote_homology.tar.gz")),
                 *_D2.values(), *_D1),
                _build_deepsf),
        Dataset("scope208", "scope208_astral_filtered",
                "SCOPe 2.08 ASTRAL 20% FASTA (scop.berkeley.edu scopeseq-2.08), filtered as the 'Twilight Zone' "
                "study did; dir.cla/dir.des 2.08-stable to cross-check its labels",
                (_ASTRAL20, _SCOPE_CLA, _SCOPE_DES), _build_scope208),
        Dataset("astral20", "scope_astral20", "SCOPe 2.08 ASTRAL 20% FASTA, unchanged", (_ASTRAL20,), _build_astral20),
        Dataset("scop2", "scop2_represeq_clusters",
                "SCOP2 representatives at 20% identity (the 'Twilight Zone' study's table, GitHub "
                "amoldwin/plm-zero-shot-remote-homology-evaluation @ " + _TWILIGHT_COMMIT[:7] + ") + SCOP2's "
                "scop-des (fold names) and scop-cla (cross-check); also serves the binary preset",
                (_TWILIGHT_TH20, _SCOP2_DES, _SCOP2_CLA), _build_scop2),
    ]
}
