"""UplinkSession: authentication, send window, acks, refusals, retries, commands and goals."""

import json
import logging
from pathlib import Path

import jsonschema
import pytest
from protocol_schema import validate_robot_frame, validator

from lekiwi_agent_ros.ros_json import to_json
from lekiwi_agent_ros.uplink.outbox import Outbox, TopicPolicy
from lekiwi_agent_ros.uplink.uplink_session import (
    ActionGoal,
    Command,
    CommandOutcome,
    SessionConfig,
    UplinkSession,
    action_feedback_frame,
    action_result_frame,
)
from lekiwi_fleet_msgs.msg import RobotHeartbeat

BOOT = 'b00700000000beef'
POLICIES = {
    'fleet/heartbeat': TopicPolicy(state=True),
    'fleet/events': TopicPolicy(state=False),
}
AUTH_OK = json.dumps(
    {
        'op': 'status',
        'level': 'info',
        'id': 'auth',
        'msg': 'authenticated',
        'protocol': 'lekiwi-fleet/1',
        'robot_id': 'kiwi-001',
    }
)


def event(n: int) -> dict:
    return {
        'header': {'stamp': {'sec': 1, 'nanosec': 0}, 'frame_id': ''},
        'robot_id': 'kiwi-001',
        'boot_id': BOOT,
        'sequence': n,
        'severity': 1,
        'event_type': 'test.happened',
        'payload_json': '{}',
    }


def heartbeat(n: int) -> dict:
    return to_json(RobotHeartbeat(robot_id='kiwi-001', boot_id=BOOT, sequence=n))


def ack(*ranges: list[int], boot_id: str = BOOT) -> str:
    return json.dumps(
        {'op': 'publish', 'topic': 'fleet/ack', 'msg': {'boot_id': boot_id, 'ranges': list(ranges)}}
    )


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


class RecordingHandler:
    """Stands in for the ROS side: records commands and goals."""

    def __init__(self) -> None:
        self.commands: list[Command] = []
        self.goals: list[ActionGoal] = []
        self.cancelled: list[str] = []
        self.refuse_goals: str | None = None
        self.fail = False

    def handle_command(self, command: Command) -> CommandOutcome:
        if self.fail:
            raise RuntimeError('publisher gone')
        self.commands.append(command)
        return CommandOutcome(True, 'pong' if command.command_type == 'ping' else 'delivered')

    def start_action_goal(self, goal: ActionGoal) -> str | None:
        if self.fail:
            raise RuntimeError('client gone')
        self.goals.append(goal)
        return self.refuse_goals

    def cancel_action_goal(self, goal_id: str) -> None:
        self.cancelled.append(goal_id)


class Rig:
    """A session over a real outbox file, a fake clock and a recording handler."""

    def __init__(self, tmp_path: Path, **config: float) -> None:
        self.clock = Clock()
        self.logs: list[tuple[int, str]] = []
        self.outbox = Outbox(str(tmp_path / 'outbox.db'), BOOT, POLICIES, now=self.clock)
        self.handler = RecordingHandler()
        self.session = UplinkSession(
            SessionConfig(robot_id='kiwi-001', agent_version='0.1.0', **config),
            self.outbox,
            self.handler,
            self.clock,
            lambda level, text: self.logs.append((level, text)),
        )

    def connect(self) -> None:
        validate_robot_frame(self.session.connection_opened('lkw_secret'))
        assert self.session.receive(AUTH_OK).authenticated

    def send(self) -> list[dict]:
        return [validate_robot_frame(text) for text in self.session.frames_to_send()]


@pytest.fixture
def rig(tmp_path: Path) -> Rig:
    return Rig(tmp_path, window=3)


def test_auth_first_and_nothing_sent_before_the_server_accepts(rig: Rig) -> None:
    rig.outbox.put('fleet/events', event(1))
    auth = validate_robot_frame(rig.session.connection_opened('lkw_secret'))
    assert auth == {
        'op': 'auth',
        'robot_id': 'kiwi-001',
        'token': 'lkw_secret',
        'protocol': ['lekiwi-fleet/2', 'lekiwi-fleet/1'],
        'agent_version': '0.1.0',
    }
    assert rig.session.frames_to_send() == [] and not rig.session.ready
    reaction = rig.session.receive(AUTH_OK)
    assert reaction.authenticated and reaction.close_reason is None and rig.session.ready
    assert [f['seq'] for f in rig.send()] == [1]


