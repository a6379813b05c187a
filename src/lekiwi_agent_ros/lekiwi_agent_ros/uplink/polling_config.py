"""The polling fallback's parameters (fleet_uplink declares them here, in one place).

Without httpx: a robot that polls never (no `poll_url`) never imports the HTTP transport.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lekiwi_agent_ros.uplink.ack_latency import LatencyConfig

if TYPE_CHECKING:
    from rclpy.node import Node

    from lekiwi_agent_ros.uplink.http_transport import PollingFallback
    from lekiwi_agent_ros.uplink.uplink_session import Log


@dataclass(frozen=True)
class PollingConfig:
    """Where and how the uplink polls, and when it goes back to the WebSocket."""

    poll_url: str  # the fleet API's base URL, http:// or https://
    latency: LatencyConfig = field(default_factory=LatencyConfig)
    long_poll_s: float = 20.0  # the server holds a GET at most this (and its own cap)
    probe_base_s: float = 5.0  # first WebSocket probe this long after falling back
    probe_cap_s: float = 60.0  # probes back off (doubling) up to this
    request_timeout_s: float = 10.0  # beyond the long-poll wait
    # A POST waits this long after the first frame to send, so the frames of a heartbeat
    # period go in one request (one set of HTTP headers) and a newer heartbeat supersedes
    # an older one in the outbox rather than costing a request of its own.
    post_linger_s: float = 1.0

    def problems(self) -> list[str]:
        """List what is wrong with these values."""
        found = []
        if not self.poll_url.startswith(('http://', 'https://')):
            found.append(f'poll_url must start with http:// or https://, got {self.poll_url!r}')
        if not 0 < self.probe_base_s <= self.probe_cap_s:
            found.append(f'need 0 < probe_base_s <= probe_cap_s, got {self.probe_base_s}, '
                         f'{self.probe_cap_s}')
        if not self.long_poll_s >= 0:
            found.append(f'long_poll_s must be >= 0, got {self.long_poll_s}')
        if not 0 <= self.post_linger_s <= 10:
            found.append(f'post_linger_s must be 0..10, got {self.post_linger_s}')
        return found


TRANSPORT_MODES = ('auto', 'websocket', 'polling')


def transport_problem(mode: object, polling_available: bool) -> str | None:
    """Return why `mode` cannot be the uplink's `transport` parameter now, or None."""
    if mode not in TRANSPORT_MODES:
        return f'transport must be one of {", ".join(TRANSPORT_MODES)}, got {mode!r}'
    if mode == 'polling' and not polling_available:
        return 'transport polling needs the poll_url parameter'
    return None


def declare_transport(node: Node) -> str:
    """Declare the uplink's `transport` parameter (changeable at run time); return it."""
    from rcl_interfaces.msg import ParameterDescriptor

    descriptor = ParameterDescriptor(
        description='auto: the WebSocket, HTTP polling when it is refused or slow; websocket: '
                    'the WebSocket only; polling: HTTP polling only (needs poll_url). '
                    'The uplink_transport feature flag sets it (fleet_uplink:transport).',
        additional_constraints='one of auto, websocket, polling')
    return str(node.declare_parameter('transport', 'auto', descriptor).value)


def read_polling_config(node: Node) -> PollingConfig | None:
    """Declare the fallback's parameters on the uplink node; None when `poll_url` is empty."""
    from rcl_interfaces.msg import ParameterDescriptor

    def declare(name: str, default: object, description: str) -> Any:
        descriptor = ParameterDescriptor(description=description, read_only=True)
        return node.declare_parameter(name, default, descriptor).value

    url = str(declare('poll_url', '', 'Fleet API base URL (http:// or https://) for HTTP '
                      'long polling when the WebSocket is refused or slow; empty: no fallback.'))
    latency = LatencyConfig(
        threshold_s=float(declare('fallback_latency_p99_ms', 500.0,
                                  'Ack latency p99 over this (ms) moves the uplink to polling.'))
        / 1000.0,
        window_s=float(declare('fallback_latency_window_s', 30.0,
                               'Window of the ack latency p99 (s).')),
        min_samples=int(declare('fallback_latency_min_samples', 10,
                                'Fewer acks in the window than this: no verdict yet.')),
    )
    config = PollingConfig(
        poll_url=url, latency=latency,
        long_poll_s=float(declare('long_poll_s', 20.0, 'Longest wait of a polling GET (s).')),
        probe_base_s=float(declare('websocket_probe_base_s', 5.0,
                                   'First WebSocket probe this long after falling back (s).')),
        probe_cap_s=float(declare('websocket_probe_cap_s', 60.0,
                                  'WebSocket probes back off, doubling, up to this (s).')),
        post_linger_s=float(declare('post_linger_s', 1.0,
                                    'While polling, a POST waits this long to take the frames '
                                    'of a heartbeat period along (s); 0: at once.')),
    )
    if not url:
        return None
    problems = config.problems()
    if problems:
        raise ValueError('invalid fleet_uplink parameters: ' + '; '.join(problems))
    return config


def polling_fallback(node: Node, ws_url: str, robot_id: str, log: Log,
                     user_agent: str) -> PollingFallback | None:
    """Return the uplink's polling fallback as its parameters say, or None without poll_url."""
    config = read_polling_config(node)
    if config is None:
        return None
    from lekiwi_agent_ros.uplink.http_transport import PollingFallback

    return PollingFallback(config, ws_url, robot_id, log, user_agent=user_agent)

