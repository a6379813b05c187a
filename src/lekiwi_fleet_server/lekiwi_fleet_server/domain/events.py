"""Fleet domain events: past-tense classes, their type registry, schema versions, upcasting.

An event is stored as (type, schema_version, data). `encode` turns an event into that triple;
`decode` turns a stored triple back into the current class, running upcasters first when the
stored schema version is older than the class's. Pure: no I/O, no clock.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

# Severity names shared with FleetEvent.SEVERITY_* (index = the message's number).
SEVERITIES: tuple[str, ...] = ('debug', 'info', 'warning', 'error', 'critical')

# DeploymentStatus.PHASE_* names (index = the message's number).
DEPLOYMENT_PHASES: tuple[str, ...] = (
    'idle', 'downloading', 'verifying', 'installing', 'restarting', 'health_check',
    'succeeded', 'rolling_back', 'rolled_back', 'failed',
    'pre_check', 'committing', 'waiting_for_teleop', 'canceled',
)

ALARMS: tuple[str, ...] = ('battery_low', 'temperature_high', 'disk_full')


class EventDecodeError(ValueError):
    """A stored event cannot be turned into a known event class."""


@dataclass(frozen=True, slots=True)
class DomainEvent:
    """Base of every fleet event; `robot_id` names the stream it belongs to."""

    TYPE: ClassVar[str] = ''
    SCHEMA_VERSION: ClassVar[int] = 1
    SEVERITY: ClassVar[str] = 'info'  # a class whose severity never depends on its data

    robot_id: str

    @property
    def severity(self) -> str:
        """Return how much attention the event deserves on the timeline."""
        return self.SEVERITY

    def summary(self) -> str:
        """Return a one-line human description for the fleet timeline."""
        return self.TYPE


@dataclass(frozen=True, slots=True)
class RobotEnrolled(DomainEvent):
    TYPE: ClassVar[str] = 'RobotEnrolled'
    tags: tuple[str, ...] = ()
    enrolled_at: float = 0.0

    def summary(self) -> str:
        tags = f' (tags: {", ".join(self.tags)})' if self.tags else ''
        return f'enrolled{tags}'


@dataclass(frozen=True, slots=True)
class RobotTokenRevoked(DomainEvent):
    TYPE: ClassVar[str] = 'RobotTokenRevoked'
    revoked_at: float = 0.0

    @property
    def severity(self) -> str:
        return 'warning'

    def summary(self) -> str:
        return 'token revoked'


@dataclass(frozen=True, slots=True)
class RobotTokenRotated(DomainEvent):
    """An admin gave the robot a new token; the old one is refused from now on."""

    TYPE: ClassVar[str] = 'RobotTokenRotated'
    rotated_at: float = 0.0
    by: str = ''  # who did it: an operator's name, or cli:<user>

    def summary(self) -> str:
        return f'token rotated by {self.by}' if self.by else 'token rotated'


@dataclass(frozen=True, slots=True)
class RobotReEnrolled(DomainEvent):
    """An admin enrolled a revoked robot again, with a new token and tags."""

    TYPE: ClassVar[str] = 'RobotReEnrolled'
    tags: tuple[str, ...] = ()
    reenrolled_at: float = 0.0
    by: str = ''

    @property
    def severity(self) -> str:
        return 'warning'

    def summary(self) -> str:
        return f're-enrolled by {self.by}' if self.by else 're-enrolled'


@dataclass(frozen=True, slots=True)
class RobotCameOnline(DomainEvent):
    TYPE: ClassVar[str] = 'RobotCameOnline'
    at: float = 0.0
    reason: str = 'connected'

    def summary(self) -> str:
        return f'came online ({self.reason})'


@dataclass(frozen=True, slots=True)
class RobotWentOffline(DomainEvent):
    TYPE: ClassVar[str] = 'RobotWentOffline'
    at: float = 0.0
    reason: str = 'disconnected'

    @property
    def severity(self) -> str:
        return 'info' if self.reason == 'server_restart' else 'warning'

    def summary(self) -> str:
        return f'went offline ({self.reason})'


@dataclass(frozen=True, slots=True)
class TeleopSessionStarted(DomainEvent):
    TYPE: ClassVar[str] = 'TeleopSessionStarted'
    session_id: str = ''
    started_at: float = 0.0
    score: float = 0.0

    def summary(self) -> str:
        return f'teleoperation started (score {self.score:.2f})'


@dataclass(frozen=True, slots=True)
class TeleopSessionEnded(DomainEvent):
    TYPE: ClassVar[str] = 'TeleopSessionEnded'
    session_id: str = ''
    started_at: float = 0.0
    ended_at: float = 0.0
    duration_s: float = 0.0
    reason: str = 'inactive'

    def summary(self) -> str:
        return f'teleoperation ended after {self.duration_s:.1f} s ({self.reason})'


@dataclass(frozen=True, slots=True)
class RobotVersionChanged(DomainEvent):
    TYPE: ClassVar[str] = 'RobotVersionChanged'
    at: float = 0.0
    agent_version: str | None = None
    software_version: str | None = None
    previous_agent_version: str | None = None
    previous_software_version: str | None = None

    def summary(self) -> str:
        parts = []
        if self.agent_version != self.previous_agent_version:
            parts.append(f'agent {self.previous_agent_version or "?"} -> {self.agent_version}')
        if self.software_version != self.previous_software_version:
            parts.append(
                f'software {self.previous_software_version or "?"} -> {self.software_version}')
        return 'version changed: ' + ', '.join(parts)


@dataclass(frozen=True, slots=True)
class ResourceAlarmRaised(DomainEvent):
    TYPE: ClassVar[str] = 'ResourceAlarmRaised'
    at: float = 0.0
    alarm: str = ''  # one of ALARMS
    value: float = 0.0
    threshold: float = 0.0

    @property
    def severity(self) -> str:
        return 'warning'

    def summary(self) -> str:
        return f'{self.alarm.replace("_", " ")} ({self.value:g}, threshold {self.threshold:g})'


@dataclass(frozen=True, slots=True)
class ResourceAlarmCleared(DomainEvent):
    TYPE: ClassVar[str] = 'ResourceAlarmCleared'
    at: float = 0.0
    alarm: str = ''
    value: float | None = None

    def summary(self) -> str:
        return f'{self.alarm.replace("_", " ")} cleared'


@dataclass(frozen=True, slots=True)
class RobotEventReported(DomainEvent):
    """A robot `FleetEvent` the server has no dedicated event class for."""

    TYPE: ClassVar[str] = 'RobotEventReported'
    at: float = 0.0
    event_type: str = ''
    robot_severity: str = 'info'  # one of SEVERITIES
    payload: Mapping[str, Any] = field(default_factory=dict)
    robot_sequence: int = 0
    payload_error: str | None = None  # why payload_json could not be used, when it could not

    @property
    def severity(self) -> str:
        return self.robot_severity

    def summary(self) -> str:
        return self.event_type + (f' (payload refused: {self.payload_error})'
                                  if self.payload_error else '')


@dataclass(frozen=True, slots=True)
class DeploymentStatusReported(DomainEvent):
    TYPE: ClassVar[str] = 'DeploymentStatusReported'
    at: float = 0.0
    deployment_id: str = ''
    release_version: str = ''
    previous_version: str = ''
    phase: str = 'idle'  # one of DEPLOYMENT_PHASES
    progress: float = 0.0
    message: str = ''

    @property
    def severity(self) -> str:
        return {'failed': 'error', 'rolling_back': 'warning',
                'rolled_back': 'warning'}.get(self.phase, 'info')

    def summary(self) -> str:
        return f'deployment {self.deployment_id} {self.release_version}: {self.phase}'


# Deployment events: stream `deployment-<id>`; `robot_id` names the robot an event is about,
# '' for the events about the whole deployment. The rollout state (domain/rollout.py) is
# their fold, so a server restarted mid-rollout rebuilds it by replay.


@dataclass(frozen=True, slots=True)
class DeploymentCreated(DomainEvent):
    TYPE: ClassVar[str] = 'DeploymentCreated'
    deployment_id: str = ''
    release_version: str = ''
    manifest_sha256: str = ''
    robots: tuple[str, ...] = ()
    waves: tuple[float, ...] = (0.05, 0.25, 0.5, 1.0)
    parallelism: int = 100
    success_gate: float = 0.8
    rollback_gate: float = 0.2
    deadline_s: float = 3600.0
    robot_timeout_s: float = 600.0
    health_timeout_s: float = 60.0
    force: bool = False
    created_by: str = ''
    at: float = 0.0

    def summary(self) -> str:
        return (f'deployment {self.deployment_id} of {self.release_version} '
                f'to {len(self.robots)} robots created')


@dataclass(frozen=True, slots=True)
class WaveStarted(DomainEvent):
    TYPE: ClassVar[str] = 'WaveStarted'
    deployment_id: str = ''
    wave: int = 0
    robots: tuple[str, ...] = ()
    at: float = 0.0

    def summary(self) -> str:
        return f'deployment {self.deployment_id}: wave {self.wave + 1} ({len(self.robots)} robots)'


@dataclass(frozen=True, slots=True)
class RobotUpdateStarted(DomainEvent):
    TYPE: ClassVar[str] = 'RobotUpdateStarted'
    deployment_id: str = ''
    release_version: str = ''
    goal_id: str = ''
    attempt: int = 1
    at: float = 0.0

    def summary(self) -> str:
        return f'update to {self.release_version} started (deployment {self.deployment_id})'


@dataclass(frozen=True, slots=True)
class RobotUpdateDeferred(DomainEvent):
    TYPE: ClassVar[str] = 'RobotUpdateDeferred'
    deployment_id: str = ''
    reason: str = ''  # 'teleop', 'offline', 'busy'
    at: float = 0.0

    def summary(self) -> str:
        return f'update deferred ({self.reason}, deployment {self.deployment_id})'


@dataclass(frozen=True, slots=True)
class RobotUpdateSucceeded(DomainEvent):
    TYPE: ClassVar[str] = 'RobotUpdateSucceeded'
    deployment_id: str = ''
    release_version: str = ''
    previous_version: str = ''
    transferred_bytes: int = 0
    full_bytes: int = 0
    duration_s: float = 0.0
    at: float = 0.0

    def summary(self) -> str:
        return (f'updated to {self.release_version} in {self.duration_s:.1f} s '
                f'({self.transferred_bytes} of {self.full_bytes} bytes transferred)')


@dataclass(frozen=True, slots=True)
class RobotUpdateFailed(DomainEvent):
    TYPE: ClassVar[str] = 'RobotUpdateFailed'
    deployment_id: str = ''
    release_version: str = ''
    reason: str = ''
    rolled_back: bool = False  # the robot rolled itself back to its previous release
    final_version: str = ''
    at: float = 0.0

    @property
    def severity(self) -> str:
        return 'error'

    def summary(self) -> str:
        back = f', robot back on {self.final_version}' if self.rolled_back else ''
        return f'update to {self.release_version} failed: {self.reason}{back}'


@dataclass(frozen=True, slots=True)
class RobotUpdateSkipped(DomainEvent):
    TYPE: ClassVar[str] = 'RobotUpdateSkipped'
    deployment_id: str = ''
    reason: str = ''
    at: float = 0.0

    @property
    def severity(self) -> str:
        return 'warning'

    def summary(self) -> str:
        return f'update skipped: {self.reason}'


@dataclass(frozen=True, slots=True)
class RobotRollbackStarted(DomainEvent):
    TYPE: ClassVar[str] = 'RobotRollbackStarted'
    deployment_id: str = ''
    to_version: str = ''
    goal_id: str = ''
    at: float = 0.0

    def summary(self) -> str:
        return f'rollback to {self.to_version} started (deployment {self.deployment_id})'


@dataclass(frozen=True, slots=True)
class RobotRolledBack(DomainEvent):
    TYPE: ClassVar[str] = 'RobotRolledBack'
    deployment_id: str = ''
    to_version: str = ''
    succeeded: bool = True
    message: str = ''
    at: float = 0.0

    @property
    def severity(self) -> str:
        return 'warning' if self.succeeded else 'error'

    def summary(self) -> str:
        return (f'rolled back to {self.to_version}' if self.succeeded
                else f'rollback to {self.to_version} failed: {self.message}')


@dataclass(frozen=True, slots=True)
class DeploymentPaused(DomainEvent):
    TYPE: ClassVar[str] = 'DeploymentPaused'
    deployment_id: str = ''
    reason: str = ''
    at: float = 0.0

    @property
    def severity(self) -> str:
        return 'warning'

    def summary(self) -> str:
        return f'deployment {self.deployment_id} paused: {self.reason}'


@dataclass(frozen=True, slots=True)
class DeploymentResumed(DomainEvent):
    TYPE: ClassVar[str] = 'DeploymentResumed'
    deployment_id: str = ''
    by: str = ''
    at: float = 0.0

    def summary(self) -> str:
        return f'deployment {self.deployment_id} resumed'


@dataclass(frozen=True, slots=True)
class DeploymentRollbackStarted(DomainEvent):
    TYPE: ClassVar[str] = 'DeploymentRollbackStarted'
    deployment_id: str = ''
    reason: str = ''
    at: float = 0.0

    @property
    def severity(self) -> str:
        return 'error'

    def summary(self) -> str:
        return f'deployment {self.deployment_id} rolling back: {self.reason}'


@dataclass(frozen=True, slots=True)
class DeploymentRolledBack(DomainEvent):
    TYPE: ClassVar[str] = 'DeploymentRolledBack'
    deployment_id: str = ''
    at: float = 0.0

    @property
    def severity(self) -> str:
        return 'warning'

    def summary(self) -> str:
        return f'deployment {self.deployment_id} rolled back'


@dataclass(frozen=True, slots=True)
class DeploymentAbortRequested(DomainEvent):
    TYPE: ClassVar[str] = 'DeploymentAbortRequested'
    deployment_id: str = ''
    by: str = ''
    at: float = 0.0

    def summary(self) -> str:
        return f'deployment {self.deployment_id} abort requested'


@dataclass(frozen=True, slots=True)
class DeploymentAborted(DomainEvent):
    TYPE: ClassVar[str] = 'DeploymentAborted'
    deployment_id: str = ''
    at: float = 0.0

    @property
    def severity(self) -> str:
        return 'warning'

    def summary(self) -> str:
        return f'deployment {self.deployment_id} aborted'


@dataclass(frozen=True, slots=True)
class DeploymentCompleted(DomainEvent):
    TYPE: ClassVar[str] = 'DeploymentCompleted'
    deployment_id: str = ''
    succeeded: int = 0
    failed: int = 0
    skipped: int = 0
    at: float = 0.0

    def summary(self) -> str:
        return (f'deployment {self.deployment_id} completed: {self.succeeded} updated, '
                f'{self.failed} failed, {self.skipped} skipped')


@dataclass(frozen=True, slots=True)
class RobotCommandSent(DomainEvent):
    """An operator sent a command from the API; the actor is in the event's metadata."""

    TYPE: ClassVar[str] = 'RobotCommandSent'
    command_id: str = ''
    command_type: str = ''
    outcome: str = ''  # accepted, refused, timeout, not_connected, failed
    message: str = ''
    at: float = 0.0

    @property
    def severity(self) -> str:
        return 'info' if self.outcome == 'accepted' else 'warning'

    def summary(self) -> str:
        tail = f': {self.message}' if self.message else ''
        return f'command {self.command_type} {self.outcome}{tail}'


