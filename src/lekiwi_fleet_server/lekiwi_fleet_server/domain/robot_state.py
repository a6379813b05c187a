"""The per-robot aggregate: applies robot messages and presence, decides which changes are events.

Two halves, both immutable values:
- `RobotAggregate` is event-sourced: enrolment, revocation, presence, versions, alarms, the open
  teleop session, the last deployment step. It changes only by applying events, so it can be
  rebuilt by replaying a robot's stream (or from a snapshot plus the tail).
- `CurrentState` is the newest heartbeat, teleop status and reconstructed telemetry. Heartbeats
  are not events (a thousand robots at 1 Hz would drown the log), so this half is stored as
  current state only; it decides what is newer and feeds the alarm rules.
`RobotState` joins them; each `on_*` method returns an `Outcome`: the next state, the events to
append (already applied to the next state's aggregate) and whether anything is to be stored.
Pure: no I/O, no clock (times come in as arguments).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, TypeGuard

import orjson

from lekiwi_fleet_server.domain.events import (
    DEPLOYMENT_PHASES,
    SEVERITIES,
    DeploymentStatusReported,
    DomainEvent,
    ResourceAlarmCleared,
    ResourceAlarmRaised,
    RobotCameOnline,
    RobotEnrolled,
    RobotEventReported,
    RobotReEnrolled,
    RobotTokenRevoked,
    RobotTokenRotated,
    RobotVersionChanged,
    RobotWentOffline,
    TeleopSessionEnded,
    TeleopSessionStarted,
)
from lekiwi_fleet_server.domain.telemetry_codec import (
    TELEMETRY_FIELDS,
    InvalidTelemetry,
    TelemetryDeltaReading,
    TelemetryState,
    stamp_seconds,
)

# RobotHeartbeat.STATE_* names, lower case, index = the message's number.
HEARTBEAT_STATES: tuple[str, ...] = (
    'unknown', 'booting', 'idle', 'teleop', 'autonomous', 'updating', 'error',
)
TELEOP_SIGNALS: tuple[str, ...] = (
    'joystick_signal', 'video_signal', 'webrtc_signal', 'latency_signal', 'joystick_rate_hz',
    'active_video_streams', 'webrtc_peers', 'control_latency_ms',
)
SNAPSHOT_SCHEMA = 1  # raise when RobotAggregate's snapshot shape changes: old ones are ignored
MAX_PAYLOAD_CHARS = 16_384
_RESOURCE_FIELDS = frozenset(TELEMETRY_FIELDS)  # ResourceUsage's field names


class InvalidRobotMessage(ValueError):
    """A robot message the store cannot interpret; it is refused, nothing of it is stored."""


@dataclass(frozen=True, slots=True)
class AlarmThresholds:
    """When resource alarms are raised and cleared; the gap between the two stops flapping."""

    battery_low_percent: float = 15.0
    battery_clear_percent: float = 20.0
    temperature_high_c: float = 80.0
    temperature_clear_c: float = 75.0
    disk_full_fraction: float = 0.95
    disk_clear_fraction: float = 0.90

    def __post_init__(self) -> None:
        if self.battery_clear_percent < self.battery_low_percent:
            raise ValueError('battery_clear_percent must be >= battery_low_percent')
        if self.temperature_clear_c > self.temperature_high_c:
            raise ValueError('temperature_clear_c must be <= temperature_high_c')
        if not 0 < self.disk_clear_fraction <= self.disk_full_fraction <= 1:
            raise ValueError('need 0 < disk_clear_fraction <= disk_full_fraction <= 1')


def robot_status(
    online: bool,
    presence_at: float | None,
    last_heartbeat_at: float | None,
    *,
    now: float,
    stale_after_s: float,
) -> str:
    """Return 'online', 'stale', 'offline' or 'never_seen' (queries.py mirrors this in SQL)."""
    if not online:
        return 'never_seen' if presence_at is None and last_heartbeat_at is None else 'offline'
    seen = [t for t in (presence_at, last_heartbeat_at) if t is not None]
    last = max(seen) if seen else None
    return 'stale' if last is None or last < now - stale_after_s else 'online'


def is_newer(
    boot_id: str, seq: int, stamp: float, cur_boot: str | None, cur_seq: int, cur_stamp: float
) -> bool:
    """Return True when message (boot_id, seq, stamp) supersedes the current one."""
    if cur_boot is None:
        return True
    if boot_id == cur_boot:
        return seq > cur_seq
    # Sequences restart with every boot, so boots are ordered by the robot's clock; a message
    # without a stamp cannot be ordered and is taken as the newer one.
    return stamp == 0.0 or cur_stamp == 0.0 or stamp >= cur_stamp


@dataclass(frozen=True, slots=True)
class RobotAggregate:
    """The event-sourced half of a robot's state; `version` is its stream's version."""

    robot_id: str
    version: int = 0
    enrolled: bool = False
    enrolled_at: float | None = None
    tags: tuple[str, ...] = ()
    revoked: bool = False
    revoked_at: float | None = None
    online: bool = False
    presence_at: float | None = None
    presence_reason: str | None = None
    agent_version: str | None = None
    software_version: str | None = None
    alarms: Mapping[str, float] = field(default_factory=dict)  # alarm -> value when raised
    session_id: str | None = None  # the open teleop session
    session_started_at: float | None = None
    last_deployment: Mapping[str, Any] | None = None

    def apply(self, event: DomainEvent) -> RobotAggregate:
        """Return the aggregate after `event` (one stream version later)."""
        nxt = replace(self, version=self.version + 1)
        if isinstance(event, RobotEnrolled):
            return replace(nxt, enrolled=True, enrolled_at=event.enrolled_at, tags=event.tags)
        if isinstance(event, RobotTokenRevoked):
            return replace(nxt, revoked=True, revoked_at=event.revoked_at)
        if isinstance(event, RobotReEnrolled):
            return replace(nxt, enrolled=True, revoked=False, revoked_at=None, tags=event.tags)
        if isinstance(event, RobotCameOnline):
            return replace(nxt, online=True, presence_at=event.at, presence_reason=event.reason)
        if isinstance(event, RobotWentOffline):
            return replace(nxt, online=False, presence_at=event.at, presence_reason=event.reason)
        if isinstance(event, RobotVersionChanged):
            return replace(nxt, agent_version=event.agent_version,
                           software_version=event.software_version)
        if isinstance(event, ResourceAlarmRaised):
            return replace(nxt, alarms={**self.alarms, event.alarm: event.value})
        if isinstance(event, ResourceAlarmCleared):
            return replace(nxt, alarms={k: v for k, v in self.alarms.items() if k != event.alarm})
        if isinstance(event, TeleopSessionStarted):
            return replace(nxt, session_id=event.session_id, session_started_at=event.started_at)
        if isinstance(event, TeleopSessionEnded):
            if event.session_id == self.session_id:
                return replace(nxt, session_id=None, session_started_at=None)
            return nxt
        if isinstance(event, DeploymentStatusReported):
            return replace(nxt, last_deployment={
                'deployment_id': event.deployment_id, 'release_version': event.release_version,
                'phase': event.phase, 'progress': event.progress, 'at': event.at})
        return nxt

    def to_snapshot(self) -> dict[str, Any]:
        """Return a JSON-ready snapshot of this aggregate."""
        return {
            'robot_id': self.robot_id, 'version': self.version, 'enrolled': self.enrolled,
            'enrolled_at': self.enrolled_at, 'tags': list(self.tags), 'revoked': self.revoked,
            'revoked_at': self.revoked_at, 'online': self.online,
            'presence_at': self.presence_at, 'presence_reason': self.presence_reason,
            'agent_version': self.agent_version, 'software_version': self.software_version,
            'alarms': dict(self.alarms), 'session_id': self.session_id,
            'session_started_at': self.session_started_at,
            'last_deployment': dict(self.last_deployment) if self.last_deployment else None,
        }

    @classmethod
    def from_snapshot(cls, data: Mapping[str, Any]) -> RobotAggregate:
        """Return the aggregate `to_snapshot` wrote."""
        return cls(**{**data, 'tags': tuple(data.get('tags') or ())})


@dataclass(slots=True)
class CurrentState:
    """The newest heartbeat, teleop status and telemetry of a robot (not event-sourced).

    Treated as immutable like the other states here (make a new one, never assign a field), but
    not declared frozen: a frozen dataclass of this width costs 3.7 us to construct against 1 us,
    and one is made for every heartbeat.
    """

    last_heartbeat_at: float | None = None  # server clock when the newest heartbeat arrived
    heartbeat_stamp: float = 0.0  # robot clock of the newest heartbeat
    heartbeat_boot_id: str | None = None
    heartbeat_seq: int = 0  # uplink seq of the newest heartbeat
    heartbeat_sequence: int | None = None  # RobotHeartbeat.sequence
    state: str | None = None
    teleop_active: bool = False
    teleop_score: float = 0.0
    teleop: Mapping[str, Any] = field(default_factory=dict)  # TeleopStatus signals
    teleop_boot_id: str | None = None
    teleop_seq: int = 0
    teleop_stamp: float = 0.0
    resources: Mapping[str, Any] = field(default_factory=dict)
    boot_id: str | None = None
    last_seq: int | None = None  # newest uplink seq committed for boot_id
    telemetry: TelemetryState = field(default_factory=TelemetryState)
    telemetry_at: float | None = None
    # The transport the robot's own heartbeat says its uplink uses ('websocket' | 'polling';
    # None from an agent that does not report it). Issue 20.
    uplink_transport: str | None = None

    def evolve(self, **changes: Any) -> CurrentState:
        """Return a copy with `changes` (dataclasses.replace costs 4x this, once per message)."""
        new = object.__new__(CurrentState)
        for name in _CURRENT_FIELDS:
            setattr(new, name, changes[name] if name in changes else getattr(self, name))
        return new

    def seen_fields(self, boot_id: str, seq: int) -> dict[str, Any]:
        """Return boot_id and last_seq after committing message (boot_id, seq) of any topic."""
        if self.boot_id is None:
            return {'boot_id': boot_id, 'last_seq': seq}
        if boot_id == self.boot_id and (self.last_seq is None or seq > self.last_seq):
            return {'boot_id': boot_id, 'last_seq': seq}
        return {}

    def seen(self, boot_id: str, seq: int) -> CurrentState:
        """Return the state after committing message (boot_id, seq) of any topic."""
        fields = self.seen_fields(boot_id, seq)
        return self.evolve(**fields) if fields else self


_CURRENT_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(CurrentState))


@dataclass(frozen=True, slots=True)
class TelemetryRecord:
    """A telemetry history entry: the delta and the full state it reconstructs to."""

    delta: TelemetryDeltaReading
    values: Mapping[str, float | None]
    complete: bool


@dataclass(slots=True)
class Outcome:
    """What one input did to a robot: the next state, new events, whether to store anything.

    Like RobotState and CurrentState, made for every message and so not declared frozen
    (three times cheaper to construct); never change one.
    """

    state: RobotState
    events: tuple[DomainEvent, ...] = ()
    stored: bool = True  # False: nothing new (a duplicate or superseded message)
    telemetry: TelemetryRecord | None = None  # the history row to add


@dataclass(slots=True)
class RobotState:
    """A robot's aggregate and current state, and the rules that turn inputs into events.

    Immutable by convention (see Outcome): every `on_*` method returns a new one.
    """

    aggregate: RobotAggregate
    current: CurrentState = field(default_factory=CurrentState)

    @property
    def robot_id(self) -> str:
        return self.aggregate.robot_id

    def _with(self, events: list[DomainEvent], current: CurrentState | None = None,
              **kwargs: Any) -> Outcome:
        aggregate = self.aggregate
        for event in events:
            aggregate = aggregate.apply(event)
        state = RobotState(aggregate, current if current is not None else self.current)
        return Outcome(state, tuple(events), **kwargs)

    def on_enrol(self, tags: tuple[str, ...], now: float) -> Outcome:
        """Enrol the robot (the caller checked it is not enrolled)."""
        return self._with([RobotEnrolled(self.robot_id, tags=tags, enrolled_at=now)])

    def on_reenrol(self, tags: tuple[str, ...], now: float, by: str) -> Outcome:
        """Enrol a revoked robot again (the caller checked it is revoked)."""
        return self._with([RobotReEnrolled(self.robot_id, tags=tags, reenrolled_at=now, by=by)])

    def on_rotate_token(self, now: float, by: str) -> Outcome:
        """Record a new token (the caller checked the robot is enrolled and not revoked)."""
        return self._with([RobotTokenRotated(self.robot_id, rotated_at=now, by=by)])

    def on_revoke(self, now: float) -> Outcome:
        """Revoke the robot's token; revoking twice changes nothing."""
        if self.aggregate.revoked:
            return Outcome(self, stored=False)
        return self._with([RobotTokenRevoked(self.robot_id, revoked_at=now)])

    def on_recorded(self, event: DomainEvent) -> Outcome:
        """Append an event that changes no state (an operator's command, a presence report)."""
        return self._with([event])

    def on_presence(self, online: bool, at: float, reason: str) -> Outcome:
        """Turn a presence change into RobotCameOnline / RobotWentOffline when it is one."""
        if online == self.aggregate.online:
            return Outcome(self, stored=False)
        reason = reason[:64] if isinstance(reason, str) and _storable(reason) else 'unknown'
        cls = RobotCameOnline if online else RobotWentOffline
        return self._with([cls(self.robot_id, at=at, reason=reason)])

    def on_heartbeat(self, boot_id: str, seq: int, msg: Mapping[str, Any], received_at: float,
                     thresholds: AlarmThresholds, state_space: bool = False) -> Outcome:
        """Apply a RobotHeartbeat when newer than the stored one; decide version and alarms.

        `state_space`: `seq` numbers the robot's state messages only (lekiwi-fleet/2), so it
        says nothing about `last_seq`, the newest seq of the boot's history.
        """
        cur = self.current
        stamp = stamp_seconds(msg)
        if not is_newer(boot_id, seq, stamp, cur.heartbeat_boot_id, cur.heartbeat_seq,
                        cur.heartbeat_stamp):
            return Outcome(self, stored=False)
        # The common types are checked inline (this runs for every heartbeat); anything else
        # goes to the full checks, which raise or accept exactly as before.
        state_no = msg.get('state', 0)
        if state_no.__class__ is not int or not 0 <= state_no <= 255:
            state_no = _int(state_no, 'state', 0, 255)
        sequence = msg.get('sequence', 0)
        if sequence.__class__ is not int or not 0 <= sequence < 2**63:
            sequence = _int(sequence, 'sequence', 0, 2**63 - 1)
        score = msg.get('teleop_score', 0.0)
        if score.__class__ is not float or not math.isfinite(score):
            score = _float(score, 'teleop_score')
        # Left out (a robot told FEATURE_RESOURCES_OPTIONAL): unchanged, keep the last ones.
        resources = (_resources(msg.get('resources') or {}) if 'resources' in msg
                     else cur.resources)
        agg = self.aggregate
        # Versions equal to the aggregate's were checked when they were first taken.
        agent = msg.get('agent_version', '')
        if agent.__class__ is not str or agent != agg.agent_version:
            agent = _text(agent, 'agent_version', 128) or None
        software = msg.get('software_version', '')
        if software.__class__ is not str or software != agg.software_version:
            software = _text(software, 'software_version', 128) or None
        # A newer heartbeat of another boot means the robot restarted: follow its new boot.
        same_boot = boot_id == cur.boot_id
        if state_space:
            last_seq = cur.last_seq if same_boot else None
        else:
            last_seq = seq if not same_boot or cur.last_seq is None else max(seq, cur.last_seq)
        # One constructor call, not dataclasses.replace: this runs for every heartbeat.
        current = CurrentState(
            last_heartbeat_at=received_at, heartbeat_stamp=stamp, heartbeat_boot_id=boot_id,
            heartbeat_seq=seq, heartbeat_sequence=sequence,
            state=HEARTBEAT_STATES[state_no] if state_no < len(HEARTBEAT_STATES) else 'unknown',
            teleop_active=_bool(msg.get('teleop_active', False), 'teleop_active'),
            teleop_score=score,
            teleop=cur.teleop, teleop_boot_id=cur.teleop_boot_id, teleop_seq=cur.teleop_seq,
            teleop_stamp=cur.teleop_stamp, resources=resources, boot_id=boot_id,
            last_seq=last_seq, telemetry=cur.telemetry, telemetry_at=cur.telemetry_at,
            uplink_transport=_transport(msg.get('uplink_transport')))
        events: list[DomainEvent] = []
        if (agent or software) and (agent, software) != (agg.agent_version,
                                                          agg.software_version):
            events.append(RobotVersionChanged(
                self.robot_id, at=received_at, agent_version=agent, software_version=software,
                previous_agent_version=agg.agent_version,
                previous_software_version=agg.software_version))
        if agg.alarms or not alarms_quiet(resources, thresholds):
            events += evaluate_alarms(self.robot_id, agg.alarms, resources, received_at,
                                      thresholds)
        if not events:
            return Outcome(RobotState(agg, current))  # most heartbeats: nothing eventful
        return self._with(events, current)

    def on_teleop_status(self, boot_id: str, seq: int, msg: Mapping[str, Any],
                         received_at: float, state_space: bool = False) -> Outcome:
        """Apply a TeleopStatus when newer than the stored one (state, never an event)."""
        cur = self.current
        stamp = stamp_seconds(msg)
        if not is_newer(boot_id, seq, stamp, cur.teleop_boot_id, cur.teleop_seq,
                        cur.teleop_stamp):
            return Outcome(self, stored=False)
        signals = {}
        for name in TELEOP_SIGNALS:
            if name in msg:
                signals[name] = _resource(msg[name], name)
        current = cur.evolve(
            teleop_active=_bool(msg.get('active', False), 'active'),
            teleop_score=_float(msg.get('score', 0.0), 'score'), teleop=signals,
            teleop_boot_id=boot_id, teleop_seq=seq, teleop_stamp=stamp,
            **({} if state_space else cur.seen_fields(boot_id, seq)))
        return self._with([], current)

    def on_telemetry(self, boot_id: str, seq: int, msg: Mapping[str, Any], received_at: float,
                     thresholds: AlarmThresholds) -> Outcome:
        """Reconstruct a TelemetryDelta; alarms follow the reconstructed values."""
        try:
            delta = TelemetryDeltaReading.from_msg(msg, boot_id)
        except InvalidTelemetry as exc:
            raise InvalidRobotMessage(str(exc)) from exc
        cur = self.current
        if cur.telemetry.is_stale(delta):
            # History of a boot arrives in order, so a delta not newer than the applied one is a
            # redelivery of a stored message.
            return Outcome(self, stored=False)
        if cur.telemetry.is_earlier_boot(delta):
            # A backlog of an earlier boot: history only, the current state is the newer boot's.
            record = TelemetryRecord(delta, delta.values, delta.full_snapshot)
            return self._with([], cur.seen(boot_id, seq), telemetry=record)
        telemetry = cur.telemetry.apply(delta)
        current = cur.evolve(telemetry=telemetry, telemetry_at=received_at,
                             **cur.seen_fields(boot_id, seq))
        events = evaluate_alarms(self.robot_id, self.aggregate.alarms, telemetry.values,
                                 received_at, thresholds)
        record = TelemetryRecord(delta, telemetry.values, telemetry.complete)
        return self._with(events, current, telemetry=record)

    def on_robot_event(self, boot_id: str, seq: int, msg: Mapping[str, Any],
                       received_at: float) -> Outcome:
        """Turn a FleetEvent into a teleop session event or a RobotEventReported."""
        event_type = _text(msg.get('event_type', ''), 'event_type', 128)
        if not event_type:
            raise InvalidRobotMessage('event_type must not be empty')
        severity_no = _int(msg.get('severity', 1), 'severity', 0, 255)
        severity = SEVERITIES[min(severity_no, len(SEVERITIES) - 1)]
        sequence = _int(msg.get('sequence', 0), 'sequence', 0, 2**63 - 1)
        stamp = stamp_seconds(msg) or received_at
        raw = _text(msg.get('payload_json', '') or '{}', 'payload_json', None)
        payload: dict[str, Any] = {}
        error: str | None = None
        if len(raw) > MAX_PAYLOAD_CHARS:
            error = f'payload_json longer than {MAX_PAYLOAD_CHARS} characters'
        else:
            try:
                # orjson, not json: it refuses what could not be stored again (lone
                # surrogates, NaN) and reads integers beyond 64 bits as floats.
                parsed = orjson.loads(raw)
            except ValueError as exc:
                parsed, error = None, f'not JSON: {exc}'
            if error is None and not isinstance(parsed, dict):
                error = 'payload_json must be a JSON object'
            elif error is None:
                payload = parsed
        current = self.current.seen(boot_id, seq)
        if error is None and event_type == 'teleop.session_started':
            events = self._session_started(payload)
            if events is not None:
                return self._with(events, current)
            error = 'teleop.session_started needs session_id, started_at, score'
        if error is None and event_type == 'teleop.session_ended':
            ended = self._session_ended(payload)
            if ended is not None:
                return self._with([ended], current)
            error = 'teleop.session_ended needs session_id, started_at, ended_at, duration_s'
        reported = RobotEventReported(
            self.robot_id, at=stamp, event_type=event_type, robot_severity=severity,
            payload=payload if error is None else {'payload_json': raw[:1024]},
            robot_sequence=sequence, payload_error=error)
        return self._with([reported], current)

    def _session_started(self, payload: Mapping[str, Any]) -> list[DomainEvent] | None:
        session_id = payload.get('session_id')
        started_at, score = _num(payload.get('started_at')), _num(payload.get('score', 0.0))
        if not _is_id(session_id) or started_at is None or score is None:
            return None
        agg = self.aggregate
        if agg.session_id == session_id:
            return []  # the same session reported twice: nothing new
        events: list[DomainEvent] = []
        if agg.session_id is not None:
            # A session that never reported its end (the agent died): close it where the new
            # one starts, so the read model never shows two open sessions.
            began = agg.session_started_at or started_at
            events.append(TeleopSessionEnded(
                self.robot_id, session_id=agg.session_id, started_at=began, ended_at=started_at,
                duration_s=max(0.0, started_at - began), reason='superseded'))
        events.append(TeleopSessionStarted(self.robot_id, session_id=session_id,
                                           started_at=started_at, score=score))
        return events

    def _session_ended(self, payload: Mapping[str, Any]) -> TeleopSessionEnded | None:
        session_id = payload.get('session_id')
        started_at, ended_at = _num(payload.get('started_at')), _num(payload.get('ended_at'))
        duration = _num(payload.get('duration_s'))
        reason = payload.get('reason', 'inactive')
        if (not _is_id(session_id) or started_at is None or ended_at is None
                or duration is None or not isinstance(reason, str) or not _storable(reason)):
            return None
        return TeleopSessionEnded(self.robot_id, session_id=session_id, started_at=started_at,
                                  ended_at=ended_at, duration_s=duration, reason=reason[:64])

    def on_deployment_status(self, boot_id: str, seq: int, msg: Mapping[str, Any],
                             received_at: float) -> Outcome:
        """Record a DeploymentStatus step as an event."""
        phase_no = _int(msg.get('phase', 0), 'phase', 0, 255)
        progress = _float(msg.get('progress', 0.0), 'progress')
        event = DeploymentStatusReported(
            self.robot_id, at=stamp_seconds(msg) or received_at,
            deployment_id=_text(msg.get('deployment_id', ''), 'deployment_id', 128),
            release_version=_text(msg.get('release_version', ''), 'release_version', 128),
            previous_version=_text(msg.get('previous_version', ''), 'previous_version', 128),
            phase=DEPLOYMENT_PHASES[phase_no] if phase_no < len(DEPLOYMENT_PHASES) else 'unknown',
            progress=progress, message=_text(msg.get('message', ''), 'message', None)[:1024])
        return self._with([event], self.current.seen(boot_id, seq))


