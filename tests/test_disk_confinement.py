"""Disk mode never reaches outside its root, whatever the path or symlink."""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import vfs.backends.host
from vfs.backends.base import ROOT_INO
from vfs.backends.disk.backend import DiskBackend

Snapshot = dict[str, tuple[int, int, bytes | str | None]]


def snapshot(top: Path) -> Snapshot:
    """Every entry below ``top`` with its mode, mtime and content, symlinks not followed."""
    seen: Snapshot = {str(top): (top.lstat().st_mode, top.lstat().st_mtime_ns, None)}
    for dirpath, dirnames, filenames in os.walk(top):
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            info = path.lstat()
            if stat.S_ISREG(info.st_mode):
                content: bytes | str | None = path.read_bytes()
            elif stat.S_ISLNK(info.st_mode):
                content = os.readlink(path)
            else:
                content = None
            seen[str(path)] = (info.st_mode, info.st_mtime_ns, content)
            seen[str(path) + "#xattrs"] = (
                0,
                0,
                repr(sorted(os.listxattr(path, follow_symlinks=False))),
            )
    return seen


def assert_no_host_path(error: OSError, given: str, host: Path) -> None:
    """The error names only what the caller gave or workspace paths, never a host path."""
    assert str(host) not in str(error.strerror)
    for name in (error.filename, error.filename2):
        if name is not None and name != given:
            assert str(host) not in str(name)