@dataclass(frozen=True, slots=True)
class RobotWentStale(DomainEvent):
    """The robot fell silent past the stale threshold (discovery/presence_flaps.py)."""

    TYPE: ClassVar[str] = 'RobotWentStale'
    at: float = 0.0
    reason: str = 'silent'

    @property
    def severity(self) -> str:
        return 'warning'

    def summary(self) -> str:
        return f'went stale ({self.reason})'


@dataclass(frozen=True, slots=True)
class RobotStaleEnded(DomainEvent):
    """A robot recorded stale was heard again before it went offline."""

    TYPE: ClassVar[str] = 'RobotStaleEnded'
    at: float = 0.0
    reason: str = 'heard'

    def summary(self) -> str:
        return f'heard again after going stale ({self.reason})'


@dataclass(frozen=True, slots=True)
class RobotFlapped(DomainEvent):
    """The robot's presence changed often within the flap window: reported once per window."""

    TYPE: ClassVar[str] = 'RobotFlapped'
    at: float = 0.0
    changes_in_window: int = 0
    reason: str = 'flapping'

    @property
    def severity(self) -> str:
        return 'warning'

    def summary(self) -> str:
        return f'flapping ({self.changes_in_window} presence changes in the window)'


@dataclass(frozen=True, slots=True)
class RobotPresenceSettled(DomainEvent):
    """A flapping robot stayed in one state for a whole flap window."""

    TYPE: ClassVar[str] = 'RobotPresenceSettled'
    at: float = 0.0
    state: str = ''
    reason: str = ''

    def summary(self) -> str:
        return f'presence settled: {self.state} ({self.reason})'


