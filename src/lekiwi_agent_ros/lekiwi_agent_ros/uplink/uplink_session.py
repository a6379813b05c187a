"""The uplink's side of robot protocols `lekiwi-fleet/2` and `/1` as a state machine, no I/O.

It offers lekiwi-fleet/2 first: state messages then travel with a `state_seq` of their own
space (acked in `state_ranges`), history messages with `seq`. A v1 server gets every message
with `seq`: a state message is moved into the history space as it is first sent.

The WebSocket shell (`uplink_client.py`) feeds it what the server sends and writes what it
returns. It authenticates first; then it sends state messages before history messages, history
through a bounded window of unacknowledged frames, each class in outbox order; it removes what
the server acknowledges (only frames it sent on this connection), drops what the server refuses
for good, retries what the server could not store, and answers commands through a handler.
After a reconnect everything unacknowledged is sent again: the server de-duplicates by
(robot, boot_id, seq). Time comes in as `now`; logging goes through an injected callable.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from lekiwi_agent_ros.uplink.ack_latency import AckLatency, LatencyConfig
from lekiwi_agent_ros.uplink.heartbeat_reducer import (
    HEARTBEAT_TOPIC,
    HeartbeatReducer,
    ReducerConfig,
)
from lekiwi_agent_ros.uplink.key_proof import challenge_nonce, key_proof
from lekiwi_agent_ros.uplink.outbox import STATE_KEY_SUFFIX, Outbox, OutboxEntry

PROTOCOL = 'lekiwi-fleet/1'
PROTOCOL_V2 = 'lekiwi-fleet/2'
ACK_TOPIC = 'fleet/ack'
COMMAND_SERVICE = 'fleet/command'
DEPLOY_ACTION = 'fleet/deploy'
COMMAND_TYPES = ('ping', 'configure', 'request_snapshot')
# action_msgs/GoalStatus, as rosbridge reports it in action_result
GOAL_SUCCEEDED = 4
GOAL_CANCELED = 5
GOAL_ABORTED = 6
# The server will never accept these frames: keeping them would resend them forever.
_PERMANENT_REFUSALS = frozenset({'invalid_message', 'unknown_topic'})
_AUTH_REFUSALS = frozenset(
    {'auth_failed', 'auth_timeout', 'unsupported_protocol', 'unauthenticated', 'admission_refused'}
)
# What a robot signs to prove it holds its admission key (docs/robot-protocol.md, 1a).
ADMISSION_PREFIX = b'lekiwi-admission/1\n'

Log = Callable[[int, str], None]


class AdmissionSigner(Protocol):
    """The robot's admission key: its public key (base64) and a signer (uplink/admission_key)."""

    public_key: str

    def sign(self, message: bytes) -> str:
        """Return the base64 signature of `message`."""
        ...


def admission_message(robot_id: str, nonce: str) -> bytes:
    """Return the bytes a robot signs for the server's admission challenge."""
    return ADMISSION_PREFIX + robot_id.encode() + b'\n' + nonce.encode()


@dataclass(frozen=True)
class SessionConfig:
    """Identity of the robot and the limits of the session."""

    robot_id: str
    agent_version: str
    window: int = 32  # history frames sent and not yet acknowledged
    ack_timeout_s: float = 10.0  # oldest unacknowledged frame older than this: reconnect
    auth_timeout_s: float = 10.0
    retry_delay_s: float = 1.0  # after the server said server_error for a frame
    protocols: tuple[str, ...] = (PROTOCOL_V2, PROTOCOL)
    heartbeat: ReducerConfig = field(default_factory=ReducerConfig)
    ack_latency_window_s: float = 30.0  # the heartbeat's uplink_ack_p99_ms is over this window

    def __post_init__(self) -> None:
        if self.window < 1:
            raise ValueError(f'window must be >= 1, got {self.window}')
        for name in ('ack_timeout_s', 'auth_timeout_s', 'retry_delay_s'):
            if not getattr(self, name) > 0.0:
                raise ValueError(f'{name} must be > 0, got {getattr(self, name)}')


