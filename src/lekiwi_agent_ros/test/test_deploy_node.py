"""deploy_executor with real rclpy and a real application process that publishes, or fails to.

Releases are served by a real HTTP server speaking the fleet server's release routes (manifest
and ranged blobs with robot id and token). The application is a plain rclpy script run as the
node's `command` (ros2 launch is not installable here, ENVIRONMENT.md).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import rclpy
from rclpy.action import ActionClient
from rclpy.context import Context
from rclpy.executors import MultiThreadedExecutor
from rclpy.parameter import Parameter

from lekiwi_agent_ros.deploy.deploy_executor import STATUS_QOS, DeployExecutorNode
from lekiwi_agent_ros.deploy.manifest import build_manifest, manifest_json
from lekiwi_fleet_msgs.action import Deploy
from lekiwi_fleet_msgs.msg import DeploymentStatus, TeleopStatus

ROBOT, TOKEN = 'kiwi-1', 'robot-token'

APP = '''
import sys, time, pathlib
import rclpy
from std_msgs.msg import String
mode = (pathlib.Path(__file__).parent / 'mode').read_text().strip()
if mode == 'crash':
    sys.exit(3)
rclpy.init(args=sys.argv)
node = rclpy.create_node('robot_app')
pub = node.create_publisher(String, 'app/alive', 10)
while True:
    if mode == 'good':
        pub.publish(String(data='ok'))
    time.sleep(0.05)
'''


class ReleaseServer:
    """Serves /manifests/<version> and /api/v1/blobs/<sha> from release trees, like the server."""

    def __init__(self) -> None:
        self.manifests: dict[str, bytes] = {}
        self.blobs: dict[str, bytes] = {}
        self.blob_bytes = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                if (self.headers.get('Authorization') != f'Bearer {TOKEN}'
                        or self.headers.get('X-Robot-Id') != ROBOT):
                    self.send_error(401)
                    return
                key = self.path.rsplit('/', 1)[-1]
                data = (server.manifests if '/manifests/' in self.path else server.blobs).get(key)
                if data is None:
                    self.send_error(404)
                    return
                if '/blobs/' in self.path:
                    server.blob_bytes += len(data)
                self.send_response(200)
                self.send_header('Content-Length', str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        self.url = f'http://127.0.0.1:{self.httpd.server_port}'
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def publish(self, tree: Path, version: str) -> tuple[str, str]:
        manifest = build_manifest(tree, version)
        for entry in manifest.files():
            self.blobs[entry.sha256] = (tree / entry.path).read_bytes()
        data = manifest_json(manifest)
        self.manifests[version] = data
        return f'{self.url}/manifests/{version}', hashlib.sha256(data).hexdigest()


def make_release(root: Path, version: str, mode: str, payload: bytes) -> Path:
    tree = root / f'src-{version}'
    (tree / 'launch').mkdir(parents=True)
    (tree / 'app.py').write_text(APP)
    (tree / 'mode').write_text(mode)
    (tree / 'payload.bin').write_bytes(payload)
    (tree / 'launch' / 'robot.launch.py').write_text('# the app of a real robot\n')
    return tree


class Robot:
    """A deploy_executor node and an action client in their own context and executor."""

    def __init__(self, root: Path, server: ReleaseServer, **params: Any) -> None:
        self.context = Context()
        rclpy.init(context=self.context)
        self.ns = '/t' + uuid.uuid4().hex[:10]
        parameters = {
            'root': str(root), 'server_url': server.url, 'robot_id': ROBOT, 'token': TOKEN,
            'command': [sys.executable, '{release}/app.py', '--ros-args', '-r',
                        f'__ns:={self.ns}'],
            'health_topics': ['app/alive:std_msgs/msg/String:5'], 'settle_s': 1.0,
            'min_free_mb': 1.0, 'teleop_wait_s': 1.0, 'max_rss_mb': 2000.0,
        } | params
        self.node = DeployExecutorNode(
            context=self.context, namespace=self.ns,
            parameter_overrides=[Parameter(k, value=v) for k, v in parameters.items()])
        self.client_node = rclpy.create_node('deploy_test_client', context=self.context,
                                             namespace=self.ns)
        self.client = ActionClient(self.client_node, Deploy, 'deploy')
        self.statuses: list[DeploymentStatus] = []
        self.client_node.create_subscription(DeploymentStatus, 'fleet/deployment_status',
                                             self.statuses.append, 100)
        self.teleop = self.client_node.create_publisher(TeleopStatus, 'teleop/status',
                                                        STATUS_QOS)
        self.executor = MultiThreadedExecutor(num_threads=4, context=self.context)
        self.executor.add_node(self.node)
        self.executor.add_node(self.client_node)
        self._thread = threading.Thread(target=self.executor.spin, daemon=True)
        self._thread.start()
        assert self.client.wait_for_server(timeout_sec=20)

    def deploy(self, server: ReleaseServer, version: str, url_sha: tuple[str, str], *,
               force: bool = False, timeout_s: float = 90.0) -> Any:
        goal = Deploy.Goal(deployment_id='dep-1', release_version=version,
                           manifest_url=url_sha[0], manifest_sha256=url_sha[1],
                           health_timeout_s=20.0, force=force)
        feedback: list[int] = []
        sent = self.client.send_goal_async(goal, feedback_callback=lambda f: feedback.append(
            f.feedback.phase))
        handle = wait(sent, timeout_s)
        assert handle.accepted
        result = wait(handle.get_result_async(), timeout_s).result
        return result, feedback

    def close(self) -> None:
        self.node.steps.supervisor.stop()
        self.executor.shutdown()
        self.node.destroy_node()
        self.client_node.destroy_node()
        rclpy.try_shutdown(context=self.context)


def wait(future: Any, timeout_s: float) -> Any:
    deadline = time.monotonic() + timeout_s
    while not future.done():
        assert time.monotonic() < deadline, 'timed out'
        time.sleep(0.02)
    return future.result()


@pytest.fixture
def server() -> Iterator[ReleaseServer]:
    s = ReleaseServer()
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()


@pytest.fixture
def robot(tmp_path: Path, server: ReleaseServer) -> Iterator[Robot]:
    r = Robot(tmp_path / 'robot', server)
    yield r
    r.close()


def app_pid(root: Path) -> int:
    return int(json.loads((root / 'app.pid').read_text())['pid'])


def test_install_update_with_only_changed_files_then_a_failing_release_rolls_back(
        robot: Robot, server: ReleaseServer, tmp_path: Path) -> None:
    payload = os.urandom(200_000)
    v1 = server.publish(make_release(tmp_path, '1', 'good', payload), '1')
    result, feedback = robot.deploy(server, '1', v1)
    assert result.success and result.status == 'succeeded', result.message
    assert result.full_bytes > 200_000 and result.transferred_bytes == server.blob_bytes
    assert feedback[:3] == [DeploymentStatus.PHASE_DOWNLOAD, DeploymentStatus.PHASE_VERIFY,
                            DeploymentStatus.PHASE_STAGE]
    root = tmp_path / 'robot'
    assert os.readlink(root / 'current') == 'releases/1'

    tree2 = make_release(tmp_path, '2', 'good', payload)
    (tree2 / 'launch' / 'robot.launch.py').write_text('# changed in 2\n')
    v2 = server.publish(tree2, '2')
    before = server.blob_bytes
    result, _ = robot.deploy(server, '2', v2)
    assert result.success, result.message
    assert result.transferred_bytes == server.blob_bytes - before == len('# changed in 2\n')
    first_pid = app_pid(root)

    v3 = server.publish(make_release(tmp_path, '3', 'silent', payload), '3')
    result, feedback = robot.deploy(server, '3', v3)
    assert not result.success and result.rolled_back and result.final_version == '2'
    assert 'app/alive' in result.message
    assert DeploymentStatus.PHASE_ROLLBACK in feedback
    assert os.readlink(root / 'current') == 'releases/2'
    assert app_pid(root) != first_pid and not (root / 'releases' / '3').exists()
    phases = [s.phase for s in robot.statuses]
    assert DeploymentStatus.PHASE_ROLLED_BACK in phases and DeploymentStatus.PHASE_SUCCEEDED \
        in phases

    v4 = server.publish(make_release(tmp_path, '4', 'crash', payload), '4')
    result, _ = robot.deploy(server, '4', v4)
    assert result.rolled_back and 'exited' in result.message

    bad = (v1[0], '0' * 64)
    result, _ = robot.deploy(server, '1b', bad)
    assert result.status == 'failed' and 'sha256' in result.message
    assert os.readlink(root / 'current') == 'releases/2'


def test_teleop_lock_refuses_unless_forced(robot: Robot, server: ReleaseServer,
                                           tmp_path: Path) -> None:
    v1 = server.publish(make_release(tmp_path, '1', 'good', b'x'), '1')
    robot.teleop.publish(TeleopStatus(teleop_active=True, operator_present=True))
    time.sleep(0.5)
    result, _ = robot.deploy(server, '1', v1)
    assert result.status == 'refused' and 'teleoperating' in result.message
    result, _ = robot.deploy(server, '1', v1, force=True)
    assert result.success, result.message
    robot.teleop.publish(TeleopStatus(teleop_active=False, operator_present=True))
    v2 = server.publish(make_release(tmp_path, '2', 'good', b'y'), '2')
    time.sleep(0.5)
    result, _ = robot.deploy(server, '2', v2)
    assert result.status == 'refused' and 'operator is connected' in result.message
    robot.teleop.publish(TeleopStatus(teleop_active=False, operator_present=False))
    time.sleep(0.5)
    result, _ = robot.deploy(server, '2', v2)
    assert result.success, result.message