@dataclass(frozen=True, slots=True)
class RobotFlagGuardTripped(DomainEvent):
    """A flag's guard tripped over a cohort this robot is in (its timeline shows why its flag
    values change next); the flag's own stream holds the FlagGuardTripped. Issue 20."""

    TYPE: ClassVar[str] = 'RobotFlagGuardTripped'
    flag: str = ''
    metric: str = ''
    above: float = 0.0
    observed: float = 0.0  # the cohort's figure
    own: float | None = None  # this robot's own figure, where it reports one
    action: str = ''
    value: Any = None
    at: float = 0.0

    @property
    def severity(self) -> str:
        return 'warning'

    def summary(self) -> str:
        own = f' (this robot {self.own:g})' if self.own is not None else ''
        what = f'set {self.value}' if self.action == 'set' else self.action.replace('_', ' ')
        return (f'flag {self.flag}: guard {self.metric} {self.observed:g} > {self.above:g}'
                f'{own}: {what}')


DEPLOYMENT_EVENT_CLASSES: tuple[type[DomainEvent], ...] = (
    DeploymentCreated, WaveStarted, RobotUpdateStarted, RobotUpdateDeferred, RobotUpdateSucceeded,
    RobotUpdateFailed, RobotUpdateSkipped, RobotRollbackStarted, RobotRolledBack,
    DeploymentPaused, DeploymentResumed, DeploymentRollbackStarted, DeploymentRolledBack,
    DeploymentAbortRequested, DeploymentAborted, DeploymentCompleted,
)


