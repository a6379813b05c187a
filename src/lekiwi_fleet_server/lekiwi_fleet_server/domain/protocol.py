"""Protocols lekiwi-fleet/2 and /1 (docs/robot-protocol.md): frame decoding, validation, encoding.

Version 2 adds one thing to version 1: a state topic's message (heartbeat, teleop status) may be
numbered in a sequence space of its own, `state_seq`, acknowledged in the ack's `state_ranges`;
history seqs (`seq`) then number history messages only, without gaps.

Pure: no I/O, no clock. The gateway feeds it raw payloads and sends what it encodes. The message
validators mirror docs/robot-protocol-v1.schema.json field by field (a test checks them against
the schema with jsonschema); they are hand-written because a generic schema validator costs
tens of microseconds per frame on the gateway's hot path. One deliberate difference: an
`integer` field must be a JSON integer; `1.0` is refused where the schema would accept it.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

import orjson

from lekiwi_fleet_server.domain.fast_check import FastCheck, compile_fast
from lekiwi_fleet_server.domain.topics import (
    ACK,
    PROTOCOL_VERSION,
    TOPIC_DELIVERY,
    TOPIC_TYPES,
    Delivery,
)

PROTOCOL_V1 = PROTOCOL_VERSION
PROTOCOL_V2 = 'lekiwi-fleet/2'
# The robot's preference decides (negotiate): a v1 robot gets v1, unchanged.
SUPPORTED_PROTOCOLS: tuple[str, ...] = (PROTOCOL_V2, PROTOCOL_V1)
# Topics whose messages a v2 robot numbers in the state space.
STATE_SEQ_TOPICS = frozenset(t for t, d in TOPIC_DELIVERY.items() if d is Delivery.STATE)
COMMAND_SERVICE = 'fleet/command'
COMMAND_TYPES = frozenset({'ping', 'configure', 'request_snapshot'})

# Ops a stock rosbridge v2 client sends as bookkeeping (roslibpy advertises before it publishes
# and subscribes to receive acks): accepted and otherwise ignored.
BOOKKEEPING_OPS = frozenset({
    'advertise', 'unadvertise', 'subscribe', 'unsubscribe', 'advertise_service',
    'unadvertise_service', 'set_level', 'action_feedback', 'action_result',
})
DATA_OPS = frozenset({'auth', 'publish', 'service_response'})

# What an error frame echoes of the refused frame, at most (docs/robot-protocol.md, section 5).
MAX_ERROR_MSG_CHARS = 256
MAX_ERROR_ID_CHARS = 128
# What this server takes beyond plain v1, announced in the auth answer.
FEATURE_RESOURCES_OPTIONAL = 'heartbeat-resources-optional'
SERVER_FEATURES = (FEATURE_RESOURCES_OPTIONAL,)

_U64 = 18446744073709551615
_I64 = 9223372036854775807
_ROBOT_ID = re.compile(r'[A-Za-z0-9._-]{1,64}')
_BOOT_ID = re.compile(r'[A-Za-z0-9-]{8,64}')
_EVENT_TYPE = re.compile(r'[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*')


class ErrorCode(str, Enum):
    """Codes of the protocol's error `status` frames."""

    MALFORMED_JSON = 'malformed_json'
    OVERSIZE_FRAME = 'oversize_frame'
    UNKNOWN_OP = 'unknown_op'
    UNKNOWN_TOPIC = 'unknown_topic'
    INVALID_MESSAGE = 'invalid_message'
    UNAUTHENTICATED = 'unauthenticated'
    AUTH_FAILED = 'auth_failed'
    AUTH_TIMEOUT = 'auth_timeout'
    ADMISSION_REFUSED = 'admission_refused'
    UNSUPPORTED_PROTOCOL = 'unsupported_protocol'
    REPLACED = 'replaced'
    SLOW_CONSUMER = 'slow_consumer'
    RATE_LIMITED = 'rate_limited'
    SERVER_ERROR = 'server_error'


