"""The FastAPI application: `create_app(settings)`; the lifespan builds everything it runs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from lekiwi_fleet_server import __version__
from lekiwi_fleet_server.api.admin import ensure_bootstrap_admin
from lekiwi_fleet_server.api.routes import (
    commands,
    fleet,
    health,
    robots,
    sequences,
    stream,
    telemetry,
    timeline,
)
from lekiwi_fleet_server.api.services import FleetServices
from lekiwi_fleet_server.gateway.bus import InProcessBus
from lekiwi_fleet_server.gateway.server import RobotGateway
from lekiwi_fleet_server.metrics import FleetMetrics
from lekiwi_fleet_server.settings import Settings
from lekiwi_fleet_server.store.interface import FleetStore, InvalidQuery, StoreUnavailable

log = logging.getLogger(__name__)

StoreFactory = Callable[[Settings], FleetStore]
OnReady = Callable[[FleetServices], None]


def open_store(settings: Settings) -> FleetStore:
    """Open the SQL store of the settings' database, migrating it first when asked to."""
    # Imported here: the SQL stack loads only when a store is opened, not with the app module.
    from lekiwi_fleet_server.store.config import StoreConfig
    from lekiwi_fleet_server.store.sql_store import SqlFleetStore

    if not settings.database_url:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    return SqlFleetStore.open(settings.resolved_database_url, StoreConfig(),
                              migrate=settings.migrate_on_start)


def create_app(settings: Settings, *, store_factory: StoreFactory = open_store,
               on_ready: OnReady | None = None, now: Callable[[], float] = time.time
               ) -> FastAPI:
    """Build the API app; its lifespan starts the store, the robot gateway and the bus."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = await run_in_threadpool(store_factory, settings)
        metrics = FleetMetrics()
        bus = InProcessBus(settings.bus_flush_ms / 1000.0, settings.bus_queue_updates, now)
        gateway = RobotGateway(settings, store, bus, metrics, now=now)
        bus_task: asyncio.Task[None] | None = None
        try:
            if settings.bootstrap_admin_token:
                created = await run_in_threadpool(
                    lambda: ensure_bootstrap_admin(store, settings.bootstrap_admin_token or '',
                                                   now=now()))
                log.info('bootstrap admin %s', 'created' if created else 'present')
            await gateway.start()
            bus_task = asyncio.create_task(bus.run(), name='update-bus')
            services = FleetServices(settings, store, gateway, bus, metrics, now)
            app.state.services = services
            if on_ready is not None:
                on_ready(services)
            yield
        finally:
            bus.close()
            if bus_task is not None:
                bus_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await bus_task
            if gateway.started:
                await gateway.stop()
            await run_in_threadpool(store.close)

    app = FastAPI(title='LeKiwi Fleet', version=__version__, lifespan=lifespan,
                  description='Fleet server of LeKiwi robots: robots, timelines, telemetry, '
                              'commands. Operators authenticate with bearer tokens.')
    for module in (health, robots, sequences, timeline, telemetry, fleet, commands, stream):
        app.include_router(module.router)

    # The store's errors, mapped once for every route.
    @app.exception_handler(InvalidQuery)
    async def invalid_query(_request: Request, exc: InvalidQuery) -> JSONResponse:
        return JSONResponse({'detail': str(exc)}, status_code=422)

    @app.exception_handler(StoreUnavailable)
    async def store_unavailable(_request: Request, exc: StoreUnavailable) -> JSONResponse:
        return JSONResponse({'detail': f'store unavailable: {exc}'}, status_code=503)

    return app
