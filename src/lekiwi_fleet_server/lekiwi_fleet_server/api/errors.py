"""The REST API's one exception-to-response map and its one error format (`ErrorOut`).

Every error answer, from a route, a dependency, request validation or routing itself, is an
`ErrorOut` with the status this module gives its exception; routes raise the store's and the
gateway's own exceptions and never build error responses themselves. `error_responses(...)`
declares the same format in OpenAPI for the statuses a route can return, so that what is
published is what is answered (the schemathesis run in test/api/test_api_fuzz.py checks it).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from lekiwi_fleet_server.api.admin import InvalidInput
from lekiwi_fleet_server.api.schemas import ErrorOut, FieldErrorOut
from lekiwi_fleet_server.broker.routing import RoutingUnavailable
from lekiwi_fleet_server.gateway.commands import CommandTimeout, InvalidCommand, RobotNotConnected
from lekiwi_fleet_server.store.interface import (
    ConcurrencyConflict,
    InvalidQuery,
    OperatorAlreadyExists,
    RobotAlreadyEnrolled,
    RobotRevoked,
    StoreUnavailable,
    UnknownRobot,
)

# Exception class -> (status, code). Looked up along the exception's MRO, so a subclass
# maps like its parent unless it is listed itself.
ERRORS: Mapping[type[Exception], tuple[int, str]] = {
    InvalidInput: (422, 'invalid_request'),
    InvalidQuery: (422, 'invalid_request'),
    InvalidCommand: (422, 'invalid_request'),
    UnknownRobot: (404, 'not_found'),
    RobotAlreadyEnrolled: (409, 'conflict'),
    RobotRevoked: (409, 'conflict'),
    OperatorAlreadyExists: (409, 'conflict'),
    # Another writer changed the stream first: the client may retry.
    ConcurrencyConflict: (409, 'conflict'),
    RobotNotConnected: (409, 'robot_not_connected'),
    StoreUnavailable: (503, 'store_unavailable'),
    CommandTimeout: (504, 'command_timeout'),
    RoutingUnavailable: (503, 'broker_unavailable'),
}

# The code of an HTTPException (raised by dependencies and by routing) by its status.
HTTP_CODES: Mapping[int, str] = {
    400: 'malformed_body', 401: 'unauthorized', 403: 'forbidden', 404: 'not_found',
    405: 'method_not_allowed', 409: 'conflict', 413: 'payload_too_large',
    416: 'range_not_satisfiable', 429: 'too_many_requests',
    422: 'invalid_request', 503: 'store_unavailable', 504: 'command_timeout',
}

DESCRIPTIONS: Mapping[int, str] = {
    400: 'The body is not JSON', 401: 'No, unknown or revoked bearer token',
    403: 'The operator is not an admin', 404: 'No such robot',
    409: 'Conflicts with the current state', 413: 'The body is too large',
    416: 'The requested byte range is not in the blob',
    429: 'Too many failed logins: retry after the Retry-After seconds',
    422: 'A parameter or the body is invalid',
    503: 'The store is unavailable', 504: 'The robot did not answer in time',
}

MAX_TEXT = 1000  # characters of a message kept in an answer: never echo a huge input back


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """Return the OpenAPI `responses` of these error statuses, all with the `ErrorOut` body."""
    return {s: {'model': ErrorOut, 'description': DESCRIPTIONS[s]} for s in statuses}


# Every route that authenticates can answer these (api/deps.py).
AUTHENTICATED = (401, 503)
ADMIN = (401, 403, 503)


def _text(value: object) -> str:
    # Lone surrogates (a JSON "\\ud800" escape decodes to one) cannot be encoded as UTF-8.
    text = str(value)[:MAX_TEXT]
    return text.encode('utf-8', 'replace').decode('utf-8')


def error_response(status: int, code: str, detail: object,
                   errors: Iterable[FieldErrorOut] = (),
                   headers: Mapping[str, str] | None = None) -> JSONResponse:
    """Return an `ErrorOut` answer."""
    body = ErrorOut(code=code, detail=_text(detail), errors=list(errors))
    return JSONResponse(body.model_dump(), status_code=status, headers=dict(headers or {}))


def _field_errors(errors: Sequence[Any]) -> list[FieldErrorOut]:
    return [FieldErrorOut(loc=[p if isinstance(p, int) else _text(p) for p in e.get('loc', ())],
                          msg=_text(e.get('msg', '')), type=_text(e.get('type', '')))
            for e in errors[:50]]


def install_error_handlers(app: FastAPI) -> None:
    """Answer every error of `app` through the one map above."""

    async def mapped(_request: Request, exc: Exception) -> JSONResponse:
        for cls in type(exc).__mro__:
            if cls in ERRORS:
                status, code = ERRORS[cls]
                return error_response(status, code, exc)
        # A bug: Starlette re-raises it after this answer, so the server logs its traceback.
        return error_response(500, 'server_error', 'internal error')

    async def http_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        code = HTTP_CODES.get(exc.status_code, 'server_error' if exc.status_code >= 500
                              else 'invalid_request')
        return error_response(exc.status_code, code, exc.detail, headers=exc.headers)

    async def invalid_request(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        errors = _field_errors(exc.errors())
        first = errors[0] if errors else None
        detail = (f"{'.'.join(map(str, first.loc))}: {first.msg}" if first is not None
                  else 'invalid request')
        return error_response(422, 'invalid_request', detail, errors)

    for cls in ERRORS:
        app.add_exception_handler(cls, mapped)
    app.add_exception_handler(Exception, mapped)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, invalid_request)
