"""Deploy goals to robots (`send_action_goal`) and their results back (`action_result`).

The frames are rosbridge's action operations on action `fleet/deploy` (robot-protocol.md). The
gateway sends goals through a robot's session and hands every `action_result` to its relay's
listener; nothing here is stored: the deployment engine turns results into events. With one
process the engine listens to the gateway's relay itself; with a broker every gateway
publishes its results (`result_message`) for the engine of whichever process drives
(broker/routing.py).
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


def result_message(result: ActionResult) -> bytes:
    """Return an action result as the broker carries it between processes."""
    return orjson.dumps({'robot_id': result.robot_id, 'goal_id': result.goal_id,
                         'status': result.status, 'values': dict(result.values)})


def result_of_message(data: bytes) -> ActionResult:
    """Decode a `result_message`; raise ValueError when it is not one."""
    message = orjson.loads(data)  # orjson.JSONDecodeError is a ValueError
    if not isinstance(message, dict):
        raise ValueError('an action result message is a JSON object')
    robot_id, goal_id = message.get('robot_id'), message.get('goal_id')
    status, values = message.get('status'), message.get('values')
    if not isinstance(robot_id, str) or not robot_id or not isinstance(goal_id, str) \
            or not goal_id or type(status) is not int or not isinstance(values, dict):
        raise ValueError('an action result needs robot_id, goal_id, status (integer), values')
    return ActionResult(robot_id, goal_id, status, values)


class ActionRelay:
    """Where the gateway's action results go (one listener: the deployment engine)."""

    def __init__(self) -> None:
        self.listener: ResultListener | None = None

    def result(self, result: ActionResult) -> None:
        if self.listener is not None:
            self.listener(result)
