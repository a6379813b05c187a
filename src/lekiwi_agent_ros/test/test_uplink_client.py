"""UplinkClient over a real WebSocket against the stand-in gateway: delivery, cuts, restarts."""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from uplink_server import UplinkTestServer

from lekiwi_agent_ros.ros_json import to_json
from lekiwi_agent_ros.uplink.backoff import Backoff, BackoffConfig
from lekiwi_agent_ros.uplink.outbox import Outbox, TopicPolicy
from lekiwi_agent_ros.uplink.uplink_client import UplinkClient
from lekiwi_agent_ros.uplink.uplink_session import (
    ActionGoal,
    Command,
    CommandOutcome,
    SessionConfig,
    UplinkSession,
)
from lekiwi_fleet_msgs.msg import FleetEvent

ROBOT = 'kiwi-007'
TOKEN = 'lkw_test_token'
POLICIES = {'fleet/events': TopicPolicy(state=False)}


def event(boot_id: str, n: int) -> dict:
    return to_json(
        FleetEvent(robot_id=ROBOT, boot_id=boot_id, sequence=n, severity=1, event_type='test.tick')
    )


class Handler:
    def __init__(self) -> None:
        self.commands: list[Command] = []

    def handle_command(self, command: Command) -> CommandOutcome:
        self.commands.append(command)
        return CommandOutcome(True, 'pong')

    def start_action_goal(self, goal: ActionGoal) -> str | None:
        return 'no deploy action server on this robot'

    def cancel_action_goal(self, goal_id: str) -> None:
        pass


class Agent:
    """An outbox, a session and a client: the uplink without ROS."""

    def __init__(
        self, path: Path, url: str, boot_id: str, token: str = TOKEN, **session: float
    ) -> None:
        self.logs: list[tuple[int, str]] = []
        self.outbox = Outbox(str(path), boot_id, POLICIES)
        self.handler = Handler()
        self.session = UplinkSession(
            SessionConfig(robot_id=ROBOT, agent_version='0.1.0', **session),
            self.outbox,
            self.handler,
            time.monotonic,
            self.log,
        )
        backoff = Backoff(BackoffConfig(base_s=0.05, cap_s=0.3), random.random, time.monotonic)
        self.client = UplinkClient(url, self.session, backoff, lambda: token, self.log)
        self.client.start()

    def log(self, level: int, text: str) -> None:
        self.logs.append((level, text))

    def put(self, n: int) -> None:
        self.outbox.put('fleet/events', event(self.outbox.boot_id, n))
        self.client.wake()

    def stop(self) -> None:
        self.client.stop()
        self.outbox.close()


@pytest.fixture
def server() -> Iterator[UplinkTestServer]:
    server = UplinkTestServer({ROBOT: TOKEN})
    yield server
    server.close()
    assert server.violations == []


def assert_exactly_once(server: UplinkTestServer, boot_id: str, count: int) -> None:
    seqs = sorted(c.seq for c in server.messages('fleet/events') if c.boot_id == boot_id)
    assert seqs == list(range(1, count + 1))
    numbers = sorted(
        c.msg['sequence'] for c in server.messages('fleet/events') if c.boot_id == boot_id
    )
    assert numbers == list(range(count))


def test_messages_are_delivered_acknowledged_and_removed(
    server: UplinkTestServer, tmp_path: Path
) -> None:
    agent = Agent(tmp_path / 'o.db', server.url, 'boot-0000000a')
    try:
        for n in range(20):
            agent.put(n)
        assert server.wait_for(lambda: len(agent.outbox) == 0)
        assert_exactly_once(server, 'boot-0000000a', 20)
        assert agent.client.connected and agent.session.stats.acked_total == 20
        assert any('authenticated' in text for _level, text in agent.logs)
    finally:
        agent.stop()


