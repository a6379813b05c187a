"""TelemetryNode: resource usage as `TelemetryDelta` on `fleet/telemetry`, delta-compressed.

Every `period_s` it samples the machine and publishes the fields that moved beyond their
threshold (`thresholds.<field>` parameters), a full snapshot every `full_snapshot_period_s`,
and one at once when asked: service `telemetry/request_snapshot`, or a `request_snapshot`
command from the fleet server on `fleet/commands`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from rcl_interfaces.msg import ParameterDescriptor
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data

from lekiwi_agent_ros.boot_id import resolve_boot_id
from lekiwi_agent_ros.msg_types import (
    BatteryState,
    FleetCommand,
    RequestTelemetrySnapshot,
    TelemetryDelta,
)
from lekiwi_agent_ros.telemetry.delta_codec import DeltaEncoder, TelemetryFrame
from lekiwi_agent_ros.telemetry.heartbeat import HISTORY_QOS
from lekiwi_agent_ros.telemetry.resource_sampler import (
    FIELDS,
    ResourceSampler,
    SamplerConfig,
)

# Changes smaller than these are not worth a delta (units as in ResourceUsage).
DEFAULT_THRESHOLDS: dict[str, float] = {
    'cpu_percent': 5.0,
    'load_average_1min': 0.25,
    'memory_used_bytes': 16.0 * 2**20,
    'memory_total_bytes': 0.0,
    'disk_used_bytes': 64.0 * 2**20,
    'disk_total_bytes': 0.0,
    'temperature_c': 1.0,
    'battery_voltage_v': 0.05,
    'battery_percent': 1.0,
    'network_tx_bytes_per_s': 4096.0,
    'network_rx_bytes_per_s': 4096.0,
    'uptime_s': 3600.0,  # the receiver can count seconds; snapshots carry the exact value
}


@dataclass(frozen=True)
class TelemetryConfig:
    """The telemetry node's parameters."""

    robot_id: str
    period_s: float
    full_snapshot_period_s: float
    disk_path: str
    thresholds: dict[str, float] = field(default_factory=dict)

    def problems(self) -> list[str]:
        """List what is wrong with these values."""
        found = []
        if not self.period_s > 0.0:
            found.append(f'period_s must be > 0, got {self.period_s}')
        if not self.full_snapshot_period_s > 0.0:
            found.append(f'full_snapshot_period_s must be > 0, got {self.full_snapshot_period_s}')
        for name, value in self.thresholds.items():
            if not value >= 0.0:
                found.append(f'thresholds.{name} must be >= 0, got {value}')
        return found


