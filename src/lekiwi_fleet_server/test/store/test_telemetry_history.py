"""Telemetry history: time partitions and retention on PostgreSQL, retention on SQLite."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable

import pytest
import sqlalchemy as sa
from store_messages import telemetry, token_hash

from lekiwi_fleet_server.db.schema import store_meta
from lekiwi_fleet_server.db.schema import telemetry as telemetry_table
from lekiwi_fleet_server.migrations import MIGRATIONS_DIR
from lekiwi_fleet_server.store.config import StoreConfig
from lekiwi_fleet_server.store.sql_store import SqlFleetStore
from lekiwi_fleet_server.store.telemetry import (
    parse_bound,
    partition_name,
    partition_start,
    sampled_ms,
)

HOUR = 3600.0
H = 1_764_187_200.0  # a whole hour (UTC)
NOW = H + 1800  # half past


@pytest.fixture
def store_config() -> StoreConfig:
    return StoreConfig(telemetry_partition_s=HOUR, telemetry_retention_s=3 * HOUR,
                       telemetry_partitions_ahead=2, telemetry_max_future_s=60)


def partitions(store: SqlFleetStore) -> dict[str, tuple[int, int]]:
    with store.engine.connect() as conn:
        rows = conn.execute(sa.text(
            'SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i '
            'JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent '
            "WHERE p.relname = 'telemetry'")).all()
    return {name: parse_bound(bound) for name, bound in rows}


def rows_by_time(store: SqlFleetStore) -> list[int]:
    with store.engine.connect() as conn:
        return sorted(conn.execute(sa.select(telemetry_table.c.sampled_ms)).scalars())


def hour_ms(offset_hours: int) -> int:
    return int(H * 1000) + offset_hours * 3_600_000


def test_helpers() -> None:
    assert sampled_ms(10.5, 20.0, 60) == 10_500
    assert sampled_ms(0.0, 20.0, 60) == 20_000  # no stamp: receive time
    assert sampled_ms(500.0, 20.0, 60) == 20_000  # robot clock far ahead: receive time
    assert partition_start(hour_ms(0) + 5, 3_600_000) == hour_ms(0)
    assert partition_name(hour_ms(0)) == 'telemetry_p20251126t200000'
    assert parse_bound("FOR VALUES FROM ('10') TO ('20')") == (10, 20)
    assert parse_bound('FOR VALUES FROM (10) TO (20)') == (10, 20)
    assert parse_bound('DEFAULT') is None


def test_migration_chooses_the_telemetry_table() -> None:
    path = MIGRATIONS_DIR / 'versions' / '0001_initial.py'
    spec = importlib.util.spec_from_file_location('migration_0001', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.telemetry_mode('sqlite', False) == 'plain'
    assert module.telemetry_mode('postgresql', False) == 'partitioned'
    assert module.telemetry_mode('postgresql', True) == 'timescaledb'
    (statement,) = module.timescale_statements(86_400_000)
    assert "create_hypertable('telemetry', 'sampled_ms'" in statement
    assert '86400000::bigint' in statement


def test_partitions_ahead_on_demand_and_retention_on_postgresql(
        pg_url: str, make_store: Callable[..., SqlFleetStore]) -> None:
    store = make_store(pg_url)
    store.enrol_robot('kiwi', token_hash('kiwi'), (), now=NOW)
    store.maintain(now=NOW)
    assert sorted(partitions(store).values()) == [
        (hour_ms(0), hour_ms(1)), (hour_ms(1), hour_ms(2)), (hour_ms(2), hour_ms(3))]
    assert partition_name(hour_ms(1)) in partitions(store)
    # Received now, whatever the robot clock says.
    msgs = [
        telemetry('kiwi', 'boot0001', 1, NOW - 5 * HOUR, 1, 1, {'cpu_percent': 1.0}, full=True,
                  received_at=NOW),
        telemetry('kiwi', 'boot0001', 2, NOW - 2 * HOUR, 2, 1, {'cpu_percent': 2.0},
                  received_at=NOW),
        telemetry('kiwi', 'boot0001', 3, NOW, 3, 1, {'cpu_percent': 3.0}, received_at=NOW),
        telemetry('kiwi', 'boot0001', 4, NOW + 86_400, 4, 1, {'cpu_percent': 4.0},
                  received_at=NOW),
    ]
    result = store.commit_batch(msgs, now=NOW)
    assert len(result.acknowledged) == 4
    # Past retention on arrival: not stored; two hours ago: a partition made for it; the far
    # future stamp: stored at the receive time.
    assert rows_by_time(store) == [int((NOW - 2 * HOUR) * 1000), int(NOW * 1000),
                                   int(NOW * 1000)]
    assert (hour_ms(-2), hour_ms(-1)) in partitions(store).values()
    assert store.get_robot('kiwi', now=NOW).telemetry == {'cpu_percent': 4.0}

    later = NOW + 4 * HOUR  # retention keeps [later - 3 h, ...): partitions ending by then go
    store.commit_batch([telemetry('kiwi', 'boot0001', 5, later, 5, 1, {'cpu_percent': 5.0})],
                       now=later)  # commit_batch runs the maintenance that is due
    assert sorted(partitions(store).values()) == [
        (hour_ms(1), hour_ms(2)), (hour_ms(2), hour_ms(3)), (hour_ms(4), hour_ms(5)),
        (hour_ms(5), hour_ms(6)), (hour_ms(6), hour_ms(7))]
    assert rows_by_time(store) == [int(later * 1000)]
    points = store.telemetry_range('kiwi', NOW - 6 * HOUR, later + 1, HOUR, ['cpu_percent'])
    assert [p.values['cpu_percent'] for p in points] == [5.0]


def test_partition_width_is_fixed_once_partitions_exist(
        pg_url: str, make_store: Callable[..., SqlFleetStore]) -> None:
    store = make_store(pg_url)
    store.maintain(now=NOW)
    store.close()
    wider = make_store(pg_url, StoreConfig(telemetry_partition_s=2 * HOUR,
                                           telemetry_retention_s=6 * HOUR))
    wider.maintain(now=NOW + 3 * HOUR)
    with wider.engine.connect() as conn:
        width = conn.execute(sa.select(store_meta.c.value)
                             .where(store_meta.c.key == 'telemetry_partition_ms')).scalar_one()
    assert width == '3600000'
    assert all(hi - lo == 3_600_000 for lo, hi in partitions(wider).values())


def test_retention_on_sqlite(tmp_path, make_store: Callable[..., SqlFleetStore]) -> None:
    store = make_store(f'sqlite:///{tmp_path}/fleet.db')
    store.enrol_robot('kiwi', token_hash('kiwi'), (), now=NOW)
    store.commit_batch([
        telemetry('kiwi', 'boot0001', 1, NOW - 2 * HOUR, 1, 1, {'cpu_percent': 1.0}, full=True),
        telemetry('kiwi', 'boot0001', 2, NOW, 2, 1, {'cpu_percent': 2.0}),
    ], now=NOW)
    assert len(rows_by_time(store)) == 2
    store.maintain(now=NOW + 1.5 * HOUR)
    assert rows_by_time(store) == [int(NOW * 1000)]


def test_store_config_is_validated() -> None:
    for bad in ({'stale_after_s': 0}, {'snapshot_every': 0}, {'telemetry_partition_s': 1},
                {'telemetry_retention_s': 10, 'telemetry_partition_s': 60},
                {'telemetry_partitions_ahead': -1}, {'telemetry_max_buckets': 0}):
        with pytest.raises(ValueError):
            StoreConfig(**bad)


def test_failing_maintenance_never_blocks_ingest(
        database_url: str, make_store: Callable[..., SqlFleetStore],
        caplog: pytest.LogCaptureFixture) -> None:
    store = make_store(database_url)
    store.enrol_robot('kiwi', token_hash('kiwi'), (), now=NOW)
    store.commit_batch([telemetry('kiwi', 'boot0001', 1, NOW, 1, 1, {'cpu_percent': 1.0},
                                  full=True)], now=NOW)
    with store.engine.begin() as conn:
        if conn.dialect.name == 'sqlite':
            conn.exec_driver_sql("CREATE TRIGGER keep BEFORE DELETE ON telemetry "
                                 "BEGIN SELECT RAISE(ABORT, 'retention refused'); END")
        else:  # a view on the partition makes dropping it fail
            conn.exec_driver_sql(f'CREATE VIEW keep AS SELECT * FROM {partition_name(hour_ms(0))}')
    later = NOW + 10 * HOUR
    result = store.commit_batch([telemetry('kiwi', 'boot0001', 2, later, 2, 1,
                                           {'cpu_percent': 2.0})], now=later)
    assert len(result.acknowledged) == 1
    assert 'maintenance failed' in caplog.text
    assert int(later * 1000) in rows_by_time(store)
