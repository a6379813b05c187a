"""Server-side reconstruction of `TelemetryDelta` streams (the receiver of the agent's encoder).

Semantics (docs/ARCHITECTURE.md): a full snapshot carries every field and resets the receiver's
state; a delta carries only fields that changed beyond their threshold and applies on top of the
full snapshot named by its `base_sequence`. Deltas of one boot arrive in sequence order (history
messages are sent in `seq` order) and a coalesced delta is simply a delta with more fields.
A delta whose base the receiver does not hold (a snapshot lost to retention, an earlier boot)
still applies its fields, but the state is marked incomplete until the next full snapshot, so the
server never claims to know a field it has not been told. Pure: no I/O, no clock.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# ResourceUsage field names, the telemetry fields the history table has a column for.
TELEMETRY_FIELDS: tuple[str, ...] = (
    'cpu_percent', 'load_average_1min', 'memory_used_bytes', 'memory_total_bytes',
    'disk_used_bytes', 'disk_total_bytes', 'temperature_c', 'battery_voltage_v',
    'battery_percent', 'network_tx_bytes_per_s', 'network_rx_bytes_per_s', 'uptime_s',
)

MAX_FIELDS = 64  # more distinct fields than a robot sensibly reports: refuse the delta


class InvalidTelemetry(ValueError):
    """A TelemetryDelta that cannot be applied (ill-typed or inconsistent fields)."""


@dataclass(frozen=True, slots=True)
class TelemetryDeltaReading:
    """The parts of a `TelemetryDelta` message the server uses."""

    boot_id: str
    sequence: int
    base_sequence: int
    full_snapshot: bool
    values: Mapping[str, float | None]
    stamp: float  # header stamp, Unix seconds; 0.0 when the robot sent none

    @classmethod
    def from_msg(cls, msg: Mapping[str, Any], fallback_boot_id: str) -> TelemetryDeltaReading:
        """Parse a rosbridge-JSON TelemetryDelta; raise InvalidTelemetry on bad input."""
        names = msg.get('field_names', [])
        values = msg.get('field_values', [])
        if not isinstance(names, list) or not isinstance(values, list):
            raise InvalidTelemetry('field_names and field_values must be arrays')
        if len(names) != len(values):
            raise InvalidTelemetry(
                f'{len(names)} field_names but {len(values)} field_values')
        if len(names) > MAX_FIELDS:
            raise InvalidTelemetry(f'more than {MAX_FIELDS} fields')
        parsed: dict[str, float | None] = {}
        for name, value in zip(names, values, strict=True):
            if not isinstance(name, str) or not name or len(name) > 64 or not name.isprintable():
                raise InvalidTelemetry(f'bad field name {name!r}')
            parsed[name] = _number(value, name)
        sequence = _uint(msg.get('sequence', 0), 'sequence')
        base = _uint(msg.get('base_sequence', 0), 'base_sequence')
        full = msg.get('full_snapshot', False)
        if not isinstance(full, bool):
            raise InvalidTelemetry('full_snapshot must be a boolean')
        boot_id = msg.get('boot_id') or fallback_boot_id
        if not isinstance(boot_id, str) or len(boot_id) > 64 or not boot_id.isprintable():
            raise InvalidTelemetry('boot_id must be a printable string of at most 64 characters')
        return cls(boot_id=boot_id, sequence=sequence, base_sequence=sequence if full else base,
                   full_snapshot=full, values=parsed, stamp=stamp_seconds(msg))


@dataclass(frozen=True, slots=True)
class TelemetryState:
    """What the receiver holds for one robot: the reconstructed values of its newest delta."""

    boot_id: str | None = None
    sequence: int = 0  # TelemetryDelta.sequence of the newest applied delta
    base_sequence: int | None = None  # the full snapshot the values build on
    complete: bool = False  # False until a full snapshot of this boot was applied
    values: Mapping[str, float | None] = field(default_factory=dict)
    stamp: float = 0.0  # header stamp of the newest applied delta

    def apply(self, delta: TelemetryDeltaReading) -> TelemetryState:
        """Return the state after `delta`."""
        if delta.full_snapshot:
            return TelemetryState(delta.boot_id, delta.sequence, delta.sequence, True,
                                  dict(delta.values), delta.stamp)
        same_base = delta.boot_id == self.boot_id and delta.base_sequence == self.base_sequence
        if same_base:
            merged = dict(self.values)
            merged.update(delta.values)
            return TelemetryState(delta.boot_id, delta.sequence, delta.base_sequence,
                                  self.complete, merged, delta.stamp)
        # The base snapshot is unknown here: keep only what this delta says.
        return TelemetryState(delta.boot_id, delta.sequence, delta.base_sequence, False,
                              dict(delta.values), delta.stamp)

    def is_stale(self, delta: TelemetryDeltaReading) -> bool:
        """Return True when `delta` is not newer than this state's delta of the same boot."""
        return delta.boot_id == self.boot_id and delta.sequence <= self.sequence

    def is_earlier_boot(self, delta: TelemetryDeltaReading) -> bool:
        """Return True when `delta` belongs to a boot older than this state's (robot clock)."""
        return (self.boot_id is not None and delta.boot_id != self.boot_id
                and 0 < delta.stamp < self.stamp)

    def to_json(self) -> dict[str, Any]:
        """Return a JSON-ready dict of this state."""
        return {'boot_id': self.boot_id, 'sequence': self.sequence,
                'base_sequence': self.base_sequence, 'complete': self.complete,
                'values': dict(self.values), 'stamp': self.stamp}

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> TelemetryState:
        """Return the state `to_json` wrote (an empty state for None)."""
        if not data:
            return cls()
        return cls(data.get('boot_id'), int(data.get('sequence', 0)),
                   data.get('base_sequence'), bool(data.get('complete', False)),
                   dict(data.get('values') or {}), float(data.get('stamp', 0.0)))


def stamp_seconds(msg: Mapping[str, Any]) -> float:
    """Return a message's header stamp as Unix seconds, 0.0 when absent or ill-typed."""
    header = msg.get('header')
    if header.__class__ is not dict and not isinstance(header, Mapping):  # dict: no ABC check
        return 0.0
    stamp = header.get('stamp')  # type: ignore[union-attr]
    if stamp.__class__ is not dict and not isinstance(stamp, Mapping):
        return 0.0
    sec, nanosec = stamp.get('sec', 0), stamp.get('nanosec', 0)
    if not isinstance(sec, int) or not isinstance(nanosec, int) or isinstance(sec, bool):
        return 0.0
    return sec + nanosec / 1e9


def _number(value: Any, name: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidTelemetry(f'field {name!r} must be a number or null')
    try:
        value = float(value)
    except OverflowError as exc:
        raise InvalidTelemetry(f'field {name!r} is beyond any float') from exc
    return value if math.isfinite(value) else None


def _uint(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**63:
        raise InvalidTelemetry(f'{name} must be an integer 0..2^63-1')
    return value

