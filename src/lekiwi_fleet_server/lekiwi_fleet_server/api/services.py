"""What the routes reach: the pieces the lifespan built, bundled (no globals)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lekiwi_fleet_server.deployments.engine import DeploymentEngine
from lekiwi_fleet_server.gateway.bus import InProcessBus
from lekiwi_fleet_server.gateway.server import RobotGateway
from lekiwi_fleet_server.metrics import FleetMetrics
from lekiwi_fleet_server.settings import Settings
from lekiwi_fleet_server.store.interface import FleetStore
from lekiwi_fleet_server.store.releases import ReleaseStore


@dataclass(frozen=True, slots=True)
class FleetServices:
    settings: Settings
    store: FleetStore
    gateway: RobotGateway
    bus: InProcessBus
    metrics: FleetMetrics
    now: Callable[[], float]
    discovery: Any = None  # discovery.service.DiscoveryService, built by the lifespan
    releases: ReleaseStore | None = None  # None in apps built without a release store
    deployments: DeploymentEngine | None = None
    router: Any = None  # broker/routing.py: LocalRouter or NatsRouter; None: the gateway itself
    broker: Any = None  # broker/wiring.py BrokerWiring with a nats_url (issue 17)
    flags: Any = None  # flags.engine.FlagEngine (issue 20); None without a release store
