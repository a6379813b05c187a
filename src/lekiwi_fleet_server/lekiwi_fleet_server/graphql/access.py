"""What every GraphQL resolver shares: the role check (the one REST and the stream use), the
services from the context, and the bound on list sizes."""

from typing import Any

from strawberry.permission import BasePermission
from strawberry.types import Info

from lekiwi_fleet_server.api.services import FleetServices
from lekiwi_fleet_server.domain.roles import role_allows
from lekiwi_fleet_server.graphql.cost import MAX_SIZE


class IsViewer(BasePermission):
    """Viewer, operator or admin: who may read (the shared role check)."""

    message = 'unauthorized: a viewer, operator or admin token or login session is required'

    def has_permission(self, source: Any, info: Info, **kwargs: Any) -> bool:
        operator = info.context.get('operator')
        return operator is not None and role_allows(operator.role, 'viewer')


def services_of(info: Info) -> FleetServices:
    """Return the fleet services of a request's context."""
    services: FleetServices = info.context['services']
    return services


def bounded(value: int) -> int:
    """Return a first/limit argument, or raise ValueError when it is out of range."""
    if not 1 <= value <= MAX_SIZE:
        raise ValueError(f'first/limit must be between 1 and {MAX_SIZE}')
    return value
