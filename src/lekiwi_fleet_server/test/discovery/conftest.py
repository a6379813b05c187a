"""Fixtures of the discovery tests: a network namespace of the test's own."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from discovery_app import discovery_settings
from fastapi.testclient import TestClient
from netns_lab import NetnsLab, NetnsUnavailable

from lekiwi_fleet_server.app import create_app


@pytest.fixture
def lab() -> Iterator[NetnsLab]:
    """Yield a fresh network namespace with loopback up; skip, saying why, where not allowed."""
    try:
        made = NetnsLab.create()
    except NetnsUnavailable as exc:
        pytest.skip(f'no network namespace for this test: {exc}')
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def mcast_lab() -> Iterator[NetnsLab]:
    """Yield a namespace whose loopback carries multicast (mDNS); skip where not allowed."""
    try:
        made = NetnsLab.create(multicast=True)
    except NetnsUnavailable as exc:
        pytest.skip(f'no multicast-capable network namespace for this test: {exc}')
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def make_client(tmp_path: Path) -> Iterator[Callable[..., TestClient]]:
    """Yield a factory of running apps (TestClient) with discovery settings; closes them."""
    clients: list[TestClient] = []

    def make(**overrides: Any) -> TestClient:
        client = TestClient(create_app(discovery_settings(tmp_path, **overrides)))
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in reversed(clients):
        client.__exit__(None, None, None)
