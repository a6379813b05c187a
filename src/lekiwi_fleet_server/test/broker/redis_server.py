"""A throw-away redis-server on a free loopback port, for tests (stop it to test outages)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

REDIS_BINARY = shutil.which('redis-server') or ('/usr/bin/redis-server'
                                                if Path('/usr/bin/redis-server').exists() else None)
MISSING = 'redis-server is not installed (scripts/ensure_redis.sh installs it)'


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return int(s.getsockname()[1])


class RedisServer:
    """One redis-server process, no persistence, bound to 127.0.0.1."""

    def __init__(self, workdir: Path) -> None:
        assert REDIS_BINARY is not None, MISSING
        self._workdir = workdir
        self.port = _free_port()
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f'redis://127.0.0.1:{self.port}/0'

    def start(self, timeout_s: float = 10.0) -> None:
        """Start (or restart, on the same port) and wait until it accepts connections."""
        self._workdir.mkdir(parents=True, exist_ok=True)
        self._proc = subprocess.Popen(
            [REDIS_BINARY, '--port', str(self.port), '--bind', '127.0.0.1', '--save', '',
             '--appendonly', 'no', '--dir', str(self._workdir), '--protected-mode', 'yes'],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f'redis-server exited with {self._proc.returncode}')
            try:
                with socket.create_connection(('127.0.0.1', self.port), timeout=0.5) as s:
                    s.sendall(b'PING\r\n')
                    if s.recv(16).startswith(b'+PONG'):
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f'redis-server did not answer on port {self.port}')

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL)."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
