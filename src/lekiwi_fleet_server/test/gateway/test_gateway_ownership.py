"""Two gateways on one Redis: a robot's second connection anywhere replaces the first."""

from __future__ import annotations

import asyncio
import time

import pytest
from gateway_harness import running_gateway
from memory_store import MemoryStore
from redis_server import RedisServer  # test/broker/, on the path by test/conftest.py
from ws_client import Robot

from lekiwi_fleet_server.broker.presence import RedisRegistry
from lekiwi_fleet_server.gateway.ownership import FencedCommitter
from lekiwi_fleet_server.store.interface import PresenceChange

pytestmark = pytest.mark.anyio


async def wait_for(predicate: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError('condition not met in time')
        await asyncio.sleep(0.01)


def log_of(store: MemoryStore) -> list[tuple[bool, str, int]]:
    return [(c.online, c.reason, c.token) for c in store.presence_log]


async def test_second_connection_on_another_gateway_replaces_the_first(
        memory_store: MemoryStore, redis_server: RedisServer) -> None:
    reg_a, reg_b = RedisRegistry(redis_server.url, 5.0), RedisRegistry(redis_server.url, 5.0)
    try:
        async with running_gateway(memory_store, registry=reg_a, gateway_id='gw-a') as a, \
                running_gateway(memory_store, registry=reg_b, gateway_id='gw-b') as b:
            token = a.enrol('kiwi-001')
            first = await Robot.authenticated(a.url, 'kiwi-001', token)
            await wait_for(lambda: a.gateway.ownership.owns('kiwi-001') is not None)
            second = await Robot.authenticated(b.url, 'kiwi-001', token)
            code, frames = await first.closed()
            assert code == 4409
            assert frames[-1]['code'] == 'replaced' and 'another gateway' in frames[-1]['msg']
            await wait_for(lambda: not a.gateway.is_connected('kiwi-001'))
            owners = await reg_a.lookup(['kiwi-001'])
            assert owners['kiwi-001'].gateway_id == 'gw-b'
            await wait_for(lambda: len(memory_store.presence_log) >= 2)
            await asyncio.sleep(0.3)  # a wrongly committed offline would have landed by now
            # Online under gw-a's token, again under gw-b's higher one, no offline of gw-a.
            log = log_of(memory_store)
            assert [entry[:2] for entry in log] == [(True, 'connected'), (True, 'connected')]
            assert 0 < log[0][2] < log[1][2]
            token_b = log[1][2]
            assert memory_store.online['kiwi-001'] is True
            await second.close()
            await wait_for(lambda: memory_store.online['kiwi-001'] is False)
            assert log_of(memory_store)[-1] == (False, 'disconnected', token_b)
            assert await reg_a.lookup(['kiwi-001']) == {}
    finally:
        await reg_a.close()
        await reg_b.close()


async def test_claims_of_a_dead_gateway_expire_and_its_robot_goes_offline(
        memory_store: MemoryStore, redis_server: RedisServer) -> None:
    dead = RedisRegistry(redis_server.url, 0.3)  # a gateway that claimed, then died
    live = RedisRegistry(redis_server.url, 0.3)
    try:
        claim = await dead.claim('kiwi-dead', 'gw-dead', time.time())
        memory_store.online['kiwi-dead'] = True
        async with running_gateway(memory_store, registry=live, gateway_id='gw-live',
                                   presence_ttl_s=0.3):
            await wait_for(lambda: memory_store.online['kiwi-dead'] is False)
        assert log_of(memory_store) == [(False, 'expired', claim.token)]
    finally:
        await dead.close()
        await live.close()


class _Inner:
    def __init__(self) -> None:
        self.presence: list[PresenceChange] = []

    async def commit(self, frames, presence, now, want_update):  # type: ignore[no-untyped-def]
        self.presence.extend(presence)
        return None


async def test_a_stale_gateways_late_offline_is_fenced_at_commit(
        redis_server: RedisServer) -> None:
    reg = RedisRegistry(redis_server.url, 5.0)
    try:
        old = await reg.claim('kiwi-001', 'gw-a', time.time())
        new = await reg.claim('kiwi-001', 'gw-b', time.time())
        inner = _Inner()
        fenced = FencedCommitter(inner, reg)  # type: ignore[arg-type]
        late = PresenceChange('kiwi-001', False, time.time(), 'timeout', token=old.token)
        fresh = PresenceChange('kiwi-001', True, time.time(), 'connected', token=new.token)
        await fenced.commit([], [late, fresh], time.time(), False)
        assert inner.presence == [fresh]
    finally:
        await reg.close()


class _Seam:
    """A committer with the whole Committer seam, recording each call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []

    async def commit(self, frames, presence, now, want_update):  # type: ignore[no-untyped-def]
        self.calls.append(('commit', len(frames)))
        return 'committed'

    async def flush_state(self, now: float) -> str:
        self.calls.append(('flush_state', now))
        return 'flushed'

    async def forget(self, robot_ids: list[str]) -> None:
        self.calls.append(('forget', tuple(robot_ids)))

    async def mark_all_offline(self, now: float) -> int:
        self.calls.append(('mark_all_offline', now))
        return 3

    def not_on_the_seam(self) -> None:
        raise AssertionError('forwarded a method that is not on the Committer seam')


async def test_the_fenced_committer_forwards_the_committer_seam_explicitly() -> None:
    inner = _Seam()
    fenced = FencedCommitter(inner, registry=None)  # type: ignore[arg-type]
    assert await fenced.commit([], [], 1.0, False) == 'committed'  # no presence: no fence
    assert await fenced.flush_state(2.0) == 'flushed'
    await fenced.forget(['kiwi-1'])
    assert await fenced.mark_all_offline(3.0) == 3
    assert inner.calls == [('commit', 0), ('flush_state', 2.0), ('forget', ('kiwi-1',)),
                           ('mark_all_offline', 3.0)]
    assert not hasattr(fenced, 'not_on_the_seam')  # nothing else leaks through
    # An inner committer without a flush of its own (JetStream's): the flush is a no-op.
    assert await FencedCommitter(_Inner(), registry=None).flush_state(4.0) is None  # type: ignore[arg-type]


async def test_registry_down_at_auth_closes_try_again_later(
        memory_store: MemoryStore, redis_server: RedisServer) -> None:
    reg = RedisRegistry(redis_server.url, 5.0, timeout_s=0.5)
    try:
        async with running_gateway(memory_store, registry=reg, gateway_id='gw-a') as gw:
            token = gw.enrol('kiwi-001')
            redis_server.stop()
            robot = await Robot.authenticated(gw.url, 'kiwi-001', token)
            code, _frames = await robot.closed(timeout=5.0)
            assert code == 1013
            assert memory_store.presence_log == []  # nothing recorded for an unclaimed robot
            redis_server.start()
            robot = await Robot.authenticated(gw.url, 'kiwi-001', token)
            await wait_for(lambda: memory_store.online.get('kiwi-001') is True)
            await robot.close()
    finally:
        await reg.close()
