"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Response, status
from starlette.concurrency import run_in_threadpool

from lekiwi_fleet_server.api.deps import Services
from lekiwi_fleet_server.api.errors import error_response, error_responses
from lekiwi_fleet_server.broker.presence import RegistryUnavailable
from lekiwi_fleet_server.broker.routing import NatsRouter, RoutingUnavailable
from lekiwi_fleet_server.store.interface import StoreError

router = APIRouter(tags=['health'])
_DEPENDENCY_TIMEOUT_S = 2.0


@router.get('/healthz')
def healthz() -> dict[str, str]:
    """Answer while the process serves requests (no auth, no store)."""
    return {'status': 'ok'}


@router.get('/readyz', responses=error_responses(503))
async def readyz(services: Services) -> Any:
    """Answer 200 when the store, the presence registry and the broker answer.

    Otherwise 503 `degraded`, naming each dependency that does not answer. Robots keep
    their outboxes meanwhile: nothing is acknowledged that was not committed.
    """
    failed: list[str] = []
    try:
        await run_in_threadpool(services.store.ping)
    except StoreError as exc:
        failed.append(f'store: {exc}')
    registry = services.gateway.ownership.registry
    router = services.router
    for name, ping in (('redis', registry.ping if registry.shared else None),
                       ('nats', router.ping if isinstance(router, NatsRouter) else None)):
        if ping is None:
            continue
        try:
            await asyncio.wait_for(ping(), _DEPENDENCY_TIMEOUT_S)
        except (RegistryUnavailable, RoutingUnavailable, asyncio.TimeoutError) as exc:
            failed.append(f'{name}: {exc or "no answer"}')
    # The broker (issue 17): down, gateways hold robots' messages unacked; degraded, not ready.
    if services.broker is not None and not services.broker.healthy():
        failed.append('broker: NATS unreachable')
    if failed:
        return error_response(status.HTTP_503_SERVICE_UNAVAILABLE, 'degraded',
                              'degraded: ' + '; '.join(failed))
    return {'status': 'ready'}


@router.get('/metrics', response_class=Response)
def metrics(services: Services) -> Response:
    """Return the Prometheus metrics."""
    return Response(services.metrics.render(), media_type=services.metrics.content_type)
