"""A full disk reaches the fleet server: `agent.disk_full` live, `agent.disk_recovered` after."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from agent_harness import AgentHarness, wait_for
from conftest import fill
from test_fleet_uplink import ROBOT, TOKEN, event, start
from uplink_server import UplinkTestServer

from lekiwi_agent_ros.disk_state import DISK_FULL, DISK_RECOVERED, DiskStateReporter
from lekiwi_agent_ros.msg_types import FleetEvent
from lekiwi_agent_ros.telemetry.heartbeat import HISTORY_QOS


def test_the_reporter_reports_a_full_disk_at_once_then_every_repeat_then_its_recovery() -> None:
    clock = [1000.0]
    reporter = DiskStateReporter('kiwi-9', 'b00700000000disk', lambda: clock[0], repeat_s=30.0)
    assert reporter.storage_recovered(0) is None  # never full: nothing to say
    frame = reporter.storage_failed('database or disk is full', 3)
    assert frame is not None and 'boot_id' not in frame and 'seq' not in frame
    assert (frame['op'], frame['topic']) == ('publish', 'fleet/events')
    msg = frame['msg']
    assert (msg['event_type'], msg['severity'], msg['robot_id']) == (DISK_FULL, 3, 'kiwi-9')
    assert json.loads(msg['payload_json']) == {'error': 'database or disk is full', 'held': 3}
    assert msg['header']['stamp'] == {'sec': 1000, 'nanosec': 0}
    clock[0] += 10.0
    assert reporter.storage_failed('database or disk is full', 9) is None and reporter.full
    clock[0] += 21.0
    again = reporter.storage_failed('database or disk is full', 12)
    assert again is not None and again['msg']['sequence'] == msg['sequence'] + 1
    clock[0] += 4.5
    recovered = reporter.storage_recovered(12)
    assert recovered is not None and recovered['event_type'] == DISK_RECOVERED
    assert json.loads(recovered['payload_json']) == {'held': 12, 'full_for_s': 35.5}
    assert not reporter.full and reporter.storage_recovered(0) is None
    assert reporter.storage_failed('database or disk is full', 1) is not None  # a new episode


@pytest.fixture
def server(make_uplink_server: Callable[[str, str], UplinkTestServer]) -> UplinkTestServer:
    return make_uplink_server(ROBOT, TOKEN)

def test_the_server_learns_of_a_full_disk_while_it_lasts_and_when_it_ends(
    harness: AgentHarness, server: UplinkTestServer, tmp_path: Path, small_filesystem: Path
) -> None:
    node = start(harness, server, tmp_path, outbox_path=str(small_filesystem / 'o.sqlite3'))
    events = harness.helper.create_publisher(FleetEvent, 'fleet/events', HISTORY_QOS)
    assert wait_for(lambda: events.get_subscription_count() > 0 and server.connected(ROBOT))
    filler = small_filesystem / 'filler'
    fill(filler)
    for n in range(20):
        events.publish(event(n))
        time.sleep(0.01)
    assert wait_for(lambda: node.storage_problem is not None, timeout=10.0)
    # While the disk is still full (nothing can be stored), the server has the alarm.
    assert wait_for(lambda: server.at_most_once, timeout=5.0)
    robot, topic, msg = server.at_most_once[0]
    assert (robot, topic, msg['event_type']) == (ROBOT, 'fleet/events', DISK_FULL)
    assert msg['severity'] == FleetEvent.SEVERITY_ERROR and msg['boot_id'] == node.boot_id
    assert 'full' in json.loads(msg['payload_json'])['error']
    assert not [c for c in server.messages('fleet/events')
                if c.msg['event_type'] == DISK_RECOVERED]
    filler.unlink()  # space returns

    def recovered() -> list:
        return [c for c in server.messages('fleet/events')
                if c.msg['event_type'] == DISK_RECOVERED]

    assert wait_for(lambda: len(recovered()) == 1, timeout=15.0)
    kinds = [c.msg['event_type'] for c in server.messages('fleet/events')]
    # Exactly once, after every message that was held while the disk was full.
    assert kinds == ['test.numbered'] * 20 + [DISK_RECOVERED]
    assert json.loads(recovered()[0].msg['payload_json'])['held'] >= 1
