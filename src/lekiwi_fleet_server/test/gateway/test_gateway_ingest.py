"""Gateway ingest with real clients: bad input, acks after commit, duplicates, store failures."""

from __future__ import annotations

import asyncio

import orjson
import pytest
import robot_frames as rf
from gateway_harness import running_gateway
from memory_store import MemoryStore
from ws_client import RawClient, Robot

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize('payload, code', [
    ('this is not json', 'malformed_json'),
    ('[1, 2, 3]', 'malformed_json'),
    ({'op': 'teleport'}, 'unknown_op'),
    ({'no_op': True}, 'unknown_op'),
    (rf.publish('fleet/secrets', 1, msg={}), 'unknown_topic'),
    ({'op': 'subscribe', 'topic': 'joy'}, 'unknown_topic'),
    ({**rf.publish('fleet/events', 1), 'seq': -3}, 'invalid_message'),
    (rf.publish('fleet/events', 2, msg={**rf.event(), 'severity': 17}), 'invalid_message'),
    (rf.publish('fleet/heartbeat', 3, msg={**rf.heartbeat(), 'resources': {}}),
     'invalid_message'),
    ({'op': 'service_response', 'service': 'fleet/command', 'id': 'x'}, 'invalid_message'),
])
async def test_bad_input_gets_error_frame_stays_open_and_stores_nothing(
        memory_store: MemoryStore, payload: object, code: str) -> None:
    async with running_gateway(memory_store) as gw:
        robot = await Robot.authenticated(gw.url, 'kiwi-001', gw.enrol('kiwi-001'))
        await robot.send(payload if isinstance(payload, str | dict) else str(payload))
        error = await robot.recv()
        assert error['op'] == 'status' and error['level'] == 'error' and error['code'] == code
        assert error['msg']
        # The connection stays open and usable.
        await robot.send(rf.publish('fleet/events', 10))
        assert await robot.acked(rf.BOOT, {10}) == {10}
        assert [k[2] for k in memory_store.messages] == [10]
        assert gw.metrics.frames_refused.labels(code)._value.get() == 1
        await robot.close()


async def test_oversize_frame_is_refused_and_closed_1009(memory_store: MemoryStore) -> None:
    async with running_gateway(memory_store, max_frame_bytes=1024) as gw:
        robot = await Robot.authenticated(gw.url, 'kiwi-001', gw.enrol('kiwi-001'))
        big = rf.publish('fleet/events', 1, msg={**rf.event(), 'payload_json': 'x' * 2000})
        await robot.send(big)
        code, frames = await robot.closed()
        assert code == 1009 and frames[0]['code'] == 'oversize_frame'
        assert memory_store.messages == {}


async def test_fragmented_frames_are_reassembled_and_limited(memory_store: MemoryStore) -> None:
    async with running_gateway(memory_store, max_frame_bytes=1024) as gw:
        token = gw.enrol('kiwi-001')
        raw = await RawClient.connect('127.0.0.1', gw.port)
        await raw.send(rf.auth('kiwi-001', token))
        assert (await raw.recv())['msg'] == 'authenticated'
        body = orjson.dumps(rf.publish('fleet/events', 7))
        await raw.send(body[:40], opcode=0x1, fin=False)
        await raw.send(body[40:], opcode=0x0, fin=True)
        ack = await raw.recv()
        assert ack['topic'] == 'fleet/ack' and ack['msg']['ranges'] == [[7, 7]]
        await raw.send(b'{"op": "publish", "x": "' + b'y' * 900, opcode=0x1, fin=False)
        await raw.send(b'z' * 900 + b'"}', opcode=0x0, fin=True)
        assert (await raw.recv())['code'] == 'oversize_frame'
        assert await raw.close_code() == 1009
        raw.close()
        assert list(memory_store.messages) == [('kiwi-001', rf.BOOT, 7)]


