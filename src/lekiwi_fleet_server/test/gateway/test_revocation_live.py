"""Issue 14: admin changes made by another process (the CLI writes straight to the database)
reach a running server at once: revocation and token rotation close the robot's live session
within 1 s and stop its frames being stored; the writers' caches never go stale."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from collections.abc import Iterator

import pytest
import robot_frames as rf
import websockets
from test_gateway_crash import Server, cli, stored_seqs
from ws_client import Robot

from lekiwi_fleet_server.store.sql_store import SqlFleetStore

pytestmark = pytest.mark.anyio
ROBOT = 'kiwi-rev'


@pytest.fixture
def server(database_url: str) -> Iterator[Server]:
    assert cli(database_url, 'migrate').returncode == 0
    started = Server(database_url)
    yield started
    if started.proc.poll() is None:
        started.kill()


def enrol(database_url: str, *extra: str) -> str:
    done = cli(database_url, 'enrol', ROBOT, *extra)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def api(server: Server, method: str, path: str, token: str) -> tuple[int, object]:
    request = urllib.request.Request(f'{server.api}{path}', method=method,
                                     headers={'Authorization': f'Bearer {token}'})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            body = response.read()
            return response.status, json.loads(body) if body else None
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b'null')


def admin_events(database_url: str) -> list[tuple[str, dict[str, object]]]:
    store = SqlFleetStore.open(database_url, migrate=False)
    try:
        found, after = [], 0
        while True:
            page = store.robot_timeline(ROBOT, after, 1000)
            found += [(e.type, dict(e.data)) for e in page.events if e.type.startswith('Robot')
                      and e.type in ADMIN_TYPES]
            if page.next_after is None:
                return found
            after = page.next_after
    finally:
        store.close()


ADMIN_TYPES = ('RobotEnrolled', 'RobotTokenRevoked', 'RobotReEnrolled', 'RobotTokenRotated')


class Sender:
    """Publish events as fast as acks allow; note when each seq was sent and how it ended."""

    def __init__(self, robot: Robot) -> None:
        self.robot = robot
        self.sent_at: dict[int, float] = {}
        self.close_code: int | None = None
        self.closed_at: float | None = None
        self.errors: list[dict[str, object]] = []

    async def run(self) -> None:
        async def read() -> None:
            try:
                while True:
                    frame = await self.robot.recv(timeout=30)
                    if frame.get('level') == 'error':
                        self.errors.append(frame)
            except websockets.ConnectionClosed as exc:
                self.close_code = exc.rcvd.code if exc.rcvd else None
                self.closed_at = time.monotonic()
        reader = asyncio.create_task(read())
        seq = 0
        try:
            while self.closed_at is None and seq < 20_000:
                seq += 1
                await self.robot.send(rf.publish('fleet/events', seq, robot_id=ROBOT))
                self.sent_at[seq] = time.monotonic()
                await asyncio.sleep(0.005)
        except websockets.ConnectionClosed:
            pass
        await asyncio.wait_for(reader, 10)

    def last_sent_before(self, moment: float) -> int:
        return max((s for s, at in self.sent_at.items() if at <= moment), default=0)


async def closed_after(database_url: str, server: Server, token: str,
                       command: tuple[str, ...]) -> tuple[Sender, float, str]:
    robot = await Robot.authenticated(server.gateway, ROBOT, token)
    sender = Sender(robot)
    sending = asyncio.create_task(sender.run())
    await asyncio.sleep(0.5)
    done = await asyncio.to_thread(cli, database_url, *command)
    assert done.returncode == 0, done.stderr
    returned = time.monotonic()
    await asyncio.wait_for(sending, 15)
    assert sender.closed_at is not None
    return sender, returned, done.stdout.strip()


async def test_cli_revoke_closes_the_live_session_and_stops_storing(
        database_url: str, server: Server) -> None:
    token = enrol(database_url)
    sender, returned, _ = await closed_after(database_url, server, token, ('revoke', ROBOT))
    assert sender.close_code == 4401
    assert sender.closed_at - returned < 1.0, 'the session outlived its revocation by 1 s'
    assert any('revoked' in str(e.get('msg')) for e in sender.errors)
    # Frames sent once the revocation had had a moment to land were never stored.
    settled = sender.last_sent_before(returned + 0.3)
    stored = stored_seqs(database_url, ROBOT)
    assert stored and max(stored) <= settled
    # The token is refused from now on.
    again = await Robot.connect(server.gateway)
    await again.send(rf.auth(ROBOT, token))
    code, frames = await again.closed()
    assert code == 4401 and frames[0]['code'] == 'auth_failed'

    # The REST revoke of the robot the CLI revoked answers 204 (it was a 500: a stale cache).
    created = cli(database_url, 'create-operator', 'ops', '--role', 'admin')
    admin = created.stdout.strip()
    status, _ = await asyncio.to_thread(api, server, 'POST', f'/api/v1/robots/{ROBOT}/revoke',
                                        admin)
    assert status == 204

    # Re-enrolment by an admin brings the robot back with a new token, recorded with who.
    new_token = enrol(database_url, '--reenrol')
    robot = await Robot.authenticated(server.gateway, ROBOT, new_token)
    await robot.send(rf.publish('fleet/events', 1, robot_id=ROBOT, boot_id='reenrolled-1'))
    assert await robot.acked('reenrolled-1', {1}, timeout=5) == {1}
    await robot.close()
    events = admin_events(database_url)
    assert [t for t, _ in events] == ['RobotEnrolled', 'RobotTokenRevoked', 'RobotReEnrolled']
    assert events[2][1]['by'].startswith('cli:')


async def test_cli_rotate_token_closes_the_session_and_refuses_the_old_token(
        database_url: str, server: Server) -> None:
    old = enrol(database_url)
    sender, returned, new = await closed_after(database_url, server, old,
                                               ('rotate-token', ROBOT))
    assert sender.close_code == 4401
    assert sender.closed_at - returned < 1.0
    assert any('rotated' in str(e.get('msg')) for e in sender.errors)
    refused = await Robot.connect(server.gateway)
    await refused.send(rf.auth(ROBOT, old))
    assert (await refused.closed())[0] == 4401
    assert new.startswith('lkw_') and new != old
    robot = await Robot.authenticated(server.gateway, ROBOT, new)
    await robot.close()
    rotated = [d for t, d in admin_events(database_url) if t == 'RobotTokenRotated']
    assert len(rotated) == 1 and str(rotated[0]['by']).startswith('cli:')
