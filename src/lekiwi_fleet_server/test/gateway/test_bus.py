"""InProcessBus: one encoded update per committed batch to every subscriber; slow ones dropped."""

from __future__ import annotations

from types import MappingProxyType

import orjson
import pytest

from lekiwi_fleet_server.gateway.bus import InProcessBus, encode_update
from lekiwi_fleet_server.store.interface import RecordedEvent, RobotSummary

pytestmark = pytest.mark.anyio


def row(robot_id: str, seq: int) -> RobotSummary:
    return RobotSummary(robot_id=robot_id, tags=('lab',), status='online', enrolled_at=1.0,
                        revoked=False, last_seq=seq, resources={'cpu_percent': 1.0})


async def test_an_update_reaches_every_subscriber_as_the_same_text() -> None:
    bus = InProcessBus(8)
    assert not bus.wants_updates()
    a, b = bus.subscribe(), bus.subscribe()
    assert bus.subscriber_count() == 2 and bus.wants_updates()
    event = RecordedEvent(1, 'robot-r1', 1, 'RobotCameOnline', 1, {}, {'robot_id': 'r1'}, 5.0)
    update = encode_update('update', 42.0, [row('r1', 2), row('r2', 1)], [event])
    bus.publish(update)
    first, second = await a.get(), await b.get()
    assert first is second is update  # encoded once, by the writer
    decoded = orjson.loads(first)  # type: ignore[arg-type]
    assert decoded['type'] == 'update' and decoded['at'] == 42.0
    assert {r['robot_id']: r['last_seq'] for r in decoded['robots']} == {'r1': 2, 'r2': 1}
    assert decoded['robots'][0]['tags'] == ['lab']
    assert decoded['events'][0]['type'] == 'RobotCameOnline'


async def test_lagging_subscriber_is_dropped_not_waited_for() -> None:
    bus = InProcessBus(2)
    slow, fast = bus.subscribe(), bus.subscribe()
    for seq in range(3):
        bus.publish(encode_update('update', 0.0, [row('r1', seq)], []))
        assert await fast.get() is not None
    assert slow.dropped and slow.closed and bus.subscriber_count() == 1
    assert await slow.get() is None
    slow.offer('ignored once closed')
    assert await slow.get() is None


async def test_close_ends_every_subscription() -> None:
    bus = InProcessBus(8)
    sub = bus.subscribe()
    bus.close()
    assert await sub.get() is None and bus.subscriber_count() == 0 and not sub.dropped


def test_encode_update_handles_mapping_proxies_and_sets() -> None:
    summary = RobotSummary('r', (), 'offline', 0.0, False, resources=MappingProxyType({'a': 1}))
    decoded = orjson.loads(encode_update('snapshot', 0.0, [summary], []))
    assert decoded['robots'][0]['resources'] == {'a': 1}
    with pytest.raises(TypeError):
        encode_update('snapshot', 0.0, [RobotSummary('r', (), 'offline', 0.0, False,
                                                     resources={'x': object()})], [])


async def test_settled_waits_for_the_batches_begun_while_nobody_listened() -> None:
    import asyncio

    bus = InProcessBus(8)
    await asyncio.wait_for(bus.settled(), 1)  # nothing in flight
    blind = bus.begin_batch()
    assert blind is False
    sub = bus.subscribe()
    watched = bus.begin_batch()  # begun while somebody listens: builds deltas, not waited for
    assert watched is True
    waiting = asyncio.ensure_future(bus.settled())
    await asyncio.sleep(0.01)
    assert not waiting.done()
    bus.end_batch(watched)
    await asyncio.sleep(0.01)
    assert not waiting.done()
    bus.end_batch(blind)
    await asyncio.wait_for(waiting, 1)
    sub.close()
