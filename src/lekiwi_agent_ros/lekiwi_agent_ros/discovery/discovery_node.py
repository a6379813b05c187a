"""DiscoveryNode: the agent's local status endpoint and its `_lekiwi._tcp` mDNS announcement.

It learns the robot id, versions and state from `fleet/heartbeat` (so it needs no hook into
the other nodes), serves them on GET /lekiwi/status for the server's scans, and announces them
over mDNS once the first heartbeat arrived. Off unless `discovery_enabled` is true
(config/agent.yaml turns it on for robots): tests and demos open no port they did not ask for.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rcl_interfaces.msg import ParameterDescriptor
from rclpy.node import Node

from lekiwi_agent_ros.discovery.status import AgentStatus
from lekiwi_agent_ros.msg_types import RobotHeartbeat
from lekiwi_agent_ros.telemetry.heartbeat import STATUS_QOS


@dataclass(frozen=True)
class DiscoveryConfig:
    enabled: bool
    status_host: str
    status_port: int
    mdns: bool
    mdns_addresses: tuple[str, ...]
    mdns_interfaces: tuple[str, ...]
    mdns_ttl_s: int


def announced_addresses(status_host: str, configured: Sequence[str]) -> list[str]:
    """Return the IPv4 addresses to announce: configured, the bound one, or every non-loopback."""
    if configured:
        return list(configured)
    if status_host not in ('0.0.0.0', ''):
        return [status_host]
    import ifaddr  # zeroconf's own dependency

    found = [str(ip.ip) for adapter in ifaddr.get_adapters() for ip in adapter.ips
             if isinstance(ip.ip, str) and not ip.ip.startswith('127.')]
    return found or ['127.0.0.1']


class DiscoveryNode(Node):
    """Serve the status endpoint and announce the robot over mDNS."""

    def __init__(self, node_name: str = 'discovery', **node_kwargs: Any) -> None:
        super().__init__(node_name, **node_kwargs)
        self.config = self._read_parameters()
        self._status: AgentStatus | None = None
        self._endpoint: Any = None
        self._announcer: Any = None
        # Announcing blocks (name probing): one worker thread takes the newest status.
        self._to_announce: queue.Queue[AgentStatus | None] = queue.Queue()
        self._worker: threading.Thread | None = None
        if not self.config.enabled:
            return
        from lekiwi_agent_ros.discovery.status_endpoint import StatusEndpoint

        try:
            self._endpoint = StatusEndpoint(self.config.status_host, self.config.status_port,
                                            lambda: self._status).start()
            self.get_logger().info(f'status endpoint on {self.config.status_host}:'
                                   f'{self._endpoint.port}')
        except OSError as exc:
            # Discovery is a convenience: a taken port must not stop the robot's agent.
            self.get_logger().error(f'status endpoint not started on {self.config.status_host}'
                                    f':{self.config.status_port}: {exc}')
        if self.config.mdns:
            from lekiwi_agent_ros.discovery.announcer import MdnsAnnouncer

            self._announcer = MdnsAnnouncer(
                announced_addresses(self.config.status_host, self.config.mdns_addresses),
                self.config.mdns_ttl_s, self.config.mdns_interfaces)
            self._worker = threading.Thread(target=self._announce_loop,
                                            name='lekiwi-mdns', daemon=True)
            self._worker.start()
        self.create_subscription(RobotHeartbeat, 'fleet/heartbeat', self._on_heartbeat,
                                 STATUS_QOS)

    @property
    def status_port(self) -> int | None:
        """Return the port the status endpoint listens on (None when disabled)."""
        return self._endpoint.port if self._endpoint is not None else None

    def _read_parameters(self) -> DiscoveryConfig:
        def declare(name: str, default: object, description: str) -> Any:
            descriptor = ParameterDescriptor(description=description, read_only=True)
            return self.declare_parameter(name, default, descriptor).value

        def words(value: str) -> tuple[str, ...]:
            return tuple(w.strip() for w in value.split(',') if w.strip())

        return DiscoveryConfig(
            enabled=bool(declare('discovery_enabled', False,
                                 'Serve GET /lekiwi/status and announce _lekiwi._tcp.')),
            status_host=str(declare('status_host', '127.0.0.1',
                                    'Address the status endpoint binds (0.0.0.0: all).')),
            status_port=int(declare('status_port', 8765, 'Port of the status endpoint.')),
            mdns=bool(declare('mdns_announce', True, 'Announce _lekiwi._tcp over mDNS.')),
            mdns_addresses=words(str(declare(
                'mdns_addresses', '', 'Comma-separated IPv4 addresses to announce '
                '(empty: the bound address, or every non-loopback one).'))),
            mdns_interfaces=words(str(declare(
                'mdns_interfaces', '', 'Comma-separated interface addresses mDNS uses '
                '(empty: all).'))),
            mdns_ttl_s=int(declare('mdns_ttl_s', 120, 'TTL of the mDNS records (s).')),
        )

    def _on_heartbeat(self, msg: RobotHeartbeat) -> None:
        status = AgentStatus(msg.robot_id, msg.agent_version, msg.software_version,
                             msg.boot_id, int(msg.state), self.status_port or 0)
        previous, self._status = self._status, status
        if self._announcer is not None and (previous is None or previous.txt() != status.txt()):
            self._to_announce.put(status)

    def _announce_loop(self) -> None:
        while (status := self._to_announce.get()) is not None:
            try:
                self._announcer.announce(status)
            except Exception as exc:  # a network without multicast must not end the agent
                self.get_logger().warning(f'mDNS announcement failed: {exc}')

    def destroy_node(self) -> None:
        """Say goodbye over mDNS, close the endpoint, then destroy the node."""
        if self._worker is not None:
            self._to_announce.put(None)
            self._worker.join(5)
        if self._announcer is not None:
            self._announcer.close()
        if self._endpoint is not None:
            self._endpoint.close()
        super().destroy_node()


def main(args: Sequence[str] | None = None) -> int:
    """Run the discovery node on its own."""
    from lekiwi_agent_ros.node_runner import run_nodes

    return run_nodes(lambda: [DiscoveryNode()], args, 'discovery')
