"""FleetUplinkNode: fleet topics -> on-disk outbox -> one WebSocket to the fleet server, and back.

It subscribes to the fleet topics of robot-protocol.md, stores each message in the outbox
(seq assigned there) and wakes the WebSocket thread, which sends, collects acks and resends
after reconnecting. Commands from the server are published on `fleet/commands`; a
`send_action_goal` for `fleet/deploy` goes to a `Deploy` action server named `deploy` when one
runs (the deployment issue's seam), and is refused clearly otherwise. Service
`fleet_uplink/get_status` tells how the uplink is doing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from action_msgs.msg import GoalStatus
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.action import ActionClient
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

import lekiwi_agent_ros
from lekiwi_agent_ros.boot_id import resolve_boot_id
from lekiwi_agent_ros.diagnostics import Status, uplink_statuses
from lekiwi_agent_ros.diagnostics_ros import DiagnosticsPublisher
from lekiwi_agent_ros.disk_state import DiskStateReporter
from lekiwi_agent_ros.msg_types import (
    Deploy,
    DeploymentStatus,
    FleetCommand,
    FleetEvent,
    GetAgentStatus,
    RobotHeartbeat,
    TelemetryDelta,
    TeleopStatus,
)
from lekiwi_agent_ros.ros_json import RosJsonError, from_json, to_json
from lekiwi_agent_ros.telemetry.delta_codec import merge_telemetry_msgs
from lekiwi_agent_ros.telemetry.heartbeat import HISTORY_QOS, STATUS_QOS
from lekiwi_agent_ros.uplink.backoff import Backoff, BackoffConfig
from lekiwi_agent_ros.uplink.outbox import (
    Outbox,
    OutboxError,
    OutboxLockedError,
    OutboxOwnerError,
    OutboxStorageError,
    TopicPolicy,
)
from lekiwi_agent_ros.uplink.polling_config import (
    declare_transport,
    polling_fallback,
    transport_problem,
)
from lekiwi_agent_ros.uplink.state_throttle import StateThrottle
from lekiwi_agent_ros.uplink.uplink_session import (
    DEPLOY_ACTION,
    GOAL_ABORTED,
    GOAL_SUCCEEDED,
    ActionGoal,
    Command,
    CommandOutcome,
    SessionConfig,
    UplinkSession,
    action_feedback_frame,
    action_result_frame,
    failed_result,
)

if TYPE_CHECKING:
    from lekiwi_agent_ros.uplink.uplink_client import UplinkClient


@dataclass(frozen=True)
class FleetTopic:
    """A topic the uplink forwards: its message type, QoS and outbox policy."""

    name: str
    msg_type: type
    qos: QoSProfile
    policy: TopicPolicy


FLEET_TOPICS = (
    FleetTopic('fleet/heartbeat', RobotHeartbeat, STATUS_QOS, TopicPolicy(state=True)),
    FleetTopic('teleop/status', TeleopStatus, STATUS_QOS, TopicPolicy(state=True)),
    FleetTopic(
        'fleet/telemetry',
        TelemetryDelta,
        HISTORY_QOS,
        TopicPolicy(state=False, merge=merge_telemetry_msgs),
    ),
    FleetTopic('fleet/events', FleetEvent, HISTORY_QOS, TopicPolicy(state=False)),
    FleetTopic('fleet/deployment_status', DeploymentStatus, HISTORY_QOS, TopicPolicy(state=False)),
)


# The durable path for applications (README, "Events while the agent is down"): publish
# fleet/events RELIABLE + TRANSIENT_LOCAL with a KEEP_LAST depth covering what you may emit
# while the agent restarts. This second subscription takes that history when the uplink
# (re)starts; the volatile one above still serves volatile publishers (a transient-local
# reader does not match them). A durable publisher matches both, and every event comes back
# after each restart: the outbox keeps each distinct message once (a digest, `dedup_key`).
DURABLE_EVENTS_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1000,
                                reliability=ReliabilityPolicy.RELIABLE,
                                durability=DurabilityPolicy.TRANSIENT_LOCAL)
DEDUPED_TOPICS = frozenset({'fleet/events'})
# Messages the outbox could not store (disk full) wait here, in order, and are retried each
# second; past this many the oldest history message goes, loudly (the process has no better
# place: the disk is what is full).
MAX_HELD_MESSAGES = 10000


@dataclass(frozen=True)
class UplinkConfig:
    """The uplink node's parameters."""

    robot_id: str
    server_url: str
    token: str
    token_file: str
    outbox_path: str
    max_outbox_messages: int
    max_frame_bytes: int
    window: int
    ack_timeout_s: float
    backoff_base_s: float
    backoff_cap_s: float
    teleop_status_min_interval_s: float
    request_admission: bool = False
    admission_key_file: str = ''

    def problems(self) -> list[str]:
        """List what is wrong with these values."""
        found = []
        if self.request_admission and not self.token_file:
            found.append('request_admission needs token_file (where the admitted token goes)')
        if not self.server_url.startswith(('ws://', 'wss://')):
            found.append(f'server_url must start with ws:// or wss://, got {self.server_url!r}')
        if not self.outbox_path:
            found.append('outbox_path must not be empty')
        for name in ('max_outbox_messages', 'window'):
            if getattr(self, name) < 1:
                found.append(f'{name} must be >= 1, got {getattr(self, name)}')
        if self.max_frame_bytes < 1024:
            found.append(f'max_frame_bytes must be >= 1024, got {self.max_frame_bytes}')
        if not self.ack_timeout_s > 0.0:
            found.append(f'ack_timeout_s must be > 0, got {self.ack_timeout_s}')
        if not 0.0 < self.backoff_base_s <= self.backoff_cap_s:
            found.append(
                f'need 0 < backoff_base_s <= backoff_cap_s, got '
                f'{self.backoff_base_s}, {self.backoff_cap_s}'
            )
        if not self.teleop_status_min_interval_s >= 0.0:
            found.append(
                f'teleop_status_min_interval_s must be >= 0, '
                f'got {self.teleop_status_min_interval_s}'
            )
        return found


