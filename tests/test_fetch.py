"""``coevofold data fetch`` without the internet: a server on 127.0.0.1 serves files in the
publishers' formats, built here from the real records in ../shared, and the fetch must write
exactly the tables the presets read today.

What the served files are: DeepSF's D2 and D1 lists, the SCOPe ASTRAL 20 % FASTA, the 'Twilight
Zone' SCOP2 table and SCOP2's scop-des are the shared copies byte for byte (the shared copies are
verbatim upstream files, less the records withheld for an outside evaluation); TAPE's
remote-homology archive (JSON records) and the dir.cla / dir.des / scop-cla tables are written
here in the upstream layouts from the shared records. So the equality checked is: the
conversion of upstream-format files gives the shared tables, for every record the shared data has.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import socket
import tarfile
import threading
from collections import Counter
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pandas as pd
import pytest

from coevofold import files
from coevofold.app import cli, runs
from coevofold.data import fetch, names, tables
from coevofold.errors import CoevofoldError

DEEPSF_TABLE = "deepsf_tape_remote_homology/deepsf_d2_all_splits.tsv"


class Upstream:
    """Files served as a mirror lays them out (``/NAME/FILE``), with the faults downloads meet."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.requests: Counter[str] = Counter()
        #: paths whose next response sends half the body and closes the connection.
        self.cut: set[str] = set()
        self.url = ""

    def serve(self, dataset: str, files_: dict[str, bytes]) -> None:
        self.files.update({f"/{dataset}/{name}": body for name, body in files_.items()})

    @property
    def total(self) -> int:
        return sum(self.requests.values())


