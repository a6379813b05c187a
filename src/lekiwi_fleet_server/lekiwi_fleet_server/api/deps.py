"""FastAPI dependencies as `Annotated` aliases: services, who is asking, the role checks.

An operator is authenticated by a bearer token (scripts, API clients) or by the browser
session cookie a password login set; with the cookie, a state-changing request must also
carry the session's CSRF token in `X-CSRF-Token` (a bearer token is never sent by a browser on
its own, so it needs none). `principal` is the one check REST, GraphQL and the stream share.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Path, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.requests import HTTPConnection

from lekiwi_fleet_server.api.accounts import AccountService
from lekiwi_fleet_server.api.admin import ROBOT_ID
from lekiwi_fleet_server.api.services import FleetServices
from lekiwi_fleet_server.domain.roles import Role, role_allows
from lekiwi_fleet_server.domain.tokens import hash_token
from lekiwi_fleet_server.store.interface import Operator

SESSION_COOKIE = 'lekiwi_session'
CSRF_HEADER = 'X-CSRF-Token'
SAFE_METHODS = frozenset({'GET', 'HEAD', 'OPTIONS'})

_bearer = HTTPBearer(auto_error=False, description='Operator token (lkw_...)')


def get_services(connection: HTTPConnection) -> FleetServices:
    """Return the services the lifespan built."""
    return connection.app.state.services  # type: ignore[no-any-return]


Services = Annotated[FleetServices, Depends(get_services)]


def get_accounts(connection: HTTPConnection) -> AccountService:
    """Return the account service the lifespan built."""
    return connection.app.state.accounts  # type: ignore[no-any-return]


Accounts = Annotated[AccountService, Depends(get_accounts)]


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, detail,
                         headers={'WWW-Authenticate': 'Bearer'})


def operator_for_token(services: FleetServices, token: str) -> Operator | None:
    """Return the live operator holding this token, or None."""
    operator = services.store.operator_by_token(hash_token(token))
    return operator if operator is not None and not operator.revoked else None


def principal(connection: HTTPConnection, services: FleetServices, accounts: AccountService,
              bearer: str | None, *, method: str = 'GET') -> Operator | None:
    """Return who a request or socket comes from (token, else session cookie), or None.

    Raises HTTPException 403 when a cookie-authenticated, state-changing request lacks its
    session's CSRF token. Blocks (it queries): call it from a worker thread.
    """
    if bearer is not None:
        return operator_for_token(services, bearer)
    cookie = connection.cookies.get(SESSION_COOKIE)
    if not cookie:
        return None
    session = accounts.session(cookie)
    if session is None:
        return None
    if method not in SAFE_METHODS and not accounts.csrf_matches(
            session, connection.headers.get(CSRF_HEADER)):
        raise HTTPException(status.HTTP_403_FORBIDDEN, 'CSRF token missing or wrong')
    account = session.account
    return Operator(name=account.name, role=account.role, token_sha256='',
                    created_at=account.created_at)


def current_operator(connection: HTTPConnection, services: Services, accounts: Accounts,
                     credentials: Annotated[HTTPAuthorizationCredentials | None,
                                            Depends(_bearer)]) -> Operator:
    """Authenticate the request (runs in the thread pool: it queries)."""
    method = getattr(connection, 'method', 'GET')
    # StoreUnavailable goes to the one error map (503).
    operator = principal(connection, services, accounts,
                         credentials.credentials if credentials else None, method=method)
    if operator is None:
        raise _unauthorized('bearer token or login session required' if credentials is None
                            else 'unknown or revoked token')
    return operator


CurrentOperator = Annotated[Operator, Depends(current_operator)]


def check_role(operator: Operator, required: Role) -> Operator:
    """Return the operator if its role holds `required`, else raise 403."""
    if not role_allows(operator.role, required):
        raise HTTPException(status.HTTP_403_FORBIDDEN, f'{required} role required')
    return operator


def require_operator_role(operator: CurrentOperator) -> Operator:
    """Let only operators and admins through."""
    return check_role(operator, 'operator')


OperatorRole = Annotated[Operator, Depends(require_operator_role)]


def require_admin(operator: CurrentOperator) -> Operator:
    """Let only admins through."""
    return check_role(operator, 'admin')


AdminOperator = Annotated[Operator, Depends(require_admin)]


# The path parameter of every /robots/{robot_id} route: the schema says what an id may be, so
# a request with anything else is answered 422 before it reaches the store.
RobotId = Annotated[str, Path(pattern=f'^{ROBOT_ID.pattern}$',
                              description='1-64 characters of [A-Za-z0-9._-]')]