# WebSocket close code for the errors that end the connection; the others leave it open.
CLOSE_CODES: dict[ErrorCode, int] = {
    ErrorCode.OVERSIZE_FRAME: 1009,
    ErrorCode.UNAUTHENTICATED: 4401,
    ErrorCode.AUTH_FAILED: 4401,
    ErrorCode.AUTH_TIMEOUT: 4408,
    ErrorCode.ADMISSION_REFUSED: 4403,
    ErrorCode.UNSUPPORTED_PROTOCOL: 4401,
    ErrorCode.REPLACED: 4409,
    ErrorCode.SLOW_CONSUMER: 1008,
}


class ProtocolError(Exception):
    """A refused frame: the one exception the gateway maps onto an error `status` frame."""

    def __init__(self, code: ErrorCode, message: str, frame_id: str | None = None) -> None:
        super().__init__(f'{code.value}: {message}')
        self.code = code
        self.message = message
        self.frame_id = frame_id

    @property
    def close_code(self) -> int | None:
        """Return the WebSocket close code this error ends the connection with, or None."""
        return CLOSE_CODES.get(self.code)


@dataclass(frozen=True, slots=True)
class AuthRequest:
    robot_id: str
    token: str
    protocols: tuple[str, ...]
    agent_version: str | None
    admission: AdmissionProof | None = None  # instead of a token: a robot asking admission
    key_proof: AdmissionProof | None = None  # with a token: the key it is bound to (key_binding)


@dataclass(frozen=True, slots=True)
class AdmissionProof:
    """The `admission` object of an auth frame: a public key, and its signature of the nonce."""

    public_key: str
    signature: str | None  # None: the robot asks for the nonce (the challenge) first


@dataclass(frozen=True, slots=True)
class Publish:
    topic: str
    boot_id: str
    seq: int  # the history seq, or the state seq when `state_space`
    msg: dict[str, Any]
    state_space: bool = False  # numbered by `state_seq` (lekiwi-fleet/2)


@dataclass(frozen=True, slots=True)
class CommandResponse:
    id: str
    result: bool
    accepted: bool
    message: str
    values: Mapping[str, Any]


# ---------------------------------------------------------------------------------------------
# Decoding

def decode_frame(payload: bytes | bytearray | memoryview | str) -> dict[str, Any]:
    """Parse one frame's payload into a JSON object or raise `malformed_json`."""
    try:
        frame = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise ProtocolError(ErrorCode.MALFORMED_JSON, f'not valid JSON: {exc}') from None
    if type(frame) is not dict:
        raise ProtocolError(ErrorCode.MALFORMED_JSON, 'a frame must be a JSON object')
    return frame


def frame_id(frame: Mapping[str, Any]) -> str | None:
    """Return the id an error about this frame names: `<boot_id>:<seq>` for a publish.

    A v2 state message's id is `<boot_id>:s<state_seq>` (publish_id).
    """
    boot_id, seq = frame.get('boot_id'), frame.get('seq')
    if frame.get('op') == 'publish' and type(boot_id) is str:
        if type(seq) is int:
            return f'{boot_id}:{seq}'
        state_seq = frame.get('state_seq')
        if type(state_seq) is int:
            return f'{boot_id}:s{state_seq}'
    fid = frame.get('id')
    return fid if type(fid) is str else None


def frame_op(frame: Mapping[str, Any]) -> str:
    """Return the frame's op, or raise `unknown_op` when it is missing or not accepted."""
    op = frame.get('op')
    if type(op) is not str or (op not in DATA_OPS and op not in BOOKKEEPING_OPS):
        raise ProtocolError(ErrorCode.UNKNOWN_OP, f'unknown op {op!r}', frame_id(frame))
    return op


