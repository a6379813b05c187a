"""FastAPI dependencies as `Annotated` aliases: services, the operator and admin checks."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.requests import HTTPConnection

from lekiwi_fleet_server.api.services import FleetServices
from lekiwi_fleet_server.domain.tokens import hash_token
from lekiwi_fleet_server.store.interface import Operator, StoreUnavailable

_bearer = HTTPBearer(auto_error=False, description='Operator token (lkw_...)')


def get_services(connection: HTTPConnection) -> FleetServices:
    """Return the services the lifespan built."""
    return connection.app.state.services  # type: ignore[no-any-return]


Services = Annotated[FleetServices, Depends(get_services)]


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, detail,
                         headers={'WWW-Authenticate': 'Bearer'})


def operator_for_token(services: FleetServices, token: str) -> Operator | None:
    """Return the live operator holding this token, or None."""
    operator = services.store.operator_by_token(hash_token(token))
    return operator if operator is not None and not operator.revoked else None


def current_operator(services: Services,
                     credentials: Annotated[HTTPAuthorizationCredentials | None,
                                            Depends(_bearer)]) -> Operator:
    """Authenticate the request's bearer token (runs in the thread pool: it queries)."""
    if credentials is None:
        raise _unauthorized('bearer token required')
    try:
        operator = operator_for_token(services, credentials.credentials)
    except StoreUnavailable as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(exc)) from None
    if operator is None:
        raise _unauthorized('unknown or revoked token')
    return operator


CurrentOperator = Annotated[Operator, Depends(current_operator)]


def require_admin(operator: CurrentOperator) -> Operator:
    """Let only admins through."""
    if operator.role != 'admin':
        raise HTTPException(status.HTTP_403_FORBIDDEN, 'admin role required')
    return operator


AdminOperator = Annotated[Operator, Depends(require_admin)]


def require_operator_role(operator: CurrentOperator) -> Operator:
    """Let operators and admins through (releases, deployments)."""
    if operator.role not in ('operator', 'admin'):
        raise HTTPException(status.HTTP_403_FORBIDDEN, 'operator role required')
    return operator


OperatorRole = Annotated[Operator, Depends(require_operator_role)]
