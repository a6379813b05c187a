"""Live presence laid over read-model rows, for the stream's snapshot and GraphQL.

REST does the same in api/routes/robots.py (`robot_out`). Whether a robot is online comes from
the presence registry (broker/presence.py: Redis with several gateways, in process without),
which knows at once when a gateway that held the robot died; the read model's status, made of
committed presence events, learns it only when another gateway reaps the expired claim.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

from lekiwi_fleet_server.api.services import FleetServices
from lekiwi_fleet_server.broker.presence import live_status
from lekiwi_fleet_server.store.interface import RobotSummary


@dataclass(frozen=True, slots=True)
class LiveRow:
    """A read-model row with its live status, and whether a gateway of the fleet holds it."""

    robot: RobotSummary
    connected: bool


async def live_rows(services: FleetServices, rows: Sequence[RobotSummary]) -> list[LiveRow]:
    """Return the rows with live presence (raises RegistryUnavailable without the registry)."""
    if not rows:
        return []
    registry = services.gateway.ownership.registry
    ids = [r.robot_id for r in rows]
    owners = await registry.lookup(ids)  # one round trip each, whatever the fleet's size
    tokens = await registry.latest_tokens(ids)
    now, stale_after_s = services.now(), services.settings.stale_after_s
    gateway = services.gateway
    out = []
    for row in rows:
        owner = owners.get(row.robot_id)
        # A session this process's gateway holds whose claim lapsed (a loaded host refreshed
        # late; the gateway is claiming it again) is live all the same.
        here = owner is None and gateway.is_connected(row.robot_id)
        if here:
            status = row.status if row.status in ('online', 'stale') else 'online'
        else:
            status = live_status(row.status, owner, now, stale_after_s, row.robot_id in tokens)
        connected = owner is not None or here
        robot = row if status == row.status else dataclasses.replace(row, status=status)
        out.append(LiveRow(robot, connected))
    return out


async def live_robots(services: FleetServices, rows: Sequence[RobotSummary]
                      ) -> list[RobotSummary]:
    """Return the rows with their live status (the stream's snapshot)."""
    return [r.robot for r in await live_rows(services, rows)]
