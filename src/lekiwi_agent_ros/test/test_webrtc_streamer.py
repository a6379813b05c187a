"""WebRtcStreamerNode and TeleopMonitorNode together: a real aiortc operator drives the score."""

from __future__ import annotations

import asyncio
import math
import threading
import time
import uuid
from collections.abc import Iterator

import pytest
import rclpy
from rclpy.parameter import Parameter
from rclpy.qos import qos_profile_sensor_data
from ros_harness import RosHarness, ros_harness, wait_for
from webrtc_client import OperatorClient, make_jpeg

from lekiwi_agent_ros.msg_types import (
    CommandRoundTrip,
    CompressedImage,
    Image,
    Joy,
    TeleopStatus,
    WebRtcStatus,
)
from lekiwi_agent_ros.teleop import teleop_monitor
from lekiwi_agent_ros.teleop.teleop_monitor import ROUND_TRIP_QOS, STATUS_QOS, TeleopMonitorNode
from lekiwi_agent_ros.webrtc import webrtc_streamer
from lekiwi_agent_ros.webrtc.webrtc_streamer import WebRtcStreamerNode

TOKEN = 'operator-token-for-tests-0123'
CAMERA = 'camera/front/image_raw/compressed'


class Topics:
    """Record teleop/status, webrtc/status and joy with arrival times."""

    def __init__(self, harness: RosHarness) -> None:
        self.teleop: list[tuple[float, TeleopStatus]] = []
        self.webrtc: list[tuple[float, WebRtcStatus]] = []
        self.joy: list[Joy] = []
        self.round_trips: list[CommandRoundTrip] = []
        node = harness.node('topics')
        node.create_subscription(CommandRoundTrip, 'teleop/command_round_trips',
                                 self.round_trips.append, ROUND_TRIP_QOS)
        node.create_subscription(TeleopStatus, 'teleop/status',
                                 lambda m: self.teleop.append((time.monotonic(), m)), STATUS_QOS)
        node.create_subscription(WebRtcStatus, 'webrtc/status',
                                 lambda m: self.webrtc.append((time.monotonic(), m)), STATUS_QOS)
        # Reliable, as drive nodes such as teleop_twist_joy subscribe.
        node.create_subscription(Joy, 'joy', self.joy.append, 10)

    def teleop_now(self) -> TeleopStatus | None:
        return self.teleop[-1][1] if self.teleop else None

    def webrtc_now(self) -> WebRtcStatus | None:
        return self.webrtc[-1][1] if self.webrtc else None


@pytest.fixture
def harness() -> Iterator[RosHarness]:
    with ros_harness() as h:
        yield h


def start_camera(harness: RosHarness, raw: bool = False) -> None:
    node = harness.node('camera')
    if raw:
        pub = node.create_publisher(Image, 'camera/image_raw', qos_profile_sensor_data)
        msg = Image(width=32, height=24, encoding='rgb8', step=96, data=bytes(96 * 24))
    else:
        pub = node.create_publisher(CompressedImage, CAMERA, qos_profile_sensor_data)
        msg = CompressedImage(format='jpeg', data=make_jpeg())
    node.create_timer(1.0 / 15.0, lambda: pub.publish(msg))


def make_streamer(harness: RosHarness, **params: object) -> WebRtcStreamerNode:
    settings = {'port': 0, 'operator_token': TOKEN, 'ice_host_addresses': ['127.0.0.1'],
                'ping_period_s': 0.2, **params}
    return harness.add(WebRtcStreamerNode(
        namespace=harness.namespace, context=harness.context,
        parameter_overrides=[Parameter(k, value=v) for k, v in settings.items()]))


