"""Moving a workspace tree out of and into an agent: a directory or a tar file,
local or at any fsspec URL, with modes, times, symlinks and special files
(FIFOs, sockets and devices; a tar file holds no sockets, as with GNU tar).

Both go through the agent's backend, so every mode works and hybrid mode
exports its merged view. An import is merge-safe: a workspace file newer
than the one being imported is left alone and reported, unless told to
overwrite.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import io
import os
import stat
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import fsspec
from fsspec.core import url_to_fs

from vfs.backends.base import ROOT_INO, SPECIAL_TYPES, Attr, Backend, Handle
from vfs.backends.host import make_node
from vfs.workspace import Workspace

PIECE = 1 << 20
TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz")
# The special files a tar member can be (a socket cannot).
_TAR_TYPES = {stat.S_IFIFO: tarfile.FIFOTYPE, stat.S_IFCHR: tarfile.CHRTYPE,
              stat.S_IFBLK: tarfile.BLKTYPE}  # fmt: skip
_TAR_KINDS = {kind: mode for mode, kind in _TAR_TYPES.items()}


@dataclass
class TransferReport:
    files: int = 0
    directories: int = 0
    symlinks: int = 0
    special: int = 0  # FIFOs, sockets and devices
    bytes: int = 0
    skipped_sockets: list[str] = field(default_factory=list)  # export: a tar holds none
    skipped_newer: list[str] = field(default_factory=list)  # import: the workspace had newer


@dataclass(frozen=True)
class Item:
    """One object of a tree, as both directions carry it."""

    path: str  # relative, "/"-separated
    mode: int
    mtime_ns: int
    size: int = 0
    target: str | None = None
    rdev: int = 0  # a device's number


def _is_tar(url: str) -> bool:
    return url.endswith(TAR_SUFFIXES)


def _is_local(url: str) -> bool:
    return "://" not in url or url.startswith("file://")


# -- the workspace side --------------------------------------------------------


def _walk(backend: Backend, ino: int = ROOT_INO, prefix: str = "") -> Iterator[tuple[Item, Attr]]:
    for name, attr, _offset in list(backend.readdir(ino)):
        path = f"{prefix}{name}"
        target = os.fsdecode(backend.readlink(attr.ino)) if attr.is_link else None
        yield Item(path, attr.mode, attr.mtime_ns, attr.size, target, attr.rdev), attr
        if attr.is_dir:
            yield from _walk(backend, attr.ino, f"{path}/")


def _opened(backend: Backend, item: Item) -> tuple[Handle, Attr] | None:
    """The file ``item`` names, opened by name (a file another process replaced
    since the walk is read old or new, whole); None if it is gone since."""
    try:
        return backend.open_path(f"/{item.path}")
    except FileNotFoundError:
        return None


def _pieces(handle: Handle) -> Iterator[bytes]:
    offset = 0
    while piece := handle.read(offset, PIECE):
        yield piece
        offset += len(piece)


class _Stream(io.RawIOBase):
    """A file's pieces as a readable stream, for tarfile."""

    def __init__(self, pieces: Iterator[bytes]) -> None:
        self.pieces, self.buffer = pieces, b""

    def readable(self) -> bool:
        return True

    def readinto(self, out: Any) -> int:
        while not self.buffer:
            self.buffer = next(self.pieces, b"")
            if not self.buffer:
                return 0
        count = min(len(out), len(self.buffer))
        out[:count], self.buffer = self.buffer[:count], self.buffer[count:]
        return count


# -- export ----------------------------------------------------------------------


