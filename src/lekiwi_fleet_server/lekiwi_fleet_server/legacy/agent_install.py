"""The legacy -> agent migration: install the agent on the robots a step of a flag reaches.

A staged flag (`LEKIWI_LEGACY_MIGRATION_FLAG`, say `agent_uplink`) paces the move from legacy
polling to the agent, 5 -> 25 -> 50 -> 100 %. Each time its step reaches legacy robots that have
no agent yet, `LegacyMigration` runs a wave for them, as a deployment wave:
1. it gives each robot a fresh token (the old one, if any, stops at once) and runs the
   configured install command over the legacy adapter's SSH (asyncssh, the server's key), the
   token on the command's standard input (never on its command line, which `ps` shows);
   `{robot_id}` and `{server_url}` in the command are replaced, shell-quoted. The command is
   the site's: typically it installs the release bundle and enables the agent's service;
2. it waits for each installed robot's agent to dial in (the legacy poller stops polling a
   robot whose agent holds a connection, by itself);
3. it gates the wave (`WaveGate`): a robot whose install failed, or whose agent did not dial in
   within `dial_in_timeout_s`, counts as failed; once failures exceed `max_failure_rate` of the
   wave, the wave stops: the uninstall command runs on every robot of the wave and the flag
   steps back one step (actor `migration`), so the robots go back to legacy polling.
Robots of a rolled-back wave are tried again when a later step reaches them again.

`WaveGate` is pure (time comes in as `now`); `AgentInstaller` is the SSH shell.
"""

from __future__ import annotations

import asyncio
import logging
import shlex
import time
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import asyncssh

from lekiwi_fleet_server.domain.flags import in_cohort
from lekiwi_fleet_server.legacy.inventory import LegacyHost
from lekiwi_fleet_server.legacy.poller import SshCredentials, _describe

log = logging.getLogger(__name__)
MAX_ERROR_CHARS = 300


@dataclass(frozen=True, slots=True)
class InstallConfig:
    """How the agent is installed and when a wave fails."""

    install_command: str
    uninstall_command: str = ''
    server_url: str = ''  # the gateway as robots reach it ({server_url} in the commands)
    timeout_s: float = 300.0  # one install or uninstall, connect to exit
    dial_in_timeout_s: float = 120.0  # after its install, for the robot's agent to connect
    max_failure_rate: float = 0.2  # of a wave; over it, the wave rolls back
    concurrency: int = 16

    def __post_init__(self) -> None:
        if not self.install_command.strip():
            raise ValueError('the install command is empty')
        if not 0.0 <= self.max_failure_rate < 1.0 or self.timeout_s <= 0 or \
                self.dial_in_timeout_s <= 0 or self.concurrency < 1:
            raise ValueError(f'invalid install config {self}')

    def command(self, template: str, robot_id: str) -> str:
        """Return a command with its placeholders replaced (shell-quoted)."""
        return template.replace('{robot_id}', shlex.quote(robot_id)) \
            .replace('{server_url}', shlex.quote(self.server_url))


@dataclass
class WaveGate:
    """One wave of installs and its gate (pure)."""

    robots: tuple[str, ...]
    started_at: float
    installed: dict[str, float] = field(default_factory=dict)  # robot -> when its install ended
    failed: dict[str, str] = field(default_factory=dict)  # robot -> why
    joined: set[str] = field(default_factory=set)  # robots whose agent dialled in

    def install_done(self, robot_id: str, error: str | None, now: float) -> None:
        """Note an install's end (error None: it succeeded)."""
        if error is None:
            self.installed[robot_id] = now
        else:
            self.failed[robot_id] = f'install failed: {error}'

    def dialled_in(self, robot_id: str) -> None:
        """Note that the robot's agent holds a connection."""
        if robot_id in self.installed:
            self.joined.add(robot_id)

    def verdict(self, now: float, dial_in_timeout_s: float, max_failure_rate: float) -> str:
        """Return 'running', 'held' (every robot decided, few enough failed) or 'failed'."""
        for robot_id, at in self.installed.items():
            if robot_id not in self.joined and robot_id not in self.failed and \
                    now - at > dial_in_timeout_s:
                self.failed[robot_id] = f'its agent did not dial in within {dial_in_timeout_s:g} s'
        if len(self.failed) > max_failure_rate * len(self.robots):
            return 'failed'  # like a deployment wave: stop as soon as the share is over
        decided = len(self.joined) + len(self.failed)
        return 'held' if decided >= len(self.robots) else 'running'


