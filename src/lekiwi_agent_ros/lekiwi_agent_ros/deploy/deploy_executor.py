"""The `deploy_executor` node: the robot's `Deploy` action server (shell of DeployExecutor).

Goals arrive on action `deploy` (the uplink relays the server's `send_action_goal` there).
Each goal runs the executor's phases with feedback, publishes `fleet/deployment_status`
(durable: the uplink stores and forwards it) and ends with a Deploy result. Topic rates of the
health rules are measured with real subscriptions; `teleop/status` drives the pre-check's lock.

The action's execute callback runs for the whole deployment, so the node spins in a
MultiThreadedExecutor with a reentrant group: subscriptions (rates, teleop) keep being served
while a goal runs (the ros2/examples action server pattern). At start the node finishes or rolls
back whatever a killed predecessor left in flight and starts the current release.
"""

from __future__ import annotations

import importlib
import os
import sys
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

import rclpy
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from lekiwi_agent_ros.deploy.executor import DeployExecutor, Goal, Outcome, StateFile
from lekiwi_agent_ros.deploy.health import HealthRules, parse_topic_rule
from lekiwi_agent_ros.deploy.robot_steps import RobotSteps, StepsConfig, default_command
from lekiwi_agent_ros.deploy.supervisor import AppSupervisor
from lekiwi_fleet_msgs.action import Deploy
from lekiwi_fleet_msgs.msg import DeploymentStatus, TeleopStatus

# Same profiles as the heartbeat's: status topics latched, history topics deep and reliable.
STATUS_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1,
                        reliability=ReliabilityPolicy.RELIABLE,
                        durability=DurabilityPolicy.TRANSIENT_LOCAL)
HISTORY_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=100,
                         reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.VOLATILE)
HEALTH_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=50,
                        reliability=ReliabilityPolicy.BEST_EFFORT,
                        durability=DurabilityPolicy.VOLATILE)

PHASE_NUMBERS = {
    'download': DeploymentStatus.PHASE_DOWNLOAD, 'verify': DeploymentStatus.PHASE_VERIFY,
    'stage': DeploymentStatus.PHASE_STAGE, 'pre_check': DeploymentStatus.PHASE_PRE_CHECK,
    'switch': DeploymentStatus.PHASE_SWITCH, 'post_check': DeploymentStatus.PHASE_POST_CHECK,
    'commit': DeploymentStatus.PHASE_COMMITTING, 'rollback': DeploymentStatus.PHASE_ROLLBACK,
}
END_PHASES = {
    'succeeded': DeploymentStatus.PHASE_SUCCEEDED,
    'rolled_back': DeploymentStatus.PHASE_ROLLED_BACK,
    'failed': DeploymentStatus.PHASE_FAILED, 'refused': DeploymentStatus.PHASE_FAILED,
    'canceled': DeploymentStatus.PHASE_CANCELED,
}


def message_class(type_name: str) -> Any:
    """Return the message class of 'pkg/msg/Type'."""
    package, _msg, name = type_name.split('/')
    return getattr(importlib.import_module(f'{package}.msg'), name)


class RateMeter:
    """Receipt times of one topic; rate over a trailing window (thread-safe)."""

    def __init__(self) -> None:
        self._times: deque[float] = deque(maxlen=2000)
        self._lock = threading.Lock()  # callbacks and the goal's thread both touch the deque

    def tick(self, _msg: Any = None) -> None:
        with self._lock:
            self._times.append(time.monotonic())

    def rate(self, window_s: float) -> float:
        since = time.monotonic() - window_s
        with self._lock:
            return sum(1 for t in self._times if t >= since) / window_s


