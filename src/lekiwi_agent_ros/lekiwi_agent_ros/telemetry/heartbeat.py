"""HeartbeatNode: `RobotHeartbeat` on `fleet/heartbeat` at `rate_hz` (1 Hz by default).

Each heartbeat carries the robot's identity and versions, the agent's boot id and a sequence
(1, 2, 3, ... within the boot), the robot's state derived from teleoperation and deployment
status, and its resource usage. The state rule is the pure function `derive_state()`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rcl_interfaces.msg import ParameterDescriptor
from rclpy.node import Node
from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
    qos_profile_sensor_data,
)

import lekiwi_agent_ros
from lekiwi_agent_ros.boot_id import resolve_boot_id
from lekiwi_agent_ros.msg_types import (
    BatteryState,
    DeploymentStatus,
    ResourceUsage,
    RobotHeartbeat,
    TeleopStatus,
)
from lekiwi_agent_ros.telemetry.resource_sampler import ResourceSampler, SamplerConfig

# Fleet status topics: reliable and transient-local, so a late subscriber gets the latest.
STATUS_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=1,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
)
# Fleet history topics: reliable, volatile, a deep queue so bursts are not lost.
HISTORY_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=100,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.VOLATILE,
)
_UPDATING_PHASES = frozenset(
    {
        DeploymentStatus.PHASE_DOWNLOADING,
        DeploymentStatus.PHASE_VERIFYING,
        DeploymentStatus.PHASE_INSTALLING,
        DeploymentStatus.PHASE_RESTARTING,
        DeploymentStatus.PHASE_HEALTH_CHECK,
        DeploymentStatus.PHASE_ROLLING_BACK,
    }
)
_UINT64_FIELDS = ('memory_used_bytes', 'memory_total_bytes', 'disk_used_bytes', 'disk_total_bytes')


def derive_state(booting: bool, teleop_active: bool, deployment_phase: int | None) -> int:
    """Return the RobotHeartbeat.STATE_* a robot is in (deployment outranks teleoperation)."""
    if deployment_phase == DeploymentStatus.PHASE_FAILED:
        return RobotHeartbeat.STATE_ERROR
    if deployment_phase in _UPDATING_PHASES:
        return RobotHeartbeat.STATE_UPDATING
    if teleop_active:
        return RobotHeartbeat.STATE_TELEOP
    if booting:
        return RobotHeartbeat.STATE_BOOTING
    return RobotHeartbeat.STATE_IDLE


def resource_usage(sample: dict[str, float]) -> ResourceUsage:
    """Return a ResourceUsage from a sampler's fields (unknown byte counts become 0)."""
    usage = ResourceUsage()
    for name, value in sample.items():
        if name in _UINT64_FIELDS:
            setattr(usage, name, int(value) if math.isfinite(value) and value > 0 else 0)
        elif hasattr(usage, name):
            setattr(usage, name, float(value))
    return usage


@dataclass(frozen=True)
class HeartbeatConfig:
    """The heartbeat node's parameters."""

    robot_id: str
    software_version: str
    rate_hz: float
    startup_grace_s: float
    teleop_status_timeout_s: float
    disk_path: str

    def problems(self) -> list[str]:
        """List what is wrong with these values."""
        found = []
        if not self.rate_hz > 0.0:
            found.append(f'rate_hz must be > 0, got {self.rate_hz}')
        for name in ('startup_grace_s', 'teleop_status_timeout_s'):
            if not getattr(self, name) >= 0.0:
                found.append(f'{name} must be >= 0, got {getattr(self, name)}')
        return found


