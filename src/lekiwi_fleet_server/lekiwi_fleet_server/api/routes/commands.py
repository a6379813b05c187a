"""Commands to a connected robot (operator role): sent over its gateway connection."""

from __future__ import annotations

import orjson
from fastapi import APIRouter

from lekiwi_fleet_server.api.command_log import send_recorded_command
from lekiwi_fleet_server.api.deps import OperatorRole, RobotId, Services
from lekiwi_fleet_server.api.errors import ADMIN, error_responses
from lekiwi_fleet_server.api.schemas import CommandRequest, CommandResult

router = APIRouter(prefix='/api/v1/robots', tags=['commands'])


@router.post('/{robot_id}/commands', response_model=CommandResult,
             responses=error_responses(400, *ADMIN, 409, 413, 422, 504))
async def send_command(robot_id: RobotId, body: CommandRequest, services: Services,
                       operator: OperatorRole) -> CommandResult:
    """Send a command and wait for the robot's answer (409 offline, 504 no answer).

    Each command sent is recorded on the robot's stream with its actor and outcome.
    """
    # InvalidCommand, RobotNotConnected and CommandTimeout answer through api/errors.py.
    # To the gateway that holds the robot, wherever it runs (broker/routing.py), recorded with
    # its actor (api/command_log.py).
    response = await send_recorded_command(services, operator.name, robot_id,
                                           body.command_type, orjson.dumps(body.payload).decode())
    return CommandResult(command_id=response.id, result=response.result,
                         accepted=response.accepted, message=response.message)
