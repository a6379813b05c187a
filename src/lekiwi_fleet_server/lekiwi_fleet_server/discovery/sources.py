"""The discovery sources the settings ask for: mDNS browsing, dialled rosbridge robots.

mDNS browsing runs in every server process (it only listens; each process's inventory shows
what it heard). Dialling the rosbridge robots is a fleet-wide duty (leadership.py, `discovery`):
only the lease holder dials them, since two gateways dialling one robot would take its session
from each other in turn.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from lekiwi_fleet_server.discovery.rosbridge_ingest import RosbridgeIngest, parse_dial_target
from lekiwi_fleet_server.discovery.service import DiscoveryService
from lekiwi_fleet_server.settings import Settings

if TYPE_CHECKING:
    from lekiwi_fleet_server.gateway.server import RobotGateway


async def start_sources(discovery: DiscoveryService, settings: Settings) -> None:
    """Start the mDNS browser, when configured, as a task the discovery service owns."""
    if settings.discovery_mdns:
        from lekiwi_fleet_server.discovery.mdns import MdnsBrowser

        browser = MdnsBrowser(discovery, settings.discovery_mdns_interfaces)
        await browser.start()
        discovery.add_task(asyncio.get_running_loop().create_task(browser.run(),
                                                                  name='mdns-browser'))


async def start_dialling(discovery: DiscoveryService, settings: Settings,
                         gateway: RobotGateway) -> list[asyncio.Task[None]]:
    """Start a client per configured rosbridge robot; return their tasks (the duty's)."""
    loop = asyncio.get_running_loop()
    ingests = [RosbridgeIngest(parse_dial_target(spec), gateway, discovery.store, discovery,
                               backoff_cap_s=settings.rosbridge_backoff_cap_s)
               for spec in settings.rosbridge_robots]
    discovery.ingests = ingests
    return [loop.create_task(ingest.run(), name=f'rosbridge-{ingest.target.robot_id}')
            for ingest in ingests]