def test_state_goes_before_history_and_history_through_the_window(rig: Rig) -> None:
    rig.connect()
    for n in range(5):
        rig.outbox.put('fleet/events', event(n))
    rig.outbox.put('fleet/heartbeat', heartbeat(1))
    frames = rig.session.frames_to_send()
    topics_seqs = [(json.loads(f)['topic'], json.loads(f)['seq']) for f in frames]
    assert topics_seqs == [
        ('fleet/heartbeat', 6),
        ('fleet/events', 1),
        ('fleet/events', 2),
        ('fleet/events', 3),
    ]
    # window full (3 history frames): more state still goes, history waits
    rig.outbox.put('fleet/heartbeat', heartbeat(2))
    assert [json.loads(f)['seq'] for f in rig.session.frames_to_send()] == [7]
    assert rig.session.receive(ack([1, 2])).frames == []
    assert [json.loads(f)['seq'] for f in rig.session.frames_to_send()] == [4, 5]
    assert len(rig.outbox) == 5 and rig.session.stats.acked_total == 2
    rig.session.receive(ack([3, 7]))
    assert len(rig.outbox) == 0 and rig.session.in_flight == 0


def test_acks_remove_only_frames_sent_on_this_connection(rig: Rig) -> None:
    rig.connect()
    rig.outbox.put('fleet/events', event(1))
    rig.outbox.put('fleet/events', event(2))
    rig.session.frames_to_send()
    rig.outbox.put('fleet/events', event(3))  # not sent yet
    rig.session.receive(ack([1, 100]))
    rig.session.receive(ack([1, 2], boot_id='someotherboot1'))
    assert len(rig.outbox) == 1 and rig.session.stats.acked_total == 2


def test_reconnect_resends_everything_unacknowledged_in_order(rig: Rig) -> None:
    rig.connect()
    for n in range(3):
        rig.outbox.put('fleet/events', event(n))
    rig.outbox.put('fleet/heartbeat', heartbeat(1))
    rig.send()
    rig.session.receive(ack([2, 2]))
    rig.session.connection_closed()
    assert not rig.session.ready and rig.session.in_flight == 0
    rig.outbox.put('fleet/heartbeat', heartbeat(2))  # a new heartbeat: the old one was sent
    rig.connect()
    assert [(f['topic'], f['seq']) for f in rig.send()] == [
        ('fleet/heartbeat', 4),
        ('fleet/heartbeat', 5),
        ('fleet/events', 1),
        ('fleet/events', 3),
    ]


@pytest.mark.parametrize('code', ['invalid_message', 'unknown_topic'])
def test_a_frame_refused_for_good_is_dropped(rig: Rig, code: str) -> None:
    rig.connect()
    rig.outbox.put('fleet/events', event(1))
    rig.outbox.put('fleet/events', event(2))
    rig.send()
    refusal = {'op': 'status', 'level': 'error', 'id': f'{BOOT}:1', 'code': code, 'msg': 'bad'}
    validator('ErrorFrame').validate(refusal)
    assert rig.session.receive(json.dumps(refusal)).close_reason is None
    assert len(rig.outbox) == 1 and rig.session.stats.rejected_total == 1
    assert rig.session.stats.last_error == f'{code}: bad'
    assert any(level == logging.ERROR and 'dropped' in text for level, text in rig.logs)


def test_a_frame_the_server_could_not_store_is_resent_after_a_delay(tmp_path: Path) -> None:
    rig = Rig(tmp_path, retry_delay_s=2.0)
    rig.connect()
    rig.outbox.put('fleet/events', event(1))
    rig.send()
    error = {'op': 'status', 'level': 'error', 'id': f'{BOOT}:1', 'code': 'server_error'}
    rig.session.receive(json.dumps(dict(error, msg='db down')))
    assert rig.session.in_flight == 0 and rig.session.next_deadline() == 102.0
    assert rig.session.frames_to_send() == []
    rig.clock.t += 2.0
    assert [f['seq'] for f in rig.send()] == [1]
    rig.session.receive(ack([1, 1]))
    assert len(rig.outbox) == 0
    # an error about a frame not in flight is only logged
    rig.session.receive(json.dumps(dict(error, id=f'{BOOT}:99', msg='?')))
    rig.session.receive(json.dumps(dict(error, id='no-seq-here', msg='?')))
    assert len(rig.outbox) == 0