@dataclass(frozen=True)
class Command:
    """A `fleet/command` service call from the server."""

    request_id: str
    command_id: str
    command_type: str
    payload_json: str
    payload: dict[str, Any]


@dataclass(frozen=True)
class CommandOutcome:
    """The robot's answer to a command."""

    accepted: bool
    message: str


@dataclass(frozen=True)
class ActionGoal:
    """A `send_action_goal` from the server."""

    goal_id: str
    action: str
    action_type: str
    args: dict[str, Any]


class CommandHandler(Protocol):
    """What the session calls to deliver commands and goals into ROS."""

    def handle_command(self, command: Command) -> CommandOutcome:
        """Deliver a command; return whether it was accepted and why."""
        ...

    def start_action_goal(self, goal: ActionGoal) -> str | None:
        """Start a goal (feedback and result follow later); return a refusal reason or None."""
        ...

    def cancel_action_goal(self, goal_id: str) -> None:
        """Cancel a goal started earlier, if it still runs."""
        ...


@dataclass
class Reaction:
    """What the shell must do after a frame from the server."""

    frames: list[str] = field(default_factory=list)
    close_reason: str | None = None
    authenticated: bool = False
    token: str | None = None  # an admin admitted this robot: store this token


@dataclass
class _InFlight:
    id: int
    state: bool
    sent_at: float


@dataclass
class SessionStats:
    """Counters for status reports; plain ints so another thread may read them."""

    sent_total: int = 0
    acked_total: int = 0
    rejected_total: int = 0
    malformed_total: int = 0
    commands_total: int = 0
    connections_total: int = 0
    last_error: str = ''


def publish_frame(entry: OutboxEntry, msg_json: str | None = None) -> str:
    """Return the `publish` frame of a stored message (its JSON, or `msg_json`, as is)."""
    number = 'state_seq' if entry.state_space else 'seq'
    return (
        f'{{"op":"publish","topic":{json.dumps(entry.topic)},'
        f'"boot_id":{json.dumps(entry.boot_id)},"{number}":{entry.seq},'
        f'"msg":{entry.msg_json if msg_json is None else msg_json}}}'
    )


def action_feedback_frame(goal_id: str, action: str, values: dict[str, Any]) -> str:
    """Return a rosbridge `action_feedback` frame."""
    return _dumps({'op': 'action_feedback', 'id': goal_id, 'action': action, 'values': values})


def failed_result(message: str) -> dict[str, Any]:
    """Return the values of a Deploy result for a goal that did not run to an end of its own."""
    return {'success': False, 'final_version': '', 'rolled_back': False, 'message': message}


def action_result_frame(
    goal_id: str, action: str, values: dict[str, Any], status: int, result: bool
) -> str:
    """Return a rosbridge `action_result` frame."""
    return _dumps(
        {
            'op': 'action_result',
            'id': goal_id,
            'action': action,
            'values': values,
            'status': status,
            'result': result,
        }
    )


def _dumps(frame: dict[str, Any]) -> str:
    return json.dumps(frame, separators=(',', ':'), allow_nan=False)


