"""Issue 2's slice through every layer: interfaces, heartbeat node, uplink, server, REST API."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from system_harness import ros_env, start_agent, wait_until

HERE = Path(__file__).resolve().parent


def test_generated_interfaces_import_in_the_project_environment():
    code = ('from lekiwi_fleet_msgs.msg import RobotHeartbeat, TeleopStatus; '
            'from lekiwi_fleet_msgs.action import Deploy; '
            'print(RobotHeartbeat.STATE_TELEOP, Deploy.Goal().health_timeout_s)')
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ['3', '0.0']


def test_heartbeat_node_reaches_a_separate_subscriber_process(processes, ros_domain):
    env = ros_env(ros_domain)
    probe = processes.start('probe', [sys.executable, str(HERE / 'ros_probe.py'),
                                      'fleet/heartbeat', 'lekiwi_fleet_msgs/msg/RobotHeartbeat',
                                      '--transient-local'], env)
    wait_until(lambda: probe.find_line('probe ready'), 30, message='the probe')
    processes.start('heartbeat', [sys.executable, '-m', 'lekiwi_agent_ros.telemetry.heartbeat',
                                  '--ros-args', '-p', 'robot_id:=kiwi-hb', '-p', 'rate_hz:=5.0'],
                    env)

    def heartbeats() -> list[dict]:
        return [json.loads(line) for line in probe.output().splitlines()
                if line.startswith('{')]

    received = wait_until(lambda: len(heartbeats()) >= 3 and heartbeats(), 30,
                          message='three heartbeats in the probe process')
    assert {h['robot_id'] for h in received} == {'kiwi-hb'}
    sequences = [h['sequence'] for h in received]
    assert sequences == sorted(sequences) and len(set(sequences)) == len(sequences)
    assert len({h['boot_id'] for h in received}) == 1 and received[0]['boot_id']
    assert received[-1]['resources']['memory_total_bytes'] > 0


def test_robot_is_listed_with_its_latest_heartbeat_sequence(fleet_server, processes,
                                                           ros_domain, tmp_path):
    token_file = tmp_path / 'robot-token'
    token_file.write_text(fleet_server.enrol('kiwi-slice', tags=['system-test']) + '\n')
    assert fleet_server.robot('kiwi-slice')['status'] == 'never_seen'

    start_agent(processes, ros_domain, robot_id='kiwi-slice',
                server_url=fleet_server.gateway_url, token_file=token_file,
                outbox_path=tmp_path / 'outbox.db', extra=['-p', 'rate_hz:=4.0'])

    def listed_with(minimum: int):
        robot = fleet_server.robot('kiwi-slice')
        seq = robot and robot.get('heartbeat_sequence')
        return robot if seq and seq >= minimum else None

    first = wait_until(lambda: listed_with(1), 30,
                       message=f'the robot to be listed\n{processes.dump()}')
    assert first['status'] == 'online' and first['connected']
    # The REST API follows the live heartbeat stream: a later read shows a newer sequence.
    later = wait_until(lambda: listed_with(first['heartbeat_sequence'] + 2), 10,
                       message='newer heartbeats')
    assert later['boot_id'] == first['boot_id']
    assert later['last_heartbeat_at'] > first['last_heartbeat_at']
    assert abs(later['last_heartbeat_at'] - time.time()) < 5
    assert later['resources']['memory_total_bytes'] > 0