class AgentInstaller:
    """Run the install and uninstall commands on legacy robots over SSH."""

    def __init__(self, credentials: SshCredentials, config: InstallConfig) -> None:
        self._keys = [asyncssh.read_private_key(str(credentials.key_file))]
        self._known_hosts = (str(credentials.known_hosts_file)
                             if credentials.known_hosts_file is not None else ())
        self.config = config

    async def run(self, host: LegacyHost, template: str, stdin: str = '') -> str | None:
        """Run a command on the host; return None on exit status 0, else why it failed."""
        command = self.config.command(template, host.robot_id)
        try:
            return await asyncio.wait_for(self._run(host, command, stdin), self.config.timeout_s)
        except TimeoutError:
            return f'timed out after {self.config.timeout_s:g} s'
        except (OSError, asyncssh.Error) as exc:
            return _describe(exc)

    async def _run(self, host: LegacyHost, command: str, stdin: str) -> str | None:
        async with asyncssh.connect(
                host.host, port=host.port, username=host.user, client_keys=self._keys,
                known_hosts=self._known_hosts, agent_path=None, password=None,
                kbdint_auth=False, config=None) as conn:
            result = await conn.run(command, input=stdin, check=False)
        if result.exit_status == 0:
            return None
        err = result.stderr if isinstance(result.stderr, str) else \
            (result.stderr or b'').decode('utf-8', 'replace')
        tail = err.strip()[-MAX_ERROR_CHARS:]
        return f'exit status {result.exit_status}' + (f': {tail}' if tail else '')


class Flags(Protocol):
    """The part of the flag engine a migration uses."""

    def get(self, name: str) -> Any: ...

    def step(self, name: str, direction: str, *, by: str) -> Awaitable[Any]: ...


class LegacyMigration:
    """Install the agent on the legacy robots the migration flag's step reaches, wave by wave."""

    def __init__(self, installer: AgentInstaller, flags: Flags, flag_name: str, *,
                 hosts: Callable[[], Sequence[LegacyHost]],
                 connected: Callable[[Collection[str]], Awaitable[set[str]]],
                 new_token: Callable[[str], str], now: Callable[[], float] = time.time) -> None:
        self._installer = installer
        self._flags = flags
        self._flag_name = flag_name
        self._hosts = hosts
        self._connected = connected
        self._new_token = new_token  # rotates the robot's token, returns the new one
        self._now = now
        self._tried: set[str] = set()  # robots installed (or tried) and not rolled back
        self.wave: WaveGate | None = None
        self.waves: list[tuple[WaveGate, str]] = []  # finished waves and their verdicts

    async def tick(self) -> None:
        """Start a wave for robots newly in the cohort, or follow the running one."""
        if self.wave is None:
            await self._maybe_start()
        if self.wave is not None:
            await self._follow(self.wave)

    async def _maybe_start(self) -> None:
        try:
            flag = self._flags.get(self._flag_name).flag
        except KeyError:
            return  # no such flag (yet): nothing to migrate
        candidates = [h for h in self._hosts() if in_cohort(flag, h.robot_id, h.tags)
                      and h.robot_id not in self._tried]
        live = await self._connected([h.robot_id for h in candidates]) if candidates else set()
        new = [h for h in candidates if h.robot_id not in live]
        if not new:
            return
        wave = WaveGate(tuple(h.robot_id for h in new), self._now())
        self.wave = wave
        self._tried.update(wave.robots)
        log.info('migration %s: installing the agent on %d robots', self._flag_name, len(new))
        slots = asyncio.Semaphore(self._installer.config.concurrency)

        async def one(host: LegacyHost) -> None:
            async with slots:
                try:  # a database write: not on the event loop
                    token = await asyncio.to_thread(self._new_token, host.robot_id)
                except Exception as exc:  # not enrolled, revoked: that robot's install fails
                    wave.install_done(host.robot_id, f'no token: {exc}', self._now())
                    return
                error = await self._installer.run(
                    host, self._installer.config.install_command, token + '\n')
                wave.install_done(host.robot_id, error, self._now())

        await asyncio.gather(*(one(h) for h in new))

    async def _follow(self, wave: WaveGate) -> None:
        live = await self._connected(list(wave.installed)) if wave.installed else set()
        for robot_id in wave.installed:
            if robot_id in live:
                wave.dialled_in(robot_id)
        cfg = self._installer.config
        verdict = wave.verdict(self._now(), cfg.dial_in_timeout_s, cfg.max_failure_rate)
        if verdict == 'running':
            return
        self.wave = None
        self.waves.append((wave, verdict))
        if verdict == 'held':
            log.info('migration %s: wave of %d held (%d failed)', self._flag_name,
                     len(wave.robots), len(wave.failed))
            return
        log.warning('migration %s: wave of %d failed (%s): rolling back', self._flag_name,
                    len(wave.robots), '; '.join(f'{r}: {e}' for r, e in wave.failed.items()))
        await self._roll_back(wave)

    async def _roll_back(self, wave: WaveGate) -> None:
        by_id = {h.robot_id: h for h in self._hosts()}
        template = self._installer.config.uninstall_command
        if template.strip():
            await asyncio.gather(*(self._installer.run(by_id[r], template)
                                   for r in wave.robots if r in by_id))
        self._tried.difference_update(wave.robots)  # a later step tries them again
        try:
            await self._flags.step(self._flag_name, 'back', by='migration')
        except Exception as exc:  # off already, or deleted meanwhile
            log.warning('migration %s: could not step back: %s', self._flag_name, exc)

    async def run(self, interval_s: float) -> None:
        """Tick every `interval_s` until cancelled."""
        while True:
            try:
                await self.tick()
            except Exception:  # a bad tick must not end the migration: log it, go on
                log.exception('migration %s: tick failed', self._flag_name)
            await asyncio.sleep(interval_s)
