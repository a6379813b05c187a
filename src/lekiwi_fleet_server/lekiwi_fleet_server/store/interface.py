"""The store's contract with the robot gateway and the API.

The gateway hands decoded, validated robot frames to `FleetStore.commit_batch` and acknowledges
them to robots only after it returns; the API reads through the query methods. Every method is
synchronous and thread-safe: the gateway calls `commit_batch` from one writer thread, the API
calls queries from FastAPI's thread pool. Implementations: `SqlFleetStore` (SQLAlchemy Core on
PostgreSQL or the embedded SQLite default).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

RobotStatus = Literal['online', 'stale', 'offline', 'never_seen']

if TYPE_CHECKING:
    from lekiwi_fleet_server.domain.events import DomainEvent


class StoreError(Exception):
    """Base of every error the store raises; driver errors are translated into these once."""


class StoreUnavailable(StoreError):
    """The database cannot be reached or refused the transaction; retry later."""


class ConcurrencyConflict(StoreError):
    """An append expected a stream version that another writer has already taken."""


class RobotAlreadyEnrolled(StoreError):
    """A robot with this id is enrolled already (revoke it and enrol a new id, or rotate)."""


class UnknownRobot(StoreError):
    """No robot with this id is enrolled."""


class RobotRevoked(StoreError):
    """The robot's token is revoked: only re-enrolment brings it back."""


class OperatorAlreadyExists(StoreError):
    """An operator with this token hash exists already."""


class InvalidQuery(StoreError, ValueError):
    """An argument the store cannot act on (bad robot id or tag, unknown telemetry field, ...)."""


# Not frozen, like the other values made once per message (RobotSummary here, the robot
# state's Outcome): a frozen dataclass costs three to four times as much to construct, and
# these are made thousands of times a second. Treat them as immutable all the same.
@dataclass(slots=True)
class RobotMessage:
    """One validated `publish` frame from an authenticated robot (treat as immutable)."""

    robot_id: str
    boot_id: str
    seq: int
    topic: str  # one of domain.topics.TOPIC_TYPES
    msg: Mapping[str, Any]  # the ROS message as rosbridge JSON (NaN already as None)
    received_at: float  # server wall clock, Unix seconds
    # True: `seq` is the robot's state sequence (`state_seq`, lekiwi-fleet/2), a space of its
    # own that robot_sequences never records; the message is stored before its ack only when
    # it yields an event, else it is taken in memory and written by the next `flush_state`.
    state_space: bool = False


@dataclass(frozen=True, slots=True)
class PresenceChange:
    """The gateway saw a robot connect or go away."""

    robot_id: str
    online: bool
    at: float  # Unix seconds
    reason: str  # 'connected', 'disconnected', 'timeout', 'replaced', 'server_restart'
    # The fencing token of the gateway's claim (broker/presence.py); 0: no registry involved.
    token: int = 0


@dataclass(frozen=True, slots=True)
class MessageKey:
    """The idempotency key of a robot message."""

    robot_id: str
    boot_id: str
    seq: int
    state_space: bool = False  # a `state_seq` (acked in `state_ranges`), not a history seq


@dataclass(frozen=True, slots=True)
class RecordedEvent:
    """An event as stored: its place in its stream and in the global order."""

    position: int  # global, strictly increasing in commit order
    stream_id: str  # 'robot-<robot_id>'
    version: int  # 1, 2, ... within the stream
    type: str  # e.g. 'RobotCameOnline'
    schema_version: int
    data: Mapping[str, Any]
    metadata: Mapping[str, Any]  # robot_id, boot_id, seq, causation; actor for operators'
    recorded_at: float  # Unix seconds


@dataclass(slots=True)
class RobotSummary:
    """One row of the robots read model (treat as immutable; see RobotMessage)."""

    robot_id: str
    tags: tuple[str, ...]
    status: RobotStatus  # 'stale' is derived at query time from last_heartbeat_at
    enrolled_at: float
    revoked: bool
    last_heartbeat_at: float | None = None
    boot_id: str | None = None
    last_seq: int | None = None  # newest uplink seq committed for boot_id
    heartbeat_sequence: int | None = None  # RobotHeartbeat.sequence of the newest heartbeat
    state: str | None = None  # RobotHeartbeat STATE_* name without prefix, lower case
    teleop_active: bool = False
    teleop_score: float = 0.0
    agent_version: str | None = None
    software_version: str | None = None
    resources: Mapping[str, Any] = field(default_factory=dict)  # ResourceUsage fields
    telemetry: Mapping[str, float | None] = field(default_factory=dict)  # reconstructed state
    uplink_transport: str | None = None  # as the robot's newest heartbeat reports it


