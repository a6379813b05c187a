"""Gateway authentication with real WebSocket clients: ok, refused, timeout, replaced."""

from __future__ import annotations

import asyncio

import pytest
import robot_frames as rf
from gateway_harness import running_gateway
from memory_store import MemoryStore
from ws_client import RawClient, Robot

pytestmark = pytest.mark.anyio


async def test_auth_ok_then_publish_is_acked_after_commit(memory_store: MemoryStore) -> None:
    async with running_gateway(memory_store) as gw:
        token = gw.enrol('kiwi-001')
        robot = await Robot.connect(gw.url)
        await robot.send(rf.auth('kiwi-001', token, ['lekiwi-fleet/7', 'lekiwi-fleet/1']))
        ok = await robot.recv()
        assert ok == {'op': 'status', 'level': 'info', 'id': 'auth', 'msg': 'authenticated',
                      'protocol': 'lekiwi-fleet/1', 'robot_id': 'kiwi-001',
                      'features': ['heartbeat-resources-optional']}
        await robot.send(rf.publish('fleet/events', 1))
        assert await robot.acked(rf.BOOT, {1}) == {1}
        lean = rf.publish('fleet/heartbeat', 2)
        del lean['msg']['resources']  # what the feature allows: taken and acked
        await robot.send(lean)
        assert await robot.acked(rf.BOOT, {2}) == {2}
        assert ('kiwi-001', rf.BOOT, 1) in memory_store.messages
        assert gw.gateway.is_connected('kiwi-001') and gw.gateway.connection_count == 1
        await robot.close()


@pytest.mark.parametrize('case', ['wrong_token', 'unknown_robot', 'revoked', 'bad_shape'])
async def test_refused_auth_closes_4401(memory_store: MemoryStore, case: str) -> None:
    async with running_gateway(memory_store) as gw:
        token = gw.enrol('kiwi-001')
        if case == 'revoked':
            memory_store.revoke_robot('kiwi-001', now=0)
        frame = {
            'wrong_token': rf.auth('kiwi-001', token + 'x'),
            'unknown_robot': rf.auth('kiwi-404', token),
            'revoked': rf.auth('kiwi-001', token),
            'bad_shape': {'op': 'auth', 'robot_id': 'kiwi-001'},
        }[case]
        robot = await Robot.connect(gw.url)
        await robot.send(frame)
        code, frames = await robot.closed()
        assert code == 4401
        assert frames[0]['code'] == 'auth_failed' and frames[0]['level'] == 'error'
        assert not gw.gateway.is_connected('kiwi-001')


async def test_unsupported_protocol(memory_store: MemoryStore) -> None:
    async with running_gateway(memory_store) as gw:
        token = gw.enrol('kiwi-001')
        robot = await Robot.connect(gw.url)
        await robot.send(rf.auth('kiwi-001', token, ['lekiwi-fleet/99']))
        code, frames = await robot.closed()
        assert code == 4401 and frames[0]['code'] == 'unsupported_protocol'


async def test_op_before_auth_is_unauthenticated_and_stores_nothing(
        memory_store: MemoryStore) -> None:
    async with running_gateway(memory_store) as gw:
        gw.enrol('kiwi-001')
        robot = await Robot.connect(gw.url)
        await robot.send(rf.publish('fleet/events', 1))
        code, frames = await robot.closed()
        assert code == 4401
        assert frames[0]['code'] == 'unauthenticated' and frames[0]['id'] == f'{rf.BOOT}:1'
        assert memory_store.messages == {}


async def test_auth_timeout_closes_4408(memory_store: MemoryStore) -> None:
    async with running_gateway(memory_store, auth_timeout_s=0.2) as gw:
        robot = await Robot.connect(gw.url)
        started = asyncio.get_running_loop().time()
        code, frames = await robot.closed()
        assert code == 4408 and frames[0]['code'] == 'auth_timeout'
        assert asyncio.get_running_loop().time() - started < 1.5


async def test_store_down_during_auth_gives_server_error_and_allows_retry(
        memory_store: MemoryStore) -> None:
    async with running_gateway(memory_store) as gw:
        token = gw.enrol('kiwi-001')
        robot = await Robot.connect(gw.url)
        memory_store.down = True
        await robot.send(rf.auth('kiwi-001', token))
        assert (await robot.recv())['code'] == 'server_error'
        memory_store.down = False
        await robot.send(rf.auth('kiwi-001', token))
        assert (await robot.recv())['msg'] == 'authenticated'
        await robot.close()


async def test_frames_sent_right_after_auth_are_held_until_it_completes(
        memory_store: MemoryStore) -> None:
    async with running_gateway(memory_store) as gw:
        token = gw.enrol('kiwi-001')
        robot = await Robot.connect(gw.url)
        await robot.send(rf.auth('kiwi-001', token))
        await robot.send({'op': 'advertise', 'topic': 'fleet/events', 'type': 'x'})
        await robot.send(rf.publish('fleet/events', 1))
        assert (await robot.recv())['msg'] == 'authenticated'
        assert await robot.acked(rf.BOOT, {1}) == {1}
        await robot.close()


async def test_second_connection_replaces_first_without_going_offline(
        memory_store: MemoryStore) -> None:
    async with running_gateway(memory_store) as gw:
        token = gw.enrol('kiwi-001')
        first = await Robot.authenticated(gw.url, 'kiwi-001', token)
        second = await Robot.authenticated(gw.url, 'kiwi-001', token)
        code, frames = await first.closed()
        assert code == 4409 and frames[-1]['code'] == 'replaced'
        await second.send(rf.publish('fleet/events', 5))
        assert await second.acked(rf.BOOT, {5}) == {5}
        await asyncio.sleep(0.1)
        changes = [(c.robot_id, c.online) for c in memory_store.presence_log]
        assert changes == [('kiwi-001', True)]
        await second.close()
        for _ in range(50):
            await asyncio.sleep(0.02)
            if len(memory_store.presence_log) == 2:
                break
        assert [c.reason for c in memory_store.presence_log] == ['connected', 'disconnected']


async def test_http_paths_other_than_root_are_not_found(memory_store: MemoryStore) -> None:
    async with running_gateway(memory_store) as gw:
        reader, writer = await asyncio.open_connection('127.0.0.1', gw.port)
        writer.write(b'GET /other HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n'
                     b'Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n'
                     b'Sec-WebSocket-Version: 13\r\n\r\n')
        status_line = await asyncio.wait_for(reader.readline(), 3)
        assert b'404' in status_line
        writer.close()
        raw = await RawClient.connect('127.0.0.1', gw.port)
        raw.close()