@pytest.mark.parametrize(
    'code', ['auth_failed', 'auth_timeout', 'unsupported_protocol', 'unauthenticated', 'replaced']
)
def test_refusals_of_the_connection_close_it(rig: Rig, code: str) -> None:
    rig.session.connection_opened('lkw_bad')
    frame = {'op': 'status', 'level': 'error', 'code': code, 'msg': 'no'}
    reaction = rig.session.receive(json.dumps(frame))
    assert reaction.close_reason and not rig.session.ready
    assert rig.session.stats.last_error == f'{code}: no'


@pytest.mark.parametrize(
    ('change', 'problem'),
    [({'protocol': 'lekiwi-fleet/9'}, 'lekiwi-fleet/9'), ({'robot_id': 'kiwi-002'}, 'kiwi-002')],
)
def test_an_auth_answer_for_something_else_closes(rig: Rig, change: dict, problem: str) -> None:
    rig.session.connection_opened('lkw')
    reaction = rig.session.receive(json.dumps(dict(json.loads(AUTH_OK), **change)))
    assert problem in (reaction.close_reason or '') and not rig.session.ready


def test_timeouts(tmp_path: Path) -> None:
    rig = Rig(tmp_path, ack_timeout_s=5.0, auth_timeout_s=3.0)
    rig.session.connection_opened('lkw')
    assert rig.session.next_deadline() == 103.0 and rig.session.expired() is None
    rig.clock.t += 3.5
    assert 'auth' in (rig.session.expired() or '')
    rig.connect()
    assert rig.session.expired() is None and rig.session.next_deadline() is None
    rig.outbox.put('fleet/events', event(1))
    rig.send()
    rig.clock.t += 5.5
    assert '1 frames unacknowledged' in (rig.session.expired() or '')


def test_commands_are_delivered_and_answered(rig: Rig) -> None:
    rig.connect()
    call = {
        'op': 'call_service',
        'service': 'fleet/command',
        'id': 'cmd-1',
        'args': {'command_id': 'cmd-1', 'command_type': 'ping', 'payload_json': '{"x": 1}'},
    }
    validator('CommandCallFrame').validate(call)
    [text] = rig.session.receive(json.dumps(call)).frames
    assert validate_robot_frame(text) == {
        'op': 'service_response',
        'service': 'fleet/command',
        'id': 'cmd-1',
        'result': True,
        'values': {'accepted': True, 'message': 'pong'},
    }
    [command] = rig.handler.commands
    assert command.payload == {'x': 1} and command.command_type == 'ping'
    assert rig.session.stats.commands_total == 1


@pytest.mark.parametrize(
    ('args', 'message'),
    [
        ('nope', 'args must be an object'),
        ({'command_id': 1, 'command_type': 'ping', 'payload_json': '{}'}, 'command_id'),
        ({'command_id': 'c', 'command_type': 'reboot', 'payload_json': '{}'}, 'unknown command'),
        ({'command_id': 'c', 'command_type': 'ping', 'payload_json': '{'}, 'not JSON'),
        ({'command_id': 'c', 'command_type': 'ping', 'payload_json': '[1]'}, 'JSON object'),
    ],
)
def test_bad_commands_are_refused_with_a_reason(rig: Rig, args: object, message: str) -> None:
    rig.connect()
    call = {'op': 'call_service', 'service': 'fleet/command', 'id': 'c', 'args': args}
    [text] = rig.session.receive(json.dumps(call)).frames
    response = validate_robot_frame(text)
    assert response['result'] is False and message in response['values']['message']
    assert rig.handler.commands == []


def test_unknown_services_and_failing_handlers_get_a_refusal(rig: Rig) -> None:
    rig.connect()
    call = {'op': 'call_service', 'service': 'other/service', 'id': 'x', 'args': {}}
    response = json.loads(rig.session.receive(json.dumps(call)).frames[0])
    assert response['result'] is False and 'unknown service' in response['values']['message']
    rig.handler.fail = True
    call = {
        'op': 'call_service',
        'service': 'fleet/command',
        'id': 'y',
        'args': {'command_id': 'y', 'command_type': 'configure', 'payload_json': '{}'},
    }
    response = validate_robot_frame(rig.session.receive(json.dumps(call)).frames[0])
    assert response['values'] == {'accepted': False, 'message': 'robot error: publisher gone'}


