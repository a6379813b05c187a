"""The FastAPI application: `create_app(settings)`; the lifespan builds everything it runs."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from lekiwi_fleet_server import __version__
from lekiwi_fleet_server.api.accounts import AccountService
from lekiwi_fleet_server.api.admin import ensure_bootstrap_admin
from lekiwi_fleet_server.api.body_limit import BodyLimit
from lekiwi_fleet_server.api.dashboard import mount_dashboard
from lekiwi_fleet_server.api.errors import install_error_handlers
from lekiwi_fleet_server.api.routes import (
    accounts,
    admissions,
    auth,
    commands,
    deployments,
    flags,
    fleet,
    health,
    inventory,
    releases,
    robot_key,
    robot_poll,
    robots,
    sequences,
    stream,
    telemetry,
    timeline,
)
from lekiwi_fleet_server.api.services import FleetServices
from lekiwi_fleet_server.broker.presence import open_registry
from lekiwi_fleet_server.broker.routing import open_router
from lekiwi_fleet_server.deployments.engine import DeploymentEngine, GoalRouter
from lekiwi_fleet_server.discovery.service import DiscoveryService
from lekiwi_fleet_server.domain.login_throttle import LoginThrottle
from lekiwi_fleet_server.fleet_collector import FleetStateCollector
from lekiwi_fleet_server.gateway.bus import InProcessBus
from lekiwi_fleet_server.gateway.commit_worker import Committer
from lekiwi_fleet_server.gateway.server import RobotGateway
from lekiwi_fleet_server.graphql.router import mount_graphql
from lekiwi_fleet_server.metrics import FleetMetrics
from lekiwi_fleet_server.settings import Settings
from lekiwi_fleet_server.store.accounts import SqlAccountStore
from lekiwi_fleet_server.store.interface import FleetStore
from lekiwi_fleet_server.store.releases import ReleaseStore

if TYPE_CHECKING:
    from lekiwi_fleet_server.broker.nats_bus import NatsBus
    from lekiwi_fleet_server.broker.wiring import BrokerWiring
    from lekiwi_fleet_server.store.changes import ChangeWatcher

log = logging.getLogger(__name__)

StoreFactory = Callable[[Settings], FleetStore]
OnReady = Callable[[FleetServices], None]


def open_store(settings: Settings) -> FleetStore:
    """Open the SQL store of the settings' database, migrating it first when asked to."""
    # Imported here: the SQL stack loads only when a store is opened, not with the app module.
    from lekiwi_fleet_server.store.factory import open_store as open_sql_store

    return open_sql_store(settings)


def _open_release_store(settings: Settings) -> ReleaseStore | None:
    """Open the release store beside the fleet store (None on an in-memory database)."""
    from lekiwi_fleet_server.releases_cli import open_release_store

    if settings.resolved_database_url.rstrip('/') in ('sqlite:', 'sqlite:///:memory:'):
        return None  # a second engine would see another, empty in-memory database
    return open_release_store(settings)  # type: ignore[no-any-return]


def _deployment_engine(settings: Settings, store: FleetStore, releases: ReleaseStore | None,
                       router: GoalRouter, bus: InProcessBus, now: Callable[[], float],
                       metrics: FleetMetrics | None = None) -> DeploymentEngine | None:
    """Build the rollout engine beside the release store (none without one)."""
    if releases is None:
        return None
    import orjson

    from lekiwi_fleet_server.domain.rollout import Rollout
    from lekiwi_fleet_server.store.deployments import DeploymentStore
    from lekiwi_fleet_server.store.interface import RobotFilter

    def teleop_robots() -> set[str]:
        found = store.list_robots(RobotFilter(teleop_active=True), now=now())
        return {r.robot_id for r in found}

    def progress(rollout: Rollout) -> None:  # dashboards see every transition
        if bus.wants_updates():
            bus.publish(orjson.dumps({'type': 'deployment', 'at': now(),
                                      'deployment': rollout.progress()}).decode())

    def transition(rollout: Rollout, _before: str) -> None:
        if metrics is not None:
            metrics.deployment_transitions.labels(rollout.status).inc()

    url = settings.public_url or f'http://{settings.api_host}:{settings.api_port}'
    engine = DeploymentEngine(DeploymentStore(releases.engine), releases, router,
                              public_url=url, teleop_robots=teleop_robots, now=now,
                              tick_s=settings.deployment_tick_s, on_change=progress,
                              on_transition=transition)
    if metrics is not None:
        from lekiwi_fleet_server.deployments.collector import DeploymentCollector

        metrics.add_collector(DeploymentCollector(engine.store.count_by_status,
                                                  engine.active_rollouts))
    return engine


