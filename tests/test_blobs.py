"""Large file content lives in the blob store: written before its row commits,
read back checked, EIO naming the file when lost, collected only past the
grace period and only when no agent references it."""

from __future__ import annotations

import errno
import json
import os
import threading
import time
from pathlib import Path

import apsw
import pytest
import tomli_w
from click.testing import CliRunner

from tests.helpers import require_mode, run_vfs, small_tmpfs
from tests.test_mount_support import create_agent, mount_agent, requires_fuse
from vfs import Workspace
from vfs.backends.chunks import DEFAULT_CHUNK_SIZE
from vfs.backends.sqlite.check import DAMAGED_XATTR
from vfs.blob_gc import collect_blobs
from vfs.cli import main
from vfs.state.registry import Registry

DB_MODES = ("sqlite", "hybrid")  # the modes whose file content is in the database
THRESHOLD = 200_000
BIG = os.urandom(5 * DEFAULT_CHUNK_SIZE + 1234)
FRESH = os.urandom(4 * DEFAULT_CHUNK_SIZE)


def configure(home: Path, **settings: object) -> None:
    """``[defaults]`` of the settings file: blob_threshold, blob_store, blob_grace."""
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text(
        tomli_w.dumps({"defaults": {"blob_threshold": THRESHOLD, **settings}})
    )


def blob_files(store: Path) -> list[Path]:
    return sorted(p for p in store.glob("??/*") if len(p.name) == 64)


def make(home: Path, tmp_path: Path, mode: str, agent: str = "alice") -> Workspace:
    require_mode(mode)
    kwargs = {}
    if mode == "hybrid":
        lower = tmp_path / f"lower-{agent}"
        lower.mkdir()
        (lower / "base.txt").write_text("from the lower tree")
        kwargs["workspace"] = lower
    return Workspace.create(agent, home, mode=mode, **kwargs)


def stored_bytes(ws: Workspace) -> tuple[int, int]:
    """(chunks named by a blob, bytes of chunk data inside the database)."""
    row = ws.db.one("SELECT count(blob), coalesce(sum(length(data)), 0) FROM chunks")
    return int(row[0]), int(row[1])


@pytest.mark.parametrize("mode", DB_MODES)
def test_files_past_the_threshold_keep_their_chunks_in_the_blob_store(
    home: Path, tmp_path: Path, mode: str
) -> None:
    configure(home)
    with make(home, tmp_path, mode) as ws:
        ws.fs.pipe("/big.bin", BIG)
        ws.fs.pipe("/small.txt", b"stays in the database")
        blobs, inline = stored_bytes(ws)
        assert blobs == 6 and inline == len(b"stays in the database")
        assert len(blob_files(ws.directory / "blobs")) == 1  # the file's chunks packed in one
        huge = os.urandom(5 << 20)  # more chunks than one blob packs
        ws.fs.pipe("/huge.bin", huge)
        assert len(blob_files(ws.directory / "blobs")) == 3
        assert ws.fs.cat("/huge.bin") == huge
        assert ws.fs.cat("/big.bin") == BIG
        assert ws.fs.cat("/small.txt") == b"stays in the database"
        # Random writes into a spilled file: inside a chunk, across two, past the end.
        expected = bytearray(BIG)
        handle, _attr = ws.files_backend.open_path("/big.bin", os.O_RDWR)
        for offset, data in ((100, b"a"), (DEFAULT_CHUNK_SIZE - 3, b"across"), (len(BIG), b"z")):
            handle.write(offset, data)
            expected[offset : offset + len(data)] = data
        handle.close()
        assert ws.fs.cat("/big.bin") == bytes(expected)
        assert ws.fs.cat_file(
            "/big.bin", start=DEFAULT_CHUNK_SIZE - 10, end=DEFAULT_CHUNK_SIZE + 10
        ) == bytes(expected[DEFAULT_CHUNK_SIZE - 10 : DEFAULT_CHUNK_SIZE + 10])
        ws.fs.cp_file("/big.bin", "/copy.bin")  # shares chunks: no new blob
        assert ws.fs.cat("/copy.bin") == bytes(expected)
        with ws.fs.open("/big.bin", "ab") as f:
            f.write(b"appended")
        assert ws.fs.cat("/big.bin") == bytes(expected) + b"appended"
        ws.fs.rm("/big.bin")
        assert ws.fs.cat("/copy.bin") == bytes(expected)


def test_a_zero_threshold_keeps_everything_in_the_database(home: Path) -> None:
    configure(home, blob_threshold=0)
    with Workspace.create("alice", home) as ws:
        ws.fs.pipe("/big.bin", BIG)
        assert stored_bytes(ws) == (0, len(BIG))
        assert not (ws.directory / "blobs").exists()


