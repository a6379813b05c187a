"""Announce the agent as DNS-SD `_lekiwi._tcp` over mDNS, with the zeroconf library.

Registration probes the name (about 0.75 s) and so runs in a thread of its own, never in a ROS
callback. The record TTL is short (`ttl_s`) so that a robot that dies without a goodbye drops
out of the server's inventory soon; zeroconf re-announces well before it runs out.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Sequence

from zeroconf import InterfaceChoice, IPVersion, ServiceInfo, Zeroconf

from lekiwi_agent_ros.discovery.status import SERVICE_TYPE, AgentStatus

log = logging.getLogger(__name__)


class MdnsAnnouncer:
    """Keep one `_lekiwi._tcp` service registered with the newest status."""

    def __init__(self, addresses: Sequence[str], ttl_s: int = 120,
                 interfaces: Sequence[str] = ()) -> None:
        self._addresses = [socket.inet_aton(a) for a in addresses]
        self._ttl_s = ttl_s
        self._interfaces: list[str] | InterfaceChoice = list(interfaces) or InterfaceChoice.All
        self._zc: Zeroconf | None = None
        self._info: ServiceInfo | None = None
        self._lock = threading.Lock()  # register/update/close come from different threads

    def announce(self, status: AgentStatus) -> None:
        """Register the service, or update its TXT record when the status changed."""
        info = ServiceInfo(SERVICE_TYPE, status.instance_name(), port=status.status_port,
                           properties=status.txt(), addresses=self._addresses,
                           server=f'{status.robot_id}.local.', host_ttl=self._ttl_s,
                           other_ttl=self._ttl_s)
        with self._lock:
            if self._zc is None:
                self._zc = Zeroconf(interfaces=self._interfaces, ip_version=IPVersion.V4Only)
            if self._info is None:
                self._zc.register_service(info, allow_name_change=False)
            elif self._info.properties != info.properties or self._info.port != info.port:
                self._zc.update_service(info)
            else:
                return
            self._info = info
        log.info('announced %s on port %d', info.name, status.status_port)

    def close(self) -> None:
        """Say goodbye (the server withdraws the robot at once) and stop."""
        with self._lock:
            if self._zc is not None:
                if self._info is not None:
                    self._zc.unregister_service(self._info)
                self._zc.close()
            self._zc = self._info = None
