"""An S3-compatible server on loopback (moto's server mode), for tests that talk
to object storage the way s3fs does against AWS. Nothing leaves the machine."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _server_command(port: int) -> list[str]:
    script = Path(sys.executable).with_name("moto_server")
    command = str(script) if script.exists() else shutil.which("moto_server")
    if command is None:
        raise RuntimeError("moto_server is missing: install the test extra (moto[server])")
    return [command, "-H", "127.0.0.1", "-p", str(port)]


@contextmanager
def s3_server() -> Iterator[dict[str, str]]:
    """Run the server; yields the environment that points s3fs (and fsspec) at it."""
    port = _free_port()
    process = subprocess.Popen(
        _server_command(port), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the S3 test server did not start") from None
                time.sleep(0.1)
        yield {**CREDENTIALS, "FSSPEC_S3_ENDPOINT_URL": endpoint, "AWS_ENDPOINT_URL": endpoint}
    finally:
        process.terminate()
        process.wait(timeout=10)


def apply(environment: dict[str, str]) -> None:
    """Point this whole process's fsspec at the server (for benchmarks; tests
    patch the configuration for one test instead)."""
    import fsspec.config

    os.environ.update(environment)
    fsspec.config.conf.setdefault("s3", {})["endpoint_url"] = environment["FSSPEC_S3_ENDPOINT_URL"]
