"""Roles on real PostgreSQL and NATS: two writer processes (two shards) and a gateway process.

SIGKILL a writer: its partition waits, then is redelivered to the writer started again, and
every message is stored once. Stop NATS: nothing is acked meanwhile and `/readyz` says
degraded; when it returns, everything the robots sent arrives and is acked.
"""

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

import httpx
import pytest
from nats_server import NatsServer

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / 'gateway'))
import robot_frames as rf  # noqa: E402
from ws_client import Robot  # noqa: E402

from lekiwi_fleet_server.domain.shards import shard_of  # noqa: E402
from lekiwi_fleet_server.domain.tokens import hash_token  # noqa: E402
from lekiwi_fleet_server.store.config import StoreConfig  # noqa: E402
from lekiwi_fleet_server.store.sql_store import SqlFleetStore  # noqa: E402

pytestmark = pytest.mark.anyio
PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])
ROBOTS = [next(f'kiwi-{i}' for i in range(100) if shard_of(f'kiwi-{i}', 2) == s)
          for s in (0, 1)]
TOKEN = 'system-test-token-0123456789abcdef'
_READY = re.compile(r'lekiwi-fleet-server ready (.*)')


class Role:
    """One `lekiwi-fleet-server serve --role ...` process."""

    def __init__(self, env: dict[str, str], *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, '-c', 'import sys; from lekiwi_fleet_server.cli import main; '
             'sys.exit(main(sys.argv[1:]))', 'serve', *args],
            env=env, stdout=subprocess.PIPE, text=True)
        self.ready = ''

    def wait_ready(self, timeout_s: float = 90.0) -> str:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line and self.proc.poll() is not None:
                raise AssertionError(f'role exited with {self.proc.returncode}')
            match = _READY.search(line)
            if match:
                self.ready = match.group(1)
                return self.ready
        raise AssertionError('role not ready in time')

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def env(pg_url: str, nats_server: NatsServer, tmp_path: Path) -> Iterator[dict[str, str]]:
    store = SqlFleetStore.open(pg_url, StoreConfig())  # migrated before any role starts
    for robot_id in ROBOTS:
        store.enrol_robot(robot_id, hash_token(TOKEN), (), now=time.time())
    store.close()
    environ = dict(os.environ)
    environ.update({
        'PYTHONPATH': os.pathsep.join(p for p in (PACKAGE_ROOT, environ.get('PYTHONPATH')) if p),
        'LEKIWI_DATABASE_URL': pg_url, 'LEKIWI_NATS_URL': nats_server.url,
        'LEKIWI_WRITER_SHARDS': '2', 'LEKIWI_DATA_DIR': str(tmp_path / 'data'),
        'LEKIWI_API_PORT': '0', 'LEKIWI_GATEWAY_PORT': '0', 'LEKIWI_LOG_LEVEL': 'warning',
        'LEKIWI_BROKER_ACK_WAIT_S': '2', 'LEKIWI_BROKER_PUBLISH_TIMEOUT_S': '1',
        'LEKIWI_STORE_RETRY_S': '0.2', 'LEKIWI_WRITER_PRIORITY': '0',
        'LEKIWI_PRESENCE_TIMEOUT_S': '30', 'LEKIWI_PING_INTERVAL_S': '5'})
    yield environ


async def send(robot: Robot, robot_id: str, seqs: range) -> None:
    for seq in seqs:
        await robot.send(rf.publish('fleet/events', seq, robot_id=robot_id))


def stored_once(pg_url: str, robot_id: str, last: int) -> None:
    store = SqlFleetStore.open(pg_url, StoreConfig(), migrate=False, preload=False)
    try:
        assert store.robot_sequences(robot_id)[rf.BOOT].ranges == ((1, last),)
        events = store.robot_timeline(robot_id, 0, 1000).events
        seqs = [e.metadata.get('seq') for e in events if e.type != 'RobotEnrolled'
                and e.metadata.get('seq') is not None]
        assert sorted(seqs) == list(range(1, last + 1))  # each once: nothing duplicated
    finally:
        store.close()


async def test_a_killed_writer_and_a_stopped_broker_lose_and_duplicate_nothing(
        env: dict[str, str], pg_url: str, nats_server: NatsServer) -> None:
    writers = [Role(env, '--role', 'writer', '--shard', str(s)) for s in (0, 1)]
    gateway: Role | None = None
    robots: list[Robot] = []
    try:
        for writer in writers:
            writer.wait_ready()
        gateway = Role(env, '--role', 'gateway')
        ready = gateway.wait_ready()
        api = re.search(r'api=(\S+)', ready).group(1)  # type: ignore[union-attr]
        ws = re.search(r'gateway=(\S+)', ready).group(1)  # type: ignore[union-attr]
        robots = [await Robot.authenticated(ws, r, TOKEN) for r in ROBOTS]
        a, b = robots
        await send(a, ROBOTS[0], range(1, 21))
        await send(b, ROBOTS[1], range(1, 21))
        assert await a.acked(rf.BOOT, set(range(1, 21)), 30) >= set(range(1, 21))
        assert await b.acked(rf.BOOT, set(range(1, 21)), 30) >= set(range(1, 21))

        # SIGKILL shard 1's writer while robot b sends: shard 0 goes on, shard 1 waits.
        send_b = asyncio.create_task(send(b, ROBOTS[1], range(21, 61)))
        await asyncio.sleep(0.05)
        writers[1].kill()
        await send_b
        await send(a, ROBOTS[0], range(21, 41))
        assert await a.acked(rf.BOOT, set(range(21, 41)), 30) >= set(range(21, 41))
        writers[1] = Role(env, '--role', 'writer', '--shard', '1')
        writers[1].wait_ready()
        assert await b.acked(rf.BOOT, set(range(21, 61)), 60) >= set(range(21, 61))

        # Stop NATS: the gateway holds the frames without acking; /readyz is degraded.
        nats_server.stop()
        async with httpx.AsyncClient() as client:
            deadline = time.monotonic() + 30
            while (await client.get(f'{api}/readyz')).status_code != 503:
                assert time.monotonic() < deadline, '/readyz never said degraded'
                await asyncio.sleep(0.2)
            await send(a, ROBOTS[0], range(41, 51))
            with pytest.raises(TimeoutError):
                await a.acked(rf.BOOT, {41}, 2)
            nats_server.start()
            assert await a.acked(rf.BOOT, set(range(41, 51)), 60) >= set(range(41, 51))
            deadline = time.monotonic() + 30
            while (await client.get(f'{api}/readyz')).status_code != 200:
                assert time.monotonic() < deadline, '/readyz did not recover'
                await asyncio.sleep(0.2)
        stored_once(pg_url, ROBOTS[0], 50)
        stored_once(pg_url, ROBOTS[1], 60)
    finally:
        for robot in robots:
            await robot.ws.close()
        if gateway is not None:
            gateway.stop()
        for writer in writers:
            writer.stop()