async def start_discovery(settings: Settings, store: FleetStore, gateway: RobotGateway,
                          now: Callable[[], float]) -> DiscoveryService:
    """Start the discovery service and its mDNS browser when the settings ask for it."""
    from lekiwi_fleet_server.discovery.sources import start_sources

    discovery = DiscoveryService(settings, store, gateway, now)
    await discovery.start()
    await start_sources(discovery, settings)
    return discovery


async def _hold_duties(settings: Settings, store: FleetStore, gateway: RobotGateway,
                       router: Any, discovery: DiscoveryService, flag_engine: Any,
                       now: Callable[[], float]) -> list[Any]:
    """Start the fleet-wide duties this role can run, each while its lease is held.

    (leadership.py: dialling the rosbridge robots; the legacy poller and the legacy -> agent
    migration; the flag guards and plans. The rollout engine is held beside its building.)
    """
    from lekiwi_fleet_server import leadership
    from lekiwi_fleet_server.discovery.sources import start_dialling
    from lekiwi_fleet_server.legacy.wiring import legacy_source, start_migration

    async def dial() -> list[asyncio.Task[None]]:
        return await start_dialling(discovery, settings, gateway)

    async def legacy() -> list[asyncio.Task[None]]:
        tasks = []
        source = legacy_source(settings, gateway, router, store, now)
        if source is not None:
            log.info('legacy poller started (hosts: %s)', settings.resolved_legacy_hosts_file)
            tasks.append(asyncio.create_task(source.run(), name='legacy-poller'))
        migration = start_migration(settings, gateway, router, store, flag_engine, now)
        if migration is not None:
            tasks.append(migration)
        return tasks

    wanted: list[tuple[str, Any]] = []
    if flag_engine is not None:
        wanted.append((leadership.FLAG_GUARDS, flag_engine.measuring_duty()))
    if gateway.started:  # the API role holds no robots: it neither dials nor polls them
        if settings.rosbridge_robots:
            wanted.append((leadership.DISCOVERY, leadership.TaskDuty(dial)))
        if settings.legacy_ssh_key_file is not None:
            wanted.append((leadership.LEGACY, leadership.TaskDuty(legacy)))
    # Together: with Redis away each first try waits for its timeout.
    return list(await asyncio.gather(*(leadership.hold(settings, duty, runner)
                                       for duty, runner in wanted)))


