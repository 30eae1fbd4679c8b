"""Where files live (cache, data) and atomic file output: a result file either appears
whole or not at all.

Every writer in coevofold goes through :func:`atomic_path`, so an interrupted run, a full disk or
a bad record found late never leaves a half-written TSV, PNG, checkpoint or store behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from typing import TypeVar

from coevofold.errors import CoevofoldError

T = TypeVar("T")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it into place only if the block succeeds.

    The temporary file lives in the same folder so the final ``os.replace`` is atomic on POSIX.
    """
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=parent)
    except OSError as exc:
        raise CoevofoldError(f"{path}: cannot write here ({exc.strerror})") from None
    os.close(fd)
    # mkstemp makes the file private (0600); results should get the usual umask permissions
    os.chmod(tmp, 0o666 & ~current_umask())
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except OSError as exc:
        raise CoevofoldError(f"{path}: could not be written ({exc.strerror}); nothing was left behind") from None
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def current_umask() -> int:
    """The process's umask (reading it means setting it: it is set straight back)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def writable_dir(path: str | os.PathLike) -> Path:
    """Create folder ``path`` if needed and check that files can be made in it.

    Writers that fill a folder over hours (extraction parts, training runs) call this first, so a
    read-only location fails at once with one line instead of a traceback after the work.
    """
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=path).close()
    except OSError as exc:
        raise CoevofoldError(f"{path}: cannot write here ({exc.strerror}); choose another --out") from None
    return path


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def cache_dir() -> Path:
    """Root of coevofold's caches (features, trained models): ``$COEVOFOLD_CACHE`` or ~/.cache."""
    return Path(os.environ.get("COEVOFOLD_CACHE") or Path.home() / ".cache" / "coevofold")


def fetched_data_dir() -> Path:
    """Where ``coevofold data fetch`` puts data when ``$COEVOFOLD_DATA`` is not set."""
    return cache_dir() / "data"


def _shared_data() -> Path | None:
    """A ``shared/data`` folder upwards of the working directory or of this package's source."""
    for start in [Path.cwd(), Path(__file__).resolve()]:
        for folder in [start, *start.parents]:
            candidate = folder / "shared" / "data"
            if candidate.is_dir():
                return candidate
    return None


def data_root() -> Path:
    """Where the data lives: ``$COEVOFOLD_DATA``, else a ``shared/data`` found upwards, else the
    folder ``coevofold data fetch`` fills by default (:func:`fetched_data_dir`).

    The search starts at the working directory and at this package's source, so the README's
    commands work from a clone that sits beside ``shared/`` as on the project's machines; a user
    elsewhere runs ``coevofold data fetch deepsf`` and needs no other step.
    """
    env = os.environ.get("COEVOFOLD_DATA")
    if env:
        return Path(env)
    shared = _shared_data()
    if shared is not None:
        return shared
    fetched = fetched_data_dir()
    if fetched.is_dir():
        return fetched
    raise CoevofoldError(
        f"cannot find the data folder: run `coevofold data fetch deepsf` (it downloads into {fetched}, where "
        "coevofold looks next), or set COEVOFOLD_DATA to a folder holding deepsf_tape_remote_homology/, ..."
    )


def sha256_of(path: str | os.PathLike) -> str:
    """sha256 of a file, read in 1 MiB blocks (weights files and downloads are large)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


#: what ``coevofold data fetch`` writes beside the files it made: their sources and sha256.
FETCH_MANIFEST = "FETCH.json"


def check_fetched(path: str | os.PathLike) -> None:
    """Refuse a file that ``coevofold data fetch`` wrote and that has changed since.

    The folder's :data:`FETCH_MANIFEST` holds each written file's sha256; files without one (the
    project's shared copies, a user's own tables) are not checked.
    """
    path = Path(path)
    manifest = path.parent / FETCH_MANIFEST
    if not (manifest.is_file() and path.is_file()):
        return
    try:
        expected = json.loads(manifest.read_text(encoding="utf-8"))["outputs"].get(path.name)
    except (OSError, ValueError, KeyError, AttributeError) as exc:
        raise CoevofoldError(f"{manifest}: unreadable ({exc}); delete {path.parent} and fetch it again") from None
    if expected is not None and (actual := sha256_of(path)) != expected:
        raise CoevofoldError(f"{path}: changed since `coevofold data fetch` wrote it (sha256 {actual}, written as "
                             f"{expected}); delete {path.parent} and fetch it again")


def read_json(path: str | os.PathLike, build: Callable[[dict], T], what: str, remedy: str) -> T:
    """``build`` applied to the JSON file at ``path``; unreadable or malformed (a missing key, a
    wrong type) refused in one line that names the file, ``what`` it holds and the ``remedy``."""
    try:
        return build(json.loads(Path(path).read_text()))
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise CoevofoldError(f"{path}: unreadable {what} ({exc!r}); {remedy}") from None
