"""Fixtures shared by every fleet server test (gateway and API tests use them too: keep stable).

- `pg_url`: a URL of an empty, throwaway PostgreSQL database created from
  LEKIWI_TEST_DATABASE_URL (the role may CREATE DATABASE) and dropped after the test. Tests that
  use it are skipped, with that reason, only when the variable is unset.
- `database_url`: parametrized over 'sqlite' (a file in tmp_path) and 'postgresql' (`pg_url`), so
  a test using it runs on both databases.
- `store_config`: the StoreConfig the `store` fixture uses; override it in a test module or
  folder conftest to change settings (for example a low `snapshot_every`).
- `store`: an SqlFleetStore opened (and so migrated) on `database_url`, closed after the test.
- `make_store`: a factory opening further stores on a URL (closed after the test), for restart
  and two-writer tests.
- `sqlite_engine`: an engine on a migrated SQLite file in tmp_path, disposed after the test, for
  the parts that take an engine rather than a store (flag, deployment and release stores).
- `redis_server`: a running redis-server on a free loopback port (test/broker/redis_server.py),
  skipped with the reason when the binary is missing.
"""

from __future__ import annotations

import os
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from lekiwi_fleet_server.db.engine import make_engine
from lekiwi_fleet_server.migrations import upgrade
from lekiwi_fleet_server.store.config import StoreConfig
from lekiwi_fleet_server.store.sql_store import SqlFleetStore

sys.path.insert(0, str(Path(__file__).parent / 'broker'))
from redis_server import MISSING, REDIS_BINARY, RedisServer  # noqa: E402

DATABASE_ENV = 'LEKIWI_TEST_DATABASE_URL'


@pytest.fixture
def pg_url() -> Iterator[str]:
    """Yield the URL of a new empty PostgreSQL database; drop it afterwards."""
    admin_url = os.environ.get(DATABASE_ENV)
    if not admin_url:
        pytest.skip(f'{DATABASE_ENV} is not set (scripts/ensure_postgres.sh prints one)')
    admin_url = admin_url.replace('postgresql://', 'postgresql+psycopg://', 1)
    name = f'lekiwi_t_{uuid.uuid4().hex[:16]}'
    admin = sa.create_engine(admin_url, isolation_level='AUTOCOMMIT', poolclass=sa.NullPool)
    try:
        # OperationalError, "source database template1 is being accessed by other users":
        # another test (of this run or of a neighbour's) is creating one at this very moment.
        _retrying(admin, f'CREATE DATABASE {name}',
                  lambda exc: isinstance(exc, sa.exc.OperationalError))
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        # FORCE: a test that failed may have left connections open. ProgrammingError
        # (InsufficientPrivilege): an autovacuum worker is on the database, which only a
        # superuser may end; it is done within moments.
        _retrying(admin, f'DROP DATABASE IF EXISTS {name} WITH (FORCE)',
                  lambda exc: isinstance(getattr(exc, 'orig', None),
                                         psycopg.errors.InsufficientPrivilege))
        admin.dispose()


def _retrying(admin: sa.Engine, sql: str, transient: Callable[[Exception], bool],
              attempts: int = 8) -> None:
    for attempt in range(attempts):
        try:
            with admin.connect() as conn:
                conn.exec_driver_sql(sql)
            return
        except sa.exc.DBAPIError as exc:
            if not transient(exc) or attempt == attempts - 1:
                raise
            time.sleep(0.2 * (attempt + 1))


@pytest.fixture(params=['sqlite', 'postgresql'])
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """Return a URL of an empty database of each kind in turn."""
    if request.param == 'postgresql':
        return request.getfixturevalue('pg_url')
    return f'sqlite:///{tmp_path_factory.mktemp("db") / "fleet.db"}'


@pytest.fixture
def store_config() -> StoreConfig:
    """Return the store settings of a test (override to change them)."""
    return StoreConfig()


@pytest.fixture
def make_store(store_config: StoreConfig) -> Iterator[Callable[..., SqlFleetStore]]:
    """Yield a factory `make_store(url, config=None)` of stores closed after the test."""
    opened: list[SqlFleetStore] = []

    def factory(url: str, config: StoreConfig | None = None) -> SqlFleetStore:
        store = SqlFleetStore.open(url, config or store_config)
        opened.append(store)
        return store

    yield factory
    for store in opened:
        store.close()


@pytest.fixture
def store(database_url: str, make_store: Callable[..., SqlFleetStore]) -> SqlFleetStore:
    """Return a migrated SqlFleetStore on `database_url`."""
    return make_store(database_url)


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Iterator[sa.Engine]:
    """Yield an engine on a migrated SQLite database in tmp_path; dispose of it after the test."""
    engine = make_engine(f'sqlite:///{tmp_path / "fleet.db"}')
    upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """Yield a running redis-server on a free loopback port; stop it after the test."""
    if REDIS_BINARY is None:
        pytest.skip(MISSING)
    server = RedisServer(tmp_path / 'redis')
    server.start()
    try:
        yield server
    finally:
        server.stop()
