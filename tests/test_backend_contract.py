"""The ``Backend`` interface (backends/base.py) as every mode implements it, without FUSE.

Each test runs against four workspaces: sqlite, disk, hybrid with the starting
tree written through the overlay (so it lives in the database), and hybrid with
the starting tree as the disk lower layer (so every operation starts from a
lower file or directory). The FUSE tests check the same rules through the
kernel; these check the engines directly.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from vfs import Workspace
from vfs.backends.base import ROOT_INO, Attr, Backend

# Linux's renameat2(2) flags, which the interface takes as they are.
RENAME_NOREPLACE = 1
RENAME_EXCHANGE = 2
LONG_NAME = "n" * 256  # one byte over NAME_MAX

#: a starting tree: path -> file content, or None for a directory (parents first)
Tree = dict[str, bytes | None]
Given = Callable[..., Backend]

_NOREPLACE_SAME_INODE = (
    "hybrid rename returns early when both names are one inode, before it checks"
    " RENAME_NOREPLACE (renameat2 gives EEXIST)"
)
_BOTH_RENAME_FLAGS = (
    "sqlite rename (and hybrid through it) takes RENAME_EXCHANGE | RENAME_NOREPLACE"
    " as an exchange instead of refusing the pair with EINVAL"
)
_LOWER_DIR_NLINK = (
    "hybrid: a directory's nlink in the upper layer (the root always is) does not"
    " count its lower subdirectories, and rmdir of a lower subdirectory does not"
    " lower its parent's count"
)
#: engine bugs these tests found: (test, mode) -> what is wrong
KNOWN_BUGS = {
    ("test_rename_noreplace_onto_another_name_of_the_same_inode_is_eexist", "hybrid"): (
        _NOREPLACE_SAME_INODE
    ),
    ("test_rename_noreplace_onto_another_name_of_the_same_inode_is_eexist", "hybrid-lower"): (
        _NOREPLACE_SAME_INODE
    ),
    ("test_rename_with_both_noreplace_and_exchange_is_einval", "sqlite"): _BOTH_RENAME_FLAGS,
    ("test_rename_with_both_noreplace_and_exchange_is_einval", "hybrid"): _BOTH_RENAME_FLAGS,
    ("test_rename_with_both_noreplace_and_exchange_is_einval", "hybrid-lower"): (
        _BOTH_RENAME_FLAGS
    ),
    ("test_the_root_counts_its_subdirectories", "hybrid-lower"): _LOWER_DIR_NLINK,
    ("test_a_directory_counts_itself_its_parent_entry_and_its_subdirectories", "hybrid-lower"): (
        _LOWER_DIR_NLINK
    ),
    ("test_enoent_for_creating_in_a_removed_directory", "hybrid-lower"): (
        "hybrid create/mkdir through the inode of a removed lower directory succeeds"
        " and brings the directory back into its parent's listing"
    ),
    ("test_lookup_in_a_file_is_enotdir", "sqlite"): (
        "sqlite lookup under a non-directory inode says ENOENT, not ENOTDIR"
    ),
    ("test_lookup_in_a_file_is_enotdir", "hybrid-lower"): (
        "hybrid lookup under a lower file says ENOENT, not ENOTDIR"
    ),
    ("test_lookup_of_a_name_over_255_bytes_is_enametoolong", "sqlite"): (
        "sqlite lookup does not check the name's length and says ENOENT"
    ),
}


def _write_host(root: Path, tree: Tree) -> None:
    for path, data in tree.items():
        if data is None:
            (root / path).mkdir()
        else:
            (root / path).write_bytes(data)


def _write_through(backend: Backend, tree: Tree) -> None:
    for path, data in tree.items():
        parent, name = backend.resolve_parent(path)
        if data is None:
            backend.mkdir(parent, name, 0o755)
        else:
            handle, _attr = backend.create(parent, name, 0o644)
            with handle:
                handle.write(0, data)


@pytest.fixture(params=["sqlite", "disk", "hybrid", "hybrid-lower"])
def given(request: pytest.FixtureRequest, home: Path, tmp_path: Path) -> Iterator[Given]:
    """``given(tree, read_only=False)``: the mode's backend, holding ``tree``."""
    mode = request.param
    bug = KNOWN_BUGS.get((request.node.originalname, mode))
    if bug is not None:
        request.applymarker(pytest.mark.xfail(strict=True, reason=bug))
    opened: list[Workspace] = []

    def make(tree: Tree | None = None, *, read_only: bool = False) -> Backend:
        tree = tree or {}
        lower = tmp_path / "tree"
        lower.mkdir()
        if mode == "hybrid-lower":
            _write_host(lower, tree)
            opened.append(Workspace.create("alice", home, mode="hybrid", workspace=lower))
        else:
            where = lower if mode != "sqlite" else None
            opened.append(Workspace.create("alice", home, mode=mode, workspace=where))
            _write_through(opened[-1].files_backend, tree)
        if read_only:
            opened.pop().close()
            opened.append(Workspace.open("alice", home, read_only=True))
        return opened[-1].files_backend

    yield make
    for ws in opened:
        ws.close()


