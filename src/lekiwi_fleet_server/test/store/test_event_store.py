"""The event log: appends, optimistic concurrency, idempotency keys, commit-ordered positions."""

from __future__ import annotations

import random
import threading
import time

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from lekiwi_fleet_server.db.engine import make_engine, writer
from lekiwi_fleet_server.db.schema import event_counter, events
from lekiwi_fleet_server.domain.events import RobotCameOnline, RobotEventReported
from lekiwi_fleet_server.migrations import upgrade
from lekiwi_fleet_server.store import event_store
from lekiwi_fleet_server.store.event_store import NewEvent, StreamAppend
from lekiwi_fleet_server.store.interface import ConcurrencyConflict


@pytest.fixture
def engine(database_url: str) -> Engine:
    engine = make_engine(database_url)
    upgrade(engine)
    yield engine
    engine.dispose()


def online(robot_id: str, at: float = 1.0) -> NewEvent:
    return NewEvent(RobotCameOnline(robot_id, at=at), causation='test')


def reported(robot_id: str, boot: str, seq: int, part: int = 0) -> NewEvent:
    return NewEvent(RobotEventReported(robot_id, event_type='x'), boot_id=boot, seq=seq,
                    seq_part=part, causation='fleet/events')


def append(engine: Engine, stream: str, expected: int, new: list[NewEvent]) -> list:
    with writer(engine).begin() as conn:
        return event_store.append(conn, [StreamAppend(stream, expected, new)], recorded_at=5.0)


def test_append_and_read(engine: Engine) -> None:
    recorded = append(engine, 'robot-a', 0, [online('a'), reported('a', 'b1', 1)])
    assert [(r.position, r.version) for r in recorded] == [(1, 1), (2, 2)]
    with writer(engine).begin() as conn:
        more = event_store.append(conn, [StreamAppend('robot-b', 0, [online('b')]),
                                         StreamAppend('robot-a', 2, [online('a', 2.0)])],
                                  recorded_at=6.0)
    assert [(r.stream_id, r.position, r.version) for r in more] == [
        ('robot-b', 3, 1), ('robot-a', 4, 3)]
    with engine.connect() as conn:
        stream = event_store.read_stream(conn, 'robot-a')
        assert [e.version for e in stream] == [1, 2, 3]
        assert stream[1].metadata == {'robot_id': 'a', 'boot_id': 'b1', 'seq': 1,
                                      'causation': 'fleet/events'}
        assert [e.version for e in event_store.read_stream(conn, 'robot-a', 2)] == [3]
        assert [e.position for e in event_store.read_all(conn, 1, 2)] == [2, 3]
        assert event_store.head_position(conn) == 4
        assert event_store.stored_message_keys(conn, [('a', 'b1', 1), ('a', 'b1', 2)]) == {
            ('a', 'b1', 1)}
        assert event_store.stored_message_keys(conn, []) == set()
    assert append(engine, 'robot-c', 0, []) == []


def test_stale_expected_version_conflicts_and_stores_nothing(engine: Engine) -> None:
    append(engine, 'robot-a', 0, [online('a')])
    with pytest.raises(ConcurrencyConflict, match='expected version'):
        append(engine, 'robot-a', 0, [online('a', 2.0), online('a', 3.0)])
    with engine.connect() as conn:
        assert [e.version for e in event_store.read_stream(conn, 'robot-a')] == [1]
        # The failed append's positions were rolled back with it: no gap.
        assert conn.execute(sa.select(event_counter.c.position)).scalar_one() == 1
    assert append(engine, 'robot-a', 1, [online('a', 4.0)])[0].position == 2


def test_same_message_key_twice_conflicts(engine: Engine) -> None:
    append(engine, 'robot-a', 0, [reported('a', 'b1', 7)])
    with pytest.raises(ConcurrencyConflict, match='same robot message'):
        append(engine, 'robot-a', 1, [reported('a', 'b1', 7)])
    # Several events of one message differ by seq_part; events of no message never collide.
    append(engine, 'robot-a', 1, [reported('a', 'b1', 8, 0), reported('a', 'b1', 8, 1),
                                  online('a'), online('a')])
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(events)).scalar_one() == 5


def test_concurrent_appends_to_one_stream_conflict(database_url: str) -> None:
    """Two writers read version 0 and append: exactly one wins, the other gets a conflict."""
    engines = [make_engine(database_url) for _ in range(2)]
    upgrade(engines[0])
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def write(engine: Engine) -> None:
        barrier.wait()
        try:
            append(engine, 'robot-a', 0, [online('a')])
            outcomes.append('ok')
        except ConcurrencyConflict:
            outcomes.append('conflict')

    threads = [threading.Thread(target=write, args=(e,)) for e in engines]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert sorted(outcomes) == ['conflict', 'ok']
    for e in engines:
        e.dispose()


def test_positions_follow_commit_order_on_postgresql(pg_url: str) -> None:
    """A second writer waits for the first to commit, then gets the next positions."""
    engine = make_engine(pg_url, pool_size=4)
    upgrade(engine)
    first_holds = threading.Event()
    release_first = threading.Event()
    commits: list[tuple[str, list[int]]] = []

    def first() -> None:
        with writer(engine).begin() as conn:
            recorded = event_store.append(conn, [StreamAppend('robot-a', 0, [online('a')])],
                                          recorded_at=1.0)
            first_holds.set()
            release_first.wait(10)
        commits.append(('first', [r.position for r in recorded]))

    def second() -> None:
        first_holds.wait(10)
        with writer(engine).begin() as conn:
            recorded = event_store.append(conn, [StreamAppend('robot-b', 0, [online('b')])],
                                          recorded_at=2.0)
        commits.append(('second', [r.position for r in recorded]))

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    first_holds.wait(10)
    time.sleep(0.3)
    assert commits == []  # the second writer is waiting for the counter's row lock
    release_first.set()
    for t in threads:
        t.join(10)
    assert commits == [('first', [1]), ('second', [2])]
    engine.dispose()


def test_a_tail_reader_never_misses_an_event_under_concurrent_writers(pg_url: str) -> None:
    """Readers that follow `position > last_seen` see every event once, in order.

    This is what commit-ordered positions buy: if a transaction holding a lower position
    committed after a higher one was visible, the follower would already have moved past it.
    Writers sleep inside their transactions to make such interleavings likely.
    """
    writers, per_writer = 4, 15
    engine = make_engine(pg_url, pool_size=writers + 2)
    upgrade(engine)
    done = threading.Event()
    seen: list[int] = []
    errors: list[BaseException] = []

    def write(index: int) -> None:
        rng = random.Random(index)
        try:
            for version in range(per_writer):
                with writer(engine).begin() as conn:
                    event_store.append(conn, [StreamAppend(
                        f'robot-w{index}', version, [online(f'w{index}')])], recorded_at=1.0)
                    time.sleep(rng.uniform(0, 0.01))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def follow() -> None:
        last = 0
        while True:
            finished = done.is_set()
            with engine.connect() as conn:
                batch = event_store.read_all(conn, last, 1000)
            for event in batch:
                seen.append(event.position)
                last = event.position
            if finished and not batch:
                return
            time.sleep(0.001)

    follower = threading.Thread(target=follow)
    follower.start()
    threads = [threading.Thread(target=write, args=(i,)) for i in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    done.set()
    follower.join(30)
    assert not errors
    total = writers * per_writer
    assert seen == list(range(1, total + 1))
    engine.dispose()
