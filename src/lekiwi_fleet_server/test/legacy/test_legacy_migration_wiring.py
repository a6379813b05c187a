"""The migration's wiring: built only when configured, it rotates real tokens in the store."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Collection
from pathlib import Path
from typing import Any

import asyncssh

from lekiwi_fleet_server.domain import flag_events as fe
from lekiwi_fleet_server.domain.flags import Flag, Rule
from lekiwi_fleet_server.domain.tokens import hash_token
from lekiwi_fleet_server.legacy.hosts_file import save_hosts
from lekiwi_fleet_server.legacy.inventory import LegacyHost
from lekiwi_fleet_server.legacy.wiring import start_migration
from lekiwi_fleet_server.settings import Settings
from lekiwi_fleet_server.store.sql_store import SqlFleetStore


class Gateway:
    """What the migration asks of the robot gateway, and of the router (nothing dials in)."""

    started = True
    port = 9090

    async def connected(self, robot_ids: Collection[str]) -> set[str]:
        return set()


class Flags:
    def __init__(self) -> None:
        self.state = fe.FlagState(Flag('agent_uplink', rules=(Rule(True, staged=True),),
                                       step=3), version=1)
        self.steps: list[str] = []

    def get(self, name: str) -> Any:
        if name != 'agent_uplink':
            raise KeyError(name)
        return self.state

    async def step(self, name: str, direction: str, *, by: str) -> Any:
        self.steps.append(f'{direction} by {by}')


def test_the_migration_starts_only_when_configured_and_rotates_real_tokens(
        store: SqlFleetStore, tmp_path: Path) -> None:
    key = tmp_path / 'key'
    key.write_bytes(asyncssh.generate_private_key('ssh-ed25519').export_private_key())
    hosts_file = tmp_path / 'legacy-hosts.json'
    # Port 1 on loopback: nobody listens, so the install fails at once (refused).
    save_hosts(hosts_file, [LegacyHost('legacy-1', '127.0.0.1', 'root', 1, ('legacy',))])
    store.enrol_robot('legacy-1', hash_token('lkw_old'), ['legacy'], now=time.time())
    flags = Flags()

    def settings(**changes: Any) -> Settings:
        return Settings(data_dir=tmp_path, legacy_hosts_file=hosts_file,
                        legacy_install_max_failure_rate=0.0, **changes)

    async def go() -> None:
        gw = Gateway()  # the gateway and the router
        assert start_migration(settings(), gw, gw, store, flags, time.time) is None
        assert start_migration(settings(legacy_install_command='install'), gw, gw, store,
                               flags, time.time) is None  # no SSH key
        task = start_migration(settings(legacy_install_command='install {robot_id}',
                                        legacy_uninstall_command='uninstall',
                                        legacy_ssh_key_file=key), gw, gw, store, flags,
                               time.time)
        assert task is not None
        try:
            for _ in range(100):
                if flags.steps:
                    break
                await asyncio.sleep(0.1)
        finally:
            task.cancel()
        assert flags.steps == ['back by migration']

    asyncio.run(go())
    # The install got a fresh token (RobotTokenRotated, by migration) before it ran.
    page = store.robot_timeline('legacy-1', 0, 100)
    rotated = [e for e in page.events if e.type == 'RobotTokenRotated']
    assert rotated and rotated[-1].metadata.get('actor') == 'migration', page.events
