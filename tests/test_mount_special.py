"""FIFOs and Unix sockets inside a real mount connect separate processes, in
every mode, and stay what they are across a mode switch.

The mount only stores these inodes: the kernel serves their I/O itself (FUSE
never sees an open of a FIFO or a socket), and the mount is ``nodev``, so a
device node made inside it can be listed but never opened.
"""

from __future__ import annotations

import errno
import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from test_mount_support import FUSE_MISSING, create_agent, mount_agent, require_backend

from vfs.settings.switch import switch_mode
from vfs.state.registry import MODES

pytestmark = pytest.mark.skipif(FUSE_MISSING, reason="FUSE (/dev/fuse, fusermount3) is absent")

#: after a switch from each mode, the mode it goes to: together, every mode once each way
NEXT_MODE = {"sqlite": "disk", "disk": "hybrid", "hybrid": "sqlite"}
TIMEOUT = 30

_FIFO_WRITER = "import sys; open(sys.argv[1], 'w').write(sys.argv[2])"
_FIFO_READER = "import sys; print(open(sys.argv[1]).read(), end='')"
_SOCKET_SERVER = """
import socket, sys
server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
server.bind(sys.argv[1])
server.listen(1)
print("listening", flush=True)
conn, _ = server.accept()
conn.sendall(b"reply to " + conn.recv(100))
conn.close()
"""
_SOCKET_CLIENT = """
import socket, sys
client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
client.connect(sys.argv[1])
client.sendall(sys.argv[2].encode())
print(client.recv(100).decode(), end="")
"""


def python(code: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", code, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip


def finish(process: subprocess.Popen[str]) -> str:
    out, err = process.communicate(timeout=TIMEOUT)
    assert process.returncode == 0, err
    return out


def fifo_connects(path: Path, message: str) -> str:
    """What a reader process reads from ``path`` while a writer process writes ``message``."""
    reader = python(_FIFO_READER, str(path))
    writer = python(_FIFO_WRITER, str(path), message)
    finish(writer)
    return finish(reader)


def socket_connects(path: Path, message: str) -> str:
    """The reply a client process gets from a server process bound at ``path``."""
    server = python(_SOCKET_SERVER, str(path))
    assert server.stdout is not None
    assert server.stdout.readline() == "listening\n", server.stderr
    client = python(_SOCKET_CLIENT, str(path), message)
    reply = finish(client)
    finish(server)
    return reply


@pytest.mark.parametrize("mode", MODES)
def test_a_fifo_and_a_socket_in_the_mount_connect_two_processes_and_survive_a_switch(
    tmp_path: Path, mode: str
) -> None:
    require_backend(mode)
    target = NEXT_MODE[mode]
    require_backend(target)
    home, where = tmp_path / "home", tmp_path / "mnt"
    create_agent(home, mode)
    with mount_agent(home, where, mode=mode) as mounted:
        run = mounted.root / "run"
        run.mkdir()
        os.mkfifo(run / "pipe", 0o600)
        assert stat.S_ISFIFO(os.lstat(run / "pipe").st_mode)
        assert fifo_connects(run / "pipe", "first message") == "first message"
        assert socket_connects(run / "agent.sock", "hello") == "reply to hello"
        assert stat.S_ISSOCK(os.lstat(run / "agent.sock").st_mode)
    switch_mode("alice", target, home)
    with mount_agent(home, where, mode=target) as mounted:
        run = mounted.root / "run"
        assert oct(os.lstat(run / "pipe").st_mode) == oct(stat.S_IFIFO | 0o600)
        assert stat.S_ISSOCK(os.lstat(run / "agent.sock").st_mode)
        assert fifo_connects(run / "pipe", "after the switch") == "after the switch"
        # Nobody is bound to the socket any more: refused, as on a local disk,
        # and a new server takes the name over as servers do (unlink, bind).
        with socket.socket(socket.AF_UNIX) as stale, pytest.raises(ConnectionRefusedError):
            stale.connect(str(run / "agent.sock"))
        os.unlink(run / "agent.sock")
        assert socket_connects(run / "agent.sock", "again") == "reply to again"


@pytest.mark.skipif(os.geteuid() != 0, reason="making a device node needs CAP_MKNOD")
@pytest.mark.parametrize("mode", MODES)
def test_a_device_node_in_the_mount_is_listed_but_never_opened(tmp_path: Path, mode: str) -> None:
    require_backend(mode)
    home = tmp_path / "home"
    create_agent(home, mode)
    # Asking for "dev" changes nothing: a workspace never reaches the host's devices.
    with mount_agent(home, tmp_path / "mnt", mode=mode, options=["dev"]) as mounted:
        null = mounted.root / "null"
        os.mknod(null, stat.S_IFCHR | 0o666, os.makedev(1, 3))
        st = os.lstat(null)
        assert stat.S_ISCHR(st.st_mode) and (os.major(st.st_rdev), os.minor(st.st_rdev)) == (1, 3)
        assert "null" in os.listdir(mounted.root)
        with pytest.raises(PermissionError) as refused:  # the kernel's answer on a nodev mount
            os.open(null, os.O_RDONLY)
        assert refused.value.errno == errno.EACCES
