"""Crash test: SIGKILL the server mid-ingest on PostgreSQL; nothing acknowledged is lost."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import robot_frames as rf
import websockets
from ws_client import Robot

from lekiwi_fleet_server.store.interface import SequenceCoverage
from lekiwi_fleet_server.store.sql_store import SqlFleetStore

pytestmark = pytest.mark.anyio
PACKAGE_ROOT = Path(__file__).resolve().parents[2]


def server_env(database_url: str) -> dict[str, str]:
    return dict(os.environ, LEKIWI_DATABASE_URL=database_url, LEKIWI_API_PORT='0',
                LEKIWI_GATEWAY_PORT='0', LEKIWI_LOG_LEVEL='warning',
                PYTHONPATH=f'{PACKAGE_ROOT}{os.pathsep}{os.environ.get("PYTHONPATH", "")}')


def cli(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, '-m', 'lekiwi_fleet_server', *args],
                          env=server_env(database_url), capture_output=True, text=True,
                          timeout=60)


class Server:
    def __init__(self, database_url: str) -> None:
        self.proc = subprocess.Popen([sys.executable, '-m', 'lekiwi_fleet_server', 'serve'],
                                     env=server_env(database_url), stdout=subprocess.PIPE,
                                     text=True)
        line = self.proc.stdout.readline() if self.proc.stdout else ''
        match = re.search(r'api=(\S+) gateway=(\S+)', line)
        assert match, f'server did not start: {line!r}'
        self.api, self.gateway = match.group(1), match.group(2)

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)


@pytest.fixture
def servers(pg_url: str) -> Iterator[list[Server]]:
    started: list[Server] = []
    yield started
    for server in started:
        if server.proc.poll() is None:
            server.kill()


def stored_seqs(database_url: str, robot_id: str) -> list[int]:
    store = SqlFleetStore.open(database_url, migrate=False)
    try:
        seqs, after = [], 0
        while True:
            page = store.robot_timeline(robot_id, after, 1000)
            seqs += [e.metadata['seq'] for e in page.events
                     if e.type == 'RobotEventReported' and e.metadata.get('boot_id') == rf.BOOT]
            if page.next_after is None:
                return seqs
            after = page.next_after
    finally:
        store.close()


def coverage(database_url: str, robot_id: str) -> dict[str, SequenceCoverage]:
    store = SqlFleetStore.open(database_url, migrate=False)
    try:
        return store.robot_sequences(robot_id)
    finally:
        store.close()


async def test_sigkill_mid_ingest_loses_no_acknowledged_message(
        pg_url: str, servers: list[Server]) -> None:
    assert cli(pg_url, 'migrate').returncode == 0
    enrolled = cli(pg_url, 'enrol', 'kiwi-crash', '--tag', 'crash')
    assert enrolled.returncode == 0, enrolled.stderr
    token = enrolled.stdout.strip()
    assert token.startswith('lkw_')

    servers.append(Server(pg_url))
    robot = await Robot.authenticated(servers[0].gateway, 'kiwi-crash', token)
    acked: set[int] = set()

    async def read_acks(r: Robot) -> None:
        try:
            while True:
                frame = await r.recv(timeout=30)
                if frame.get('topic') == 'fleet/ack':
                    for first, last in frame['msg']['ranges']:
                        acked.update(range(first, last + 1))
        except (websockets.ConnectionClosed, asyncio.TimeoutError):
            return

    reader = asyncio.create_task(read_acks(robot))
    sent = 0
    started = time.monotonic()
    with pytest.raises(websockets.ConnectionClosed):
        while True:
            sent += 1
            await robot.send(rf.publish('fleet/events', sent, robot_id='kiwi-crash'))
            if sent % 20 == 0:
                await asyncio.sleep(0.005)
            if len(acked) > 300 and servers[0].proc.poll() is None:
                servers[0].kill()  # mid-ingest: frames in flight, a batch maybe committing
            assert time.monotonic() - started < 20, 'server was not killed'
    await reader
    assert acked, 'nothing was acknowledged before the kill'
    assert sent > max(acked), 'the kill came after the last frame'

    # Every acknowledged message survived the SIGKILL, and its seq was recorded with it.
    stored = stored_seqs(pg_url, 'kiwi-crash')
    assert acked <= set(stored)
    assert len(stored) == len(set(stored))
    recorded = {s for first, last in coverage(pg_url, 'kiwi-crash')[rf.BOOT].ranges
                for s in range(first, last + 1)}
    assert recorded == set(stored)

    # After a restart the robot resends what was not acknowledged: all stored exactly once.
    servers.append(Server(pg_url))
    again = await Robot.authenticated(servers[1].gateway, 'kiwi-crash', token)
    missing = [s for s in range(1, sent) if s not in acked]
    for seq in missing:
        await again.send(rf.publish('fleet/events', seq, robot_id='kiwi-crash'))
    await again.acked(rf.BOOT, set(missing), timeout=10)
    await again.close()
    final = stored_seqs(pg_url, 'kiwi-crash')
    assert sorted(final) == list(range(1, sent))
    (boot,) = coverage(pg_url, 'kiwi-crash').values()
    assert boot.ranges == ((1, sent - 1),) and boot.count == sent - 1 and boot.gaps == ()
    revoke = cli(pg_url, 'revoke', 'kiwi-crash')
    assert revoke.returncode == 0 and 'revoked' in revoke.stdout
