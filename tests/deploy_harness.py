"""System-test plumbing for deployments: robots made of the real uplink and deploy executor.

Each robot runs `fleet_uplink` and `deploy_executor` as processes under its own ROS namespace
(so several robots share one test domain), with its own release directory. The application is
a plain rclpy script run as the executor's `command` (`ros2 launch` is not installable here);
it publishes `app/alive` at 20 Hz, or stays silent, as its release's `mode` file says.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from system_harness import FleetServerProcess, ManagedProcess, ProcessGroup, ros_env, wait_until

APP = '''
import pathlib, sys, time
import rclpy
from std_msgs.msg import String
mode = (pathlib.Path(__file__).parent / 'mode').read_text().strip()
rclpy.init(args=sys.argv)
node = rclpy.create_node('robot_app')
pub = node.create_publisher(String, 'app/alive', 10)
while True:
    if mode == 'good':
        pub.publish(String(data='ok'))
    time.sleep(0.05)
'''


def make_release(root: Path, version: str, mode: str, payload: bytes) -> Path:
    """Write a release tree: the app, its mode, a payload, a launch file."""
    tree = root / f'release-{version}'
    (tree / 'launch').mkdir(parents=True)
    (tree / 'app.py').write_text(APP)
    (tree / 'mode').write_text(mode)
    (tree / 'payload.bin').write_bytes(payload)
    (tree / 'launch' / 'robot.launch.py').write_text(f'# release {version}\n')
    return tree


def push_release(server: FleetServerProcess, tree: Path, version: str) -> None:
    """Store a release with the CLI, as an operator would."""
    env = {**os.environ, 'LEKIWI_DATABASE_URL': server.database_url,
           'LEKIWI_DATA_DIR': str(server.data_dir)}
    done = subprocess.run([sys.executable, '-m', 'lekiwi_fleet_server', 'release', 'push',
                           str(tree), '--version', version], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr


class DeployRobot:
    """One robot: uplink + deploy executor processes, a release root, a namespace."""

    def __init__(self, processes: ProcessGroup, server: FleetServerProcess, domain: str,
                 robot_id: str, root: Path) -> None:
        self.processes, self.server, self.domain = processes, server, domain
        self.robot_id, self.root = robot_id, root
        self.ns = '/' + robot_id.replace('-', '_')
        root.mkdir(parents=True, exist_ok=True)
        self.token_file = root / 'token'
        self.token_file.write_text(server.enrol(robot_id))
        self.uplink = processes.start(f'uplink-{robot_id}', [
            sys.executable, '-m', 'lekiwi_agent_ros.uplink.fleet_uplink', '--ros-args',
            '-r', f'__ns:={self.ns}', '-p', f'robot_id:={robot_id}',
            '-p', f'server_url:={server.gateway_url}', '-p', f'token_file:={self.token_file}',
            '-p', f'outbox_path:={root / "outbox.sqlite3"}'], ros_env(domain))
        self.executor: ManagedProcess | None = None
        self.start_executor()

    def start_executor(self) -> None:
        command = json.dumps([sys.executable, '{release}/app.py', '--ros-args', '-r',
                              f'__ns:={self.ns}'])
        self.executor = self.processes.start(f'deploy-{self.robot_id}', [
            sys.executable, '-m', 'lekiwi_agent_ros.deploy.deploy_executor', '--ros-args',
            '-r', f'__ns:={self.ns}', '-p', f'root:={self.root / "deploy"}',
            '-p', f'server_url:={self.server.api_url}', '-p', f'robot_id:={self.robot_id}',
            '-p', f'token_file:={self.token_file}', '-p', f'command:={command}',
            '-p', "health_topics:=['app/alive:std_msgs/msg/String:5']",
            '-p', 'teleop_wait_s:=2.0', '-p', 'min_free_mb:=1.0'], ros_env(self.domain))

    def connected(self) -> bool:
        robot = self.server.robot(self.robot_id)
        return bool(robot and robot.get('connected'))

    def current(self) -> str:
        try:
            return os.readlink(self.root / 'deploy' / 'current').rsplit('/', 1)[-1]
        except OSError:
            return ''

    def app(self) -> dict[str, Any] | None:
        """Return the pid file of the running application, when its process lives."""
        try:
            info = json.loads((self.root / 'deploy' / 'app.pid').read_text())
            os.kill(info['pid'], 0)
        except (OSError, ValueError):
            return None
        return info

    def state(self) -> dict[str, Any]:
        try:
            return json.loads((self.root / 'deploy' / 'state.json').read_text())
        except (OSError, ValueError):
            return {}

    def stop_app(self) -> None:
        info = self.app()
        if info:
            try:
                os.killpg(info['pid'], 9)
            except OSError:
                pass


class TeleopPublisher:
    """Publishes TeleopStatus on a robot's teleop/status (a person driving, or not)."""

    def __init__(self, domain: str, ns: str) -> None:
        os.environ.update(ros_env(domain))
        import rclpy
        from rclpy.context import Context

        from lekiwi_agent_ros.deploy.deploy_executor import STATUS_QOS
        from lekiwi_fleet_msgs.msg import TeleopStatus

        self._status = TeleopStatus
        self.context = Context()
        rclpy.init(context=self.context, domain_id=int(domain))
        self.node = rclpy.create_node('teleop_test', namespace=ns, context=self.context)
        self.pub = self.node.create_publisher(TeleopStatus, 'teleop/status', STATUS_QOS)
        self.active = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.pub.publish(self._status(active=self.active, teleop_active=self.active,
                                          operator_present=self.active))
            time.sleep(0.2)

    def close(self) -> None:
        import rclpy

        self._stop.set()
        self._thread.join(2)
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)


def wait_deployment(server: FleetServerProcess, deployment_id: str, want: set[str],
                    timeout: float = 240.0) -> dict[str, Any]:
    """Poll a deployment until its status is one of `want`."""
    last: dict[str, Any] = {}

    def done() -> bool:
        nonlocal last
        last = server.request('GET', f'/api/v1/deployments/{deployment_id}')
        return last['status'] in want

    wait_until(done, timeout, interval=0.5, message=f'deployment to reach {want}: {last}')
    return last