def fails(code: int, call: Callable[[], object]) -> OSError:
    with pytest.raises(OSError) as caught:
        call()
    assert caught.value.errno == code, (
        f"{errno.errorcode.get(caught.value.errno or 0)}: {caught.value}"
    )
    return caught.value


def ino(backend: Backend, path: str) -> int:
    return backend.resolve(path).ino


def ls(backend: Backend, path: str = "") -> list[str]:
    return sorted(name for name, _attr, _offset in backend.readdir(ino(backend, path)))


def cat(backend: Backend, path: str) -> bytes:
    return backend.read_file(path)


def put(backend: Backend, path: str, data: bytes) -> Attr:
    parent, name = backend.resolve_parent(path)
    handle, attr = backend.create(parent, name, 0o644)
    with handle:
        handle.write(0, data)
    return attr


# -- rename ------------------------------------------------------------------------------


def test_rename_over_an_existing_file_replaces_it(given: Given) -> None:
    b = given({"d": None, "d/new": b"new", "d/old": b"old"})
    moved = ino(b, "d/new")
    b.rename(ino(b, "d"), "new", ino(b, "d"), "old")
    assert ls(b, "d") == ["old"]
    assert ino(b, "d/old") == moved
    assert cat(b, "d/old") == b"new"


def test_rename_across_directories_moves_the_subtree(given: Given) -> None:
    b = given({"a": None, "a/sub": None, "a/sub/f": b"leaf", "b": None})
    leaf = ino(b, "a/sub/f")
    b.rename(ino(b, "a"), "sub", ino(b, "b"), "moved")
    assert ls(b, "a") == [] and ls(b, "b") == ["moved"]
    assert ino(b, "b/moved/f") == leaf
    assert cat(b, "b/moved/f") == b"leaf"
    assert b.getattr(ino(b, "a")).nlink == 2 and b.getattr(ino(b, "b")).nlink == 3


def test_rename_of_a_directory_over_an_empty_directory_replaces_it(given: Given) -> None:
    b = given({"src": None, "src/f": b"x", "empty": None})
    moved = ino(b, "src")
    b.rename(ROOT_INO, "src", ROOT_INO, "empty")
    assert ino(b, "empty") == moved
    assert ls(b, "empty") == ["f"]
    fails(errno.ENOENT, lambda: b.lookup(ROOT_INO, "src"))


def test_rename_of_a_directory_over_a_non_empty_directory_is_enotempty(given: Given) -> None:
    b = given({"src": None, "full": None, "full/f": b"x"})
    fails(errno.ENOTEMPTY, lambda: b.rename(ROOT_INO, "src", ROOT_INO, "full"))
    assert ls(b, "full") == ["f"] and b.lookup(ROOT_INO, "src").is_dir


def test_rename_of_a_directory_into_itself_is_einval(given: Given) -> None:
    b = given({"top": None, "top/mid": None})
    fails(errno.EINVAL, lambda: b.rename(ROOT_INO, "top", ino(b, "top"), "inside"))
    fails(errno.EINVAL, lambda: b.rename(ROOT_INO, "top", ino(b, "top/mid"), "deeper"))
    assert ls(b, "top") == ["mid"]


