"""launch/robot.launch.py and config/agent.yaml: what a robot runs with `ros2 launch`."""

from __future__ import annotations

import importlib.util
import inspect
import sys
import time
from pathlib import Path

import pytest
import yaml
from system_harness import ros_env, wait_until

ROOT = Path(__file__).resolve().parents[1]
LAUNCH_FILE = ROOT / 'launch' / 'robot.launch.py'
PARAMS_FILE = ROOT / 'config' / 'agent.yaml'
AGENT_NODES = ('heartbeat', 'telemetry', 'teleop_monitor', 'fleet_uplink')


def test_parameter_file_has_a_section_per_node_and_the_robot_identity_in_the_wildcard():
    params = yaml.safe_load(PARAMS_FILE.read_text())
    # `/**/<node>` sections apply in any namespace (a robot may run under its own).
    assert set(params) == {'/**', *(f'/**/{n}' for n in (*AGENT_NODES, 'webrtc_streamer'))}
    # Launch arguments arrive as a later wildcard file: a node section would win over them.
    for name in ('robot_id', 'server_url', 'token_file'):
        assert name in params['/**']['ros__parameters']
        for node in AGENT_NODES:
            assert name not in params[f'/**/{node}']['ros__parameters'], (node, name)


def test_the_agent_runs_on_the_parameter_file_with_launch_overrides(
        fleet_server, processes, ros_domain, tmp_path):
    token_file = tmp_path / 'robot-token'
    token_file.write_text(fleet_server.enrol('kiwi-launch'))
    params = yaml.safe_load(PARAMS_FILE.read_text())
    params['/**/heartbeat']['ros__parameters']['rate_hz'] = 10.0
    params_file = tmp_path / 'agent.yaml'
    params_file.write_text(yaml.safe_dump(params))
    # What robot.launch.py passes after params_file: robot_id, server_url and token_file.
    overrides = tmp_path / 'launch-overrides.yaml'
    overrides.write_text(yaml.safe_dump({'/**': {'ros__parameters': {
        'robot_id': 'kiwi-launch', 'server_url': fleet_server.gateway_url,
        'token_file': str(token_file), 'outbox_path': str(tmp_path / 'outbox.db')}}}))
    # Under a namespace, as robot.launch.py's `namespace` argument puts it.
    processes.start('agent', [sys.executable, '-m', 'lekiwi_agent_ros.agent', '--ros-args',
                              '-r', '__ns:=/kiwi_launch', '--params-file', str(params_file),
                              '--params-file', str(overrides)], ros_env(ros_domain))
    robot = wait_until(lambda: (r := fleet_server.robot('kiwi-launch')) and
                       r.get('heartbeat_sequence') and r, 30,
                       message=f'the launched agent online\n{processes.dump()}')
    assert robot['status'] == 'online'
    # The node section applied under the namespace: heartbeats at the file's rate_hz of 10.
    first = robot['heartbeat_sequence']
    time.sleep(1.5)
    assert fleet_server.robot('kiwi-launch')['heartbeat_sequence'] - first >= 8


launch_available = importlib.util.find_spec('launch') is not None and \
    importlib.util.find_spec('launch_ros') is not None


@pytest.mark.skipif(not launch_available,
                    reason='launch and launch_ros are not installable here (no registry has '
                           'them); this test runs on a ROS 2 Jazzy or Kilted install')
def test_ros2_launch_starts_the_agent_and_the_robot_appears(fleet_server, tmp_path,
                                                           ros_domain, monkeypatch):
    import asyncio

    from launch import LaunchDescription, LaunchService
    from launch.actions import IncludeLaunchDescription
    from launch.launch_description_sources import PythonLaunchDescriptionSource

    for key, value in ros_env(ros_domain).items():
        monkeypatch.setenv(key, value)
    token_file = tmp_path / 'robot-token'
    token_file.write_text(fleet_server.enrol('kiwi-ros2-launch'))
    description = LaunchDescription([IncludeLaunchDescription(
        PythonLaunchDescriptionSource(str(LAUNCH_FILE)),
        launch_arguments={'robot_id': 'kiwi-ros2-launch', 'server_url': fleet_server.gateway_url,
                          'token_file': str(token_file), 'params_file': str(PARAMS_FILE),
                          'webrtc': 'false'}.items())])
    # LaunchService's loop is the current event loop of this thread (launch 3.x asks
    # asyncio.get_event_loop() whether shutdown() is called from inside it), and shutdown() is
    # called and awaited inside that loop: from outside, launch 3.7's shutdown() hangs.
    children_before = _child_pids()
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    service = LaunchService(argv=[])
    service.include_launch_description(description)

    async def robot_online() -> dict:
        while True:
            robot = fleet_server.robot('kiwi-ros2-launch')
            if robot and robot.get('heartbeat_sequence'):
                return robot
            await asyncio.sleep(0.2)

    async def scenario() -> dict:
        run = asyncio.ensure_future(service.run_async())
        try:
            return await asyncio.wait_for(robot_online(), 60)
        finally:
            stopping = service.shutdown()
            if inspect.isawaitable(stopping):
                await stopping
            try:
                await asyncio.wait_for(run, 30)
            except (asyncio.TimeoutError, asyncio.CancelledError):
                run.cancel()

    try:
        robot = loop.run_until_complete(scenario())
        assert robot['status'] == 'online'
    finally:
        loop.close()
        asyncio.set_event_loop(None)
        _kill_children_started_since(children_before)  # nothing left behind, even on failure


def _child_pids() -> set[int]:
    import psutil

    return {child.pid for child in psutil.Process().children(recursive=True)}


def _kill_children_started_since(before: set[int]) -> None:
    """Kill every descendant of this process that the test started (launch's own included)."""
    import psutil

    left = [c for c in psutil.Process().children(recursive=True) if c.pid not in before]
    for child in left:
        child.kill()
    psutil.wait_procs(left, timeout=10)
