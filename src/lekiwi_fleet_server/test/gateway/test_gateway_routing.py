"""Commands and goals from any API process reach the robot through the gateway holding it."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from gateway_harness import running_gateway
from memory_store import MemoryStore
from ws_client import Robot

from lekiwi_fleet_server.broker.presence import InProcessRegistry, RedisRegistry
from lekiwi_fleet_server.broker.routing import NatsRouter, RoutingUnavailable
from lekiwi_fleet_server.gateway.commands import CommandTimeout, InvalidCommand, RobotNotConnected

sys.path.insert(0, str(Path(__file__).parents[1] / 'broker'))
import nats_server  # noqa: E402
import redis_server  # noqa: E402

pytestmark = pytest.mark.anyio


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    if redis_server.REDIS_BINARY is None:
        pytest.skip(redis_server.MISSING)
    server = redis_server.RedisServer(tmp_path / 'redis')
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def nats() -> Iterator[nats_server.NatsServer]:
    if nats_server.NATS_BINARY is None:
        pytest.skip(nats_server.MISSING)
    server = nats_server.NatsServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def answer_commands(robot: Robot, seen: list[dict]) -> None:
    """Answer every fleet/command call like the agent does; note goals."""
    while True:
        frame = await robot.recv(timeout=30)
        seen.append(frame)
        if frame.get('op') == 'call_service':
            await robot.send({'op': 'service_response', 'service': 'fleet/command',
                              'id': frame['id'], 'result': True,
                              'values': {'accepted': True, 'message': 'pong from b'}})


async def test_command_from_another_gateway_and_from_an_api_process(
        memory_store: MemoryStore, redis_url: str, nats: nats_server.NatsServer) -> None:
    reg_a, reg_b, reg_api = (RedisRegistry(redis_url, 5.0) for _ in range(3))
    async with running_gateway(memory_store, registry=reg_a, gateway_id='gw-a') as a, \
            running_gateway(memory_store, registry=reg_b, gateway_id='gw-b') as b:
        via_a = NatsRouter(nats.url, reg_a, gateway=a.gateway)
        via_b = NatsRouter(nats.url, reg_b, gateway=b.gateway)
        api_only = NatsRouter(nats.url, reg_api)  # an API process with no gateway
        for router in (via_a, via_b, api_only):
            await router.start()
        seen: list[dict] = []
        try:
            robot = await Robot.authenticated(b.url, 'kiwi-001', b.enrol('kiwi-001'))
            answering = asyncio.create_task(answer_commands(robot, seen))
            deadline = time.monotonic() + 5
            while b.gateway.ownership.owns('kiwi-001') is None:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.01)
            for router in (via_a, api_only, via_b):  # remote, remote, local
                response = await router.send_command('kiwi-001', 'ping', '{}', timeout_s=5)
                assert response.accepted and response.message == 'pong from b'
            assert [f['op'] for f in seen].count('call_service') == 3
            assert await api_only.send_action_goal('kiwi-001', 'goal-1', {'release': 'x'})
            assert await api_only.cancel_action_goal('kiwi-001', 'goal-1')
            while len(seen) < 5:
                await asyncio.sleep(0.01)
            assert [f['op'] for f in seen[3:]] == ['send_action_goal', 'cancel_action_goal']
            with pytest.raises(InvalidCommand):
                await api_only.send_command('kiwi-001', 'no_such_command', '{}')
            answering.cancel()
            with pytest.raises(CommandTimeout):  # nobody answers now
                await api_only.send_command('kiwi-001', 'ping', '{}', timeout_s=0.3)
            await robot.close()
            deadline = time.monotonic() + 5
            while (await reg_api.lookup(['kiwi-001'])):
                assert time.monotonic() < deadline
                await asyncio.sleep(0.02)
            with pytest.raises(RobotNotConnected):
                await api_only.send_command('kiwi-001', 'ping', '{}')
            assert not await api_only.send_action_goal('kiwi-001', 'goal-2', {})
            await api_only.ping()
            nats.stop()
            with pytest.raises(RoutingUnavailable):
                await asyncio.wait_for(api_only.ping(), 5)
        finally:
            for router in (via_a, via_b, api_only):
                await router.close()
            for reg in (reg_a, reg_b, reg_api):
                await reg.close()


async def test_results_presence_and_the_holders_failures_across_processes(
        memory_store: MemoryStore, redis_url: str, nats: nats_server.NatsServer) -> None:
    import nats as nats_client
    import orjson

    from lekiwi_fleet_server.broker.routing import subject_of
    from lekiwi_fleet_server.broker.subjects import ACTION_RESULTS
    from lekiwi_fleet_server.gateway.actions import ActionResult

    reg_b, reg_api = RedisRegistry(redis_url, 5.0), RedisRegistry(redis_url, 5.0)
    async with running_gateway(memory_store, registry=reg_b, gateway_id='gw-b') as b:
        via_b = NatsRouter(nats.url, reg_b, gateway=b.gateway)
        api_only = NatsRouter(nats.url, reg_api)
        for router in (via_b, api_only):
            await router.start()
        results: list[ActionResult] = []
        api_only.results.listener = results.append
        raw = await nats_client.connect(nats.url)
        try:
            robot = await Robot.authenticated(b.url, 'kiwi-001', b.enrol('kiwi-001'))
            deadline = time.monotonic() + 5
            while not await api_only.connected(['kiwi-001', 'kiwi-nobody']):
                assert time.monotonic() < deadline
                await asyncio.sleep(0.01)
            assert await api_only.connected(['kiwi-001', 'kiwi-nobody']) == {'kiwi-001'}
            # The holder's own goal goes straight to its robot, not over NATS.
            assert await via_b.send_action_goal('kiwi-001', 'goal-1', {'release': 'x'})
            assert (await robot.recv(timeout=5))['op'] == 'send_action_goal'
            # A garbled result on the subject is dropped; the robot's own result goes on to
            # the process that drives (here the API process), once.
            await raw.publish(ACTION_RESULTS, b'not a result')
            await robot.send({'op': 'action_result', 'id': 'goal-1', 'status': 4,
                              'values': {'ok': True}})
            deadline = time.monotonic() + 5
            while not results:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.01)
            assert results == [ActionResult('kiwi-001', 'goal-1', 4, {'ok': True})]
            # A request the holder cannot read gets an 'invalid' reply, not silence.
            reply = await raw.request(subject_of('gw-b'), b'{"kind": "command"}', timeout=5)
            assert orjson.loads(reply.data)['error'] == 'invalid'
            # A claim whose gateway is gone (until its TTL): nobody answers on its subject.
            await reg_api.claim('kiwi-ghost', 'gw-ghost', time.time())
            with pytest.raises(RobotNotConnected, match='does not answer'):
                await api_only.send_command('kiwi-ghost', 'ping', '{}', timeout_s=1)
            await robot.close()
        finally:
            await raw.close()
            for router in (via_b, api_only):
                await router.close()
            for reg in (reg_b, reg_api):
                await reg.close()


async def test_the_router_says_unavailable_when_redis_or_nats_is_away(
        nats: nats_server.NatsServer) -> None:
    import socket

    held = socket.socket()
    held.bind(('127.0.0.1', 0))  # bound, never listening: Redis "refuses"
    with held:
        registry = RedisRegistry(f'redis://127.0.0.1:{held.getsockname()[1]}/0', 5.0,
                                 timeout_s=0.5)
        router = NatsRouter(nats.url, registry)
        try:
            with pytest.raises(RoutingUnavailable):
                await router.connected(['kiwi-001'])
            with pytest.raises(RoutingUnavailable):
                await router.send_command('kiwi-001', 'ping', '{}')
        finally:
            await registry.close()
    # Not (yet) connected to NATS: the holder is known, the hop is not possible.
    claims = InProcessRegistry(5.0)
    await claims.claim('kiwi-001', 'gw-a', time.time())
    never_started = NatsRouter(nats.url, claims)
    with pytest.raises(RoutingUnavailable, match='not connected'):
        await never_started.ping()
    with pytest.raises(RoutingUnavailable, match='not connected'):
        await never_started.send_command('kiwi-001', 'ping', '{}')