async def test_acks_wait_for_commit_and_ranges_are_compressed(memory_store: MemoryStore) -> None:
    async with running_gateway(memory_store) as gw:
        robot = await Robot.authenticated(gw.url, 'kiwi-001', gw.enrol('kiwi-001'))
        await asyncio.sleep(0.1)
        memory_store.commit_delay_s = 0.4  # a slow transaction: acks must wait for its end
        for seq in (1, 2, 3, 5):
            await robot.send(rf.publish('fleet/events', seq))
        other_boot = 'aaaabbbbccccdddd'
        await robot.send(rf.publish('fleet/events', 1, boot_id=other_boot))
        with pytest.raises(asyncio.TimeoutError):
            await robot.recv(timeout=0.25)  # not committed yet: no ack
        acks = [await robot.recv(timeout=1), await robot.recv(timeout=1)]
        by_boot = {a['msg']['boot_id']: a['msg']['ranges'] for a in acks}
        assert by_boot == {rf.BOOT: [[1, 3], [5, 5]], other_boot: [[1, 1]]}
        assert len(memory_store.messages) == 5
        await robot.close()


async def test_duplicates_are_reacked_and_stored_once(memory_store: MemoryStore) -> None:
    async with running_gateway(memory_store) as gw:
        token = gw.enrol('kiwi-001')
        robot = await Robot.authenticated(gw.url, 'kiwi-001', token)
        for seq in (1, 2):
            await robot.send(rf.publish('fleet/events', seq))
        assert await robot.acked(rf.BOOT, {1, 2}) == {1, 2}
        await robot.close()
        again = await Robot.authenticated(gw.url, 'kiwi-001', token)
        for seq in (1, 2, 3):
            await again.send(rf.publish('fleet/events', seq))
        assert await again.acked(rf.BOOT, {1, 2, 3}) == {1, 2, 3}
        assert sorted(k[2] for k in memory_store.messages) == [1, 2, 3]
        assert gw.metrics.duplicates._value.get() == 2
        await again.close()


async def test_store_down_means_no_ack_then_commit_after_recovery(
        memory_store: MemoryStore) -> None:
    async with running_gateway(memory_store, store_retry_s=0.05) as gw:
        robot = await Robot.authenticated(gw.url, 'kiwi-001', gw.enrol('kiwi-001'))
        await asyncio.sleep(0.1)
        memory_store.down = True
        await robot.send(rf.publish('fleet/events', 1))
        with pytest.raises(asyncio.TimeoutError):
            await robot.recv(timeout=0.3)
        assert memory_store.messages == {} and gw.gateway.pending == 1
        memory_store.down = False
        assert await robot.acked(rf.BOOT, {1}, timeout=2) == {1}
        assert gw.metrics.commit_failures._value.get() >= 1
        await robot.close()


async def test_backlog_full_refuses_with_server_error(memory_store: MemoryStore) -> None:
    async with running_gateway(memory_store, max_pending_messages=2, store_retry_s=5) as gw:
        robot = await Robot.authenticated(gw.url, 'kiwi-001', gw.enrol('kiwi-001'))
        await asyncio.sleep(0.1)
        memory_store.down = True
        for seq in (1, 2, 3):
            await robot.send(rf.publish('fleet/events', seq))
        error = await robot.recv()
        assert error['code'] == 'server_error' and error['id'] == f'{rf.BOOT}:3'
        await robot.close()


async def test_every_topic_is_accepted(memory_store: MemoryStore) -> None:
    async with running_gateway(memory_store) as gw:
        robot = await Robot.authenticated(gw.url, 'kiwi-001', gw.enrol('kiwi-001'))
        topics = sorted(rf.MESSAGES)
        for seq, topic in enumerate(topics, start=1):
            await robot.send(rf.publish(topic, seq))
        assert await robot.acked(rf.BOOT, set(range(1, len(topics) + 1))) == set(
            range(1, len(topics) + 1))
        stored = {m.topic for m in memory_store.messages.values()}
        assert stored == set(topics)
        await robot.close()
