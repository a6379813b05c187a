"""A lekiwi-fleet/1 robot and a lekiwi-fleet/2 robot side by side on the real SQL store.

The v1 robot is a protocol-level client doing what a v1 uplink does (one sequence space, acks
of `ranges` only); the v2 robot numbers its state messages with `state_seq`. Both keep their
history gap-free in robot_sequences; only the v2 robot's plain readings wait for the flush.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import robot_frames as rf
from gateway_harness import running_gateway
from ws_client import Robot

from lekiwi_fleet_server.store.sql_store import SqlFleetStore

pytestmark = pytest.mark.anyio


async def authenticated(url: str, robot_id: str, token: str, protocols: list[str]) -> Robot:
    robot = await Robot.connect(url)
    await robot.send({**rf.auth(robot_id, token), 'protocol': protocols})
    reply = await robot.recv()
    assert reply.get('msg') == 'authenticated', reply
    robot.protocol = reply['protocol']  # type: ignore[attr-defined]
    return robot


async def acks(robot: Robot, want: int, timeout: float = 10.0) -> list[dict[str, Any]]:
    """Collect `want` ack frames' msgs."""
    got: list[dict[str, Any]] = []
    while len(got) < want:
        frame = await robot.recv_until(lambda f: f.get('topic') == 'fleet/ack', timeout)
        got.append(frame['msg'])
    return got


def covered(msgs: list[dict[str, Any]], key: str) -> set[int]:
    return {s for m in msgs for first, last in m.get(key, []) for s in range(first, last + 1)}


async def wait_until(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, 'condition not met in time'
        await asyncio.sleep(0.05)


def v2_state(topic: str, state_seq: int, robot_id: str, **msg: Any) -> dict[str, Any]:
    frame = rf.publish(topic, 1, robot_id=robot_id)
    del frame['seq']
    frame['state_seq'] = state_seq
    frame['msg'].update(msg)
    return frame


async def test_a_v1_robot_and_a_v2_robot_side_by_side(store: SqlFleetStore) -> None:
    async with running_gateway(store, state_flush_interval_s=0.2) as gw:
        v1 = await authenticated(gw.url, 'kiwi-v1', gw.enrol('kiwi-v1'), ['lekiwi-fleet/1'])
        v2 = await authenticated(gw.url, 'kiwi-v2', gw.enrol('kiwi-v2'),
                                 ['lekiwi-fleet/2', 'lekiwi-fleet/1'])
        assert (v1.protocol, v2.protocol) == ('lekiwi-fleet/1', 'lekiwi-fleet/2')  # type: ignore[attr-defined]
        # v1: one space, heartbeats between events, every ack a plain v1 ack.
        v1_frames = [rf.publish('fleet/events', 1, robot_id='kiwi-v1'),
                     rf.publish('fleet/heartbeat', 2, rf.heartbeat('kiwi-v1', sequence=2)),
                     rf.publish('fleet/events', 3, robot_id='kiwi-v1'),
                     rf.publish('teleop/status', 4)]
        for frame in v1_frames:
            await v1.send(frame)
        v1_acks: list[dict[str, Any]] = []
        while covered(v1_acks, 'ranges') != {1, 2, 3, 4}:
            v1_acks += await acks(v1, 1)
        assert all(set(m) == {'boot_id', 'ranges'} for m in v1_acks)
        # v2: history seqs 1..3, state seqs 1..4 in between.
        v2_frames = [v2_state('fleet/heartbeat', 1, 'kiwi-v2', sequence=1),
                     rf.publish('fleet/events', 1, robot_id='kiwi-v2'),
                     v2_state('fleet/heartbeat', 2, 'kiwi-v2', sequence=2),
                     v2_state('teleop/status', 3, 'kiwi-v2'),
                     rf.publish('fleet/telemetry', 2, robot_id='kiwi-v2'),
                     rf.publish('fleet/events', 3, robot_id='kiwi-v2'),
                     v2_state('fleet/heartbeat', 4, 'kiwi-v2', sequence=4)]
        for frame in v2_frames:
            await v2.send(frame)
        v2_acks: list[dict[str, Any]] = []
        while (covered(v2_acks, 'ranges'), covered(v2_acks, 'state_ranges')) != (
                {1, 2, 3}, {1, 2, 3, 4}):
            v2_acks += await acks(v2, 1)
        # The durable record of history stays gap-free for both.
        for robot_id, last in (('kiwi-v1', 4), ('kiwi-v2', 3)):
            coverage = store.robot_sequences(robot_id)[rf.BOOT]
            assert coverage.ranges == ((1, last),) and coverage.gaps == ()
        assert store.undelivered_messages() == {'kiwi-v1': 0, 'kiwi-v2': 0}
        # The v2 robot's last reading reaches the database with a flush.
        await wait_until(lambda: store.get_robot('kiwi-v2', now=time.time())
                         .heartbeat_sequence == 4)
        row = store.get_robot('kiwi-v1', now=time.time())
        assert row is not None and row.heartbeat_sequence == 2 and row.last_seq == 4
        # A v1 robot cannot use the state space; a resent v2 reading is a duplicate.
        await v1.send(v2_state('fleet/heartbeat', 9, 'kiwi-v1'))
        refused = await v1.recv_until(lambda f: f.get('level') == 'error')
        assert refused['code'] == 'invalid_message' and refused['id'] == f'{rf.BOOT}:s9'
        await v2.send(v2_frames[-1])
        again = await acks(v2, 1)
        assert covered(again, 'state_ranges') == {4} and again[0]['ranges'] == []
        await v1.close()
        await v2.close()