EVENT_CLASSES: tuple[type[DomainEvent], ...] = (
    RobotEnrolled, RobotTokenRevoked, RobotCameOnline, RobotWentOffline, TeleopSessionStarted,
    TeleopSessionEnded, RobotVersionChanged, ResourceAlarmRaised, ResourceAlarmCleared,
    RobotEventReported, DeploymentStatusReported, RobotTokenRotated, RobotReEnrolled,
    *DEPLOYMENT_EVENT_CLASSES,
    RobotCommandSent, RobotWentStale, RobotStaleEnded, RobotFlapped, RobotPresenceSettled,
    RobotFlagGuardTripped,
)

def type_registry(classes: Sequence[type[DomainEvent]]) -> Mapping[str, type[DomainEvent]]:
    """Return a type registry (stored type name -> class); a name used twice is an error."""
    registry = {cls.TYPE: cls for cls in classes}
    if len(registry) != len(classes) or '' in registry:
        raise ValueError('event classes need distinct, non-empty TYPE names')
    return registry


# The type registry: stored type name -> class. A constant: it never changes at run time.
EVENT_TYPES: Mapping[str, type[DomainEvent]] = type_registry(EVENT_CLASSES)

# An upcaster turns the data of (type, version) into the data of (type, version + 1).
Upcaster = Callable[[dict[str, Any]], dict[str, Any]]
Upcasters = Mapping[tuple[str, int], Upcaster]

