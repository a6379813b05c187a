"""PeerRegistry: the streamer's operator peers and what it reports about them (pure).

A peer is registered when its offer is accepted, counts as connected once its connection is
up, and is dropped when it closes or fails, when it has not connected within
`connect_timeout_s`, or when its data channel has been silent for `idle_timeout_s` (the robot
pings every peer with an open channel, so a live operator always answers).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class StreamerSnapshot:
    """What the streamer reports on webrtc/status."""

    connected_peers: int
    video_tracks_sending: int
    round_trip_ms: float  # NaN when never measured
    round_trip_measured_at: float | None  # Unix seconds
    last_command_at: float | None  # Unix seconds
    command_round_trips_ms: tuple[tuple[str, float], ...] = ()  # (peer id, last command loop)

    def counts(self) -> tuple[int, int]:
        """Return the fields whose change is published at once."""
        return self.connected_peers, self.video_tracks_sending


@dataclass
class _Peer:
    registered: float
    connected: bool = False
    video: bool = False
    channel_open: bool = False
    last_heard: float = 0.0
    command_rtt_ms: float = math.nan


class PeerRegistry:
    """Track operator peers; all times come from the injected clocks."""

    def __init__(
        self,
        max_peers: int,
        connect_timeout_s: float,
        idle_timeout_s: float,
        now: Callable[[], float],
        wall_now: Callable[[], float],
    ) -> None:
        """Start with no peers; `now` is monotonic, `wall_now` Unix seconds."""
        self._max_peers = max_peers
        self._connect_timeout_s = connect_timeout_s
        self._idle_timeout_s = idle_timeout_s
        self._now = now
        self._wall_now = wall_now
        self._peers: dict[str, _Peer] = {}
        self._rtt_ms = math.nan
        self._rtt_at: float | None = None
        self._command_at: float | None = None

    def __len__(self) -> int:
        """Return how many peers are registered (connected or not yet)."""
        return len(self._peers)

    def __contains__(self, peer_id: object) -> bool:
        """Say whether a peer is registered."""
        return peer_id in self._peers

    def is_full(self) -> bool:
        """Say whether another peer would exceed max_peers."""
        return len(self._peers) >= self._max_peers

    def add(self, peer_id: str, video: bool) -> None:
        """Register a peer whose offer was accepted (with or without a video track)."""
        if self.is_full():
            raise OverflowError(f'at most {self._max_peers} peers')
        self._peers[peer_id] = _Peer(registered=self._now(), video=video)

    def set_connected(self, peer_id: str) -> None:
        """Mark a peer's connection as up."""
        peer = self._peers.get(peer_id)
        if peer is not None:
            peer.connected = True
            peer.last_heard = self._now()

    def channel_opened(self, peer_id: str) -> None:
        """Note that a peer opened its data channel (it must answer pings from now on)."""
        peer = self._peers.get(peer_id)
        if peer is not None:
            peer.channel_open = True
            peer.last_heard = self._now()

    def heard_from(self, peer_id: str) -> None:
        """Note any message from a peer (it is alive)."""
        peer = self._peers.get(peer_id)
        if peer is not None:
            peer.last_heard = self._now()

    def command_received(self, peer_id: str) -> None:
        """Note a joystick command from a peer."""
        self.heard_from(peer_id)
        self._command_at = self._wall_now()

    def round_trip(self, peer_id: str, rtt_ms: float) -> None:
        """Record a measured round trip."""
        self.heard_from(peer_id)
        self._rtt_ms = rtt_ms
        self._rtt_at = self._wall_now()

    def command_round_trip(self, peer_id: str, rtt_ms: float) -> None:
        """Record a peer's measured command round trip (command ack -> its answer)."""
        self.heard_from(peer_id)
        peer = self._peers.get(peer_id)
        if peer is not None:
            peer.command_rtt_ms = rtt_ms

    def remove(self, peer_id: str) -> bool:
        """Forget a peer; say whether it was registered."""
        known = self._peers.pop(peer_id, None) is not None
        if not any(p.connected for p in self._peers.values()):
            # A round trip describes a live command loop: with no peer left there is none.
            self._rtt_ms = math.nan
            self._rtt_at = None
        return known

    def channel_peers(self) -> list[str]:
        """Return the connected peers with an open data channel (the ones to ping)."""
        return [pid for pid, p in self._peers.items() if p.connected and p.channel_open]

    def expired(self) -> list[str]:
        """Return peers that never connected in time or whose channel went silent."""
        now = self._now()
        found = []
        for peer_id, peer in self._peers.items():
            if not peer.connected:
                if now - peer.registered > self._connect_timeout_s:
                    found.append(peer_id)
            elif peer.channel_open and self._idle_timeout_s > 0 and \
                    now - peer.last_heard > self._idle_timeout_s:
                found.append(peer_id)
        return found

    def snapshot(self, camera_live: bool) -> StreamerSnapshot:
        """Return the status to publish; tracks count only while camera frames flow."""
        connected = [p for p in self._peers.values() if p.connected]
        tracks = sum(1 for p in connected if p.video) if camera_live else 0
        loops = tuple((pid, p.command_rtt_ms) for pid, p in self._peers.items()
                      if p.connected and not math.isnan(p.command_rtt_ms))
        return StreamerSnapshot(len(connected), tracks, self._rtt_ms, self._rtt_at,
                                self._command_at, loops)