def test_deploy_goals_go_to_the_handler_or_get_a_clear_refusal(rig: Rig) -> None:
    rig.connect()
    goal = {
        'op': 'send_action_goal',
        'id': 'goal-1',
        'action': 'fleet/deploy',
        'action_type': 'lekiwi_fleet_msgs/action/Deploy',
        'args': {'deployment_id': 'd1'},
    }
    validator('DeployGoalFrame').validate(goal)
    assert rig.session.receive(json.dumps(goal)).frames == []
    assert rig.handler.goals[0].args == {'deployment_id': 'd1'}
    rig.handler.refuse_goals = 'no deploy action server on this robot'
    [text] = rig.session.receive(json.dumps(goal)).frames
    result = validate_robot_frame(text)
    assert result['op'] == 'action_result' and result['result'] is False
    assert result['status'] == 6  # aborted
    assert result['values']['message'] == 'no deploy action server on this robot'
    for bad, reason in (
        (dict(goal, action='fleet/other'), 'unknown action'),
        (dict(goal, args=[1]), 'args must be an object'),
    ):
        [text] = rig.session.receive(json.dumps(bad)).frames
        # A goal for another action gets its answer outside the protocol's deploy frames.
        answer = validate_robot_frame(text) if bad['action'] == 'fleet/deploy' else json.loads(text)
        assert reason in answer['values']['message']
    rig.handler.fail = True
    assert 'client gone' in rig.session.receive(json.dumps(goal)).frames[0]
    rig.session.receive(json.dumps({'op': 'cancel_action_goal', 'id': 'goal-1'}))
    assert rig.handler.cancelled == ['goal-1']


def test_action_frames() -> None:
    feedback = {'phase': 1, 'progress': 0.25, 'message': 'downloading'}
    assert validate_robot_frame(action_feedback_frame('g', 'fleet/deploy', feedback)) == {
        'op': 'action_feedback',
        'id': 'g',
        'action': 'fleet/deploy',
        'values': feedback,
    }
    values = {'success': True, 'final_version': '2.0.0', 'rolled_back': False, 'message': ''}
    result = validate_robot_frame(action_result_frame('g', 'fleet/deploy', values, 4, True))
    assert result['status'] == 4 and result['result'] is True
    with pytest.raises(jsonschema.ValidationError):  # values must be a whole Deploy result
        validate_robot_frame(action_result_frame('g', 'fleet/deploy', {}, 4, True))


@pytest.mark.parametrize(
    'frame',
    [
        b'\x00\x01',
        'not json',
        '[1, 2]',
        '{"op": "fly"}',
        '{"op": "publish", "topic": "fleet/ack", "msg": 3}',
        '{"op": "publish", "topic": "fleet/ack", "msg": {"boot_id": "b", "ranges": []}}',
        '{"op": "publish", "topic": "fleet/ack", "msg": {"boot_id": "b", "ranges": [[3, 1]]}}',
        '{"op": "publish", "topic": "fleet/ack", "msg": {"boot_id": "b", "ranges": [[true, 1]]}}',
        '{"op": "publish", "topic": "fleet/ack", "msg": {"boot_id": "b", "ranges": [1]}}',
        '{"op": "call_service", "service": "fleet/command", "args": {}}',
        '{"op": "send_action_goal", "action": "fleet/deploy", "args": {}}',
        '{"op": "cancel_action_goal"}',
    ],
)
def test_malformed_frames_are_counted_and_ignored(rig: Rig, frame: str | bytes) -> None:
    rig.connect()
    rig.outbox.put('fleet/events', event(1))
    rig.send()
    reaction = rig.session.receive(frame)
    assert reaction.frames == [] and reaction.close_reason is None
    assert rig.session.stats.malformed_total == 1 and rig.session.ready
    assert len(rig.outbox) == 1


def test_ops_before_authentication_are_ignored(rig: Rig) -> None:
    rig.outbox.put('fleet/events', event(1))
    rig.session.connection_opened('lkw')
    rig.session.receive(ack([1, 1]))
    assert len(rig.outbox) == 1 and rig.session.stats.malformed_total == 1
    info = {'op': 'status', 'level': 'info', 'id': 'x', 'msg': 'hello'}
    assert rig.session.receive(json.dumps(info)).frames == []


def test_invalid_configuration_is_refused() -> None:
    with pytest.raises(ValueError, match='window'):
        SessionConfig(robot_id='r', agent_version='0', window=0)
    with pytest.raises(ValueError, match='ack_timeout_s'):
        SessionConfig(robot_id='r', agent_version='0', ack_timeout_s=0)