def evaluate_alarms(
    robot_id: str,
    active: Mapping[str, float],
    values: Mapping[str, Any],
    at: float,
    t: AlarmThresholds,
) -> list[DomainEvent]:
    """Return the alarm events `values` cause given the `active` alarms (unknown values: none)."""
    events: list[DomainEvent] = []
    battery = _num(values.get('battery_percent'))
    if battery is not None:
        _alarm(events, robot_id, active, at, 'battery_low', battery,
               battery < t.battery_low_percent, battery >= t.battery_clear_percent,
               t.battery_low_percent)
    temperature = _num(values.get('temperature_c'))
    if temperature is not None:
        _alarm(events, robot_id, active, at, 'temperature_high', temperature,
               temperature > t.temperature_high_c, temperature <= t.temperature_clear_c,
               t.temperature_high_c)
    used, total = _num(values.get('disk_used_bytes')), _num(values.get('disk_total_bytes'))
    if used is not None and total:
        fraction = used / total
        _alarm(events, robot_id, active, at, 'disk_full', fraction,
               fraction >= t.disk_full_fraction, fraction < t.disk_clear_fraction,
               t.disk_full_fraction)
    return events


def alarms_quiet(values: Mapping[str, Any], t: AlarmThresholds) -> bool:
    """Tell cheaply that `values` raise no alarm while none is active (evaluate_alarms: [])."""
    # A few comparisons instead of evaluate_alarms for every heartbeat; anything unusual
    # (not a plain number, a threshold crossed) answers False and gets the full evaluation.
    battery = values.get('battery_percent')
    temperature = values.get('temperature_c')
    used, total = values.get('disk_used_bytes'), values.get('disk_total_bytes')
    return ((battery is None or battery.__class__ is float and battery >= t.battery_low_percent)
            and (temperature is None or temperature.__class__ is float
                 and temperature <= t.temperature_high_c)
            and (used is None or total is None
                 or used.__class__ is int and total.__class__ is int and total > 0
                 and used / total < t.disk_full_fraction))


