"""A real `redis-server` for the tests, on a free loopback port, with nothing saved to disk.

`.ci/run` installs Debian's redis-server when the machine lacks it; a test that needs Redis
fails (it never skips) when the binary is missing, naming what to install.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time


class RedisServer:
    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError(
                "redis-server is not installed: the limit tests run against a real Redis "
                "(apt-get install redis-server; .ci/run does it)"
            )
        self.binary = binary
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self._dir = tempfile.TemporaryDirectory(prefix="gateway-redis-")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        for _ in range(5):  # a free port may be taken between the probe and the bind
            self.port = _free_port()
            self.process = subprocess.Popen(
                [
                    self.binary,
                    "--port", str(self.port),
                    "--bind", "127.0.0.1",
                    "--save", "",
                    "--appendonly", "no",
                    "--dir", self._dir.name,
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )  # fmt: skip
            if self._ready(5.0):
                return
            self.stop()
        raise RuntimeError("redis-server did not start")

    def _ready(self, within: float) -> bool:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                return False
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return True
            except OSError:
                pass
            time.sleep(0.02)
        return False

    def flush(self) -> None:
        self.command(b"FLUSHALL")

    def command(self, line: bytes) -> bytes:
        """Send one inline command (`b"SCRIPT FLUSH"`); the start of its reply."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
            sock.sendall(line + b"\r\n")
            return sock.recv(1024)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def close(self) -> None:
        self.stop()
        self._dir.cleanup()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