def test_heartbeat_resources_go_only_when_changed_if_the_server_offers_it(rig: Rig) -> None:
    rig.session.connection_opened('lkw_secret')
    offer = {**json.loads(AUTH_OK), 'features': ['heartbeat-resources-optional']}
    validator('AuthOkFrame').validate(offer)
    assert rig.session.receive(json.dumps(offer)).authenticated
    rig.outbox.put('fleet/heartbeat', heartbeat(1))
    (first,) = rig.send()
    assert first['msg']['resources']['memory_used_bytes'] == 0
    rig.session.receive(ack([first['seq'], first['seq']]))
    rig.clock.t += 1.0
    rig.outbox.put('fleet/heartbeat', heartbeat(2))
    (second,) = rig.send()  # the schema allows the heartbeat without resources
    assert 'resources' not in second['msg'] and second['msg']['sequence'] == 2
    # The outbox keeps the message whole: after a reconnect to a v1 server it goes in full.
    rig.session.connection_closed()
    rig.connect()
    (again,) = rig.send()
    assert again['seq'] == second['seq'] and 'resources' in again['msg']


AUTH_OK_V2 = json.dumps({**json.loads(AUTH_OK), 'protocol': 'lekiwi-fleet/2'})


def test_v2_numbers_state_messages_in_their_own_space_and_takes_state_acks(rig: Rig) -> None:
    rig.outbox.put('fleet/events', event(1))
    rig.outbox.put('fleet/heartbeat', heartbeat(1))
    rig.session.connection_opened('lkw_secret')
    assert rig.session.receive(AUTH_OK_V2).authenticated
    sent = rig.send()
    assert [(f['topic'], f.get('seq'), f.get('state_seq')) for f in sent] == [
        ('fleet/heartbeat', None, 1), ('fleet/events', 1, None)]
    # The history ack leaves the heartbeat waiting; its state ack removes it.
    rig.session.receive(ack([1, 1]))
    assert len(rig.outbox) == 1 and rig.session.in_flight == 1
    state_ack = {'op': 'publish', 'topic': 'fleet/ack',
                 'msg': {'boot_id': BOOT, 'ranges': [], 'state_ranges': [[1, 1]]}}
    validator('AckFrame').validate(state_ack)
    rig.session.receive(json.dumps(state_ack))
    assert len(rig.outbox) == 0 and rig.session.in_flight == 0
    # A refusal names the state seq as `<boot>:s<n>`; a server_error is resent.
    rig.outbox.put('fleet/heartbeat', heartbeat(2))
    [again] = rig.send()
    assert again['state_seq'] == 2
    rig.session.receive(json.dumps({'op': 'status', 'level': 'error', 'code': 'server_error',
                                    'id': f'{BOOT}:s2', 'msg': 'busy'}))
    assert rig.session.in_flight == 0 and len(rig.outbox) == 1


def test_v1_sends_state_messages_in_the_one_space_of_v1(rig: Rig) -> None:
    rig.outbox.put('fleet/events', event(1))
    rig.outbox.put('fleet/heartbeat', heartbeat(1))
    rig.connect()  # the server chose lekiwi-fleet/1
    sent = rig.send()
    assert [(f['topic'], f.get('seq'), 'state_seq' in f) for f in sent] == [
        ('fleet/heartbeat', 2, False), ('fleet/events', 1, False)]
    rig.session.receive(ack([1, 2]))
    assert len(rig.outbox) == 0


def test_heartbeats_carry_the_agents_own_figures_and_its_ack_latency(rig: Rig) -> None:
    """Issue 20: transport, memory and the ack latency p99 on the wire; the schema takes them."""
    transport = ['websocket']
    rig.session.agent_figures = lambda: {'uplink_transport': transport[0],
                                         'agent_rss_mb': 58.24, 'agent_uss_mb': 49.0}
    rig.connect()
    rig.outbox.put('fleet/heartbeat', heartbeat(1))
    (first,) = rig.send()
    assert first['msg']['uplink_transport'] == 'websocket'
    assert first['msg']['resources']['agent_rss_mb'] == 58.24
    assert first['msg']['resources']['uplink_ack_p99_ms'] is None  # no ack yet
    rig.clock.t += 0.25  # the ack comes 250 ms after the send
    rig.session.receive(ack([first['seq'], first['seq']]))
    transport[0] = 'polling'
    rig.outbox.put('fleet/heartbeat', heartbeat(2))
    (second,) = rig.send()
    assert second['msg']['uplink_transport'] == 'polling'
    assert second['msg']['resources']['uplink_ack_p99_ms'] == 250.0
    rig.clock.t += 31.0  # out of the 30 s window
    rig.outbox.put('fleet/heartbeat', heartbeat(3))
    (third,) = rig.send()
    assert third['msg']['resources']['uplink_ack_p99_ms'] is None
