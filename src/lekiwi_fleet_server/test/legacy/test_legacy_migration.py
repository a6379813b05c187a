"""The legacy -> agent migration installs the agent over real SSH, wave by wave, and rolls back.

Real OpenSSH (ssh_lab), the real flag engine on SQLite. The install command is a script this
test provides: it reads the robot's new token from standard input and writes it to a marker
file, standing in for "install the release bundle and enable the agent's service" (the agent
itself cannot be installed on this machine); the uninstall script removes the marker. A robot
"dials in" when the test's `connected` says so (its marker exists and the test lets it),
standing in for the agent's uplink connection that the gateway reports.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from dataclasses import replace
from pathlib import Path

import pytest
import sqlalchemy as sa
from ssh_lab import SshLab

from lekiwi_fleet_server.domain.flags import bucket
from lekiwi_fleet_server.flags.engine import FlagEngine
from lekiwi_fleet_server.legacy.agent_install import (
    AgentInstaller,
    InstallConfig,
    LegacyMigration,
    WaveGate,
)
from lekiwi_fleet_server.legacy.poller import SshCredentials
from lekiwi_fleet_server.store.flags import FlagStore

FLAG = 'agent_uplink'


def test_the_wave_gate_counts_failed_installs_and_agents_that_never_dial_in() -> None:
    gate = WaveGate(('a', 'b', 'c', 'd'), started_at=0.0)
    gate.install_done('a', None, 1.0)
    gate.install_done('b', None, 1.0)
    gate.install_done('c', 'connection refused', 1.0)
    assert gate.verdict(2.0, dial_in_timeout_s=10, max_failure_rate=0.25) == 'running'
    gate.install_done('d', None, 1.0)
    gate.dialled_in('a')
    gate.dialled_in('d')
    assert gate.verdict(5.0, 10, 0.25) == 'running'  # b may still dial in
    assert gate.verdict(12.0, 10, 0.5) == 'held'  # b never did: 2 of 4 failed, 50 % allowed
    assert gate.failed['b'].startswith('its agent did not dial in')
    assert gate.verdict(12.0, 10, 0.25) == 'failed'
    with pytest.raises(ValueError):
        InstallConfig(install_command=' ')


def test_each_step_installs_its_new_robots_over_ssh_and_a_failed_wave_rolls_back(
        ssh_lab: SshLab, tmp_path: Path, sqlite_engine: sa.Engine) -> None:
    marks = tmp_path / 'marks'
    marks.mkdir(mode=0o777)
    install = tmp_path / 'install.sh'
    install.write_text(f'#!/bin/sh\nset -e\nread token\n'
                       f'printf "%s %s" "$token" "$2" > {marks}/installed-"$1"\n')
    uninstall = tmp_path / 'uninstall.sh'
    uninstall.write_text(f'#!/bin/sh\nrm -f {marks}/installed-"$1"\n'
                         f'touch {marks}/uninstalled-"$1"\n')
    for script in (install, uninstall):
        script.chmod(0o755)
    # Order the lab's robots by their bucket of the flag and put the steps between them: the
    # first step reaches one robot, the second one more and a host that refuses connections
    # (named so that its bucket falls in the second step), the last all.
    real = sorted(ssh_lab.hosts, key=lambda h: bucket(FLAG, h.robot_id))
    cuts = [bucket(FLAG, h.robot_id) for h in real]
    steps = [(cuts[0] + cuts[1]) / 2, (cuts[1] + cuts[2]) / 2, 100.0]
    refused_id = next(f'legacy-refuse-{i}' for i in range(10_000)
                      if steps[0] < bucket(FLAG, f'legacy-refuse-{i}') < steps[1])
    refusing = replace(ssh_lab.refusing, robot_id=refused_id)
    hosts = [real[0], real[1], refusing, real[2]]
    now = [1000.0]
    flags = FlagEngine(FlagStore(sqlite_engine), None, None, now=lambda: now[0])
    tokens: dict[str, str] = {}
    never_dials = {hosts[1].robot_id}  # its install works, its agent never connects

    def new_token(robot_id: str) -> str:
        tokens[robot_id] = f'lkw_test_{robot_id}_{len(tokens)}'
        return tokens[robot_id]

    async def connected(robot_ids: Collection[str]) -> set[str]:
        return {r for r in robot_ids
                if (marks / f'installed-{r}').exists() and r not in never_dials}

    config = InstallConfig(install_command=f'{install} {{robot_id}} {{server_url}}',
                           uninstall_command=f'{uninstall} {{robot_id}}',
                           server_url='ws://fleet.example:9090/', timeout_s=20,
                           dial_in_timeout_s=30, max_failure_rate=0.5)
    migration = LegacyMigration(
        AgentInstaller(SshCredentials(ssh_lab.key_file, ssh_lab.known_hosts), config),
        flags, FLAG, hosts=lambda: hosts, connected=connected, new_token=new_token,
        now=lambda: now[0])

    async def go() -> None:
        await migration.tick()  # no flag yet: nothing happens
        assert migration.wave is None and not list(marks.iterdir())
        await flags.create({'name': FLAG, 'default': False, 'steps': steps,
                            'rules': [{'value': True, 'staged': True}]}, step=0, by='olga')
        # Step 0: the first robot only; its agent dials in: the wave holds.
        await migration.tick()
        first = hosts[0].robot_id
        assert (marks / f'installed-{first}').read_text() == \
            f'{tokens[first]} ws://fleet.example:9090/'
        assert migration.wave is None and migration.waves[-1][1] == 'held'
        assert len(list(marks.iterdir())) == 1
        # Step 1: the next two; one install is refused (1 of 2: not over 50 %, it waits), one
        # agent never dials in: 2 of 2 failed: uninstalled, the flag steps back (migration).
        await flags.step(FLAG, 'advance', by='olga')
        await migration.tick()
        gate = migration.wave
        assert gate is not None and set(gate.robots) == {real[1].robot_id, refused_id}
        await migration.tick()
        assert migration.wave is gate and (marks / f'installed-{real[1].robot_id}').exists()
        now[0] += 31.0
        await migration.tick()
        wave, verdict = migration.waves[-1]
        assert verdict == 'failed', wave.failed
        reasons = wave.failed
        assert reasons[refused_id] == 'install failed: connection refused', reasons
        assert reasons[hosts[1].robot_id].startswith('its agent did not dial in')
        assert not (marks / f'installed-{hosts[1].robot_id}').exists()
        assert (marks / f'uninstalled-{hosts[1].robot_id}').exists()
        assert (marks / f'installed-{first}').exists()  # the held wave's robot keeps its agent
        state = flags.get(FLAG)
        assert state.flag.step == 0 and state.updated_by == 'migration'
        events = [(r.event.TYPE, r.actor) for r in flags.store.events(FLAG)]
        assert events[-1] == ('FlagSteppedBack', 'migration')
        # Advanced again, the rolled-back robots are tried again (now one dials in).
        never_dials.clear()
        await flags.step(FLAG, 'advance', by='olga')
        await migration.tick()
        assert (marks / f'installed-{real[1].robot_id}').exists()
        assert tokens[real[1].robot_id].endswith('_3')  # a fresh token for the new install

    asyncio.run(go())