def test_equal_content_in_two_agents_of_a_shared_store_is_one_blob(
    home: Path, tmp_path: Path
) -> None:
    configure(home, blob_store=str(tmp_path / "shared"), blob_grace=0)
    with Workspace.create("alice", home) as alice, Workspace.create("bob", home) as bob:
        alice.fs.pipe("/a.bin", BIG)
        bob.fs.pipe("/b.bin", BIG)
        assert len(blob_files(tmp_path / "shared")) == 1
        alice.fs.rm("/a.bin")
        registry = Registry(home)
        assert sum(c.deleted for c in collect_blobs(registry, "alice", delete=True)) == 0
        assert bob.fs.cat("/b.bin") == BIG
        bob.fs.rm("/b.bin")
        assert sum(c.deleted for c in collect_blobs(registry, "alice", delete=True)) == 1
        assert blob_files(tmp_path / "shared") == []


def test_a_user_of_the_store_that_never_published_holds_collection_back(
    home: Path, tmp_path: Path
) -> None:
    configure(home, blob_store=str(tmp_path / "shared"), blob_grace=0)
    with Workspace.create("alice", home) as ws:
        ws.fs.pipe("/a.bin", BIG)
        ws.fs.rm("/a.bin")
    # An agent of another home (another machine) that writes blobs here too.
    (tmp_path / "shared" / "users" / "elsewhere.json").write_text(
        json.dumps({"agent": "carol", "host": "far", "published_at": None, "keys": None})
    )
    [result] = collect_blobs(Registry(home), "alice", delete=True)
    assert result.deleted == 0 and result.waiting_for == ["carol on far"]
    assert len(blob_files(tmp_path / "shared")) == 1


# -- lost and damaged blobs -------------------------------------------------------


def _lose_and_damage(home: Path, lost: str, damaged: str) -> None:
    """Delete the blob of file ``lost``; flip a byte of ``damaged``'s third chunk
    in its blob, as a bad sector or a stray write would."""
    store = home / "agents" / "alice" / "blobs"
    conn = apsw.Connection(str(home / "agents" / "alice" / "agent.sqlite"))
    try:
        for path, idx in ((lost, 0), (damaged, 2)):
            ino = conn.execute(
                "SELECT ino FROM entries WHERE name = ?", (path.rsplit("/", 1)[-1],)
            ).fetchall()[0][0]
            key, at = conn.execute(
                "SELECT blob, blob_at FROM chunks WHERE id ="
                " (SELECT chunk FROM file_chunks WHERE ino = ? AND idx = ?)",
                (ino, idx),
            ).fetchall()[0]
            blob = store / key[:2] / key
            if path == lost:
                blob.unlink()
            else:
                data = bytearray(blob.read_bytes())
                data[at + 10] ^= 0xFF
                blob.write_bytes(bytes(data))
    finally:
        conn.close()


@pytest.mark.parametrize("mode", DB_MODES)
def test_a_lost_or_damaged_blob_is_eio_naming_the_file(
    home: Path, tmp_path: Path, mode: str
) -> None:
    configure(home)
    with make(home, tmp_path, mode) as ws:
        ws.fs.pipe("/docs/big.bin", BIG)
        ws.fs.pipe("/docs/lost.bin", BIG[::-1])
        _lose_and_damage(home, "/docs/lost.bin", "/docs/big.bin")
        for path, start in (("/docs/lost.bin", 5), ("/docs/big.bin", 2 * DEFAULT_CHUNK_SIZE + 5)):
            with pytest.raises(OSError) as info:
                ws.fs.cat_file(path, start=start, end=start + 10)
            assert info.value.errno == errno.EIO
            assert info.value.filename == path
            with pytest.raises(OSError) as info, ws.fs.open(path, "rb") as f:
                f.read()
            assert info.value.errno == errno.EIO
        # The undamaged chunks of a damaged blob still read.
        assert ws.fs.cat_file("/docs/big.bin", end=100) == BIG[:100]
    for path, what in (("/docs/lost.bin", "missing"), ("/docs/big.bin", "corrupt")):
        result = CliRunner().invoke(main, ["--home", str(home), "cat", f"alice:{path}"])
        assert result.exit_code == 1
        last = result.output.splitlines()[-1]
        assert last.startswith(f"Error: {path}: stored content is {what}"), last
        assert "Traceback" not in result.output


