"""The robot protocol's JSON Schema (docs/robot-protocol-v1.schema.json) for the uplink tests."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema

SCHEMA_PATH = Path(__file__).resolve().parents[3] / 'docs' / 'robot-protocol-v1.schema.json'


@cache
def schema() -> dict[str, Any]:
    """Load the protocol schema once."""
    return json.loads(SCHEMA_PATH.read_text())


def validator(definition: str) -> jsonschema.Draft202012Validator:
    """Return a validator for one frame definition of the schema."""
    return jsonschema.Draft202012Validator({'$ref': f'#/$defs/{definition}', **schema()})


def robot_frame_kind(frame: dict[str, Any]) -> str:
    """Name the schema definition a frame the robot sends must match."""
    op = frame.get('op')
    if op == 'publish':
        topic_type = schema()['x-topics'][frame['topic']]
        return 'Publish_' + topic_type.rsplit('/', 1)[1]
    return {
        'auth': 'AuthFrame',
        'service_response': 'CommandResponseFrame',
        'action_feedback': 'DeployFeedbackFrame',
        'action_result': 'DeployResultFrame',
    }[op]


def validate_robot_frame(text: str) -> dict[str, Any]:
    """Check a frame the robot sent against the schema; return it parsed. Raise if invalid."""
    frame = json.loads(text)
    assert isinstance(frame, dict), text
    validator(robot_frame_kind(frame)).validate(frame)
    return frame
