"""The agent's nodes agree on one boot id, in one process or in processes of their own."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
from rcl_interfaces.srv import GetParameters
from rclpy.parameter import Parameter
from ros_harness import ros_harness, wait_for

from lekiwi_agent_ros import agent
from lekiwi_agent_ros.msg_types import RobotHeartbeat
from lekiwi_agent_ros.teleop.teleop_monitor import STATUS_QOS, TeleopMonitorNode

BOOT = 'b00751de1aunch01'


def test_separate_processes_given_the_launch_boot_id_share_it() -> None:
    """As `one_process:=false` starts them: each node a process, one `boot_id` parameter."""
    namespace = '/bootcheck'
    common = ['--ros-args', '-r', f'__ns:={namespace}', '-p', f'boot_id:={BOOT}']
    processes = [subprocess.Popen(
        [sys.executable, '-m', module, *common], stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, env=dict(os.environ))
        for module in ('lekiwi_agent_ros.telemetry.heartbeat',
                       'lekiwi_agent_ros.teleop.teleop_monitor')]
    try:
        with ros_harness() as harness:
            heartbeats = harness.collect(RobotHeartbeat, f'{namespace}/fleet/heartbeat',
                                         STATUS_QOS)
            assert wait_for(lambda: heartbeats, timeout=30.0)
            assert heartbeats[-1].boot_id == BOOT
            client = harness.helper.create_client(
                GetParameters, f'{namespace}/teleop_monitor/get_parameters')
            assert client.wait_for_service(timeout_sec=30.0)
            future = client.call_async(GetParameters.Request(names=['boot_id']))
            assert wait_for(future.done, timeout=10.0)
            assert future.result().values[0].string_value == BOOT
    finally:
        for process in processes:
            process.send_signal(signal.SIGINT)
        outputs = [process.communicate(timeout=30)[0] for process in processes]
    assert [p.returncode for p in processes] == [0, 0], outputs


def test_one_process_takes_the_boot_id_parameter_for_every_node(tmp_path) -> None:
    outbox = [Parameter('outbox_path', value=str(tmp_path / 'outbox.sqlite3')),
              Parameter('robot_id', value='kiwi-boot'), Parameter('token', value='t' * 24),
              Parameter('server_url', value='ws://127.0.0.1:9/')]
    with ros_harness() as harness:
        nodes = agent.agent_nodes(
            namespace=harness.namespace, context=harness.context,
            parameter_overrides=[*outbox, Parameter('boot_id', value=BOOT)])
        try:
            assert {node.boot_id for node in nodes} == {BOOT}
        finally:
            for node in nodes:
                node.destroy_node()
        drawn = agent.agent_nodes(namespace=harness.namespace, context=harness.context,
                                  parameter_overrides=outbox)
        try:
            ids = {node.boot_id for node in drawn}
            assert len(ids) == 1 and BOOT not in ids  # none given: one fresh id, shared
        finally:
            for node in drawn:
                node.destroy_node()


def test_a_boot_id_the_protocol_refuses_is_refused_at_start() -> None:
    with ros_harness() as harness, pytest.raises(ValueError, match='boot_id must be'):
        TeleopMonitorNode(namespace=harness.namespace, context=harness.context,
                          parameter_overrides=[Parameter('boot_id', value='bad id!')])
