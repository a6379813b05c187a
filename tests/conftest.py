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


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip the launch_testing test when its pytest plugin is not loaded in this session."""
    if config.pluginmanager.has_plugin('launch_testing'):
        return
    skip = pytest.mark.skip(
        reason='a launch_testing test: run it with `launch_test tests/test_robot_launch_testing.py`'
               ' on a ROS 2 install (the test command disables launch_testing 3.7\'s pytest '
               'plugin, which aborts pytest 9 sessions)')
    for item in items:
        if item.path.name == 'test_robot_launch_testing.py':
            item.add_marker(skip)