def create_app(settings: Settings, *, store_factory: StoreFactory | None = None,
               on_ready: OnReady | None = None, now: Callable[[], float] = time.time,
               role: str = 'all') -> FastAPI:
    """Build the API app; its lifespan starts the store, the robot gateway and the bus.

    With `store_factory` the store it makes is used in this process (the writer is a thread).
    Without, the settings' database is opened; with `settings.nats_url` the robots' messages
    go through NATS JetStream to the writer shards (broker/), which run in this process in
    role `all` and elsewhere (`serve --role writer`) in roles `gateway` and `api`; role `api`
    does not listen for robots. Without a broker one writer thread commits (the default).
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        committers: list[Committer] | None = None
        watcher: ChangeWatcher | None = None
        engine: DeploymentEngine | None = None
        duties: list[Any] = []  # leadership.LeaderLoop: the fleet-wide duties held here
        flag_engine: Any = None  # flags/engine.py (issue 20)
        broker: BrokerWiring | None = None
        bus: InProcessBus | NatsBus
        if store_factory is None and settings.nats_url:
            from lekiwi_fleet_server.broker.wiring import BrokerWiring, open_side_store

            broker = BrokerWiring(settings, role)
            await broker.start()
            committers, bus = broker.committers, broker.bus
            store = await run_in_threadpool(open_side_store, settings)
        else:
            store = await run_in_threadpool(store_factory or open_store, settings)
            bus = InProcessBus(settings.bus_queue_updates)
        metrics = FleetMetrics()
        metrics.add_collector(FleetStateCollector(settings, store, now))
        registry = open_registry(settings)  # presence and session ownership (broker/presence.py)
        gateway = RobotGateway(settings, store, bus, metrics, committers=committers, now=now,
                               registry=registry)
        if broker is not None:
            await broker.deliver_acks_to(gateway.deliver, metrics)
        router = open_router(settings, gateway, registry)
        account_store = SqlAccountStore.open(settings.resolved_database_url)
        app.state.accounts = AccountService(
            account_store, session_ttl_s=settings.session_ttl_s, now=now,
            throttle=LoginThrottle(now, free_failures=settings.login_free_failures,
                                   base_delay_s=settings.login_base_delay_s,
                                   max_delay_s=settings.login_max_delay_s))
        discovery = None
        try:
            if settings.bootstrap_admin_token:
                created = await run_in_threadpool(
                    lambda: ensure_bootstrap_admin(store, settings.bootstrap_admin_token or '',
                                                   now=now()))
                log.info('bootstrap admin %s', 'created' if created else 'present')
            if role != 'api':  # the API role serves no robots (issue 17)
                await gateway.start()
            await router.start()
            discovery = await start_discovery(settings, store, gateway, now)
            # Admin changes made by other processes (the CLI) reach the gateway and writers.
            if store_factory is None:
                from lekiwi_fleet_server.store.changes import watcher_for  # the SQL stack

                watcher = watcher_for(settings.resolved_database_url, gateway.store_changed)
                if watcher is not None:
                    await run_in_threadpool(watcher.start)
            release_store = await run_in_threadpool(_open_release_store, settings)
            # Goals, connectivity and results through the router: the robots of every gateway.
            engine = _deployment_engine(settings, store, release_store, router, bus, now,
                                        metrics)
            if engine is not None and role != 'api':  # it sends goals through the gateway
                # One engine drives rollouts across processes (leadership.py).
                from lekiwi_fleet_server import leadership

                duties.append(await leadership.hold(settings, leadership.DEPLOYMENTS, engine))
            from lekiwi_fleet_server.flags.wiring import build_flag_engine

            flag_engine = build_flag_engine(settings, store, release_store, gateway, bus, now,
                                            metrics)
            if flag_engine is not None:
                # Guards and plans wait for the flag-guards lease (_hold_duties; at once with
                # one process), so not even a first tick measures them in two processes.
                flag_engine.measuring = False
                await flag_engine.start()
            duties += await _hold_duties(settings, store, gateway, router, discovery,
                                         flag_engine, now)
            services = FleetServices(settings, store, gateway, bus, metrics, now, discovery,
                                     releases=release_store, deployments=engine, router=router,
                                     broker=broker, flags=flag_engine)
            app.state.services = services
            if on_ready is not None:
                on_ready(services)
            yield
        finally:
            for duty in reversed(duties):
                await duty.stop()
            if flag_engine is not None:
                await flag_engine.stop()
            if engine is not None:
                await engine.stop()
            if discovery is not None:
                await discovery.stop()
            if watcher is not None:
                await run_in_threadpool(watcher.stop)
            bus.close()
            await router.close()
            if gateway.started:
                await gateway.stop()
            await registry.close()
            await run_in_threadpool(store.close)
            account_store.close()
            if broker is not None:
                await broker.stop()

    app = FastAPI(title='LeKiwi Fleet', version=__version__, lifespan=lifespan,
                  description='Fleet server of LeKiwi robots: robots, timelines, telemetry, '
                              'commands. Operators authenticate with bearer tokens.')
    for module in (health, robots, sequences, timeline, telemetry, fleet, commands, stream,
                   inventory, releases, deployments):
        app.include_router(module.router)
    for module in (auth, accounts):  # password logins and accounts (issue 19)
        app.include_router(module.router)
    app.include_router(admissions.router)  # admission of robots without a token (issue 18)
    app.include_router(flags.router)  # feature flags and migration plans (issue 20)
    app.include_router(robot_poll.router)  # the uplink's HTTP long-polling transport (issue 20)
    app.include_router(robot_key.router)  # key proofs of robots' HTTP requests (issue 18)
    mount_graphql(app, settings)
    mount_dashboard(app, settings.dashboard_dir)

    # Every error answer, of every route, comes from the one map in api/errors.py.
    install_error_handlers(app)
    app.add_middleware(BodyLimit)
    return app
