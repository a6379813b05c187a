"""Writer shards: each store writes its own robots; shards commit side by side on PostgreSQL."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
import sqlalchemy as sa
from store_messages import T0, fleet_event, heartbeat, online, token_hash
from store_scenario import dump

from lekiwi_fleet_server.db.schema import events, projection_positions
from lekiwi_fleet_server.domain.shards import shard_of
from lekiwi_fleet_server.store import event_store
from lekiwi_fleet_server.store.config import StoreConfig
from lekiwi_fleet_server.store.sql_store import SqlFleetStore
from lekiwi_fleet_server.store.telemetry import _list_partitions

BOOT = 'boot0001'
ROBOTS = [f'kiwi-{i}' for i in range(8)]


def shard(index: int) -> StoreConfig:
    return StoreConfig(shard_index=index, shard_count=2)


def owned(index: int) -> list[str]:
    return [r for r in ROBOTS if shard_of(r, 2) == index]


def status(store: SqlFleetStore, now: float) -> dict[str, str]:
    return {r: store.get_robot(r, now=now).status for r in ROBOTS}  # type: ignore[union-attr]


def test_the_robots_split_between_the_two_shards() -> None:
    assert owned(0) and owned(1) and sorted(owned(0) + owned(1)) == ROBOTS
    assert StoreConfig().owns('anything') and shard(1).owns(owned(1)[0])
    assert not shard(0).owns(owned(1)[0])
    with pytest.raises(ValueError, match='shard'):
        StoreConfig(shard_index=2, shard_count=2)


def test_a_shard_marks_offline_only_its_own_robots(
        database_url: str, make_store: Callable[..., SqlFleetStore]) -> None:
    whole = make_store(database_url)
    for robot in ROBOTS:
        whole.enrol_robot(robot, token_hash(robot), (), now=T0)
    whole.commit_batch([], [online(r, T0 + 1) for r in ROBOTS], now=T0 + 1)
    whole.close()
    first, second = make_store(database_url, shard(0)), make_store(database_url, shard(1))
    assert first.mark_all_offline(now=T0 + 2) == len(owned(0))
    assert status(first, T0 + 2) == {r: 'offline' if r in owned(0) else 'online'
                                     for r in ROBOTS}
    assert second.mark_all_offline(now=T0 + 3) == len(owned(1))
    assert set(status(first, T0 + 3).values()) == {'offline'}


def test_only_shard_zero_makes_and_drops_telemetry_partitions(
        pg_url: str, make_store: Callable[..., SqlFleetStore]) -> None:
    first = make_store(pg_url)
    second = make_store(pg_url, shard(1))
    first.maintain(now=time.time())  # today's partitions and the ones ahead
    later = time.time() + 30 * 86_400  # a month on: new partitions due, old ones past retention
    with first.engine.connect() as conn:
        before = _list_partitions(conn)
    second.maintain(now=later)
    with first.engine.connect() as conn:
        assert _list_partitions(conn) == before
    first.maintain(now=later)
    with first.engine.connect() as conn:
        after = _list_partitions(conn)
    assert after != before and min(after) > max(before)


def test_two_shard_writers_commit_side_by_side(
        pg_url: str, make_store: Callable[..., SqlFleetStore],
        caplog: pytest.LogCaptureFixture) -> None:
    stores = [make_store(pg_url, shard(0)), make_store(pg_url, shard(1))]
    for index, store in enumerate(stores):
        for robot in owned(index):
            store.enrol_robot(robot, token_hash(robot), (), now=T0)
    rounds = 25
    failures: list[BaseException] = []
    start = threading.Barrier(2)

    def ingest(index: int) -> None:
        store, robots = stores[index], owned(index)
        try:
            start.wait()
            for n in range(1, rounds + 1):
                t = T0 + n
                batch = [heartbeat(r, BOOT, 2 * n - 1, t, res={'battery_percent': 50.0 - n})
                         for r in robots]
                batch += [fleet_event(r, BOOT, 2 * n, t, 'tick', {'n': n}) for r in robots]
                result = store.commit_batch(batch, [online(r, t) for r in robots] if n == 1
                                            else [], now=t)
                assert len(result.acknowledged) == len(batch) and not result.rejected
        except BaseException as exc:  # pragma: no cover - reported below
            failures.append(exc)

    with caplog.at_level('INFO'):
        threads = [threading.Thread(target=ingest, args=(i,)) for i in (0, 1)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    assert not failures, failures
    assert 'replanning' not in caplog.text  # disjoint robots: never a conflict
    engine = stores[0].engine
    with engine.connect() as conn:
        positions = [p for (p,) in conn.execute(sa.select(events.c.position)
                                                .order_by(events.c.position))]
        head = event_store.head_position(conn)
        tracked = {p for (p,) in conn.execute(sa.select(projection_positions.c.position))}
        per_robot = {r: [v for (v,) in conn.execute(
            sa.select(events.c.version).where(events.c.stream_id == f'robot-{r}')
            .order_by(events.c.position))] for r in ROBOTS}
    assert positions == list(range(1, head + 1)) and tracked == {head}
    assert all(v == list(range(1, len(v) + 1)) and len(v) > rounds for v in per_robot.values())
    for robot in ROBOTS:
        owner = stores[shard_of(robot, 2)]
        assert owner.robot_sequences(robot)[BOOT].ranges == ((1, 2 * rounds),)
        assert owner.get_robot(robot, now=T0 + rounds).status == 'online'  # type: ignore[union-attr]
    # The read models the two writers projected are the ones a replay of the log gives.
    before = dump(engine)
    stores[0].rebuild_projections()
    assert dump(engine) == before


def test_two_writers_make_the_same_partition_one_after_the_other(
        pg_url: str, make_store: Callable[..., SqlFleetStore]) -> None:
    first, second = make_store(pg_url), make_store(pg_url, shard(1))
    first.maintain(now=time.time())
    start = max(v for v in first._history.partitions.values())  # type: ignore[union-attr]
    outcome: list[object] = []
    with first.engine.begin() as conn:
        first._history.create_partitions(conn, [start])

        def other() -> None:
            try:
                with second.engine.begin() as conn2:
                    outcome.append(second._history.create_partitions(conn2, [start]))
            except Exception as exc:
                outcome.append(exc)

        thread = threading.Thread(target=other)
        thread.start()
        thread.join(0.5)
        assert thread.is_alive()  # waits for the first transaction
    thread.join(10)
    assert outcome and not isinstance(outcome[0], Exception), outcome
    with first.engine.connect() as conn:
        assert start in _list_partitions(conn)
