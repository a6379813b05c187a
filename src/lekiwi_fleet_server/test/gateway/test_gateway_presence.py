"""Presence, slow consumers, misbehaving robots and commands with real clients."""

from __future__ import annotations

import asyncio
import time

import orjson
import pytest
import robot_frames as rf
from gateway_harness import running_gateway
from memory_store import MemoryStore
from ws_client import RawClient, Robot

from lekiwi_fleet_server.gateway.commands import CommandTimeout, RobotNotConnected

pytestmark = pytest.mark.anyio


async def wait_for(predicate: object, timeout: float = 3.0) -> float:
    """Poll until predicate() is true; return how long it took."""
    started = time.monotonic()
    while not predicate():  # type: ignore[operator]
        if time.monotonic() - started > timeout:
            raise AssertionError('condition not met in time')
        await asyncio.sleep(0.01)
    return time.monotonic() - started


def presence(store: MemoryStore) -> list[tuple[str, bool, str]]:
    return [(c.robot_id, c.online, c.reason) for c in store.presence_log]


async def test_close_means_offline_at_once(memory_store: MemoryStore) -> None:
    async with running_gateway(memory_store, presence_timeout_s=30) as gw:
        robot = await Robot.authenticated(gw.url, 'kiwi-001', gw.enrol('kiwi-001'))
        await wait_for(lambda: memory_store.online.get('kiwi-001') is True)
        await robot.close()
        took = await wait_for(lambda: memory_store.online.get('kiwi-001') is False)
        assert took < 0.5
        assert presence(memory_store) == [('kiwi-001', True, 'connected'),
                                          ('kiwi-001', False, 'disconnected')]


async def test_silent_robot_goes_offline_after_low_timeout(memory_store: MemoryStore) -> None:
    async with running_gateway(memory_store, ping_interval_s=0.1,
                               presence_timeout_s=0.4) as gw:
        token = gw.enrol('kiwi-001')
        silent = await RawClient.connect('127.0.0.1', gw.port)  # never answers pings
        await silent.send(rf.auth('kiwi-001', token))
        assert (await silent.recv())['msg'] == 'authenticated'
        alive = await Robot.authenticated(gw.url, 'kiwi-002', gw.enrol('kiwi-002'))
        started = time.monotonic()
        await wait_for(lambda: memory_store.online.get('kiwi-001') is False, timeout=2)
        assert 0.3 < time.monotonic() - started < 1.5
        assert ('kiwi-001', False, 'timeout') in presence(memory_store)
        # websockets answers the pings: the other robot stays online.
        assert memory_store.online.get('kiwi-002') is True
        assert gw.gateway.is_connected('kiwi-002') and not gw.gateway.is_connected('kiwi-001')
        silent.close()
        await alive.close()


async def test_start_marks_everyone_offline_and_stop_commits_offline(
        memory_store: MemoryStore) -> None:
    memory_store.online = {'ghost': True}
    async with running_gateway(memory_store) as gw:
        assert memory_store.online == {'ghost': False}
        robot = await Robot.authenticated(gw.url, 'kiwi-001', gw.enrol('kiwi-001'))
        await wait_for(lambda: memory_store.online.get('kiwi-001') is True)
    assert ('kiwi-001', False, 'server_shutdown') in presence(memory_store)
    code, _frames = await robot.closed()
    assert code == 1012  # service restart: robots come back quickly


