"""Issue 14: one robot cannot hurt the others: per-robot rate and in-flight caps refuse the
offender's frames with rate_limited while every other robot keeps its normal ack latency."""

from __future__ import annotations

import asyncio
import time

import pytest
import robot_frames as rf
from gateway_harness import running_gateway
from memory_store import MemoryStore
from pydantic import ValidationError
from ws_client import Robot

from lekiwi_fleet_server.domain.rate_limit import TokenBucket
from lekiwi_fleet_server.settings import Settings

pytestmark = pytest.mark.anyio


def test_token_bucket_admits_its_rate_and_burst() -> None:
    bucket = TokenBucket(10.0, 3, now=0.0)
    assert [bucket.admit(0.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.retry_after_s() == pytest.approx(0.1)
    assert bucket.admit(0.1) and not bucket.admit(0.1)
    assert not bucket.admit(0.05)  # a clock going back refills nothing
    assert [bucket.admit(10.0) for _ in range(4)] == [True, True, True, False]


def test_limits_are_validated() -> None:
    with pytest.raises(ValidationError):
        Settings(robot_rate_per_s=0)
    with pytest.raises(ValidationError):
        Settings(robot_rate_burst=0)
    with pytest.raises(ValidationError):
        Settings(robot_max_inflight=0)


async def test_a_flooding_robot_is_refused_while_the_others_keep_their_latency(
        memory_store: MemoryStore) -> None:
    # A slow writer (100 ms a batch of at most 100): without per-robot caps the flood fills the
    # shard's backlog and every robot gets server_error.
    memory_store.commit_delay_s = 0.1
    limits = {'max_batch_messages': 100, 'max_pending_messages': 2000,
              'robot_rate_per_s': 100.0, 'robot_rate_burst': 100, 'robot_max_inflight': 100}
    async with running_gateway(memory_store, **limits) as gw:
        flood = await Robot.authenticated(gw.url, 'kiwi-flood', gw.enrol('kiwi-flood'))
        calm_ids = [f'kiwi-calm-{i}' for i in range(4)]
        calm = [await Robot.authenticated(gw.url, r, gw.enrol(r)) for r in calm_ids]
        flood_codes: list[str] = []

        async def flood_it() -> None:
            frames = [rf.publish('fleet/events', seq, robot_id='kiwi-flood')
                      for seq in range(1, 6001)]
            for i, frame in enumerate(frames):
                await flood.send(frame)
                if i % 500 == 0:
                    await asyncio.sleep(0)

        async def read_flood() -> None:
            try:
                while True:
                    frame = await flood.recv(timeout=5)
                    if frame.get('level') == 'error':
                        flood_codes.append(frame['code'])
            except Exception:
                return

        async def calm_robot(robot: Robot, robot_id: str) -> list[float]:
            latencies = []
            for seq in range(1, 16):
                started = time.monotonic()
                await robot.send(rf.publish('fleet/events', seq, robot_id=robot_id))
                await robot.acked(rf.BOOT, {seq}, timeout=5)
                latencies.append(time.monotonic() - started)
                await asyncio.sleep(0.03)
            return latencies

        flooding = asyncio.create_task(flood_it())
        reading = asyncio.create_task(read_flood())
        await asyncio.sleep(0.05)
        results = await asyncio.gather(*(calm_robot(r, i) for r, i in zip(calm, calm_ids,
                                                                            strict=True)))
        await flooding
        await asyncio.sleep(0.3)
        reading.cancel()
        latencies = sorted(x for r in results for x in r)
        assert latencies[-1] < 1.0, latencies[-5:]
        for robot_id in calm_ids:
            assert sum(1 for k in memory_store.messages if k[0] == robot_id) == 15
        assert 'rate_limited' in flood_codes and 'server_error' not in flood_codes
        assert gw.metrics.frames_refused.labels('server_error')._value.get() == 0
        for robot in (flood, *calm):
            await robot.close()
