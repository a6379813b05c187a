"""WebRtcStreamerNode: the robot camera to browser operators over WebRTC (aiortc).

Runs as its own process: rclpy spins on the main thread, aiortc's asyncio loop on one more
thread. The ROS side only hands camera messages to a `FrameHub` and publishes; the asyncio side
(`StreamerService`) does signalling, peers, data channels and pings. Publishers are called from
the asyncio thread; rcl publishers are thread-safe, and nothing else is shared between the two.

Operators authenticate with a bearer token: set `operator_token_file` (preferred: parameters
can be read by anyone on the ROS graph) or `operator_token`, at least 16 characters. The bound
signalling port is logged and exposed as the read-only parameter `bound_port` (`port: 0` picks
a free one).
"""

from __future__ import annotations

import asyncio
import math
import os
import sys
import threading
import time
from typing import Any

from rcl_interfaces.msg import ParameterDescriptor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
    qos_profile_sensor_data,
)

from lekiwi_agent_ros.msg_types import (
    CommandRoundTrip,
    CompressedImage,
    Image,
    Joy,
    WebRtcStatus,
)
from lekiwi_agent_ros.node_runner import run_nodes
from lekiwi_agent_ros.ros_logging import forward_python_logging
from lekiwi_agent_ros.teleop.teleop_monitor import ROUND_TRIP_QOS, STATUS_QOS
from lekiwi_agent_ros.webrtc.webrtc_peers import StreamerSnapshot
from lekiwi_agent_ros.webrtc.webrtc_protocol import JoyCommand

try:  # aiortc and av: main() turns their absence into an instruction (dependencies.py)
    from lekiwi_agent_ros.webrtc.webrtc_media import FrameHub
    from lekiwi_agent_ros.webrtc.webrtc_service import (
        StreamerConfig,
        StreamerService,
        resolve_token,
    )
except ImportError as _missing:
    _IMPORT_ERROR: ImportError | None = _missing
else:
    _IMPORT_ERROR = None

JOY_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.VOLATILE, history=HistoryPolicy.KEEP_LAST)
_START_TIMEOUT_S = 10.0
_STOP_TIMEOUT_S = 6.0


def _to_time(unix_s: float | None, msg_time: object) -> None:
    """Write Unix seconds into a builtin_interfaces/Time (left zero for None)."""
    if unix_s is None:
        return
    sec = math.floor(unix_s)
    msg_time.sec = sec  # type: ignore[attr-defined]
    msg_time.nanosec = min(int((unix_s - sec) * 1e9), 999_999_999)  # type: ignore[attr-defined]


