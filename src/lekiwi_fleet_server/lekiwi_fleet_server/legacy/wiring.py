"""Build the legacy source from the settings (None when the adapter is not configured)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from lekiwi_fleet_server.legacy.poller import LegacyPoller, SshCredentials
from lekiwi_fleet_server.legacy.source import GatewayIngest, LegacySource
from lekiwi_fleet_server.legacy.status import StatusCommands
from lekiwi_fleet_server.settings import Settings
from lekiwi_fleet_server.store.interface import FleetStore

MIGRATION_TICK_S = 2.0


def status_commands(settings: Settings) -> StatusCommands:
    """Return the status commands the settings configure."""
    services = tuple(s.strip() for s in settings.legacy_services.split(',') if s.strip())
    return StatusCommands(services, settings.legacy_battery_command,
                          settings.legacy_version_command)


def legacy_source(settings: Settings, gateway: object, router: Any, store: FleetStore,
                  now: Callable[[], float]) -> LegacySource | None:
    """Return the legacy source, or None without an SSH key setting.

    `router` says which robots' agents are connected, on any gateway (broker/routing.py).
    """
    if settings.legacy_ssh_key_file is None:
        return None
    poller = LegacyPoller(
        SshCredentials(settings.legacy_ssh_key_file, settings.legacy_known_hosts_file),
        status_commands(settings), concurrency=settings.legacy_poll_concurrency,
        timeout_s=settings.legacy_poll_timeout_s)
    return LegacySource(poller, GatewayIngest(gateway, router), store,
                        settings.resolved_legacy_hosts_file,
                        interval_s=settings.legacy_poll_interval_s, now=now)


def start_migration(settings: Settings, gateway: Any, router: Any, store: FleetStore,
                    flags: Any, now: Callable[[], float]) -> asyncio.Task[None] | None:
    """Start the legacy -> agent migration when an install command and a key are set.

    An installed agent may dial in to any gateway: `router` says which have (its `connected`).
    """
    if not settings.legacy_install_command.strip() or settings.legacy_ssh_key_file is None \
            or flags is None or not gateway.started:  # the API role holds no robots
        return None
    from lekiwi_fleet_server.domain.tokens import generate_token, hash_token
    from lekiwi_fleet_server.legacy.agent_install import (
        AgentInstaller,
        InstallConfig,
        LegacyMigration,
    )
    from lekiwi_fleet_server.legacy.hosts_file import load_hosts

    server_url = settings.legacy_agent_server_url or \
        f'ws://{settings.gateway_host}:{gateway.port}/'
    config = InstallConfig(
        install_command=settings.legacy_install_command,
        uninstall_command=settings.legacy_uninstall_command, server_url=server_url,
        timeout_s=settings.legacy_install_timeout_s,
        dial_in_timeout_s=settings.legacy_dial_in_timeout_s,
        max_failure_rate=settings.legacy_install_max_failure_rate,
        concurrency=min(settings.legacy_poll_concurrency, 64))
    installer = AgentInstaller(
        SshCredentials(settings.legacy_ssh_key_file, settings.legacy_known_hosts_file), config)
    hosts_file = settings.resolved_legacy_hosts_file

    def new_token(robot_id: str) -> str:
        token = generate_token()
        store.rotate_robot_token(robot_id, hash_token(token), by='migration', now=now())
        return token

    def hosts() -> list[Any]:
        return load_hosts(hosts_file)  # none while the file does not exist

    migration = LegacyMigration(installer, flags, settings.legacy_migration_flag, hosts=hosts,
                                connected=router.connected, new_token=new_token, now=now)
    return asyncio.create_task(migration.run(MIGRATION_TICK_S), name='legacy-migration')