def test_operator_peer_raises_and_drops_the_teleop_score(harness: RosHarness) -> None:
    topics = Topics(harness)
    start_camera(harness)
    streamer = make_streamer(harness)
    # A long latency_max_age_s: a round trip the streamer kept reporting after the peer left
    # would hold the score up for the whole test.
    harness.add(TeleopMonitorNode(namespace=harness.namespace, context=harness.context,
                                  parameter_overrides=[Parameter('off_hold_s', value=0.3),
                                                       Parameter('latency_max_age_s', value=30.0)]))
    port = streamer.get_parameter('bound_port').value
    assert port == streamer.port and port > 0

    async def operate() -> float:
        # aiortc objects belong to the loop they are created on.
        client = OperatorClient(f'http://127.0.0.1:{port}/offer', TOKEN)
        await client.connect()
        driving = asyncio.create_task(client.drive(4.0))

        def fully_engaged() -> bool:
            status = topics.teleop_now()
            return status is not None and status.active and status.score > 0.95

        # teleop/status comes on change and at 1 Hz: wait for one that shows every signal.
        deadline = time.monotonic() + 3.5
        while not fully_engaged() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        status = topics.teleop_now()
        assert client.frames >= 5, 'the operator receives camera frames'
        assert status.webrtc_peers == 1
        assert status.active_video_streams == 1  # the streamer's track, not its subscription
        assert status.joystick_signal > 0.8
        assert status.control_latency_ms < 100.0
        assert status.latency_signal == 1.0
        # The latency is the operator's own command loop, reported under its peer id.
        assert topics.round_trips and all(
            m.operator_id.startswith('webrtc/') and m.header.frame_id == 'webrtc'
            for m in topics.round_trips)
        assert len({m.operator_id for m in topics.round_trips}) == 1
        assert fully_engaged(), f'score {status.score}'
        assert status.teleop_active and status.operator_present

        def rtt_reported() -> bool:  # webrtc/status comes at its own period: wait for one
            return any(m.connected_peers == 1 and m.video_tracks_sending == 1
                       and not math.isnan(m.round_trip_ms) for _, m in topics.webrtc)

        deadline = time.monotonic() + 5.0
        while not rtt_reported() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        driving.cancel()
        closed_at = time.monotonic()
        await client.close()
        return closed_at

    closed_at = asyncio.run(asyncio.wait_for(operate(), 30.0))
    webrtc = topics.webrtc_now()
    assert webrtc.connected_peers == 0 or wait_for(
        lambda: topics.webrtc_now().connected_peers == 0, 1.0)
    left = next(t for t, m in topics.webrtc if t >= closed_at and m.connected_peers == 0)
    assert left - closed_at < 1.0
    assert wait_for(lambda: not topics.teleop_now().active, 3.0)
    final = topics.teleop_now()
    assert final.webrtc_peers == 0 and final.active_video_streams == 0
    assert wait_for(lambda: topics.teleop_now().score == 0.0, 2.5)  # no signal lingers

    assert len(topics.joy) >= 20
    joy = topics.joy[-1]
    assert joy.header.frame_id == 'webrtc'
    assert abs(joy.header.stamp.sec - time.time()) < 10
    assert joy.axes[0] == pytest.approx(0.6)
    peaks = [m for _, m in topics.webrtc if m.connected_peers == 1]
    assert any(m.video_tracks_sending == 1 and not math.isnan(m.round_trip_ms)
               and m.round_trip_measured_at.sec > 0 and m.last_command_at.sec > 0
               for m in peaks)


def test_streamer_serves_raw_images(harness: RosHarness) -> None:
    start_camera(harness, raw=True)
    streamer = make_streamer(harness, camera_topic='camera/image_raw', camera_type='raw')

    async def watch() -> int:
        client = OperatorClient(f'http://127.0.0.1:{streamer.port}/offer', TOKEN)
        await client.connect()
        for _ in range(200):
            if client.frames >= 3:
                break
            await asyncio.sleep(0.02)
        await client.close()
        return client.frames

    assert asyncio.run(asyncio.wait_for(watch(), 20.0)) >= 3


