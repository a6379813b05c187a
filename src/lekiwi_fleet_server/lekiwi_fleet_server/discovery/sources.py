"""Start the discovery sources the settings ask for: mDNS browsing, dialled rosbridge robots."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from lekiwi_fleet_server.discovery.rosbridge_ingest import RosbridgeIngest, parse_dial_target
from lekiwi_fleet_server.discovery.service import DiscoveryService
from lekiwi_fleet_server.settings import Settings

if TYPE_CHECKING:
    from lekiwi_fleet_server.gateway.server import RobotGateway


async def start_sources(discovery: DiscoveryService, settings: Settings,
                        gateway: RobotGateway) -> list[RosbridgeIngest]:
    """Start every configured source as a task the discovery service owns."""
    loop = asyncio.get_running_loop()
    ingests = [RosbridgeIngest(parse_dial_target(spec), gateway, discovery.store, discovery,
                               backoff_cap_s=settings.rosbridge_backoff_cap_s)
               for spec in settings.rosbridge_robots]
    for ingest in ingests:
        discovery.add_task(loop.create_task(ingest.run(),
                                            name=f'rosbridge-{ingest.target.robot_id}'))
    discovery.ingests = ingests
    if settings.discovery_mdns:
        from lekiwi_fleet_server.discovery.mdns import MdnsBrowser

        browser = MdnsBrowser(discovery, settings.discovery_mdns_interfaces)
        await browser.start()
        discovery.add_task(loop.create_task(browser.run(), name='mdns-browser'))
    return ingests
