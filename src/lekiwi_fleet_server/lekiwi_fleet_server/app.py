"""The FastAPI application: `create_app(settings)`; the lifespan builds everything it runs."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

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
from lekiwi_fleet_server.fleet_collector import FleetStateCollector
from lekiwi_fleet_server.gateway.bus import InProcessBus
from lekiwi_fleet_server.gateway.commit_worker import Committer
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
    from lekiwi_fleet_server.store.factory import open_store as open_sql_store

    return open_sql_store(settings)


def uses_writer_process(settings: Settings) -> bool:
    """Tell whether the settings put the store's writer in a process of its own."""
    # An in-memory SQLite database exists in one process only.
    url = settings.resolved_database_url
    in_memory = url.startswith('sqlite') and url.rstrip('/') in ('sqlite:', 'sqlite:///:memory:')
    return settings.writer_process and not in_memory


def _open_split_store(settings: Settings) -> tuple[FleetStore, list[Committer]]:
    """Start the writer processes, then open the reads' store beside them."""
    from lekiwi_fleet_server.gateway.writer_process import ProcessCommitter, WriterPool
    from lekiwi_fleet_server.store.factory import open_store as open_sql_store
    from lekiwi_fleet_server.store.split_store import SplitStore

    writers = WriterPool(settings)
    writers.start()  # migrates and loads the robots' states
    try:
        reader = open_sql_store(settings, preload=False)
    except BaseException:
        writers.close()
        raise
    committers: list[Committer] = [ProcessCommitter(p) for p in writers.processes]
    return SplitStore(reader, writers.call_sync, on_close=writers.close), committers


def _track_writer_queues(metrics: FleetMetrics, committers: list[Committer]) -> None:
    """Export each writer process's unanswered requests (its queue depth)."""
    for committer in committers:
        process = getattr(committer, 'process', None)  # a ProcessCommitter's writer
        if process is not None:
            metrics.track_writer_pending(process.shard_index, _reader_of(process))


def _reader_of(process: Any) -> Callable[[], float]:
    return lambda: float(process.pending)


def create_app(settings: Settings, *, store_factory: StoreFactory | None = None,
               on_ready: OnReady | None = None, now: Callable[[], float] = time.time
               ) -> FastAPI:
    """Build the API app; its lifespan starts the store, the robot gateway and the bus.

    With `store_factory` the store it makes is used in this process (the writer is a thread);
    without, the settings' database is opened, and with `settings.writer_process` the store's
    writer runs in a process of its own (see gateway/writer_process.py).
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        committers: list[Committer] | None = None
        if store_factory is None and uses_writer_process(settings):
            store, committers = await run_in_threadpool(_open_split_store, settings)
        else:
            store = await run_in_threadpool(store_factory or open_store, settings)
        metrics = FleetMetrics()
        metrics.add_collector(FleetStateCollector(settings, store, now))
        _track_writer_queues(metrics, committers or [])
        bus = InProcessBus(settings.bus_queue_updates)
        gateway = RobotGateway(settings, store, bus, metrics, committers=committers, now=now)
        try:
            if settings.bootstrap_admin_token:
                created = await run_in_threadpool(
                    lambda: ensure_bootstrap_admin(store, settings.bootstrap_admin_token or '',
                                                   now=now()))
                log.info('bootstrap admin %s', 'created' if created else 'present')
            await gateway.start()
            services = FleetServices(settings, store, gateway, bus, metrics, now)
            app.state.services = services
            if on_ready is not None:
                on_ready(services)
            yield
        finally:
            bus.close()
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