@pytest.mark.parametrize(
    ('params', 'reason'),
    [
        ({'operator_token': ''}, 'operator token of at least 16 characters'),
        ({'camera_type': 'mjpeg'}, "camera_type must be 'compressed' or 'raw'"),
        ({'max_peers': 0}, 'max_peers must be >= 1'),
    ],
)
def test_streamer_refuses_bad_parameters(harness: RosHarness, params: dict,
                                         reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        make_streamer(harness, **params)


def test_streamer_reads_its_token_file(harness: RosHarness, tmp_path) -> None:
    path = tmp_path / 'operator-token'
    path.write_text(TOKEN + '\n')
    streamer = make_streamer(harness, operator_token='', operator_token_file=str(path))

    async def offer() -> int:
        client = OperatorClient(f'http://127.0.0.1:{streamer.port}/offer', TOKEN, video=False)
        status = (await client.offer()).status_code
        await client.close()
        return status

    assert asyncio.run(offer()) == 200


def run_main(main, argv: list[str]) -> tuple[threading.Thread, list[int]]:
    """Run a node's main() in a thread with the default context; return thread and exit code."""
    codes: list[int] = []
    thread = threading.Thread(target=lambda: codes.append(main(argv)), daemon=True)
    thread.start()
    return thread, codes


@pytest.mark.parametrize(
    ('module', 'argv', 'message'),
    [
        (webrtc_streamer, [], 'operator token'),
        (teleop_monitor, ['-p', 'weight_video:=0.9'], 'weights must sum to 1'),
    ],
)
def test_main_exits_2_with_the_reason(module, argv, message, capfd) -> None:
    # capfd, not capsys: rclpy's EventsExecutor enables faulthandler, which needs a real fd.
    args = ['node', '--ros-args', '-r', f'__ns:=/tmain{uuid.uuid4().hex[:8]}', *argv]
    thread, codes = run_main(module.main, args)
    thread.join(20.0)
    assert codes == [2]
    assert message in capfd.readouterr().err


@pytest.mark.parametrize('module', [teleop_monitor, webrtc_streamer])
def test_main_runs_until_shutdown(module, tmp_path) -> None:
    path = tmp_path / 'token'
    path.write_text(TOKEN)
    args = ['node', '--ros-args', '-r', f'__ns:=/tmain{uuid.uuid4().hex[:8]}',
            '-p', 'port:=0', '-p', f'operator_token_file:={path}']
    if module is teleop_monitor:
        args = args[:4]
    thread, codes = run_main(module.main, args)
    assert wait_for(lambda: rclpy.ok(), 5.0)
    time.sleep(1.0)
    rclpy.shutdown()
    thread.join(20.0)
    assert codes == [0]


def test_without_its_token_file_the_streamer_stays_off_and_says_why(tmp_path, capfd) -> None:
    missing = tmp_path / 'operator-token'
    args = ['node', '--ros-args', '-r', f'__ns:=/tmain{uuid.uuid4().hex[:8]}',
            '-p', 'port:=0', '-p', f'operator_token_file:={missing}']
    thread, codes = run_main(webrtc_streamer.main, args)
    assert wait_for(lambda: rclpy.ok(), 5.0)
    time.sleep(1.0)
    assert thread.is_alive() and codes == []  # running, not exited with code 2
    rclpy.shutdown()
    thread.join(20.0)
    assert codes == [0]
    err = capfd.readouterr().err
    assert f'WebRTC streamer off: no operator token file at {missing}' in err


def test_the_streamers_python_logging_reaches_rosout() -> None:
    """aiortc and the asyncio side log through Python's logging: in its own process too."""
    import os
    import signal
    import subprocess
    import sys

    from rcl_interfaces.msg import Log
    from rcl_interfaces.srv import GetParameters

    namespace = f'/tlog{uuid.uuid4().hex[:8]}'
    process = subprocess.Popen(
        [sys.executable, '-m', 'lekiwi_agent_ros.webrtc.webrtc_streamer', '--ros-args',
         '-r', f'__ns:={namespace}', '-p', 'port:=0', '-p', f'operator_token:={TOKEN}',
         '-p', 'ice_host_addresses:=[127.0.0.1]'],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=dict(os.environ))
    try:
        with ros_harness() as harness:
            logs: list[Log] = harness.collect(Log, '/rosout', 100)
            client = harness.helper.create_client(
                GetParameters, f'{namespace}/webrtc_streamer/get_parameters')
            assert client.wait_for_service(timeout_sec=30.0)
            future = client.call_async(GetParameters.Request(names=['bound_port']))
            assert wait_for(future.done, timeout=10.0)
            port = future.result().values[0].integer_value

            async def visit() -> None:
                operator = OperatorClient(f'http://127.0.0.1:{port}/offer', TOKEN, video=False)
                await operator.connect()
                await operator.close()

            asyncio.run(asyncio.wait_for(visit(), 30.0))

            def streamer_lines() -> list[Log]:
                return [m for m in logs if m.name == f'{namespace[1:]}.webrtc_streamer'
                        and '[lekiwi_agent_ros.webrtc.webrtc_service]' in m.msg]

            assert wait_for(lambda: any('connected' in m.msg for m in streamer_lines()), 10.0), \
                [(m.name, m.msg) for m in logs]
            assert all(m.level == Log.INFO for m in streamer_lines())
    finally:
        process.send_signal(signal.SIGINT)
        out, _ = process.communicate(timeout=30)
    assert process.returncode == 0, out
    # The console still shows them (through the ROS logger), once each.
    assert out.count('] operator peer') >= 2 and 'webrtc_service] operator peer' in out