class FleetUplinkNode(Node):
    """Forward fleet topics to the fleet server and deliver its commands into ROS."""

    def __init__(
        self,
        node_name: str = 'fleet_uplink',
        *,
        boot_id: str | None = None,
        **node_kwargs: object,
    ) -> None:
        """Declare parameters, open the outbox, create ROS entities, start the WebSocket."""
        super().__init__(node_name, **node_kwargs)  # type: ignore[arg-type]
        self._client: UplinkClient | None = None
        self._fallback = None
        self._outbox: Outbox | None = None
        try:
            self._setup(boot_id)
        except BaseException:
            self._close()
            super().destroy_node()  # a refused configuration must not leave an rcl node behind
            raise

    def _setup(self, boot_id: str | None) -> None:
        # Imported here, so a websockets too old for it stops the node with an instruction
        # (node_runner, dependencies.py) rather than an ImportError at module import.
        from lekiwi_agent_ros.uplink.uplink_client import UplinkClient

        self.config = self._read_parameters()
        problems = self.config.problems()
        if problems:
            raise ValueError('invalid fleet_uplink parameters: ' + '; '.join(problems))
        self.boot_id = resolve_boot_id(self, boot_id)
        self._last_heartbeat = RobotHeartbeat()
        self._goals: dict[str, Any] = {}  # goal id -> ClientGoalHandle
        self._goals_lock = threading.Lock()
        self._teleop_throttle = StateThrottle(self.config.teleop_status_min_interval_s)
        self._held: list[tuple[str, dict[str, Any], str | None]] = []
        self._held_dropped = 0
        self.storage_problem: str | None = None  # the outbox's last write error, while it lasts
        self._disk = DiskStateReporter(self.config.robot_id, self.boot_id, time.time)

        try:
            self._outbox = Outbox(
                self.config.outbox_path,
                self.boot_id,
                {topic.name: topic.policy for topic in FLEET_TOPICS},
                max_messages=self.config.max_outbox_messages,
                # A publish frame adds its envelope (topic, boot_id, seq) to the message.
                max_message_bytes=self.config.max_frame_bytes - 256,
                robot_id=self.config.robot_id,
            )
        except (OutboxLockedError, OutboxOwnerError) as exc:
            raise ValueError(str(exc)) from exc  # a refused configuration: exit code 2, said why
        if self._outbox.recovered_from:
            self.get_logger().error(
                f'outbox file was unreadable, kept aside as {self._outbox.recovered_from}'
            )
        session = UplinkSession(
            SessionConfig(
                robot_id=self.config.robot_id,
                agent_version=lekiwi_agent_ros.__version__,
                window=self.config.window,
                ack_timeout_s=self.config.ack_timeout_s,
            ),
            self._outbox,
            self,
            time.monotonic,
            self._log,
        )
        self._session = session
        backoff = Backoff(
            BackoffConfig(base_s=self.config.backoff_base_s, cap_s=self.config.backoff_cap_s),
            random.random,
            time.monotonic,
        )
        self._commands = self.create_publisher(FleetCommand, 'fleet/commands', HISTORY_QOS)
        # Feature flags (issue 20): `configure` sets the named nodes' parameters (configure.py).
        from lekiwi_agent_ros.uplink.configure import ConfigureApplier

        self._configure = ConfigureApplier(self, robot_id=self.config.robot_id,
                                           boot_id=self.boot_id)
        self._deploy: ActionClient = ActionClient(self, Deploy, 'deploy')
        for topic in FLEET_TOPICS:
            self.create_subscription(
                topic.msg_type, topic.name, self._forwarder(topic.name), topic.qos
            )
        self.create_subscription(
            FleetEvent, 'fleet/events', self._forwarder('fleet/events'), DURABLE_EVENTS_QOS
        )
        self.create_service(GetAgentStatus, 'fleet_uplink/get_status', self._on_get_status)
        if self.config.teleop_status_min_interval_s > 0.0:
            self.create_timer(self.config.teleop_status_min_interval_s, self._flush_teleop)
        self.create_timer(1.0, self._retry_held)
        self._diagnostics = DiagnosticsPublisher(self, self._diagnostic_statuses)
        admission = None
        if self.config.request_admission:
            # Imported only here: a robot with a token never loads cryptography (memory).
            from lekiwi_agent_ros.uplink.admission_key import AdmissionKey

            admission = AdmissionKey.load_or_create(self.config.admission_key_file)
            self.get_logger().info(
                f'admission key {self.config.admission_key_file}; without a token in '
                f'{self.config.token_file} the uplink asks the server for admission'
            )
        # HTTP long polling when the WebSocket is refused or slow (uplink/http_transport.py).
        self._fallback = polling_fallback(
            self, self.config.server_url, self.config.robot_id, self._log,
            f'lekiwi-agent/{lekiwi_agent_ros.__version__}')
        # The agent's own figures in its heartbeat (issue 20): memory, transport; the session
        # adds its ack latency p99.
        from lekiwi_agent_ros.uplink.agent_memory import AgentMemory

        self._memory = AgentMemory(time.monotonic)
        session.agent_figures = self._agent_figures
        # `transport` (auto | websocket | polling): the uplink_transport flag's target.
        mode = declare_transport(self)
        problem = transport_problem(mode, self._fallback is not None)
        if problem:
            raise ValueError('invalid fleet_uplink parameters: ' + problem)
        if self._fallback is not None:
            self._fallback.set_mode(mode)
        self._client = UplinkClient(
            self.config.server_url,
            session,
            backoff,
            self._read_token,
            self._log,
            user_agent=f'lekiwi-agent/{lekiwi_agent_ros.__version__}',
            max_frame_bytes=self.config.max_frame_bytes,
            admission=admission,
            on_token=self._store_token,
            fallback=self._fallback,
        )
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self._client.start()
        self.get_logger().info(
            f'uplink for robot {self.config.robot_id} (boot {self.boot_id}) to '
            f'{self.config.server_url}; outbox {self.config.outbox_path} holds '
            f'{len(self._outbox)} unacknowledged messages'
        )

    def _read_parameters(self) -> UplinkConfig:
        def declare(name: str, default: object, description: str) -> Any:
            descriptor = ParameterDescriptor(description=description, read_only=True)
            return self.declare_parameter(name, default, descriptor).value

        ros_home = os.environ.get('ROS_HOME') or os.path.join('~', '.ros')
        default_outbox = os.path.join(ros_home, 'lekiwi_fleet', 'outbox.sqlite3')
        outbox_path = os.path.expanduser(
            str(declare('outbox_path', default_outbox, 'SQLite file of the outbox.'))
        )
        return UplinkConfig(
            robot_id=str(declare('robot_id', 'kiwi-001', 'Robot id, as enrolled on the server.')),
            server_url=str(
                declare('server_url', 'ws://127.0.0.1:9090/', 'Fleet gateway URL, ws:// or wss://.')
            ),
            token=str(declare('token', '', 'Robot token; prefer token_file.')),
            token_file=str(
                declare('token_file', '', 'File holding the robot token (read at each connect).')
            ),
            outbox_path=outbox_path,
            max_outbox_messages=int(
                declare(
                    'max_outbox_messages',
                    10000,
                    'Above this many stored messages telemetry deltas are merged.',
                )
            ),
            max_frame_bytes=int(
                declare('max_frame_bytes', 65536, 'Largest frame the gateway accepts.')
            ),
            window=int(declare('window', 32, 'History frames sent and not yet acknowledged.')),
            ack_timeout_s=float(
                declare('ack_timeout_s', 10.0, 'Reconnect when a frame waits this long for ack.')
            ),
            backoff_base_s=float(declare('backoff_base_s', 0.5, 'First reconnect delay cap.')),
            backoff_cap_s=float(declare('backoff_cap_s', 10.0, 'Largest reconnect delay.')),
            teleop_status_min_interval_s=float(
                declare(
                    'teleop_status_min_interval_s',
                    5.0,
                    'teleop/status goes up at once when a discrete field changes, '
                    'otherwise at most this often (0: every message).',
                )
            ),
            request_admission=bool(
                declare(
                    'request_admission',
                    False,
                    'Without a token in token_file, ask the server for admission with a key '
                    'pair of this robot; write the token an admin grants to token_file (0600).',
                )
            ),
            admission_key_file=os.path.expanduser(
                str(
                    declare(
                        'admission_key_file',
                        os.path.join(os.path.dirname(outbox_path), 'admission_key.pem'),
                        'Ed25519 key pair for admission requests (made on first use, 0600).',
                    )
                )
            ),
        )

    def _read_token(self) -> str:
        if self.config.token:
            return self.config.token
        if self.config.token_file:
            try:
                with open(os.path.expanduser(self.config.token_file), encoding='utf-8') as handle:
                    return handle.read().strip()
            except FileNotFoundError:
                if not self.config.request_admission:
                    raise
        return ''

    def _store_token(self, token: str) -> None:
        # Called on the uplink's thread when an admin accepted this robot's admission request.
        from lekiwi_agent_ros.uplink.admission_key import write_private

        path = os.path.expanduser(self.config.token_file)
        write_private(path, (token + '\n').encode())
        self.get_logger().info(f'admitted: robot token written to {path}')

    def _log(self, level: int, text: str) -> None:
        # One call site per severity: rclpy refuses a call site that changes its severity.
        logger = self.get_logger()
        if level >= logging.ERROR:
            logger.error(text)
        elif level >= logging.WARNING:
            logger.warning(text)
        elif level >= logging.INFO:
            logger.info(text)
        else:
            logger.debug(text)

    # ---- fleet topics -> outbox ----
    def _forwarder(self, topic: str) -> Callable[[Any], None]:
        def forward(msg: Any) -> None:
            data: dict[str, Any] | None = to_json(msg)
            if topic == 'fleet/heartbeat':
                self._last_heartbeat = msg
            elif topic == 'teleop/status' and data is not None:
                data = self._teleop_throttle.offer(data, time.monotonic())
            if data is not None:
                self._store(topic, data)

        return forward

    def _flush_teleop(self) -> None:
        held = self._teleop_throttle.flush(time.monotonic())
        if held is not None:
            self._store('teleop/status', held)

    def _store(self, topic: str, data: dict[str, Any]) -> None:
        if self._outbox is None or self._client is None:
            return  # shutting down
        key = None
        if topic in DEDUPED_TOPICS:
            # The key is of the message as its publisher sent it, before the boot id below is
            # stamped: a durable publisher's re-delivery after an uplink restart matches it.
            text = json.dumps(data, sort_keys=True, separators=(',', ':'), allow_nan=False)
            key = f'{topic}:{hashlib.sha256(text.encode()).hexdigest()}'
        if 'boot_id' in data:
            # The server refuses a message naming another boot than its frame's; nodes run as
            # processes of their own (one_process:=false) each drew a boot id of their own.
            data['boot_id'] = self.boot_id
        if self._held:  # the disk was full: keep the order behind the held messages
            self._hold(topic, data, key)
            self._retry_held()
            return
        self._put(topic, data, key)

    def _put(self, topic: str, data: dict[str, Any], key: str | None) -> bool:
        """Store one message; False when the outbox could not write it (then it is held)."""
        assert self._outbox is not None and self._client is not None
        try:
            result = self._outbox.put(topic, data, dedup_key=key)
        except OutboxStorageError as exc:
            if self.storage_problem is None:
                self.get_logger().error(
                    f'outbox cannot write ({exc}); messages are held in memory and retried '
                    'every second until it can')
            self.storage_problem = str(exc)
            self._hold(topic, data, key)
            if (frame := self._disk.storage_failed(str(exc), len(self._held))) is not None:
                self._client.send_soon(json.dumps(frame, separators=(',', ':')))  # disk_state.py
            return False
        except (OutboxError, ValueError) as exc:
            self.get_logger().error(f'{topic} message not queued: {exc}')
            return True
        if result.outcome == 'duplicate':
            return True  # re-delivered from a durable publisher's history: stored once already
        if result.over_limit and result.outcome != 'merged':
            self.get_logger().warning(
                f'outbox over {self.config.max_outbox_messages} messages '
                f'({len(self._outbox)}); {topic} kept',
                throttle_duration_sec=10.0,
            )
        self._client.wake()
        return True

    def _hold(self, topic: str, data: dict[str, Any], key: str | None) -> None:
        if any(t.policy.state for t in FLEET_TOPICS if t.name == topic):
            # A state message supersedes the held one of its topic.
            self._held = [h for h in self._held if h[0] != topic]
        self._held.append((topic, data, key))
        if len(self._held) > MAX_HELD_MESSAGES:
            self._held.pop(0)
            self._held_dropped += 1
            self.get_logger().error(
                f'outbox still cannot write: {self._held_dropped} messages dropped so far',
                throttle_duration_sec=10.0)

    def _retry_held(self) -> None:
        """Store held messages in order while the outbox takes them (each second)."""
        if not self._held or self._outbox is None:
            return
        held, self._held = self._held, []
        for index, (topic, data, key) in enumerate(held):
            if not self._put(topic, data, key):
                # _put held this one again at the end: put the rest back behind it, in order.
                self._held = [self._held[-1], *held[index + 1:], *self._held[:-1]]
                return
        self.get_logger().info(f'outbox writable again: {len(held)} held messages stored')
        self.storage_problem = None
        if (event := self._disk.storage_recovered(len(held))) is not None:
            self._put('fleet/events', event, None)

    # ---- commands and goals from the server (called in the WebSocket thread) ----
    def handle_command(self, command: Command) -> CommandOutcome:
        """Publish a server command on fleet/commands."""
        msg = FleetCommand()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.command_id = command.command_id
        msg.command_type = command.command_type
        msg.payload_json = command.payload_json
        self._commands.publish(msg)
        self.get_logger().info(f'command {command.command_type} ({command.command_id}) delivered')
        if command.command_type == FleetCommand.TYPE_PING:
            return CommandOutcome(True, 'pong')
        if command.command_type == FleetCommand.TYPE_CONFIGURE:  # what it applied, as JSON
            return CommandOutcome(*self._configure.handle(command.payload))
        return CommandOutcome(True, 'delivered to fleet/commands')

    def start_action_goal(self, goal: ActionGoal) -> str | None:
        """Send a deploy goal to the local Deploy action server; return a refusal or None."""
        if not self._deploy.server_is_ready():
            return "no deploy action server on this robot (action 'deploy')"
        try:
            request = from_json(Deploy.Goal, goal.args)
        except RosJsonError as exc:
            return f'bad deploy goal: {exc}'
        future = self._deploy.send_goal_async(
            request, feedback_callback=lambda feedback: self._on_feedback(goal.goal_id, feedback)
        )
        future.add_done_callback(lambda done: self._on_goal_response(goal.goal_id, done))
        self.get_logger().info(f'deploy goal {goal.goal_id} sent to the deploy action server')
        return None

    def cancel_action_goal(self, goal_id: str) -> None:
        """Ask the deploy action server to cancel a goal."""
        with self._goals_lock:
            handle = self._goals.get(goal_id)
        if handle is not None:
            handle.cancel_goal_async()

    def _on_feedback(self, goal_id: str, feedback: Any) -> None:
        assert self._client is not None
        self._client.send_soon(
            action_feedback_frame(goal_id, DEPLOY_ACTION, to_json(feedback.feedback))
        )

    def _on_goal_response(self, goal_id: str, future: Any) -> None:
        assert self._client is not None
        handle = future.result()
        if handle is None or not handle.accepted:
            values = failed_result('the deploy action server rejected the goal')
            self._client.send_soon(
                action_result_frame(goal_id, DEPLOY_ACTION, values, GOAL_ABORTED, False)
            )
            return
        with self._goals_lock:
            self._goals[goal_id] = handle
        handle.get_result_async().add_done_callback(
            lambda done: self._on_goal_result(goal_id, done)
        )

    def _on_goal_result(self, goal_id: str, future: Any) -> None:
        assert self._client is not None
        with self._goals_lock:
            self._goals.pop(goal_id, None)
        response = future.result()
        if response is not None:
            status, values = int(response.status), to_json(response.result)
        else:  # the protocol's result always holds every field of a Deploy result
            status = GoalStatus.STATUS_UNKNOWN
            values = failed_result('the deploy action server gave no result')
        self._client.send_soon(
            action_result_frame(goal_id, DEPLOY_ACTION, values, status, status == GOAL_SUCCEEDED)
        )

    # ---- status ----
    def _on_get_status(
        self, request: GetAgentStatus.Request, response: GetAgentStatus.Response
    ) -> GetAgentStatus.Response:
        response.robot_id = self.config.robot_id
        response.agent_version = lekiwi_agent_ros.__version__
        response.boot_id = self.boot_id
        response.server_url = self.config.server_url
        response.connected = self._session.ready
        # The outbox is None while the node shuts down: answer 0 pending rather than raise.
        response.outbox_pending = len(self._outbox) if self._outbox is not None else 0
        response.acknowledged_total = self._session.stats.acked_total
        response.last_heartbeat = self._last_heartbeat
        return response

    def _on_set_parameters(self, params: list[Any]) -> SetParametersResult:
        """Apply a new `transport`; refuse a value it cannot take (the others are read-only)."""
        for param in params:
            if param.name != 'transport':
                continue
            problem = transport_problem(param.value, self._fallback is not None)
            if problem:
                return SetParametersResult(successful=False, reason=problem)
            assert self._client is not None
            self._client.set_transport(str(param.value))
            self.get_logger().info(f'transport parameter: {param.value}')
        return SetParametersResult(successful=True)

    def transport(self) -> str:
        """Return the transport the uplink uses now: 'websocket' or 'polling'."""
        return self._fallback.transport if self._fallback is not None else 'websocket'

    def _agent_figures(self) -> dict[str, Any]:
        rss_mb, uss_mb = self._memory.sample()  # cached: /proc is read every 5 s at most
        return {'uplink_transport': self.transport(), 'agent_rss_mb': rss_mb,
                'agent_uss_mb': uss_mb}

    def _diagnostic_statuses(self) -> list[Status]:
        return uplink_statuses(
            self.get_name(), self.config.robot_id, connected=self._session.ready,
            server_url=self.config.server_url,
            outbox_pending=len(self._outbox) if self._outbox is not None else 0,
            acknowledged_total=self._session.stats.acked_total,
            storage_problem=self.storage_problem, held=len(self._held),
            max_outbox_messages=self.config.max_outbox_messages,
            transport=self.transport())

    def _close(self) -> None:
        if self._client is not None:
            self._client.stop()
            self._client = None
        if self._outbox is not None:
            self._outbox.close()
            self._outbox = None

    def destroy_node(self) -> None:
        """Close the WebSocket and the outbox, then the node."""
        self._close()
        super().destroy_node()


def main(args: Sequence[str] | None = None) -> int:
    """Run the uplink alone (the agent hosts it in its own process by default)."""
    from lekiwi_agent_ros.node_runner import run_nodes

    return run_nodes(lambda: [FleetUplinkNode()], args, 'fleet_uplink')


if __name__ == '__main__':
    import sys

    sys.exit(main())