@requires_fuse
@pytest.mark.parametrize("mode", DB_MODES)
def test_a_lost_or_damaged_blob_is_eio_through_the_mount(tmp_path: Path, mode: str) -> None:
    require_mode(mode)
    home = tmp_path / "home"
    configure(home)
    create_agent(home, mode)
    with mount_agent(home, tmp_path / "mnt", mode=mode) as mounted:
        (mounted.root / "big.bin").write_bytes(BIG)
        (mounted.root / "lost.bin").write_bytes(BIG[::-1])
        assert (mounted.root / "big.bin").read_bytes() == BIG
    _lose_and_damage(home, "/lost.bin", "/big.bin")
    with mount_agent(home, tmp_path / "mnt", mode=mode) as again:
        for name in ("big.bin", "lost.bin"):
            with pytest.raises(OSError) as info:
                (again.root / name).read_bytes()
            assert info.value.errno == errno.EIO
        with open(again.root / "big.bin", "rb") as f:
            assert f.read(100) == BIG[:100]


def test_doctor_reports_lost_and_damaged_blobs_and_keeps_the_files(home: Path) -> None:
    configure(home)
    with Workspace.create("alice", home) as ws:
        ws.fs.pipe("/big.bin", BIG)
        ws.fs.pipe("/lost.bin", BIG[::-1])
    _lose_and_damage(home, "/lost.bin", "/big.bin")
    found = run_vfs("doctor", "alice", "--json")
    assert found.returncode == 1
    kinds = {(f["kind"], f["detail"]) for f in json.loads(found.stdout)[0]["remaining"]}
    assert kinds == {("missing blob", "/lost.bin"), ("damaged blob", "/big.bin")}
    fixed = run_vfs("doctor", "alice", "--fix", "--json")
    [health] = json.loads(fixed.stdout)
    assert health["repaired"] == ["kept /lost.bin without its lost blobs; marked damaged"]
    assert [f["kind"] for f in health["remaining"]] == ["damaged blob"]  # cannot be repaired
    with Workspace.open("alice", home) as ws:
        for path in ("/lost.bin", "/big.bin"):
            assert ws.files_backend.getxattr(ws.fs.info(path)["ino"], DAMAGED_XATTR)
        assert ws.fs.cat("/lost.bin") == bytes(len(BIG))  # kept, reading as zeros, marked
        assert ws.fs.cat_file("/big.bin", end=DEFAULT_CHUNK_SIZE) == BIG[:DEFAULT_CHUNK_SIZE]


def test_doctor_reports_orphan_blobs_past_the_grace_period_and_fix_deletes_them(
    home: Path,
) -> None:
    configure(home, blob_grace=3600)
    with Workspace.create("alice", home) as ws:
        ws.fs.pipe("/big.bin", BIG)
        ws.fs.pipe("/kept.bin", BIG[::-1])
        ws.fs.rm("/big.bin")
        store = ws.directory / "blobs"
    publications = {p: p.read_bytes() for p in (store / "users").iterdir()}
    assert publications
    assert run_vfs("doctor", "alice").stdout.startswith("ok:")  # young: not orphans yet
    configure(home, blob_grace=0)
    found = run_vfs("doctor", "alice", "--json")
    assert found.returncode == 1
    # A report changes nothing in the store, not even what this home published.
    assert {p: p.read_bytes() for p in (store / "users").iterdir()} == publications
    [orphans] = json.loads(found.stdout)[0]["remaining"]
    assert orphans["kind"] == "orphan blobs" and orphans["detail"].startswith("1 in ")
    fixed = run_vfs("doctor", "alice", "--fix")
    assert fixed.returncode == 0, fixed.stdout
    assert "deleted 1 orphan blobs" in fixed.stdout
    assert len(blob_files(store)) == 1
    assert run_vfs("doctor").stdout.startswith("ok:")
    with Workspace.open("alice", home) as ws:
        assert ws.fs.cat("/kept.bin") == BIG[::-1]