def parse_auth(frame: Mapping[str, Any]) -> AuthRequest:
    """Read an `auth` frame in either accepted shape, or raise `auth_failed`."""
    if 'robot_id' in frame:
        robot_id, token = frame.get('robot_id'), frame.get('token')
        protocols = frame.get('protocol')
        if (type(protocols) is not list or not protocols
                or any(type(p) is not str for p in protocols)):
            raise ProtocolError(ErrorCode.AUTH_FAILED, "'protocol' must be a non-empty list of "
                                'strings', 'auth')
        agent_version = frame.get('agent_version')
        if agent_version is not None and type(agent_version) is not str:
            raise ProtocolError(ErrorCode.AUTH_FAILED, "'agent_version' must be a string", 'auth')
        protocol_tuple = tuple(protocols)
        if 'admission' in frame and 'token' not in frame:
            if type(robot_id) is not str or not _ROBOT_ID.fullmatch(robot_id):
                raise ProtocolError(ErrorCode.AUTH_FAILED,
                                    'robot id must be 1-64 of [A-Za-z0-9._-]', 'auth')
            return AuthRequest(robot_id, '', protocol_tuple, agent_version,
                               parse_admission(frame.get('admission')))
    elif 'client' in frame:
        # rosauth shape of stock rosbridge clients: client = robot id, mac = token.
        robot_id, token = frame.get('client'), frame.get('mac')
        protocol_tuple, agent_version = (PROTOCOL_VERSION,), None
    else:
        raise ProtocolError(ErrorCode.AUTH_FAILED, "auth needs 'robot_id' and 'token'", 'auth')
    if type(robot_id) is not str or not _ROBOT_ID.fullmatch(robot_id):
        raise ProtocolError(ErrorCode.AUTH_FAILED, 'robot id must be 1-64 of [A-Za-z0-9._-]',
                            'auth')
    if type(token) is not str or not 1 <= len(token) <= 256:
        raise ProtocolError(ErrorCode.AUTH_FAILED, 'token must be a string of 1-256 characters',
                            'auth')
    key_proof = parse_admission(frame['key_proof'], 'key_proof') if 'key_proof' in frame else None
    return AuthRequest(robot_id, token, protocol_tuple, agent_version, key_proof=key_proof)


def parse_admission(value: Any, name: str = 'admission') -> AdmissionProof:
    """Read an auth frame's `admission` (or `key_proof`) object, or raise `auth_failed`."""
    if type(value) is not dict:
        raise ProtocolError(ErrorCode.AUTH_FAILED, f"'{name}' must be an object", 'auth')
    public_key, signature = value.get('public_key'), value.get('signature')
    if type(public_key) is not str or not 1 <= len(public_key) <= 128:
        raise ProtocolError(ErrorCode.AUTH_FAILED,
                            f"'{name}.public_key' must be a base64 string", 'auth')
    if signature is not None and (type(signature) is not str or not 1 <= len(signature) <= 256):
        raise ProtocolError(ErrorCode.AUTH_FAILED,
                            f"'{name}.signature' must be a base64 string", 'auth')
    return AdmissionProof(public_key, signature)


def admission_status_frame(msg: str, robot_id: str, **fields: Any) -> bytes:
    """Encode an info `status` frame of the admission exchange (challenge, pending, admitted)."""
    return encode({'op': 'status', 'level': 'info', 'id': 'admission', 'msg': msg,
                   'robot_id': robot_id, **fields})


def key_challenge_frame(robot_id: str, nonce: str) -> bytes:
    """Encode the info `status` frame asking a key-bound robot to sign `nonce`."""
    return encode({'op': 'status', 'level': 'info', 'id': 'key_proof', 'msg': 'key_challenge',
                   'robot_id': robot_id, 'nonce': nonce})


def negotiate(offered: Iterable[str], supported: tuple[str, ...] = SUPPORTED_PROTOCOLS) -> str:
    """Choose the first offered version the server speaks, or raise `unsupported_protocol`."""
    for version in offered:
        if version in supported:
            return version
    raise ProtocolError(ErrorCode.UNSUPPORTED_PROTOCOL,
                        f'no version in common; server speaks {", ".join(supported)}', 'auth')


