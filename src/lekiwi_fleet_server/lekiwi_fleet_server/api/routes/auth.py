"""Password login and logout for the dashboard: session cookies with a CSRF token.

The session id goes into an HttpOnly, SameSite=Strict cookie; the CSRF token into a cookie the
page can read (`lekiwi_csrf`) and must echo in `X-CSRF-Token` on every state-changing request.
The server checks the echo against the hash it stored, so a forged cookie opens nothing.
"""

from __future__ import annotations

import math

from fastapi import APIRouter, HTTPException, Request, Response, status
from pydantic import BaseModel, Field

from lekiwi_fleet_server.api.accounts import LoginFailed, LoginThrottled
from lekiwi_fleet_server.api.deps import SESSION_COOKIE, Accounts, CurrentOperator
from lekiwi_fleet_server.api.errors import error_responses

# Every error status the routes below can answer, each with the one error body.
router = APIRouter(prefix='/api/v1/auth', tags=['auth'],
                   responses=error_responses(400, 401, 403, 413, 422, 429, 503))

CSRF_COOKIE = 'lekiwi_csrf'


class LoginRequest(BaseModel):
    name: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


class Me(BaseModel):
    name: str
    role: str


class LoginOut(Me):
    expires_at: float
    csrf_token: str


def _secure(request: Request) -> bool:
    return request.url.scheme == 'https'


@router.post('/login', response_model=LoginOut)  # 401: wrong name or password; 429: throttled
def login(body: LoginRequest, request: Request, response: Response,
          accounts: Accounts) -> LoginOut:
    """Log in with a password; sets the session cookie and the CSRF cookie."""
    address = request.client.host if request.client else 'unknown'
    try:
        result = accounts.login(body.name, body.password, address)
    except LoginThrottled as exc:
        raise HTTPException(status.HTTP_429_TOO_MANY_REQUESTS, str(exc),
                            headers={'Retry-After': str(math.ceil(exc.retry_after_s))}) from None
    except LoginFailed as exc:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, str(exc)) from None
    max_age = max(1, int(result.expires_at - accounts.now()))
    response.set_cookie(SESSION_COOKIE, result.session_token, max_age=max_age, path='/',
                        httponly=True, samesite='strict', secure=_secure(request))
    response.set_cookie(CSRF_COOKIE, result.csrf_token, max_age=max_age, path='/',
                        httponly=False, samesite='strict', secure=_secure(request))
    return LoginOut(name=result.account.name, role=result.account.role,
                    expires_at=result.expires_at, csrf_token=result.csrf_token)


@router.post('/logout', status_code=status.HTTP_204_NO_CONTENT)
def logout(request: Request, response: Response, accounts: Accounts,
           _operator: CurrentOperator) -> None:
    """End the login session (needs its CSRF token) and clear its cookies."""
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        accounts.logout(cookie)
    response.delete_cookie(SESSION_COOKIE, path='/')
    response.delete_cookie(CSRF_COOKIE, path='/')


@router.get('/me', response_model=Me)
def me(operator: CurrentOperator) -> Me:
    """Return who is logged in (session cookie or bearer token) and with which role."""
    return Me(name=operator.name, role=operator.role)
