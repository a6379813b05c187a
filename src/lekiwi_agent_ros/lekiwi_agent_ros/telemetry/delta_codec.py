"""Telemetry delta compression: `DeltaEncoder` on the robot, `DeltaDecoder` as on the server.

A frame carries the fields that changed beyond their threshold since what the receiver holds,
or every field when it is a full snapshot (the first frame, every `full_snapshot_period_s`, and
on request). Deltas name the full snapshot they build on (`base_sequence`); the receiver applies
them in sequence order. Two deltas of one base merge into one (`merge_frames`) that leaves the
receiver exactly where the two would have: the outbox uses it when it is over its bound.
NaN means "unknown" and is a value like any other: NaN to NaN is no change. Pure: no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any


@dataclass(frozen=True)
class TelemetryFrame:
    """One `TelemetryDelta`: its sequence, base, kind and the fields it carries."""

    sequence: int
    base_sequence: int
    full_snapshot: bool
    fields: Mapping[str, float] = field(default_factory=dict)


class TelemetryOrderError(ValueError):
    """A frame the decoder cannot apply: unknown base or not newer than what it holds."""


def same_value(a: float, b: float, threshold: float = 0.0) -> bool:
    """Tell whether `b` is within `threshold` of `a`, NaN matching only NaN."""
    a_nan, b_nan = math.isnan(a), math.isnan(b)
    if a_nan or b_nan:
        return a_nan and b_nan
    return abs(a - b) <= threshold


class DeltaEncoder:
    """Turns samples into telemetry frames and remembers what the receiver then holds."""

    def __init__(
        self,
        thresholds: Mapping[str, float],
        full_snapshot_period_s: float,
        default_threshold: float = 0.0,
    ) -> None:
        bad = {name: value for name, value in thresholds.items() if not value >= 0.0}
        if bad:
            raise ValueError(f'thresholds must be >= 0: {bad}')
        if not full_snapshot_period_s > 0.0:
            raise ValueError(f'full_snapshot_period_s must be > 0, got {full_snapshot_period_s}')
        self._thresholds = dict(thresholds)
        self._default_threshold = default_threshold
        self._period = full_snapshot_period_s
        self._receiver: dict[str, float] = {}
        self._sequence = 0
        self._base = 0
        self._last_full_at: float | None = None
        self._full_requested = True

    @property
    def next_sequence(self) -> int:
        """Return the sequence the next frame will carry."""
        return self._sequence + 1

    @property
    def receiver_state(self) -> dict[str, float]:
        """Return what the receiver holds after every frame emitted so far."""
        return dict(self._receiver)

    def request_full_snapshot(self) -> None:
        """Make the next frame a full snapshot."""
        self._full_requested = True

    def encode(self, sample: Mapping[str, float], now: float) -> TelemetryFrame | None:
        """Return the frame for `sample`, or None when nothing changed beyond its threshold."""
        if self._full_requested or self._last_full_at is None or (
            now - self._last_full_at >= self._period
        ):
            return self._emit_full(sample, now)
        changed = {
            name: float(value)
            for name, value in sample.items()
            if name not in self._receiver
            or not same_value(
                self._receiver[name],
                float(value),
                self._thresholds.get(name, self._default_threshold),
            )
        }
        if not changed:
            return None
        self._sequence += 1
        self._receiver.update(changed)
        return TelemetryFrame(self._sequence, self._base, False, changed)

    def _emit_full(self, sample: Mapping[str, float], now: float) -> TelemetryFrame:
        self._sequence += 1
        self._base = self._sequence
        # A snapshot resets the receiver: it carries every known field, not only this sample's.
        self._receiver.update((name, float(value)) for name, value in sample.items())
        self._last_full_at = now
        self._full_requested = False
        return TelemetryFrame(self._sequence, self._sequence, True, dict(self._receiver))


class DeltaDecoder:
    """Rebuilds the sender's telemetry from frames applied in sequence order."""

    def __init__(self) -> None:
        self._state: dict[str, float] = {}
        self._base: int | None = None
        self._last = 0

    @property
    def state(self) -> dict[str, float]:
        """Return the reconstructed fields."""
        return dict(self._state)

    @property
    def last_sequence(self) -> int:
        """Return the sequence of the last applied frame (0 before any)."""
        return self._last

    def apply(self, frame: TelemetryFrame) -> None:
        """Apply `frame`; raise TelemetryOrderError when it cannot be applied."""
        if frame.sequence <= self._last:
            raise TelemetryOrderError(
                f'frame {frame.sequence} is not newer than {self._last} already applied'
            )
        if frame.full_snapshot:
            self._state = dict(frame.fields)
            self._base = frame.sequence
        elif frame.base_sequence != self._base:
            raise TelemetryOrderError(
                f'delta {frame.sequence} builds on snapshot {frame.base_sequence}, '
                f'held: {self._base}'
            )
        else:
            self._state.update(frame.fields)
        self._last = frame.sequence


def merge_frames(older: TelemetryFrame, newer: TelemetryFrame) -> TelemetryFrame | None:
    """Return one frame equal to applying `older` then `newer`, or None if they do not merge.

    A full snapshot replaces whatever came before it. Two deltas of the same base merge. A delta
    never merges into a full snapshot: the merged frame would have to be a snapshot at the delta's
    sequence, and later deltas name the older snapshot as their base.
    """
    if newer.sequence <= older.sequence:
        return None
    if newer.full_snapshot:
        return newer
    if older.full_snapshot or older.base_sequence != newer.base_sequence:
        return None
    merged = dict(older.fields)
    merged.update(newer.fields)
    return replace(newer, fields=merged)


def frame_from_msg(msg: Mapping[str, Any]) -> TelemetryFrame:
    """Read a frame from a rosbridge JSON `TelemetryDelta` (null values are NaN)."""
    names = msg['field_names']
    values = msg['field_values']
    if len(names) != len(values):
        raise ValueError('field_names and field_values differ in length')
    return TelemetryFrame(
        sequence=int(msg['sequence']),
        base_sequence=int(msg['base_sequence']),
        full_snapshot=bool(msg['full_snapshot']),
        fields={
            name: math.nan if value is None else float(value)
            for name, value in zip(names, values, strict=True)
        },
    )


def merge_telemetry_msgs(older: Mapping[str, Any], newer: Mapping[str, Any]) -> dict | None:
    """Merge two rosbridge JSON `TelemetryDelta` messages; None when they do not merge."""
    try:
        merged = merge_frames(frame_from_msg(older), frame_from_msg(newer))
    except (KeyError, TypeError, ValueError):
        return None
    if merged is None:
        return None
    result = dict(newer)
    result['field_names'] = list(merged.fields)
    result['field_values'] = [
        None if math.isnan(value) else value for value in merged.fields.values()
    ]
    return result
