"""The disk-mode backend against a real directory: every interface operation."""

from __future__ import annotations

import errno
import os
import random
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import xxhash

from tests.helpers import REPO
from vfs.backends.base import ROOT_INO, Attr
from vfs.backends.disk.backend import (
    HOST_INO_ONE,
    RENAME_EXCHANGE,
    TEMP_PREFIX,
    DiskBackend,
)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "ws"
    path.mkdir()
    return path


@pytest.fixture
def backend(root: Path) -> Iterator[DiskBackend]:
    disk = DiskBackend(root)
    yield disk
    disk.close()


def write_file(backend: DiskBackend, path: str, data: bytes) -> Attr:
    parent, name = backend.resolve_parent(path)
    handle, attr = backend.create(parent, name, 0o644)
    with handle:
        handle.write(0, data)
    return attr


def read_file(backend: DiskBackend, path: str) -> bytes:
    with backend.open(backend.resolve(path).ino) as handle:
        return handle.read(0, 1 << 30)


def names(backend: DiskBackend, path: str = "") -> list[str]:
    return sorted(name for name, _attr, _offset in backend.readdir(backend.resolve(path).ino))


# -- attributes and inodes ---------------------------------------------------------


def test_root_is_inode_one_and_other_inodes_are_host_inodes(
    backend: DiskBackend, root: Path
) -> None:
    assert backend.getattr(ROOT_INO).ino == ROOT_INO
    assert backend.getattr(ROOT_INO).is_dir
    write_file(backend, "a.txt", b"abc")
    attr = backend.lookup(ROOT_INO, "a.txt")
    host = os.lstat(root / "a.txt")
    assert attr.ino == host.st_ino
    assert (attr.size, attr.mode, attr.mtime_ns) == (3, host.st_mode, host.st_mtime_ns)
    assert backend.getattr(attr.ino) == backend.resolve("a.txt")


def test_host_inode_one_is_reported_under_a_reserved_number(backend: DiskBackend) -> None:
    class FakeStat:
        st_dev, st_ino = -1, 1

    assert backend._ino_of(FakeStat()) == HOST_INO_ONE  # type: ignore[arg-type]


def test_files_changed_behind_the_backend_are_seen(backend: DiskBackend, root: Path) -> None:
    (root / "outside-edit.txt").write_bytes(b"written by another program")
    assert read_file(backend, "outside-edit.txt") == b"written by another program"


def test_inode_whose_paths_all_went_stale_is_not_found(backend: DiskBackend, root: Path) -> None:
    attr = write_file(backend, "old.txt", b"x")
    os.rename(root / "old.txt", root / "moved-by-someone-else.txt")
    with pytest.raises(FileNotFoundError):
        backend.getattr(attr.ino)
    # a fresh lookup learns the new name
    assert backend.lookup(ROOT_INO, "moved-by-someone-else.txt").ino == attr.ino
    assert backend.getattr(attr.ino).size == 1


def test_forget_drops_the_inode_until_it_is_looked_up_again(backend: DiskBackend) -> None:
    attr = write_file(backend, "f", b"x")
    backend.forget(attr.ino)
    with pytest.raises(FileNotFoundError):
        backend.getattr(attr.ino)
    assert backend.lookup(ROOT_INO, "f").ino == attr.ino


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another owner needs root")
def test_setattr_changes_mode_owner_size_and_times(backend: DiskBackend, root: Path) -> None:
    attr = write_file(backend, "f", b"0123456789")
    changed = backend.setattr(
        attr.ino, mode=stat.S_IFDIR | 0o600, uid=1234, gid=4321, atime_ns=1_000, mtime_ns=2_000
    )
    host = os.lstat(root / "f")
    assert stat.S_ISREG(host.st_mode) and stat.S_IMODE(host.st_mode) == 0o600
    assert (host.st_uid, host.st_gid) == (1234, 4321)
    assert (host.st_atime_ns, host.st_mtime_ns) == (1_000, 2_000)
    assert changed == backend.getattr(attr.ino)
    assert backend.setattr(attr.ino, size=4).size == 4
    assert read_file(backend, "f") == b"0123"


# -- content -----------------------------------------------------------------------


def test_sparse_write_reads_zeros_in_the_hole(backend: DiskBackend, root: Path) -> None:
    parent, name = backend.resolve_parent("sparse")
    handle, _ = backend.create(parent, name, 0o644)
    with handle:
        handle.write(10 << 20, b"end")
    assert os.stat(root / "sparse").st_size == (10 << 20) + 3
    assert os.stat(root / "sparse").st_blocks * 512 < 1 << 20  # the hole takes no space
    with backend.open(backend.resolve("sparse").ino) as reader:
        assert reader.read(5 << 20, 4) == b"\0" * 4
        assert reader.read(10 << 20, 10) == b"end"


