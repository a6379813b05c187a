"""A FleetStore whose reads run here and whose writes run in the single writer elsewhere.

The split server's API and gateway hold this: queries go to a local store on connections of
their own (`reader`), every write goes through `call(method, *args, **kwargs)` to the one
writer (the writer process), so the writer's memory stays the only one that decides and the
database has one writer. Calls block: use it from worker threads, as the routes do.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from lekiwi_fleet_server.store.interface import (
    BatchResult,
    EventPage,
    FleetStore,
    FleetSummary,
    Operator,
    OperatorRole,
    PresenceChange,
    RobotCredentials,
    RobotFilter,
    RobotMessage,
    RobotSummary,
    SequenceCoverage,
    TelemetryPoint,
    TeleopSession,
    TimelinePage,
)

WriterCall = Callable[..., Any]

if TYPE_CHECKING:
    from lekiwi_fleet_server.domain.events import DomainEvent


class SplitStore:
    """Reads through `reader`, writes through `call` (see the module docstring)."""

    def __init__(self, reader: FleetStore, call: WriterCall,
                 on_close: Callable[[], None] | None = None) -> None:
        self._reader = reader
        self._call = call
        self._on_close = on_close

    # -- writes: the writer's -----------------------------------------------------------------
    def commit_batch(self, messages: Sequence[RobotMessage],
                     presence: Sequence[PresenceChange] = (), *, now: float,
                     while_committing: Callable[[BatchResult], None] | None = None
                     ) -> BatchResult:
        """Commit through the writer (`while_committing` runs here, once it has committed)."""
        result: BatchResult = self._call('commit_batch', list(messages), list(presence),
                                         now=now)
        if while_committing is not None:
            while_committing(result)
        return result

    def enrol_robot(self, robot_id: str, token_sha256: str, tags: Sequence[str], *,
                    now: float, actor: str | None = None) -> RobotSummary:
        """Enrol through the writer."""
        summary: RobotSummary = self._call('enrol_robot', robot_id, token_sha256, tuple(tags),
                                           now=now, actor=actor)
        return summary

    def revoke_robot(self, robot_id: str, *, now: float, actor: str | None = None) -> None:
        """Revoke through the writer."""
        self._call('revoke_robot', robot_id, now=now, actor=actor)

    def record_robot_event(self, event: DomainEvent, *, now: float, actor: str | None = None,
                           causation: str = 'admin:record') -> None:
        """Record through the writer (of the robot's shard)."""
        self._call('record_robot_event', event, now=now, actor=actor, causation=causation)

    def record_robot_events(self, events: Sequence[DomainEvent], *, now: float,
                            actor: str | None = None, causation: str = 'admin:record') -> int:
        """Record through the writers (each robot's shard)."""
        recorded: int = self._call('record_robot_events', list(events), now=now, actor=actor,
                                   causation=causation)
        return recorded

    def rotate_robot_token(self, robot_id: str, token_sha256: str, *, by: str,
                           now: float) -> None:
        """Rotate through the writer."""
        self._call('rotate_robot_token', robot_id, token_sha256, by=by, now=now)

    def reenrol_robot(self, robot_id: str, token_sha256: str, tags: Sequence[str], *,
                      by: str, now: float) -> RobotSummary:
        """Re-enrol through the writer."""
        summary: RobotSummary = self._call('reenrol_robot', robot_id, token_sha256,
                                           tuple(tags), by=by, now=now)
        return summary

    def forget_robots(self, robot_ids: Sequence[str]) -> None:
        """Have the writers drop their memory of these robots."""
        self._call('forget_robots', list(robot_ids))

    def create_operator(self, name: str, role: OperatorRole, token_sha256: str, *,
                        now: float) -> Operator:
        """Create an operator through the writer."""
        operator: Operator = self._call('create_operator', name, role, token_sha256, now=now)
        return operator

    def mark_all_offline(self, *, now: float, reason: str = 'server_restart') -> int:
        """Mark robots offline through the writer."""
        marked: int = self._call('mark_all_offline', now=now, reason=reason)
        return marked

    def maintain(self, *, now: float) -> None:
        """Run telemetry maintenance in the writer."""
        self._call('maintain', now=now)

    # -- reads: local -------------------------------------------------------------------------
    def robot_credentials(self, robot_id: str) -> RobotCredentials | None:
        """Return a robot's credentials."""
        return self._reader.robot_credentials(robot_id)

    def operator_by_token(self, token_sha256: str) -> Operator | None:
        """Return the operator of a token hash."""
        return self._reader.operator_by_token(token_sha256)

    def list_robots(self, robot_filter: RobotFilter, *, now: float) -> list[RobotSummary]:
        """Return the robots matching a filter."""
        return self._reader.list_robots(robot_filter, now=now)

    def get_robot(self, robot_id: str, *, now: float) -> RobotSummary | None:
        """Return one robot."""
        return self._reader.get_robot(robot_id, now=now)

    def robot_timeline(self, robot_id: str, after_position: int, limit: int) -> EventPage:
        """Return a page of a robot's events."""
        return self._reader.robot_timeline(robot_id, after_position, limit)

    def fleet_summary(self, *, now: float) -> FleetSummary:
        """Return the fleet summary."""
        return self._reader.fleet_summary(now=now)

    def fleet_timeline(self, after_position: int, limit: int,
                       robot_id: str | None = None) -> TimelinePage:
        """Return a page of the fleet timeline."""
        return self._reader.fleet_timeline(after_position, limit, robot_id)

    def teleop_sessions(self, robot_id: str, limit: int = 100) -> list[TeleopSession]:
        """Return a robot's teleop sessions."""
        return self._reader.teleop_sessions(robot_id, limit)

    def robot_sequences(self, robot_id: str) -> dict[str, SequenceCoverage]:
        """Return a robot's committed sequence numbers per boot."""
        return self._reader.robot_sequences(robot_id)

    def undelivered_messages(self) -> dict[str, int]:
        """Return per robot the messages of its current boot not arrived yet."""
        return self._reader.undelivered_messages()

    def telemetry_range(self, robot_id: str, start: float, end: float, bucket_s: float,
                        fields: Sequence[str] | None = None) -> list[TelemetryPoint]:
        """Return downsampled telemetry."""
        return self._reader.telemetry_range(robot_id, start, end, bucket_s, fields)

    def ping(self) -> None:
        """Raise StoreUnavailable unless both the database and the writer answer."""
        self._reader.ping()
        self._call('ping')

    def close(self) -> None:
        """Close the reader, then whatever `on_close` stops (the writer process)."""
        try:
            self._reader.close()
        finally:
            if self._on_close is not None:
                self._on_close()
