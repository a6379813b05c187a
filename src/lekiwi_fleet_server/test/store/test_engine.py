"""How the server's PostgreSQL connections plan the batch writes (db/engine.py)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from lekiwi_fleet_server.db.engine import make_engine
from lekiwi_fleet_server.migrations import upgrade
from lekiwi_fleet_server.store import sequences

ROBOTS = 10_000  # the fleet size of the gateway benchmark's goal


def _plan(engine: sa.Engine) -> str:
    """EXPLAIN the batch UPDATE of robot_sequences, as psycopg prepares it, on `engine`."""
    sql, _params = sequences.pg_update([], 0.0)
    sql = sql.replace('%(t)s', '$1').replace('%(rows)s', '$2')
    with engine.connect() as conn:
        conn.exec_driver_sql(f'PREPARE seq_update(double precision, text) AS {sql}')
        # A prepared statement runs on a generic plan once psycopg and PostgreSQL settle on
        # one: explain that one.
        conn.exec_driver_sql('SET plan_cache_mode = force_generic_plan')
        return '\n'.join(row[0] for row in conn.exec_driver_sql(
            "EXPLAIN EXECUTE seq_update(0, '[]')"))


@pytest.fixture
def fleet_sequences(pg_url: str) -> str:
    """A migrated database whose robot_sequences holds one boot of each of 10,000 robots."""
    upgrade(pg_url)
    engine = make_engine(pg_url)
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO robot_sequences (robot_id, boot_id, ranges, received, first_seen_at, "
            "updated_at) SELECT 'robot-' || i, md5(i::text), '[[1, 100]]', 100, 0, 0 "
            f'FROM generate_series(1, {ROBOTS}) AS i')
        conn.exec_driver_sql('ANALYZE robot_sequences')
    engine.dispose()
    return pg_url


def test_a_batch_updates_robot_sequences_by_index_not_by_scanning_the_table(
        fleet_sequences: str) -> None:
    engine = make_engine(fleet_sequences)
    try:
        plan = _plan(engine)
    finally:
        engine.dispose()
    assert 'Index Scan using robot_sequences_pkey' in plan, plan
    assert 'Seq Scan on robot_sequences' not in plan, plan


def test_with_the_default_page_cost_the_same_update_scans_the_whole_table(
        fleet_sequences: str) -> None:
    # Why the engine sets random_page_cost: PostgreSQL's default plans a full scan per batch.
    engine = make_engine(fleet_sequences + '?options=-c%20random_page_cost%3D4')
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql('SHOW random_page_cost').scalar() == '4'
        plan = _plan(engine)
    finally:
        engine.dispose()
    assert 'Seq Scan on robot_sequences' in plan, plan


def test_libpq_options_in_the_url_win(pg_url: str) -> None:
    engine = make_engine(pg_url + '?options=-c%20random_page_cost%3D2.5')
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql('SHOW random_page_cost').scalar() == '2.5'
    finally:
        engine.dispose()
    engine = make_engine(pg_url)
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql('SHOW random_page_cost').scalar() == '1.1'
    finally:
        engine.dispose()