def publish_id(boot_id: str, seq: int, state_space: bool = False) -> str:
    """Return the id errors give a publish: `<boot_id>:<seq>`, `<boot_id>:s<state_seq>`."""
    return f'{boot_id}:s{seq}' if state_space else f'{boot_id}:{seq}'


def parse_publish(frame: Mapping[str, Any], version: str = PROTOCOL_V1) -> Publish:
    """Validate a robot `publish` frame and its message, or raise the matching protocol error.

    `version` is the connection's protocol: only lekiwi-fleet/2 takes `state_seq`.
    """
    topic = frame.get('topic')
    expected_type = TOPIC_TYPES.get(topic) if type(topic) is str else None
    if expected_type is None or not isinstance(topic, str):
        raise ProtocolError(ErrorCode.UNKNOWN_TOPIC, f'unknown topic {topic!r}', frame_id(frame))
    boot_id, seq, msg = frame.get('boot_id'), frame.get('seq'), frame.get('msg')
    if type(boot_id) is not str or not _BOOT_ID.fullmatch(boot_id):
        raise ProtocolError(ErrorCode.INVALID_MESSAGE,
                            f"{topic}: 'boot_id' must be 8-64 of [A-Za-z0-9-]", frame_id(frame))
    state_space = 'state_seq' in frame
    if state_space:
        seq = _state_seq(frame, topic, version)
    elif type(seq) is not int or not 1 <= seq <= _I64:
        raise ProtocolError(ErrorCode.INVALID_MESSAGE,
                            f"{topic}: 'seq' must be an integer 1..2^63-1", frame_id(frame))
    msg_type = frame.get('type')
    if msg_type is not None and msg_type != expected_type:
        raise ProtocolError(ErrorCode.INVALID_MESSAGE,
                            f'{topic}: type must be {expected_type}, not {msg_type!r}',
                            frame_id(frame))
    if 'id' in frame and type(frame['id']) is not str:
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, f"{topic}: 'id' must be a string",
                            frame_id(frame))
    if not MESSAGE_FAST_CHECKS[topic](msg):
        error = MESSAGE_VALIDATORS[topic](msg)
        if error is not None:
            raise ProtocolError(ErrorCode.INVALID_MESSAGE, f'{topic}: {error}', frame_id(frame))
    return Publish(topic, boot_id, seq, msg, state_space)  # type: ignore[arg-type]


def _state_seq(frame: Mapping[str, Any], topic: str, version: str) -> int:
    """Return a v2 state message's `state_seq`, or raise `invalid_message`."""
    fid = frame_id(frame)
    if version != PROTOCOL_V2:
        raise ProtocolError(ErrorCode.INVALID_MESSAGE,
                            f"{topic}: 'state_seq' needs protocol {PROTOCOL_V2}", fid)
    if topic not in STATE_SEQ_TOPICS:
        raise ProtocolError(ErrorCode.INVALID_MESSAGE,
                            f"{topic}: a history topic is numbered by 'seq', not 'state_seq'", fid)
    if 'seq' in frame:
        raise ProtocolError(ErrorCode.INVALID_MESSAGE,
                            f"{topic}: 'seq' and 'state_seq' are exclusive", fid)
    state_seq = frame['state_seq']
    if type(state_seq) is not int or not 1 <= state_seq <= _I64:
        raise ProtocolError(ErrorCode.INVALID_MESSAGE,
                            f"{topic}: 'state_seq' must be an integer 1..2^63-1", fid)
    return state_seq


def connection_boot_id() -> str:
    """Return a new boot id for the stock rosbridge publishes of one connection."""
    return f'conn-{secrets.token_hex(8)}'