def test_vacuum_collects_unreferenced_blobs_past_the_grace_period(home: Path) -> None:
    configure(home, blob_grace=0)
    with Workspace.create("alice", home) as ws:
        ws.fs.pipe("/big.bin", BIG)
        ws.fs.rm("/big.bin")
        store = ws.directory / "blobs"
    result = run_vfs("vacuum", "alice", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["blobs_deleted"] == 1
    assert blob_files(store) == []


# -- collection racing a writer -----------------------------------------------------


def _write_uncommitted(
    ws: Workspace, data: bytes, written: threading.Event, go: threading.Event
) -> None:
    """Write ``data`` as a file in one transaction that waits for ``go`` before committing."""
    backend = ws.files_backend
    with ws.db.write():
        assert backend.write_file(1, "late.bin", data).size == len(data)  # reuses an old blob
        assert backend.write_file(1, "fresh.bin", FRESH).size == len(FRESH)  # a new blob
        written.set()
        assert go.wait(30)


def test_collection_never_takes_a_blob_whose_row_is_being_committed(home: Path) -> None:
    configure(home, blob_grace=2)
    with Workspace.create("alice", home) as ws:
        store = ws.directory / "blobs"
        # An old, unreferenced blob of the same first chunk: a writer reuses it.
        ws.fs.pipe("/old.bin", BIG)
        ws.fs.rm("/old.bin")
        for path in blob_files(store):
            os.utime(path, (time.time() - 3600, time.time() - 3600))
        written, go = threading.Event(), threading.Event()
        writer = threading.Thread(target=_write_uncommitted, args=(ws, BIG, written, go))
        writer.start()
        assert written.wait(30)
        # Blobs written (or renewed) but the rows not committed: collection spares them.
        for _ in range(2):
            collect_blobs(Registry(home), "alice", delete=True)
        go.set()
        writer.join()
        time.sleep(2.5)
        assert sum(c.deleted for c in collect_blobs(Registry(home), "alice", delete=True)) == 0
        assert ws.fs.cat("/late.bin") == BIG
        assert ws.fs.cat("/fresh.bin") == FRESH


def test_a_writer_killed_between_blob_and_row_leaves_only_orphan_blobs(
    home: Path, tmp_path: Path
) -> None:
    configure(home, blob_grace=0)
    create_agent(home, "sqlite")
    source = tmp_path / "big.bin"
    source.write_bytes(BIG)
    for point in (1,):
        killed = run_vfs("put", str(source), f"alice:/big{point}.bin", kill_after=f"blob:{point}")
        assert killed.returncode == -9, killed.stderr
        with Workspace.open("alice", home) as ws:
            assert not ws.fs.exists(f"/big{point}.bin") or ws.fs.size(f"/big{point}.bin") == 0
        doctor = json.loads(run_vfs("doctor", "alice", "--json").stdout)[0]
        kinds = {f["kind"] for f in doctor["remaining"]}
        # The file being written is a nameless inode until published; its blobs
        # are orphans. No row names a blob that is not there.
        assert kinds <= {"orphan blobs", "nameless files"} and "orphan blobs" in kinds, doctor
        assert run_vfs("doctor", "alice", "--fix").returncode == 0
        assert blob_files(home / "agents" / "alice" / "blobs") == []
    assert run_vfs("put", str(source), "alice:/big.bin").returncode == 0
    assert run_vfs("doctor", "alice").returncode == 0


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ('blob_threshold = "big"', "blob_threshold: must be a number of bytes"),
        ("blob_grace = -1", "blob_grace: must be a number of seconds"),
        ("blob_store = 5", "blob_store: must be a directory or a URL"),
    ],
)
def test_a_bad_blob_setting_is_a_one_line_error(home: Path, setting: str, message: str) -> None:
    Workspace.create("alice", home).close()
    (home / "config.toml").write_text(f"[agents.alice]\n{setting}\n")
    for command in (("ls", "alice:/"), ("doctor",)):
        result = run_vfs(*command)
        assert result.returncode == 1
        assert result.stderr.strip().splitlines() == [
            f"Error: {home / 'config.toml'} [agents.alice] {message}"
        ]


def test_collection_removes_what_a_writer_killed_mid_write_left(home: Path) -> None:
    configure(home, blob_grace=60)
    with Workspace.create("alice", home) as ws:
        ws.fs.pipe("/big.bin", BIG)
        store = ws.directory / "blobs"
    [blob] = blob_files(store)
    left = blob.with_name(blob.name + ".4242-abcd1234.tmp")  # as a killed writer leaves it
    left.write_bytes(b"half a blob")
    young = blob.with_name(blob.name + ".4343-abcd1234.tmp")  # a write still under way
    young.write_bytes(b"being written")
    os.utime(left, (time.time() - 3600, time.time() - 3600))
    [result] = collect_blobs(Registry(home), "alice", delete=True)
    assert result.deleted == 1 and not left.exists()
    assert young.exists() and blob.exists()
    with Workspace.open("alice", home) as ws:
        assert ws.fs.cat("/big.bin") == BIG


def test_a_full_blob_store_is_enospc_and_leaves_no_partial_blob(home: Path, tmp_path: Path) -> None:
    with small_tmpfs(tmp_path / "small", "1m") as store:
        configure(home, blob_store=str(store))
        with Workspace.create("alice", home) as ws:
            ws.fs.pipe("/fits.bin", BIG)
            with pytest.raises(OSError) as info:
                ws.fs.pipe("/too-big.bin", os.urandom(2 << 20))
            assert info.value.errno == errno.ENOSPC
            assert not list(store.rglob("*.tmp"))
            assert not ws.fs.exists("/too-big.bin")
            assert ws.fs.cat("/fits.bin") == BIG
        assert run_vfs("doctor", "alice").returncode == 0