def test_cut_connections_lose_and_duplicate_nothing(
    server: UplinkTestServer, tmp_path: Path
) -> None:
    agent = Agent(tmp_path / 'o.db', server.url, 'boot-0000000b', window=4)
    total = 300
    try:
        assert server.wait_for(lambda: server.connected(ROBOT))

        def produce() -> None:
            for n in range(total):
                agent.put(n)
                time.sleep(0.002)

        producer = threading.Thread(target=produce)
        producer.start()
        for _ in range(3):
            time.sleep(0.15)
            # Cut an authenticated connection each time: a cut while the agent waits out its
            # backoff (jittered, up to 0.3 s), or before it has its auth reply, is not counted.
            assert server.wait_for(lambda: server.connected(ROBOT) and agent.client.connected)
            server.cut(ROBOT)
        producer.join()
        assert server.wait_for(lambda: len(agent.outbox) == 0, 10.0)
        assert_exactly_once(server, 'boot-0000000b', total)
        # The outbox may have emptied before the last cut: the reconnection follows anyway.
        assert server.wait_for(lambda: agent.session.stats.connections_total >= 4)
    finally:
        agent.stop()


def test_a_resend_after_a_cut_is_acked_on_the_new_connection(tmp_path: Path) -> None:
    # The ack of seq 1 is still pending on the first connection when it is cut; the agent
    # resends seq 1 on its next connection, and that one must answer it. (The stand-in once
    # kept pending acks per robot: the cut connection's late flush swallowed the new one's,
    # and the agent waited out its 10 s ack timeout.)
    server = UplinkTestServer({ROBOT: TOKEN}, ack_delay_s=1.0)
    agent = Agent(tmp_path / 'o.db', server.url, 'boot-0000000e')
    try:
        assert server.wait_for(lambda: server.connected(ROBOT) and agent.client.connected)
        agent.put(0)
        assert server.wait_for(lambda: len(server.messages('fleet/events')) == 1)
        server.cut(ROBOT)
        assert server.wait_for(lambda: len(agent.outbox) == 0, 5.0)
        assert server.duplicates == 1 and agent.session.stats.connections_total == 2
        assert_exactly_once(server, 'boot-0000000e', 1)
    finally:
        agent.stop()
        server.close()


def test_server_down_then_back_replays_the_outbox(server: UplinkTestServer, tmp_path: Path) -> None:
    agent = Agent(tmp_path / 'o.db', server.url, 'boot-0000000c')
    try:
        assert server.wait_for(lambda: server.connected(ROBOT))
        server.stop_listening()
        for n in range(30):
            agent.put(n)
        time.sleep(0.5)
        assert len(agent.outbox) == 30 and not agent.client.connected
        server.start_listening()
        assert server.wait_for(lambda: len(agent.outbox) == 0, 10.0)
        assert_exactly_once(server, 'boot-0000000c', 30)
        assert any('ended' in text for _level, text in agent.logs)
    finally:
        agent.stop()


def test_a_restarted_agent_replays_what_the_last_one_left(
    server: UplinkTestServer, tmp_path: Path
) -> None:
    server.acks_enabled = False
    first = Agent(tmp_path / 'o.db', server.url, 'boot-0000000d')
    for n in range(10):
        first.put(n)
    assert server.wait_for(lambda: len(server.messages()) == 10)
    first.stop()  # stopped before any ack: all ten stay in the file
    server.acks_enabled = True
    second = Agent(tmp_path / 'o.db', server.url, 'boot-0000000e')
    try:
        second.put(0)
        assert server.wait_for(lambda: len(second.outbox) == 0)
        assert_exactly_once(server, 'boot-0000000d', 10)
        assert_exactly_once(server, 'boot-0000000e', 1)
        assert server.duplicates == 10  # resent, and de-duplicated by the server
    finally:
        second.stop()


def test_withheld_acks_make_the_uplink_reconnect_and_resend(
    server: UplinkTestServer, tmp_path: Path
) -> None:
    server.acks_enabled = False
    agent = Agent(tmp_path / 'o.db', server.url, 'boot-0000000f', ack_timeout_s=0.3)
    try:
        agent.put(0)
        assert server.wait_for(lambda: agent.session.stats.connections_total >= 2)
        server.acks_enabled = True
        assert server.wait_for(lambda: len(agent.outbox) == 0)
        assert any('unacknowledged' in text for _level, text in agent.logs)
        assert_exactly_once(server, 'boot-0000000f', 1)
    finally:
        agent.stop()


