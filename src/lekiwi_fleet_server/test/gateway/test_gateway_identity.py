"""Issue 14: frames before auth close with 4401; a message naming another robot or boot is
refused; error frames echo at most a bounded part of what they refuse."""

from __future__ import annotations

import pytest
import robot_frames as rf
from gateway_harness import running_gateway
from memory_store import MemoryStore
from ws_client import Robot

from lekiwi_fleet_server.domain.protocol import MAX_ERROR_ID_CHARS, MAX_ERROR_MSG_CHARS
from lekiwi_fleet_server.domain.tokens import hash_token

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize('first', [b'not json', b'[1, 2]', b'{"op": "fly"}', b'{"x": 1}',
                                   b'{"op": "subscribe", "topic": "fleet/ack"}'])
async def test_any_first_frame_but_auth_closes_4401(memory_store: MemoryStore,
                                                    first: bytes) -> None:
    async with running_gateway(memory_store, auth_timeout_s=10.0) as gw:
        robot = await Robot.connect(gw.url)
        await robot.send(first.decode())
        code, frames = await robot.closed(timeout=3.0)  # well before the 10 s auth timeout
        assert code == 4401
        assert [f['code'] for f in frames] == ['unauthenticated']


@pytest.mark.parametrize('field', ['robot_id', 'boot_id'])
async def test_publish_naming_another_robot_or_boot_is_invalid(memory_store: MemoryStore,
                                                               field: str) -> None:
    async with running_gateway(memory_store) as gw:
        token = gw.enrol('kiwi-001')
        robot = await Robot.authenticated(gw.url, 'kiwi-001', token)
        msg = rf.heartbeat()
        msg[field] = 'kiwi-002' if field == 'robot_id' else 'aaaaaaaabbbbbbbb'
        await robot.send(rf.publish('fleet/heartbeat', 1, msg))
        error = await robot.recv()
        assert error['code'] == 'invalid_message' and error['id'] == f'{rf.BOOT}:1'
        assert f'msg.{field}' in error['msg']
        # The connection stays open and a matching message is acked.
        await robot.send(rf.publish('fleet/heartbeat', 2))
        assert await robot.acked(rf.BOOT, {2}) == {2}
        assert ('kiwi-001', rf.BOOT, 1) not in memory_store.messages
        await robot.close()


async def test_error_frames_truncate_what_they_echo(memory_store: MemoryStore) -> None:
    async with running_gateway(memory_store, max_frame_bytes=200_000) as gw:
        token = gw.enrol('kiwi-001')
        robot = await Robot.authenticated(gw.url, 'kiwi-001', token)
        long = 'x' * 60_000
        await robot.send({'op': 'publish', 'topic': long, 'boot_id': rf.BOOT, 'seq': 1,
                          'msg': {}})
        await robot.send({'op': long, 'id': long})
        for _ in range(2):
            error = await robot.recv()
            assert len(error['msg']) <= MAX_ERROR_MSG_CHARS
            assert len(error.get('id', '')) <= MAX_ERROR_ID_CHARS
            assert error['code'] in ('unknown_topic', 'unknown_op')
        await robot.close()


@pytest.mark.parametrize('change', ['revoke', 'rotate', 'resync'])
async def test_an_admin_change_recheck_closes_the_session(memory_store: MemoryStore,
                                                          change: str) -> None:
    async with running_gateway(memory_store) as gw:
        token = gw.enrol('kiwi-001')
        other = await Robot.authenticated(gw.url, 'kiwi-002', gw.enrol('kiwi-002'))
        robot = await Robot.authenticated(gw.url, 'kiwi-001', token)
        if change == 'rotate':
            memory_store.enrol('kiwi-001', hash_token('a new token'))
        else:
            memory_store.revoke_robot('kiwi-001', now=0)
        gw.gateway.store_changed(*(('resync', '') if change == 'resync' else ('robot',
                                                                              'kiwi-001')))
        code, frames = await robot.closed(timeout=1.0)
        assert code == 4401 and frames[-1]['code'] == 'auth_failed'
        assert 'kiwi-001' in memory_store.forgotten or change == 'resync'
        # The other robot is untouched.
        assert gw.gateway.is_connected('kiwi-002')
        await other.send(rf.publish('fleet/events', 1, robot_id='kiwi-002'))
        assert await other.acked(rf.BOOT, {1}) == {1}
        await other.close()
