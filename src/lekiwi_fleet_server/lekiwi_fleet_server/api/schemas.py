"""Response and request bodies of the REST API (OpenAPI is generated from these)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from lekiwi_fleet_server.store.interface import RobotStatus


class _FromAttributes(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class RobotOut(_FromAttributes):
    robot_id: str
    tags: list[str]
    status: RobotStatus
    enrolled_at: float
    revoked: bool
    connected: bool = False
    last_heartbeat_at: float | None = None
    boot_id: str | None = None
    last_seq: int | None = None
    heartbeat_sequence: int | None = None
    state: str | None = None
    teleop_active: bool = False
    teleop_score: float = 0.0
    agent_version: str | None = None
    software_version: str | None = None
    resources: dict[str, Any] = Field(default_factory=dict)
    telemetry: dict[str, float | None] = Field(default_factory=dict)


class EnrolRequest(BaseModel):
    robot_id: str = Field(pattern=r'^[A-Za-z0-9._-]{1,64}$')
    tags: list[str] = Field(default_factory=list, max_length=32)
    reenrol: bool = Field(False, description='Enrol a revoked robot again (a new token); '
                                             'recorded as RobotReEnrolled with who did it')


class EnrolResponse(BaseModel):
    robot: RobotOut
    token: str = Field(description='The robot token; shown once, only its hash is stored')


class TokenRotated(BaseModel):
    robot_id: str
    token: str = Field(description='The new robot token; shown once, the old one is refused')


class EventOut(_FromAttributes):
    position: int
    stream_id: str
    version: int
    type: str
    schema_version: int
    data: dict[str, Any]
    metadata: dict[str, Any]
    recorded_at: float


class EventPageOut(BaseModel):
    events: list[EventOut]
    next_after: int | None


class FleetSummaryOut(_FromAttributes):
    total: int
    connected: int = 0
    by_status: dict[str, int]
    teleop_active: int
    by_software_version: dict[str, int]


class TelemetryPointOut(_FromAttributes):
    bucket_start: float
    values: dict[str, float | None]


class CommandRequest(BaseModel):
    command_type: Literal['ping', 'configure', 'request_snapshot']
    payload: dict[str, Any] = Field(default_factory=dict,
                                    description='Command payload (sent as payload_json)')


class CommandResult(BaseModel):
    command_id: str
    result: bool
    accepted: bool
    message: str


class TimelineEntryOut(_FromAttributes):
    position: int
    robot_id: str
    type: str
    severity: str
    summary: str
    occurred_at: float


class TimelinePageOut(BaseModel):
    entries: list[TimelineEntryOut]
    next_after: int | None


class TeleopSessionOut(_FromAttributes):
    robot_id: str
    session_id: str
    started_at: float
    score: float | None
    ended_at: float | None
    duration_s: float | None
    end_reason: str | None


class BootSequencesOut(BaseModel):
    boot_id: str
    ranges: list[list[int]] = Field(description='Inclusive [first, last] seq ranges committed')
    count: int = Field(description='How many distinct seqs the ranges hold')
    gaps: list[list[int]] = Field(description='Ranges missing between 1 and the largest seq')
    first_seen_at: float
    updated_at: float


class RobotSequencesOut(BaseModel):
    robot_id: str
    boots: list[BootSequencesOut]
