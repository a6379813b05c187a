"""Failures: a failed batch leaves nothing behind, lost databases, a second writer, threads."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from store_messages import (
    T0,
    heartbeat,
    offline,
    online,
    session_started,
    telemetry,
    token_hash,
)
from store_scenario import dump

from lekiwi_fleet_server.store.interface import (
    RobotFilter,
    StoreError,
    StoreUnavailable,
)
from lekiwi_fleet_server.store.sql_store import SqlFleetStore

ALL_TABLES = ('events', 'event_counter', 'snapshots', 'robots', 'robot_tags', 'robot_current',
              'teleop_sessions', 'timeline', 'projection_positions', 'telemetry', 'credentials',
              'robot_sequences')

POISON = 666.0  # a telemetry value the injected trigger refuses


def install_failing_trigger(store: SqlFleetStore) -> Callable[[], None]:
    """Make the database refuse a telemetry row with cpu_percent = POISON; return the undo."""
    with store.engine.begin() as conn:
        if conn.dialect.name == 'sqlite':
            conn.exec_driver_sql(
                f'CREATE TRIGGER fail_telemetry BEFORE INSERT ON telemetry '
                f'WHEN NEW.cpu_percent = {POISON} BEGIN '
                f"SELECT RAISE(ABORT, 'injected failure'); END")
        else:
            conn.exec_driver_sql(
                'CREATE FUNCTION fail_telemetry() RETURNS trigger LANGUAGE plpgsql AS $$ '
                f'BEGIN IF NEW.cpu_percent = {POISON} THEN '
                "RAISE EXCEPTION 'injected failure'; END IF; RETURN NEW; END $$")
            conn.exec_driver_sql('CREATE TRIGGER fail_telemetry BEFORE INSERT ON telemetry '
                                 'FOR EACH ROW EXECUTE FUNCTION fail_telemetry()')

    def undo() -> None:
        with store.engine.begin() as conn:
            conn.exec_driver_sql('DROP TRIGGER fail_telemetry' + (
                '' if conn.dialect.name == 'sqlite' else ' ON telemetry'))
    return undo


def test_a_batch_failing_midway_stores_nothing_and_can_be_retried(
        store: SqlFleetStore) -> None:
    store.enrol_robot('kiwi', token_hash('kiwi'), (), now=T0)
    store.commit_batch([heartbeat('kiwi', 'boot0001', 1, T0)], [online('kiwi', T0)], now=T0)
    undo = install_failing_trigger(store)
    before = dump(store.engine, ALL_TABLES)
    # Every kind of write comes before the telemetry insert that fails: events, projections,
    # current state; the database refuses the last statement.
    batch = [
        heartbeat('kiwi', 'boot0001', 2, T0 + 1, software='2.0.0',
                  res={'battery_percent': 5.0}),
        session_started('kiwi', 'boot0001', 3, T0 + 1, 's1'),
        telemetry('kiwi', 'boot0001', 4, T0 + 1, 1, 1, {'cpu_percent': POISON}, full=True),
    ]
    with pytest.raises(StoreError, match='injected failure'):
        store.commit_batch(batch, [offline('kiwi', T0 + 1)], now=T0 + 1)
    assert dump(store.engine, ALL_TABLES) == before
    undo()
    result = store.commit_batch(batch, [offline('kiwi', T0 + 1)], now=T0 + 1)
    assert result.duplicates == 0 and len(result.acknowledged) == 3
    assert sorted(e.type for e in result.new_events) == [
        'ResourceAlarmRaised', 'RobotVersionChanged', 'RobotWentOffline',
        'TeleopSessionStarted']
    robot = store.get_robot('kiwi', now=T0 + 1)
    assert robot.software_version == '2.0.0' and robot.last_seq == 4
    assert robot.telemetry == {'cpu_percent': POISON}
    versions = [e.version for e in store.robot_timeline('kiwi', 0, 100).events]
    assert versions == list(range(1, len(versions) + 1))


def test_an_unreachable_database_is_unavailable(tmp_path) -> None:
    with pytest.raises(StoreUnavailable):
        SqlFleetStore.open('postgresql+psycopg://nobody:secret@127.0.0.1:1/nothing')
    with pytest.raises(StoreUnavailable):
        SqlFleetStore.open(f'sqlite:///{tmp_path}/missing/dir/fleet.db')
    with pytest.raises(ValueError, match='unsupported database'):
        SqlFleetStore.open('mysql://localhost/fleet')


def test_losing_postgresql_and_getting_it_back(pg_url: str,
                                               make_store: Callable[..., SqlFleetStore]) -> None:
    store = make_store(pg_url)
    store.enrol_robot('kiwi', token_hash('kiwi'), (), now=T0)
    store.commit_batch([heartbeat('kiwi', 'boot0001', 1, T0)], [online('kiwi', T0)], now=T0)
    name = make_url(pg_url).database
    admin = sa.create_engine(pg_url.rsplit('/', 1)[0] + '/postgres',
                             isolation_level='AUTOCOMMIT', poolclass=sa.NullPool)

    def allow(yes: bool) -> None:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'ALTER DATABASE {name} WITH ALLOW_CONNECTIONS {yes}')
            if not yes:
                conn.exec_driver_sql('SELECT pg_terminate_backend(pid) FROM pg_stat_activity '
                                     f"WHERE datname = '{name}' AND pid <> pg_backend_pid()")

    try:
        allow(False)
        with pytest.raises(StoreUnavailable):
            store.ping()
        with pytest.raises(StoreUnavailable):
            store.commit_batch([heartbeat('kiwi', 'boot0001', 2, T0 + 1)], now=T0 + 1)
        with pytest.raises(StoreUnavailable):
            store.list_robots(RobotFilter(), now=T0 + 1)
    finally:
        allow(True)
        admin.dispose()
    store.ping()
    # The batch the gateway retries is stored once.
    result = store.commit_batch([heartbeat('kiwi', 'boot0001', 2, T0 + 1)], now=T0 + 1)
    assert result.duplicates == 0
    assert store.get_robot('kiwi', now=T0 + 1).last_seq == 2


def test_a_second_writer_is_noticed_through_stream_versions(
        database_url: str, make_store: Callable[..., SqlFleetStore]) -> None:
    server = make_store(database_url)
    cli = make_store(database_url)
    server.enrol_robot('a', token_hash('a'), (), now=T0)
    server.commit_batch([], [online('a', T0)], now=T0)
    cli.revoke_robot('a', now=T0 + 1)  # the server's cached stream version is stale now
    cli.enrol_robot('b', token_hash('b'), (), now=T0 + 1)  # unknown to the server so far
    result = server.commit_batch([heartbeat('b', 'boot0001', 1, T0 + 2)],
                                 [offline('a', T0 + 2)], now=T0 + 2)
    assert sorted(e.type for e in result.new_events) == ['RobotVersionChanged',
                                                         'RobotWentOffline']
    events = server.robot_timeline('a', 0, 100).events
    assert [e.type for e in events] == ['RobotEnrolled', 'RobotCameOnline', 'RobotTokenRevoked',
                                        'RobotWentOffline']
    assert [e.version for e in events] == [1, 2, 3, 4]
    assert server.get_robot('a', now=T0 + 2).revoked
    assert server.get_robot('b', now=T0 + 2).last_seq == 1


def test_concurrent_writers_and_readers_in_threads(store: SqlFleetStore) -> None:
    robots = [f'r{i}' for i in range(6)]
    for robot in robots:
        store.enrol_robot(robot, token_hash(robot), ('t',), now=T0)
    errors: list[BaseException] = []

    def write(group: list[str]) -> None:
        try:
            for seq in range(1, 16):
                store.commit_batch([heartbeat(r, 'boot0001', seq, T0 + seq) for r in group],
                                   [online(r, T0) for r in group] if seq == 1 else [],
                                   now=T0 + seq)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def read() -> None:
        try:
            for _ in range(15):
                store.list_robots(RobotFilter(tag='t'), now=T0 + 5)
                store.fleet_summary(now=T0 + 5)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(robots[:3],)),
               threading.Thread(target=write, args=(robots[3:],)),
               threading.Thread(target=read), threading.Thread(target=read)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert [r.last_seq for r in store.list_robots(RobotFilter(), now=T0 + 20)] == [15] * 6