def test_rename_of_a_file_over_a_directory_is_eisdir(given: Given) -> None:
    b = given({"f": b"x", "d": None})
    fails(errno.EISDIR, lambda: b.rename(ROOT_INO, "f", ROOT_INO, "d"))
    assert cat(b, "f") == b"x"


def test_rename_of_a_directory_over_a_file_is_enotdir(given: Given) -> None:
    b = given({"f": b"x", "d": None})
    fails(errno.ENOTDIR, lambda: b.rename(ROOT_INO, "d", ROOT_INO, "f"))
    assert cat(b, "f") == b"x"


def test_rename_onto_another_name_of_the_same_inode_changes_nothing(given: Given) -> None:
    b = given({"a": b"x", "d": None})
    b.link(ino(b, "a"), ROOT_INO, "b")
    b.rename(ROOT_INO, "a", ROOT_INO, "b")  # POSIX: both names stay
    b.rename(ROOT_INO, "a", ROOT_INO, "a")
    b.rename(ROOT_INO, "d", ROOT_INO, "d")
    assert ls(b) == ["a", "b", "d"]
    assert b.getattr(ino(b, "a")).nlink == 2


def test_rename_of_a_missing_name_is_enoent(given: Given) -> None:
    b = given({"f": b"x"})
    fails(errno.ENOENT, lambda: b.rename(ROOT_INO, "missing", ROOT_INO, "g"))


def test_rename_noreplace_refuses_an_existing_target(given: Given) -> None:
    b = given({"a": b"A", "b": b"B"})
    fails(errno.EEXIST, lambda: b.rename(ROOT_INO, "a", ROOT_INO, "b", RENAME_NOREPLACE))
    b.rename(ROOT_INO, "a", ROOT_INO, "c", RENAME_NOREPLACE)
    assert ls(b) == ["b", "c"]
    assert (cat(b, "b"), cat(b, "c")) == (b"B", b"A")


def test_rename_noreplace_onto_another_name_of_the_same_inode_is_eexist(given: Given) -> None:
    b = given({"a": b"A"})
    b.link(ino(b, "a"), ROOT_INO, "b")
    fails(errno.EEXIST, lambda: b.rename(ROOT_INO, "a", ROOT_INO, "b", RENAME_NOREPLACE))


def test_rename_exchange_swaps_a_file_and_a_directory(given: Given) -> None:
    b = given({"p": None, "p/f": b"file", "p/d": None, "p/d/inner": b"in", "e": None})
    p, f, d = ino(b, "p"), ino(b, "p/f"), ino(b, "p/d")
    b.rename(p, "f", p, "d", RENAME_EXCHANGE)
    assert (ino(b, "p/d"), ino(b, "p/f")) == (f, d)
    assert cat(b, "p/d") == b"file" and cat(b, "p/f/inner") == b"in"
    # across directories, the link counts of both parents follow the directory
    handle, _attr = b.create(ino(b, "e"), "g", 0o644)
    handle.close()
    b.rename(p, "f", ino(b, "e"), "g", RENAME_EXCHANGE)
    assert cat(b, "e/g/inner") == b"in" and cat(b, "p/f") == b""
    assert (b.getattr(p).nlink, b.getattr(ino(b, "e")).nlink) == (2, 3)


def test_rename_exchange_needs_both_names(given: Given) -> None:
    b = given({"a": b"A"})
    fails(errno.ENOENT, lambda: b.rename(ROOT_INO, "a", ROOT_INO, "nothing", RENAME_EXCHANGE))
    assert cat(b, "a") == b"A"


def test_rename_exchange_of_a_directory_with_its_own_descendant_is_einval(given: Given) -> None:
    b = given({"top": None, "top/child": None})
    fails(
        errno.EINVAL,
        lambda: b.rename(ROOT_INO, "top", ino(b, "top"), "child", RENAME_EXCHANGE),
    )