def test_write_through_a_read_only_open_upgrades_the_descriptor(backend: DiskBackend) -> None:
    attr = write_file(backend, "f", b"abc")
    with backend.open(attr.ino) as handle:
        handle.write(1, b"X")
        assert handle.read(0, 3) == b"aXc"


def test_checksum_is_xxh3_128_of_the_content(backend: DiskBackend) -> None:
    data = os.urandom(3 << 20)
    attr = write_file(backend, "big", data)
    assert backend.checksum(attr.ino) == xxhash.xxh3_128_hexdigest(data)


# -- directories and names -------------------------------------------------------------


def test_mkdir_sets_the_exact_mode_without_umask(backend: DiskBackend, root: Path) -> None:
    old = os.umask(0o077)
    try:
        attr = backend.mkdir(ROOT_INO, "d", 0o775)
        handle, file_attr = backend.create(attr.ino, "f", 0o664)
        handle.close()
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(root / "d").st_mode) == 0o775
    assert stat.S_IMODE(os.stat(root / "d" / "f").st_mode) == 0o664
    assert attr.is_dir and file_attr.is_file


def test_lookup_of_a_missing_name_names_the_workspace_path(backend: DiskBackend) -> None:
    directory = backend.mkdir(ROOT_INO, "d", 0o755)
    with pytest.raises(FileNotFoundError) as caught:
        backend.lookup(directory.ino, "missing")
    assert caught.value.filename == "d/missing"


def test_symlinks_are_host_symlinks(backend: DiskBackend, root: Path) -> None:
    attr = backend.symlink(ROOT_INO, "link", b"does/not/exist")
    assert os.readlink(root / "link") == "does/not/exist"
    os.symlink("made/on/the/host", root / "host-link")
    assert backend.readlink(backend.lookup(ROOT_INO, "host-link").ino) == b"made/on/the/host"
    assert backend.readlink(attr.ino) == b"does/not/exist"


def test_inodes_learnt_under_exchanged_names_follow_the_swap(backend: DiskBackend) -> None:
    write_file(backend, "f", b"file")
    directory = backend.mkdir(ROOT_INO, "d", 0o755)
    inner = backend.create(directory.ino, "inner", 0o644)[1]
    backend.rename(ROOT_INO, "f", ROOT_INO, "d", RENAME_EXCHANGE)
    assert backend._find(inner.ino).rel == "f/inner"
    assert backend.getattr(inner.ino).ino == inner.ino


def test_rename_of_a_directory_keeps_its_children_reachable(backend: DiskBackend) -> None:
    top = backend.mkdir(ROOT_INO, "top", 0o755)
    middle = backend.mkdir(top.ino, "middle", 0o755)
    leaf = write_file(backend, "top/middle/leaf", b"leaf")
    other = backend.mkdir(ROOT_INO, "other", 0o755)
    backend.rename(ROOT_INO, "top", other.ino, "renamed")
    assert backend.getattr(leaf.ino).size == 4
    assert backend._find(leaf.ino).rel == "other/renamed/middle/leaf"
    with backend.open(leaf.ino) as handle:
        assert handle.read(0, 10) == b"leaf"
    handle, _ = backend.create(middle.ino, "new", 0o644)
    handle.close()
    assert names(backend, "other/renamed/middle") == ["leaf", "new"]


# -- xattrs --------------------------------------------------------------------------


def test_xattrs_are_the_host_files_xattrs(backend: DiskBackend, root: Path) -> None:
    attr = write_file(backend, "f", b"")
    backend.setxattr(attr.ino, b"user.color", b"blue")
    assert os.getxattr(root / "f", "user.color") == b"blue"
    os.setxattr(root / "f", "user.host", b"set on the host")
    assert backend.getxattr(attr.ino, b"user.host") == b"set on the host"
    backend.removexattr(attr.ino, b"user.color")
    with pytest.raises(OSError) as caught:
        backend.getxattr(attr.ino, b"user.color")
    assert caught.value.errno == errno.ENODATA
    assert caught.value.filename == "f"


# -- readdir -----------------------------------------------------------------------------


def test_readdir_skips_entries_removed_after_the_listing(backend: DiskBackend, root: Path) -> None:
    for name in ("a", "b", "c"):
        write_file(backend, name, b"")
    listing = backend.readdir(ROOT_INO)
    first = next(listing)[0]
    for name in {"a", "b", "c"} - {first}:
        (root / name).unlink()
    assert list(listing) == []


# -- tmpfile / publish -----------------------------------------------------------------


def test_tmpfile_is_never_listed_and_publish_replaces_atomically(
    backend: DiskBackend, root: Path
) -> None:
    write_file(backend, "doc", b"old version")
    reader = backend.open(backend.resolve("doc").ino)
    temp = backend.tmpfile(ROOT_INO, 0o640)
    temp.write(0, b"new version, longer")
    assert any(n.startswith(TEMP_PREFIX) for n in os.listdir(root))
    assert names(backend) == ["doc"]
    assert read_file(backend, "doc") == b"old version"
    attr = backend.publish(temp, ROOT_INO, "doc")
    temp.close()
    assert read_file(backend, "doc") == b"new version, longer"
    assert stat.S_IMODE(attr.mode) == 0o640
    assert os.listdir(root) == ["doc"]
    assert reader.read(0, 100) == b"old version"  # an open reader keeps the old inode
    reader.close()


