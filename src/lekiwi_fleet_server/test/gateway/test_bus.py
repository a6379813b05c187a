"""InProcessBus: per-robot coalescing, one encoding for all, slow subscribers dropped."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from lekiwi_fleet_server.gateway.bus import InProcessBus, encode_update
from lekiwi_fleet_server.store.interface import BatchResult, RecordedEvent, RobotSummary

pytestmark = pytest.mark.anyio

def row(robot_id: str, seq: int) -> RobotSummary:
    return RobotSummary(robot_id=robot_id, tags=('lab',), status='online', enrolled_at=1.0,
                        revoked=False, last_seq=seq, resources={'cpu_percent': 1.0})


def result(*rows: RobotSummary, events: tuple[RecordedEvent, ...] = ()) -> BatchResult:
    return BatchResult((), 0, rows, events)


async def test_updates_are_coalesced_per_robot_and_shared() -> None:
    bus = InProcessBus(0.01, 8, now=lambda: 42.0)
    a, b = bus.subscribe(), bus.subscribe()
    assert bus.subscriber_count() == 2
    event = RecordedEvent(1, 'robot-r1', 1, 'RobotCameOnline', 1, {}, {'robot_id': 'r1'}, 5.0)
    bus.publish(result(row('r1', 1), row('r2', 1)))
    bus.publish(result(row('r1', 2), events=(event,)))
    assert bus.flush() == 2
    first, second = await a.get(), await b.get()
    assert first is second  # encoded once
    update = orjson.loads(first)  # type: ignore[arg-type]
    assert update['type'] == 'update' and update['at'] == 42.0
    assert {r['robot_id']: r['last_seq'] for r in update['robots']} == {'r1': 2, 'r2': 1}
    assert update['robots'][0]['tags'] == ['lab']
    assert update['events'][0]['type'] == 'RobotCameOnline'
    assert bus.flush() == 0  # nothing new


async def test_without_subscribers_nothing_accumulates() -> None:
    bus = InProcessBus(0.01, 8, now=lambda: 0.0)
    bus.publish(result(row('r1', 1)))
    sub = bus.subscribe()
    assert bus.flush() == 0
    sub.close()
    assert await sub.get() is None and bus.subscriber_count() == 0


async def test_lagging_subscriber_is_dropped_not_waited_for() -> None:
    bus = InProcessBus(0.01, 2, now=lambda: 0.0)
    slow, fast = bus.subscribe(), bus.subscribe()
    for seq in range(3):
        bus.publish(result(row('r1', seq)))
        bus.flush()
        assert await fast.get() is not None
    assert slow.dropped and slow.closed and bus.subscriber_count() == 1
    assert await slow.get() is None


async def test_run_flushes_periodically_and_close_ends_subscriptions() -> None:
    bus = InProcessBus(0.01, 8, now=lambda: 0.0)
    sub = bus.subscribe()
    task = asyncio.create_task(bus.run())
    bus.publish(result(row('r9', 1)))
    update = await asyncio.wait_for(sub.get(), 1.0)
    assert orjson.loads(update)['robots'][0]['robot_id'] == 'r9'  # type: ignore[arg-type]
    bus.close()
    assert await sub.get() is None
    task.cancel()


def test_encode_update_handles_mapping_proxies() -> None:
    from types import MappingProxyType
    summary = RobotSummary('r', (), 'offline', 0.0, False, resources=MappingProxyType({'a': 1}))
    assert orjson.loads(encode_update('snapshot', 0.0, [summary], []))['robots'][0][
        'resources'] == {'a': 1}
