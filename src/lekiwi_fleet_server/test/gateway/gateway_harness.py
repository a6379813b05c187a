"""Start a real RobotGateway on 127.0.0.1 (port 0) over a given store, for tests."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from memory_store import MemoryStore

from lekiwi_fleet_server.domain.tokens import generate_token, hash_token
from lekiwi_fleet_server.gateway.bus import InProcessBus
from lekiwi_fleet_server.gateway.server import RobotGateway
from lekiwi_fleet_server.metrics import FleetMetrics
from lekiwi_fleet_server.settings import Settings


@dataclass
class RunningGateway:
    gateway: RobotGateway
    store: Any
    bus: InProcessBus
    metrics: FleetMetrics
    settings: Settings

    @property
    def url(self) -> str:
        return f'ws://127.0.0.1:{self.gateway.port}/'

    @property
    def port(self) -> int:
        return self.gateway.port

    def enrol(self, robot_id: str) -> str:
        token = generate_token()
        if isinstance(self.store, MemoryStore):
            self.store.enrol(robot_id, hash_token(token))
        else:
            self.store.enrol_robot(robot_id, hash_token(token), (), now=time.time())
        return token


@contextlib.asynccontextmanager
async def running_gateway(store: Any, *, registry: Any = None,
                          **overrides: Any) -> AsyncIterator[RunningGateway]:
    """Start a gateway on 127.0.0.1, port 0, over `store`; stop it afterwards.

    `registry`: a presence registry (broker/presence.py) shared with other gateways.
    """
    options: dict[str, Any] = {'gateway_host': '127.0.0.1', 'gateway_port': 0,
                               'commit_interval_ms': 20}
    settings = Settings(**(options | overrides))
    metrics = FleetMetrics()
    bus = InProcessBus(settings.bus_queue_updates)
    gateway = RobotGateway(settings, store, bus, metrics, registry=registry)
    await gateway.start()
    try:
        yield RunningGateway(gateway, store, bus, metrics, settings)
    finally:
        await gateway.stop(drain_timeout_s=1.0)
