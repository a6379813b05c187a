"""Scan planning: expand hosts and CIDR ranges into the probes one scan makes.

Pure: no sockets, no clock. A scan probes each address on the agent's status port and on the
rosbridge port; both are plain data here so the scanner (scanner.py) only runs them.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import Enum

# Above this many addresses a scan is refused: a /16 typed by mistake would otherwise queue
# 65,534 hosts x 2 ports of probes.
MAX_ADDRESSES = 4096


class ProbeKind(str, Enum):
    """What a probe looks for at its port."""

    AGENT = 'agent'  # the agent's local status endpoint (HTTP, JSON)
    ROSBRIDGE = 'rosbridge'  # a stock rosbridge_server (rosbridge v2 over WebSocket)


@dataclass(frozen=True, slots=True)
class Probe:
    address: str
    port: int
    kind: ProbeKind


class TargetError(ValueError):
    """A host or range that cannot be scanned (malformed, too large)."""


def expand_targets(specs: Iterable[str], max_addresses: int = MAX_ADDRESSES) -> list[str]:
    """Expand IP addresses and CIDR ranges into addresses, in order, without duplicates.

    A network's own and broadcast addresses are left out (as `ip_network.hosts()` does), except
    for /31 and /32 (and IPv6 /127, /128), where every address is a host.
    """
    seen: dict[str, None] = {}
    for raw in specs:
        spec = raw.strip()
        if not spec:
            continue
        try:
            network = ipaddress.ip_network(spec, strict=False)
        except ValueError:
            raise TargetError(f'not an IP address or CIDR range: {spec!r}') from None
        if network.num_addresses > max_addresses:
            raise TargetError(f'{spec} has {network.num_addresses} addresses; at most '
                              f'{max_addresses} may be scanned at once')
        hosts: Iterable[object] = network.hosts() if network.num_addresses > 2 else network
        for host in hosts:
            seen[str(host)] = None
            if len(seen) > max_addresses:
                raise TargetError(f'the targets hold more than {max_addresses} addresses')
    return list(seen)


def plan_probes(addresses: Sequence[str], *, agent_port: int | None,
                rosbridge_port: int | None) -> list[Probe]:
    """Return the probes of a scan: each address on each port asked for.

    Ordered address by address so that the first results cover whole hosts early.
    """
    kinds: list[tuple[int, ProbeKind]] = []
    if agent_port is not None:
        kinds.append((_port(agent_port), ProbeKind.AGENT))
    if rosbridge_port is not None:
        kinds.append((_port(rosbridge_port), ProbeKind.ROSBRIDGE))
    if not kinds:
        raise TargetError('a scan needs an agent port, a rosbridge port or both')
    return [Probe(address, port, kind) for address in addresses for port, kind in kinds]


def _port(port: int) -> int:
    if not 1 <= port <= 65535:
        raise TargetError(f'port {port} is outside 1..65535')
    return port
