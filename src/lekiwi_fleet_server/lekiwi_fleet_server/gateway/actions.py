"""Deploy goals to robots (`send_action_goal`) and their results back (`action_result`).

The frames are rosbridge's action operations on action `fleet/deploy` (robot-protocol.md). The
gateway sends goals through a robot's session and hands every `action_result` (and
`action_feedback`) to the listener the deployment engine registered; nothing here is stored:
the engine turns results into events.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from lekiwi_fleet_server.domain.protocol import ErrorCode, ProtocolError

DEPLOY_ACTION = 'fleet/deploy'
DEPLOY_TYPE = 'lekiwi_fleet_msgs/action/Deploy'


@dataclass(frozen=True, slots=True)
class ActionResult:
    """One robot's answer to a goal: GoalStatus (4 succeeded, 5 canceled, 6 aborted)."""

    robot_id: str
    goal_id: str
    status: int
    values: Mapping[str, Any]


ResultListener = Callable[[ActionResult], None]


def goal_frame(goal_id: str, args: Mapping[str, Any]) -> bytes:
    """Return the send_action_goal frame of a Deploy goal."""
    return orjson.dumps({'op': 'send_action_goal', 'id': goal_id, 'action': DEPLOY_ACTION,
                         'action_type': DEPLOY_TYPE, 'feedback': True, 'args': dict(args)})


def cancel_frame(goal_id: str) -> bytes:
    """Return the cancel_action_goal frame of a goal."""
    return orjson.dumps({'op': 'cancel_action_goal', 'id': goal_id, 'action': DEPLOY_ACTION})


def parse_result(robot_id: str, frame: Mapping[str, Any]) -> ActionResult:
    """Validate an action_result frame; raise ProtocolError."""
    goal_id, status, values = frame.get('id'), frame.get('status'), frame.get('values')
    if not isinstance(goal_id, str) or not goal_id or type(status) is not int \
            or not isinstance(values, dict):
        raise ProtocolError(ErrorCode.INVALID_MESSAGE,
                            'action_result needs id (string), status (integer), values (object)',
                            goal_id if isinstance(goal_id, str) else None)
    return ActionResult(robot_id, goal_id, status, values)


class ActionRelay:
    """Where the gateway's action results go (one listener: the deployment engine)."""

    def __init__(self) -> None:
        self.listener: ResultListener | None = None

    def result(self, result: ActionResult) -> None:
        if self.listener is not None:
            self.listener(result)
