"""Response and request bodies of the REST API (OpenAPI is generated from these)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator

from lekiwi_fleet_server.api.admin import ROBOT_ID, TAG
from lekiwi_fleet_server.store.interface import RobotStatus


class _FromAttributes(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class AgentFigures(BaseModel):
    """What the robot's agent reports of itself in its heartbeat (issue 20)."""

    memory_rss_mb: float | None = Field(None, description="RSS of the agent's processes, MB")
    memory_uss_mb: float | None = Field(None, description="USS of the agent's processes, MB")
    uplink_ack_p99_ms: float | None = Field(
        None, description="The uplink's ack latency p99 over its window, ms")
    transport: str | None = Field(None, description="'websocket' or 'polling'")


class RobotOut(_FromAttributes):
    robot_id: str
    tags: list[str]
    status: RobotStatus
    enrolled_at: float
    revoked: bool
    connected: bool = False
    transport: str | None = None  # while connected: 'websocket' or 'polling'
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
    uplink_transport: str | None = None  # as the newest heartbeat reports it (issue 20)
    agent: AgentFigures | None = None  # the agent's own figures; None from older agents


def agent_figures(resources: Mapping[str, Any], transport: str | None) -> AgentFigures | None:
    """Return the agent's own figures from a heartbeat's resources, or None if it has none."""
    figures = AgentFigures(
        memory_rss_mb=_finite(resources.get('agent_rss_mb')),
        memory_uss_mb=_finite(resources.get('agent_uss_mb')),
        uplink_ack_p99_ms=_finite(resources.get('uplink_ack_p99_ms')), transport=transport)
    return figures if any(v is not None for v in figures.model_dump().values()) else None


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


# The schema says what api/admin.py checks, so a request the schema allows is not refused.
Tag = Annotated[str, Field(pattern=f'^{TAG.pattern}$')]


class EnrolRequest(BaseModel):
    robot_id: str = Field(pattern=f'^{ROBOT_ID.pattern}$')
    tags: list[Tag] = Field(default_factory=list, max_length=32)
    reenrol: StrictBool = Field(False, description='Enrol a revoked robot again (a new token); '
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


MAX_PAYLOAD_BYTES = 16 * 1024  # well inside a robot's frame limit, with the frame around it
MAX_PAYLOAD_DEPTH = 16


def _depth(value: Any) -> int:
    """Return how deeply lists and objects nest in `value` (iteratively: no recursion limit).

    Raise ValueError on a float that is not finite: JSON has none (Python's parser takes
    NaN and Infinity, which would reach the robot as null).
    """
    deepest, todo = 0, [(value, 1)]
    while todo:
        item, depth = todo.pop()
        if isinstance(item, float) and not math.isfinite(item):
            raise ValueError('payload numbers must be finite')
        if isinstance(item, dict | list):
            deepest = max(deepest, depth)
            if depth <= MAX_PAYLOAD_DEPTH:
                todo.extend((v, depth + 1) for v in (item.values() if isinstance(item, dict)
                                                      else item))
    return deepest


class CommandRequest(BaseModel):
    command_type: Literal['ping', 'configure', 'request_snapshot']
    payload: dict[str, Any] = Field(
        default_factory=dict,
        description=f'Command payload (sent as payload_json): at most {MAX_PAYLOAD_BYTES} bytes '
                    f'as JSON, {MAX_PAYLOAD_DEPTH} levels deep, integers within 64 bits, '
                    'finite numbers, strings of valid Unicode')

    @field_validator('payload')
    @classmethod
    def _encodable(cls, payload: dict[str, Any]) -> dict[str, Any]:
        # Checked here, not when the gateway encodes it: a payload the robot's JSON cannot
        # carry is the client's error (422), never the server's (500).
        if _depth(payload) > MAX_PAYLOAD_DEPTH:
            raise ValueError(f'payload nests deeper than {MAX_PAYLOAD_DEPTH} levels')
        try:
            encoded = orjson.dumps(payload)  # refuses integers beyond 64 bits, lone surrogates
        except orjson.JSONEncodeError as exc:
            raise ValueError(f'payload cannot be sent as JSON: {exc}') from None
        if len(encoded) > MAX_PAYLOAD_BYTES:
            raise ValueError(f'payload is {len(encoded)} bytes as JSON, at most '
                             f'{MAX_PAYLOAD_BYTES}')
        return payload


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


class FieldErrorOut(BaseModel):
    loc: list[str | int] = Field(description='Where the bad value is: body, query, path, ...')
    msg: str
    type: str = Field(description="pydantic's error type, e.g. 'less_than_equal'")


class ErrorOut(BaseModel):
    """The body of every error answer of the REST API (api/errors.py)."""

    code: str = Field(description='Machine-readable cause: invalid_request, malformed_body, '
                                  'unauthorized, forbidden, not_found, method_not_allowed, '
                                  'conflict, robot_not_connected, payload_too_large, '
                                  'store_unavailable, command_timeout, server_error')
    detail: str = Field(description='What went wrong, for a person')
    errors: list[FieldErrorOut] = Field(default_factory=list,
                                        description='The invalid fields, on a 422')