# Upcasters of this code base. Empty while every event class is at schema version 1; when a class
# changes shape, raise its SCHEMA_VERSION and add (type, old_version) -> function here.
UPCASTERS: Upcasters = {}


def encode(event: DomainEvent) -> tuple[str, int, dict[str, Any]]:
    """Return (type, schema_version, JSON-ready data) of an event."""
    data = {f.name: getattr(event, f.name) for f in dataclasses.fields(event)}
    for name, value in data.items():
        if isinstance(value, tuple):
            data[name] = list(value)
        elif isinstance(value, Mapping):
            data[name] = dict(value)
    return event.TYPE, event.SCHEMA_VERSION, data


def decode(
    type_name: str,
    schema_version: int,
    data: Mapping[str, Any],
    *,
    event_types: Mapping[str, type[DomainEvent]] = EVENT_TYPES,
    upcasters: Upcasters = UPCASTERS,
) -> DomainEvent:
    """Return the event a stored triple describes, upcast to its class's schema version."""
    cls = event_types.get(type_name)
    if cls is None:
        raise EventDecodeError(f'unknown event type {type_name!r}')
    if schema_version > cls.SCHEMA_VERSION or schema_version < 1:
        raise EventDecodeError(
            f'{type_name} schema version {schema_version} is not readable by this server '
            f'(it reads 1..{cls.SCHEMA_VERSION})')
    current = dict(data)
    for version in range(schema_version, cls.SCHEMA_VERSION):
        upcaster = upcasters.get((type_name, version))
        if upcaster is None:
            raise EventDecodeError(f'no upcaster for {type_name} from version {version}')
        current = upcaster(current)
    names = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(current) - set(names)
    if unknown:
        raise EventDecodeError(f'{type_name} has unknown fields {sorted(unknown)}')
    if 'robot_id' not in current:
        raise EventDecodeError(f'{type_name} lacks robot_id')
    kwargs: dict[str, Any] = {k: (tuple(v) if isinstance(v, list) else v)
                              for k, v in current.items()}
    try:
        return cls(**kwargs)
    except TypeError as exc:  # pragma: no cover - guarded by the field check above
        raise EventDecodeError(f'{type_name}: {exc}') from exc