def _export_tar(backend: Backend, out: IO[bytes], gzip: bool, report: TransferReport) -> None:
    with tarfile.open(fileobj=out, mode="w:gz" if gzip else "w", format=tarfile.PAX_FORMAT) as tar:
        for item, attr in _walk(backend):
            info = tarfile.TarInfo(item.path)
            info.mode, info.mtime = stat.S_IMODE(item.mode), item.mtime_ns / 1e9
            info.uid, info.gid = attr.uid, attr.gid
            if attr.is_dir:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
                report.directories += 1
            elif attr.is_link:
                info.type, info.linkname = tarfile.SYMTYPE, item.target or ""
                tar.addfile(info)
                report.symlinks += 1
            elif attr.is_file:
                if (opened := _opened(backend, item)) is None:
                    continue
                handle, now = opened
                with handle:
                    info.size, info.mode = now.size, stat.S_IMODE(now.mode)
                    info.mtime = now.mtime_ns / 1e9
                    tar.addfile(info, io.BufferedReader(_Stream(_pieces(handle))))
                report.files += 1
                report.bytes += now.size
            elif stat.S_ISSOCK(attr.mode):
                report.skipped_sockets.append(item.path)
            elif attr.is_special:
                info.type = _TAR_TYPES[stat.S_IFMT(attr.mode)]
                info.devmajor, info.devminor = os.major(attr.rdev), os.minor(attr.rdev)
                tar.addfile(info)
                report.special += 1


def _export_local_dir(backend: Backend, root: Path, report: TransferReport) -> None:
    root.mkdir(parents=True, exist_ok=True)
    directories: list[Item] = []
    for item, attr in _walk(backend):
        target = root / item.path
        if attr.is_dir:
            target.mkdir(exist_ok=True)
            directories.append(item)
            report.directories += 1
        elif attr.is_link:
            with contextlib.suppress(FileNotFoundError):
                target.unlink()
            os.symlink(item.target or "", target)
            os.utime(target, ns=(item.mtime_ns, item.mtime_ns), follow_symlinks=False)
            report.symlinks += 1
        elif attr.is_file:
            if (opened := _opened(backend, item)) is None:
                continue
            handle, now = opened
            with handle, open(target, "wb") as out:
                for piece in _pieces(handle):
                    out.write(piece)
            os.chmod(target, stat.S_IMODE(now.mode))
            os.utime(target, ns=(now.mtime_ns, now.mtime_ns))
            report.files += 1
            report.bytes += now.size
        elif attr.is_special:
            with contextlib.suppress(FileNotFoundError):
                target.unlink()
            make_node(target, item.mode, item.rdev, item.mtime_ns)
            report.special += 1
    for item in reversed(directories):  # after their children changed them
        os.chmod(root / item.path, stat.S_IMODE(item.mode))
        os.utime(root / item.path, ns=(item.mtime_ns, item.mtime_ns))


def _export_remote_dir(backend: Backend, url: str, report: TransferReport) -> None:
    fs, root = url_to_fs(url)
    for item, attr in _walk(backend):
        if attr.is_file:
            if (opened := _opened(backend, item)) is None:
                continue
            handle, now = opened
            with handle, fs.open(f"{root.rstrip('/')}/{item.path}", "wb") as out:
                for piece in _pieces(handle):
                    out.write(piece)
            report.files += 1
            report.bytes += now.size


def export_tree(ws: Workspace, dest: str) -> TransferReport:
    """Write the workspace tree to ``dest``: a directory, or a ``.tar``/``.tar.gz``.

    Modes, times, symlinks, FIFOs and devices are kept in a local directory
    and in a tar file anywhere, sockets in a local directory only (a tar file
    cannot hold one: they are listed in ``skipped_sockets``); a directory at a
    remote URL (object storage) holds content only.
    """
    report = TransferReport()
    with ws.backend.snapshot():
        if _is_tar(dest):
            with fsspec.open(dest, "wb") as out:
                _export_tar(ws.backend, out, not dest.endswith(".tar"), report)
        elif _is_local(dest):
            _export_local_dir(ws.backend, Path(dest.removeprefix("file://")), report)
        else:
            _export_remote_dir(ws.backend, dest, report)
    return report


# -- import -----------------------------------------------------------------------


