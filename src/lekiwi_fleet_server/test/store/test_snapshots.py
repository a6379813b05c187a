"""Snapshots: recovery from snapshot plus tail equals full replay, and survives restarts."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import sqlalchemy as sa
from store_messages import T0
from store_scenario import ROBOTS, dump, run_scenario

from lekiwi_fleet_server.db.schema import snapshots
from lekiwi_fleet_server.domain.robot_state import SNAPSHOT_SCHEMA, RobotAggregate
from lekiwi_fleet_server.store.config import StoreConfig
from lekiwi_fleet_server.store.snapshots import is_due, load_aggregates
from lekiwi_fleet_server.store.sql_store import SqlFleetStore


@pytest.fixture
def store_config() -> StoreConfig:
    return StoreConfig(snapshot_every=4)


def test_is_due() -> None:
    assert is_due(3, 4, 4) and is_due(3, 9, 4) and not is_due(4, 7, 4) and not is_due(0, 3, 4)


def test_snapshot_plus_tail_equals_full_replay(store: SqlFleetStore) -> None:
    run_scenario(store)
    with store.engine.connect() as conn:
        taken = dict(conn.execute(sa.select(snapshots.c.stream_id, snapshots.c.version)).all())
        from_snapshots = load_aggregates(conn)
        replayed = load_aggregates(conn, use_snapshots=False)
        some = load_aggregates(conn, ['alpha', 'nobody'])
    assert set(taken) == {f'robot-{r}' for r in ROBOTS}
    assert all(v >= 4 for v in taken.values())
    # A snapshot exists and a tail follows it: the test exercises both halves.
    assert any(from_snapshots[r].version > taken[f'robot-{r}'] for r in ROBOTS)
    assert from_snapshots == replayed
    assert some == {'alpha': replayed['alpha']}
    assert load_aggregates(store.engine.connect(), []) == {}


def test_restart_recovers_the_same_state_and_deduplicates(
        database_url: str, make_store: Callable[..., SqlFleetStore]) -> None:
    store = make_store(database_url)
    batches = run_scenario(store)
    summaries = [store.get_robot(r, now=T0 + 100) for r in ROBOTS]
    tables = ('events', 'robots', 'robot_current', 'telemetry', 'timeline', 'teleop_sessions',
              'snapshots')
    before = dump(store.engine, tables)
    store.close()
    again = make_store(database_url)
    assert [again.get_robot(r, now=T0 + 100) for r in ROBOTS] == summaries
    # Every message is delivered again after the restart: acknowledged, nothing stored.
    for messages in batches:
        result = again.commit_batch(messages, now=T0 + 200)
        assert len(result.acknowledged) == result.duplicates == len(messages)
        assert result.new_events == () and result.changed_robots == ()
    assert dump(again.engine, tables) == before


def test_unreadable_snapshots_are_ignored(store: SqlFleetStore) -> None:
    run_scenario(store)
    with store.engine.begin() as conn:
        replayed = load_aggregates(conn, use_snapshots=False)
        conn.execute(sa.update(snapshots).values(schema_version=SNAPSHOT_SCHEMA + 1,
                                                 state={'garbage': True}))
    with store.engine.connect() as conn:
        assert load_aggregates(conn) == replayed
    assert isinstance(replayed['alpha'], RobotAggregate)