class DeployExecutorNode(Node):
    """Action server `deploy` of lekiwi_fleet_msgs/action/Deploy."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__('deploy_executor', **kwargs)
        p = self._params()
        rules = HealthRules(tuple(parse_topic_rule(t) for t in p['health_topics'] if t),
                            int(p['max_rss_mb'] * 1024 * 1024), p['max_cpu_percent'],
                            p['settle_s'])
        root = Path(os.path.expanduser(p['root']))
        token = p['token']
        if not token and p['token_file']:
            token = Path(os.path.expanduser(p['token_file'])).read_text().strip()
        config = StepsConfig(root, p['server_url'], p['robot_id'], token,
                             p['bandwidth_bytes_per_s'], int(p['min_free_mb'] * 1024 * 1024),
                             p['min_battery_percent'], p['teleop_wait_s'],
                             p['lock_on_operator_present'], tuple(p['check_command']),
                             key_file=p['admission_key_file'])
        self._robot_id = p['robot_id']
        group = ReentrantCallbackGroup()
        self._meters = {rule.topic: RateMeter() for rule in rules.topics}
        for rule in rules.topics:
            self.create_subscription(message_class(rule.type_name), rule.topic,
                                     self._meters[rule.topic].tick, HEALTH_QOS,
                                     callback_group=group)
        self._teleop = (False, False)
        self.create_subscription(TeleopStatus, 'teleop/status', self._on_teleop, STATUS_QOS,
                                 callback_group=group)
        self._status = self.create_publisher(DeploymentStatus, 'fleet/deployment_status',
                                             HISTORY_QOS)
        command = list(p['command']) or list(default_command())
        supervisor = AppSupervisor(command, root / 'app.pid')
        root.mkdir(parents=True, exist_ok=True)
        self.steps = RobotSteps(config, supervisor, rules, topic_rates=self._rates,
                                teleop=lambda: self._teleop)
        self.executor_core = DeployExecutor(self.steps, StateFile(root / 'state.json'))
        recovered = self.executor_core.recover()
        if recovered is not None:
            self.get_logger().warning(f'recovered an interrupted deployment: {recovered.message}')
        self._server = ActionServer(self, Deploy, 'deploy', self._execute,
                                    goal_callback=lambda _g: GoalResponse.ACCEPT,
                                    cancel_callback=lambda _h: CancelResponse.ACCEPT,
                                    callback_group=group)
        self.get_logger().info(f'deploy executor ready, current release '
                               f'{self.executor_core.current or "(none)"}')

    def _params(self) -> dict[str, Any]:
        specs: dict[str, tuple[Any, str]] = {
            'root': ('~/.ros/lekiwi_fleet/deploy', 'Releases, blob cache and durable state'),
            'server_url': ('http://127.0.0.1:8080', 'Fleet server REST base URL (blobs)'),
            'robot_id': ('', 'This robot id (sent with the token when fetching blobs)'),
            'token': ('', 'Robot token (prefer token_file)'),
            'token_file': ('', 'File holding the robot token'),
            'admission_key_file': ('', "The uplink's admission key (admission_key.pem): a robot "
                                       'admitted with it proves it at each download'),
            'command': ([''], "Application command; {release} is the release dir (default: "
                              "ros2 launch {release}/launch/robot.launch.py)"),
            'health_topics': ([''], 'topic:pkg/msg/Type:min_hz the application must publish'),
            'max_rss_mb': (0.0, 'RSS limit of the application, MB; 0 none'),
            'max_cpu_percent': (0.0, 'CPU limit of the application, % of a core; 0 none'),
            'settle_s': (1.0, 'The application must live at least this long'),
            'check_command': ([''], 'Optional command that must exit 0 in the post-check'),
            'bandwidth_bytes_per_s': (0.0, 'Download cap, bytes/s; 0 none'),
            'min_free_mb': (100.0, 'Free disk space the pre-check requires, MB'),
            'min_battery_percent': (0.0, 'Battery the pre-check requires, %'),
            'teleop_wait_s': (60.0, 'How long the pre-check waits for teleoperation to end'),
            'lock_on_operator_present': (True, 'Also wait while an operator is only present'),
        }
        values: dict[str, Any] = {}
        for name, (default, description) in specs.items():
            descriptor = ParameterDescriptor(description=description, read_only=True)
            value = self.declare_parameter(name, default, descriptor).value
            values[name] = [v for v in value if v] if isinstance(value, list) else value
        return values

    def _on_teleop(self, msg: TeleopStatus) -> None:
        self._teleop = (bool(msg.teleop_active), bool(msg.operator_present))

    def _rates(self, window_s: float) -> dict[str, float]:
        return {topic: meter.rate(window_s) for topic, meter in self._meters.items()}

    def _publish_status(self, goal: Goal, phase: int, progress: float, message: str,
                        previous: str) -> None:
        msg = DeploymentStatus(robot_id=self._robot_id, deployment_id=goal.deployment_id,
                               release_version=goal.release_version, previous_version=previous,
                               phase=phase, progress=float(progress), message=message[:500])
        msg.header.stamp = self.get_clock().now().to_msg()
        self._status.publish(msg)

    def _execute(self, goal_handle: Any) -> Deploy.Result:
        request = goal_handle.request
        goal = Goal(request.deployment_id, request.release_version, request.manifest_url,
                    request.manifest_sha256, float(request.health_timeout_s) or 60.0,
                    bool(request.force))
        previous = self.executor_core.current
        started = time.monotonic()

        def feedback(phase: str, progress: float, message: str) -> None:
            number = PHASE_NUMBERS.get(phase)
            if number is None:
                return
            goal_handle.publish_feedback(
                Deploy.Feedback(phase=number, progress=float(progress), message=message))
            self._publish_status(goal, number, progress, message, previous)

        outcome = self.executor_core.run(goal, feedback,
                                         cancelled=lambda: goal_handle.is_cancel_requested)
        self._publish_status(goal, END_PHASES[outcome.status], 1.0, outcome.message, previous)
        self.get_logger().info(f'deployment {goal.deployment_id}: {outcome.status} '
                               f'({outcome.message})')
        if outcome.status == 'canceled' and goal_handle.is_cancel_requested:
            goal_handle.canceled()
        elif outcome.success:
            goal_handle.succeed()
        else:
            goal_handle.abort()
        return result_of(outcome, time.monotonic() - started, previous)


def result_of(outcome: Outcome, duration_s: float, previous: str) -> Deploy.Result:
    """Return the Deploy result of an outcome."""
    return Deploy.Result(success=outcome.success, final_version=outcome.final_version,
                         rolled_back=outcome.rolled_back, message=outcome.message,
                         status=outcome.status, transferred_bytes=outcome.transferred_bytes,
                         full_bytes=outcome.full_bytes, duration_s=float(duration_s),
                         previous_version=previous)


def main(args: list[str] | None = None) -> int:
    """Run the deploy executor (leaves the application running when stopped: it is the robot's)."""
    rclpy.init(args=args)
    node = None
    try:
        node = DeployExecutorNode()
        rclpy.spin(node, executor=MultiThreadedExecutor(num_threads=4))
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except (ValueError, OSError) as exc:
        rclpy.logging.get_logger('deploy_executor').fatal(str(exc))
        return 2
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == '__main__':
    sys.exit(main())