def test_rename_with_both_noreplace_and_exchange_is_einval(given: Given) -> None:
    b = given({"a": b"A", "b": b"B"})
    both = RENAME_NOREPLACE | RENAME_EXCHANGE
    fails(errno.EINVAL, lambda: b.rename(ROOT_INO, "a", ROOT_INO, "b", both))
    assert (cat(b, "a"), cat(b, "b")) == (b"A", b"B")


def test_an_open_file_renamed_over_keeps_its_content(given: Given) -> None:
    b = given({"old": b"old content", "new": b"new"})
    with b.open(ino(b, "old")) as handle:
        b.rename(ROOT_INO, "new", ROOT_INO, "old")
        assert handle.read(0, 100) == b"old content"
    assert cat(b, "old") == b"new"


# -- hard links and link counts ---------------------------------------------------------------


def test_hard_links_share_one_inode_and_count_names(given: Given) -> None:
    b = given({"a": b"shared", "d": None})
    first = ino(b, "a")
    linked = b.link(first, ino(b, "d"), "b")
    assert linked.ino == first and linked.nlink == 2
    assert b.getattr(first).nlink == 2
    with b.open(first, os.O_WRONLY) as handle:
        handle.write(0, b"SHARED")
    assert cat(b, "d/b") == b"SHARED"
    b.unlink(ROOT_INO, "a")
    assert b.getattr(ino(b, "d/b")).nlink == 1
    assert cat(b, "d/b") == b"SHARED"


def test_a_hard_link_of_a_symlink_links_the_symlink_itself(given: Given) -> None:
    b = given({})
    link = b.symlink(ROOT_INO, "s", b"target")
    other = b.link(link.ino, ROOT_INO, "s2")
    assert other.is_link and other.ino == link.ino
    assert b.readlink(other.ino) == b"target"


def test_a_hard_link_of_a_directory_is_eperm(given: Given) -> None:
    b = given({"d": None})
    fails(errno.EPERM, lambda: b.link(ino(b, "d"), ROOT_INO, "d2"))


def test_the_root_counts_its_subdirectories(given: Given) -> None:
    b = given({"d": None, "e": None, "f": b""})
    assert b.getattr(ROOT_INO).nlink == 4
    b.mkdir(ROOT_INO, "g", 0o755)
    b.rmdir(ROOT_INO, "d")
    assert b.getattr(ROOT_INO).nlink == 4


def test_a_directory_counts_itself_its_parent_entry_and_its_subdirectories(given: Given) -> None:
    b = given({"d": None, "d/sub": None, "d/f": b""})
    d = ino(b, "d")
    assert b.getattr(d).nlink == 3
    b.mkdir(d, "more", 0o755)
    assert b.getattr(d).nlink == 4
    b.rmdir(d, "sub")
    b.rmdir(d, "more")
    assert b.getattr(d).nlink == 2


# -- readdir ---------------------------------------------------------------------------


def test_readdir_lists_every_entry_once_with_its_attributes(given: Given) -> None:
    b = given({"d": None, "d/f": b"12", "d/sub": None})
    entries = {name: attr for name, attr, _offset in b.readdir(ino(b, "d"))}
    assert set(entries) == {"f", "sub"}  # no "." or ".."
    assert entries["f"].size == 2 and entries["f"].is_file and entries["sub"].is_dir
    assert entries["f"].ino == ino(b, "d/f")


def test_readdir_resumes_from_each_offset_it_returns(given: Given) -> None:
    names = [f"f{i:02}" for i in range(30)]
    b = given({"d": None, **{f"d/{n}": b"" for n in names}})
    d = ino(b, "d")
    seen: list[str] = []
    offset = 0
    while batch := _take(b.readdir(d, offset), 7):
        assert all(next_offset != 0 for _name, _attr, next_offset in batch)
        seen += [name for name, _attr, _offset in batch]
        offset = batch[-1][2]
    assert sorted(seen) == names


