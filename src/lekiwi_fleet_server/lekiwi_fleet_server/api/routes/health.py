"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Response, status

from lekiwi_fleet_server.api.deps import Services
from lekiwi_fleet_server.api.errors import error_responses
from lekiwi_fleet_server.store.interface import StoreError

router = APIRouter(tags=['health'])


@router.get('/healthz')
def healthz() -> dict[str, str]:
    """Answer while the process serves requests (no auth, no store)."""
    return {'status': 'ok'}


@router.get('/readyz', responses=error_responses(503))
def readyz(services: Services) -> dict[str, str]:
    """Answer 200 when the store answers, 503 otherwise."""
    try:
        services.store.ping()
    except StoreError as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, f'store: {exc}') from None
    # The broker (issue 17): down, gateways hold robots' messages unacked; degraded, not ready.
    if services.broker is not None and not services.broker.healthy():
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, 'degraded: NATS unreachable')
    return {'status': 'ready'}


@router.get('/metrics', response_class=Response)
def metrics(services: Services) -> Response:
    """Return the Prometheus metrics."""
    return Response(services.metrics.render(), media_type=services.metrics.content_type)
