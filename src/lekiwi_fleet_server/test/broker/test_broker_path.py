"""Gateway → JetStream → writer → acks, on a real nats-server and a real (SQLite) store."""

from __future__ import annotations

import asyncio
import hashlib
import sys
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest
from nats_server import NatsServer

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / 'gateway'))
import robot_frames as rf  # noqa: E402

from lekiwi_fleet_server.broker import subjects  # noqa: E402
from lekiwi_fleet_server.broker.gateway_side import AckInbox, JetStreamCommitter  # noqa: E402
from lekiwi_fleet_server.broker.link import NatsLink  # noqa: E402
from lekiwi_fleet_server.broker.nats_bus import GapDetector, NatsBus  # noqa: E402
from lekiwi_fleet_server.broker.writer_side import PartitionWriter  # noqa: E402
from lekiwi_fleet_server.gateway.commit_worker import CommitOutcome, CommitWorker  # noqa: E402
from lekiwi_fleet_server.store.config import StoreConfig  # noqa: E402
from lekiwi_fleet_server.store.interface import StoreUnavailable  # noqa: E402
from lekiwi_fleet_server.store.sql_store import SqlFleetStore  # noqa: E402

pytestmark = pytest.mark.anyio
T0 = 1_764_190_000.0
ROBOT = 'kiwi-1'


def raw(seq: int, topic: str = 'fleet/events') -> tuple[str, float, bytes]:
    return ROBOT, T0 + seq, orjson.dumps(rf.publish(topic, seq))


@pytest.fixture
def store(tmp_path: Path) -> SqlFleetStore:
    opened = SqlFleetStore.open(f'sqlite:///{tmp_path}/fleet.db', StoreConfig())
    opened.enrol_robot(ROBOT, hashlib.sha256(b't').hexdigest(), (), now=T0)
    yield opened
    opened.close()


@pytest.fixture
async def links(nats_server: NatsServer) -> AsyncIterator[tuple[NatsLink, NatsLink]]:
    gateway, writer = NatsLink(nats_server.url, 'gw'), NatsLink(nats_server.url, 'writer')
    await gateway.connect(10)
    await writer.connect(10)
    yield gateway, writer
    await gateway.close()
    await writer.close()


def acked_seqs(outcomes: Sequence[CommitOutcome]) -> list[int]:
    seqs = []
    for outcome in outcomes:
        for _robot, frame in outcome.acks:
            for first, last in orjson.loads(frame)['msg']['ranges']:
                seqs.extend(range(first, last + 1))
    return sorted(seqs)


