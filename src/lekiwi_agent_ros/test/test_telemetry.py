"""TelemetryNode with real rclpy: snapshot then deltas, the snapshot service and command."""

from __future__ import annotations

import pytest
from agent_harness import AgentHarness, agent_harness, wait_for

from lekiwi_agent_ros.msg_types import FleetCommand, RequestTelemetrySnapshot, TelemetryDelta
from lekiwi_agent_ros.telemetry.delta_codec import DeltaDecoder, TelemetryFrame
from lekiwi_agent_ros.telemetry.heartbeat import HISTORY_QOS
from lekiwi_agent_ros.telemetry.resource_sampler import FIELDS
from lekiwi_agent_ros.telemetry.telemetry import TelemetryNode


def frame(msg: TelemetryDelta) -> TelemetryFrame:
    return TelemetryFrame(
        msg.sequence,
        msg.base_sequence,
        msg.full_snapshot,
        dict(zip(msg.field_names, msg.field_values, strict=True)),
    )


def start(harness: AgentHarness, **parameters: object) -> TelemetryNode:
    node = TelemetryNode(boot_id='feedc0de00000002', **harness.kwargs(**parameters))
    harness.add(node)
    return node


def test_full_snapshot_first_then_deltas_that_rebuild_the_state() -> None:
    with agent_harness() as harness:
        received = harness.collect(TelemetryDelta, 'fleet/telemetry', HISTORY_QOS)
        # thresholds 0 on the fast-moving fields so deltas flow in a short test
        start(
            harness,
            period_s=0.05,
            full_snapshot_period_s=0.5,
            robot_id='kiwi-telemetry',
            **{'thresholds.uptime_s': 0.0, 'thresholds.cpu_percent': 0.0},
        )
        assert wait_for(lambda: len(received) >= 12)
        first = received[0]
        assert first.full_snapshot and first.sequence == first.base_sequence == 1
        assert tuple(first.field_names) == FIELDS
        assert (first.robot_id, first.boot_id) == ('kiwi-telemetry', 'feedc0de00000002')
        deltas = [m for m in received if not m.full_snapshot]
        assert deltas and all('uptime_s' in m.field_names for m in deltas)
        assert all(len(m.field_names) < len(FIELDS) for m in deltas)
        assert any(m.full_snapshot for m in received[1:])  # the periodic snapshot
        decoder = DeltaDecoder()
        for msg in received:
            decoder.apply(frame(msg))
        assert set(decoder.state) == set(FIELDS)
        uptimes = [
            value
            for msg in received
            for name, value in zip(msg.field_names, msg.field_values, strict=True)
            if name == 'uptime_s'
        ]
        assert decoder.state['uptime_s'] == uptimes[-1] > 0


def test_snapshot_on_request_by_service_and_by_command() -> None:
    with agent_harness() as harness:
        received = harness.collect(TelemetryDelta, 'fleet/telemetry', HISTORY_QOS)
        start(harness, period_s=0.05, full_snapshot_period_s=3600.0)
        assert wait_for(lambda: len(received) >= 1)
        client = harness.helper.create_client(
            RequestTelemetrySnapshot, 'telemetry/request_snapshot'
        )
        assert client.wait_for_service(timeout_sec=5.0)
        future = client.call_async(RequestTelemetrySnapshot.Request())
        assert wait_for(future.done)
        response = future.result()
        assert response.accepted and response.sequence > 1
        assert wait_for(lambda: any(m.sequence == response.sequence for m in received))
        snapshot = next(m for m in received if m.sequence == response.sequence)
        assert snapshot.full_snapshot and snapshot.base_sequence == response.sequence
        commands = harness.helper.create_publisher(FleetCommand, 'fleet/commands', HISTORY_QOS)
        assert wait_for(lambda: commands.get_subscription_count() > 0)
        count = sum(m.full_snapshot for m in received)
        commands.publish(FleetCommand(command_id='c1', command_type='ping', payload_json='{}'))
        commands.publish(
            FleetCommand(command_id='c2', command_type='request_snapshot', payload_json='{}')
        )
        assert wait_for(lambda: sum(m.full_snapshot for m in received) == count + 1)


@pytest.mark.parametrize(
    ('parameters', 'problem'),
    [
        ({'period_s': 0.0}, 'period_s must be > 0'),
        ({'full_snapshot_period_s': -5.0}, 'full_snapshot_period_s'),
        ({'thresholds.cpu_percent': -1.0}, 'thresholds.cpu_percent must be >= 0'),
    ],
)
def test_invalid_parameters_are_refused(parameters: dict, problem: str) -> None:
    with agent_harness() as harness, pytest.raises(ValueError, match=problem):
        TelemetryNode(**harness.kwargs(**parameters))
