"""Server-dialled mode: ingest a robot that runs a stock rosbridge_server instead of our uplink.

The server connects to the robot as a rosbridge v2 client, subscribes to the fleet topics and
hands every message to the gateway exactly as an uplink frame: the same validation
(domain/protocol.py), the same commit batcher and store, the same presence (the session is
attached to the gateway like an uplink session, pinged when idle, dropped when silent) and so
the same events. A stock rosbridge_server does not number its messages: each connection gets
a boot id of its own (`rb-...`) and numbers the frames it received 1, 2, 3, ... so that every
message is stored once; acks have nobody to go to and are dropped. A robot that is not
enrolled is listed in the inventory as discovered and not ingested. Reconnects back off
exponentially with jitter.
"""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import websockets
from starlette.concurrency import run_in_threadpool

from lekiwi_fleet_server.discovery import rosbridge_v2
from lekiwi_fleet_server.discovery.inventory import Sighting, Source
from lekiwi_fleet_server.domain import protocol
from lekiwi_fleet_server.domain.protocol import ErrorCode, ProtocolError
from lekiwi_fleet_server.domain.topics import TOPIC_TYPES
from lekiwi_fleet_server.store.interface import FleetStore

if TYPE_CHECKING:
    from lekiwi_fleet_server.discovery.service import DiscoveryService
    from lekiwi_fleet_server.gateway.server import RobotGateway

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class DialTarget:
    robot_id: str
    url: str

    @property
    def address(self) -> str | None:
        return urlsplit(self.url).hostname

    @property
    def port(self) -> int:
        return urlsplit(self.url).port or 9090


def parse_dial_target(spec: str) -> DialTarget:
    """Parse `robot_id=ws://host:port/`; raise ValueError naming what is wrong."""
    robot_id, sep, url = spec.partition('=')
    robot_id, url = robot_id.strip(), url.strip()
    if not sep or not url.startswith(('ws://', 'wss://')):
        raise ValueError(f'rosbridge robot must be "robot_id=ws://host:port/": {spec!r}')
    protocol.parse_auth({'robot_id': robot_id, 'token': 'x', 'protocol': ['x']})  # id check
    return DialTarget(robot_id, url)


class DialledSession:
    """What the gateway holds for a dialled robot: the counterpart of an uplink RobotSession."""

    def __init__(self, robot_id: str, ws: websockets.ClientConnection,
                 on_pong: Callable[[], None]) -> None:
        self.robot_id = robot_id
        self._ws = ws
        self._on_pong = on_pong
        self.closed_by_gateway: str | None = None
        # What the gateway's re-check of live sessions reads: the server dialled this robot,
        # so no token authenticated it (enrolment alone admits it) and no picows socket holds it.
        self.token_sha256: str | None = None
        self.fd: int | None = None

    def send(self, data: bytes) -> bool:
        """Drop acks: a stock rosbridge_server has no use for them."""
        return True

    def refuse(self, error: ProtocolError) -> None:
        """Log a refused message; close when the error says so (replaced, server stop)."""
        log.warning('rosbridge robot %s: %s', self.robot_id, error)
        if error.close_code is not None:
            self.close(error.close_code, error.code.value)

    def peer_address(self) -> str | None:
        """Return the robot's IP address."""
        peer = self._ws.remote_address
        return str(peer[0]) if peer else None

    def ping(self) -> None:
        """Ping the robot's rosbridge_server (presence checks an idle robot with it)."""
        async def ping() -> None:
            try:
                await asyncio.wait_for(await self._ws.ping(), 10.0)
                self._on_pong()
            except (websockets.ConnectionClosed, TimeoutError):
                pass
        asyncio.get_running_loop().create_task(ping())

    def close(self, code: int, reason: str, graceful: bool = True) -> None:
        """Close the connection (the ingest loop then reconnects with backoff)."""
        self.closed_by_gateway = reason
        asyncio.get_running_loop().create_task(self._ws.close(code, reason[:120]))