async def test_slow_consumer_is_dropped_without_stalling_others(
        memory_store: MemoryStore) -> None:
    async with running_gateway(memory_store, send_queue_bytes=4096) as gw:
        token = gw.enrol('kiwi-bad')
        good = await Robot.authenticated(gw.url, 'kiwi-good', gw.enrol('kiwi-good'))
        bad = await RawClient.connect('127.0.0.1', gw.port, rcvbuf=4096)
        await bad.send(rf.auth('kiwi-bad', token))
        assert (await bad.recv())['msg'] == 'authenticated'
        # From now on it never reads, and each 7-byte malformed frame it sends makes the
        # server queue a ~100-byte error frame for it.
        junk = bad.frame(b'x') * 5000
        for seq in range(1, 101):
            bad.writer.write(junk)
            await bad.writer.drain()
            await good.send(rf.publish('fleet/events', seq, robot_id='kiwi-good'))
            if not gw.gateway.is_connected('kiwi-bad'):
                break
        await wait_for(lambda: not gw.gateway.is_connected('kiwi-bad'), timeout=3)
        assert gw.metrics.frames_refused.labels('slow_consumer')._value.get() == 1
        assert gw.gateway.is_connected('kiwi-good')
        started = time.monotonic()
        await good.send(rf.publish('fleet/events', 100, robot_id='kiwi-good'))
        assert 100 in await good.acked(rf.BOOT, {100}, timeout=2)
        assert time.monotonic() - started < 1.0
        bad.close()
        await good.close()


async def test_flooding_robot_does_not_stall_others(memory_store: MemoryStore) -> None:
    async with running_gateway(memory_store) as gw:
        flood = await Robot.authenticated(gw.url, 'kiwi-flood', gw.enrol('kiwi-flood'))
        calm = await Robot.authenticated(gw.url, 'kiwi-calm', gw.enrol('kiwi-calm'))

        async def flood_it() -> None:
            bad = orjson.dumps(rf.publish('fleet/events', 1, msg={'junk': 'x' * 2000}))
            for seq in range(1, 3001):
                await flood.send(bad.decode() if seq % 2 else rf.publish('fleet/events', seq,
                                                                   robot_id='kiwi-flood'))

        async def drain_flood() -> None:
            try:
                while True:
                    await flood.recv(timeout=5)
            except Exception:
                return

        flooding = asyncio.create_task(flood_it())
        draining = asyncio.create_task(drain_flood())
        latencies = []
        for seq in range(1, 11):
            started = time.monotonic()
            await calm.send(rf.publish('fleet/events', seq, robot_id='kiwi-calm'))
            await calm.acked(rf.BOOT, {seq}, timeout=2)
            latencies.append(time.monotonic() - started)
        await flooding
        draining.cancel()
        assert max(latencies) < 0.5, latencies
        assert sum(1 for k in memory_store.messages if k[0] == 'kiwi-calm') == 10
        await flood.close()
        await calm.close()


async def test_command_round_trip_timeout_and_disconnect(memory_store: MemoryStore) -> None:
    async with running_gateway(memory_store) as gw:
        robot = await Robot.authenticated(gw.url, 'kiwi-001', gw.enrol('kiwi-001'))

        async def answer() -> dict[str, object]:
            call = await robot.recv_until(lambda f: f.get('op') == 'call_service')
            await robot.send({'op': 'service_response', 'service': 'fleet/command',
                              'id': call['id'], 'result': True,
                              'values': {'accepted': True, 'message': 'pong'}})
            return call

        answering = asyncio.create_task(answer())
        response = await gw.gateway.send_command('kiwi-001', 'ping', '{}', timeout_s=2)
        call = await answering
        assert call['service'] == 'fleet/command' and call['args']['command_type'] == 'ping'
        assert call['args']['command_id'] == call['id'] == response.id
        assert response.accepted and response.message == 'pong'
        with pytest.raises(CommandTimeout):
            await gw.gateway.send_command('kiwi-001', 'ping', '{}', timeout_s=0.1)
        pending = asyncio.create_task(gw.gateway.send_command('kiwi-001', 'request_snapshot',
                                                              '{}', timeout_s=5))
        await asyncio.sleep(0.05)
        await robot.close()
        with pytest.raises(RobotNotConnected):
            await pending
        with pytest.raises(RobotNotConnected):
            await gw.gateway.send_command('kiwi-001', 'ping', '{}')
