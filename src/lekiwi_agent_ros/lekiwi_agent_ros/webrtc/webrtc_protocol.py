"""The operator data channel's messages and the robot's round-trip pings (pure).

Every message is one JSON object with a `type`:
- operator -> robot `{"type": "joy", "axes": [-1..1, ...], "buttons": [int, ...], "id": x}`: a
  joystick command, republished on `joy` as sensor_msgs/Joy stamped with the robot's clock
  (`id`, optional, an integer or a string of at most 64 characters);
- robot -> operator `{"type": "ack", "id": x, "seq": n}` once that command is published on
  `joy` (its effect on the robot): the operator times its command's round trip from its own
  `id`, and answers at once with operator -> robot `{"type": "ack", "seq": n}`, so the robot
  times the same command loop on its own clock, per operator (the latency signal of teleop);
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
    command_id: str | int | None = None


@dataclass(frozen=True)
class CommandAck:
    """The operator's answer to the robot's acknowledgement of one of its commands."""

    seq: int


@dataclass(frozen=True)
class OperatorPing:
    """A ping from the operator, to be echoed."""

    ping_id: str | int


@dataclass(frozen=True)
class Pong:
    """The operator's answer to one of the robot's pings."""

    ping_id: int


Message = JoyCommand | CommandAck | OperatorPing | Pong


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
        command_id = data.get('id')
        if command_id is not None:
            command_id = _client_id(command_id, 'joy id')
        return JoyCommand(_axes(data.get('axes', [])), _buttons(data.get('buttons', [])),
                          command_id)
    if kind == 'ack':
        seq = data.get('seq')
        if isinstance(seq, bool) or not isinstance(seq, int):
            raise ProtocolError('ack seq must be an integer')
        return CommandAck(seq)
    if kind == 'pong':
        ping_id = data.get('id')
        if isinstance(ping_id, bool) or not isinstance(ping_id, int):
            raise ProtocolError('pong id must be an integer')
        return Pong(ping_id)
    if kind == 'ping':
        return OperatorPing(_client_id(data.get('id', 0), 'ping id'))
    raise ProtocolError(f'unknown message type {kind!r}')


def _client_id(value: object, what: str) -> str | int:
    """Validate an id the operator chose (echoed back): an integer or a short string."""
    if isinstance(value, bool) or not isinstance(value, str | int) or (
            isinstance(value, str) and len(value) > 64):
        raise ProtocolError(f'{what} must be an integer or a string of at most 64 chars')
    return value


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

    def next_id(self) -> int:
        """Return the next id and remember when it left."""
        ping_id = self._next_id
        self._next_id += 1
        self._outstanding[ping_id] = self._now()
        while len(self._outstanding) > self._max_outstanding:
            self._outstanding.popitem(last=False)
        return ping_id

    def next_ping(self) -> str:
        """Return the next ping message and remember when it left."""
        return encode('ping', id=self.next_id())

    def on_pong(self, pong: Pong) -> float | None:
        """Return the round trip (ms) a pong closes, or None for an unknown or repeated id."""
        return self.close(pong.ping_id)

    def close(self, sent_id: int) -> float | None:
        """Return the round trip (ms) an answer to `sent_id` closes; None if unknown/repeated."""
        sent = self._outstanding.pop(sent_id, None)
        if sent is None:
            return None
        self.last_rtt_ms = max(0.0, (self._now() - sent) * 1000.0)
        return self.last_rtt_ms