def check_identity(publish: Publish, robot_id: str, *, check_boot: bool = True) -> None:
    """Refuse a message that names another robot or boot than the frame it came in.

    `check_boot=False` for a stock publish, whose boot id the server chose: the message's own
    boot id is the robot's and cannot match it.
    """
    msg = publish.msg
    named_robot, named_boot = msg.get('robot_id'), msg.get('boot_id')
    fid = publish_id(publish.boot_id, publish.seq, publish.state_space)
    if named_robot is not None and named_robot != robot_id:
        raise ProtocolError(ErrorCode.INVALID_MESSAGE,
                            f"{publish.topic}: msg.robot_id {named_robot!r} is not this "
                            f"connection's robot {robot_id!r}", fid)
    if check_boot and named_boot is not None and named_boot != publish.boot_id:
        raise ProtocolError(ErrorCode.INVALID_MESSAGE,
                            f"{publish.topic}: msg.boot_id {named_boot!r} is not the frame's "
                            f"boot_id {publish.boot_id!r}", fid)


def parse_subscribe(frame: Mapping[str, Any]) -> str:
    """Accept a subscription to acks (how a rosbridge client receives them); refuse others."""
    topic = frame.get('topic')
    if topic != ACK:
        raise ProtocolError(ErrorCode.UNKNOWN_TOPIC,
                            f'only {ACK} can be subscribed to, not {topic!r}', frame_id(frame))
    return topic


def parse_command_response(frame: Mapping[str, Any]) -> CommandResponse:
    """Validate a `service_response` to a `fleet/command` call, or raise `invalid_message`."""
    fid, values, result = frame.get('id'), frame.get('values'), frame.get('result')
    if frame.get('service') != COMMAND_SERVICE:
        raise ProtocolError(ErrorCode.INVALID_MESSAGE,
                            f"service_response: 'service' must be {COMMAND_SERVICE}",
                            fid if type(fid) is str else None)
    if type(fid) is not str:
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, "service_response: 'id' must be a string")
    if type(result) is not bool:
        raise ProtocolError(ErrorCode.INVALID_MESSAGE,
                            "service_response: 'result' must be a boolean", fid)
    if (type(values) is not dict or type(values.get('accepted')) is not bool
            or type(values.get('message')) is not str):
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, "service_response: 'values' needs "
                            "'accepted' (boolean) and 'message' (string)", fid)
    return CommandResponse(fid, result, values['accepted'], values['message'], values)


# ---------------------------------------------------------------------------------------------
# Message validators: each returns None when the value is valid, else what is wrong.

Check = Callable[[Any], 'str | None']


def _spec(check: Check, *spec: Any) -> Check:
    check.spec = spec  # type: ignore[attr-defined]  # what fast_check compiles
    return check


def _integer(lo: int, hi: int) -> Check:
    def check(v: Any) -> str | None:
        if type(v) is int and lo <= v <= hi:
            return None
        return f'must be an integer {lo}..{hi}'
    return _spec(check, 'int', lo, hi)


def _number_or_null(v: Any) -> str | None:
    t = type(v)
    return None if (t is float or t is int or v is None) else 'must be a number or null'


def _boolean(v: Any) -> str | None:
    return None if type(v) is bool else 'must be a boolean'


_spec(_number_or_null, 'num')
_spec(_boolean, 'bool')


def _string(max_length: int | None = None, pattern: re.Pattern[str] | None = None) -> Check:
    def check(v: Any) -> str | None:
        if type(v) is not str:
            return 'must be a string'
        if max_length is not None and len(v) > max_length:
            return f'must be at most {max_length} characters'
        if pattern is not None and not pattern.fullmatch(v):
            return f'must match {pattern.pattern}'
        return None
    return _spec(check, 'str', max_length, pattern)


def _array(item: Check, max_items: int) -> Check:
    def check(v: Any) -> str | None:
        if type(v) is not list:
            return 'must be an array'
        if len(v) > max_items:
            return f'must have at most {max_items} items'
        for i, x in enumerate(v):
            err = item(x)
            if err is not None:
                return f'item {i} {err}'
        return None
    return _spec(check, 'array', item, max_items)


