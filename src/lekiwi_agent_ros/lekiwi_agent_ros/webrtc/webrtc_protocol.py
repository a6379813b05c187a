"""The operator data channel's messages and the robot's round-trip pings (pure).

Every message is one JSON object with a `type`:
- operator -> robot `{"type": "joy", "axes": [-1..1, ...], "buttons": [int, ...]}`: a joystick
  command, republished on `joy` as sensor_msgs/Joy stamped with the robot's clock;
- robot -> operator `{"type": "ping", "id": n}`, answered by operator -> robot
  `{"type": "pong", "id": n}`: the robot times the round trip on its own clock;
- operator -> robot `{"type": "ping", "id": x}` is answered with `{"type": "pong", "id": x}`
  so an operator can measure its own round trip;
- robot -> operator `{"type": "error", "reason": "..."}` for a message that was refused.
"""

from __future__ import annotations

import json
import math
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

MAX_MESSAGE_BYTES = 4096
MAX_AXES = 32
MAX_BUTTONS = 64
_INT32_MAX = 2**31 - 1


class ProtocolError(ValueError):
    """A data-channel message that was refused, with the reason sent back."""


@dataclass(frozen=True)
class JoyCommand:
    """An operator's joystick state."""

    axes: tuple[float, ...]
    buttons: tuple[int, ...]


@dataclass(frozen=True)
class OperatorPing:
    """A ping from the operator, to be echoed."""

    ping_id: str | int


@dataclass(frozen=True)
class Pong:
    """The operator's answer to one of the robot's pings."""

    ping_id: int


Message = JoyCommand | OperatorPing | Pong


def parse_message(raw: str | bytes) -> Message:
    """Parse one data-channel message, or raise ProtocolError saying why not."""
    if len(raw) > MAX_MESSAGE_BYTES:
        raise ProtocolError(f'message larger than {MAX_MESSAGE_BYTES} bytes')
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError('message is not JSON') from exc
    if not isinstance(data, dict):
        raise ProtocolError('message must be a JSON object')
    kind = data.get('type')
    if kind == 'joy':
        return JoyCommand(_axes(data.get('axes', [])), _buttons(data.get('buttons', [])))
    if kind == 'pong':
        ping_id = data.get('id')
        if isinstance(ping_id, bool) or not isinstance(ping_id, int):
            raise ProtocolError('pong id must be an integer')
        return Pong(ping_id)
    if kind == 'ping':
        ping_id = data.get('id', 0)
        if isinstance(ping_id, bool) or not isinstance(ping_id, str | int) or (
                isinstance(ping_id, str) and len(ping_id) > 64):
            raise ProtocolError('ping id must be an integer or a string of at most 64 chars')
        return OperatorPing(ping_id)
    raise ProtocolError(f'unknown message type {kind!r}')


def _axes(value: object) -> tuple[float, ...]:
    """Validate joystick axes: at most MAX_AXES finite numbers within -1..1."""
    if not isinstance(value, list) or len(value) > MAX_AXES:
        raise ProtocolError(f'axes must be a list of at most {MAX_AXES} numbers')
    axes = []
    for v in value:
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise ProtocolError('axes must be finite numbers')
        if not -1.0 <= v <= 1.0:
            raise ProtocolError('axes must be within -1..1')
        axes.append(float(v))
    return tuple(axes)


def _buttons(value: object) -> tuple[int, ...]:
    """Validate joystick buttons: at most MAX_BUTTONS non-negative int32 values."""
    if not isinstance(value, list) or len(value) > MAX_BUTTONS:
        raise ProtocolError(f'buttons must be a list of at most {MAX_BUTTONS} integers')
    for v in value:
        if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= _INT32_MAX:
            raise ProtocolError('buttons must be non-negative integers')
    return tuple(value)


def encode(kind: str, **fields: object) -> str:
    """Encode one outgoing message."""
    return json.dumps({'type': kind, **fields}, separators=(',', ':'))


class RoundTripTracker:
    """Issue numbered pings and time their pongs on the robot's own monotonic clock."""

    def __init__(self, now: Callable[[], float], max_outstanding: int = 16) -> None:
        """Track at most `max_outstanding` unanswered pings (older ones are forgotten)."""
        self._now = now
        self._max_outstanding = max_outstanding
        self._next_id = 1
        self._outstanding: OrderedDict[int, float] = OrderedDict()
        self.last_rtt_ms = math.nan

    def next_ping(self) -> str:
        """Return the next ping message and remember when it left."""
        ping_id = self._next_id
        self._next_id += 1
        self._outstanding[ping_id] = self._now()
        while len(self._outstanding) > self._max_outstanding:
            self._outstanding.popitem(last=False)
        return encode('ping', id=ping_id)

    def on_pong(self, pong: Pong) -> float | None:
        """Return the round trip (ms) a pong closes, or None for an unknown or repeated id."""
        sent = self._outstanding.pop(pong.ping_id, None)
        if sent is None:
            return None
        self.last_rtt_ms = max(0.0, (self._now() - sent) * 1000.0)
        return self.last_rtt_ms