class WebRtcStreamerNode(Node):
    """Serve the camera topic as a WebRTC video track; relay operator commands into ROS."""

    def __init__(self, node_name: str = 'webrtc_streamer', **node_kwargs: object) -> None:
        """Declare parameters, start the asyncio side, then subscribe to the camera."""
        self._stopped = True
        super().__init__(node_name, **node_kwargs)  # type: ignore[arg-type]
        # aiortc's and the asyncio side's Python logging, into this node's logger and /rosout.
        self._detach_logging = forward_python_logging(self)
        try:
            self._setup()
        except BaseException:
            self._detach_logging()
            super().destroy_node()  # nothing else was started: free the rcl node
            raise

    def _setup(self) -> None:
        """Build everything the constructor promises, in the house order."""
        self._declare_parameters()
        p = self._param
        camera_type = str(p('camera_type'))
        if camera_type not in ('compressed', 'raw'):
            raise ValueError(f"camera_type must be 'compressed' or 'raw', got {camera_type!r}")
        token_file = str(p('operator_token_file'))
        self.streaming = True
        if token_file and not str(p('operator_token')) and not os.path.exists(token_file):
            # The default launch names /etc/lekiwi/operator-token: a robot set up without
            # operators keeps its agent running, and the streamer says how to turn it on.
            self.streaming = False
            self.port = 0
            self.declare_parameter('bound_port', 0, ParameterDescriptor(
                description='Port the signalling endpoint listens on (0: streamer off).',
                read_only=True))
            self.get_logger().error(
                f'WebRTC streamer off: no operator token file at {token_file}. To stream, '
                'write a bearer token of at least 16 characters there (e.g. `openssl rand '
                f'-hex 24 > {token_file}`) and restart, or launch with webrtc:=false')
            return
        config = StreamerConfig(
            token=resolve_token(str(p('operator_token')), str(p('operator_token_file'))),
            bind_address=str(p('bind_address')),
            port=int(p('port')),
            max_peers=int(p('max_peers')),
            ping_period_s=float(p('ping_period_s')),
            idle_timeout_s=float(p('idle_timeout_s')),
            connect_timeout_s=float(p('connect_timeout_s')),
            status_period_s=float(p('status_period_s')),
            video_stale_s=float(p('video_stale_s')),
            ice_servers=tuple(p('ice_servers') or ()),
            ice_host_addresses=tuple(p('ice_host_addresses') or ()),
            cors_allow_origin=str(p('cors_allow_origin')),
        ).validated()
        self._hub = FrameHub(time.monotonic)
        # Reliable: a reliable publisher also serves best-effort readers, and drive nodes such
        # as teleop_twist_joy subscribe reliably (a best-effort publisher reaches none of them).
        self._joy_pub = self.create_publisher(Joy, str(p('joy_topic')), JOY_QOS)
        self._status_pub = self.create_publisher(WebRtcStatus, 'webrtc/status', STATUS_QOS)
        self._round_trip_pub = self.create_publisher(
            CommandRoundTrip, 'teleop/command_round_trips', ROUND_TRIP_QOS)
        self._service = StreamerService(config, self._hub, self._publish_joy,
                                        self._publish_status,
                                        publish_round_trip=self._publish_round_trip)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run_loop, name='webrtc-asyncio',
                                        daemon=True)
        self._thread.start()
        try:
            self.port = asyncio.run_coroutine_threadsafe(
                self._service.start(), self._loop).result(_START_TIMEOUT_S)
        except BaseException:
            self._stop_loop()
            raise
        self._stopped = False
        self.declare_parameter('bound_port', self.port, ParameterDescriptor(
            description='Port the signalling endpoint listens on (read back when port is 0).',
            read_only=True))
        camera_topic = str(p('camera_topic'))
        if camera_type == 'compressed':
            self.create_subscription(CompressedImage, camera_topic, self._on_compressed,
                                     qos_profile_sensor_data)
        else:
            self.create_subscription(Image, camera_topic, self._on_image, qos_profile_sensor_data)
        self.get_logger().info(
            f'serving {camera_topic} ({camera_type}) to operators; signalling at '
            f'http://{config.bind_address}:{self.port}/offer (bearer token required)')

    def _param(self, name: str) -> Any:
        """Return a parameter's value (an unset array reads as empty)."""
        return self.get_parameter_or(name, Parameter(name, value=[])).value

    def _declare_parameters(self) -> None:
        """Declare every parameter in one place; all are read-only (restart to change)."""
        defaults = StreamerConfig(token='')

        def declare(name: str, value: object, description: str, **extra: object) -> None:
            self.declare_parameter(name, value, ParameterDescriptor(
                description=description, read_only=True, **extra))  # type: ignore[arg-type]

        declare('camera_topic', 'camera/front/image_raw/compressed', 'Camera topic to stream.')
        declare('camera_type', 'compressed',
                "'compressed' (CompressedImage, JPEG or PNG) or 'raw' (Image: rgb8, bgr8, "
                'rgba8, bgra8, mono8).')
        declare('joy_topic', 'joy', 'Topic the operator joystick commands are published on.')
        declare('bind_address', defaults.bind_address, 'Address the signalling endpoint binds.')
        declare('port', defaults.port, 'Signalling port; 0 picks a free one (see bound_port).')
        declare('operator_token', '', 'Operator bearer token (prefer operator_token_file).')
        declare('operator_token_file', '', 'File holding the operator bearer token.')
        declare('max_peers', defaults.max_peers, 'Most operator peers served at once.')
        declare('ping_period_s', defaults.ping_period_s,
                'Period (s) of the round-trip pings sent on each data channel.')
        declare('idle_timeout_s', defaults.idle_timeout_s,
                'A peer whose data channel is silent this long (s) is dropped; 0: never.')
        declare('connect_timeout_s', defaults.connect_timeout_s,
                'A peer not connected this long (s) after its offer is dropped.')
        declare('status_period_s', defaults.status_period_s,
                'webrtc/status is published at least this often (s), and on every change.')
        declare('video_stale_s', defaults.video_stale_s,
                'Tracks count as sending only while a camera frame arrived this recently (s).')
        # rclpy infers BYTE_ARRAY from an empty list: declare these arrays by type (unset
        # reads as empty).
        declare('ice_servers', Parameter.Type.STRING_ARRAY,
                'STUN/TURN URLs offered to ICE (none on a LAN).')
        declare('ice_host_addresses', Parameter.Type.STRING_ARRAY,
                'Only these local addresses become ICE host candidates; unset: all interfaces.')
        declare('cors_allow_origin', '',
                'Access-Control-Allow-Origin for browser operators on another origin; empty: '
                'none.')

    def _run_loop(self) -> None:
        """Run the asyncio loop of the WebRTC side (its own thread)."""
        asyncio.set_event_loop(self._loop)
        self._loop.run_forever()

    def _stop_loop(self) -> None:
        """Stop the loop and its thread."""
        # Queued even if the loop has not started running yet: run_forever() then returns.
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(_STOP_TIMEOUT_S)
        if not self._thread.is_alive():
            self._loop.close()

    def destroy_node(self) -> None:
        """Close every peer and the signalling endpoint, then the node."""
        if not self._stopped:
            self._stopped = True
            try:
                asyncio.run_coroutine_threadsafe(self._service.stop(), self._loop).result(
                    _STOP_TIMEOUT_S)
            except Exception as exc:  # shutting down anyway: report, do not raise
                self.get_logger().warning(f'streamer did not stop cleanly: {exc!r}')
            self._stop_loop()
        self._detach_logging()
        super().destroy_node()

    def _on_compressed(self, msg: CompressedImage) -> None:
        """Hand a compressed frame to the tracks (decoded only if a peer watches)."""
        self._hub.put(msg.format, msg.data, True)

    def _on_image(self, msg: Image) -> None:
        """Hand a raw frame to the tracks."""
        self._hub.put(msg.encoding, msg.data, False, msg.width, msg.height, msg.step)

    def _publish_joy(self, command: JoyCommand) -> None:
        """Publish an operator's joystick command, stamped now (asyncio thread)."""
        msg = Joy()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.header.frame_id = 'webrtc'
        msg.axes = list(command.axes)
        msg.buttons = list(command.buttons)
        self._joy_pub.publish(msg)

    def _publish_round_trip(self, operator_id: str, rtt_ms: float) -> None:
        """Publish one operator's command round trip (asyncio thread)."""
        msg = CommandRoundTrip(operator_id=operator_id, round_trip_ms=rtt_ms)
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.header.frame_id = 'webrtc'
        self._round_trip_pub.publish(msg)

    def _publish_status(self, snapshot: StreamerSnapshot) -> None:
        """Publish the streamer status (asyncio thread)."""
        msg = WebRtcStatus()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.connected_peers = min(snapshot.connected_peers, 65535)
        msg.video_tracks_sending = min(snapshot.video_tracks_sending, 65535)
        msg.round_trip_ms = snapshot.round_trip_ms
        _to_time(snapshot.round_trip_measured_at, msg.round_trip_measured_at)
        _to_time(snapshot.last_command_at, msg.last_command_at)
        self._status_pub.publish(msg)


def main(args: list[str] | None = None) -> int:
    """Run the streamer in its own process."""
    def build() -> list[WebRtcStreamerNode]:
        if _IMPORT_ERROR is not None:
            raise _IMPORT_ERROR
        return [WebRtcStreamerNode()]

    return run_nodes(build, args, 'webrtc_streamer')


if __name__ == '__main__':
    sys.exit(main())