def test_a_wrong_token_is_refused_and_retried_without_storing(
    server: UplinkTestServer, tmp_path: Path
) -> None:
    agent = Agent(tmp_path / 'o.db', server.url, 'boot-00000010', token='lkw_wrong')
    try:
        agent.put(0)
        assert server.wait_for(lambda: server.auth_results.count('auth_failed') >= 2)
        assert server.messages() == [] and len(agent.outbox) == 1
        assert any(
            level == logging.ERROR and 'auth_failed' in text for level, text in agent.logs
        )
    finally:
        agent.stop()


def test_no_token_means_no_connection_and_a_clear_error(
    server: UplinkTestServer, tmp_path: Path
) -> None:
    agent = Agent(tmp_path / 'o.db', server.url, 'boot-00000011', token='')
    try:
        assert server.wait_for(
            lambda: any('no robot token' in text for _level, text in agent.logs)
        )
        assert server.auth_results == []
    finally:
        agent.stop()


def test_malformed_frames_from_the_server_do_not_break_the_uplink(
    server: UplinkTestServer, tmp_path: Path
) -> None:
    agent = Agent(tmp_path / 'o.db', server.url, 'boot-00000012')
    try:
        assert server.wait_for(lambda: agent.client.connected)
        for junk in (
            b'\xff\x00binary',
            'not json at all',
            '[]',
            '{"op": 42}',
            '{"op": "publish", "topic": "fleet/ack", "msg": {"boot_id": 1}}',
            json.dumps({'op': 'call_service', 'service': 'fleet/command', 'id': 'x', 'args': 7}),
        ):
            server.send_raw(ROBOT, junk)
        agent.put(0)
        assert server.wait_for(lambda: len(agent.outbox) == 0)
        assert agent.session.stats.malformed_total == 5 and agent.client.connected
        response = server.call_command(ROBOT, 'ping')
        assert response['values'] == {'accepted': True, 'message': 'pong'}
        server.send_goal(ROBOT, 'goal-1', {'deployment_id': 'd'})
        assert server.wait_for(lambda: server.action_frames(ROBOT))
        assert server.action_frames(ROBOT)[0]['result'] is False
    finally:
        agent.stop()


def test_extra_frames_go_only_while_connected(server: UplinkTestServer, tmp_path: Path) -> None:
    agent = Agent(tmp_path / 'o.db', 'ws://127.0.0.1:9/', 'boot-00000013')
    try:
        agent.client.send_soon('{"op":"action_feedback","id":"g","action":"fleet/deploy"}')
        assert server.wait_for(lambda: any('ended' in t for _l, t in agent.logs))
        assert not agent.client.connected and agent.client.url == 'ws://127.0.0.1:9/'
    finally:
        agent.stop()
    agent = Agent(tmp_path / 'p.db', server.url, 'boot-00000014')
    try:
        assert server.wait_for(lambda: agent.client.connected)
        agent.client.send_soon(
            '{"op":"action_feedback","id":"g","action":"fleet/deploy",'
            '"values":{"phase":1,"progress":0.0,"message":"downloading"}}'
        )
        assert server.wait_for(lambda: server.action_frames(ROBOT))
    finally:
        agent.stop()


def test_a_second_connection_of_the_robot_replaces_the_first(
    server: UplinkTestServer, tmp_path: Path
) -> None:
    first = Agent(tmp_path / 'a.db', server.url, 'boot-00000015')
    second = None
    try:
        assert server.wait_for(lambda: first.client.connected)
        second = Agent(tmp_path / 'b.db', server.url, 'boot-00000016')
        assert server.wait_for(
            lambda: any('took over' in text for _level, text in first.logs)
        )
    finally:
        first.stop()
        if second is not None:
            second.stop()