class RosbridgeIngest:
    """Keep one dialled rosbridge robot ingested, reconnecting with backoff."""

    def __init__(self, target: DialTarget, gateway: RobotGateway, store: FleetStore,
                 discovery: DiscoveryService, *, backoff_base_s: float = 0.5,
                 backoff_cap_s: float = 30.0, open_timeout_s: float = 5.0) -> None:
        self.target = target
        self._gateway = gateway
        self._store = store
        self._discovery = discovery
        self._base, self._cap = backoff_base_s, backoff_cap_s
        self._open_timeout_s = open_timeout_s
        self.connections = 0
        self.ingested = 0
        self.refused = 0
        self.state = 'idle'

    async def run(self) -> None:
        """Dial, ingest until the connection ends, back off, dial again; until cancelled."""
        failures = 0
        while True:
            try:
                ingested_before = self.ingested
                await self._connect_once()
                failures = 0 if self.ingested > ingested_before else failures + 1
            except (OSError, TimeoutError, websockets.exceptions.WebSocketException) as exc:
                self.state = f'unreachable: {type(exc).__name__}'
                failures += 1
            delay = min(self._cap, self._base * 2 ** min(failures, 16))
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))  # jitter: no herd at restart

    async def _connect_once(self) -> None:
        target = self.target
        async with websockets.connect(target.url, open_timeout=self._open_timeout_s,
                                      max_size=4 * self._gateway.settings.max_frame_bytes,
                                      ping_interval=None, compression=None) as ws:
            self.connections += 1
            credentials = await run_in_threadpool(self._store.robot_credentials,
                                                  target.robot_id)
            enrolled = credentials is not None and not credentials.revoked
            if enrolled:
                self._discovery.inventory.mark_enrolled(target.robot_id)
            self._discovery.observe(Sighting(
                Source.ROSBRIDGE, self._gateway.now(), target.robot_id, target.address,
                target.port, {'rosbridge': 'v2', 'ingest': 'dialled' if enrolled
                              else 'not_enrolled'}))
            if not enrolled:
                self.state = 'not_enrolled'
                return  # listed as discovered; tried again after the backoff
            await self._ingest(ws)

    async def _ingest(self, ws: websockets.ClientConnection) -> None:
        gateway, robot_id = self._gateway, self.target.robot_id
        session = DialledSession(robot_id, ws, lambda: gateway.heard(robot_id))
        for topic, msg_type in TOPIC_TYPES.items():
            await ws.send(rosbridge_v2.subscribe_frame(f'lekiwi-{topic}', f'/{topic}',
                                                       msg_type))
        boot_id, seq = f'rb-{secrets.token_hex(8)}', 0
        gateway.opened(session)  # type: ignore[arg-type]
        gateway.attach(session)  # type: ignore[arg-type]
        self._discovery.dialled.add(robot_id)
        self.state = 'ingesting'
        try:
            async for payload in ws:
                gateway.heard(robot_id)
                try:
                    frame = rosbridge_v2.decode(payload)
                    if frame['op'] != 'publish':
                        continue  # status, service responses: nothing to ingest
                    topic, msg = rosbridge_v2.published(frame, TOPIC_TYPES)
                    seq += 1
                    ours = protocol.encode({'op': 'publish', 'topic': topic, 'boot_id': boot_id,
                                            'seq': seq, 'msg': msg})
                    protocol.parse_publish(protocol.decode_frame(ours))
                except (rosbridge_v2.RosbridgeError, ProtocolError) as exc:
                    self.refused += 1
                    gateway.count_refused(exc.code if isinstance(exc, ProtocolError)
                                          else ErrorCode.INVALID_MESSAGE)
                    log.warning('rosbridge robot %s: refused a frame: %s', robot_id, exc)
                    continue
                if gateway.submit(robot_id, ours):
                    self.ingested += 1
                else:
                    self.refused += 1
                    log.warning('rosbridge robot %s: server behind on commits, message lost '
                                '(a stock rosbridge_server cannot resend)', robot_id)
        except websockets.ConnectionClosed:
            pass
        finally:
            self.state = 'disconnected'
            self._discovery.dialled.discard(robot_id)
            gateway.closed(session, was_authenticated=True)  # type: ignore[arg-type]