def _alarm(events: list[DomainEvent], robot_id: str, active: Mapping[str, float], at: float,
           alarm: str, value: float, raises: bool, clears: bool, threshold: float) -> None:
    if alarm in active:
        if clears:
            events.append(ResourceAlarmCleared(robot_id, at=at, alarm=alarm, value=value))
    elif raises:
        events.append(ResourceAlarmRaised(robot_id, at=at, alarm=alarm, value=value,
                                          threshold=threshold))


def _resources(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, Mapping) or len(raw) > 64:
        raise InvalidRobotMessage('resources must be an object of at most 64 fields')
    out: dict[str, Any] = {}
    # Inlined checks (no call per field): this runs for every field of every heartbeat. The
    # names of a ResourceUsage message are known good: only other names are checked.
    known = raw.keys() == _RESOURCE_FIELDS
    for name, value in raw.items():
        if not known and (name.__class__ is not str or len(name) > 64
                          or not (name.isascii() and '\x00' not in name or _storable(name))):
            raise InvalidRobotMessage('resource field names must be short strings')
        kind = value.__class__
        if kind is float:
            out[name] = value if math.isfinite(value) else None
        elif value is None or kind is int and -2**63 <= value < 2**63:
            out[name] = value
        else:
            raise InvalidRobotMessage(
                f'{name} must be a number (integers within 64 bits) or null')
    return out


