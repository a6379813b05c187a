"""StreamerService: the WebRTC streamer's asyncio side (signalling, aiortc peers, data channels).

No rclpy here: the node hands in the camera `FrameHub` and two callbacks (publish a joystick
command, publish a status), and runs this service on an asyncio loop in its own thread.

Signalling: `POST /offer` with `Authorization: Bearer <token>` and a JSON body
`{"sdp": "...", "type": "offer"}` answers `{"sdp": "...", "type": "answer"}` once the robot's
ICE candidates are gathered (no trickle). Errors are JSON `{"error": reason}` with 400 (bad
offer), 401 (missing or wrong token), 404, 405, 413 (body over 64 KB) or 503 (max_peers reached).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import math
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path

import aioice.ice
from aiortc import (
    RTCConfiguration,
    RTCDataChannel,
    RTCIceServer,
    RTCPeerConnection,
    RTCSessionDescription,
)

from lekiwi_agent_ros.teleop.round_trips import RoundTripThrottle
from lekiwi_agent_ros.webrtc.signalling_http import HttpError, HttpRequest, HttpResponse, HttpServer
from lekiwi_agent_ros.webrtc.webrtc_media import CameraTrack, FrameHub
from lekiwi_agent_ros.webrtc.webrtc_peers import PeerRegistry, StreamerSnapshot
from lekiwi_agent_ros.webrtc.webrtc_protocol import (
    CommandAck,
    JoyCommand,
    OperatorPing,
    Pong,
    ProtocolError,
    RoundTripTracker,
    encode,
    parse_message,
)

_log = logging.getLogger(__name__)
MIN_TOKEN_CHARS = 16
OFFER_PATH = '/offer'
_HOUSEKEEPING_PERIOD_S = 0.1
ROUND_TRIP_REPORT_PERIOD_S = 0.5


@dataclass(frozen=True)
class StreamerConfig:
    """Settings of the streamer's asyncio side; field names are the node's parameter names."""

    token: str
    bind_address: str = '127.0.0.1'
    port: int = 8088
    max_peers: int = 4
    ping_period_s: float = 0.5
    idle_timeout_s: float = 3.0
    connect_timeout_s: float = 15.0
    status_period_s: float = 1.0
    video_stale_s: float = 1.0
    ice_servers: tuple[str, ...] = ()
    ice_host_addresses: tuple[str, ...] = ()
    cors_allow_origin: str = ''

    def problems(self) -> list[str]:
        """List every reason this configuration does not make sense."""
        found = []
        if len(self.token) < MIN_TOKEN_CHARS:
            found.append(f'an operator token of at least {MIN_TOKEN_CHARS} characters is '
                         'required (parameter operator_token or operator_token_file)')
        if not 0 <= self.port <= 65535:
            found.append(f'port must be within 0..65535, got {self.port}')
        if self.max_peers < 1:
            found.append(f'max_peers must be >= 1, got {self.max_peers}')
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name.endswith('_s') and (not math.isfinite(value) or value < 0 or (
                    value == 0 and f.name != 'idle_timeout_s')):
                found.append(f'{f.name} must be > 0, got {value}')
        for url in self.ice_servers:
            if not url.startswith(('stun:', 'turn:', 'turns:')):
                found.append(f'ice_servers entries must be stun:/turn: URLs, got {url!r}')
        return found

    def validated(self) -> StreamerConfig:
        """Return self, or raise ValueError naming every problem."""
        found = self.problems()
        if found:
            raise ValueError('invalid webrtc_streamer parameters: ' + '; '.join(found))
        return self


def resolve_token(token: str, token_file: str) -> str:
    """Return the operator token from the parameter or the file (exactly one may be set)."""
    if token and token_file:
        raise ValueError('set either operator_token or operator_token_file, not both')
    if token_file:
        try:
            return Path(token_file).read_text(encoding='utf-8').strip()
        except OSError as exc:
            raise ValueError(
                f'cannot read operator_token_file {token_file!r}: {exc.strerror}') from exc
    return token


def restrict_ice_addresses(addresses: tuple[str, ...]) -> None:
    """Offer ICE host candidates only on `addresses` (e.g. 127.0.0.1 in tests).

    aiortc has no option for this: aioice gathers every non-loopback interface address through
    this module function, so the streamer (its own process) replaces it.
    """
    if addresses:
        chosen = list(addresses)
        aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: [  # type: ignore[assignment]
            a for a in chosen if (':' in a and use_ipv6) or (':' not in a and use_ipv4)]


class StreamerService:
    """Serve the camera to operator peers; relay their joystick commands and pings."""

    def __init__(
        self,
        config: StreamerConfig,
        hub: FrameHub,
        publish_joy: Callable[[JoyCommand], None],
        publish_status: Callable[[StreamerSnapshot], None],
        now: Callable[[], float] = time.monotonic,
        wall_now: Callable[[], float] = time.time,
        publish_round_trip: Callable[[str, float], None] | None = None,
    ) -> None:
        """Keep the collaborators; nothing runs until start().

        `publish_round_trip(operator_id, rtt_ms)` gets each operator's command round trips
        (`webrtc/<peer id>`), at most every ROUND_TRIP_REPORT_PERIOD_S per operator.
        """
        self._config = config.validated()
        self._hub = hub
        self._publish_joy = publish_joy
        self._publish_status = publish_status
        self._now = now
        self._registry = PeerRegistry(config.max_peers, config.connect_timeout_s,
                                      config.idle_timeout_s, now, wall_now)
        self._pcs: dict[str, RTCPeerConnection] = {}
        self._channels: dict[str, RTCDataChannel] = {}
        self._trackers: dict[str, RoundTripTracker] = {}
        # Per peer: the acks of its commands, timed until it answers them (its command loop).
        self._command_trackers: dict[str, RoundTripTracker] = {}
        self._publish_round_trip = publish_round_trip
        self._round_trips = RoundTripThrottle(ROUND_TRIP_REPORT_PERIOD_S, now)
        self._http = HttpServer(self.handle)
        self._housekeeping: asyncio.Task[None] | None = None
        self._closing: set[asyncio.Task[None]] = set()
        self._last_counts: tuple[int, int] | None = None
        self._last_status = -math.inf
        self._last_ping = -math.inf
        self.port: int | None = None

    async def start(self) -> int:
        """Listen for offers and start housekeeping; return the bound port."""
        restrict_ice_addresses(self._config.ice_host_addresses)
        self._hub.bind(asyncio.get_running_loop())
        self.port = await self._http.start(self._config.bind_address, self._config.port)
        self._housekeeping = asyncio.create_task(self._housekeep())
        self._maybe_publish(force=True)
        return self.port

    async def stop(self) -> None:
        """Stop listening and close every peer."""
        await self._http.close()
        if self._housekeeping is not None:
            self._housekeeping.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._housekeeping
        for peer_id in list(self._pcs):
            self._drop(peer_id, 'shutdown')
        if self._closing:
            await asyncio.wait(self._closing, timeout=5.0)

    def snapshot(self) -> StreamerSnapshot:
        """Return the current status."""
        return self._registry.snapshot(self._hub.is_live(self._config.video_stale_s))

    async def handle(self, request: HttpRequest) -> HttpResponse:
        """Route one signalling request."""
        cors: tuple[tuple[str, str], ...] = ()
        if self._config.cors_allow_origin:
            cors = (('Access-Control-Allow-Origin', self._config.cors_allow_origin),
                    ('Vary', 'Origin'))
        try:
            if request.path != OFFER_PATH:
                raise HttpError(404, 'not found')
            if request.method == 'OPTIONS':
                return HttpResponse(204, headers=cors + (
                    ('Access-Control-Allow-Methods', 'POST, OPTIONS'),
                    ('Access-Control-Allow-Headers', 'Authorization, Content-Type'),
                    ('Access-Control-Max-Age', '600')))
            if request.method != 'POST':
                raise HttpError(405, 'use POST', (('Allow', 'POST, OPTIONS'),))
            return await self._offer(request, cors)
        except HttpError as exc:
            return HttpResponse.json(exc.status, {'error': exc.reason}, exc.headers + cors)

    def _authorize(self, request: HttpRequest) -> None:
        """Require the operator bearer token."""
        scheme, _, presented = request.headers.get('authorization', '').partition(' ')
        if scheme.lower() != 'bearer' or not hmac.compare_digest(
                presented.strip().encode(), self._config.token.encode()):
            raise HttpError(401, 'a valid operator bearer token is required',
                            (('WWW-Authenticate', 'Bearer'),))

    async def _offer(self, request: HttpRequest,
                     cors: tuple[tuple[str, str], ...]) -> HttpResponse:
        """Answer an operator's offer and register the new peer."""
        self._authorize(request)
        data = request.json()
        if not isinstance(data, dict) or data.get('type') != 'offer' or \
                not isinstance(data.get('sdp'), str):
            raise HttpError(400, 'body must be {"sdp": str, "type": "offer"}')
        if self._registry.is_full():
            raise HttpError(503, f'at most {self._config.max_peers} operator peers',
                            (('Retry-After', '5'),))
        peer_id = uuid.uuid4().hex[:12]
        pc = RTCPeerConnection(RTCConfiguration(
            iceServers=[RTCIceServer(urls=url) for url in self._config.ice_servers]))
        self._watch(peer_id, pc)
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=data['sdp'], type='offer'))
        except Exception as exc:  # aiortc's SDP parser raises many types on hostile input
            await pc.close()
            raise HttpError(400, f'invalid offer: {exc}') from exc
        video = any(t.kind == 'video' for t in pc.getTransceivers())
        if not video and pc.sctp is None:
            # aiortc parses any text as an empty description: refuse what offers nothing.
            await pc.close()
            raise HttpError(400, 'invalid offer: no video and no data channel')
        if video:
            pc.addTrack(CameraTrack(self._hub))
        self._registry.add(peer_id, video)
        self._pcs[peer_id] = pc
        self._trackers[peer_id] = RoundTripTracker(self._now)
        self._command_trackers[peer_id] = RoundTripTracker(self._now)
        try:
            await asyncio.wait_for(pc.setLocalDescription(await pc.createAnswer()), 10.0)
        except Exception as exc:
            self._drop(peer_id, 'answer failed')
            raise HttpError(500, f'cannot answer the offer: {exc}') from exc
        _log.info('operator peer %s offered (video: %s)', peer_id, video)
        answer = pc.localDescription
        return HttpResponse.json(200, {'sdp': answer.sdp, 'type': answer.type}, cors)

    def _watch(self, peer_id: str, pc: RTCPeerConnection) -> None:
        """Follow a peer's connection state and data channel."""

        @pc.on('connectionstatechange')
        def on_state() -> None:
            state = pc.connectionState
            if state == 'connected':
                self._registry.set_connected(peer_id)
                _log.info('operator peer %s connected', peer_id)
                self._maybe_publish()
            elif state in ('failed', 'closed'):
                self._drop(peer_id, state)

        @pc.on('datachannel')
        def on_datachannel(channel: RTCDataChannel) -> None:
            self._channels[peer_id] = channel
            self._registry.channel_opened(peer_id)
            channel.on('message', lambda message: self._on_message(peer_id, channel, message))

    def _on_message(self, peer_id: str, channel: RTCDataChannel, raw: str | bytes) -> None:
        """Handle one data-channel message from an operator."""
        if peer_id not in self._registry:
            return
        try:
            message = parse_message(raw)
        except ProtocolError as exc:
            self._send(channel, encode('error', reason=str(exc)))
            return
        self._registry.heard_from(peer_id)
        if isinstance(message, JoyCommand):
            self._registry.command_received(peer_id)
            try:
                self._publish_joy(message)
            except Exception:  # a publisher closing at shutdown must not kill the channel
                _log.exception('cannot publish a joystick command')
                return
            # Acknowledged once published (its effect here); the answer closes the loop.
            commands = self._command_trackers.get(peer_id)
            if commands is not None:
                self._send(channel, encode('ack', id=message.command_id,
                                           seq=commands.next_id()))
        elif isinstance(message, CommandAck):
            commands = self._command_trackers.get(peer_id)
            rtt = commands.close(message.seq) if commands else None
            if rtt is not None:
                self._registry.command_round_trip(peer_id, rtt)
                self._report_round_trips(self._round_trips.record(f'webrtc/{peer_id}', rtt))
        elif isinstance(message, OperatorPing):
            self._send(channel, encode('pong', id=message.ping_id))
        elif isinstance(message, Pong):
            tracker = self._trackers.get(peer_id)
            rtt = tracker.on_pong(message) if tracker else None
            if rtt is not None:
                self._registry.round_trip(peer_id, rtt)

    def _report_round_trips(self, due: list[tuple[str, float]]) -> None:
        """Hand due per-operator round trips to the publisher."""
        if self._publish_round_trip is None:
            return
        for operator, rtt in due:
            try:
                self._publish_round_trip(operator, rtt)
            except Exception:
                _log.exception('cannot publish a command round trip')

    @staticmethod
    def _send(channel: RTCDataChannel, text: str) -> None:
        """Send on a channel if it is still open."""
        if channel.readyState == 'open':
            channel.send(text)

    def _drop(self, peer_id: str, reason: str) -> None:
        """Forget a peer at once (the count falls now) and close it in the background."""
        known = self._registry.remove(peer_id)
        pc = self._pcs.pop(peer_id, None)
        self._channels.pop(peer_id, None)
        self._trackers.pop(peer_id, None)
        self._command_trackers.pop(peer_id, None)
        self._round_trips.forget(f'webrtc/{peer_id}')
        if known:
            _log.info('operator peer %s left (%s)', peer_id, reason)
            self._maybe_publish()
        if pc is not None:
            task = asyncio.get_running_loop().create_task(pc.close())
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    async def _housekeep(self) -> None:
        """Expire silent peers, ping live ones and publish the status when due."""
        while True:
            await asyncio.sleep(_HOUSEKEEPING_PERIOD_S)
            try:
                for peer_id in self._registry.expired():
                    self._drop(peer_id, 'timed out')
                now = self._now()
                if now - self._last_ping >= self._config.ping_period_s:
                    self._last_ping = now
                    for peer_id in self._registry.channel_peers():
                        channel = self._channels.get(peer_id)
                        tracker = self._trackers.get(peer_id)
                        if channel is not None and tracker is not None:
                            self._send(channel, tracker.next_ping())
                self._report_round_trips(self._round_trips.due())
                self._maybe_publish()
            except Exception:  # keep serving: one bad peer must not stop the streamer
                _log.exception('streamer housekeeping failed')

    def _maybe_publish(self, force: bool = False) -> None:
        """Publish the status if the counts changed or the period is due."""
        snapshot = self.snapshot()
        now = self._now()
        if force or snapshot.counts() != self._last_counts or \
                now - self._last_status >= self._config.status_period_s:
            self._last_counts = snapshot.counts()
            self._last_status = now
            try:
                self._publish_status(snapshot)
            except Exception:
                _log.exception('cannot publish the streamer status')
