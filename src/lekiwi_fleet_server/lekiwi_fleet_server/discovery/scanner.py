"""The active scan: probe many addresses at once, each probe bounded by its own timeout.

One asyncio task per probe under a semaphore (no thread per host): a dead host that drops
packets costs one timeout of one slot, and `concurrency` slots run side by side. An agent is
recognised by its status endpoint's JSON, a stock rosbridge_server by a rosbridge v2 exchange
(rosbridge_v2.py), never by an open port alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import websockets

from lekiwi_fleet_server.discovery import rosbridge_v2
from lekiwi_fleet_server.discovery.targets import Probe, ProbeKind

STATUS_PATH = '/lekiwi/status'
AGENT_SERVICE = 'lekiwi-agent'
_MAX_STATUS_BYTES = 16 * 1024
_ROBOT_ID = re.compile(r'[A-Za-z0-9._-]{1,64}')
_DETAILS = ('agent_version', 'software_version', 'enrolled', 'uplink', 'status_port')


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """What one probe found: `found` with the robot's details, or why not."""

    probe: Probe
    found: bool
    elapsed_s: float
    robot_id: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    error: str | None = None  # 'timeout', 'refused', 'not_agent', 'not_rosbridge', ...


@dataclass(frozen=True, slots=True)
class ScanConfig:
    concurrency: int = 512
    timeout_s: float = 1.0  # per probe: connect, exchange and answer together

    def __post_init__(self) -> None:
        if self.concurrency < 1 or self.timeout_s <= 0:
            raise ValueError('need concurrency >= 1 and timeout_s > 0')


OnResult = Callable[[ProbeResult], None]


async def scan(probes: Sequence[Probe], config: ScanConfig,
               on_result: OnResult | None = None) -> list[ProbeResult]:
    """Run every probe, at most `config.concurrency` at once; return results in probe order."""
    slots = asyncio.Semaphore(config.concurrency)

    async def one(probe: Probe) -> ProbeResult:
        async with slots:
            result = await run_probe(probe, config.timeout_s)
        if on_result is not None:
            on_result(result)
        return result

    return list(await asyncio.gather(*(one(p) for p in probes)))


async def scan_serially(probes: Sequence[Probe], config: ScanConfig) -> list[ProbeResult]:
    """Run the probes one after another (the old way; benchmarks compare with it)."""
    return [await run_probe(p, config.timeout_s) for p in probes]


async def run_probe(probe: Probe, timeout_s: float) -> ProbeResult:
    """Run one probe within `timeout_s`; never raise."""
    start = time.monotonic()
    kind = probe.kind
    robot_id: str | None
    try:
        async with asyncio.timeout(timeout_s):
            if kind is ProbeKind.AGENT:
                robot_id, details = await _probe_agent(probe.address, probe.port)
            else:
                robot_id, details = await _probe_rosbridge(probe.address, probe.port)
    except TimeoutError:
        return ProbeResult(probe, False, time.monotonic() - start, error='timeout')
    except ConnectionRefusedError:
        return ProbeResult(probe, False, time.monotonic() - start, error='refused')
    except _NotIt as exc:
        return ProbeResult(probe, False, time.monotonic() - start, error=str(exc))
    except (OSError, websockets.exceptions.WebSocketException) as exc:
        return ProbeResult(probe, False, time.monotonic() - start,
                           error=f'{type(exc).__name__}: {exc}'[:200])
    return ProbeResult(probe, True, time.monotonic() - start, robot_id, details)


class _NotIt(Exception):
    """The port answered, but not as what the probe looks for."""


def _host(address: str) -> str:
    return f'[{address}]' if ':' in address else address


async def _probe_agent(address: str, port: int) -> tuple[str, dict[str, Any]]:
    reader, writer = await asyncio.open_connection(address, port)
    try:
        writer.write(f'GET {STATUS_PATH} HTTP/1.0\r\nHost: {_host(address)}:{port}\r\n'
                     'Accept: application/json\r\nConnection: close\r\n\r\n'.encode())
        await writer.drain()
        raw = await reader.read(_MAX_STATUS_BYTES + 1)
        while len(raw) <= _MAX_STATUS_BYTES:
            more = await reader.read(_MAX_STATUS_BYTES + 1 - len(raw))
            if not more:
                break
            raw += more
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    return parse_agent_status(raw)


def parse_agent_status(raw: bytes) -> tuple[str, dict[str, Any]]:
    """Parse an HTTP response of the agent's status endpoint; raise _NotIt if it is not one."""
    if len(raw) > _MAX_STATUS_BYTES:
        raise _NotIt('not_agent: status response too large')
    head, sep, body = raw.partition(b'\r\n\r\n')
    status_line = head.split(b'\r\n', 1)[0].split()
    if not sep or len(status_line) < 2 or not status_line[0].startswith(b'HTTP/'):
        raise _NotIt('not_agent: no HTTP response')
    if status_line[1] != b'200':
        raise _NotIt(f'not_agent: HTTP {status_line[1].decode(errors="replace")}')
    try:
        status = json.loads(body)
    except ValueError:
        raise _NotIt('not_agent: body is not JSON') from None
    robot_id = status.get('robot_id') if isinstance(status, dict) else None
    if not isinstance(status, dict) or status.get('service') != AGENT_SERVICE \
            or not isinstance(robot_id, str) or not _ROBOT_ID.fullmatch(robot_id):
        raise _NotIt('not_agent: not a LeKiwi agent status')
    return robot_id, {k: status[k] for k in _DETAILS if k in status}


async def _probe_rosbridge(address: str, port: int) -> tuple[None, dict[str, Any]]:
    call_id = f'lekiwi-probe-{secrets.token_hex(4)}'
    async with websockets.connect(f'ws://{_host(address)}:{port}/', open_timeout=None,
                                  close_timeout=0.2, max_size=1024 * 1024,
                                  compression=None) as ws:
        await ws.send(rosbridge_v2.call_service_frame(call_id))
        async for payload in ws:
            try:
                frame = rosbridge_v2.decode(payload)
            except rosbridge_v2.RosbridgeError:
                raise _NotIt('not_rosbridge: answered with a non-rosbridge frame') from None
            if rosbridge_v2.is_service_response_to(frame, call_id):
                return None, {'rosbridge': 'v2', 'probe_service_result': frame['result']}
            # Other ops (status, publish to an earlier subscriber) may come first: wait on.
    raise _NotIt('not_rosbridge: closed without a service_response')
