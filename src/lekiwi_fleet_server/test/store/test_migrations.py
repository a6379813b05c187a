"""Migrations: run from code or from alembic.ini, match schema.py, go down and up again."""

from __future__ import annotations

import argparse

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Engine

from lekiwi_fleet_server.db.engine import is_postgresql, make_engine, normalize_url
from lekiwi_fleet_server.db.schema import metadata
from lekiwi_fleet_server.migrations import (
    MIGRATIONS_DIR,
    current_revision,
    downgrade,
    head_revision,
    upgrade,
)
from lekiwi_fleet_server.store.interface import RobotFilter, StoreError
from lekiwi_fleet_server.store.sql_store import SqlFleetStore


@pytest.fixture
def engine(database_url: str) -> Engine:
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


def test_upgrade_is_idempotent_and_reaches_head(engine: Engine) -> None:
    assert current_revision(engine) is None
    upgrade(engine)
    upgrade(engine)
    assert current_revision(engine) == head_revision() == '0007_uplink_transport'


def test_migrated_schema_matches_schema_py(engine: Engine) -> None:
    upgrade(engine)
    with engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diffs == []


def test_downgrade_to_base_and_up_again(engine: Engine) -> None:
    upgrade(engine)
    downgrade(engine, 'base')
    assert current_revision(engine) is None
    assert set(sa.inspect(engine).get_table_names()) == {'alembic_version'}
    upgrade(engine, '0001_initial')
    assert 'ix_robot_current_teleop' in {
        i['name'] for i in sa.inspect(engine).get_indexes('robot_current')}
    upgrade(engine)
    assert current_revision(engine) == head_revision()


def test_upgrade_by_url_and_through_alembic_ini(database_url: str) -> None:
    upgrade(database_url, '0001_initial')
    cfg = Config(str(MIGRATIONS_DIR / 'alembic.ini'))
    cfg.cmd_opts = argparse.Namespace(x=[f'url={database_url}'])
    command.upgrade(cfg, 'head')
    engine = make_engine(database_url)
    assert current_revision(engine) == head_revision()
    engine.dispose()
    cfg.cmd_opts = argparse.Namespace(x=[])
    with pytest.raises(SystemExit, match='-x url='):
        command.upgrade(cfg, 'head')
    with pytest.raises(SystemExit, match='offline'):
        command.upgrade(cfg, 'head', sql=True)


def test_open_without_migrating_needs_a_migrated_database(database_url: str) -> None:
    with pytest.raises(StoreError, match='lekiwi-fleet-server migrate'):
        SqlFleetStore.open(database_url, migrate=False)
    upgrade(database_url)
    SqlFleetStore.open(database_url, migrate=False).close()


def test_normalize_url() -> None:
    assert normalize_url('postgresql://u:p@h/db') == 'postgresql+psycopg://u:p@h/db'
    assert normalize_url('postgres://u@h/db') == 'postgresql+psycopg://u@h/db'
    assert normalize_url('sqlite:///x.db') == 'sqlite:///x.db'
    with pytest.raises(ValueError, match='unsupported'):
        normalize_url('mysql://h/db')


def test_sqlite_is_set_up_for_durability(tmp_path) -> None:
    engine = make_engine(f'sqlite:///{tmp_path}/fleet.db')
    with engine.connect() as conn:
        assert conn.exec_driver_sql('PRAGMA journal_mode').scalar() == 'wal'
        assert conn.exec_driver_sql('PRAGMA foreign_keys').scalar() == 1
        assert conn.exec_driver_sql('PRAGMA synchronous').scalar() == 2  # FULL
    assert not is_postgresql(engine)
    engine.dispose()


def test_in_memory_sqlite_store_works() -> None:
    store = SqlFleetStore.open('sqlite://')
    try:
        store.enrol_robot('kiwi', 'a' * 64, (), now=1.0)
        assert [r.robot_id for r in store.list_robots(RobotFilter(), now=1.0)] == ['kiwi']
    finally:
        store.close()
