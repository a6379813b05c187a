"""The gateway on the real SQL store, SQLite and PostgreSQL: what robots send is stored."""

from __future__ import annotations

import asyncio
import time

import pytest
import robot_frames as rf
from gateway_harness import running_gateway
from ws_client import Robot

from lekiwi_fleet_server.domain.protocol import ErrorCode, ProtocolError
from lekiwi_fleet_server.store.interface import RobotFilter
from lekiwi_fleet_server.store.sql_store import SqlFleetStore

pytestmark = pytest.mark.anyio


async def wait_until(predicate: object, timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, 'condition not met in time'
        await asyncio.sleep(0.02)


async def test_robot_data_is_stored_acked_and_deduplicated(store: SqlFleetStore) -> None:
    async with running_gateway(store) as gw:
        token = gw.enrol('kiwi-001')
        robot = await Robot.authenticated(gw.url, 'kiwi-001', token)
        frames = [rf.publish('fleet/heartbeat', 1, rf.heartbeat(sequence=7)),
                  rf.publish('fleet/telemetry', 2),
                  rf.publish('teleop/status', 3),
                  rf.publish('fleet/events', 4),
                  rf.publish('fleet/deployment_status', 5)]
        for frame in frames:
            await robot.send(frame)
        assert await robot.acked(rf.BOOT, {1, 2, 3, 4, 5}) == {1, 2, 3, 4, 5}
        row = store.get_robot('kiwi-001', now=time.time())
        assert row is not None and row.status == 'online'
        assert row.boot_id == rf.BOOT and row.last_seq == 5 and row.heartbeat_sequence == 7
        assert row.software_version == '1.0.0'
        # A resend after reconnecting is acked again and stored once.
        await robot.close()
        again = await Robot.authenticated(gw.url, 'kiwi-001', token)
        await again.send(frames[3])
        assert await again.acked(rf.BOOT, {4}) == {4}
        assert gw.metrics.duplicates._value.get() == 1
        page = store.robot_timeline('kiwi-001', 0, 1000)
        reported = [e for e in page.events if e.metadata.get('seq') == 4]
        assert len(reported) == 1
        await again.close()
        await wait_until(lambda: store.get_robot('kiwi-001', now=time.time()).status
                         == 'offline')


async def test_invalid_frames_store_nothing(store: SqlFleetStore) -> None:
    async with running_gateway(store) as gw:
        robot = await Robot.authenticated(gw.url, 'kiwi-001', gw.enrol('kiwi-001'))
        await asyncio.sleep(0.1)
        before = store.robot_timeline('kiwi-001', 0, 1000).events
        await robot.send('{"op": "publish", ')
        await robot.send(rf.publish('fleet/events', 1, msg={**rf.event(), 'severity': 99}))
        await robot.send(rf.publish('fleet/nope', 2, msg={}))
        codes = [(await robot.recv())['code'] for _ in range(3)]
        assert codes == ['malformed_json', 'invalid_message', 'unknown_topic']
        # Valid by the schema, refused by the store: names and values differ in length.
        bad_delta = {**rf.telemetry(), 'field_values': [1.0]}
        await robot.send(rf.publish('fleet/telemetry', 3, msg=bad_delta))
        error = await robot.recv()
        assert error['code'] == 'invalid_message' and error['id'] == f'{rf.BOOT}:3'
        assert store.robot_timeline('kiwi-001', 0, 1000).events == before
        row = store.get_robot('kiwi-001', now=time.time())
        assert row is not None and row.last_seq is None
        await robot.close()


async def test_presence_and_revocation(store: SqlFleetStore) -> None:
    async with running_gateway(store) as gw:
        token = gw.enrol('kiwi-001')
        robot = await Robot.authenticated(gw.url, 'kiwi-001', token)
        await wait_until(lambda: store.list_robots(RobotFilter(status='online'),
                                                   now=time.time()))
        store.revoke_robot('kiwi-001', now=time.time())
        assert gw.gateway.disconnect(
            'kiwi-001', ProtocolError(ErrorCode.AUTH_FAILED, 'robot token revoked'))
        code, _frames = await robot.closed()
        assert code == 4401
        refused = await Robot.connect(gw.url)
        await refused.send(rf.auth('kiwi-001', token))
        code, frames = await refused.closed()
        assert code == 4401 and frames[0]['code'] == 'auth_failed'
        await wait_until(lambda: not store.list_robots(RobotFilter(status='online'),
                                                       now=time.time()))