@pytest.fixture
def upstream():
    state = Upstream()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            state.requests[self.path] += 1
            body = state.files.get(self.path)
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.path in state.cut:
                state.cut.discard(self.path)
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch, upstream: Upstream) -> Path:
    """A machine without ../shared: COEVOFOLD_DATA is an empty folder, caches are fresh, and
    every download goes to the local server."""
    root = tmp_path / "data"
    root.mkdir()
    monkeypatch.setenv("COEVOFOLD_DATA", str(root))
    monkeypatch.setenv("COEVOFOLD_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv(fetch.MIRROR_ENV, upstream.url)
    monkeypatch.setattr(files, "_shared_data", lambda: None)
    return root


# ------------------------------------------------------------------ upstream-format files


def _tape_archive(table: pd.DataFrame, edit=lambda record: record) -> bytes:
    """TAPE's remote_homology.tar.gz (raw JSON form): one JSON list of records per split."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for split in fetch._TAPE_SPLITS:
            rows = table[table["split"] == split]
            records = [{"id": r.sid, "primary": r.sequence, "protein_length": len(r.sequence), "class_label": 0,
                        "fold_label": int(r.tape_fold_label), "superfamily_label": 0, "family_label": 0,
                        "secondary_structure": [0] * 3, "solvent_accessibility": [1] * 3,
                        "evolutionary": [[0] * 20] * 3}
                       for r in rows.itertuples(index=False)]
            body = json.dumps([edit(r) for r in records]).encode()
            info = tarfile.TarInfo(f"remote_homology/remote_homology_{split}.json")
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    return buffer.getvalue()


def _lines_of(path: Path, ids: set[str] | None) -> bytes:
    """A list file verbatim, or only its lines for ``ids``."""
    lines = path.read_bytes().splitlines(keepends=True)
    return b"".join(line for line in lines if ids is None or line.split(b"\t", 1)[0].decode() in ids)


def _deepsf_upstream(shared: Path, ids: set[str] | None = None) -> dict[str, bytes]:
    table = pd.read_csv(shared / DEEPSF_TABLE, sep="\t", dtype=str, keep_default_na=False)
    if ids is not None:
        table = table[table["sid"].isin(ids)]
    served = {fetch._TAPE_ARCHIVE: _tape_archive(table)}
    for split, remote in fetch._D2.items():
        served[remote.name] = _lines_of(shared / "deepsf/D2_Three_levels_dataset" / fetch._TAPE_SPLITS[split], ids)
    for remote, name in zip(fetch._D1, fetch._D1_LISTS):
        served[remote.name] = _lines_of(shared / "deepsf/D1_SimilarityReduction_dataset" / name, ids)
    return served


@pytest.fixture(scope="session")
def deepsf_full(shared_data: Path) -> dict[str, bytes]:
    return _deepsf_upstream(shared_data)


@pytest.fixture(scope="session")
def deepsf_small(shared_data: Path) -> tuple[dict[str, bytes], list[str]]:
    """Three domains per split plus one that DeepSF's D1 lists do not classify below the fold."""
    table = pd.read_csv(shared_data / DEEPSF_TABLE, sep="\t", dtype=str, keep_default_na=False)
    picked = table.groupby("split", sort=False).head(3)
    unclassified = table[table["family"] == ""].head(1)
    ids = list(pd.concat([picked, unclassified])["sid"])
    return _deepsf_upstream(shared_data, set(ids)), ids


def _astral_upstream(shared: Path) -> dict[str, bytes]:
    return {fetch._ASTRAL20.name: (shared / "scope_astral20/astral_20.fa").read_bytes()}


def _scope_upstream(shared: Path) -> dict[str, bytes]:
    """The ASTRAL FASTA, and dir.cla / dir.des of its records in SCOPe's tab-separated layouts."""
    table = tables.read_fasta(shared / "scope_astral20/astral_20.fa", labels="scop")
    cla = ["# dir.cla.scope.2.08-stable.txt", "# SCOPe release 2.08-stable (test copy)"]
    cla += [f"{r.id}\t{r.id[1:5]}\tA:\t{r.family or r.fold}\t{n}\tcl=46456,px={n}" for n, r in
            enumerate(table.itertuples(index=False), start=100000)]
    des = ["# dir.des.scope.2.08-stable.txt"]
    des += [f"{n}\tfa\t{family}\t-\tfamily {family}" for n, family in enumerate(sorted(table["family"].dropna().unique()))]
    return {**_astral_upstream(shared), fetch._SCOPE_CLA.name: ("\n".join(cla) + "\n").encode(),
            fetch._SCOPE_DES.name: ("\n".join(des) + "\n").encode()}


def _scop2_upstream(shared: Path) -> dict[str, bytes]:
    """The 'Twilight Zone' table and scop-des verbatim; scop-cla in SCOP2's space-separated layout."""
    folder = shared / "scop2_represeq_clusters"
    table = pd.read_csv(folder / "scop2_represeq_th20.tsv", sep="\t", dtype=str, keep_default_na=False)
    cla = ["# SCOP release (test copy)", "# FA-DOMID FA-PDBID FA-PDBREG FA-UNIID FA-UNIREG SF-DOMID SF-PDBID "
           "SF-PDBREG SF-UNIID SF-UNIREG SCOPCLA"]
    cla += [" ".join(row) for row in table.iloc[:, :11].itertuples(index=False)]
    return {fetch._TWILIGHT_TH20.name: (folder / "scop2_represeq_th20.tsv").read_bytes(),
            fetch._SCOP2_DES.name: (folder / "scop-des-latest.txt").read_bytes(),
            fetch._SCOP2_CLA.name: ("\n".join(cla) + "\n").encode()}


def _error_line(capsys) -> str:
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith("coevofold: error: "), err
    return err[0]


def _everything_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


# ------------------------------------------------------------------ the good download


def test_fetch_deepsf_writes_the_shared_table_and_a_rerun_downloads_nothing(
        upstream, isolated, deepsf_full, shared_data, capsys):
    upstream.serve("deepsf", deepsf_full)
    assert cli.main(["data", "fetch", "deepsf", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert (isolated / DEEPSF_TABLE).read_bytes() == (shared_data / DEEPSF_TABLE).read_bytes()
    assert "16,292 domains (train 12,312, valid 736, test_fold 718, test_superfamily 1,254, test_family 1,272: " \
           "the published counts), 1,195 folds, families from DeepSF's D1 lists for 16,169" in out
    assert out.count("recorded now, checked on every later use") == len(deepsf_full)  # each file's sha256, once
    table = tables.load("deepsf")
    pd.testing.assert_frame_equal(table, tables.read_deepsf_tsv(shared_data / DEEPSF_TABLE))
    manifest = json.loads((isolated / "deepsf_tape_remote_homology" / files.FETCH_MANIFEST).read_text())
    assert {i["file"] for i in manifest["inputs"]} == set(deepsf_full) and all(len(i["sha256"]) == 64 for i in manifest["inputs"])
    assert "COEVOFOLD_DATA" not in out  # the presets already read this folder

    served = upstream.total
    assert cli.main(["data", "fetch", "deepsf", "--quiet"]) == 0
    assert "already fetched: checked against its FETCH.json, nothing downloaded" in capsys.readouterr().out
    shutil.rmtree(isolated / "deepsf_tape_remote_homology")  # the cache still holds every download
    assert cli.main(["data", "fetch", "deepsf", "--quiet"]) == 0
    assert f"0 file(s) downloaded, {len(deepsf_full)} from the download cache" in capsys.readouterr().out
    assert upstream.total == served
    assert (isolated / DEEPSF_TABLE).read_bytes() == (shared_data / DEEPSF_TABLE).read_bytes()


def test_fetch_scope_and_scop2_write_the_shared_tables(upstream, isolated, shared_data, capsys):
    upstream.serve("scope208", _scope_upstream(shared_data))
    upstream.serve("astral20", _astral_upstream(shared_data))
    upstream.serve("scop2", _scop2_upstream(shared_data))
    for name in ("scope208", "astral20", "scop2"):
        assert cli.main(["data", "fetch", name, "--quiet"]) == 0
    out = capsys.readouterr().out
    for relpath in ("scope208_astral_filtered/scope2.08_astral_th20.tsv", "scope_astral20/astral_20.fa",
                    "scop2_represeq_clusters/scop2_represeq_th20.tsv", "scop2_represeq_clusters/scop-des-latest.txt"):
        assert (isolated / relpath).read_bytes() == (shared_data / relpath).read_bytes(), relpath
    n_scope = len(tables.read_scope_tsv(shared_data / "scope208_astral_filtered/scope2.08_astral_th20.tsv"))
    assert f"sccs: {n_scope:,} of {n_scope:,} agree with dir.cla" in out
    n_scop2 = len(tables.read_scop2_tsv(shared_data / "scop2_represeq_clusters/scop2_represeq_th20.tsv"))
    assert f"classification: {n_scop2:,} of {n_scop2:,} agree with scop-cla-latest.txt" in out
    # the astral FASTA downloaded once for both data sets that read it
    assert upstream.requests[f"/astral20/{fetch._ASTRAL20.name}"] == 0
    for preset in ("scope208", "astral20", "scop2", "binary"):
        assert len(tables.load(preset)) > 0
    assert names.fold_names("scop2")["2000051"] == "Immunoglobulin-like beta-sandwich"


# ------------------------------------------------------------------ what goes wrong


def test_hash_mismatch_is_one_line_and_leaves_nothing(upstream, isolated, shared_data, monkeypatch, capsys):
    served = _astral_upstream(shared_data)
    upstream.serve("astral20", served)
    wrong = "0" * 64
    dataset = fetch.DATASETS["astral20"]
    pinned = replace(dataset, remotes=(replace(dataset.remotes[0], sha256=wrong, pinned_by="a test"),))
    monkeypatch.setitem(fetch.DATASETS, "astral20", pinned)
    assert cli.main(["data", "fetch", "astral20", "--quiet"]) == 1
    line = _error_line(capsys)
    body = next(iter(served.values()))
    actual = hashlib.sha256(body).hexdigest()
    assert fetch._ASTRAL20.name in line and f"sha256 {actual}" in line and f"expected {wrong} (pinned (a test))" in line
    assert _everything_under(isolated) == []
    assert not (isolated.parent / "cache" / "downloads" / fetch._ASTRAL20.name).exists()

    # a hash recorded at the first download: a later download with other bytes is refused too
    monkeypatch.setitem(fetch.DATASETS, "astral20", dataset)
    assert cli.main(["data", "fetch", "astral20", "--quiet"]) == 0
    capsys.readouterr()
    shutil.rmtree(isolated / "scope_astral20")
    (isolated.parent / "cache" / "downloads" / fetch._ASTRAL20.name).unlink()
    upstream.serve("astral20", {fetch._ASTRAL20.name: body + b">d9zzza_ a.1.1.1 (A:) changed upstream\nmkv\n"})
    assert cli.main(["data", "fetch", "astral20", "--quiet"]) == 1
    line = _error_line(capsys)
    assert f"expected {actual} (recorded at its first download here" in line and "nothing was written" in line
    assert _everything_under(isolated) == []


def test_cut_download_leaves_nothing_and_the_next_fetch_completes(upstream, isolated, deepsf_small, capsys):
    served, ids = deepsf_small
    upstream.serve("deepsf", served)
    upstream.cut.add(f"/deepsf/{fetch._TAPE_ARCHIVE}")
    assert cli.main(["data", "fetch", "deepsf", "--quiet"]) == 1
    line = _error_line(capsys)
    assert f"{upstream.url}/deepsf/{fetch._TAPE_ARCHIVE} (the connection broke off mid-download)" in line
    assert _everything_under(isolated) == []
    downloads = isolated.parent / "cache" / "downloads"
    assert not (downloads / fetch._TAPE_ARCHIVE).exists()
    assert [p.name for p in downloads.iterdir() if p.name.startswith("tmp")] == []  # pooch's partial file went too
    assert cli.main(["data", "fetch", "deepsf", "--quiet"]) == 0
    assert tables.load("deepsf")["id"].tolist() == [i for i in pd.read_csv(
        io.BytesIO(served[fetch._D2["train"].name]), sep="\t", header=None)[0]] + \
        [i for s in list(fetch._TAPE_SPLITS)[1:] for i in pd.read_csv(io.BytesIO(served[fetch._D2[s].name]),
                                                                        sep="\t", header=None)[0]]


def test_unreachable_host_names_the_url_and_where_to_put_the_file(isolated, shared_data, monkeypatch, capsys):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    mirror = f"http://127.0.0.1:{port}"
    monkeypatch.setenv(fetch.MIRROR_ENV, mirror)
    assert cli.main(["data", "fetch", "astral20", "--quiet"]) == 1
    line = _error_line(capsys)
    by_hand = isolated.parent / "cache" / "downloads" / fetch._ASTRAL20.name
    assert f"from {mirror}/astral20/{fetch._ASTRAL20.name} (cannot connect)" in line
    assert f"save that file as {by_hand} and run `coevofold data fetch astral20` again" in line
    assert _everything_under(isolated) == []
    by_hand.parent.mkdir(parents=True, exist_ok=True)  # doing what the line says works offline
    shutil.copyfile(shared_data / "scope_astral20/astral_20.fa", by_hand)
    assert cli.main(["data", "fetch", "astral20", "--quiet"]) == 0
    assert (isolated / "scope_astral20/astral_20.fa").read_bytes() == by_hand.read_bytes()


def test_tape_json_variants(upstream, isolated, deepsf_small, shared_data, capsys):
    """Ids kept as the repr of TAPE's bytes are read; the TensorFlow-era JSON (token ids in
    'primary') is refused in one line, with nothing written."""
    served, ids = deepsf_small
    table = pd.read_csv(shared_data / DEEPSF_TABLE, sep="\t", dtype=str, keep_default_na=False)
    table = table[table["sid"].isin(ids)]
    upstream.serve("deepsf", {**served, fetch._TAPE_ARCHIVE: _tape_archive(table, lambda r: r | {"primary": [5, 6]})})
    assert cli.main(["data", "fetch", "deepsf", "--quiet"]) == 1
    assert "not the data_raw_pytorch archive" in _error_line(capsys)
    assert _everything_under(isolated) == []
    shutil.rmtree(isolated.parent / "cache")
    upstream.serve("deepsf", {**served, fetch._TAPE_ARCHIVE: _tape_archive(table, lambda r: r | {"id": f"b'{r['id']}'"})})
    assert cli.main(["data", "fetch", "deepsf", "--quiet"]) == 0
    assert sorted(tables.load("deepsf")["id"]) == sorted(ids)


def test_changed_fetched_table_and_foreign_folder_refused(upstream, isolated, deepsf_small, capsys):
    upstream.serve("deepsf", deepsf_small[0])
    (isolated / "deepsf_tape_remote_homology").mkdir()
    assert cli.main(["data", "fetch", "deepsf", "--quiet"]) == 1
    assert "exists and was not written by `coevofold data fetch`" in _error_line(capsys)
    (isolated / "deepsf_tape_remote_homology").rmdir()
    assert cli.main(["data", "fetch", "deepsf", "--quiet"]) == 0
    with open(isolated / DEEPSF_TABLE, "a") as handle:
        handle.write("train\td9zzza_\t3\ta\ta.1\t\t\t\t0\tMKV\n")
    with pytest.raises(CoevofoldError, match="changed since `coevofold data fetch` wrote it"):
        tables.load("deepsf")
    assert cli.main(["data", "fetch", "deepsf", "--quiet"]) == 1
    assert "changed since `coevofold data fetch` wrote it" in _error_line(capsys)


# ------------------------------------------------------------------ a new user's first commands


def test_missing_data_says_to_fetch(isolated, monkeypatch):
    with pytest.raises(CoevofoldError, match=r"no such file \(preset 'binary'\); `coevofold data fetch scop2`"):
        tables.load("binary")
    monkeypatch.delenv("COEVOFOLD_DATA")
    with pytest.raises(CoevofoldError, match="run `coevofold data fetch deepsf`"):
        files.data_root()


def test_fetch_without_coevofold_data_is_found_by_the_presets(upstream, isolated, deepsf_small, monkeypatch, capsys):
    monkeypatch.delenv("COEVOFOLD_DATA")
    upstream.serve("deepsf", deepsf_small[0])
    assert cli.main(["data", "fetch", "deepsf", "--quiet"]) == 0
    assert "COEVOFOLD_DATA" not in capsys.readouterr().out
    assert files.data_root() == files.fetched_data_dir() == isolated.parent / "cache" / "data"
    assert sorted(tables.load("deepsf")["id"]) == sorted(deepsf_small[1])
    assert cli.main(["data", "fetch", "deepsf", "--dir", str(isolated), "--quiet"]) == 0  # elsewhere: say how
    assert f"set COEVOFOLD_DATA={isolated} to use this copy" in capsys.readouterr().out


def test_readme_commands_fetch_then_quickstart_reach_the_fetched_data(
        upstream, isolated, deepsf_small, model_dir, monkeypatch, capsys):
    """`coevofold data fetch deepsf` then `coevofold quickstart` with ../shared out of sight.

    Quickstart is run for real up to its feature extraction (the pLM load, then the DeepSF
    table), which is stopped there: the rest trains for half an hour and reads only that table.
    """
    served, ids = deepsf_small
    upstream.serve("deepsf", served)
    monkeypatch.setenv("COEVOFOLD_MODEL", str(model_dir))  # no hub here; the hub id is the default elsewhere
    assert cli.main(["data", "fetch", "deepsf", "--quiet"]) == 0
    reached = {}

    def stop(name, table, plm, config, progress=True):
        reached.update(name=name, ids=sorted(table["id"]), label=plm.label)
        raise CoevofoldError("stopped before feature extraction (test)")

    monkeypatch.setattr(runs, "cached_features", stop)
    capsys.readouterr()
    assert cli.main(["quickstart", "--quiet"]) == 1
    printed = capsys.readouterr()
    assert "stopped before feature extraction" in printed.err
    assert reached["name"] == "deepsf" and reached["ids"] == sorted(ids)
    assert reached["label"].startswith(f"offline copy {model_dir.resolve()} (stand-in for facebook/esm2_t6_8M_UR50D)")
    assert printed.out.splitlines()[0] == f"pLM: {reached['label']}"  # quickstart names what it loaded


def test_registry_matches_the_presets():
    """Every preset names a fetch that writes its folder; every upstream URL is a web address."""
    for preset in tables.PRESETS.values():
        assert fetch.DATASETS[preset.fetch].folder == Path(preset.relpath).parts[0], preset.name
    names = [r.name for d in fetch.DATASETS.values() for r in d.remotes]
    assert len(set(names)) == len({(r.name, r.urls) for d in fetch.DATASETS.values() for r in d.remotes})
    for dataset in fetch.DATASETS.values():
        for remote in dataset.remotes:
            assert remote.urls and all(u.startswith(("https://", "http://")) for u in remote.urls)
            assert remote.sha256 is None  # no published hash exists for any of them (see fetch's docstring)