class HeartbeatNode(Node):
    """Publish the robot's heartbeat."""

    def __init__(
        self,
        node_name: str = 'heartbeat',
        *,
        boot_id: str | None = None,
        sampler: ResourceSampler | None = None,
        **node_kwargs: object,
    ) -> None:
        """Declare parameters, then create the publisher, subscriptions and timer."""
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
            raise ValueError('invalid heartbeat parameters: ' + '; '.join(problems))
        self.boot_id = resolve_boot_id(self, boot_id)
        self._sampler = sampler or ResourceSampler(
            time.monotonic, SamplerConfig(disk_path=self.config.disk_path)
        )
        self._started_at = time.monotonic()
        self._sequence = 0
        self._teleop: tuple[bool, float, float] | None = None  # active, score, received at
        self._deployment_phase: int | None = None

        self._publisher = self.create_publisher(RobotHeartbeat, 'fleet/heartbeat', STATUS_QOS)
        self.create_subscription(TeleopStatus, 'teleop/status', self._on_teleop, STATUS_QOS)
        self.create_subscription(
            DeploymentStatus, 'fleet/deployment_status', self._on_deployment, HISTORY_QOS
        )
        self.create_subscription(
            BatteryState, 'battery_state', self._on_battery, qos_profile_sensor_data
        )
        self.create_timer(1.0 / self.config.rate_hz, self._publish)

    def _read_parameters(self) -> HeartbeatConfig:
        def declare(name: str, default: object, description: str) -> Any:
            descriptor = ParameterDescriptor(description=description, read_only=True)
            return self.declare_parameter(name, default, descriptor).value

        return HeartbeatConfig(
            robot_id=str(declare('robot_id', 'kiwi-001', 'Robot id, as enrolled on the server.')),
            software_version=str(
                declare('software_version', '', 'Release deployed on the robot.')
            ),
            rate_hz=float(declare('rate_hz', 1.0, 'Heartbeats per second.')),
            startup_grace_s=float(
                declare(
                    'startup_grace_s',
                    5.0,
                    'Seconds the robot reports BOOTING unless teleop status arrives sooner.',
                )
            ),
            teleop_status_timeout_s=float(
                declare(
                    'teleop_status_timeout_s',
                    3.0,
                    'A teleop/status older than this (s) no longer counts as active.',
                )
            ),
            disk_path=str(declare('disk_path', '/', 'File system whose usage is reported.')),
        )

    def _on_teleop(self, msg: TeleopStatus) -> None:
        self._teleop = (bool(msg.active), float(msg.score), time.monotonic())

    def _on_deployment(self, msg: DeploymentStatus) -> None:
        self._deployment_phase = int(msg.phase)

    def _on_battery(self, msg: BatteryState) -> None:
        self._sampler.set_battery(msg.voltage, msg.percentage, msg.present)

    def make_heartbeat(self) -> RobotHeartbeat:
        """Build the next heartbeat (and count it)."""
        now = time.monotonic()
        active, score = False, 0.0
        teleop_known = self._teleop is not None
        if self._teleop is not None:
            fresh = now - self._teleop[2] <= self.config.teleop_status_timeout_s
            if fresh:
                active, score = self._teleop[0], self._teleop[1]
        booting = not teleop_known and now - self._started_at < self.config.startup_grace_s
        self._sequence += 1
        msg = RobotHeartbeat()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.robot_id = self.config.robot_id
        msg.agent_version = lekiwi_agent_ros.__version__
        msg.software_version = self.config.software_version
        msg.boot_id = self.boot_id
        msg.sequence = self._sequence
        msg.state = derive_state(booting, active, self._deployment_phase)
        msg.teleop_active = active
        msg.teleop_score = score if math.isfinite(score) else 0.0
        msg.resources = resource_usage(self._sampler.sample())
        return msg

    def _publish(self) -> None:
        self._publisher.publish(self.make_heartbeat())


def main(args: Sequence[str] | None = None) -> int:
    """Run the heartbeat node alone (the agent hosts it in its own process by default)."""
    from lekiwi_agent_ros.node_runner import run_nodes

    return run_nodes(lambda: [HeartbeatNode()], args, 'heartbeat')


if __name__ == '__main__':
    import sys

    sys.exit(main())