class TelemetryNode(Node):
    """Publish delta-compressed telemetry."""

    def __init__(
        self,
        node_name: str = 'telemetry',
        *,
        boot_id: str | None = None,
        sampler: ResourceSampler | None = None,
        **node_kwargs: object,
    ) -> None:
        """Declare parameters, then create the publisher, service, subscriptions and timer."""
        super().__init__(node_name, **node_kwargs)  # type: ignore[arg-type]
        try:
            self._setup(boot_id, sampler)
        except BaseException:
            super().destroy_node()  # a refused configuration must not leave an rcl node behind
            raise

    def _setup(self, boot_id: str | None, sampler: ResourceSampler | None) -> None:
        self.config = self._read_parameters()
        problems = self.config.problems()
        if problems:
            raise ValueError('invalid telemetry parameters: ' + '; '.join(problems))
        self.boot_id = resolve_boot_id(self, boot_id)
        self._sampler = sampler or ResourceSampler(
            time.monotonic, SamplerConfig(disk_path=self.config.disk_path)
        )
        self._encoder = DeltaEncoder(self.config.thresholds, self.config.full_snapshot_period_s)
        self._publisher = self.create_publisher(TelemetryDelta, 'fleet/telemetry', HISTORY_QOS)
        self.create_service(
            RequestTelemetrySnapshot, 'telemetry/request_snapshot', self._on_snapshot_request
        )
        self.create_subscription(FleetCommand, 'fleet/commands', self._on_command, HISTORY_QOS)
        self.create_subscription(
            BatteryState, 'battery_state', self._on_battery, qos_profile_sensor_data
        )
        self.create_timer(self.config.period_s, self._tick)
        # The first snapshot goes out soon after start, not one whole period later.
        self._first_tick = self.create_timer(min(1.0, self.config.period_s), self._tick_once)

    def _read_parameters(self) -> TelemetryConfig:
        def declare(name: str, default: object, description: str) -> Any:
            descriptor = ParameterDescriptor(description=description, read_only=True)
            return self.declare_parameter(name, default, descriptor).value

        thresholds = {
            name: float(
                declare(
                    f'thresholds.{name}',
                    DEFAULT_THRESHOLDS[name],
                    f'Smallest change of {name} that is sent as a delta.',
                )
            )
            for name in FIELDS
        }
        return TelemetryConfig(
            robot_id=str(declare('robot_id', 'kiwi-001', 'Robot id, as enrolled on the server.')),
            # The 1 Hz heartbeat carries the live values; telemetry is the history, so a
            # sample every 5 s is enough there and keeps the uplink under 1 KB/s.
            period_s=float(declare('period_s', 5.0, 'Seconds between samples.')),
            full_snapshot_period_s=float(
                declare('full_snapshot_period_s', 60.0, 'Seconds between full snapshots.')
            ),
            disk_path=str(declare('disk_path', '/', 'File system whose usage is reported.')),
            thresholds=thresholds,
        )

    def _on_battery(self, msg: BatteryState) -> None:
        self._sampler.set_battery(msg.voltage, msg.percentage, msg.present)

    def _on_command(self, msg: FleetCommand) -> None:
        if msg.command_type == FleetCommand.TYPE_REQUEST_SNAPSHOT:
            self.get_logger().info(f'full snapshot requested by command {msg.command_id}')
            self.send_snapshot()

    def _on_snapshot_request(
        self,
        request: RequestTelemetrySnapshot.Request,
        response: RequestTelemetrySnapshot.Response,
    ) -> RequestTelemetrySnapshot.Response:
        response.sequence = self.send_snapshot()
        response.accepted = True
        return response

    def send_snapshot(self) -> int:
        """Publish a full snapshot now; return its sequence."""
        self._encoder.request_full_snapshot()
        frame = self._encode()
        assert frame is not None and frame.full_snapshot  # a requested frame is always full
        return frame.sequence

    def _tick(self) -> None:
        self._encode()

    def _tick_once(self) -> None:
        self._first_tick.cancel()
        self.destroy_timer(self._first_tick)
        self._encode()

    def _encode(self) -> TelemetryFrame | None:
        frame = self._encoder.encode(self._sampler.sample(), time.monotonic())
        if frame is not None:
            self._publisher.publish(self._message(frame))
        return frame

    def _message(self, frame: TelemetryFrame) -> TelemetryDelta:
        msg = TelemetryDelta()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.robot_id = self.config.robot_id
        msg.boot_id = self.boot_id
        msg.sequence = frame.sequence
        msg.base_sequence = frame.base_sequence
        msg.full_snapshot = frame.full_snapshot
        msg.field_names = list(frame.fields)
        # float64 carries NaN; the uplink sends it as null.
        msg.field_values = [float(value) if not math.isinf(value) else math.nan
                            for value in frame.fields.values()]
        return msg


def main(args: Sequence[str] | None = None) -> int:
    """Run the telemetry node alone (the agent hosts it in its own process by default)."""
    from lekiwi_agent_ros.node_runner import run_nodes

    return run_nodes(lambda: [TelemetryNode()], args, 'telemetry')


if __name__ == '__main__':
    import sys

    sys.exit(main())