def inodes_inside(root: Path) -> set[int]:
    found = {ROOT_INO}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            found.add(Path(dirpath, name).lstat().st_ino)
    return found


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A sentinel tree next to the workspace that nothing may touch."""
    path = tmp_path / "outside"
    path.mkdir()
    (path / "secret").write_bytes(b"do not read")
    (path / "sub").mkdir()
    return path


@pytest.fixture
def root(tmp_path: Path, outside: Path) -> Path:
    """A workspace whose symlinks point out of it in every spelling, and some inside."""
    path = tmp_path / "ws"
    (path / "deep" / "er").mkdir(parents=True)
    (path / "file").write_bytes(b"inside")
    (path / "abs").symlink_to(outside)
    (path / "abs_file").symlink_to(outside / "secret")
    (path / "rel").symlink_to("../outside")
    (path / "deep" / "up").symlink_to("../../outside")
    (path / "deep" / "er" / "upup").symlink_to("../../../outside/sub")
    (path / "inner").symlink_to("deep")
    (path / "loop").symlink_to("loop")
    return path


@pytest.fixture
def backend(root: Path) -> Iterator[DiskBackend]:
    disk = DiskBackend(root)
    yield disk
    disk.close()


TRICKY: tuple[str, ...] = (
    "..",
    ".",
    "",
    "abs",
    "abs_file",
    "rel",
    "deep",
    "er",
    "up",
    "upup",
    "inner",
)
TRICKY += ("loop", "file", "secret", "sub", "outside", "ws", "new", "\0", "é", "../..", "//")
SEGMENTS = st.one_of(
    st.sampled_from(TRICKY),
    st.text(max_size=6),
)
PATHS = st.builds(
    lambda prefix, parts: prefix + "/".join(parts),
    st.sampled_from(["", "/", "//", "./", "../", "/../../", "OUTSIDE/"]),
    st.lists(SEGMENTS, max_size=6),
)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(path=PATHS)
def test_any_path_resolves_inside_the_root_or_fails_cleanly(
    backend: DiskBackend, root: Path, outside: Path, path: str
) -> None:
    path = path.replace("OUTSIDE/", str(outside) + "/")
    before = snapshot(outside)
    inside = inodes_inside(root)
    for follow in (False, True):
        try:
            attr = backend.resolve(path, follow=follow)
        except OSError as error:
            assert error.errno is not None
            assert_no_host_path(error, path, outside.parent)
        else:
            assert attr.ino in inside
    try:
        parent, name = backend.resolve_parent(path)
    except OSError as error:
        assert_no_host_path(error, path, outside.parent)
    else:
        assert parent in inside
        try:
            handle, attr = backend.create(parent, name, 0o644)
        except OSError:
            pass
        else:
            handle.write(0, b"created")
            handle.close()
            assert attr.ino in inodes_inside(root)
            backend.unlink(parent, name)
    assert snapshot(outside) == before


def test_symlinks_to_outside_are_never_followed_by_inode_operations(
    backend: DiskBackend, outside: Path
) -> None:
    before = snapshot(outside)
    outside_inodes = {outside.stat().st_ino, (outside / "secret").stat().st_ino}
    for name in ("abs", "abs_file", "rel"):
        link = backend.lookup(ROOT_INO, name)
        assert link.is_link and link.ino not in outside_inodes
        assert backend.getattr(link.ino) == link
        with pytest.raises(OSError) as caught:
            backend.open(link.ino)
        assert caught.value.errno == errno.ELOOP
        for change in (
            lambda ino: backend.create(ino, "planted", 0o644),
            lambda ino: backend.mkdir(ino, "planted", 0o755),
            lambda ino: backend.lookup(ino, "secret"),
            lambda ino: list(backend.readdir(ino)),
            lambda ino: backend.tmpfile(ino),
        ):
            with pytest.raises(NotADirectoryError):
                change(link.ino)
        with pytest.raises(OSError):
            backend.setattr(link.ino, size=0)
        with pytest.raises(OSError):
            backend.setxattr(link.ino, b"user.planted", b"1")
        backend.setattr(link.ino, mode=0o600, mtime_ns=1_000)  # the link itself, if anything
        assert backend.getattr(link.ino).mtime_ns == 1_000
    assert snapshot(outside) == before


@pytest.mark.parametrize(
    "path", ["abs/secret", "rel/secret", "deep/up/secret", "deep/er/upup/x", "abs_file"]
)
def test_paths_through_escaping_symlinks_are_refused(
    backend: DiskBackend, outside: Path, path: str
) -> None:
    before = snapshot(outside)
    with pytest.raises(PermissionError) as caught:
        backend.resolve(path, follow=True)
    assert "outside the workspace" in str(caught.value)
    with pytest.raises(OSError):
        backend.resolve_parent(path + "/planted")
    assert snapshot(outside) == before


def test_symlinks_inside_the_tree_are_followed_inside(backend: DiskBackend, root: Path) -> None:
    assert backend.resolve("inner/er", follow=True).ino == (root / "deep" / "er").stat().st_ino
    with pytest.raises(OSError) as caught:
        backend.resolve("loop/x")
    assert caught.value.errno == errno.ELOOP


ReplaceDir = Callable[[Path, Path], None]


def _swap_for_absolute_link(directory: Path, outside: Path) -> None:
    directory.rename(directory.with_name("moved-away"))
    directory.symlink_to(outside)


def _swap_for_relative_link(directory: Path, outside: Path) -> None:
    directory.rename(directory.with_name("moved-away"))
    directory.symlink_to(os.path.relpath(outside, directory.parent))


@pytest.mark.parametrize("swap", [_swap_for_absolute_link, _swap_for_relative_link])
@pytest.mark.parametrize("without_openat2", [False, True])
def test_directory_replaced_by_an_escaping_symlink_after_lookup_is_not_followed(
    root: Path,
    outside: Path,
    swap: ReplaceDir,
    without_openat2: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if without_openat2:  # the fallback that walks one name at a time
        monkeypatch.setattr(vfs.backends.host, "openat2_available", False)
    disk = DiskBackend(root)
    directory = disk.resolve("deep")
    inner = disk.resolve("deep/er")
    (outside / "er").mkdir()
    before = snapshot(outside)
    swap(root / "deep", outside)

    attempts: list[Callable[[], object]] = [
        lambda: disk.create(directory.ino, "planted", 0o644),
        lambda: disk.mkdir(directory.ino, "planted", 0o755),
        lambda: disk.symlink(directory.ino, "planted", b"x"),
        lambda: disk.lookup(directory.ino, "secret"),
        lambda: list(disk.readdir(directory.ino)),
        lambda: disk.unlink(directory.ino, "up"),
        lambda: disk.setxattr(directory.ino, b"user.planted", b"1"),
        lambda: disk.setattr(directory.ino, mode=0o777),
        lambda: disk.create(inner.ino, "planted", 0o644),
        lambda: disk.getattr(inner.ino),
        lambda: disk.tmpfile(inner.ino),
        lambda: disk.rename(inner.ino, "x", ROOT_INO, "y"),
    ]
    for attempt in attempts:
        with pytest.raises((FileNotFoundError, PermissionError)) as caught:
            attempt()
        assert str(outside) not in str(caught.value)
    assert snapshot(outside) == before
    disk.close()


def test_escape_through_a_learnt_path_names_the_workspace_path(
    backend: DiskBackend, root: Path, outside: Path
) -> None:
    inner = backend.resolve("deep/er")
    (root / "deep").rename(root / "moved-away")
    (root / "deep").symlink_to(outside)
    with pytest.raises(PermissionError) as caught:
        backend.getattr(inner.ino)
    assert caught.value.errno == errno.EACCES
    assert caught.value.filename == "deep/er"
    assert "escapes the workspace" in str(caught.value)


def test_names_that_are_not_single_entries_are_refused(backend: DiskBackend) -> None:
    for name in ("..", ".", "", "a/b", "a\0b", "../outside"):
        with pytest.raises(OSError) as caught:
            backend.create(ROOT_INO, name, 0o644)
        assert caught.value.errno == errno.EINVAL
        with pytest.raises(OSError):
            backend.lookup(ROOT_INO, name)
    with pytest.raises(OSError) as caught:
        backend.rename(ROOT_INO, "file", ROOT_INO, "../escaped")
    assert caught.value.errno == errno.EINVAL


def test_symlink_creation_stores_any_target_but_never_follows_it(
    backend: DiskBackend, outside: Path
) -> None:
    link = backend.symlink(ROOT_INO, "made", os.fsencode(outside))
    with pytest.raises(PermissionError):
        backend.resolve("made/secret")
    with pytest.raises(OSError):
        backend.open(link.ino, os.O_WRONLY | os.O_TRUNC)
    assert (outside / "secret").read_bytes() == b"do not read"


@pytest.mark.parametrize(
    "path", ["abs/secret", "rel/secret", "deep/up/secret", "abs_file", "inner/up/secret"]
)
def test_whole_file_reads_through_escaping_symlinks_are_refused(
    backend: DiskBackend, path: str
) -> None:
    with pytest.raises(PermissionError):
        backend.read_file(path)


def test_whole_file_reads_follow_symlinks_inside_and_refuse_what_is_not_a_file(
    backend: DiskBackend, root: Path
) -> None:
    (root / "deep" / "er" / "note").write_bytes(b"kept")
    (root / "to_note").symlink_to("deep/er/note")
    assert backend.read_file("inner/er/note") == b"kept"
    assert backend.read_file("to_note") == b"kept"
    assert backend.read_file("/file") == b"inside"
    with pytest.raises(IsADirectoryError):
        backend.read_file("deep")
    os.mkfifo(root / "pipe")
    with pytest.raises(OSError):  # refused at once: opening a FIFO must not wait for a writer
        backend.read_file("pipe")
    (root / ".agentvfs-tmp-1-abc").write_bytes(b"unpublished")
    with pytest.raises(FileNotFoundError):
        backend.read_file(".agentvfs-tmp-1-abc")
    with pytest.raises(FileNotFoundError):
        backend.resolve("deep/.agentvfs-tmp-1-abc")


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(path=PATHS)
def test_whole_file_writes_by_any_path_land_inside_the_root_or_are_left_to_the_walk(
    backend: DiskBackend, root: Path, outside: Path, path: str
) -> None:
    path = path.replace("OUTSIDE/", str(outside) + "/")
    before = snapshot(outside)
    try:
        attr = backend.write_plain(path, b"written")
    except OSError as error:
        assert_no_host_path(error, path, outside.parent)
    else:
        if attr is not None:
            assert attr.ino in inodes_inside(root)
            assert backend.read_file(path) == b"written"
    assert snapshot(outside) == before
    assert not [p for p in root.rglob("*") if p.name.startswith(".agentvfs-tmp-")]


@pytest.mark.parametrize("path", ["abs/secret", "rel/secret", "deep/up/secret", "abs_file"])
def test_whole_file_writes_through_escaping_symlinks_are_refused(
    backend: DiskBackend, outside: Path, path: str
) -> None:
    before = snapshot(outside)
    assert backend.write_plain(path, b"planted") is None  # left to the walk, which refuses
    with pytest.raises(PermissionError):
        backend.resolve_parent(path, follow=True)
    assert snapshot(outside) == before