def _tar_items(source: str) -> Iterator[tuple[Item, Callable[[], IO[bytes] | None]]]:
    with fsspec.open(source, "rb") as raw, tarfile.open(fileobj=raw, mode="r:*") as tar:
        for member in tar:
            path = member.name.strip("/").removeprefix("./")
            if not path or path == ".":
                continue
            kind = (
                stat.S_IFDIR if member.isdir() else stat.S_IFLNK if member.issym() else stat.S_IFREG
            )
            if member.type in _TAR_KINDS:
                kind = _TAR_KINDS[member.type]
            elif not (member.isdir() or member.issym() or member.isfile()):
                continue  # hard links inside the archive are not carried
            rdev = os.makedev(member.devmajor, member.devminor) if member.isdev() else 0
            item = Item(
                path, kind | member.mode, int(member.mtime * 1e9), member.size,
                member.linkname if member.issym() else None, rdev,
            )  # fmt: skip
            yield item, functools.partial(tar.extractfile, member)


def _open_binary(path: Path) -> IO[bytes]:
    return path.open("rb")


def _dir_items(source: str) -> Iterator[tuple[Item, Callable[[], IO[bytes] | None]]]:
    root = Path(source.removeprefix("file://"))
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(dirnames) + sorted(filenames):
            full = Path(dirpath) / name
            st = full.lstat()
            path = full.relative_to(root).as_posix()
            target = os.readlink(full) if stat.S_ISLNK(st.st_mode) else None
            yield (
                Item(path, st.st_mode, st.st_mtime_ns, st.st_size, target, st.st_rdev),
                functools.partial(_open_binary, full),
            )


def _write(backend: Backend, parent: int, name: str, item: Item, data: IO[bytes]) -> None:
    handle = backend.tmpfile(parent, stat.S_IMODE(item.mode))
    try:
        offset = 0
        while piece := data.read(PIECE):
            handle.write(offset, piece)
            offset += len(piece)
        attr = backend.publish(handle, parent, name)
    finally:
        handle.close()
    backend.setattr(attr.ino, atime_ns=item.mtime_ns, mtime_ns=item.mtime_ns)


def import_tree(ws: Workspace, source: str, *, overwrite: bool = False) -> TransferReport:
    """Bring a directory or tar file into the workspace, merging with what is there.

    A workspace file whose mtime is newer than the imported one's is kept (and
    listed in the report) unless ``overwrite``. ``..`` and absolute names in a
    tar are refused by path resolution, like any path.
    """
    if _is_tar(source):
        items = _tar_items(source)
    elif _is_local(source):
        if not Path(source.removeprefix("file://")).is_dir():
            raise FileNotFoundError(errno.ENOENT, "no such directory", source)
        items = _dir_items(source)
    else:
        raise ValueError("import reads a local directory or a tar file (local or a URL)")
    backend, report = ws.backend, TransferReport()
    directories: list[tuple[int, Item]] = []
    for item, opener in items:
        parent, name = backend.resolve_parent("/" + item.path)
        existing = backend.lookup_or_none(parent, name)
        if stat.S_ISDIR(item.mode):
            if existing is None:
                existing = backend.mkdir(parent, name, stat.S_IMODE(item.mode))
                report.directories += 1
            directories.append((existing.ino, item))
            continue
        if existing is not None and existing.mtime_ns > item.mtime_ns and not overwrite:
            report.skipped_newer.append(item.path)
            continue
        if existing is not None and existing.is_dir:
            raise IsADirectoryError(errno.EISDIR, "a directory is in the way", item.path)
        if stat.S_IFMT(item.mode) in SPECIAL_TYPES:
            if existing is not None:
                backend.unlink(parent, name)
            node = backend.mknod(parent, name, item.mode, item.rdev, os.getuid(), os.getgid())
            backend.setattr(node.ino, atime_ns=item.mtime_ns, mtime_ns=item.mtime_ns)
            report.special += 1
            continue
        if item.target is not None:
            if existing is not None:
                backend.unlink(parent, name)
            link = backend.symlink(parent, name, os.fsencode(item.target))
            backend.setattr(link.ino, mtime_ns=item.mtime_ns)
            report.symlinks += 1
            continue
        data = opener()
        if data is None:
            continue
        with data:
            _write(backend, parent, name, item, data)
        report.files += 1
        report.bytes += item.size
    for ino, item in reversed(directories):
        backend.setattr(ino, mode=stat.S_IMODE(item.mode), mtime_ns=item.mtime_ns)
    return report