def _object(fields: dict[str, Check], optional: frozenset[str] = frozenset()) -> Check:
    """Check an object's fields; those named in `optional` may be left out."""
    items = tuple(fields.items())

    def check(v: Any) -> str | None:
        if type(v) is not dict:
            return 'must be an object'
        for name, field_check in items:
            if name not in v:
                if name in optional:
                    continue
                return f"field '{name}' is missing"
            err = field_check(v[name])
            if err is not None:
                # Name the innermost field first: "field 'resources'.'cpu_percent' must be ..."
                if err.startswith('field '):
                    return f"field '{name}'.{err[6:]}"
                return f"field '{name}' {err}"
        return None
    return _spec(check, 'object', items, optional)


_U64_CHECK = _integer(0, _U64)
_STR = _string()
_ANY_INT = _integer(-(2**64), 2**64)  # the schema does not bound Time.sec; JSON parsing does
_TIME = _object({'sec': _ANY_INT, 'nanosec': _integer(0, 999_999_999)})
_HEADER = _object({'stamp': _TIME, 'frame_id': _STR})
_RESOURCES = _object({
    'cpu_percent': _number_or_null,
    'load_average_1min': _number_or_null,
    'memory_used_bytes': _U64_CHECK,
    'memory_total_bytes': _U64_CHECK,
    'disk_used_bytes': _U64_CHECK,
    'disk_total_bytes': _U64_CHECK,
    'temperature_c': _number_or_null,
    'battery_voltage_v': _number_or_null,
    'battery_percent': _number_or_null,
    'network_tx_bytes_per_s': _number_or_null,
    'network_rx_bytes_per_s': _number_or_null,
    'uptime_s': _number_or_null,
    # The agent's own figures (issue 20); older agents do not send them.
    'agent_rss_mb': _number_or_null,
    'agent_uss_mb': _number_or_null,
    'uplink_ack_p99_ms': _number_or_null,
}, optional=frozenset({'agent_rss_mb', 'agent_uss_mb', 'uplink_ack_p99_ms'}))

MESSAGE_VALIDATORS: dict[str, Check] = {
    'fleet/heartbeat': _object({
        'header': _HEADER, 'robot_id': _STR, 'agent_version': _STR, 'software_version': _STR,
        'boot_id': _STR, 'sequence': _U64_CHECK, 'state': _integer(0, 6),
        'teleop_active': _boolean, 'teleop_score': _number_or_null, 'resources': _RESOURCES,
        # The agent's own figures (issue 20): its transport here, its memory and ack latency
        # as extra `resources` fields; older agents send neither.
        'uplink_transport': _string(16, re.compile(r'websocket|polling')),
    # A robot told FEATURE_RESOURCES_OPTIONAL leaves unchanged resources out (v1 robots never
    # do): the server keeps the last ones it has.
    }, optional=frozenset({'resources', 'uplink_transport'})),
    'teleop/status': _object({
        'header': _HEADER, 'active': _boolean, 'score': _number_or_null,
        'joystick_signal': _number_or_null, 'video_signal': _number_or_null,
        'webrtc_signal': _number_or_null, 'latency_signal': _number_or_null,
        'joystick_rate_hz': _number_or_null, 'active_video_streams': _integer(0, 65535),
        'webrtc_peers': _integer(0, 65535), 'control_latency_ms': _number_or_null,
        'active_since': _TIME,
    }),
    'fleet/telemetry': _object({
        'header': _HEADER, 'robot_id': _STR, 'boot_id': _STR, 'sequence': _U64_CHECK,
        'base_sequence': _U64_CHECK, 'full_snapshot': _boolean,
        'field_names': _array(_string(64, re.compile(r'.{1,64}', re.S)), 256),
        'field_values': _array(_number_or_null, 256),
    }),
    'fleet/events': _object({
        'header': _HEADER, 'robot_id': _STR, 'boot_id': _STR, 'sequence': _U64_CHECK,
        'severity': _integer(0, 4), 'event_type': _string(128, _EVENT_TYPE),
        'payload_json': _string(16384),
    }),
    'fleet/deployment_status': _object({
        'header': _HEADER, 'robot_id': _STR, 'deployment_id': _STR, 'release_version': _STR,
        'previous_version': _STR, 'phase': _integer(0, 13), 'progress': _number_or_null,
        'message': _STR,
    }),
}
# The same checks compiled to say only valid or not: parse_publish runs these first (one call
# a message) and the explaining validators above only for a message they refuse.
MESSAGE_FAST_CHECKS: dict[str, FastCheck] = {
    topic: compile_fast(check) for topic, check in MESSAGE_VALIDATORS.items()}


