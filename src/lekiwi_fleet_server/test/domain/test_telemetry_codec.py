"""Server-side reconstruction of TelemetryDelta streams (pure), with a property-based test."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lekiwi_fleet_server.domain.telemetry_codec import (
    TELEMETRY_FIELDS,
    InvalidTelemetry,
    TelemetryDeltaReading,
    TelemetryState,
    stamp_seconds,
)


def msg(sequence: int, base: int, values: dict[str, float | None], *, full: bool = False,
        boot: str = 'boot0001', t: float = 100.0) -> dict[str, Any]:
    return {'header': {'stamp': {'sec': int(t), 'nanosec': 0}}, 'boot_id': boot,
            'sequence': sequence, 'base_sequence': base, 'full_snapshot': full,
            'field_names': list(values), 'field_values': list(values.values())}


def reading(*args: Any, **kw: Any) -> TelemetryDeltaReading:
    return TelemetryDeltaReading.from_msg(msg(*args, **kw), 'fallback')


def test_full_snapshot_resets_and_deltas_apply_on_top() -> None:
    state = TelemetryState().apply(reading(1, 1, {'cpu_percent': 1.0, 'temperature_c': 40.0},
                                           full=True))
    assert state.complete and state.values == {'cpu_percent': 1.0, 'temperature_c': 40.0}
    state = state.apply(reading(2, 1, {'cpu_percent': 5.0}))
    assert state.values == {'cpu_percent': 5.0, 'temperature_c': 40.0} and state.sequence == 2
    state = state.apply(reading(3, 3, {'battery_percent': 70.0}, full=True))
    assert state.values == {'battery_percent': 70.0}  # a full snapshot forgets the rest


def test_delta_on_an_unknown_base_is_incomplete() -> None:
    state = TelemetryState().apply(reading(5, 4, {'cpu_percent': 5.0}))
    assert not state.complete and state.values == {'cpu_percent': 5.0}
    state = state.apply(reading(6, 4, {'temperature_c': 30.0}))
    assert not state.complete and state.values == {'cpu_percent': 5.0, 'temperature_c': 30.0}
    other_boot = state.apply(reading(1, 1, {'uptime_s': 3.0}, boot='boot0002'))
    assert other_boot.values == {'uptime_s': 3.0} and not other_boot.complete


def test_stale_and_earlier_boot() -> None:
    state = TelemetryState().apply(reading(3, 3, {'cpu_percent': 1.0}, full=True, t=200.0))
    assert state.is_stale(reading(3, 3, {}, full=True))
    assert state.is_stale(reading(2, 1, {}))
    assert not state.is_stale(reading(4, 3, {}))
    assert state.is_earlier_boot(reading(9, 9, {}, boot='boot0000', t=100.0))
    assert not state.is_earlier_boot(reading(9, 9, {}, boot='boot0009', t=300.0))
    assert not TelemetryState().is_earlier_boot(reading(1, 1, {}))


def test_json_round_trip() -> None:
    state = TelemetryState().apply(reading(1, 1, {'cpu_percent': None, 'x': 2.0}, full=True))
    assert TelemetryState.from_json(state.to_json()) == state
    assert TelemetryState.from_json(None) == TelemetryState()


def test_nan_and_infinity_become_unknown() -> None:
    r = reading(1, 1, {'cpu_percent': float('nan'), 'uptime_s': float('inf'), 'a': 3}, full=True)
    assert r.values == {'cpu_percent': None, 'uptime_s': None, 'a': 3.0}


@pytest.mark.parametrize('change, message', [
    ({'field_names': 'cpu'}, 'arrays'),
    ({'field_names': ['a', 'b'], 'field_values': [1.0]}, '2 field_names but 1'),
    ({'field_names': [''], 'field_values': [1.0]}, 'bad field name'),
    ({'field_names': [3], 'field_values': [1.0]}, 'bad field name'),
    ({'field_names': ['a'], 'field_values': ['1']}, 'number or null'),
    ({'field_names': ['a'], 'field_values': [True]}, 'number or null'),
    ({'field_names': [f'f{i}' for i in range(65)], 'field_values': [0.0] * 65}, 'more than'),
    ({'sequence': -1}, 'sequence'),
    ({'sequence': 2**63}, 'sequence'),
    ({'base_sequence': 'x'}, 'base_sequence'),
    ({'full_snapshot': 1}, 'boolean'),
    ({'boot_id': 5}, 'boot_id'),
])
def test_bad_deltas_are_refused(change: dict[str, Any], message: str) -> None:
    bad = {**msg(1, 1, {'cpu_percent': 1.0}), **change}
    with pytest.raises(InvalidTelemetry, match=message):
        TelemetryDeltaReading.from_msg(bad, 'fallback')


def test_missing_boot_id_falls_back_to_the_envelope() -> None:
    raw = msg(1, 1, {}, full=True)
    del raw['boot_id']
    assert TelemetryDeltaReading.from_msg(raw, 'envelope1').boot_id == 'envelope1'


@pytest.mark.parametrize('message, expected', [
    ({'header': {'stamp': {'sec': 10, 'nanosec': 500_000_000}}}, 10.5),
    ({}, 0.0), ({'header': 'x'}, 0.0), ({'header': {'stamp': None}}, 0.0),
    ({'header': {'stamp': {'sec': 'x', 'nanosec': 0}}}, 0.0),
    ({'header': {'stamp': {'sec': True, 'nanosec': 0}}}, 0.0),
])
def test_stamp_seconds(message: dict[str, Any], expected: float) -> None:
    assert stamp_seconds(message) == expected


# -- property: the decoder holds exactly what an encoder believes the receiver holds ---------

values = st.one_of(st.none(), st.floats(-1e6, 1e6, allow_nan=False))
changes = st.dictionaries(st.sampled_from(TELEMETRY_FIELDS), values, max_size=5)
steps = st.lists(st.tuples(st.sampled_from(['full', 'delta', 'merge']), changes),
                 min_size=1, max_size=40)


@settings(max_examples=200, deadline=None)
@given(steps)
def test_reconstruction_matches_the_encoders_belief(plan: list[tuple[str, dict]]) -> None:
    truth: dict[str, float | None] = {}  # the robot's current values
    belief: dict[str, float | None] | None = None  # what the robot thinks the server holds
    sequence = 0
    base = 0
    pending: dict[str, Any] | None = None  # a delta not sent yet (coalescing target)
    state = TelemetryState()

    def send(message: dict[str, Any]) -> None:
        nonlocal state
        state = state.apply(TelemetryDeltaReading.from_msg(message, 'b'))

    for kind, change in plan:
        truth.update(change)
        sequence += 1
        if kind == 'full' or belief is None:
            if pending is not None:
                send(pending)
                pending = None
            base = sequence
            send(msg(sequence, base, dict(truth), full=True))
            belief = dict(truth)
            continue
        delta = msg(sequence, base, change)
        if kind == 'merge' and pending is not None:
            # The outbox merges an unsent delta with the newer one: union, newer values win.
            names = dict(zip(pending['field_names'], pending['field_values'], strict=True))
            names.update(change)
            delta = msg(sequence, base, names)
            pending = delta
        else:
            if pending is not None:
                send(pending)
            pending = delta
        belief.update(change)
    if pending is not None:
        send(pending)
    assert belief is not None
    assert state.complete
    assert dict(state.values) == belief == truth
