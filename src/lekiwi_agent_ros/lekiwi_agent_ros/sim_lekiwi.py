"""A simulated LeKiwi for demos and tests: joystick, front camera and battery publishers.

It stands in for the robot's hardware drivers, not for any agent node: the agent nodes run
unchanged against it. The simulated operator drives for half of every `drive_period_s` (moving
axes at `joy_rate_hz`) and leaves the joystick publishing zeros for the other half, as an idle
gamepad does.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

import rclpy
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import qos_profile_sensor_data

from lekiwi_agent_ros.msg_types import BatteryState, CompressedImage, Joy


@dataclass(frozen=True)
class SimConfig:
    """Settings of the simulated robot."""

    joy_rate_hz: float
    camera_rate_hz: float
    camera_topic: str
    frame_width: int
    frame_height: int
    drive_period_s: float
    battery_full_v: float
    battery_empty_v: float
    battery_drain_s: float


class SimulatedOperator:
    """Joystick axes of a person driving for the first half of each period, zeros otherwise."""

    def __init__(self, drive_period_s: float) -> None:
        self._period = drive_period_s

    def driving(self, t: float) -> bool:
        """Say whether the simulated person is driving at time t (seconds since start)."""
        if self._period <= 0:
            return True
        return (t % self._period) < self._period / 2

    def axes(self, t: float) -> list[float]:
        """Return left stick x/y and right stick x at time t."""
        if not self.driving(t):
            return [0.0, 0.0, 0.0]
        return [0.6 * math.sin(t * 1.3), 0.8 * math.cos(t * 0.7), 0.3 * math.sin(t * 2.1)]


class SimulatedBattery:
    """A 3S pack draining linearly, then recharged at once."""

    def __init__(self, full_v: float, empty_v: float, drain_s: float) -> None:
        self._full, self._empty, self._drain = full_v, empty_v, max(drain_s, 1.0)

    def state(self, t: float) -> tuple[float, float]:
        """Return voltage and charge fraction (0..1) at time t."""
        fraction = 1.0 - (t % self._drain) / self._drain
        return self._empty + (self._full - self._empty) * fraction, fraction


def encode_test_pattern(width: int, height: int, count: int) -> list[bytes]:
    """Encode `count` JPEG frames of a moving colour pattern (PyAV, from aiortc's deps)."""
    import av  # imported here: only the simulator encodes video
    import numpy as np

    codec = av.CodecContext.create('mjpeg', 'w')
    codec.width, codec.height, codec.pix_fmt = width, height, 'yuvj420p'
    codec.time_base = Fraction(1, 15)
    y, x = np.mgrid[0:height, 0:width]
    frames = []
    for i in range(count):
        rgb = np.stack([(x + 8 * i) % 256, (y + 4 * i) % 256,
                        ((x + y) // 2 + 16 * i) % 256], axis=-1).astype(np.uint8)
        frame = av.VideoFrame.from_ndarray(rgb, format='rgb24').reformat(format='yuvj420p')
        frame.pts = i
        frames.append(b''.join(bytes(p) for p in codec.encode(frame)))
    return frames


class SimLekiwiNode(Node):
    """Publish the simulated LeKiwi's joystick, camera and battery topics."""

    def __init__(self, *, now: Callable[[], float] | None = None, **kwargs) -> None:
        super().__init__('sim_lekiwi', **kwargs)
        self.config = self._declare_parameters()
        self._now = now or (lambda: self.get_clock().now().nanoseconds / 1e9)
        self._t0 = self._now()
        self.operator = SimulatedOperator(self.config.drive_period_s)
        self.battery = SimulatedBattery(self.config.battery_full_v, self.config.battery_empty_v,
                                        self.config.battery_drain_s)
        self._frames = encode_test_pattern(self.config.frame_width, self.config.frame_height, 15)
        self._frame_index = 0
        self._joy_pub = self.create_publisher(Joy, 'joy', qos_profile_sensor_data)
        self._camera_pub = self.create_publisher(
            CompressedImage, self.config.camera_topic, qos_profile_sensor_data)
        self._battery_pub = self.create_publisher(BatteryState, 'battery_state', 10)
        self.create_timer(1.0 / self.config.joy_rate_hz, self._publish_joy)
        self.create_timer(1.0 / self.config.camera_rate_hz, self._publish_frame)
        self.create_timer(1.0, self._publish_battery)

    def _declare_parameters(self) -> SimConfig:
        def param(name: str, default: object, description: str) -> Parameter:
            return self.declare_parameter(
                name, default, ParameterDescriptor(description=description)).value

        return SimConfig(
            joy_rate_hz=param('joy_rate_hz', 30.0, 'Joystick publish rate (Hz)'),
            camera_rate_hz=param('camera_rate_hz', 15.0, 'Camera publish rate (Hz)'),
            camera_topic=param('camera_topic', 'camera/front/image_raw/compressed',
                               'CompressedImage topic of the front camera'),
            frame_width=param('frame_width', 640, 'Camera frame width (px)'),
            frame_height=param('frame_height', 480, 'Camera frame height (px)'),
            drive_period_s=param('drive_period_s', 40.0,
                                 'The simulated operator drives for the first half of each '
                                 'period; 0 drives all the time'),
            battery_full_v=param('battery_full_v', 12.6, 'Voltage of the full pack (V)'),
            battery_empty_v=param('battery_empty_v', 10.8, 'Voltage of the empty pack (V)'),
            battery_drain_s=param('battery_drain_s', 3600.0, 'Time to drain the pack (s)'),
        )

    def _elapsed(self) -> float:
        return self._now() - self._t0

    def _publish_joy(self) -> None:
        msg = Joy()
        msg.header.stamp = self.get_clock().now().to_msg()
        t = self._elapsed()
        msg.axes = self.operator.axes(t)
        msg.buttons = [0, 0, 0, 0]
        self._joy_pub.publish(msg)

    def _publish_frame(self) -> None:
        msg = CompressedImage()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.header.frame_id = 'front_camera'
        msg.format = 'jpeg'
        msg.data = self._frames[self._frame_index % len(self._frames)]
        self._frame_index += 1
        self._camera_pub.publish(msg)

    def _publish_battery(self) -> None:
        voltage, fraction = self.battery.state(self._elapsed())
        msg = BatteryState()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.voltage = float(voltage)
        msg.percentage = float(fraction)
        msg.present = True
        self._battery_pub.publish(msg)


def main(args: list[str] | None = None) -> None:
    """Run the simulated LeKiwi until interrupted."""
    rclpy.init(args=args)
    node = None
    try:
        node = SimLekiwiNode()
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()


if __name__ == '__main__':
    main()