@dataclass(frozen=True, slots=True)
class RejectedMessage:
    """A message the store refused: nothing of it was stored; do not acknowledge it."""

    key: MessageKey
    reason: str  # e.g. 'unknown robot', 'fleet/telemetry: 3 field_names but 2 field_values'


@dataclass(frozen=True, slots=True)
class BatchResult:
    """What one committed batch did."""

    acknowledged: tuple[MessageKey, ...]  # committed now or found committed before
    duplicates: int  # of those, how many stored nothing (recorded before, or superseded)
    changed_robots: tuple[RobotSummary, ...]  # read-model rows this batch changed
    new_events: tuple[RecordedEvent, ...]  # events this batch appended, in position order
    rejected: tuple[RejectedMessage, ...] = ()  # answer with invalid_message, never ack
    deferred: int = 0  # of the acknowledged, state readings left to the next flush_state


@dataclass(frozen=True, slots=True)
class SequenceCoverage:
    """Which sequence numbers of one boot of a robot the store has committed."""

    ranges: tuple[tuple[int, int], ...]  # inclusive (first, last), sorted, never adjacent
    count: int  # how many distinct seqs the ranges hold
    gaps: tuple[tuple[int, int], ...]  # ranges missing between 1 and the largest seq
    first_seen_at: float  # Unix seconds: the commit of the boot's first message
    updated_at: float  # Unix seconds: the newest commit that added a seq


@dataclass(frozen=True, slots=True)
class RobotCredentials:
    robot_id: str
    token_sha256: str
    revoked: bool
    # The admission key its token is bound to (its `key:` tag), None for token-only robots:
    # the gateway then asks for the key's proof at every login (domain/key_binding.py).
    key_fingerprint: str | None = None


OperatorRole = Literal['viewer', 'operator', 'admin']


@dataclass(frozen=True, slots=True)
class Operator:
    """A person or service using the REST API and dashboard; viewers read, admins also write."""

    name: str
    role: OperatorRole
    token_sha256: str
    created_at: float
    revoked: bool = False


@dataclass(frozen=True, slots=True)
class RobotFilter:
    status: RobotStatus | None = None
    teleop_active: bool | None = None
    software_version: str | None = None
    tag: str | None = None


@dataclass(frozen=True, slots=True)
class FleetSummary:
    total: int
    by_status: Mapping[str, int]  # every RobotStatus, zero included
    teleop_active: int
    by_software_version: Mapping[str, int]


@dataclass(frozen=True, slots=True)
class TelemetryPoint:
    """One bucket of a downsampled telemetry series."""

    bucket_start: float  # Unix seconds
    values: Mapping[str, float | None]  # field -> mean over the bucket


@dataclass(frozen=True, slots=True)
class EventPage:
    events: tuple[RecordedEvent, ...]
    next_after: int | None  # pass as after_position for the next page; None at the end


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    """One entry of the fleet event timeline (a projection of the event log)."""

    position: int
    robot_id: str
    type: str
    severity: str  # 'debug', 'info', 'warning', 'error', 'critical'
    summary: str  # one human line, e.g. 'went offline (timeout)'
    occurred_at: float  # Unix seconds


@dataclass(frozen=True, slots=True)
class TimelinePage:
    entries: tuple[TimelineEntry, ...]
    next_after: int | None  # pass as after_position for the next page; None at the end


@dataclass(frozen=True, slots=True)
class TeleopSession:
    """One teleoperation session of a robot (ended_at None while it is open)."""

    robot_id: str
    session_id: str
    started_at: float
    score: float | None
    ended_at: float | None
    duration_s: float | None
    end_reason: str | None


