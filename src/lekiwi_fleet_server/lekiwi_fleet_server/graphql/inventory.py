"""GraphQL over the discovery inventory: every robot found, however found, with its sources and
presence; the same views and filters as REST (`api/routes/inventory.py`)."""

from typing import Annotated, Any, get_args

import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info

from lekiwi_fleet_server.api.routes.inventory import (
    PresenceFilter,
    discovery_of,
    inventory_views,
)
from lekiwi_fleet_server.discovery.inventory import Source
from lekiwi_fleet_server.graphql.access import IsViewer, bounded, services_of

SOURCES = tuple(s.value for s in Source)
PRESENCE = get_args(PresenceFilter)


@strawberry.type(description='When and where one discovery source last saw a robot.')
class InventorySource:
    source: str = strawberry.field(description=f'One of {", ".join(SOURCES)}')
    last_seen: float
    address: str | None
    port: int | None
    details: JSON = strawberry.field(description='What the source reported (versions, ...)')


@strawberry.type
class Presence:
    state: str = strawberry.field(description='online, stale, offline or flapping')
    reason: str
    since: float


@strawberry.type(description='A robot (or an endpoint not identified yet) discovery found.')
class InventoryEntry:
    key: str = strawberry.field(description='The robot id, or the endpoint while unknown')
    robot_id: str | None
    status: str = strawberry.field(description='enrolled, pending (admission) or discovered')
    enrolled: bool
    address: str | None
    first_seen: float
    last_seen: float
    agent_version: str | None
    software_version: str | None
    sources: list[InventorySource]
    presence: Presence | None


def inventory_entry(view: dict[str, Any]) -> InventoryEntry:
    """Convert the REST view of an entry."""
    sources = []
    for name, seen in view['sources'].items():
        details = {k: v for k, v in seen.items() if k not in ('last_seen', 'address', 'port')}
        sources.append(InventorySource(source=name, last_seen=seen['last_seen'],
                                       address=seen['address'], port=seen['port'],
                                       details=details))
    presence = view['presence']
    return InventoryEntry(
        key=view['key'], robot_id=view['robot_id'], status=view['status'],
        enrolled=view['enrolled'], address=view['address'], first_seen=view['first_seen'],
        last_seen=view['last_seen'], agent_version=view['agent_version'],
        software_version=view['software_version'], sources=sources,
        presence=Presence(**presence) if presence is not None else None)


@strawberry.type
class InventoryQueries:
    @strawberry.field(permission_classes=[IsViewer],
                      description='The discovery inventory by key; by source, enrolment, presence')
    async def inventory(self, info: Info,
                        found_by: Annotated[str | None, strawberry.argument(name='source')] = None,
                        enrolled: bool | None = None, presence: str | None = None,
                        first: int = 1000) -> list[InventoryEntry]:
        # `found_by` in Python: strawberry's permission hook takes a `source` of its own.
        source = found_by
        if source is not None and source not in SOURCES:
            raise ValueError(f'source must be one of {", ".join(SOURCES)}')
        if presence is not None and presence not in PRESENCE:
            raise ValueError(f'presence must be one of {", ".join(PRESENCE)}')
        views = inventory_views(discovery_of(services_of(info)),
                                Source(source) if source else None, enrolled, presence)
        return [inventory_entry(v) for v in views[:bounded(first)]]

    @strawberry.field(permission_classes=[IsViewer],
                      description='One inventory entry by robot id or endpoint key, or null')
    async def inventory_entry(self, info: Info, key: str) -> InventoryEntry | None:
        discovery = discovery_of(services_of(info))
        entry = discovery.inventory.get(key)
        return inventory_entry(discovery.entry_view(entry)) if entry is not None else None
