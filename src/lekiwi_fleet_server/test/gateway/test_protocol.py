"""Frame parsing, validation and encoding against docs/robot-protocol-v1.schema.json."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest
import robot_frames as rf
from hypothesis import given, settings
from hypothesis import strategies as st

from lekiwi_fleet_server.domain import protocol as p
from lekiwi_fleet_server.domain.protocol import ErrorCode, ProtocolError

SCHEMA_PATH = Path(__file__).resolve().parents[3].parent / 'docs' / 'robot-protocol-v1.schema.json'
PROTOCOL_DOC = SCHEMA_PATH.with_name('robot-protocol.md')
PUBLISH_DEFS = {
    'fleet/heartbeat': 'Publish_RobotHeartbeat',
    'teleop/status': 'Publish_TeleopStatus',
    'fleet/telemetry': 'Publish_TelemetryDelta',
    'fleet/events': 'Publish_FleetEvent',
    'fleet/deployment_status': 'Publish_DeploymentStatus',
}


@pytest.fixture(scope='module')
def schema() -> dict[str, Any]:
    if not SCHEMA_PATH.exists():
        pytest.skip('protocol schema not found: run from the repository checkout')
    return json.loads(SCHEMA_PATH.read_text())


def validator(schema: dict[str, Any], definition: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator({**schema, '$ref': f'#/$defs/{definition}'})


def code_of(fn: Any, *args: Any) -> ErrorCode:
    with pytest.raises(ProtocolError) as info:
        fn(*args)
    return info.value.code


# -- decoding -------------------------------------------------------------------------------

def test_decode_accepts_object_and_refuses_the_rest() -> None:
    assert p.decode_frame(b'{"op": "publish"}') == {'op': 'publish'}
    assert p.decode_frame('{"a": 1}') == {'a': 1}
    for bad in (b'not json', b'[1, 2]', b'"str"', b'{"a": NaN}', b'', b'\xff\xfe'):
        assert code_of(p.decode_frame, bad) is ErrorCode.MALFORMED_JSON


def test_frame_op_and_id() -> None:
    assert p.frame_op({'op': 'publish'}) == 'publish'
    assert p.frame_op({'op': 'advertise'}) == 'advertise'
    assert code_of(p.frame_op, {'op': 'explode'}) is ErrorCode.UNKNOWN_OP
    assert code_of(p.frame_op, {}) is ErrorCode.UNKNOWN_OP
    assert code_of(p.frame_op, {'op': 3}) is ErrorCode.UNKNOWN_OP
    assert p.frame_id({'op': 'publish', 'boot_id': 'abc', 'seq': 4}) == 'abc:4'
    assert p.frame_id({'op': 'call_service', 'id': 'x'}) == 'x'
    assert p.frame_id({'op': 'publish', 'id': 7}) is None


# -- auth -----------------------------------------------------------------------------------

def test_parse_auth_both_shapes() -> None:
    req = p.parse_auth(rf.auth('kiwi-1', 'lkw_x', ['lekiwi-fleet/2', 'lekiwi-fleet/1']))
    assert (req.robot_id, req.token, req.protocols) == (
        'kiwi-1', 'lkw_x', ('lekiwi-fleet/2', 'lekiwi-fleet/1'))
    assert req.agent_version == '0.1.0'
    ros = p.parse_auth({'op': 'auth', 'client': 'kiwi-2', 'mac': 'tok', 'rand': 'r', 't': 0})
    assert (ros.robot_id, ros.token, ros.protocols) == ('kiwi-2', 'tok', ('lekiwi-fleet/1',))


@pytest.mark.parametrize('frame', [
    {'op': 'auth'},
    {'op': 'auth', 'robot_id': 'bad id!', 'token': 't', 'protocol': ['lekiwi-fleet/1']},
    {'op': 'auth', 'robot_id': 'a' * 65, 'token': 't', 'protocol': ['lekiwi-fleet/1']},
    {'op': 'auth', 'robot_id': 'k', 'token': '', 'protocol': ['lekiwi-fleet/1']},
    {'op': 'auth', 'robot_id': 'k', 'token': 't' * 257, 'protocol': ['lekiwi-fleet/1']},
    {'op': 'auth', 'robot_id': 'k', 'token': 't', 'protocol': []},
    {'op': 'auth', 'robot_id': 'k', 'token': 't', 'protocol': 'lekiwi-fleet/1'},
    {'op': 'auth', 'robot_id': 'k', 'token': 't', 'protocol': ['x'], 'agent_version': 1},
    {'op': 'auth', 'client': 'k', 'mac': 5},
])
def test_parse_auth_refuses_bad_frames(frame: dict[str, Any]) -> None:
    assert code_of(p.parse_auth, frame) is ErrorCode.AUTH_FAILED


def test_negotiate_picks_first_common_version() -> None:
    assert p.negotiate(['lekiwi-fleet/9', 'lekiwi-fleet/1']) == 'lekiwi-fleet/1'
    error = pytest.raises(ProtocolError, p.negotiate, ['lekiwi-fleet/9']).value
    assert error.code is ErrorCode.UNSUPPORTED_PROTOCOL and error.close_code == 4401


def test_close_codes_follow_the_protocol_table() -> None:
    assert ProtocolError(ErrorCode.OVERSIZE_FRAME, '').close_code == 1009
    assert ProtocolError(ErrorCode.AUTH_TIMEOUT, '').close_code == 4408
    assert ProtocolError(ErrorCode.REPLACED, '').close_code == 4409
    assert ProtocolError(ErrorCode.SLOW_CONSUMER, '').close_code == 1008
    assert ProtocolError(ErrorCode.INVALID_MESSAGE, '').close_code is None
    assert ProtocolError(ErrorCode.SERVER_ERROR, '').close_code is None


# -- publish --------------------------------------------------------------------------------

@pytest.mark.parametrize('topic', sorted(rf.MESSAGES))
def test_every_topic_valid_example_is_accepted(topic: str, schema: dict[str, Any]) -> None:
    frame = rf.publish(topic, 17)
    validator(schema, PUBLISH_DEFS[topic]).validate(frame)
    parsed = p.parse_publish(frame)
    assert (parsed.topic, parsed.boot_id, parsed.seq) == (topic, rf.BOOT, 17)
    assert parsed.msg == frame['msg']


def test_publish_errors_name_the_frame_and_field() -> None:
    frame = rf.publish('fleet/events', 17)
    frame['msg']['severity'] = 9
    error = pytest.raises(ProtocolError, p.parse_publish, frame).value
    assert error.code is ErrorCode.INVALID_MESSAGE
    assert error.frame_id == f'{rf.BOOT}:17'
    assert "field 'severity' must be an integer 0..4" in error.message
    frame = rf.publish('fleet/heartbeat', 3)
    frame['msg']['resources']['cpu_percent'] = 'hot'
    error = pytest.raises(ProtocolError, p.parse_publish, frame).value
    assert "field 'resources'.'cpu_percent' must be a number or null" in error.message
    del frame['msg']['header']
    assert "field 'header' is missing" in pytest.raises(
        ProtocolError, p.parse_publish, frame).value.message


@pytest.mark.parametrize('change, code', [
    ({'topic': 'fleet/secrets'}, ErrorCode.UNKNOWN_TOPIC),
    ({'topic': None}, ErrorCode.UNKNOWN_TOPIC),
    ({'boot_id': 'short'}, ErrorCode.INVALID_MESSAGE),
    ({'boot_id': 'x' * 65}, ErrorCode.INVALID_MESSAGE),
    ({'boot_id': 'abc_defgh'}, ErrorCode.INVALID_MESSAGE),
    ({'seq': 0}, ErrorCode.INVALID_MESSAGE),
    ({'seq': 2**63}, ErrorCode.INVALID_MESSAGE),
    ({'seq': '5'}, ErrorCode.INVALID_MESSAGE),
    ({'seq': True}, ErrorCode.INVALID_MESSAGE),
    ({'type': 'std_msgs/msg/String'}, ErrorCode.INVALID_MESSAGE),
    ({'id': 5}, ErrorCode.INVALID_MESSAGE),
    ({'msg': []}, ErrorCode.INVALID_MESSAGE),
])
def test_publish_envelope_errors(change: dict[str, Any], code: ErrorCode) -> None:
    frame = {**rf.publish('fleet/events', 1), **change}
    assert code_of(p.parse_publish, frame) is code


def test_publish_with_matching_type_and_id_is_accepted() -> None:
    frame = {**rf.publish('fleet/events', 1), 'type': 'lekiwi_fleet_msgs/msg/FleetEvent',
             'id': 'publish:1', 'latch': False}
    assert p.parse_publish(frame).seq == 1


_ODD_VALUES = st.sampled_from([
    None, True, False, 'x', '', 'A.b', 'a' * 200, -1, 0, 7, 70000, 2**64, 1.5, -0.5, [], [1],
    ['cpu'], [None], {}, {'sec': 1}, {'sec': 1, 'nanosec': 2_000_000_000},
])


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _paths(v, (*prefix, i))
    return out


@settings(max_examples=400, deadline=None)
@given(topic=st.sampled_from(sorted(rf.MESSAGES)), data=st.data())
def test_validator_agrees_with_the_json_schema(topic: str, data: st.DataObject) -> None:
    """Mutate a valid frame at a random place: both validators accept or both refuse."""
    schema = json.loads(SCHEMA_PATH.read_text())
    frame = copy.deepcopy(rf.publish(topic, 5))
    path = data.draw(st.sampled_from(_paths(frame['msg'])))
    target = frame['msg']
    for part in path[:-1]:
        target = target[part]
    if data.draw(st.booleans()) and isinstance(target, dict):
        del target[path[-1]]
    else:
        target[path[-1]] = data.draw(_ODD_VALUES)
    schema_ok = validator(schema, PUBLISH_DEFS[topic]).is_valid(frame)
    try:
        p.parse_publish(frame)
        ours_ok = True
    except ProtocolError as exc:
        assert exc.code is ErrorCode.INVALID_MESSAGE
        ours_ok = False
    assert ours_ok == schema_ok, (path, frame['msg'])


# -- other robot ops ------------------------------------------------------------------------

def test_parse_subscribe_only_acks() -> None:
    assert p.parse_subscribe({'op': 'subscribe', 'topic': 'fleet/ack'}) == 'fleet/ack'
    assert code_of(p.parse_subscribe, {'op': 'subscribe', 'topic': 'joy'}) \
        is ErrorCode.UNKNOWN_TOPIC


def test_parse_command_response(schema: dict[str, Any]) -> None:
    frame = {'op': 'service_response', 'service': 'fleet/command', 'id': 'cmd-1',
             'result': True, 'values': {'accepted': True, 'message': 'pong'}}
    validator(schema, 'CommandResponseFrame').validate(frame)
    response = p.parse_command_response(frame)
    assert (response.id, response.result, response.accepted, response.message) == (
        'cmd-1', True, True, 'pong')
    for change in ({'service': 'x'}, {'id': 3}, {'result': 'yes'}, {'values': {}},
                   {'values': {'accepted': True, 'message': 1}}):
        assert code_of(p.parse_command_response, {**frame, **change}) \
            is ErrorCode.INVALID_MESSAGE


# -- acks and encoding ----------------------------------------------------------------------

def test_compress_ranges() -> None:
    assert p.compress_ranges([]) == []
    assert p.compress_ranges([5]) == [[5, 5]]
    assert p.compress_ranges([17, 12, 13, 14, 15, 16, 19, 19]) == [[12, 17], [19, 19]]
    assert p.compress_ranges(range(1, 1001)) == [[1, 1000]]


@given(st.sets(st.integers(1, 500), max_size=60))
def test_compress_ranges_covers_exactly(seqs: set[int]) -> None:
    ranges = p.compress_ranges(seqs)
    covered = {s for a, b in ranges for s in range(a, b + 1)}
    assert covered == seqs
    assert all(ranges[i][1] + 1 < ranges[i + 1][0] for i in range(len(ranges) - 1))


def test_outgoing_frames_match_the_schema(schema: dict[str, Any]) -> None:
    validator(schema, 'AuthOkFrame').validate(orjson.loads(p.auth_ok_frame('kiwi-1',
                                                                          'lekiwi-fleet/1')))
    error = ProtocolError(ErrorCode.INVALID_MESSAGE, 'bad', 'b:1')
    decoded = orjson.loads(p.error_frame(error))
    validator(schema, 'ErrorFrame').validate(decoded)
    assert decoded['id'] == 'b:1' and decoded['code'] == 'invalid_message'
    assert 'id' not in orjson.loads(p.error_frame(ProtocolError(ErrorCode.AUTH_TIMEOUT, 'x')))
    validator(schema, 'AckFrame').validate(orjson.loads(p.ack_frame(rf.BOOT, [[1, 3]])))
    validator(schema, 'CommandCallFrame').validate(
        orjson.loads(p.command_frame('cmd-1', 'ping', '{}')))


# The schema definition a frame of each op (other than publish and status) must match.
_OP_DEFS = {
    'auth': 'AuthFrame', 'call_service': 'CommandCallFrame',
    'service_response': 'CommandResponseFrame', 'send_action_goal': 'DeployGoalFrame',
    'cancel_action_goal': 'CancelDeployGoalFrame', 'action_feedback': 'DeployFeedbackFrame',
    'action_result': 'DeployResultFrame',
}


def _definition_of(frame: dict[str, Any]) -> str:
    op = frame['op']
    if op == 'publish':
        return 'AckFrame' if frame['topic'] == 'fleet/ack' else PUBLISH_DEFS[frame['topic']]
    if op == 'status' and frame.get('id') == 'admission':
        return 'AdmissionStatusFrame'
    if op == 'status' and frame.get('id') == 'key_proof':
        return 'KeyChallengeFrame'
    if op == 'status':
        return 'AuthOkFrame' if frame['level'] == 'info' else 'ErrorFrame'
    return _OP_DEFS[op]


def test_every_frame_the_schema_lists_is_defined(schema: dict[str, Any]) -> None:
    listed = schema['x-robot-to-server'] + schema['x-server-to-robot']
    assert set(listed) <= set(schema['$defs'])
    assert set(_OP_DEFS.values()) | set(PUBLISH_DEFS.values()) <= set(listed)


def test_the_protocol_documents_examples_are_valid_frames(schema: dict[str, Any]) -> None:
    examples = re.findall(r'```json\n(.*?)```', PROTOCOL_DOC.read_text(), re.S)
    ops = set()
    for text in examples:
        frame = json.loads(text)
        validator(schema, _definition_of(frame)).validate(frame)
        ops.add(frame['op'])
    assert {'auth', 'status', 'publish', 'call_service', 'service_response',
            'send_action_goal', 'action_feedback', 'action_result'} <= ops


def test_error_codes_match_the_schema(schema: dict[str, Any]) -> None:
    assert {c.value for c in ErrorCode} == set(
        schema['$defs']['ErrorFrame']['properties']['code']['enum'])
    assert set(p.MESSAGE_VALIDATORS) == set(schema['x-topics'])


# -- the compiled checks accept exactly what the explaining validators accept ----------------

_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**65), max_value=2**65),
    st.floats(allow_nan=False), st.text(max_size=70), st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2))


@st.composite
def mutated_messages(draw: st.DrawFn) -> tuple[str, Any]:
    """A valid message of some topic with one field (at any depth) replaced, or removed."""
    topic = draw(st.sampled_from(sorted(rf.MESSAGES)))
    msg = copy.deepcopy(rf.MESSAGES[topic]())
    node: Any = msg
    while True:
        keys = list(node) if isinstance(node, dict) else list(range(len(node)))
        if not keys:
            break
        key = draw(st.sampled_from(keys))
        if isinstance(node[key], dict | list) and node[key] and draw(st.booleans()):
            node = node[key]
            continue
        if isinstance(node, dict) and draw(st.integers(0, 5)) == 0:
            del node[key]
        else:
            node[key] = draw(_VALUES)
        break
    return topic, msg


@settings(max_examples=600, deadline=None)
@given(mutated_messages())
def test_fast_checks_agree_with_the_validators(case: tuple[str, Any]) -> None:
    topic, msg = case
    assert p.MESSAGE_FAST_CHECKS[topic](msg) == (p.MESSAGE_VALIDATORS[topic](msg) is None)


@pytest.mark.parametrize('topic', sorted(rf.MESSAGES))
def test_fast_checks_accept_valid_messages_and_refuse_non_objects(topic: str) -> None:
    assert p.MESSAGE_FAST_CHECKS[topic](rf.MESSAGES[topic]())
    assert not p.MESSAGE_FAST_CHECKS[topic]([])
    assert not p.MESSAGE_FAST_CHECKS[topic](None)


def test_a_heartbeat_may_leave_resources_out_and_the_auth_answer_says_so(
        schema: dict[str, Any]) -> None:
    auth_ok = orjson.loads(p.auth_ok_frame('kiwi-1', 'lekiwi-fleet/1'))
    assert p.FEATURE_RESOURCES_OPTIONAL in auth_ok['features']
    frame = rf.publish('fleet/heartbeat', 18)
    del frame['msg']['resources']
    validator(schema, PUBLISH_DEFS['fleet/heartbeat']).validate(frame)
    assert p.MESSAGE_FAST_CHECKS['fleet/heartbeat'](frame['msg'])
    assert 'resources' not in p.parse_publish(frame).msg
    # Present, resources are checked as before (a v1 robot always sends them).
    frame['msg']['resources'] = {**rf.resources(), 'cpu_percent': 'high'}
    assert not p.MESSAGE_FAST_CHECKS['fleet/heartbeat'](frame['msg'])
    error = pytest.raises(ProtocolError, p.parse_publish, frame).value
    assert "'resources'.'cpu_percent'" in error.message
    frame['msg']['resources'] = None
    assert pytest.raises(ProtocolError, p.parse_publish, frame).value.code is (
        ErrorCode.INVALID_MESSAGE)
    # Other fields stay required.
    frame = rf.publish('fleet/heartbeat', 19)
    del frame['msg']['teleop_score']
    assert not p.MESSAGE_FAST_CHECKS['fleet/heartbeat'](frame['msg'])
    assert not validator(schema, PUBLISH_DEFS['fleet/heartbeat']).is_valid(frame)


def test_agent_figures_are_optional_in_both_validators(schema: dict[str, Any]) -> None:
    """Issue 20: older agents send no figures; newer ones send them; both validators agree."""
    check = validator(schema, PUBLISH_DEFS['fleet/heartbeat'])
    old = rf.publish('fleet/heartbeat', 5)
    new = copy.deepcopy(old)
    new['msg']['uplink_transport'] = 'polling'
    new['msg']['resources'].update(agent_rss_mb=58.2, agent_uss_mb=49.1, uplink_ack_p99_ms=None)
    for frame in (old, new):
        check.validate(frame)
        p.parse_publish(frame)
    for where, value in (('uplink_transport', 'carrier-pigeon'), ('uplink_transport', 3),
                         ('agent_rss_mb', 'big'), ('uplink_ack_p99_ms', [1])):
        bad = copy.deepcopy(new)
        (bad['msg'] if where == 'uplink_transport' else bad['msg']['resources'])[where] = value
        assert not check.is_valid(bad)
        assert code_of(p.parse_publish, bad) is ErrorCode.INVALID_MESSAGE
