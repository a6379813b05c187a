"""DeltaEncoder/DeltaDecoder: unit cases and a property test over random sample sequences."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lekiwi_agent_ros.telemetry.delta_codec import (
    DeltaDecoder,
    DeltaEncoder,
    TelemetryFrame,
    TelemetryOrderError,
    frame_from_msg,
    merge_frames,
    merge_telemetry_msgs,
    same_value,
)

THRESHOLDS = {'cpu_percent': 2.0, 'temperature_c': 0.5, 'uptime_s': 60.0, 'memory_used_bytes': 0.0}


def states_equal(a: dict[str, float], b: dict[str, float]) -> bool:
    return a.keys() == b.keys() and all(same_value(a[k], b[k]) for k in a)


def test_first_frame_is_a_full_snapshot_then_deltas_carry_changes_only() -> None:
    encoder = DeltaEncoder(THRESHOLDS, full_snapshot_period_s=60.0)
    first = encoder.encode({'cpu_percent': 10.0, 'temperature_c': 40.0, 'uptime_s': 5.0}, 0.0)
    assert first == TelemetryFrame(
        1, 1, True, {'cpu_percent': 10.0, 'temperature_c': 40.0, 'uptime_s': 5.0}
    )
    # within thresholds: nothing to send
    quiet = {'cpu_percent': 11.5, 'temperature_c': 40.4, 'uptime_s': 6.0}
    assert encoder.encode(quiet, 1.0) is None
    second = encoder.encode({'cpu_percent': 12.5, 'temperature_c': 40.4, 'uptime_s': 7.0}, 2.0)
    assert second == TelemetryFrame(2, 1, False, {'cpu_percent': 12.5})
    # NaN is a change from a number, and back
    third = encoder.encode({'cpu_percent': 12.5, 'temperature_c': math.nan, 'uptime_s': 8.0}, 3.0)
    assert third is not None and math.isnan(third.fields['temperature_c'])
    assert encoder.encode({'cpu_percent': 12.5, 'temperature_c': math.nan}, 4.0) is None
    # a field never seen before is a change
    fourth = encoder.encode({'battery_percent': 50.0}, 5.0)
    assert fourth == TelemetryFrame(4, 1, False, {'battery_percent': 50.0})
    assert encoder.next_sequence == 5


def test_full_snapshot_every_period_and_on_request() -> None:
    encoder = DeltaEncoder({}, full_snapshot_period_s=10.0)
    assert encoder.encode({'a': 1.0}, 0.0).full_snapshot
    assert encoder.encode({'a': 1.0}, 9.9) is None
    periodic = encoder.encode({'a': 1.0}, 10.0)
    assert periodic is not None and periodic.full_snapshot and periodic.base_sequence == 2
    encoder.request_full_snapshot()
    requested = encoder.encode({'b': 2.0}, 11.0)
    # a snapshot carries every known field, even one this sample lacks
    assert requested == TelemetryFrame(3, 3, True, {'a': 1.0, 'b': 2.0})


def test_invalid_configuration_is_refused() -> None:
    with pytest.raises(ValueError, match='thresholds must be >= 0'):
        DeltaEncoder({'cpu_percent': -1.0}, 60.0)
    with pytest.raises(ValueError, match='thresholds must be >= 0'):
        DeltaEncoder({'cpu_percent': math.nan}, 60.0)
    with pytest.raises(ValueError, match='full_snapshot_period_s'):
        DeltaEncoder({}, 0.0)


def test_decoder_refuses_unknown_base_and_old_frames() -> None:
    decoder = DeltaDecoder()
    with pytest.raises(TelemetryOrderError, match='builds on snapshot 1, held: None'):
        decoder.apply(TelemetryFrame(2, 1, False, {'a': 1.0}))
    decoder.apply(TelemetryFrame(3, 3, True, {'a': 1.0}))
    with pytest.raises(TelemetryOrderError, match='not newer'):
        decoder.apply(TelemetryFrame(3, 3, False, {'a': 2.0}))
    decoder.apply(TelemetryFrame(5, 3, False, {'b': 2.0}))
    assert decoder.state == {'a': 1.0, 'b': 2.0} and decoder.last_sequence == 5


def test_merge_rules() -> None:
    full = TelemetryFrame(1, 1, True, {'a': 1.0, 'b': 1.0})
    d2 = TelemetryFrame(2, 1, False, {'a': 2.0})
    d3 = TelemetryFrame(3, 1, False, {'b': 3.0, 'a': 3.0})
    assert merge_frames(d2, d3) == TelemetryFrame(3, 1, False, {'a': 3.0, 'b': 3.0})
    assert merge_frames(full, d2) is None  # a delta never folds into a snapshot
    assert merge_frames(d3, d2) is None  # out of order
    new_full = TelemetryFrame(4, 4, True, {'a': 4.0})
    assert merge_frames(d3, new_full) is new_full
    assert merge_frames(d3, TelemetryFrame(5, 4, False, {'a': 5.0})) is None  # other base


def test_merge_of_rosbridge_messages() -> None:
    older = {
        'header': {'stamp': {'sec': 1, 'nanosec': 0}, 'frame_id': ''},
        'robot_id': 'r',
        'boot_id': 'b',
        'sequence': 2,
        'base_sequence': 1,
        'full_snapshot': False,
        'field_names': ['a', 'b'],
        'field_values': [1.0, None],
    }
    newer = dict(older, sequence=3, field_names=['a'], field_values=[5.0])
    newer['header'] = {'stamp': {'sec': 2, 'nanosec': 0}, 'frame_id': ''}
    merged = merge_telemetry_msgs(older, newer)
    assert merged is not None
    assert merged['sequence'] == 3 and merged['header']['stamp']['sec'] == 2
    assert dict(zip(merged['field_names'], merged['field_values'], strict=True)) == {
        'a': 5.0,
        'b': None,
    }
    assert merge_telemetry_msgs(older, dict(newer, base_sequence=7)) is None
    assert merge_telemetry_msgs(older, {'sequence': 'x'}) is None
    assert merge_telemetry_msgs(older, dict(newer, field_values=[])) is None
    assert frame_from_msg(older).fields['a'] == 1.0


field_names = st.sampled_from(['cpu_percent', 'temperature_c', 'uptime_s', 'memory_used_bytes'])
values = st.one_of(
    st.just(math.nan),
    st.floats(min_value=-1e6, max_value=1e6, allow_nan=False),
    st.sampled_from([0.0, 1.0, 2.0, 2.5]),
)
steps = st.lists(
    st.tuples(
        st.dictionaries(field_names, values, max_size=4),  # the sample
        st.floats(min_value=0.0, max_value=20.0),  # seconds since the previous step
        st.sampled_from(['none', 'none', 'request', 'merge', 'merge', 'deliver']),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(steps=steps, period=st.floats(min_value=1.0, max_value=50.0))
def test_decoder_always_holds_what_the_encoder_believes(
    steps: list[tuple[dict[str, float], float, str]], period: float
) -> None:
    """Random samples, snapshot requests and merges of unsent frames (the outbox's policy)."""
    encoder = DeltaEncoder(THRESHOLDS, full_snapshot_period_s=period, default_threshold=0.25)
    decoder = DeltaDecoder()
    pending: list[TelemetryFrame] = []  # emitted, not yet delivered (the outbox)
    latest: dict[str, float] = {}  # the newest sample of each field
    now = 0.0
    for sample, elapsed, action in steps:
        now += elapsed
        if action == 'request':
            encoder.request_full_snapshot()
        frame = encoder.encode(sample, now)
        latest.update(sample)
        if frame is not None:
            if action == 'merge' and pending:
                merged = merge_frames(pending[-1], frame)
                if merged is not None:
                    pending[-1] = merged
                else:
                    pending.append(frame)
            else:
                pending.append(frame)
        if action == 'deliver':
            for item in pending:
                decoder.apply(item)
            pending.clear()
            assert states_equal(decoder.state, encoder.receiver_state)
    for item in pending:
        decoder.apply(item)
    assert states_equal(decoder.state, encoder.receiver_state)
    # and what the receiver holds is each field's newest value, give or take its threshold
    for name, value in latest.items():
        held = decoder.state[name]
        assert same_value(held, value, THRESHOLDS.get(name, 0.25)), (name, held, value)