async def until(check: Callable[[], bool], timeout_s: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not check():
        assert asyncio.get_running_loop().time() < deadline, 'timed out'
        await asyncio.sleep(0.02)


async def gateway_side(link: NatsLink, **committer_options: float
                       ) -> tuple[list[CommitOutcome], JetStreamCommitter]:
    """Start gateway gw1's ack inbox; return the outcomes it collects and gw1's committer."""
    delivered: list[CommitOutcome] = []
    await AckInbox(link, 'gw1', delivered.append).start()
    return delivered, JetStreamCommitter(link, 0, 'gw1', **committer_options)


async def test_frames_are_committed_by_the_writer_and_acked_to_their_gateway(
        links: tuple[NatsLink, NatsLink], store: SqlFleetStore) -> None:
    gateway_link, writer_link = links
    delivered, committer = await gateway_side(gateway_link)
    # Stored in JetStream before any writer runs: the gateway's commit returns, no acks yet.
    outcome = await committer.commit([raw(1), raw(2), raw(3)], [], T0, True)
    assert outcome.acks == [] and outcome.messages == 3
    bus = NatsBus(gateway_link, 100)
    await bus.start()
    sub = bus.subscribe()
    writer = PartitionWriter(writer_link, CommitWorker(store), 0)
    await writer.start()
    try:
        await until(lambda: acked_seqs(delivered) == [1, 2, 3])
        assert store.robot_sequences(ROBOT)[rf.BOOT].ranges == ((1, 3),)
        update = orjson.loads(await asyncio.wait_for(sub.get(), 10))
        assert update['type'] == 'update' and len(update['events']) >= 1
        # The same messages again (a gateway's retry): JetStream drops them by Nats-Msg-Id.
        await committer.commit([raw(1), raw(2), raw(3), raw(4)], [], T0, True)
        await until(lambda: 4 in acked_seqs(delivered))
        assert acked_seqs(delivered) == [1, 2, 3, 4]
        assert writer.redelivered == 0
    finally:
        await writer.stop()


def state_raw(state_seq: int, software_version: str = '1.0.0') -> tuple[str, float, bytes]:
    """A lekiwi-fleet/2 heartbeat: numbered in the state space (`state_seq`, no `seq`)."""
    frame = rf.publish('fleet/heartbeat', 1, rf.heartbeat(ROBOT, sequence=state_seq,
                                                          software_version=software_version))
    del frame['seq']
    frame['state_seq'] = state_seq
    return ROBOT, T0 + state_seq, orjson.dumps(frame)


def state_acked(outcomes: Sequence[CommitOutcome]) -> list[int]:
    seqs = []
    for done in outcomes:
        for _robot, frame in done.acks:
            for first, last in orjson.loads(frame)['msg'].get('state_ranges', []):
                seqs.extend(range(first, last + 1))
    return sorted(seqs)


async def stored_in_jetstream(link: NatsLink) -> int:
    return (await link.js.stream_info(subjects.STREAM)).state.messages


async def test_v2_state_readings_travel_packed_on_core_nats_and_are_acked_in_their_own_space(
        links: tuple[NatsLink, NatsLink], store: SqlFleetStore) -> None:
    gateway_link, writer_link = links
    delivered, committer = await gateway_side(gateway_link)
    writer = PartitionWriter(writer_link, CommitWorker(store), 0)
    await writer.start()
    try:
        outcome = await committer.commit([raw(1), state_raw(1), state_raw(2)], [], T0, False)
        assert outcome.refusals == [] and outcome.messages == 3
        # One durable message in JetStream; both readings in one packed core-NATS message.
        assert (committer.durable_published, committer.state_sent,
                committer.state_messages) == (1, 2, 1)
        await until(lambda: state_acked(delivered) == [1, 2] and acked_seqs(delivered) == [1])
        assert all(not done.refusals for done in delivered)
        assert sum(done.acknowledged for done in delivered) == 3  # the gateway's metrics
        assert writer.readings_committed == 2
        # History stays gap-free: only the event's seq is in the durable record.
        assert store.robot_sequences(ROBOT)[rf.BOOT].ranges == ((1, 1),)
        await until(lambda: writer.cumulative_acks == 1)
        assert await stored_in_jetstream(gateway_link) == 0  # released by the one ack
    finally:
        await writer.stop()


async def test_readings_sent_while_no_writer_runs_are_never_acked_and_the_resend_is(
        links: tuple[NatsLink, NatsLink], store: SqlFleetStore) -> None:
    gateway_link, writer_link = links
    delivered, committer = await gateway_side(gateway_link)
    await committer.commit([state_raw(1)], [], T0, False)  # nobody takes it: not stored
    await gateway_link.nc.flush()
    await asyncio.sleep(0.5)
    writer = PartitionWriter(writer_link, CommitWorker(store), 0)
    await writer.start()
    try:
        await asyncio.sleep(0.5)
        assert state_acked(delivered) == [] and writer.readings_committed == 0
        # The robot's outbox resends what was not acked, with its newer reading.
        await committer.commit([state_raw(1), state_raw(2)], [], T0, False)
        await until(lambda: state_acked(delivered) == [1, 2])
    finally:
        await writer.stop()


async def test_a_reading_that_yields_an_event_is_durable_before_its_ack(
        links: tuple[NatsLink, NatsLink], store: SqlFleetStore, tmp_path: Path) -> None:
    gateway_link, writer_link = links
    reader = SqlFleetStore.open(f'sqlite:///{tmp_path}/fleet.db', StoreConfig(), migrate=False,
                                preload=False)
    seen_at_ack: list[list[str]] = []

    def deliver(outcome: CommitOutcome) -> None:
        if 2 in state_acked([outcome]):  # what the database holds when the ack arrives
            seen_at_ack.append([str(e.data.get('software_version'))
                                for e in reader.robot_timeline(ROBOT, 0, 100).events
                                if e.type == 'RobotVersionChanged'])

    await AckInbox(gateway_link, 'gw1', deliver).start()
    writer = PartitionWriter(writer_link, CommitWorker(store), 0)
    await writer.start()
    committer = JetStreamCommitter(gateway_link, 0, 'gw1')
    try:
        await committer.commit([state_raw(1)], [], T0, False)
        await asyncio.sleep(0.3)
        await committer.commit([state_raw(2, software_version='2.0.0')], [], T0, False)
        await until(lambda: bool(seen_at_ack))
        assert any('2.0.0' in version for version in seen_at_ack[0]), seen_at_ack
    finally:
        await writer.stop()
        reader.close()


class DiesAfterCommit:
    """A worker that commits once, then hangs as a writer SIGKILLed before its JetStream ack."""

    def __init__(self, worker: CommitWorker) -> None:
        self._worker = worker
        self.store = worker.store
        self.committed = threading.Event()
        self.release = threading.Event()

    def commit(self, *args: Any) -> CommitOutcome:
        self._worker.commit(*args)
        self.committed.set()
        self.release.wait(30)  # never answers: its process is gone
        raise StoreUnavailable('killed after the commit, before the ack')

    def flush_state(self, now: float) -> CommitOutcome | None:
        return None


async def test_a_killed_writers_unacked_batch_is_redelivered_and_stored_once(
        nats_server: NatsServer, links: tuple[NatsLink, NatsLink], store: SqlFleetStore) -> None:
    gateway_link, writer_link = links
    delivered, committer = await gateway_side(gateway_link, ack_wait_s=1.0)
    dying = DiesAfterCommit(CommitWorker(store))
    first = PartitionWriter(writer_link, dying, 0, ack_wait_s=1.0)  # type: ignore[arg-type]
    await first.start()
    await committer.commit([raw(1), raw(2)], [], T0, True)
    await until(dying.committed.is_set)
    await writer_link.nc.close()  # the process is gone: its deliveries stay unacked
    again = NatsLink(nats_server.url, 'writer-again')
    await again.connect(10)
    second = PartitionWriter(again, CommitWorker(store), 0, ack_wait_s=1.0, retry_s=0.1)
    await second.start()
    try:
        # A newer message, delivered to the new writer before the old ones come back: it is
        # committed and acked to its robot, but its cumulative ack would release 1 and 2
        # unseen, so the writer holds it.
        await committer.commit([raw(3)], [], T0, True)
        await until(lambda: 3 in acked_seqs(delivered))
        assert second.cumulative_acks == 0 and second.held_acks >= 1
        await until(lambda: acked_seqs(delivered) == [1, 2, 3], 30)
        assert second.redelivered == 2
        await until(lambda: second.cumulative_acks >= 1)
        assert await stored_in_jetstream(gateway_link) == 0
        assert store.robot_sequences(ROBOT)[rf.BOOT].ranges == ((1, 3),)
        events = store.robot_timeline(ROBOT, 0, 100).events  # each once, not twice
        assert [e.metadata.get('seq') for e in events if e.metadata.get('seq')] == [1, 2, 3]
        # In order again: the next batch is released by its own cumulative ack at once.
        acks = second.cumulative_acks
        await committer.commit([raw(4)], [], T0, True)
        await until(lambda: second.cumulative_acks == acks + 1)
        assert await stored_in_jetstream(gateway_link) == 0
    finally:
        dying.release.set()
        await second.stop()
        await again.close()
        await first.stop()


async def test_without_the_broker_nothing_is_acked_and_all_of_it_arrives_later(
        nats_server: NatsServer, links: tuple[NatsLink, NatsLink],
        store: SqlFleetStore) -> None:
    gateway_link, writer_link = links
    delivered, committer = await gateway_side(gateway_link, publish_timeout_s=1.0)
    writer = PartitionWriter(writer_link, CommitWorker(store), 0, retry_s=0.1)
    await writer.start()
    try:
        await committer.commit([raw(1)], [], T0, True)
        await until(lambda: acked_seqs(delivered) == [1])
        nats_server.stop()
        await until(lambda: not gateway_link.healthy())
        assert gateway_link.status()['nats'] == 'down'
        with pytest.raises(StoreUnavailable):  # the batcher keeps the batch and retries
            await committer.commit([raw(2), raw(3)], [], T0, True)
        nats_server.start()
        await until(gateway_link.healthy)
        for _attempt in range(40):  # the batcher's retry
            try:
                await committer.commit([raw(2), raw(3)], [], T0, True)
                break
            except StoreUnavailable:
                await asyncio.sleep(0.25)
        await until(lambda: acked_seqs(delivered) == [1, 2, 3], 30)
        assert store.robot_sequences(ROBOT)[rf.BOOT].ranges == ((1, 3),)
    finally:
        await writer.stop()


def test_a_missed_update_or_a_restarted_writer_is_a_gap() -> None:
    gaps = GapDetector()
    assert not gaps.gap('0', 'e1', 5)  # the first heard: nothing to compare with
    assert not gaps.gap('0', 'e1', 6)
    assert not gaps.gap('1', 'x', 1)
    assert gaps.gap('0', 'e1', 8)
    assert gaps.gap('0', 'e2', 1)
    assert not gaps.gap('0', 'e2', 2)


async def test_a_gap_in_a_partitions_updates_closes_the_streams_for_a_fresh_snapshot(
        links: tuple[NatsLink, NatsLink]) -> None:
    api_link, writer_link = links
    bus = NatsBus(api_link, 100)
    await bus.start()
    sub = bus.subscribe()
    assert bus.wants_updates() and bus.subscriber_count() == 1 and bus.begin_batch()
    bus.end_batch(True)
    await bus.settled()
    bus.publish('{"type":"deployment"}')  # made in this process: straight to the subscribers
    assert await asyncio.wait_for(sub.get(), 5) == '{"type":"deployment"}'

    async def update(seq: int) -> None:
        await writer_link.nc.publish('lekiwi.updates.0', f'{{"seq":{seq}}}'.encode(), headers={
            'Lekiwi-Partition': '0', 'Lekiwi-Epoch': 'e1', 'Lekiwi-Seq': str(seq)})
        await writer_link.nc.flush()

    await update(1)
    await update(2)
    assert [await asyncio.wait_for(sub.get(), 5) for _ in range(2)] == ['{"seq":1}',
                                                                        '{"seq":2}']
    await update(4)  # 3 was lost
    assert await asyncio.wait_for(sub.get(), 5) is None
    assert sub.dropped and bus.gaps_seen == 1 and bus.subscriber_count() == 0
    later = bus.subscribe()  # the page reconnects: its snapshot, then the updates after it
    await update(5)
    assert await asyncio.wait_for(later.get(), 5) == '{"seq":5}'
    bus.close()
    assert later.closed
