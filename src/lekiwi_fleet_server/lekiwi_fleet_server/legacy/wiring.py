"""Build the legacy source from the settings (None when the adapter is not configured)."""

from __future__ import annotations

from collections.abc import Callable

from lekiwi_fleet_server.legacy.poller import LegacyPoller, SshCredentials
from lekiwi_fleet_server.legacy.source import GatewayIngest, LegacySource
from lekiwi_fleet_server.legacy.status import StatusCommands
from lekiwi_fleet_server.settings import Settings
from lekiwi_fleet_server.store.interface import FleetStore


def status_commands(settings: Settings) -> StatusCommands:
    """Return the status commands the settings configure."""
    services = tuple(s.strip() for s in settings.legacy_services.split(',') if s.strip())
    return StatusCommands(services, settings.legacy_battery_command,
                          settings.legacy_version_command)


def legacy_source(settings: Settings, gateway: object, store: FleetStore,
                  now: Callable[[], float]) -> LegacySource | None:
    """Return the legacy source, or None without an SSH key setting."""
    if settings.legacy_ssh_key_file is None:
        return None
    poller = LegacyPoller(
        SshCredentials(settings.legacy_ssh_key_file, settings.legacy_known_hosts_file),
        status_commands(settings), concurrency=settings.legacy_poll_concurrency,
        timeout_s=settings.legacy_poll_timeout_s)
    return LegacySource(poller, GatewayIngest(gateway), store,
                        settings.resolved_legacy_hosts_file,
                        interval_s=settings.legacy_poll_interval_s, now=now)
