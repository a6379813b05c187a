"""Fixtures of the system tests: the real fleet server on PostgreSQL and real rclpy processes."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from system_harness import (
    FleetServerProcess,
    ProcessGroup,
    create_database,
    drop_database,
)


@pytest.fixture
def pg_url() -> Iterator[str]:
    """Create a throwaway PostgreSQL database for one test and drop it afterwards."""
    base = os.environ.get('LEKIWI_TEST_DATABASE_URL')
    if not base:
        pytest.skip('LEKIWI_TEST_DATABASE_URL is not set (make test sets it up)')
    url = create_database(base, f'lekiwi_sys_{uuid.uuid4().hex[:12]}')
    yield url
    drop_database(base, url)


@pytest.fixture
def processes() -> Iterator[ProcessGroup]:
    """Child processes of one test, all stopped when it ends."""
    group = ProcessGroup()
    yield group
    group.stop_all()


@pytest.fixture
def ros_domain() -> str:
    """A DDS domain of its own per test, so concurrent runs never cross-talk."""
    return str(100 + (uuid.uuid4().int % 100))


@pytest.fixture
def fleet_server(pg_url: str, processes: ProcessGroup, tmp_path) -> FleetServerProcess:
    """The real fleet server (REST API and robot gateway) on PostgreSQL, on loopback."""
    server = FleetServerProcess(processes, database_url=pg_url, data_dir=tmp_path / 'server')
    server.start()
    return server