# ---------------------------------------------------------------------------------------------
# Acks and encoding

def compress_ranges(seqs: Iterable[int]) -> list[list[int]]:
    """Return sorted inclusive `[first, last]` ranges covering the given sequence numbers."""
    ranges: list[list[int]] = []
    for s in sorted(set(seqs)):
        if ranges and s == ranges[-1][1] + 1:
            ranges[-1][1] = s
        else:
            ranges.append([s, s])
    return ranges


def encode(frame: Mapping[str, Any]) -> bytes:
    """Serialise one outgoing frame."""
    return orjson.dumps(frame)


def auth_ok_frame(robot_id: str, protocol: str) -> bytes:
    """Encode the `status` frame that confirms authentication (with the server's features)."""
    # `features` is additive: a v1 robot that does not know it ignores it.
    return encode({'op': 'status', 'level': 'info', 'id': 'auth', 'msg': 'authenticated',
                   'protocol': protocol, 'robot_id': robot_id,
                   'features': list(SERVER_FEATURES)})


def truncate(text: str, limit: int) -> str:
    """Return `text` cut to at most `limit` characters, marked with an ellipsis when cut."""
    return text if len(text) <= limit else text[:limit - 1] + '\u2026'


def error_frame(error: ProtocolError) -> bytes:
    """Encode the error `status` frame for a refused frame (what it echoes is truncated)."""
    # A message names what it refuses (a topic, an op, a field): a 60 KB topic name must not
    # come back as a 60 KB reply, so both the message and the id are cut.
    frame: dict[str, Any] = {'op': 'status', 'level': 'error', 'code': error.code.value,
                             'msg': truncate(error.message, MAX_ERROR_MSG_CHARS)}
    if error.frame_id is not None:
        frame['id'] = truncate(error.frame_id, MAX_ERROR_ID_CHARS)
    return encode(frame)


def ack_frame(boot_id: str, ranges: list[list[int]]) -> bytes:
    """Encode one ack frame: the committed sequence ranges of one boot."""
    return encode({'op': 'publish', 'topic': ACK, 'msg': {'boot_id': boot_id, 'ranges': ranges}})


def ack_frame_of(boot_id: str, seqs: list[int], state_seqs: list[int] | None = None) -> bytes:
    """Encode the ack frame of a boot's committed seqs (`ack_frame` of their ranges).

    `state_seqs` (lekiwi-fleet/2): the boot's accepted state seqs, as `state_ranges` (then
    `ranges` may be empty). One ack per robot and batch, thousands a second: the common single
    seq skips the sort.
    """
    if state_seqs is not None:
        return encode({'op': 'publish', 'topic': ACK, 'msg': {
            'boot_id': boot_id, 'ranges': compress_ranges(seqs),
            'state_ranges': compress_ranges(state_seqs)}})
    if len(seqs) == 1:
        return encode({'op': 'publish', 'topic': ACK,
                       'msg': {'boot_id': boot_id, 'ranges': [[seqs[0], seqs[0]]]}})
    return ack_frame(boot_id, compress_ranges(seqs))


def command_frame(command_id: str, command_type: str, payload_json: str) -> bytes:
    """Encode a `call_service` of `fleet/command`."""
    return encode({'op': 'call_service', 'service': COMMAND_SERVICE, 'id': command_id,
                   'args': {'command_id': command_id, 'command_type': command_type,
                            'payload_json': payload_json}})
