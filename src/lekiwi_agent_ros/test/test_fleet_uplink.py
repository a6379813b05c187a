"""FleetUplinkNode with real rclpy and a real WebSocket to the stand-in gateway."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from agent_harness import AgentHarness, agent_harness, wait_for
from conftest import fill
from rclpy.action import ActionServer
from uplink_server import UplinkTestServer

from lekiwi_agent_ros.msg_types import (
    Deploy,
    DeploymentStatus,
    FleetCommand,
    FleetEvent,
    GetAgentStatus,
    RobotHeartbeat,
    TelemetryDelta,
    TeleopStatus,
)
from lekiwi_agent_ros.telemetry.heartbeat import HISTORY_QOS, STATUS_QOS
from lekiwi_agent_ros.uplink.fleet_uplink import FleetUplinkNode

ROBOT = 'kiwi-100'
TOKEN = 'lkw_node_token'


@pytest.fixture
def server() -> Iterator[UplinkTestServer]:
    server = UplinkTestServer({ROBOT: TOKEN})
    yield server
    server.close()
    assert server.violations == []


@pytest.fixture
def harness() -> Iterator[AgentHarness]:
    with agent_harness() as harness:
        yield harness


def start(
    harness: AgentHarness, server: UplinkTestServer, tmp_path: Path, **parameters: Any
) -> FleetUplinkNode:
    token_file = tmp_path / 'token'
    token_file.write_text(TOKEN + '\n')
    settings: dict[str, Any] = {
        'robot_id': ROBOT,
        'server_url': server.url,
        'token_file': str(token_file),
        'outbox_path': str(tmp_path / 'outbox.sqlite3'),
        'backoff_base_s': 0.05,
        'backoff_cap_s': 0.2,
    }
    settings.update(parameters)
    node = FleetUplinkNode(**harness.kwargs(**settings))
    harness.add(node)
    return node


def event(n: int) -> FleetEvent:
    return FleetEvent(
        robot_id=ROBOT,
        boot_id='x' * 16,
        sequence=n,
        severity=FleetEvent.SEVERITY_INFO,
        event_type='test.numbered',
        payload_json=json.dumps({'n': n}),
    )


def status(node: FleetUplinkNode, harness: AgentHarness) -> GetAgentStatus.Response:
    client = harness.helper.create_client(GetAgentStatus, 'fleet_uplink/get_status')
    assert client.wait_for_service(timeout_sec=5.0)
    future = client.call_async(GetAgentStatus.Request())
    assert wait_for(future.done)
    harness.helper.destroy_client(client)
    return future.result()


def test_fleet_topics_reach_the_server_once_and_leave_the_outbox(
    harness: AgentHarness, server: UplinkTestServer, tmp_path: Path
) -> None:
    node = start(harness, server, tmp_path)
    helper = harness.helper
    events = helper.create_publisher(FleetEvent, 'fleet/events', HISTORY_QOS)
    heartbeats = helper.create_publisher(RobotHeartbeat, 'fleet/heartbeat', STATUS_QOS)
    telemetry = helper.create_publisher(TelemetryDelta, 'fleet/telemetry', HISTORY_QOS)
    deployment = helper.create_publisher(DeploymentStatus, 'fleet/deployment_status', HISTORY_QOS)
    assert wait_for(lambda: events.get_subscription_count() > 0 and server.connected(ROBOT))
    for n in range(20):
        events.publish(event(n))
    heartbeats.publish(RobotHeartbeat(robot_id=ROBOT, sequence=7, teleop_score=0.7))
    telemetry.publish(
        TelemetryDelta(
            robot_id=ROBOT,
            sequence=1,
            base_sequence=1,
            full_snapshot=True,
            field_names=['cpu_percent', 'temperature_c'],
            field_values=[12.5, float('nan')],
        )
    )
    deployment.publish(DeploymentStatus(robot_id=ROBOT, deployment_id='d1', phase=1))
    assert wait_for(lambda: len(server.messages()) == 23)
    numbers = [c.msg['sequence'] for c in server.messages('fleet/events')]
    assert numbers == list(range(20))
    assert sorted(c.seq for c in server.messages()) == list(range(1, 24))
    assert {c.boot_id for c in server.messages()} == {node.boot_id}
    [hb] = server.messages('fleet/heartbeat')
    assert hb.msg['teleop_score'] == 0.7 and hb.msg['sequence'] == 7
    [delta] = server.messages('fleet/telemetry')
    assert delta.msg['field_values'] == [12.5, None]
    response = None

    def all_acknowledged() -> bool:
        nonlocal response
        response = status(node, harness)
        return response.outbox_pending == 0

    assert wait_for(all_acknowledged)
    assert response.connected and response.acknowledged_total == 23
    assert (response.robot_id, response.boot_id) == (ROBOT, node.boot_id)
    assert response.server_url == server.url and response.last_heartbeat.sequence == 7


def test_cut_connection_replays_without_loss_or_duplicates(
    harness: AgentHarness, server: UplinkTestServer, tmp_path: Path
) -> None:
    start(harness, server, tmp_path, window=4)
    events = harness.helper.create_publisher(FleetEvent, 'fleet/events', HISTORY_QOS)
    assert wait_for(lambda: events.get_subscription_count() > 0 and server.connected(ROBOT))
    total = 150
    for n in range(total):
        events.publish(event(n))
        if n in (40, 90):
            server.cut(ROBOT)
        time.sleep(0.003)
    assert wait_for(lambda: len(server.messages('fleet/events')) == total, timeout=10.0)
    assert sorted(c.msg['sequence'] for c in server.messages('fleet/events')) == list(range(total))
    assert sorted(c.seq for c in server.messages('fleet/events')) == list(range(1, total + 1))


def test_a_restarted_uplink_replays_its_outbox_file(
    harness: AgentHarness, server: UplinkTestServer, tmp_path: Path
) -> None:
    server.acks_enabled = False
    first = start(harness, server, tmp_path)
    events = harness.helper.create_publisher(FleetEvent, 'fleet/events', HISTORY_QOS)
    assert wait_for(lambda: events.get_subscription_count() > 0)
    for n in range(5):
        events.publish(event(n))
    assert wait_for(lambda: len(server.messages()) == 5)
    old_boot = first.boot_id
    harness.remove(first)  # killed before any ack
    server.acks_enabled = True
    second = start(harness, server, tmp_path)
    assert second.boot_id != old_boot
    assert wait_for(lambda: status(second, harness).outbox_pending == 0)
    assert server.duplicates == 5
    assert sorted(c.seq for c in server.messages() if c.boot_id == old_boot) == [1, 2, 3, 4, 5]


def test_commands_reach_fleet_commands_and_are_answered(
    harness: AgentHarness, server: UplinkTestServer, tmp_path: Path
) -> None:
    start(harness, server, tmp_path)
    received = harness.collect(FleetCommand, 'fleet/commands', HISTORY_QOS)
    assert wait_for(lambda: server.connected(ROBOT))
    assert wait_for(
        lambda: harness.helper.count_publishers(f'{harness.namespace}/fleet/commands') > 0
    )
    time.sleep(0.2)  # let the helper's subscription match the uplink's publisher
    response = server.call_command(ROBOT, 'ping', {'hello': 1})
    assert response['result'] is True and response['values']['message'] == 'pong'
    response = server.call_command(ROBOT, 'request_snapshot')
    assert response['values'] == {'accepted': True, 'message': 'delivered to fleet/commands'}
    refused = server.call_command(ROBOT, 'configure', '[1, 2]')
    assert refused['result'] is False and 'JSON object' in refused['values']['message']
    assert wait_for(lambda: len(received) == 2)
    assert [c.command_type for c in received] == ['ping', 'request_snapshot']
    assert json.loads(received[0].payload_json) == {'hello': 1}


def test_deploy_goals_are_refused_without_a_deploy_server_and_routed_with_one(
    harness: AgentHarness, server: UplinkTestServer, tmp_path: Path
) -> None:
    start(harness, server, tmp_path)
    assert wait_for(lambda: server.connected(ROBOT))
    server.send_goal(ROBOT, 'goal-1', {'deployment_id': 'd1', 'release_version': '2.0.0'})
    assert wait_for(lambda: server.action_frames(ROBOT))
    [refusal] = server.action_frames(ROBOT)
    assert refusal['op'] == 'action_result' and refusal['result'] is False
    assert 'no deploy action server' in refusal['values']['message']

    def execute(handle: Any) -> Deploy.Result:
        feedback = Deploy.Feedback(phase=DeploymentStatus.PHASE_DOWNLOADING, progress=0.5)
        handle.publish_feedback(feedback)
        time.sleep(0.1)  # let the feedback go out before the result
        handle.succeed()
        return Deploy.Result(success=True, final_version=handle.request.release_version)

    ActionServer(harness.helper, Deploy, 'deploy', execute)
    time.sleep(0.5)  # discovery of the new action server
    server.send_goal(ROBOT, 'goal-2', {'deployment_id': 'd2', 'release_version': '2.0.1'})
    assert wait_for(lambda: len(server.action_frames(ROBOT)) >= 3, timeout=10.0)
    frames = server.action_frames(ROBOT)[1:]
    assert frames[0]['op'] == 'action_feedback' and frames[0]['values']['progress'] == 0.5
    assert frames[-1]['op'] == 'action_result' and frames[-1]['result'] is True
    assert frames[-1]['values']['final_version'] == '2.0.1' and frames[-1]['status'] == 4
    server.send_goal(ROBOT, 'goal-3', {'health_timeout_s': 'soon'}, check=False)
    assert wait_for(lambda: len(server.action_frames(ROBOT)) >= 4)
    assert 'bad deploy goal' in server.action_frames(ROBOT)[-1]['values']['message']


def test_teleop_status_goes_up_on_change_and_otherwise_throttled(
    harness: AgentHarness, server: UplinkTestServer, tmp_path: Path
) -> None:
    start(harness, server, tmp_path, teleop_status_min_interval_s=0.5)
    publisher = harness.helper.create_publisher(TeleopStatus, 'teleop/status', STATUS_QOS)
    assert wait_for(lambda: publisher.get_subscription_count() > 0 and server.connected(ROBOT))
    for i in range(10):  # 1 s of 10 Hz status, active and only the score moving
        publisher.publish(TeleopStatus(active=True, score=0.5 + i / 100))
        time.sleep(0.1)
    publisher.publish(TeleopStatus(active=False, score=0.0))  # a discrete change: at once
    assert wait_for(lambda: any(not c.msg['active'] for c in server.messages('teleop/status')))
    forwarded = server.messages('teleop/status')
    assert 2 <= len(forwarded) <= 5, [c.msg['score'] for c in forwarded]
    assert forwarded[0].msg['score'] == 0.5


def test_oversize_and_invalid_messages_are_not_queued(
    harness: AgentHarness, server: UplinkTestServer, tmp_path: Path
) -> None:
    node = start(harness, server, tmp_path, max_frame_bytes=2048)
    events = harness.helper.create_publisher(FleetEvent, 'fleet/events', HISTORY_QOS)
    assert wait_for(lambda: events.get_subscription_count() > 0 and server.connected(ROBOT))
    big = event(0)
    big.payload_json = json.dumps({'blob': 'x' * 4000})
    events.publish(big)
    bad = event(1)
    bad.event_type = 'Not A Valid Type'  # the server refuses it for good
    events.publish(bad)
    events.publish(event(2))
    assert wait_for(lambda: len(server.messages()) == 1)
    assert wait_for(lambda: status(node, harness).outbox_pending == 0)
    assert server.messages()[0].msg['sequence'] == 2
    server.violations.clear()  # the invalid event was sent on purpose


@pytest.mark.parametrize(
    ('parameters', 'problem'),
    [
        ({'server_url': 'http://x/'}, 'server_url must start with ws://'),
        ({'window': 0}, 'window must be >= 1'),
        ({'backoff_base_s': 5.0, 'backoff_cap_s': 1.0}, 'backoff_base_s <= backoff_cap_s'),
        ({'max_frame_bytes': 10}, 'max_frame_bytes'),
        ({'ack_timeout_s': 0.0}, 'ack_timeout_s'),
        ({'outbox_path': ''}, 'outbox_path'),
        ({'teleop_status_min_interval_s': -1.0}, 'teleop_status_min_interval_s'),
    ],
)
def test_invalid_parameters_are_refused(
    harness: AgentHarness, server: UplinkTestServer, tmp_path: Path, parameters: dict, problem: str
) -> None:
    with pytest.raises(ValueError, match=problem):
        start(harness, server, tmp_path, **parameters)


def test_telemetry_merged_under_pressure_still_rebuilds_the_exact_state(
    harness: AgentHarness, server: UplinkTestServer, tmp_path: Path
) -> None:
    from lekiwi_agent_ros.telemetry.delta_codec import DeltaDecoder, TelemetryFrame, same_value
    from lekiwi_agent_ros.telemetry.telemetry import TelemetryNode

    def frame(msg: dict) -> TelemetryFrame:
        values = [float('nan') if v is None else v for v in msg['field_values']]
        return TelemetryFrame(
            msg['sequence'],
            msg['base_sequence'],
            msg['full_snapshot'],
            dict(zip(msg['field_names'], values, strict=True)),
        )

    server.stop_listening()  # a partition: everything piles up in the outbox
    start(harness, server, tmp_path, max_outbox_messages=3)
    published = harness.collect(TelemetryDelta, 'fleet/telemetry', HISTORY_QOS)
    overrides = {'thresholds.uptime_s': 0.0, 'thresholds.cpu_percent': 0.0}
    telemetry = TelemetryNode(
        **harness.kwargs(period_s=0.05, full_snapshot_period_s=3600.0, **overrides)
    )
    harness.add(telemetry)
    assert wait_for(lambda: len(published) >= 8, timeout=10.0)
    harness.remove(telemetry)
    time.sleep(0.3)
    server.start_listening()
    assert wait_for(lambda: len(server.messages('fleet/telemetry')) >= 2, timeout=10.0)
    time.sleep(0.5)
    stored = sorted(server.messages('fleet/telemetry'), key=lambda c: c.seq)
    assert len(stored) < len(published)  # merged while over the bound
    received = DeltaDecoder()
    for item in stored:
        received.apply(frame(item.msg))
    direct = DeltaDecoder()
    for msg in published:
        direct.apply(
            TelemetryFrame(
                msg.sequence,
                msg.base_sequence,
                msg.full_snapshot,
                dict(zip(msg.field_names, msg.field_values, strict=True)),
            )
        )
    assert received.last_sequence == direct.last_sequence == published[-1].sequence
    assert received.state.keys() == direct.state.keys()
    for name, value in direct.state.items():
        assert same_value(received.state[name], value), name


def test_a_second_uplink_on_the_same_outbox_is_refused_and_the_first_keeps_going(
    harness: AgentHarness, server: UplinkTestServer, tmp_path: Path
) -> None:
    first = start(harness, server, tmp_path)
    with pytest.raises(ValueError, match='in use by another agent'):
        start(harness, server, tmp_path, robot_id='kiwi-other')
    events = harness.helper.create_publisher(FleetEvent, 'fleet/events', HISTORY_QOS)
    assert wait_for(lambda: events.get_subscription_count() > 0 and server.connected(ROBOT))
    events.publish(event(1))
    assert wait_for(lambda: status(first, harness).outbox_pending == 0 and server.messages())
    assert {c.msg['sequence'] for c in server.messages('fleet/events')} == {1}
    harness.remove(first)
    # the outbox now belongs to ROBOT: another robot id is refused, not handed its messages
    with pytest.raises(ValueError, match=f"holds the messages of robot '{ROBOT}'"):
        start(harness, server, tmp_path, robot_id='kiwi-other')


def test_durable_events_published_while_the_uplink_is_down_arrive_once(
    harness: AgentHarness, server: UplinkTestServer, tmp_path: Path
) -> None:
    from lekiwi_agent_ros.uplink.fleet_uplink import DURABLE_EVENTS_QOS

    first = start(harness, server, tmp_path)
    # An application on the documented contract: reliable, transient-local, deep enough.
    events = harness.helper.create_publisher(FleetEvent, 'fleet/events', DURABLE_EVENTS_QOS)
    assert wait_for(lambda: events.get_subscription_count() >= 2 and server.connected(ROBOT))
    for n in range(5):
        events.publish(event(n))
    assert wait_for(lambda: len(server.messages('fleet/events')) == 5
                    and status(first, harness).outbox_pending == 0)
    harness.remove(first)  # the agent restarts
    assert wait_for(lambda: events.get_subscription_count() == 0)
    for n in range(5, 15):  # published while nobody subscribes
        events.publish(event(n))
    second = start(harness, server, tmp_path)
    assert wait_for(lambda: len(server.messages('fleet/events')) >= 15, timeout=15.0)
    assert wait_for(lambda: status(second, harness).outbox_pending == 0)
    time.sleep(0.5)  # a duplicate would arrive by now
    numbers = [c.msg['sequence'] for c in server.messages('fleet/events')]
    # Every event once: those of the downtime from the publisher's history, and the five it
    # held from before the restart (re-delivered to the new subscriber) not a second time.
    assert sorted(numbers) == list(range(15))


def test_a_volatile_publisher_still_reaches_the_uplink_once(
    harness: AgentHarness, server: UplinkTestServer, tmp_path: Path
) -> None:
    start(harness, server, tmp_path)
    events = harness.helper.create_publisher(FleetEvent, 'fleet/events', HISTORY_QOS)
    assert wait_for(lambda: events.get_subscription_count() == 1 and server.connected(ROBOT))
    for n in range(3):
        events.publish(event(n))
    assert wait_for(lambda: len(server.messages('fleet/events')) == 3)
    time.sleep(0.3)
    assert [c.msg['sequence'] for c in server.messages('fleet/events')] == [0, 1, 2]


def test_a_full_disk_holds_messages_and_delivers_them_when_space_returns(
    harness: AgentHarness, server: UplinkTestServer, tmp_path: Path, small_filesystem: Path
) -> None:
    node = start(harness, server, tmp_path, outbox_path=str(small_filesystem / 'o.sqlite3'))
    events = harness.helper.create_publisher(FleetEvent, 'fleet/events', HISTORY_QOS)
    assert wait_for(lambda: events.get_subscription_count() > 0 and server.connected(ROBOT))
    filler = small_filesystem / 'filler'
    fill(filler)
    for n in range(40):
        events.publish(event(n))
        time.sleep(0.01)
    assert wait_for(lambda: node.storage_problem is not None, timeout=10.0)
    assert 'full' in node.storage_problem
    filler.unlink()  # space returns

    def numbered() -> list[Any]:  # not the agent's own agent.disk_* events (test_disk_state.py)
        return [c for c in server.messages('fleet/events')
                if c.msg['event_type'] == 'test.numbered']

    assert wait_for(lambda: len(numbered()) == 40, timeout=15.0)
    assert [c.msg['sequence'] for c in numbered()] == list(range(40))
    assert wait_for(lambda: node.storage_problem is None)


def test_the_transport_parameter_is_checked_and_needs_poll_url_for_polling(
        harness: AgentHarness, server: UplinkTestServer, tmp_path: Path) -> None:
    """fleet_uplink:transport (issue 20): the flag's target; refusals say why."""
    from rclpy.parameter import Parameter

    with pytest.raises(ValueError, match='transport polling needs the poll_url parameter'):
        start(harness, server, tmp_path, transport='polling')
    node = start(harness, server, tmp_path)
    assert node.get_parameter('transport').value == 'auto'
    assert node.get_parameter('transport').type_ == Parameter.Type.STRING
    (bad,) = node.set_parameters([Parameter('transport', value='carrier-pigeon')])
    assert not bad.successful and 'transport must be one of' in bad.reason
    (no_url,) = node.set_parameters([Parameter('transport', value='polling')])
    assert not no_url.successful and 'poll_url' in no_url.reason
    (fine,) = node.set_parameters([Parameter('transport', value='websocket')])
    assert fine.successful and node.transport() == 'websocket'
    harness.remove(node)  # closes its WebSocket before the stand-in server shuts down