def test_readdir_offsets_stay_stable_while_entries_come_and_go(given: Given) -> None:
    keep = [f"keep{i:02}" for i in range(20)]
    drop = [f"drop{i:02}" for i in range(20)]
    b = given({"d": None, **{f"d/{n}": b"" for n in keep + drop}})
    d = ino(b, "d")
    seen: list[str] = []
    offset = 0
    for round_ in range(100):  # a listing ends: 40 entries, 10 added
        batch = _take(b.readdir(d, offset), 4)
        if not batch:
            break
        seen += [name for name, _attr, _offset in batch]
        offset = batch[-1][2]
        # change the directory between two calls of one listing, as other
        # processes do between two getdents calls
        if round_ < 10:
            handle, _attr = b.create(d, f"added{round_:02}", 0o644)
            handle.close()
            for name in drop[2 * round_ : 2 * round_ + 2]:
                b.unlink(d, name)
    else:
        pytest.fail("the listing never ended")
    assert len(seen) == len(set(seen))  # nothing twice
    assert sorted(n for n in seen if n.startswith("keep")) == keep  # nothing skipped


def _take(entries: Iterator[tuple[str, Attr, int]], count: int) -> list[tuple[str, Attr, int]]:
    batch = []
    for entry in entries:
        batch.append(entry)
        if len(batch) == count:
            break
    return batch


# -- xattrs ------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["f", "d", ""])
def test_xattr_create_and_replace_flags(given: Given, path: str) -> None:
    b = given({"f": b"x", "d": None})
    node = ino(b, path)
    b.setxattr(node, b"user.color", b"blue", os.XATTR_CREATE)
    fails(errno.EEXIST, lambda: b.setxattr(node, b"user.color", b"red", os.XATTR_CREATE))
    fails(errno.ENODATA, lambda: b.setxattr(node, b"user.size", b"1", os.XATTR_REPLACE))
    b.setxattr(node, b"user.color", b"green", os.XATTR_REPLACE)
    b.setxattr(node, b"user.empty", b"")
    assert b.getxattr(node, b"user.color") == b"green"
    assert b.getxattr(node, b"user.empty") == b""
    assert {b"user.color", b"user.empty"} <= set(b.listxattr(node))
    b.removexattr(node, b"user.color")
    fails(errno.ENODATA, lambda: b.getxattr(node, b"user.color"))
    fails(errno.ENODATA, lambda: b.removexattr(node, b"user.color"))
    assert b"user.color" not in b.listxattr(node)


def test_a_missing_xattr_is_enodata(given: Given) -> None:
    b = given({"f": b"x"})
    fails(errno.ENODATA, lambda: b.getxattr(ino(b, "f"), b"user.never"))


def test_xattrs_follow_the_inode_through_renames_and_links(given: Given) -> None:
    b = given({"f": b"x"})
    b.setxattr(ino(b, "f"), b"user.tag", b"v")
    b.rename(ROOT_INO, "f", ROOT_INO, "g")
    b.link(ino(b, "g"), ROOT_INO, "h")
    assert b.getxattr(ino(b, "h"), b"user.tag") == b"v"


def test_an_unknown_xattr_namespace_is_eopnotsupp(given: Given) -> None:
    b = given({"f": b"x"})
    f = ino(b, "f")
    fails(errno.EOPNOTSUPP, lambda: b.setxattr(f, b"bogus.name", b"1"))
    fails(errno.EOPNOTSUPP, lambda: b.getxattr(f, b"bogus.name"))
    fails(errno.EOPNOTSUPP, lambda: b.removexattr(f, b"bogus.name"))


# -- truncate ----------------------------------------------------------------------------


def test_truncate_down_then_up_reads_zeros_after_the_cut(given: Given) -> None:
    data = bytes(range(256)) * 800  # 200 KiB, several chunks
    b = given({"f": data})
    f = ino(b, "f")
    b.setattr(f, size=70_000)
    assert b.getattr(f).size == 70_000
    b.setattr(f, size=len(data))
    assert cat(b, "f") == data[:70_000] + bytes(len(data) - 70_000)


def test_handle_truncate_down_and_up_zero_fills(given: Given) -> None:
    b = given({"f": b"abcdef"})
    with b.open(ino(b, "f"), os.O_RDWR) as handle:
        handle.truncate(2)
        assert handle.read(0, 100) == b"ab"
        handle.truncate(5)
        assert handle.read(0, 100) == b"ab\0\0\0"
        assert handle.getattr().size == 5
    assert cat(b, "f") == b"ab\0\0\0"