class FleetStore(Protocol):
    """Durable fleet state. See the module docstring for threading."""

    def commit_batch(
        self,
        messages: Sequence[RobotMessage],
        presence: Sequence[PresenceChange] = (),
        *,
        now: float,
        while_committing: Callable[[BatchResult], None] | None = None,
    ) -> BatchResult:
        """Store messages and presence changes in one transaction, idempotently.

        A message whose (robot_id, boot_id, seq) is recorded already is acknowledged as a
        duplicate and applies nothing; every other acknowledged message's seq is recorded.
        `while_committing`, when given, gets the result as soon as it is decided, while the
        database may still be working on the transaction (the caller prepares its answers
        meanwhile). A batch replanned after a conflict gets a second call: the result that
        commit_batch returns is the one of the last call. When commit_batch raises, whatever
        the calls made must be discarded.

        Raises StoreUnavailable when nothing was committed; the caller may retry the batch.
        """
        ...

    def flush_state(self, *, now: float) -> int:
        """Write the current-state readings taken since the last flush; return how many robots.

        commit_batch acknowledges a state-space message that yields no event (a plain
        heartbeat or teleop status of a lekiwi-fleet/2 robot) once its memory has taken it;
        this writes those robots' current-state rows in one statement. The writer calls it
        every `state_flush_interval_s`: a crash loses at most the readings of one interval,
        never an event. Raises StoreUnavailable when nothing was written (the readings stay
        pending for the next call).
        """
        ...

    def robot_credentials(self, robot_id: str) -> RobotCredentials | None: ...

    def enrol_robot(
        self, robot_id: str, token_sha256: str, tags: Sequence[str], *, now: float,
        actor: str | None = None,
    ) -> RobotSummary:
        """Enrol a robot; `actor` (who did it) goes into its events' metadata."""
        ...

    def revoke_robot(self, robot_id: str, *, now: float, actor: str | None = None) -> None:
        """Revoke a robot's token; `actor` goes into the event's metadata."""
        ...

    def record_robot_event(self, event: DomainEvent, *, now: float, actor: str | None = None,
                           causation: str = 'admin:record') -> None:
        """Append a state-less event to an enrolled robot's stream (UnknownRobot if not)."""
        ...

    def record_robot_events(self, events: Sequence[DomainEvent], *, now: float,
                            actor: str | None = None, causation: str = 'admin:record') -> int:
        """Append state-less events of any robots in one transaction; return how many."""
        ...

    def rotate_robot_token(self, robot_id: str, token_sha256: str, *, by: str,
                           now: float) -> None:
        """Replace an enrolled, unrevoked robot's token hash; record who did it."""
        ...

    def reenrol_robot(self, robot_id: str, token_sha256: str, tags: Sequence[str], *,
                      by: str, now: float) -> RobotSummary:
        """Enrol a revoked robot again with a new token; record who did it."""
        ...

    def forget_robots(self, robot_ids: Sequence[str]) -> None:
        """Drop what a writer remembers of these robots (another process changed them)."""
        ...

    def create_operator(
        self, name: str, role: OperatorRole, token_sha256: str, *, now: float
    ) -> Operator: ...

    def operator_by_token(self, token_sha256: str) -> Operator | None: ...

    def list_robots(self, robot_filter: RobotFilter, *, now: float) -> list[RobotSummary]: ...

    def get_robot(self, robot_id: str, *, now: float) -> RobotSummary | None: ...

    def robot_timeline(self, robot_id: str, after_position: int, limit: int) -> EventPage: ...

    def fleet_summary(self, *, now: float) -> FleetSummary: ...

    def fleet_timeline(
        self, after_position: int, limit: int, robot_id: str | None = None
    ) -> TimelinePage:
        """Return timeline entries after `after_position` (of one robot, or of all)."""
        ...

    def teleop_sessions(self, robot_id: str, limit: int = 100) -> list[TeleopSession]:
        """Return a robot's teleop sessions, newest first."""
        ...

    def robot_sequences(self, robot_id: str) -> dict[str, SequenceCoverage]:
        """Return the committed sequence numbers of a robot per boot id, oldest boot first.

        Every acknowledged message's (boot_id, seq) is recorded in the transaction that
        acknowledged it; an empty dict when the robot committed nothing (or is unknown).
        """
        ...

    def undelivered_messages(self) -> dict[str, int]:
        """Return, per robot, the seqs below its newest committed one (current boot) that have
        not been committed yet: the backlog still in the robot's outbox or in flight."""
        ...

    def telemetry_range(
        self,
        robot_id: str,
        start: float,
        end: float,
        bucket_s: float,
        fields: Sequence[str] | None = None,
    ) -> list[TelemetryPoint]: ...

    def mark_all_offline(self, *, now: float, reason: str = 'server_restart') -> int:
        """At gateway start, robots the read model shows online are offline; return how many."""
        ...

    def maintain(self, *, now: float) -> None:
        """Make telemetry partitions ahead and apply retention (commit_batch also does it)."""
        ...

    def ping(self) -> None:
        """Raise StoreUnavailable unless the database answers now (for /readyz)."""
        ...

    def close(self) -> None: ...
