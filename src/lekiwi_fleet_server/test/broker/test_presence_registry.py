"""Contract of the presence registry, against the in-process one and a real redis-server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import pytest
from redis_server import RedisServer

from lekiwi_fleet_server.broker.presence import (
    InProcessRegistry,
    PresenceRegistry,
    RedisRegistry,
    RegistryUnavailable,
    fence,
)
from lekiwi_fleet_server.store.interface import PresenceChange

TTL_S = 1.0  # low, so that expiry is tested by waiting a second or so


@pytest.fixture(params=['in_process', 'redis'])
def make_registry(request: pytest.FixtureRequest) -> Callable[..., PresenceRegistry]:
    """Return a factory of registries sharing one backing store (two gateways' views)."""
    if request.param == 'in_process':
        shared: dict[float, InProcessRegistry] = {}
        return lambda ttl_s=TTL_S: shared.setdefault(ttl_s, InProcessRegistry(ttl_s))
    server: RedisServer = request.getfixturevalue('redis_server')
    return lambda ttl_s=TTL_S: RedisRegistry(server.url, ttl_s)


def run(make: Callable[..., PresenceRegistry],
        body: Callable[[PresenceRegistry], Awaitable[None]], ttl_s: float = TTL_S) -> None:
    async def main() -> None:
        registry = make(ttl_s)
        try:
            await body(registry)
        finally:
            await registry.close()
    asyncio.run(main())


def test_claim_tokens_grow_per_robot_and_the_owner_is_looked_up(make_registry) -> None:
    async def body(reg: PresenceRegistry) -> None:
        now = time.time()
        a = await reg.claim('r1', 'gw-a', now)
        b = await reg.claim('r1', 'gw-b', now)
        other = await reg.claim('r2', 'gw-a', now)
        assert b.token > a.token >= 1 and other.token >= 1
        assert a.replaced_gateway is None and b.replaced_gateway == 'gw-a'
        owners = await reg.lookup(['r1', 'r2', 'nobody'])
        assert set(owners) == {'r1', 'r2'}
        assert (owners['r1'].gateway_id, owners['r1'].token) == ('gw-b', b.token)
        assert owners['r1'].state(now + 0.1, stale_after_s=1.0) == 'online'
        assert owners['r1'].state(now + 5.0, stale_after_s=1.0) == 'stale'
        assert await reg.latest_tokens(['r1', 'nobody']) == {'r1': b.token}
        # Reclaiming from the same gateway (the robot reconnected to it) replaces no one else.
        assert (await reg.claim('r2', 'gw-a', now)).replaced_gateway is None
    run(make_registry, body)


def test_only_the_current_owner_releases_and_refreshes(make_registry) -> None:
    async def body(reg: PresenceRegistry) -> None:
        now = time.time()
        old = await reg.claim('r1', 'gw-a', now)
        new = await reg.claim('r1', 'gw-b', now)
        assert await reg.release(old) is False  # the stale gateway's late release does nothing
        assert (await reg.lookup(['r1']))['r1'].gateway_id == 'gw-b'
        assert await reg.refresh([(old, now), (new, now + 0.2)], now) == [False, True]
        assert (await reg.lookup(['r1']))['r1'].heard_at == pytest.approx(now + 0.2)
        assert await reg.release(new) is True
        assert await reg.lookup(['r1']) == {}
        assert await reg.release(new) is False
        assert await reg.refresh([(new, now)], now) == [False]  # gone: not resurrected
    run(make_registry, body)


def test_claims_expire_without_refresh_and_are_reaped_once(make_registry) -> None:
    async def body(reg: PresenceRegistry) -> None:
        now = time.time()
        kept = await reg.claim('alive', 'gw-a', now)
        dead = await reg.claim('dead', 'gw-dead', now)
        for _ in range(4):  # the live gateway refreshes; the dead one cannot
            await asyncio.sleep(TTL_S / 3)
            assert await reg.refresh([(kept, time.time())], time.time()) == [True]
        owners = await reg.lookup(['alive', 'dead'])
        assert set(owners) == {'alive'}
        assert await reg.expired(time.time()) == [('dead', dead.token)]
        assert await reg.expired(time.time()) == []  # handed out once only
        # The released one is not "expired": its gateway recorded its offline itself.
        await reg.release(kept)
        await asyncio.sleep(TTL_S * 1.5)
        assert await reg.expired(time.time()) == []
    run(make_registry, body)


def test_a_claim_elsewhere_tells_the_gateway_that_held_the_robot(make_registry) -> None:
    async def body(reg: PresenceRegistry) -> None:
        heard_a: list[tuple[str, int]] = []
        heard_b: list[tuple[str, int]] = []
        other = make_registry()  # a second gateway process
        try:
            await reg.listen('gw-a', lambda robot, token: heard_a.append((robot, token)))
            await other.listen('gw-b', lambda robot, token: heard_b.append((robot, token)))
            await asyncio.sleep(0.2)  # the subscriptions are in place
            now = time.time()
            await reg.claim('r1', 'gw-a', now)
            taken = await other.claim('r1', 'gw-b', now)
            deadline = time.monotonic() + 10
            while not heard_a and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            assert heard_a == [('r1', taken.token)]
            assert heard_b == []
        finally:
            if other is not reg:
                await other.close()
    run(make_registry, body)


def test_refresh_and_lookup_of_many_robots_at_once(make_registry) -> None:
    async def body(reg: PresenceRegistry) -> None:
        now = time.time()
        claims = [await reg.claim(f'r{i}', 'gw-a', now) for i in range(1203)]
        lost = await reg.claim('r7', 'gw-b', now)
        flags = await reg.refresh([(c, now) for c in claims], now)
        assert flags.count(False) == 1 and flags[7] is False
        owners = await reg.lookup(c.robot_id for c in claims)
        assert len(owners) == 1203 and owners['r7'].token == lost.token
    run(make_registry, body, ttl_s=60.0)  # 1203 claims one by one take a while on a busy host


@dataclass(frozen=True)
class _Change:
    robot_id: str
    token: int


def test_fence_drops_changes_decided_under_an_older_claim() -> None:
    changes = [PresenceChange('r1', False, 1.0, 'timeout', token=3),
               PresenceChange('r1', True, 1.0, 'connected', token=4),
               PresenceChange('r2', False, 1.0, 'disconnected'),  # no registry: kept
               PresenceChange('r3', False, 1.0, 'disconnected', token=1)]  # unknown: kept
    assert [(c.robot_id, c.token) for c in fence(changes, {'r1': 4, 'r2': 9})] == [
        ('r1', 4), ('r2', 0), ('r3', 1)]


def test_redis_down_raises_registry_unavailable(redis_server: RedisServer) -> None:
    async def main() -> None:
        reg = RedisRegistry(redis_server.url, TTL_S, timeout_s=0.5)
        try:
            await reg.ping()
            claim = await reg.claim('r1', 'gw-a', time.time())
            redis_server.stop()
            for call in (reg.ping(), reg.claim('r1', 'gw-a', time.time()), reg.release(claim),
                         reg.lookup(['r1']), reg.refresh([(claim, 0.0)], time.time()),
                         reg.expired(time.time()), reg.latest_tokens(['r1'])):
                with pytest.raises(RegistryUnavailable, match='redis'):
                    await call
            redis_server.start()  # back (empty: no persistence): it answers again
            await reg.ping()
            assert await reg.lookup(['r1']) == {}
        finally:
            await reg.close()
    asyncio.run(main())


def test_tokens_stay_monotonic_when_redis_restarts_empty(redis_server: RedisServer) -> None:
    async def main() -> None:
        reg = RedisRegistry(redis_server.url, TTL_S)
        try:
            before = await reg.claim('r1', 'gw-a', time.time())
            redis_server.stop()
            redis_server.start()  # no persistence: every key is gone
            after = await reg.claim('r1', 'gw-b', time.time())
            assert after.token > before.token
            assert fence([PresenceChange('r1', False, 0.0, 'timeout', token=before.token)],
                         await reg.latest_tokens(['r1'])) == []
        finally:
            await reg.close()
    asyncio.run(main())


def test_live_status_lays_the_registry_over_the_read_model() -> None:
    from lekiwi_fleet_server.broker.presence import Owner, live_status

    owner = Owner('r1', 'gw-a', 5, since=100.0, heard_at=100.0)
    assert live_status('online', None, 101.0, 5.0) == 'offline'  # its gateway died: expired
    assert live_status('never_seen', None, 101.0, 5.0) == 'never_seen'
    assert live_status('offline', owner, 101.0, 5.0) == 'online'  # claimed, not yet committed
    assert live_status('offline', owner, 110.0, 5.0) == 'stale'
    assert live_status('stale', owner, 101.0, 5.0) == 'stale'  # the read model knows heartbeats
    # Never claimed by any gateway (a robot the legacy poller watches): the read model's.
    assert live_status('online', None, 101.0, 5.0, claimed=False) == 'online'


def test_a_claim_storm_waits_for_pooled_connections_instead_of_failing(
        redis_server: RedisServer) -> None:
    # A fleet reconnecting at once claims thousands of robots concurrently. redis-py's default
    # pool refused the 101st concurrent command ("Too many connections") and those robots'
    # logins failed; the registry's pool makes them wait for a connection instead, and Redis
    # sees no more clients than the pool holds.
    async def main() -> None:
        reg = RedisRegistry(f'{redis_server.url}?max_connections=8', TTL_S)
        try:
            now = time.time()
            claims = await asyncio.gather(*(reg.claim(f'r{i}', 'gw-a', now)
                                            for i in range(600)))
            assert len({c.robot_id for c in claims}) == 600
            assert len(await reg.lookup([f'r{i}' for i in range(600)])) == 600
            clients = await reg._redis.info('clients')  # noqa: SLF001 (the server's own view)
            assert clients['connected_clients'] <= 8 + 1
        finally:
            await reg.close()
    asyncio.run(main())
