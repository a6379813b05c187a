"""Poll legacy robots over SSH (asyncssh), many at once, each within its own time limit.

The old tooling polled one robot after another, so one host that hangs held up the whole fleet.
Here every host is polled concurrently (at most `concurrency` SSH sessions at a time, one
asyncio task each, no thread per host), and each poll, from TCP connect to the command's
exit, has `timeout_s`: a host that hangs costs its own slot for that long and nobody else's.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import asyncssh

from lekiwi_fleet_server.legacy.inventory import LegacyHost
from lekiwi_fleet_server.legacy.status import (
    MAX_OUTPUT_BYTES,
    LegacyReading,
    StatusCommands,
    parse_status,
)


@dataclass(frozen=True, slots=True)
class SshCredentials:
    """The server's SSH identity for legacy robots (a key from its secrets, never a password)."""

    key_file: Path
    known_hosts_file: Path | None = None  # None: the user's ~/.ssh/known_hosts


@dataclass(frozen=True, slots=True)
class PollResult:
    """One host's poll: a reading, or why there is none."""

    host: LegacyHost
    reading: LegacyReading | None
    error: str | None
    seconds: float

    @property
    def ok(self) -> bool:
        """Tell whether the robot answered."""
        return self.reading is not None


class LegacyPoller:
    """Poll hosts concurrently with bounded sessions and per-host timeouts."""

    def __init__(self, credentials: SshCredentials, commands: StatusCommands, *,
                 concurrency: int = 64, timeout_s: float = 5.0,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        if concurrency < 1 or timeout_s <= 0:
            raise ValueError('concurrency must be >= 1 and timeout_s > 0')
        self._keys = [asyncssh.read_private_key(str(credentials.key_file))]
        self._known_hosts = (str(credentials.known_hosts_file)
                             if credentials.known_hosts_file is not None else ())
        self._script = commands.script()
        self._concurrency = concurrency
        self._timeout_s = timeout_s
        self._monotonic = monotonic

    async def poll_all(self, hosts: Sequence[LegacyHost]) -> list[PollResult]:
        """Poll every host (at most `concurrency` at once); results in the hosts' order."""
        slots = asyncio.Semaphore(self._concurrency)

        async def one(host: LegacyHost) -> PollResult:
            async with slots:
                return await self.poll(host)

        return list(await asyncio.gather(*(one(h) for h in hosts)))

    async def poll(self, host: LegacyHost) -> PollResult:
        """Poll one host within the timeout; never raise for what the host does."""
        started = self._monotonic()
        try:
            output = await asyncio.wait_for(self._run(host), self._timeout_s)
        except TimeoutError:
            return PollResult(host, None, f'timed out after {self._timeout_s:g} s',
                              self._monotonic() - started)
        except (OSError, asyncssh.Error) as exc:
            return PollResult(host, None, _describe(exc), self._monotonic() - started)
        return PollResult(host, parse_status(output), None, self._monotonic() - started)

    async def _run(self, host: LegacyHost) -> str:
        async with asyncssh.connect(
                host.host, port=host.port, username=host.user, client_keys=self._keys,
                known_hosts=self._known_hosts, agent_path=None, password=None,
                kbdint_auth=False, config=None) as conn:
            result = await conn.run(self._script, check=False)
        stdout = result.stdout
        text = stdout if isinstance(stdout, str) else (stdout or b'').decode('utf-8', 'replace')
        return text[:MAX_OUTPUT_BYTES]


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return 'connection refused'
    if isinstance(exc, asyncssh.PermissionDenied):
        return 'permission denied (key not accepted)'
    if isinstance(exc, asyncssh.HostKeyNotVerifiable):
        return 'host key not verifiable (not in known_hosts)'
    text = str(exc) or type(exc).__name__
    return text[:200]