def test_a_write_past_the_end_leaves_a_hole_of_zeros(given: Given) -> None:
    b = given({"f": b"head"})
    with b.open(ino(b, "f"), os.O_RDWR) as handle:
        handle.write(300_000, b"tail")
    assert cat(b, "f") == b"head" + bytes(300_000 - 4) + b"tail"


def test_o_append_writes_at_the_end_whatever_the_offset(given: Given) -> None:
    b = given({"log": b"one\n"})
    with b.open(ino(b, "log"), os.O_WRONLY | os.O_APPEND) as handle:
        handle.write(0, b"two\n")
        handle.write(0, b"three\n")
        handle.fsync()
        handle.fsync(datasync=True)
    assert cat(b, "log") == b"one\ntwo\nthree\n"


def test_open_with_o_trunc_empties_the_file(given: Given) -> None:
    b = given({"f": b"old content"})
    b.open(ino(b, "f"), os.O_WRONLY | os.O_TRUNC).close()
    assert b.getattr(ino(b, "f")).size == 0 and cat(b, "f") == b""


# -- unlink while open -------------------------------------------------------------------------


def test_an_unlinked_open_file_still_reads_and_writes(given: Given) -> None:
    b = given({"f": b"still here", "other": b"x"})
    handle = b.open(ino(b, "f"), os.O_RDWR)
    try:
        b.unlink(ROOT_INO, "f")
        fails(errno.ENOENT, lambda: b.lookup(ROOT_INO, "f"))
        assert ls(b) == ["other"]
        assert handle.read(0, 100) == b"still here"
        handle.write(0, b"STILL")
        handle.write(10, b", and longer")
        assert handle.read(0, 100) == b"STILL here, and longer"
        assert handle.getattr().nlink == 0
        assert b.getattr(handle.ino).nlink == 0  # the inode lives while it is open
    finally:
        handle.close()
    assert ls(b) == ["other"]


# -- symlinks, attributes, whole-file replacement -------------------------------------------


def test_symlink_and_readlink_round_trip_without_following(given: Given) -> None:
    b = given({"d": None})
    link = b.symlink(ino(b, "d"), "s", b"does/not/exist")
    assert link.is_link and link.size == len(b"does/not/exist")
    assert b.lookup(ino(b, "d"), "s").is_link
    assert b.readlink(link.ino) == b"does/not/exist"


def test_setattr_keeps_the_file_type_and_nanosecond_times(given: Given) -> None:
    b = given({"f": b"x", "d": None})
    for path in ("f", "d"):
        node = ino(b, path)
        kind = b.getattr(node).mode & ~0o7777
        attr = b.setattr(node, mode=0o4711, uid=1234, gid=99, mtime_ns=1_234_567_891_123_456_789)
        assert (attr.mode & ~0o7777, attr.mode & 0o7777) == (kind, 0o4711)
        assert (attr.uid, attr.gid, attr.mtime_ns) == (1234, 99, 1_234_567_891_123_456_789)
        assert b.getattr(node) == attr
        assert b.setattr(node, atime_ns=5_000).mtime_ns == attr.mtime_ns  # one time, not both


def test_publish_replaces_a_file_whole_and_an_open_reader_keeps_the_old(given: Given) -> None:
    b = given({"d": None, "d/doc": b"old version"})
    d = ino(b, "d")
    reader = b.open(ino(b, "d/doc"))
    with b.tmpfile(d, 0o640) as temp:
        temp.write(0, b"new version, longer")
        assert ls(b, "d") == ["doc"]  # a tmpfile has no name
        assert cat(b, "d/doc") == b"old version"
        attr = b.publish(temp, d, "doc")
    assert attr.mode & 0o7777 == 0o640
    assert cat(b, "d/doc") == b"new version, longer"
    assert reader.read(0, 100) == b"old version"
    reader.close()
    assert ls(b, "d") == ["doc"]