UPLINK_TRANSPORTS = frozenset({'websocket', 'polling'})


def _transport(value: Any) -> str | None:
    """Return the heartbeat's `uplink_transport` (absent, from an older agent: None)."""
    if value is None:
        return None
    if value.__class__ is not str or value not in UPLINK_TRANSPORTS:
        raise InvalidRobotMessage("uplink_transport must be 'websocket' or 'polling'")
    return value  # type: ignore[no-any-return]


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        value = float(value)
    except OverflowError:  # an integer beyond any float
        return None
    return value if math.isfinite(value) else None


def _is_id(value: Any) -> TypeGuard[str]:
    return isinstance(value, str) and 0 < len(value) <= 128 and _storable(value)


def _storable(text: str) -> bool:
    # PostgreSQL text cannot hold NUL, and no UTF-8 encoder takes a lone surrogate.
    if '\x00' in text:
        return False
    if text.isascii():
        return True
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _int(value: Any, name: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise InvalidRobotMessage(f'{name} must be an integer {lo}..{hi}')
    return value


def _float(value: Any, name: str) -> float:
    if value is None:
        return 0.0
    number = _num(value)
    if number is None and not (isinstance(value, float) and math.isnan(value)):
        raise InvalidRobotMessage(f'{name} must be a number')
    return number or 0.0


def _bool(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidRobotMessage(f'{name} must be a boolean')
    return value


def _text(value: Any, name: str, max_length: int | None) -> str:
    if not isinstance(value, str):
        raise InvalidRobotMessage(f'{name} must be a string')
    if max_length is not None and len(value) > max_length:
        raise InvalidRobotMessage(f'{name} must be at most {max_length} characters')
    if not _storable(value):
        raise InvalidRobotMessage(f'{name} must be text without NUL or lone surrogates')
    return value


def _resource(value: Any, name: str) -> float | int | None:
    kind = value.__class__
    if kind is float:
        return value if math.isfinite(value) else None
    if value is None or kind is int and -2**63 <= value < 2**63:
        return value
    raise InvalidRobotMessage(f'{name} must be a number (integers within 64 bits) or null')