class UplinkSession:
    """Protocol state of one robot's uplink across connections."""

    def __init__(
        self,
        config: SessionConfig,
        outbox: Outbox,
        handler: CommandHandler,
        now: Callable[[], float],
        log: Log,
    ) -> None:
        self._config = config
        self._admission: AdmissionSigner | None = None  # set while asking admission
        self._admission_pending = False  # an admin decides: the server keeps the connection
        # (token, key) of a login that offers its key's proof (uplink/key_proof.py)
        self._key_login: tuple[str, AdmissionSigner] | None = None
        self._outbox = outbox
        self._handler = handler
        self._now = now
        self._log = log
        self.stats = SessionStats()
        self._phase = 'disconnected'  # -> 'authenticating' -> 'ready'
        self._protocol: str | None = None  # the version the server chose for this connection
        self._opened_at = 0.0
        self._in_flight: dict[tuple[str, int], _InFlight] = {}
        self._history_in_flight = 0
        self._state_cursor = 0
        self._history_cursor = 0
        self._retry: dict[int, float] = {}  # outbox id -> when to send it again
        self.heartbeats = HeartbeatReducer(config.heartbeat, now)
        # The ack latency of every frame, on whichever transport (the heartbeat reports its p99).
        self.ack_latency = AckLatency(LatencyConfig(window_s=config.ack_latency_window_s,
                                                    min_samples=1), now)
        # The agent's own figures for its heartbeat (uplink_transport, memory), or None.
        self.agent_figures: Callable[[], Mapping[str, Any]] | None = None

    @property
    def ready(self) -> bool:
        """Tell whether the connection is authenticated."""
        return self._phase == 'ready'

    @property
    def in_flight(self) -> int:
        """Return how many frames await an acknowledgement."""
        return len(self._in_flight)

    def connection_opened(self, token: str, admission: AdmissionSigner | None = None) -> str:
        """Start a connection; return the `auth` frame to send first.

        Without a token and with an admission key, the frame asks admission instead.
        """
        self._reset()
        self._phase = 'authenticating'
        self._opened_at = self._now()
        self.stats.connections_total += 1
        if not token and admission is not None:
            self._admission = admission
            return self._auth_frame(admission={'public_key': admission.public_key})
        if admission is not None:  # its token may be bound to this key: offer its proof
            self._key_login = (token, admission)
            proof = key_proof(admission, self._config.robot_id)
            return self._auth_frame(token=token, key_proof=proof)
        return self._auth_frame(token=token)

    def _auth_frame(self, **fields: Any) -> str:
        return _dumps(
            {
                'op': 'auth',
                'robot_id': self._config.robot_id,
                **fields,
                'protocol': list(self._config.protocols),
                'agent_version': self._config.agent_version,
            }
        )

    @property
    def admission_pending(self) -> bool:
        """Tell whether this connection waits for an admin to decide its admission."""
        return self._admission_pending

    def connection_closed(self) -> None:
        """Forget the connection: everything unacknowledged goes again on the next one."""
        self._reset()
        self._phase = 'disconnected'

    def _reset(self) -> None:
        self._protocol = None
        self._in_flight.clear()
        self._history_in_flight = 0
        self._state_cursor = 0
        self._history_cursor = 0
        self._retry.clear()
        self._admission = None
        self._admission_pending = False
        self._key_login = None

    def frames_to_send(self) -> list[str]:
        """Return the frames to send now: retries, state, then history within the window."""
        if self._phase != 'ready':
            return []
        now = self._now()
        frames: list[str] = []
        due = [row_id for row_id, at in self._retry.items() if at <= now]
        for row_id in due:
            del self._retry[row_id]
        for entry in self._outbox.fetch(due):
            frames.append(self._send(entry, now))
        for entry in self._outbox.claim(state=True, after_id=self._state_cursor):
            self._state_cursor = entry.id
            frames.append(self._send(entry, now))
        room = self._config.window - self._history_in_flight
        if room > 0:
            for entry in self._outbox.claim(
                state=False, after_id=self._history_cursor, limit=room
            ):
                self._history_cursor = entry.id
                frames.append(self._send(entry, now))
        return frames

    def _send(self, entry: OutboxEntry, now: float) -> str:
        if entry.state_space and self._protocol != PROTOCOL_V2:
            entry = self._outbox.to_history_space(entry)  # v1 knows one sequence space
        if entry.key not in self._in_flight and not entry.state:
            self._history_in_flight += 1
        self._in_flight[entry.key] = _InFlight(entry.id, entry.state, now)
        self.stats.sent_total += 1
        if entry.topic == HEARTBEAT_TOPIC:
            figures = None
            if self.agent_figures is not None:
                p99 = self.ack_latency.p99()
                figures = {**self.agent_figures(),
                           'uplink_ack_p99_ms': None if p99 is None else round(p99 * 1000, 1)}
            return publish_frame(entry, self.heartbeats.reduce(entry.key, entry.msg_json,
                                                               figures))
        return publish_frame(entry)

    def _settle(self, key: tuple[str, int]) -> _InFlight | None:
        flight = self._in_flight.pop(key, None)
        if flight is not None and not flight.state:
            self._history_in_flight -= 1
        return flight

    def expired(self) -> str | None:
        """Return why the connection should be dropped now, or None."""
        now = self._now()
        if self._phase == 'authenticating' and not self._admission_pending:
            if now - self._opened_at > self._config.auth_timeout_s:
                return f'no answer to auth within {self._config.auth_timeout_s:g} s'
        elif self._phase == 'ready' and self._in_flight:
            oldest = min(flight.sent_at for flight in self._in_flight.values())
            if now - oldest > self._config.ack_timeout_s:
                return (
                    f'{len(self._in_flight)} frames unacknowledged for '
                    f'{self._config.ack_timeout_s:g} s'
                )
        return None

    def next_deadline(self) -> float | None:
        """Return when expired() or frames_to_send() may next change their answer."""
        deadlines: list[float] = list(self._retry.values())
        if self._phase == 'authenticating' and not self._admission_pending:
            deadlines.append(self._opened_at + self._config.auth_timeout_s)
        if self._in_flight:
            oldest = min(flight.sent_at for flight in self._in_flight.values())
            deadlines.append(oldest + self._config.ack_timeout_s)
        return min(deadlines) if deadlines else None

    def receive(self, text: str | bytes) -> Reaction:
        """Handle one frame from the server."""
        if isinstance(text, bytes):
            return self._malformed('a binary frame')
        try:
            frame = json.loads(text)
        except ValueError:
            return self._malformed('a frame that is not JSON')
        if not isinstance(frame, dict):
            return self._malformed('a JSON frame that is not an object')
        op = frame.get('op')
        if op == 'status':
            return self._on_status(frame)
        if self._phase != 'ready':
            return self._malformed(f'{op!r} before authentication')
        if op == 'publish' and frame.get('topic') == ACK_TOPIC:
            return self._on_ack(frame.get('msg'))
        if op == 'call_service':
            return self._on_call_service(frame)
        if op == 'send_action_goal':
            return self._on_action_goal(frame)
        if op == 'cancel_action_goal':
            goal_id = frame.get('id')
            if isinstance(goal_id, str):
                self._handler.cancel_action_goal(goal_id)
                return Reaction()
            return self._malformed('cancel_action_goal without an id')
        return self._malformed(f'an op this robot does not handle: {op!r}')

    def _malformed(self, what: str) -> Reaction:
        self.stats.malformed_total += 1
        self._log(logging.WARNING, f'server sent {what}; ignored')
        return Reaction()

    def _on_status(self, frame: dict[str, Any]) -> Reaction:
        level, code, msg = frame.get('level'), frame.get('code'), frame.get('msg')
        if level == 'info' and frame.get('id') == 'auth' and self._phase == 'authenticating':
            return self._on_authenticated(frame)
        if level == 'info' and frame.get('id') == 'admission' and self._admission is not None:
            return self._on_admission(frame)
        if level == 'info' and frame.get('id') == 'key_proof' and self._key_login is not None:
            return self._on_key_challenge(frame)
        if level != 'error':
            self._log(logging.DEBUG, f'server status {level}: {msg}')
            return Reaction()
        self.stats.last_error = f'{code}: {msg}'
        if code in _AUTH_REFUSALS:
            self._log(logging.ERROR, f'server refused the robot: {code}: {msg}')
            return Reaction(close_reason=f'refused: {code}')
        if code == 'replaced':
            self._log(logging.WARNING, f'another connection of this robot took over: {msg}')
            return Reaction(close_reason='replaced')
        key = _frame_key(frame.get('id'))
        flight = self._in_flight.get(key) if key is not None else None
        if key is None or flight is None:
            self._log(logging.WARNING, f'server error {code}: {msg} (id {frame.get("id")!r})')
            return Reaction()
        self._settle(key)
        if code in _PERMANENT_REFUSALS:
            self._outbox.remove([key])
            self.stats.rejected_total += 1
            self._log(logging.ERROR, f'server refused seq {key[1]}: {code}: {msg}; dropped')
        else:
            self._retry[flight.id] = self._now() + self._config.retry_delay_s
            self._log(logging.WARNING, f'server could not take seq {key[1]} ({code}); will resend')
        return Reaction()

    def _on_authenticated(self, frame: dict[str, Any]) -> Reaction:
        protocol, robot_id = frame.get('protocol'), frame.get('robot_id')
        if protocol not in self._config.protocols:
            return self._give_up(f'server chose protocol {protocol!r}, which this robot lacks')
        if robot_id != self._config.robot_id:
            return self._give_up(
                f'server authenticated {robot_id!r}, not {self._config.robot_id!r}'
            )
        features = frame.get('features')
        self.heartbeats.connection_ready(features if isinstance(features, list) else ())
        self._protocol = protocol
        self._phase = 'ready'
        return Reaction(authenticated=True)

    def _on_admission(self, frame: dict[str, Any]) -> Reaction:
        assert self._admission is not None
        msg, nonce, token = frame.get('msg'), frame.get('nonce'), frame.get('token')
        if frame.get('robot_id') != self._config.robot_id:
            return self._give_up(f'admission answer for {frame.get("robot_id")!r}')
        if msg == 'admission_challenge' and isinstance(nonce, str) and nonce:
            signature = self._admission.sign(admission_message(self._config.robot_id, nonce))
            proof = {'public_key': self._admission.public_key, 'signature': signature}
            return Reaction(frames=[self._auth_frame(admission=proof)])
        if msg == 'admission_pending':
            self._admission_pending = True
            self._log(
                logging.WARNING,
                f'admission of {self._config.robot_id} requested; an admin must accept key '
                f'{frame.get("fingerprint")} (waiting up to {frame.get("timeout_s")} s)',
            )
            return Reaction()
        if msg == 'admission_accepted' and isinstance(token, str) and token:
            self._admission_pending = False
            self._opened_at = self._now()  # the `authenticated` frame follows at once
            self._log(logging.INFO, f'admission of {self._config.robot_id} accepted')
            return Reaction(token=token)
        return self._malformed(f'an admission status it cannot use: {msg!r}')

    def _on_key_challenge(self, frame: dict[str, Any]) -> Reaction:
        assert self._key_login is not None
        token, signer = self._key_login
        nonce = challenge_nonce(frame, self._config.robot_id)
        if nonce is None or self._phase != 'authenticating':
            return self._malformed(f'a key challenge it cannot use: {frame.get("msg")!r}')
        proof = key_proof(signer, self._config.robot_id, nonce)
        return Reaction(frames=[self._auth_frame(token=token, key_proof=proof)])

    def _give_up(self, problem: str) -> Reaction:
        self.stats.last_error = problem
        self._log(logging.ERROR, problem)
        return Reaction(close_reason=problem)

    def _on_ack(self, msg: Any) -> Reaction:
        if not isinstance(msg, dict):
            return self._malformed('an ack without a msg object')
        boot_id, ranges = msg.get('boot_id'), msg.get('ranges')
        state_ranges = msg.get('state_ranges', [])  # lekiwi-fleet/2: the state space's
        if (
            not isinstance(boot_id, str)
            or not isinstance(ranges, list)
            or not isinstance(state_ranges, list)
            or not (ranges or state_ranges)
        ):
            return self._malformed('an ack without boot_id and ranges')
        by_boot: dict[str, list[tuple[int, int]]] = {}
        for boot_key, given in ((boot_id, ranges), (boot_id + STATE_KEY_SUFFIX, state_ranges)):
            for span in given:
                if (
                    not isinstance(span, list)
                    or len(span) != 2
                    or not all(isinstance(v, int) and not isinstance(v, bool) for v in span)
                    or span[0] > span[1]
                ):
                    return self._malformed(f'an ack with a bad range {span!r}')
                by_boot.setdefault(boot_key, []).append((span[0], span[1]))
        # Only frames sent on this connection are removed: a confused server cannot delete
        # messages it never received.
        keys = [
            key
            for key in self._in_flight
            if key[0] in by_boot and any(low <= key[1] <= high for low, high in by_boot[key[0]])
        ]
        now = self._now()
        for key in keys:
            flight = self._settle(key)
            if flight is not None:
                self.ack_latency.record(now - flight.sent_at)
        self.heartbeats.acknowledged(keys)
        removed = self._outbox.remove(keys)
        self.stats.acked_total += removed
        return Reaction()

    def _on_call_service(self, frame: dict[str, Any]) -> Reaction:
        request_id, service = frame.get('id'), frame.get('service')
        if not isinstance(request_id, str):
            return self._malformed('call_service without a string id')
        if service != COMMAND_SERVICE:
            return self._respond(request_id, service, False, f'unknown service {service!r}')
        args = frame.get('args')
        problem = _command_problem(args)
        if problem or not isinstance(args, dict):
            return self._respond(request_id, service, False, problem or 'bad args')
        command = Command(
            request_id=request_id,
            command_id=args['command_id'],
            command_type=args['command_type'],
            payload_json=args['payload_json'],
            payload=json.loads(args['payload_json']),
        )
        self.stats.commands_total += 1
        try:
            outcome = self._handler.handle_command(command)
        except Exception as exc:  # a failing handler must not take the uplink down
            self._log(logging.ERROR, f'command {command.command_id} failed: {exc!r}')
            outcome = CommandOutcome(False, f'robot error: {exc}')
        return self._respond(request_id, service, outcome.accepted, outcome.message)

    def _respond(self, request_id: str, service: Any, accepted: bool, message: str) -> Reaction:
        frame = {
            'op': 'service_response',
            'service': service if isinstance(service, str) else '',
            'id': request_id,
            'result': accepted,
            'values': {'accepted': accepted, 'message': message},
        }
        return Reaction(frames=[_dumps(frame)])

    def _on_action_goal(self, frame: dict[str, Any]) -> Reaction:
        goal_id, action = frame.get('id'), frame.get('action')
        if not isinstance(goal_id, str):
            return self._malformed('send_action_goal without a string id')
        action_name = action if isinstance(action, str) else ''
        args = frame.get('args', {})
        reason: str | None
        if action != DEPLOY_ACTION:
            reason = f'unknown action {action!r}'
        elif not isinstance(args, dict):
            reason = 'args must be an object'
        else:
            goal = ActionGoal(goal_id, action, str(frame.get('action_type', '')), args)
            try:
                reason = self._handler.start_action_goal(goal)
            except Exception as exc:  # a failing handler must not take the uplink down
                self._log(logging.ERROR, f'goal {goal_id} failed to start: {exc!r}')
                reason = f'robot error: {exc}'
            if reason is None:
                return Reaction()
        values = failed_result(reason)
        return Reaction(
            frames=[action_result_frame(goal_id, action_name, values, GOAL_ABORTED, False)]
        )


def _command_problem(args: Any) -> str | None:
    if not isinstance(args, dict):
        return 'args must be an object'
    for name in ('command_id', 'command_type', 'payload_json'):
        if not isinstance(args.get(name), str):
            return f'args.{name} must be a string'
    if args['command_type'] not in COMMAND_TYPES:
        return f'unknown command_type {args["command_type"]!r}; known: {", ".join(COMMAND_TYPES)}'
    try:
        payload = json.loads(args['payload_json'])
    except ValueError:
        return 'payload_json is not JSON'
    if not isinstance(payload, dict):
        return 'payload_json must be a JSON object'
    return None


def _frame_key(frame_id: Any) -> tuple[str, int] | None:
    if not isinstance(frame_id, str):
        return None
    boot_id, colon, seq = frame_id.rpartition(':')
    if colon and seq.startswith('s') and seq[1:].isdigit():  # `<boot>:s<state_seq>` (v2)
        return boot_id + STATE_KEY_SUFFIX, int(seq[1:])
    if not colon or not seq.isdigit():
        return None
    return boot_id, int(seq)