def test_equal_content_has_an_equal_checksum_and_copies_keep_it(given: Given) -> None:
    data = bytes(range(256)) * 1000
    b = given({"a": data, "b": data, "c": data[:-1] + b"!"})
    assert b.checksum(ino(b, "a")) == b.checksum(ino(b, "b")) != b.checksum(ino(b, "c"))
    b.setattr(ino(b, "a"), mode=0o640)
    copied = b.copy_file(ino(b, "a"), ROOT_INO, "c")
    assert copied.ino != ino(b, "a") and copied.mode & 0o7777 == 0o640
    assert cat(b, "c") == data and b.checksum(copied.ino) == b.checksum(ino(b, "a"))


# -- errors the interface documents -------------------------------------------------------------


def test_enoent_for_every_operation_on_a_missing_name(given: Given) -> None:
    b = given({"d": None})
    d = ino(b, "d")
    fails(errno.ENOENT, lambda: b.lookup(d, "missing"))
    fails(errno.ENOENT, lambda: b.resolve("d/missing/deeper"))
    fails(errno.ENOENT, lambda: b.unlink(d, "missing"))
    fails(errno.ENOENT, lambda: b.rmdir(d, "missing"))
    fails(errno.ENOENT, lambda: b.rename(d, "missing", d, "other"))


def test_enoent_for_creating_in_a_removed_directory(given: Given) -> None:
    b = given({"d": None})
    d = ino(b, "d")
    b.rmdir(ROOT_INO, "d")
    fails(errno.ENOENT, lambda: b.create(d, "f", 0o644))
    fails(errno.ENOENT, lambda: b.mkdir(d, "sub", 0o755))


def test_eexist_for_every_way_of_making_an_existing_name(given: Given) -> None:
    b = given({"f": b"x", "d": None})
    f = ino(b, "f")
    fails(errno.EEXIST, lambda: b.create(ROOT_INO, "f", 0o644))
    fails(errno.EEXIST, lambda: b.create(ROOT_INO, "d", 0o644))
    fails(errno.EEXIST, lambda: b.mkdir(ROOT_INO, "f", 0o755))
    fails(errno.EEXIST, lambda: b.mkdir(ROOT_INO, "d", 0o755))
    fails(errno.EEXIST, lambda: b.symlink(ROOT_INO, "f", b"x"))
    fails(errno.EEXIST, lambda: b.link(f, ROOT_INO, "d"))
    assert cat(b, "f") == b"x"


def test_enotdir_for_a_file_used_as_a_directory(given: Given) -> None:
    b = given({"f": b"x"})
    f = ino(b, "f")
    fails(errno.ENOTDIR, lambda: list(b.readdir(f)))
    fails(errno.ENOTDIR, lambda: b.create(f, "x", 0o644))
    fails(errno.ENOTDIR, lambda: b.mkdir(f, "x", 0o755))
    fails(errno.ENOTDIR, lambda: b.rmdir(ROOT_INO, "f"))
    fails(errno.ENOTDIR, lambda: b.resolve("f/x"))


def test_lookup_in_a_file_is_enotdir(given: Given) -> None:
    b = given({"f": b"x"})
    fails(errno.ENOTDIR, lambda: b.lookup(ino(b, "f"), "x"))


def test_eisdir_for_a_directory_used_as_a_file(given: Given) -> None:
    b = given({"d": None})
    d = ino(b, "d")
    fails(errno.EISDIR, lambda: b.unlink(ROOT_INO, "d"))
    fails(errno.EISDIR, lambda: b.open(d))
    fails(errno.EISDIR, lambda: b.setattr(d, size=0))
    fails(errno.EISDIR, lambda: b.read_file("d"))
    with b.tmpfile(ROOT_INO) as temp:
        fails(errno.EISDIR, lambda: b.publish(temp, ROOT_INO, "d"))
    assert b.lookup(ROOT_INO, "d").is_dir


def test_enotempty_until_the_last_entry_is_gone(given: Given) -> None:
    b = given({"d": None, "d/f": b"x", "d/sub": None})
    d = ino(b, "d")
    fails(errno.ENOTEMPTY, lambda: b.rmdir(ROOT_INO, "d"))
    b.unlink(d, "f")
    fails(errno.ENOTEMPTY, lambda: b.rmdir(ROOT_INO, "d"))
    b.rmdir(d, "sub")
    b.rmdir(ROOT_INO, "d")
    assert ls(b) == []


