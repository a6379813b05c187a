"""Issue 20, flags: the real server on PostgreSQL sends a real agent its flags by `configure`.

The one-process agent (its teleop_monitor among its nodes) applies a variant flag to a
parameter of teleop_monitor, reports it (in the response, and as a `flags.applied` event on
its timeline); a change of the flag reaches it, and so does the flag again after the agent
restarts (a new boot: parameters back at their defaults until the server configures them).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from system_harness import FleetServerProcess, ProcessGroup, ros_env, start_agent, wait_until

HERE = Path(__file__).resolve().parent
ROBOT = 'kiwi-flags'


def read_parameter(domain: str, name: str) -> Any:
    done = subprocess.run([sys.executable, str(HERE / 'param_probe.py'), 'teleop_monitor', name],
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, **ros_env(domain)})
    line = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else '{}'
    return json.loads(line).get(name)


def delivered(server: FleetServerProcess, revision_not: str = '') -> dict[str, Any] | None:
    shown = server.request('GET', f'/api/v1/robots/{ROBOT}/flags')
    last = shown['delivered']
    if last and last['current'] and last['accepted'] and last['revision'] != revision_not:
        return shown  # type: ignore[no-any-return]
    return None


def test_the_agent_applies_its_flags_on_connect_on_change_and_after_a_restart(
        pg_url: str, processes: ProcessGroup, ros_domain: str, tmp_path: Path) -> None:
    server = FleetServerProcess(processes, database_url=pg_url, data_dir=tmp_path / 'server',
                                env={'LEKIWI_FLAG_TICK_S': '0.2'})
    server.start()
    token_file = tmp_path / 'token'
    token_file.write_text(server.enrol(ROBOT, tags=['lab']) + '\n')
    server.request('POST', '/api/v1/flags', {
        'name': 'teleop_status_period', 'kind': 'variant', 'default': '1.0',
        'variants': ['1.0', '2.5', '4.0'], 'rules': [{'value': '2.5', 'tags': ['lab']}],
        'parameters': ['teleop_monitor:status_period_s']})
    agent_args = dict(robot_id=ROBOT, server_url=server.gateway_url, token_file=token_file,
                      outbox_path=tmp_path / 'outbox.db')
    agent = start_agent(processes, ros_domain, **agent_args)  # type: ignore[arg-type]

    try:
        first = wait_until(lambda: delivered(server), 90,
                           message='the agent to apply its flags')
    except AssertionError:
        shown = server.request('GET', f'/api/v1/robots/{ROBOT}/flags')
        raise AssertionError(f'{shown}\n{processes.dump()[-6000:]}') from None
    assert first['flags'] == {'teleop_status_period': '2.5'}
    assert first['delivered']['applied'] == [{'node': 'teleop_monitor',
                                              'name': 'status_period_s', 'value': 2.5,
                                              'flag': 'teleop_status_period'}]
    assert read_parameter(ros_domain, 'status_period_s') == 2.5

    def applied_events() -> list[dict[str, Any]]:
        page = server.request('GET', f'/api/v1/robots/{ROBOT}/events?limit=500')
        return [e for e in page['events'] if 'flags.applied' in json.dumps(e)]

    assert wait_until(applied_events, 60, message='the flags.applied event on the timeline')

    server.request('PUT', '/api/v1/flags/teleop_status_period', {
        'kind': 'variant', 'default': '1.0', 'variants': ['1.0', '2.5', '4.0'],
        'rules': [{'value': '4.0', 'tags': ['lab']}],
        'parameters': ['teleop_monitor:status_period_s']})
    second = wait_until(lambda: delivered(server, first['revision']), 60,
                        message='the change to reach the agent')
    assert second['flags'] == {'teleop_status_period': '4.0'}
    assert read_parameter(ros_domain, 'status_period_s') == 4.0

    old_boot = second['delivered']['boot_id']
    assert old_boot
    agent.stop()
    start_agent(processes, ros_domain, **agent_args)  # type: ignore[arg-type]

    def configured_after_restart() -> bool:
        robot = server.robot(ROBOT) or {}
        shown = delivered(server)
        return bool(shown and robot.get('boot_id') not in (None, old_boot) and
                    shown['delivered']['boot_id'] == robot['boot_id'])

    wait_until(configured_after_restart, 90, message='the flags again after the restart')
    assert read_parameter(ros_domain, 'status_period_s') == 4.0