def test_tmpfile_closed_without_publish_leaves_nothing(backend: DiskBackend, root: Path) -> None:
    temp = backend.tmpfile(ROOT_INO)
    temp.write(0, b"abandoned")
    temp.close()
    assert os.listdir(root) == []


def test_temp_names_cannot_be_looked_up_or_created(backend: DiskBackend) -> None:
    temp = backend.tmpfile(ROOT_INO)
    with pytest.raises(FileNotFoundError):
        backend.lookup(ROOT_INO, os.path.basename(temp.path))  # type: ignore[attr-defined]
    with pytest.raises(OSError) as caught:
        backend.create(ROOT_INO, TEMP_PREFIX + "mine", 0o644)
    assert caught.value.errno == errno.EINVAL
    temp.close()


def test_stale_temp_files_of_dead_processes_are_removed(backend: DiskBackend, root: Path) -> None:
    (root / f"{TEMP_PREFIX}999999999-dead").write_bytes(b"debris")
    live = backend.tmpfile(ROOT_INO)
    assert backend.reclaim_orphans() == 1
    assert [n for n in os.listdir(root) if n.startswith(TEMP_PREFIX)] == [
        os.path.basename(live.path)  # type: ignore[attr-defined]
    ]
    live.close()


# -- statfs, read-only, workspace ----------------------------------------------------------


def test_statfs_reports_the_host_filesystem(backend: DiskBackend, root: Path) -> None:
    info = backend.statfs()
    host = os.statvfs(root)
    assert info.name_max == host.f_namemax
    assert info.blocks == host.f_blocks and info.files == host.f_files


def test_closed_backend_refuses_calls_with_ebadf(root: Path) -> None:
    disk = DiskBackend(root)
    disk.close()
    with pytest.raises(OSError) as caught:
        disk.getattr(ROOT_INO)
    assert caught.value.errno == errno.EBADF


def test_disk_workspace_stores_files_in_its_directory(make_workspace) -> None:  # type: ignore[no-untyped-def]
    ws = make_workspace("disk")
    assert isinstance(ws.files_backend, DiskBackend)
    write_file(ws.files_backend, "hello.txt", b"hi")
    assert (ws.record.workspace / "hello.txt").read_bytes() == b"hi"


# -- crash safety ----------------------------------------------------------------------

PUBLISHER = r"""
import sys
from pathlib import Path
from vfs.backends.base import ROOT_INO
from vfs.backends.disk.backend import DiskBackend

def version(number, name):
    body = f"{name}:{number:08d};".encode() * (2000 + number % 97)
    return f"{number:08d}\n".encode() + body

disk = DiskBackend(Path(sys.argv[1]))
number = int(sys.argv[2])
while True:
    for name in ("a", "b", "c"):
        temp = disk.tmpfile(ROOT_INO)
        data = version(number, name)
        for start in range(0, len(data), 4096):  # many writes: a kill lands mid-file
            temp.write(start, data[start : start + 4096])
        disk.publish(temp, ROOT_INO, name)
        temp.close()
    if number % 1000 == 0 or number == int(sys.argv[2]):
        print("published", number, flush=True)
    number += 1
"""


def _version(number: int, name: str) -> bytes:
    body = f"{name}:{number:08d};".encode() * (2000 + number % 97)
    return f"{number:08d}\n".encode() + body


def test_sigkill_while_publishing_leaves_one_complete_version_per_file(root: Path) -> None:
    last_seen = {name: -1 for name in "abc"}
    killed_mid_write = 0
    for round_ in range(4):
        start = (round_ + 1) * 1000
        process = subprocess.Popen(
            [sys.executable, "-c", PUBLISHER, str(root), str(start)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert process.stdout is not None
        assert process.stdout.readline().startswith("published")
        time.sleep(random.uniform(0.05, 0.3))
        process.send_signal(signal.SIGKILL)
        process.wait()
        process.stdout.close()

        disk = DiskBackend(root)
        assert names(disk) == ["a", "b", "c"]
        for name in "abc":
            content = read_file(disk, name)
            number = int(content[:8])
            assert content == _version(number, name)  # whole, never a mix
            assert number >= start and number > last_seen[name]
            last_seen[name] = number
        removed = disk.reclaim_orphans()  # the file being written at the kill
        assert removed <= 1
        killed_mid_write += removed
        assert sorted(os.listdir(root)) == ["a", "b", "c"]
        disk.close()
    assert killed_mid_write > 0  # the kills did land inside a write