def test_enametoolong_for_a_name_over_255_bytes(given: Given) -> None:
    b = given({"f": b"x", "d": None})
    fails(errno.ENAMETOOLONG, lambda: b.create(ROOT_INO, LONG_NAME, 0o644))
    fails(errno.ENAMETOOLONG, lambda: b.mkdir(ROOT_INO, LONG_NAME, 0o755))
    fails(errno.ENAMETOOLONG, lambda: b.symlink(ROOT_INO, LONG_NAME, b"f"))
    fails(errno.ENAMETOOLONG, lambda: b.link(ino(b, "f"), ROOT_INO, LONG_NAME))
    fails(errno.ENAMETOOLONG, lambda: b.rename(ROOT_INO, "f", ROOT_INO, LONG_NAME))
    b.create(ROOT_INO, "n" * 255, 0o644)[0].close()  # NAME_MAX itself is fine
    assert sorted(ls(b)) == sorted(["d", "f", "n" * 255])


def test_lookup_of_a_name_over_255_bytes_is_enametoolong(given: Given) -> None:
    b = given({})
    fails(errno.ENAMETOOLONG, lambda: b.lookup(ROOT_INO, LONG_NAME))


@pytest.mark.parametrize("bad", ["", ".", "..", "a/b", "nul\0"])
def test_einval_for_a_name_that_cannot_be_an_entry(given: Given, bad: str) -> None:
    b = given({"f": b"x"})
    fails(errno.EINVAL, lambda: b.create(ROOT_INO, bad, 0o644))
    fails(errno.EINVAL, lambda: b.mkdir(ROOT_INO, bad, 0o755))
    fails(errno.EINVAL, lambda: b.rename(ROOT_INO, "f", ROOT_INO, bad))
    assert ls(b) == ["f"]


def test_einval_for_readlink_of_something_not_a_symlink(given: Given) -> None:
    b = given({"f": b"x", "d": None})
    fails(errno.EINVAL, lambda: b.readlink(ino(b, "f")))
    fails(errno.EINVAL, lambda: b.readlink(ino(b, "d")))


def test_erofs_for_every_change_to_a_read_only_backend(given: Given) -> None:
    b = given({"f": b"data", "d": None}, read_only=True)
    assert b.read_only
    f, d = ino(b, "f"), ino(b, "d")
    changes: list[Callable[[], object]] = [
        lambda: b.setattr(f, mode=0o600),
        lambda: b.setattr(d, mtime_ns=1),
        lambda: b.setattr(f, size=0),
        lambda: b.mkdir(ROOT_INO, "x", 0o755),
        lambda: b.create(ROOT_INO, "x", 0o644),
        lambda: b.open(f, os.O_WRONLY),
        lambda: b.open(f, os.O_RDWR),
        lambda: b.open(f, os.O_TRUNC),
        lambda: b.unlink(ROOT_INO, "f"),
        lambda: b.rmdir(ROOT_INO, "d"),
        lambda: b.rename(ROOT_INO, "f", ROOT_INO, "g"),
        lambda: b.link(f, ROOT_INO, "g"),
        lambda: b.symlink(ROOT_INO, "s", b"f"),
        lambda: b.setxattr(f, b"user.a", b"1"),
        lambda: b.removexattr(f, b"user.a"),
        lambda: b.tmpfile(ROOT_INO),
        lambda: b.write_file(ROOT_INO, "f", b"new"),
        lambda: b.copy_file(f, ROOT_INO, "g"),
    ]
    for change in changes:
        fails(errno.EROFS, change)
    with b.open(f) as handle:
        # a handle opened for reading: EROFS, or EBADF as write(2) says
        for change in (lambda: handle.write(0, b"x"), lambda: handle.truncate(0)):
            with pytest.raises(OSError) as caught:
                change()
            assert caught.value.errno in (errno.EROFS, errno.EBADF)
        assert handle.read(0, 100) == b"data"
    assert ls(b) == ["d", "f"] and cat(b, "f") == b"data"
